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
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime, time, timedelta, tzinfo
from html import escape
from typing import TYPE_CHECKING, Any

from feeds.catalog import STARRED_LABEL, FeedInfo, feed_list, select
from feeds.config import Settings
from feeds.issue import HEADINGS
from feeds.links import entry_link, link_label, paper_page, safe_url
from feeds.model import BuildContext, Item, Link, Paper
from feeds.textutil import strip_illegal

if TYPE_CHECKING:
    from feedgen.feed import FeedGenerator

GENERATOR = "digest-feeds"
JSON_FEED_VERSION = "https://jsonfeed.org/version/1.1"
# The time of a feed that has no entries: a fixed instant, so an empty feed never churns; the
# year of the tag URIs rather than 1970, which validators flag as implausible.
EMPTY_FEED_TIME = datetime(2020, 1, 1, tzinfo=UTC)
STARRED_TERM = "starred"
SUMMARY_LENGTH = 280

_SPACES = re.compile(r"\s+")


def clean(text: str | None) -> str:
    """Text safe for XML: illegal characters removed, line ends normalized, edges trimmed."""
    if not text:
        return ""
    return strip_illegal(text.replace("\r\n", "\n").replace("\r", "\n")).strip()


def one_line(text: str | None) -> str:
    """Clean text on one line (titles, names): every run of whitespace becomes one space."""
    return _SPACES.sub(" ", clean(text)).strip()


def entry_title(item: Item) -> str:
    return one_line(item.title) or one_line(item.title_zh) or item.key


def entry_authors(item: Item) -> list[str]:
    return [name for name in (one_line(author) for author in item.authors) if name]


def entry_categories(item: Item) -> list[tuple[str, str]]:
    """(term, label) pairs: the category code and its name, then the starred mark."""
    pairs: list[tuple[str, str]] = []
    code = one_line(item.category)
    if code:
        pairs.append((code, one_line(item.category_name) or code))
    if item.starred:
        pairs.append((STARRED_TERM, STARRED_LABEL))
    return pairs


def permalink(guid: str) -> bool:
    """RSS isPermaLink: true only when the guid is itself a web page."""
    return safe_url(guid) is not None


def entry_summary(item: Item) -> str:
    """A short plain-text summary: the Chinese summary, else the abstract, else the curator's
    notes, else the Chinese title; cut at a sentence or word."""
    text = (
        one_line(item.summary_zh)
        or one_line(item.abstract)
        or one_line(item.notes)
        or one_line(item.title_zh)
    )
    if len(text) <= SUMMARY_LENGTH:
        return text
    cut = text[:SUMMARY_LENGTH]
    # End at a sentence if one ends late enough, else at a word (Chinese has no spaces).
    sentence = max(cut.rfind("。"), cut.rfind(". "))
    space = cut.rfind(" ")
    if sentence > SUMMARY_LENGTH // 2:
        return cut[: sentence + 1]
    if space > SUMMARY_LENGTH // 2:
        cut = cut[:space]
    return cut.rstrip() + "…"


def _paragraphs(text: str | None, lang: str | None = None) -> list[str]:
    attr = f' lang="{lang}"' if lang else ""
    blocks = [block.strip() for block in re.split(r"\n\s*\n", clean(text))]
    return [
        f"<p{attr}>" + "<br>".join(escape(line.strip()) for line in block.split("\n")) + "</p>"
        for block in blocks
        if block
    ]


def _link_html(link: Link) -> str:
    name = link_label(link)
    href = safe_url(link.href)
    if href is None:
        # Not a web address (javascript:, data:, a typo): shown, never made clickable.
        return f"<li>{escape(name)}: {escape(one_line(link.href))}</li>"
    return f'<li>{escape(name)}: <a href="{escape(href)}">{escape(href)}</a></li>'


def entry_html(paper: Paper, site_url: Callable[[str], str] | None = None) -> str:
    """The HTML body of an entry, every piece of input escaped: Chinese title, authors,
    affiliations, category and star, the issue that showed it (linked to the paper's place in
    its web copy when `site_url` makes paths absolute), Chinese summary, English abstract, the
    curator's commentary, links.
    """
    item = paper.item
    parts: list[str] = []
    title_zh = one_line(item.title_zh)
    if title_zh:
        parts.append(f'<p lang="zh-CN"><strong>{escape(title_zh)}</strong></p>')
    authors = entry_authors(item)
    if authors:
        names = ", ".join(escape(name) for name in authors)
        if item.authors_truncated:
            names += " et al."
        parts.append(f"<p>作者 (Authors): {names}</p>")
    affiliations = [name for name in (one_line(a) for a in item.affiliations) if name]
    if affiliations:
        parts.append(f"<p>机构 (Affiliations): {escape('; '.join(affiliations))}</p>")
    categories = entry_categories(item)
    if categories:
        shown = ", ".join(escape(_category_text(term, label)) for term, label in categories)
        parts.append(f"<p>分类 (Category): {shown}</p>")
    issue = _issue_html(item, site_url)
    if issue:
        parts.append(issue)
    if clean(item.summary_zh):
        parts.append("<h3>摘要</h3>")
        parts.extend(_paragraphs(item.summary_zh, "zh-CN"))
    if clean(item.abstract):
        parts.append("<h3>Abstract</h3>")
        parts.extend(_paragraphs(item.abstract, "en"))
    if clean(item.notes):
        parts.append("<h3>备注 (Notes)</h3>")
        parts.extend(_paragraphs(item.notes))
    links = _unique_links(item)
    if links:
        parts.append("<ul>" + "".join(_link_html(link) for link in links) + "</ul>")
    if not parts:
        # A bare weekly pick: Atom content must not be blank, so it says the title.
        parts.append(f"<p>{escape(entry_title(item))}</p>")
    return "\n".join(parts)


def _issue_html(item: Item, site_url: Callable[[str], str] | None) -> str:
    """"期刊 (Issue): Weekly picks 2020-07-11", linked to the paper's place in that issue."""
    page = paper_page(item)
    if page is None:
        return ""
    heading = HEADINGS["weekly" if item.section == "weekly" else "daily"]
    name = escape(f"{heading} {one_line(item.digest_id)[:10]}")
    if site_url is None:
        return f"<p>期刊 (Issue): {name}</p>"
    return f'<p>期刊 (Issue): <a href="{escape(site_url(page))}">{name}</a></p>'


def _category_text(term: str, label: str) -> str:
    if term == STARRED_TERM:
        return f"★ {label}"
    return f"{label} ({term})" if label != term else term


def _unique_links(item: Item) -> list[Link]:
    """Every link of the item once, the item's own URL first when the links lack it."""
    candidates = list(item.links)
    if item.url and item.url not in {link.href for link in item.links}:
        candidates.insert(0, Link(kind="other", href=item.url))
    seen: set[str] = set()
    links: list[Link] = []
    for link in candidates:
        if link.href and link.href not in seen:
            seen.add(link.href)
            links.append(link)
    return links


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
        day_only = current.astimezone(tz).time() == time(0)
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
    calls."""
    if times is None:
        times = entry_times(papers, settings.site.tz)
    if contents is None:
        contents = {}
    generator = _feedgen(feed, papers, settings, times, contents)
    site = settings.site
    # One generator serves both XML formats: only the self link differs, and the HTML page
    # goes last because feedgen makes the last link the RSS channel <link>.
    generator.link(href=site.url(feed.atom), rel="self", type="application/atom+xml", replace=True)
    generator.link(href=site.url(feed.html), rel="alternate", type="text/html")
    atom = generator.atom_str(pretty=True, encoding="UTF-8", xml_declaration=True)
    generator.link(href=site.url(feed.rss), rel="self", type="application/rss+xml", replace=True)
    generator.link(href=site.url(feed.html), rel="alternate", type="text/html")
    rss = generator.rss_str(pretty=True, encoding="UTF-8", xml_declaration=True)
    return {
        feed.rss: rss,
        feed.atom: atom,
        feed.json: json_feed(feed, papers, settings, times, contents),
    }


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
        credits.NAMESPACE, credits.CreditsExtension, credits.CreditsEntryExtension
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
        # Atom's <author>s; dc:creators for RSS, and the one credit feedparser shows.
        entry.author([{"name": name} for name in authors])
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
