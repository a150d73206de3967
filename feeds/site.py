"""The static site: the index page, one human page per feed, and the OPML list of feeds.

Pure like every generator: the build context and settings in, bytes out. Pages link to each
other with relative URLs (the site works from any folder, even file://); what leaves the site
(autodiscovery, OPML) uses absolute URLs from `[site] base_url`. Templates live in
`templates/site/` (jinja2, autoescaped); no XSLT. The one script, `search.js`, only adds the
search box (over the index `feeds.search_build` makes): every page works without it.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

from feeds.catalog import FeedInfo, feed_list, select
from feeds.config import Settings
from feeds.links import link_label, paper_page, primary_link, safe_url
from feeds.model import BuildContext, Digest, Item, Paper
from feeds.templating import environment, render, source
from feeds.textutil import strip_illegal

if TYPE_CHECKING:
    import jinja2

# (format, MIME type of the autodiscovery link, FeedInfo attribute holding its path)
FORMATS = (
    ("RSS", "application/rss+xml", "rss"),
    ("Atom", "application/atom+xml", "atom"),
    ("JSON Feed", "application/feed+json", "json"),
)


def render_site(ctx: BuildContext, settings: Settings) -> dict[str, bytes]:
    """index.html, feeds/<slug>.html for every feed, and feeds.opml."""
    env = _environment(settings)
    feeds = feed_list(ctx, settings)
    limit = settings.site.items_per_feed
    site = _site_view(settings)
    files: dict[str, bytes] = {}

    latest = ctx.digests[0] if ctx.digests else None
    index = render(
        env, "index.html",
        site=site,
        root="",
        feeds=[_feed_view(feed, settings, len(select(ctx, feed, limit))) for feed in feeds],
        alternates=[alt for feed in feeds for alt in _alternates(feed, settings)],
        latest=_digest_view(latest, settings) if latest else None,
        newsletter=_signup_view(feeds, settings),
        search=settings.site.search,
    )
    files["index.html"] = index.encode("utf-8")

    for feed in feeds:
        papers = select(ctx, feed, limit)
        page = render(
            env, "feed.html",
            site=site,
            root="../",
            feed=_feed_view(feed, settings, len(papers)),
            alternates=_alternates(feed, settings),
            papers=[_paper_view(paper.item, settings, paper, "../") for paper in papers],
        )
        files[feed.html] = page.encode("utf-8")

    newest = ctx.papers[0].first_seen if ctx.papers else None
    opml = render(
        env, "feeds.opml",
        site=site,
        feeds=[_feed_view(feed, settings, 0) for feed in feeds],
        modified=_rfc822(newest) if newest else None,
    )
    files["feeds.opml"] = opml.encode("utf-8")
    if settings.site.search:
        # The search box's script, for the index and the newsletter archive (feeds.search).
        files["search.js"] = source(env, "search.js").encode("utf-8")
    return files


def _environment(settings: Settings) -> jinja2.Environment:
    import markupsafe

    def finalize(value: object) -> object:
        # Every text that reaches a page or the OPML loses XML-illegal characters; markup
        # (a macro's output) is already clean and must stay markup, not be escaped again.
        if isinstance(value, str) and not isinstance(value, markupsafe.Markup):
            return strip_illegal(value)
        return value

    return environment(settings.paths.templates / "site", autoescape=True, finalize=finalize)


def _signup_view(feeds: list[FeedInfo], settings: Settings) -> dict[str, Any] | None:
    """The newsletter's subscribe form, posting to the endpoint; None without `[web]
    public_url` (a static site alone has nowhere to post to)."""
    action = settings.web.url("/subscribe")
    if action is None:
        return None
    return {
        "action": action,
        "categories": [
            {"code": feed.category, "label": feed.label}
            for feed in feeds
            if feed.kind == "category" and feed.category
        ],
    }


def _site_view(settings: Settings) -> dict[str, Any]:
    site = settings.site
    return {
        "title": site.title,
        "description": site.description,
        "author": site.author,
        "language": site.language,
        "url": site.url(""),
        "opml_url": site.url("feeds.opml"),
    }


def _feed_view(feed: FeedInfo, settings: Settings, count: int) -> dict[str, Any]:
    return {
        "slug": feed.slug,
        "title": feed.title,
        "label": feed.label,
        "description": feed.description,
        "kind": feed.kind,
        "count": count,
        "html": feed.html,
        "html_url": settings.site.url(feed.html),
        "rss_url": settings.site.url(feed.rss),
        "formats": [
            {"name": name, "type": mime, "path": getattr(feed, attr),
             "url": settings.site.url(getattr(feed, attr))}
            for name, mime, attr in FORMATS
        ],
    }


def _alternates(feed: FeedInfo, settings: Settings) -> list[dict[str, str]]:
    """The <link rel="alternate"> of a feed, one per format, with absolute URLs."""
    return [
        {
            "type": mime,
            "title": f"{feed.title} ({name})",
            "href": settings.site.url(getattr(feed, attr)),
        }
        for name, mime, attr in FORMATS
    ]


def _digest_view(digest: Digest, settings: Settings) -> dict[str, Any]:
    seen: set[str] = set()
    papers = []
    for item in digest.items:
        # The weekly list can name a paper twice; the page shows it once.
        if item.key in seen:
            continue
        seen.add(item.key)
        papers.append(_paper_view(item, settings, None, ""))
    return {
        "id": digest.id,
        "title": digest.title,
        "summary": digest.summary,
        "date": _day(digest.date, settings),
        "weekly": digest.format == "weekly",
        "papers": papers,
        "newsletter": f"newsletter/{digest.id}.html" if papers else None,
    }


def _paper_view(
    item: Item, settings: Settings, paper: Paper | None, root: str
) -> dict[str, Any]:
    """One paper for the templates; `root` leads from the page to the site's top folder."""
    when = paper.first_seen if paper else item.published
    # Without a source link, the title leads to the paper's place in its issue, as in the feeds.
    page = paper_page(item)
    return {
        "title": item.title or item.title_zh or item.key,
        "title_zh": item.title_zh if item.title and item.title_zh else None,
        "url": primary_link(item) or (root + page if page else None),
        "category": item.category,
        "category_name": item.category_name,
        "starred": item.starred,
        "authors": ", ".join(item.authors) + (" …" if item.authors_truncated else ""),
        "affiliations": " & ".join(item.affiliations),
        "summary_zh": item.summary_zh,
        "abstract": item.abstract,
        "notes": _commentary(item.notes),
        "date": _day(when, settings),
        # Only safe URLs become links: a `javascript:` URL in a digest is no link at all.
        "links": [
            {"name": link_label(link, name_hosts=True), "href": href}
            for link in item.links
            if (href := safe_url(link.href)) is not None
        ],
    }


def _commentary(text: str | None) -> list[list[str]]:
    """The curator's commentary as paragraphs of lines: written line by line, shown so."""
    if not text:
        return []
    blocks = re.split(r"\n\s*\n", text.replace("\r\n", "\n").replace("\r", "\n"))
    paragraphs = [[line.strip() for line in block.split("\n") if line.strip()] for block in blocks]
    return [lines for lines in paragraphs if lines]


def _day(moment: datetime | None, settings: Settings) -> str:
    if moment is None:
        return ""
    return moment.astimezone(settings.site.tz).strftime("%Y-%m-%d")


def _rfc822(moment: datetime) -> str:
    from email.utils import format_datetime

    return format_datetime(moment)
