"""The newsletter: one bilingual HTML email per digest, its plain-text twin, and the archive.

The HTML comes from jinja2 templates in `templates/newsletter/` (autoescaped) and goes through
premailer, which inlines every CSS rule into `style` attributes for clients that ignore `<style>`
(Gmail's non-Gmail accounts, Outlook) and keeps the `@media` rules (phone layout, dark mode) in a
`<style>` block with their `!important`. The archive is a web page, not an email: it keeps the
same stylesheet in a `<style>` block, uninlined. The text part is written for reading, not
stripped from the HTML: wrapped at 72 columns, Chinese by display width (`textutil.wrap`).
What each email shows (papers, cleaned text, safe links) comes from `feeds.issue`.

Every message is kept under `settings.newsletter.size_budget` bytes as sent (Gmail clips longer
ones): when a digest is too big, the email leaves things out in the planned order of
`feeds.issue.LEVELS` and says so, linking to the full web version. See docs/newsletter.md.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from feeds import message
from feeds.catalog import FeedInfo, category_slug
from feeds.config import Settings
from feeds.errors import ConfigError
from feeds.issue import (
    LEVELS,
    Issue,
    clean_line,
    degrade,
    distinct,
    issue_for,
    masthead,
    short_title,
    shorten,
)
from feeds.links import issue_page, safe_url
from feeds.message import Newsletter as Newsletter
from feeds.model import BuildContext, Digest
from feeds.templating import environment, render, source
from feeds.textutil import wrap

if TYPE_CHECKING:
    import jinja2

TEXT_WIDTH = 72
# Room left in the budget for what differs per recipient (To, Message-ID, a personal
# unsubscribe link): the budget is checked once per category set, not once per recipient.
# The most a recipient adds, measured: a 254-character address with a 200-character Chinese
# name (`MAX_NAME`), their token in five places (both parts and List-Unsubscribe), 3.5 KB.
RECIPIENT_HEADROOM = 4096
TEMPLATE_FILES = ("email.html", "email.txt", "archive.html", "newsletter.css")


# ---------------------------------------------------------------------------------------------
# Public API


def render_newsletter(
    digest: Digest,
    settings: Settings,
    *,
    categories: frozenset[str] | None = None,
    unsubscribe_url: str | None = None,
    preferences_url: str | None = None,
) -> Newsletter | None:
    """The email for `digest`, restricted to `categories`, within the size budget, with the
    subscriber's links to leave and to change categories.

    None when the category filter leaves no paper: such subscribers get no email that day.
    """
    issue = issue_for(digest, categories)
    if not issue.papers:
        return None
    return _within_budget(issue, settings, unsubscribe_url, preferences_url)[0]


def render_issue_files(digest: Digest, settings: Settings) -> dict[str, bytes]:
    """newsletter/<id>.html and .txt (the full web version), .eml (the message as sent), and
    newsletter/<id>.<slug>.html for each category of a daily digest (`category_copies`)."""
    issue = issue_for(digest, None)
    if not issue.papers:
        return {}
    sent, eml = _within_budget(issue, settings, None, None)
    full = sent
    if sent.degradation:
        full = _render(
            issue, settings, level=0, limit=sent.count, unsubscribe_url=None, preferences_url=None
        )
    stem = f"newsletter/{digest.id}"
    return {
        f"{stem}.html": full.html.encode("utf-8"),
        f"{stem}.txt": full.text.encode("utf-8"),
        f"{stem}.eml": eml,
        **category_copies(digest, settings),
    }


def category_copies(digest: Digest, settings: Settings) -> dict[str, bytes]:
    """The web copy of what a subscriber to one category receives, for each category of a
    daily digest: `newsletter/<id>.<slug>.html`, linked from the footer of subset emails.

    Complete (never shortened) and a web page like the archive: the stylesheet stays in its
    `<style>` block, which a browser applies, so no inlining. One per category rather than one
    per set of categories: the sets are the subscribers', which a build does not know, and a
    subscriber to several categories finds each of them on its own page.
    """
    if digest.format == "weekly":
        return {}  # weekly picks go to everybody whole: the issue's own web copy is theirs
    codes: dict[str, set[str]] = {}
    for item in digest.items:
        if item.category:
            codes.setdefault(category_slug(item.category), set()).add(item.category)
    files: dict[str, bytes] = {}
    for slug, group in sorted(codes.items()):
        issue = issue_for(digest, frozenset(group))
        page = _render(
            issue, settings, level=0, limit=len(issue.papers), unsubscribe_url=None,
            preferences_url=None, inline=False,
        )
        files[issue_page(digest.id, slug)] = page.html.encode("utf-8")
    return files


def render_archive(ctx: BuildContext, settings: Settings) -> dict[str, bytes]:
    """newsletter/index.html: every issue, newest first.

    A web page, not an email: the stylesheet stays in a `<style>` block (no CSS inlining), and
    each row needs only what light digests keep (titles, keys, stars), so ten years of issues
    cost a template loop, not a newsletter rendering each.
    """
    rows = archive_rows(ctx.digests)
    if ctx.sealed is not None:
        rows += ctx.sealed.rows
    env = _environment(settings.paths.templates)
    html = render(
        env, "archive.html",
        site_title=clean_line(settings.site.title),
        site_url=settings.site.url(""),
        feed_url=settings.site.url("feeds/all.rss"),
        css=_css(env),
        issues=rows,
        language=settings.site.language,
        search=settings.site.search,
    )
    return {"newsletter/index.html": html.encode("utf-8")}


def archive_rows(digests: Iterable[Digest]) -> list[dict[str, Any]]:
    """The newsletter archive's row of each digest, in the order given."""
    rows = []
    for digest in digests:
        items = distinct(digest.items)
        if not items or not digest.id:
            continue
        date, heading, summary = masthead(digest)
        rows.append(
            {
                "id": digest.id,
                "date": date,
                "heading": heading,
                # The summary line, or the first Chinese titles for digests without one.
                "summary": shorten(summary or "、".join(short_title(i) for i in items[:6])),
                "count": len(items),
                "starred": sum(i.starred for i in items),
                "weekly": digest.format == "weekly",
            }
        )
    return rows


# ---------------------------------------------------------------------------------------------
# Rendering


def _render(
    issue: Issue,
    settings: Settings,
    *,
    level: int,
    limit: int,
    unsubscribe_url: str | None,
    preferences_url: str | None,
    inline: bool = True,
) -> Newsletter:
    papers = [degrade(p, level) for p in issue.papers[:limit]]
    count = len(issue.papers)
    digest = issue.digest
    subject = _subject(settings, issue, count)
    preheader = _preheader(issue)
    omitted = [s for s in LEVELS[1 : level + 1] if s]
    if limit < count and LEVELS[-1] not in omitted:
        omitted.append(LEVELS[-1])
    web_url = settings.site.url(issue_page(digest.id))
    unsubscribe = safe_url(unsubscribe_url) or message.unsubscribe_mailto(settings)
    context: dict[str, Any] = {
        "subject": subject,
        "site_title": clean_line(settings.site.title),
        "language": settings.site.language,
        "heading": issue.heading,
        "date": issue.date,
        "summary": issue.summary,
        "preheader": preheader,
        "count": count,
        "shown": len(papers),
        "categories": sorted(issue.categories or ()) if issue.filtered else None,
        # Titles only (level 4 on): every paper in the compact list.
        "featured": [p for p in papers if p.section != "more"] if level < 4 else [],
        "more": [p for p in papers if p.section == "more"] if level < 4 else papers,
        "omitted": omitted,
        "web_url": web_url,
        "site_url": settings.site.url(""),
        "feed_url": settings.site.url("feeds/all.rss"),
        "category_feeds": _category_feeds(issue, settings),
        "category_pages": _category_pages(issue, settings),
        "archive_url": settings.site.url("newsletter/index.html"),
        "unsubscribe": unsubscribe,
        "preferences": safe_url(preferences_url),
    }
    env = _environment(settings.paths.templates)
    raw_html = render(env, "email.html", css=_css(env), **context)
    text = render(env, "email.txt", **context)
    return Newsletter(
        digest_id=digest.id,
        subject=subject,
        html=inline_css(raw_html) if inline else raw_html,
        text=_tidy_text(text),
        count=count,
        categories=issue.categories,
        date=_digest_datetime(digest, settings),
        title=f"{clean_line(settings.site.title)} · {issue.heading} {issue.date}",
        degradation=level if limit == count else len(LEVELS) - 1,
    )


def _within_budget(
    issue: Issue, settings: Settings, unsubscribe_url: str | None, preferences_url: str | None
) -> tuple[Newsletter, bytes]:
    """The fullest rendering whose archive-copy message fits the budget, and that message."""
    budget = settings.newsletter.size_budget - RECIPIENT_HEADROOM
    limit = len(issue.papers)
    level = 0
    while True:
        letter = _render(
            issue, settings, level=level, limit=limit, unsubscribe_url=unsubscribe_url,
            preferences_url=preferences_url,
        )
        raw = message.as_bytes(message.compose(letter, settings, unsubscribe_url=unsubscribe_url))
        if len(raw) <= budget:
            return letter, raw
        if level < len(LEVELS) - 1:
            level += 1
        elif limit > 1:
            # Titles only and still too big: keep the share of papers that fits, with a margin.
            limit = max(1, min(limit - 1, int(limit * budget / len(raw) * 0.95)))
        elif limit == 1:
            # Not even one title fits (a tiny budget): the email only points to the web version.
            limit = 0
        else:
            return letter, raw


def _subject(settings: Settings, issue: Issue, count: int) -> str:
    noun = "paper" if count == 1 else "papers"
    parts = [clean_line(settings.site.title)]
    parts.append(f"weekly picks {issue.date}" if issue.digest.format == "weekly" else issue.date)
    head = " ".join(p for p in parts if p)
    if issue.filtered:
        return f"{head} · {', '.join(sorted(issue.categories or ()))} · {count} {noun}"
    return f"{head} · {count} {noun}"


def _category_feeds(issue: Issue, settings: Settings) -> list[tuple[str, str]]:
    """(code, RSS URL) of each category a subset subscriber takes; none for everybody else,
    whose footer names the feed of all papers."""
    if not issue.filtered:
        return []
    feeds = []
    for code in sorted(issue.categories or ()):
        feed = FeedInfo(category_slug(code), code, code, "category", code)
        feeds.append((clean_line(code), settings.site.url(feed.rss)))
    return feeds


def _category_pages(issue: Issue, settings: Settings) -> list[tuple[str, str]]:
    """(code, URL) of the web copy of each category a subset subscriber received papers of
    (`category_copies`): what their email holds, on the web."""
    if not issue.filtered:
        return []
    shown = {p.category for p in issue.papers}
    pages: dict[str, tuple[str, str]] = {}
    for code in sorted(issue.categories or ()):
        slug = category_slug(code)
        if code in shown and slug not in pages:
            pages[slug] = (clean_line(code), settings.site.url(issue_page(issue.digest.id, slug)))
    return list(pages.values())


def _preheader(issue: Issue) -> str:
    if issue.summary and not issue.filtered:
        text = issue.summary
    else:
        # A subset (or a digest without summary) gets a summary of what it really holds.
        text = "、".join(p.title_zh or p.title for p in issue.papers[:6])
    return shorten(text)


def _digest_datetime(digest: Digest, settings: Settings) -> datetime:
    if digest.date is not None:
        return digest.date
    # An undated digest reaches here only through tests; the build resolves every date first.
    return datetime.fromisoformat(digest.id[:10]).replace(tzinfo=settings.site.tz)


def _tidy_text(text: str) -> str:
    text = re.sub(r"[ \t]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n") + "\n"


@functools.lru_cache(maxsize=4)
def _environment(templates: Path) -> jinja2.Environment:

    folder = templates / "newsletter"
    missing = [name for name in TEMPLATE_FILES if not (folder / name).is_file()]
    if missing:
        raise ConfigError(
            f"newsletter templates missing: {', '.join(missing)}",
            path=str(folder),
            hint="[paths] templates must hold newsletter/ as shipped in templates/",
        )
    return environment(folder, autoescape=("html",), filters={"wrap": _wrap_filter})


def _css(env: jinja2.Environment) -> str:
    return source(env, "newsletter.css")


def _wrap_filter(text: str | None, indent: int = 0, first: str | None = None) -> str:
    """Jinja filter: wrap paragraphs of `text`, indented; `first` prefixes the first line."""
    if not text:
        return ""
    pad = " " * indent
    out: list[str] = []
    for paragraph in text.split("\n\n"):
        if out:
            out.append("")
        # A line break inside a paragraph is the writer's (the curator's commentary): kept.
        for line in paragraph.split("\n"):
            out.extend(wrap(line, TEXT_WIDTH, pad))
    if first is not None and out:
        out[0] = first + out[0][indent:]
    return "\n".join(out)


def inline_css(html: str) -> str:
    """Move the template's CSS into style attributes; @media rules stay in <style>."""
    inlined: str = _premailer().transform(html, pretty_print=False)
    return inlined


@functools.lru_cache(maxsize=1)
def _premailer() -> Any:
    # Imported here: premailer pulls in requests and cssutils, which a no-op cron run never needs.
    import logging

    import cssutils
    from premailer import Premailer

    # cssutils reports every mso-* and other email-only property it does not know.
    cssutils.log.setLevel(logging.CRITICAL)

    class TemplatePremailer(Premailer):  # type: ignore[misc]
        """Premailer that turns each stylesheet into rules once, not once per email.

        Every newsletter carries the same stylesheet, and premailer re-serializes its rules and
        the leftover @media blocks on every call: two thirds of its time. The parsed results
        are kept, keyed by the stylesheet's text (and the leftover list, which lives as long).
        """

        _rules: ClassVar[dict[tuple[str, int], tuple[list[Any], list[Any]]]] = {}
        _leftover_text: ClassVar[dict[int, str]] = {}

        def _parse_style_rules(self, css_body: str, ruleset_index: int) -> Any:
            key = (css_body, ruleset_index)
            if key not in self._rules:
                self._rules[key] = super()._parse_style_rules(css_body, ruleset_index)
            rules, leftover = self._rules[key]
            return list(rules), leftover

        def _css_rules_to_string(self, rules: list[Any]) -> str:
            key = id(rules)
            if key not in self._leftover_text:
                self._leftover_text[key] = super()._css_rules_to_string(rules)
            return self._leftover_text[key]

    return TemplatePremailer(
        base_url=None,
        keep_style_tags=False,
        strip_important=False,
        allow_network=False,
        disable_validation=True,
        cssutils_logging_level=logging.CRITICAL,
        cache_css_parsing=True,
    )
