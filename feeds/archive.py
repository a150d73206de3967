"""RFC 5005 archived feeds: every paper of every feed, month by month, in archive documents.

A feed's subscription document (`feeds/<slug>.atom`, `.rss`) keeps the newest
`[site] items_per_feed` papers and links `prev-archive` to the archive document of the month
of its newest paper. Each month in which a feed has a paper has one archive document per XML
format, `feeds/archive/<slug>/<YYYY-MM>.atom` and `.rss`, holding every paper of that feed
first seen that month (in the site's time zone), newest first, with `fh:archive`, a `current`
link to the subscription document, and `prev-archive`/`next-archive` links to the feed's
previous and next months with papers. Walking `prev-archive` from the subscription document
thus meets every paper of the feed exactly once in the archive documents.

Pure like every generator: the build context and settings in, bytes out. A document depends
only on its papers and its neighbours, so once a later month has a paper in that feed (the
month is closed: it has its `next-archive` link) its bytes stay the same from build to build;
`volume_marks` says what each document is made of, for the build to render only those that
changed (`feeds.archive_build`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from feeds.catalog import FeedInfo, archive_month, category_slug, feed_list
from feeds.config import Settings
from feeds.model import BuildContext, Paper
from feeds.syndicate import entry_times, xml_documents

FORMATS = ("atom", "rss")


@dataclass(frozen=True)
class Volume:
    """One month of one feed: its papers newest first, and the months before and after it
    that have papers in the same feed."""

    feed: FeedInfo
    month: str
    papers: tuple[Paper, ...]
    prev: str | None
    next: str | None

    def path(self, ext: str) -> str:
        return self.feed.archive(self.month, ext)


def volumes(ctx: BuildContext, settings: Settings) -> list[Volume]:
    """Every archive volume of every feed, feed by feed in catalog order, oldest month first
    (with a sealed context, those of the recent months: the earlier ones are kept)."""
    feeds = feed_list(ctx, settings)
    tz = settings.site.tz
    months: dict[str, dict[str, list[Paper]]] = {feed.slug: {} for feed in feeds}
    all_months = months[feeds[0].slug]
    starred_months = months[feeds[1].slug]
    # One pass over the archive: a paper goes to "all", its category's feed and maybe
    # "starred". Its month is worked out once per first-seen moment, which a digest's papers
    # share (ten years: 3,650 moments for 33,000 papers; the conversion was 0.15 s a build).
    month_of: dict[datetime, str] = {}
    for paper in ctx.papers:
        month = month_of.get(paper.first_seen)
        if month is None:
            month = month_of[paper.first_seen] = archive_month(paper, tz)
        all_months.setdefault(month, []).append(paper)
        if paper.item.starred:
            starred_months.setdefault(month, []).append(paper)
        code = paper.item.category
        if code:
            months[category_slug(code)].setdefault(month, []).append(paper)
    found: list[Volume] = []
    # The months the context does not hold (`BuildContext.sealed`) come before all of its own.
    before = {slug: v[0] for slug, v in ctx.sealed.volumes.items()} if ctx.sealed else {}
    for feed in feeds:
        ordered = sorted(months[feed.slug])
        for n, month in enumerate(ordered):
            found.append(
                Volume(
                    feed=feed,
                    month=month,
                    papers=tuple(months[feed.slug][month]),
                    prev=ordered[n - 1] if n > 0 else before.get(feed.slug),
                    next=ordered[n + 1] if n + 1 < len(ordered) else None,
                )
            )
    return found


def volume_marks(
    found: Sequence[Volume], marks: Mapping[str, bytes], render_fingerprint: str
) -> dict[str, str]:
    """What each archive document is made of, by path, as a fingerprint: the rendering code,
    templates and settings (`render_fingerprint`), the feed's words, the neighbours, and each
    paper's entry (`marks`: `feeds.syndicate.entry_marks`). Equal marks, equal bytes: computed
    from a context whose digests are not loaded in full, so the build loads only what it must
    render."""
    found_marks: dict[str, str] = {}
    for volume in found:
        feed = volume.feed
        head = [
            render_fingerprint, feed.slug, feed.title, feed.description, volume.month,
            volume.prev, volume.next,
        ]
        parts = [repr(head).encode("utf-8")]
        parts += [marks[paper.key] for paper in volume.papers]
        mark = hashlib.sha256(b"".join(parts)).hexdigest()
        for ext in FORMATS:
            found_marks[volume.path(ext)] = mark
    return found_marks


def render_volumes(
    found: Sequence[Volume],
    ctx: BuildContext,
    settings: Settings,
    times: Mapping[str, datetime] | None = None,
) -> dict[str, bytes]:
    """The Atom and RSS archive documents of `found`; `times` are the context's entry times
    (`feeds.syndicate.entry_times`), when the caller has them already."""
    if times is None:
        times = entry_times(ctx.papers, settings.site.tz)
    contents: dict[str, str] = {}
    files: dict[str, bytes] = {}
    site = settings.site
    for volume in found:
        feed = volume.feed
        links: dict[str, list[tuple[str, str]]] = {}
        for ext in FORMATS:
            subscription = feed.atom if ext == "atom" else feed.rss
            rels = [("current", site.url(subscription))]
            if volume.prev:
                rels.append(("prev-archive", site.url(feed.archive(volume.prev, ext))))
            if volume.next:
                rels.append(("next-archive", site.url(feed.archive(volume.next, ext))))
            links[ext] = rels
        atom, rss = xml_documents(
            feed, volume.papers, settings, times, contents,
            atom_path=volume.path("atom"), rss_path=volume.path("rss"), links=links,
            archive=True,
        )
        files[volume.path("atom")] = atom
        files[volume.path("rss")] = rss
    return files


def render_archives(ctx: BuildContext, settings: Settings) -> dict[str, bytes]:
    """Every archive document of every feed in `ctx` (the build renders only the changed
    ones)."""
    return render_volumes(volumes(ctx, settings), ctx, settings)
