"""RSS 2.0 and Atom 1.0 (feedgen) and JSON Feed 1.1 (standard library) for every feed.

Pure: takes the build context and settings, returns the bytes of each file. Same input, same
bytes: every time in a feed comes from the papers (never the clock), entries keep the catalog's
order, and JSON keeps a fixed key order.

feedgen 1.0.0 has traps, each avoided here on purpose and guarded by a test:
- `add_entry` prepends by default (reversing the order): entries are added with order="append";
- the RSS channel `<link>` is the *last* feed link added: the HTML page is added last;
- `updated`/`lastBuildDate` default to now and `<generator>` carries feedgen's version: both
  are set explicitly;
- `content(type="CDATA")` writes `type="CDATA"` into Atom, which is invalid: content is plain
  text that lxml escapes;
- naive datetimes raise: every time is made aware first;
- XML-illegal characters raise inside lxml: every text is cleaned first;
- entry links lose rel/type/length (a shadowed variable in `atom_entry`): an entry gets one
  link only, the primary one, which Atom reads as rel="alternate" anyway; other links are listed
  in the content.
Authors are written for feedparser's one `entry.author` as well (`feeds.credits`).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from html import escape
from typing import TYPE_CHECKING, Any

from feeds.catalog import FeedInfo, archive_month, feed_list, select
from feeds.config import Settings

# What an entry says lives in feeds.entry; these names are this module's API as well.
from feeds.entry import (
    STARRED_TERM,
    SUMMARY_LENGTH,
    clean,
    entry_authors,
    entry_categories,
    entry_html,
    entry_summary,
    entry_title,
    one_line,
    permalink,
)
from feeds.identity import local_midnight
from feeds.links import entry_link
from feeds.model import BuildContext, Paper

if TYPE_CHECKING:
    from feedgen.feed import FeedGenerator

__all__ = [
    "STARRED_TERM",
    "SUMMARY_LENGTH",
    "clean",
    "entry_authors",
    "entry_categories",
    "entry_html",
    "entry_summary",
    "entry_times",
    "entry_title",
    "feed_updated",
    "json_feed",
    "one_line",
    "permalink",
    "render_feed",
    "render_feeds",
    "xml_documents",
]

GENERATOR = "digest-feeds"
JSON_FEED_VERSION = "https://jsonfeed.org/version/1.1"
# The time of a feed that has no entries: a fixed instant, so an empty feed never churns; the
# year of the tag URIs rather than 1970, which validators flag as implausible.
EMPTY_FEED_TIME = datetime(2020, 1, 1, tzinfo=UTC)


def aware(moment: datetime, tz: tzinfo) -> datetime:
    """feedgen raises on naive datetimes: read a naive time as the configured zone's."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=tz)


def entry_times(
    papers: Iterable[Paper], tz: tzinfo, only: Collection[str] | None = None
) -> dict[str, datetime]:
    """Each paper's entry time (published, updated, pubDate), by key.

    Papers first seen at the same moment (one digest's, in digest order, then rank) get
    distinct times a second apart, the first paper the latest, so readers that sort by date
    keep the curator's order and no two entries share a timestamp (which the W3C validator
    warns about). A digest with a time (a Weibo post's) counts back from it, as its papers
    always did; a digest dated by its day alone starts at midnight and counts *forward* from
    there (the last paper at 00:00:00), so every paper stays on the digest's own day. Computed
    over all papers in context order, so a paper has the same time in every feed; with
    `only`, the walk stops once those keys have their time and their moment is complete.
    """
    times: dict[str, datetime] = {}
    wanted = None if only is None else set(only)
    group: list[str] = []
    current: datetime | None = None

    def settle() -> None:
        if current is None:
            return
        local = current.astimezone(tz)
        day_only = local == local_midnight(local.date(), tz)
        last = len(group) - 1
        for ahead, key in enumerate(group):
            step = last - ahead if day_only else -ahead
            times.setdefault(key, current + timedelta(seconds=step))

    for paper in papers:
        moment = aware(paper.first_seen, tz)
        if moment != current:
            settle()
            if wanted is not None and not wanted:
                return times
            current, group = moment, []
        # A key seen twice keeps its first place; the second still takes a second, as before.
        group.append(paper.key)
        if wanted is not None:
            wanted.discard(paper.key)
    settle()
    return times


def entry_marks(ctx: BuildContext, times: Mapping[str, datetime]) -> dict[str, bytes]:
    """What each paper's entry is made of, by key, as bytes to hash into the mark of whatever
    shows it (an archive document, a month of the search index): its guid, key and entry time
    (`times`), and the content hash of every digest that sights it. An entry is made of those
    alone, so equal marks mean equal entries; computed from a context whose digests may be
    light, once per build for every paper."""
    # Fields joined, and the mark ended (marks are hashed one after the other), by control
    # characters that no guid, key or digest id holds: they are made of URLs, hashes and
    # dates, so distinct entries never give the same bytes. The time as numbers (the moment,
    # and the offset the entry prints): its ISO text cost twice as much, and a `repr` of the
    # whole a third more than this, for the same facts. Each digest's part is made once: most
    # papers are sighted by one digest only.
    sighted = {digest.id: f"{digest.id}\x1d{digest.content_hash}" for digest in ctx.digests}
    marks: dict[str, bytes] = {}
    for paper in ctx.papers:
        item = paper.item
        moment = times[item.key]
        ids = paper.digest_ids
        if len(ids) == 1 and ids[0] in sighted:
            sightings = sighted[ids[0]]
        else:
            sightings = "\x1e".join(sighted.get(d, f"{d}\x1d") for d in ids)
        marks[item.key] = (
            f"{item.guid}\x1f{item.key}\x1f{moment.timestamp()}\x1f{moment.utcoffset()}"
            f"\x1f{sightings}\x1c"
        ).encode()
    return marks


def feed_updated(papers: Sequence[Paper], times: Mapping[str, datetime]) -> datetime:
    """The newest entry's time; the fixed EMPTY_FEED_TIME when there is none."""
    if not papers:
        return EMPTY_FEED_TIME
    return max((times[paper.key] for paper in papers), key=lambda m: m.timestamp())


def render_feeds(ctx: BuildContext, settings: Settings) -> dict[str, bytes]:
    """Every feed of the catalog as "feeds/<slug>.rss", ".atom" and ".json"."""
    limit = settings.site.items_per_feed
    chosen = [(feed, select(ctx, feed, limit)) for feed in feed_list(ctx, settings)]
    needed = {paper.key for _, papers in chosen for paper in papers}
    times = entry_times(ctx.papers, settings.site.tz, needed)
    if ctx.sealed is not None:
        times.update(ctx.sealed.times)
    # A paper is in "all", its category and maybe "starred", each in two formats: its content
    # HTML is made once.
    contents: dict[str, str] = {}
    files: dict[str, bytes] = {}
    for feed, papers in chosen:
        files.update(render_feed(feed, papers, settings, times, contents))
    return files


def render_feed(
    feed: FeedInfo,
    papers: Sequence[Paper],
    settings: Settings,
    times: Mapping[str, datetime] | None = None,
    contents: dict[str, str] | None = None,
) -> dict[str, bytes]:
    """One feed's three files, entries in the order given; `times` from `entry_times` over all
    papers (default: over these papers alone); `contents` keeps entry HTML by paper key across
    calls.

    The RSS and Atom subscription documents link `prev-archive` to the archive document of
    the month of their newest paper (`feeds.archive`), and name the WebSub hub when one is set
    (`[site] websub_hub`; the JSON Feed in its `hubs`).
    """
    if times is None:
        times = entry_times(papers, settings.site.tz)
    if contents is None:
        contents = {}
    site = settings.site
    links: dict[str, list[tuple[str, str]]] = {"atom": [], "rss": []}
    for ext, rels in links.items():
        if site.websub_hub:
            # WebSub discovery: the hub beside the self link feedgen writes.
            rels.append(("hub", site.websub_hub))
        if papers:
            month = archive_month(papers[0], site.tz)
            rels.append(("prev-archive", site.url(feed.archive(month, ext))))
    atom, rss = xml_documents(
        feed, papers, settings, times, contents,
        atom_path=feed.atom, rss_path=feed.rss, links=links, archive=False,
    )
    return {
        feed.rss: rss,
        feed.atom: atom,
        feed.json: json_feed(feed, papers, settings, times, contents),
    }


def xml_documents(
    feed: FeedInfo,
    papers: Sequence[Paper],
    settings: Settings,
    times: Mapping[str, datetime],
    contents: dict[str, str],
    *,
    atom_path: str,
    rss_path: str,
    links: Mapping[str, Sequence[tuple[str, str]]],
    archive: bool,
) -> tuple[bytes, bytes]:
    """The Atom and RSS documents of `papers` under `feed`'s identity, each with its self link
    (`atom_path`, `rss_path`), the feed-level `links` of its format ("atom", "rss": (rel, URL)
    pairs) and, for an RFC 5005 archive document, the `fh:archive` mark."""
    from feeds import feedlinks

    generator = _feedgen(feed, papers, settings, times, contents)
    generator.register_extension(feedlinks.NAMESPACE, feedlinks.FeedLinksExtension)
    generator.feedlinks.archive(archive)
    site = settings.site
    # One generator serves both XML formats: only the self link differs, and the HTML page
    # goes last because feedgen makes the last link the RSS channel <link>.
    generator.link(href=site.url(atom_path), rel="self", type="application/atom+xml", replace=True)
    generator.link(href=site.url(feed.html), rel="alternate", type="text/html")
    generator.feedlinks.links(list(links.get("atom", ())))
    atom = generator.atom_str(pretty=True, encoding="UTF-8", xml_declaration=True)
    generator.link(href=site.url(rss_path), rel="self", type="application/rss+xml", replace=True)
    generator.link(href=site.url(feed.html), rel="alternate", type="text/html")
    generator.feedlinks.links(list(links.get("rss", ())))
    rss = generator.rss_str(pretty=True, encoding="UTF-8", xml_declaration=True)
    return atom, rss


def _feedgen(
    feed: FeedInfo,
    papers: Sequence[Paper],
    settings: Settings,
    times: Mapping[str, datetime],
    contents: dict[str, str],
) -> FeedGenerator:
    from feedgen.feed import FeedGenerator

    from feeds import credits

    site = settings.site
    generator = FeedGenerator()
    generator.register_extension(
        credits.NAMESPACE, credits.CreditsExtension, credits.CreditsEntryExtension, atom=False
    )
    generator.id(site.url(feed.atom))
    generator.title(one_line(feed.title))
    generator.subtitle(one_line(feed.description))
    generator.description(one_line(feed.description))
    generator.language(site.language)
    generator.updated(feed_updated(papers, times))
    generator.generator(GENERATOR)
    author: dict[str, str] = {"name": one_line(site.author) or GENERATOR}
    if site.author_email:
        author["email"] = one_line(site.author_email)
        generator.managingEditor(f"{author['email']} ({author['name']})")
    generator.author(author)
    for paper in papers:
        entry = generator.add_entry(order="append")
        _fill_entry(entry, paper, times[paper.key], _content(paper, contents, settings), settings)
    return generator


def _fill_entry(
    entry: Any, paper: Paper, moment: datetime, content: str, settings: Settings
) -> None:
    from feeds import credits

    item = paper.item
    guid = one_line(item.guid) or item.key
    entry.guid(guid, permalink=permalink(guid))
    entry.title(entry_title(item))
    link = entry_link(item, settings.site.url)
    if link:
        entry.link(href=link)
    entry.published(moment)
    entry.updated(moment)
    authors = entry_authors(item)
    if authors:
        # Each author, then one credit naming all: what feedparser's one entry.author shows.
        entry.author([{"name": name} for name in credits.credited(authors)])
        entry.credits.authors(authors)
    for term, label in entry_categories(item):
        entry.category(term=term, label=label)
    summary = entry_summary(item)
    if summary:
        # Atom type="html" and RSS <description> are both read as HTML: escape the text.
        entry.summary(escape(summary), type="html")
    entry.content(content, type="html")


def _content(paper: Paper, contents: dict[str, str], settings: Settings) -> str:
    html = contents.get(paper.key)
    if html is None:
        html = contents[paper.key] = entry_html(paper, settings.site.url)
    return html


def json_feed(
    feed: FeedInfo,
    papers: Sequence[Paper],
    settings: Settings,
    times: Mapping[str, datetime],
    contents: dict[str, str] | None = None,
) -> bytes:
    """JSON Feed 1.1, keys in the specification's order, UTF-8, ending with a newline."""
    site = settings.site
    known = {} if contents is None else contents
    document: dict[str, Any] = {
        "version": JSON_FEED_VERSION,
        "title": one_line(feed.title),
        "home_page_url": site.url(feed.html),
        "feed_url": site.url(feed.json),
        "description": one_line(feed.description),
        "authors": [{"name": one_line(site.author) or GENERATOR}],
        "language": site.language,
        **({"hubs": [{"type": "WebSub", "url": site.websub_hub}]} if site.websub_hub else {}),
        "items": [
            _json_item(paper, times[paper.key], _content(paper, known, settings), settings)
            for paper in papers
        ],
    }
    text = json.dumps(document, ensure_ascii=False, indent=2)
    return (text + "\n").encode("utf-8")


def _json_item(
    paper: Paper, moment: datetime, content: str, settings: Settings
) -> dict[str, Any]:
    item = paper.item
    entry: dict[str, Any] = {"id": one_line(item.guid) or item.key}
    link = entry_link(item, settings.site.url)
    if link:
        entry["url"] = link
    entry["title"] = entry_title(item)
    entry["content_html"] = content
    summary = entry_summary(item)
    if summary:
        entry["summary"] = summary
    entry["date_published"] = moment.isoformat()
    authors = entry_authors(item)
    if authors:
        entry["authors"] = [{"name": name} for name in authors]
    tags = _labels(entry_categories(item))
    if tags:
        entry["tags"] = tags
    entry["_digest_feeds"] = {
        "key": item.key,
        "category": one_line(item.category) or None,
        "category_name": one_line(item.category_name) or None,
        "starred": item.starred,
        "title_zh": one_line(item.title_zh) or None,
    }
    return entry


def _labels(pairs: Iterable[tuple[str, str]]) -> list[str]:
    return [label for _, label in pairs]
