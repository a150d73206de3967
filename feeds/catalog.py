"""Which feeds exist, what they are called, and which papers each one holds.

The feed list is derived from the papers alone (every category present, plus "all" and
"starred"), so the syndication formats, the site's feed pages and the OPML all agree on the
same slugs, titles and URLs. Slugs are public URLs: they depend only on the category code.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from datetime import tzinfo
from functools import lru_cache
from typing import Literal

from feeds.config import Settings
from feeds.model import BuildContext, Paper

FeedKind = Literal["all", "starred", "category"]

ALL_SLUG = "all"
STARRED_SLUG = "starred"
# The label of the starred mark wherever it shows up: feed title, entry category, tag.
STARRED_LABEL = "重点关注"
ALL_LABEL = "全部论文"

_NOT_SLUG = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class FeedInfo:
    """One feed, in every format: its identity, its words and the URL paths of its files."""

    slug: str
    title: str
    description: str
    kind: FeedKind
    # The category code the feed holds ("CV"); None for "all" and "starred".
    category: str | None = None
    category_name: str | None = None

    @property
    def rss(self) -> str:
        return f"feeds/{self.slug}.rss"

    @property
    def atom(self) -> str:
        return f"feeds/{self.slug}.atom"

    @property
    def json(self) -> str:
        return f"feeds/{self.slug}.json"

    @property
    def html(self) -> str:
        return f"feeds/{self.slug}.html"

    def archive(self, month: str, ext: str) -> str:
        """The RFC 5005 archive document of one month ("2021-03") in one format ("atom",
        "rss"): `feeds/archive/<slug>/<month>.<ext>`."""
        return f"feeds/archive/{self.slug}/{month}.{ext}"

    @property
    def label(self) -> str:
        """What the feed is about, in a few words: "计算机视觉 (CV)", "重点关注"."""
        if self.kind == "all":
            return ALL_LABEL
        if self.kind == "starred":
            return STARRED_LABEL
        return category_label(self.category or self.slug, self.category_name)


@lru_cache(maxsize=1024)
def category_slug(code: str) -> str:
    """The URL-safe, stable slug of a category code: "LG" -> "lg", "stat.ML" -> "stat-ml".

    Lower-case ASCII letters and digits joined by single hyphens. A code with none of those
    (say, Chinese only) gets "cat-" plus a short hash of the code, and a code that would take
    the place of "all" or "starred" is prefixed with "cat-": both stay stable forever.
    """
    folded = unicodedata.normalize("NFKC", code).casefold()
    slug = _NOT_SLUG.sub("-", folded).strip("-")
    if not slug:
        return "cat-" + hashlib.sha256(code.encode("utf-8")).hexdigest()[:8]
    if slug in (ALL_SLUG, STARRED_SLUG):
        return "cat-" + slug
    return slug


def category_label(code: str, name: str | None) -> str:
    return f"{name} ({code})" if name and name != code else code


def archive_month(paper: Paper, tz: tzinfo) -> str:
    """The month a paper is archived under ("2021-03"): its first-seen date's, in the site's
    time zone. Not its entry time, which counts seconds back from a digest's time and could
    cross into the previous month."""
    moment = paper.first_seen
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)  # as the feeds read a naive time
    return moment.astimezone(tz).strftime("%Y-%m")


def feed_list(ctx: BuildContext, settings: Settings) -> list[FeedInfo]:
    """Every feed of this build: "all", "starred" (always, even when empty), then one feed per
    category present, ordered by slug.

    Codes that fold to the same slug ("stat.ML", "STAT-ML") share one feed, named after the
    smallest code; a category's name is the one the digests give it most often.
    """
    site = settings.site
    feeds = [
        FeedInfo(
            slug=ALL_SLUG,
            title=f"{site.title} — {ALL_LABEL}",
            description=f"{ALL_LABEL}: {site.description}",
            kind="all",
        ),
        FeedInfo(
            slug=STARRED_SLUG,
            title=f"{site.title} — {STARRED_LABEL}",
            description=f"{STARRED_LABEL}: {site.description}",
            kind="starred",
        ),
    ]
    # Counted as (code, name) pairs first: a ten-year archive has tens of thousands of papers
    # and a few dozen distinct pairs, and a slug is worked out once per pair, not per paper.
    pairs = Counter((p.item.category, p.item.category_name) for p in ctx.papers)
    if ctx.sealed is not None:
        pairs.update(dict(ctx.sealed.pairs))
    codes: dict[str, set[str]] = {}
    names: dict[str, Counter[str]] = {}
    for (code, category_name), count in pairs.items():
        if not code:
            continue
        slug = category_slug(code)
        codes.setdefault(slug, set()).add(code)
        counter = names.setdefault(slug, Counter())
        if category_name:
            counter[category_name] += count
    for slug in sorted(codes):
        code = min(codes[slug])
        # Most frequent name; ties broken by the name itself, never by dict order.
        ranked = sorted(names[slug].items(), key=lambda pair: (-pair[1], pair[0]))
        name = ranked[0][0] if ranked else None
        label = category_label(code, name)
        feeds.append(
            FeedInfo(
                slug=slug,
                title=f"{site.title} — {label}",
                description=f"{label}: {site.description}",
                kind="category",
                category=code,
                category_name=name,
            )
        )
    return feeds


def belongs(paper: Paper, feed: FeedInfo) -> bool:
    if feed.kind == "all":
        return True
    if feed.kind == "starred":
        return paper.item.starred
    code = paper.item.category
    return code is not None and category_slug(code) == feed.slug


def select(ctx: BuildContext, feed: FeedInfo, limit: int) -> list[Paper]:
    """The newest `limit` papers of a feed, newest first.

    Relies on the context's order (newest first-seen time first, then digest order, then
    rank: the BuildContext contract) and stops at `limit`, so a ten-year archive costs no
    more than the papers it has to look at.
    """
    chosen: list[Paper] = []
    if limit <= 0:
        return chosen
    # Earlier papers (`BuildContext.sealed`) come after every paper of the context.
    tail = ctx.sealed.tails.get(feed.slug, ()) if ctx.sealed is not None else ()
    if feed.kind == "all":
        chosen = list(ctx.papers[:limit])
        return chosen + list(tail[: limit - len(chosen)])
    # A category feed may be rare and scan the whole archive: each code is matched once.
    matches: dict[str | None, bool] = {}
    for paper in ctx.papers:
        item = paper.item
        if feed.kind == "starred":
            if not item.starred:
                continue
        else:
            found = matches.get(item.category)
            if found is None:
                found = matches[item.category] = belongs(paper, feed)
            if not found:
                continue
        chosen.append(paper)
        if len(chosen) == limit:
            return chosen
    return chosen + list(tail[: limit - len(chosen)])
