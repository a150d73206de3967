"""The normalized data every stage shares: digests, items, links, warnings.

Frozen dataclasses and nothing else: this module imports nothing of the project, so every
stage can depend on it and it depends on none of them. Field names follow the JSON contract
in the design document (`feeds parse --json`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

LinkKind = Literal["weibo", "arxiv", "openreview", "doi", "other"]
Section = Literal["featured", "more", "weekly"]
DigestFormat = Literal["daily", "weekly"]
# Where a digest's date came from, strongest first; "state" means the first time the
# build saw the file, "unknown" that nothing dated it yet (the build resolves it).
DateSource = Literal["header", "filename", "text", "weibo", "state", "unknown"]


@dataclass(frozen=True, slots=True)
class Link:
    kind: LinkKind
    href: str

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "href": self.href}


@dataclass(frozen=True, slots=True)
class ParseWarning:
    """Something in the input that was not understood; nothing is dropped silently."""

    line: int
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "message": self.message}


@dataclass(frozen=True, slots=True)
class Item:
    """One paper as it appears in one digest."""

    key: str
    guid: str
    section: Section
    rank: int
    category: str | None
    category_name: str | None
    starred: bool
    title: str
    title_zh: str | None
    authors: tuple[str, ...]
    authors_truncated: bool
    affiliations: tuple[str, ...]
    summary_zh: str | None
    abstract: str | None
    notes: str | None
    url: str | None
    links: tuple[Link, ...]
    published: datetime | None
    line: int
    # Id of the digest this sighting comes from (the "digest id" of the output layout).
    digest_id: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "guid": self.guid,
            "section": self.section,
            "rank": self.rank,
            "category": self.category,
            "category_name": self.category_name,
            "starred": self.starred,
            "title": self.title,
            "title_zh": self.title_zh,
            "authors": list(self.authors),
            "authors_truncated": self.authors_truncated,
            "affiliations": list(self.affiliations),
            "summary_zh": self.summary_zh,
            "abstract": self.abstract,
            "notes": self.notes,
            "url": self.url,
            "links": [link.as_dict() for link in self.links],
            "published": self.published.isoformat() if self.published else None,
            "line": self.line,
        }


@dataclass(frozen=True, slots=True)
class Digest:
    """One digest file, parsed: its identity, date and items in the order of the file."""

    id: str
    date: datetime | None
    date_source: DateSource
    source: str
    format: DigestFormat
    title: str
    summary: str | None
    items: tuple[Item, ...]
    warnings: tuple[ParseWarning, ...] = ()
    # sha256 of the raw file bytes: renaming a file changes nothing, editing it does.
    content_hash: str = ""
    # Whom the digest credits (`转自爱可可爱生活`, `来源:爱可可老师 …`), and links it gives for
    # itself rather than for one paper (the weekly list's closing `来源:` link).
    credit: str | None = None
    links: tuple[Link, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "date": self.date.isoformat() if self.date else None,
            "date_source": self.date_source,
            "source": self.source,
            "format": self.format,
            "title": self.title,
            "summary": self.summary,
            "items": [item.as_dict() for item in self.items],
            "warnings": [warning.as_dict() for warning in self.warnings],
            "credit": self.credit,
            "links": [link.as_dict() for link in self.links],
        }


@dataclass(frozen=True, slots=True)
class Paper:
    """One paper across all digests: the first sighting, with every later sighting's links merged.

    This is what a feed entry is. `first_seen` is the first sighting's date and never moves.
    """

    item: Item
    first_seen: datetime
    digest_ids: tuple[str, ...] = field(default=())
    # Where each sighting is, first first: (digest id, position in that digest). A paper
    # assembled from digests without their texts is made whole from these
    # (`feeds.assemble.complete`); not part of what the paper is.
    sightings: tuple[tuple[str, int], ...] = field(default=(), compare=False)

    @property
    def guid(self) -> str:
        return self.item.guid

    @property
    def key(self) -> str:
        return self.item.key


@dataclass(frozen=True, slots=True)
class BuildContext:
    """What a generator may know about the world; generators never read the clock or files."""

    # Newest digest first; every digest that parsed (dates resolved), or with `sealed` those
    # dated from the seal's cut on.
    digests: tuple[Digest, ...]
    # Every paper of those digests once, newest first_seen first, ties by digest order then
    # rank.
    papers: tuple[Paper, ...]
    # Set when the digests and papers above are only those dated from the seal's cut on: what
    # the earlier ones add to the pages that show more than their own month (`feeds.seal`).
    sealed: Sealed | None = None


@dataclass(frozen=True, slots=True)
class Sealed:
    """What the digests dated before `cut`, and the papers they first showed, add to a build
    of the later ones: a daily build reads and assembles the recent months only.

    Every stage that reads more than the months it renders takes its share from here: the
    feed list its (category, name) counts, each feed its newest earlier papers, the archive
    and the search index the months they keep as they are, the newsletter archive its rows.
    """

    # The cut's month ("2021-03", in the site's time zone): the first of the recent months.
    month: str
    digests: int
    papers: int
    # ((code, name), how many earlier papers) of every pair.
    pairs: tuple[tuple[tuple[str | None, str | None], int], ...]
    # Each feed's newest earlier papers (up to `[site] items_per_feed`), by slug, in full, with
    # their entry times: the part of each feed a build may need.
    tails: dict[str, tuple[Paper, ...]]
    times: dict[str, datetime]
    # Each feed's last earlier month with papers, by slug: (that month, the feed's next month
    # with papers then, the feed's title and description then). The month's archive documents
    # are kept as they are while the last two stay the same.
    volumes: dict[str, tuple[str, str | None, str, str]]
    # How many archive documents the earlier months have.
    documents: int
    # Each earlier search period's number of papers, and the category labels earlier papers
    # show in the search box.
    periods: tuple[tuple[str, int], ...]
    labels: frozenset[str]
    # The newsletter archive's rows of the earlier digests, newest first.
    rows: tuple[dict[str, Any], ...]
