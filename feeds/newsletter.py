"""The newsletter: one bilingual HTML email per digest, its plain-text twin, and the archive.

The HTML comes from jinja2 templates in `templates/newsletter/` (autoescaped) and goes through
premailer, which inlines every CSS rule into `style` attributes for clients that ignore `<style>`
(Gmail's non-Gmail accounts, Outlook) and keeps the `@media` rules (phone layout, dark mode) in a
`<style>` block with their `!important`. The archive is a web page, not an email: it keeps the
same stylesheet in a `<style>` block, uninlined. The text part is written for reading, not
stripped from the HTML: wrapped at 72 columns, Chinese by display width.

Every message is kept under `settings.newsletter.size_budget` bytes as sent (Gmail clips longer
ones): when a digest is too big, the email leaves things out in the planned order of `LEVELS`
and says so, linking to the full web version. See docs/newsletter.md.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from feeds import message
from feeds.config import Settings
from feeds.errors import ConfigError
from feeds.model import BuildContext, Digest, Item

if TYPE_CHECKING:
    import jinja2

TEXT_WIDTH = 72
# Room left in the budget for what differs per recipient (To, Message-ID, a personal
# unsubscribe link): the budget is checked once per category set, not once per recipient.
RECIPIENT_HEADROOM = 1024
# A list of a hundred authors says nothing more in an email than the first dozen.
MAX_AUTHORS = 12
SHORT_ABSTRACT = 300
PREHEADER_CHARS = 140
TEMPLATE_FILES = ("email.html", "email.txt", "archive.html", "newsletter.css")

# What the email leaves out, step by step, when it would exceed the size budget. Each level
# includes the ones before it; the sentence is shown in the email (and the text part).
LEVELS: tuple[str, ...] = (
    "",
    "the summaries and abstracts of the further papers",
    f"the English abstracts beyond their first {SHORT_ABSTRACT} characters",
    "the Chinese summaries (the Chinese titles stay)",
    "authors, affiliations and abstracts: titles only",
    "the last papers of the list",
)

_LINK_LABELS = {
    "arxiv": "arXiv",
    "openreview": "OpenReview",
    "doi": "DOI",
    "weibo": "Weibo",
    "other": "Link",
}
# Control characters and the invisible bidi overrides that could reorder what a reader sees.
_INVISIBLE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]"
)
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Newsletter:
    """One email as rendered for one set of categories (None: all of them)."""

    digest_id: str
    subject: str
    html: str
    text: str
    # Distinct papers in this email (after the category filter, before any size degradation).
    count: int
    categories: frozenset[str] | None
    date: datetime
    title: str
    # Index into LEVELS: 0 when nothing was left out.
    degradation: int = 0


@dataclass(frozen=True)
class PaperView:
    """One paper as the templates show it: cleaned text, safe links only."""

    rank: int
    section: str
    category: str | None
    category_name: str | None
    starred: bool
    title: str
    title_zh: str | None
    url: str | None
    authors: str
    affiliations: str
    summary_zh: str | None
    abstract: str | None
    notes: tuple[str, ...]
    links: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class _Issue:
    digest: Digest
    date: str
    heading: str
    summary: str | None
    papers: tuple[PaperView, ...]
    categories: frozenset[str] | None

    @property
    def filtered(self) -> bool:
        """Whether the category filter applied (weekly picks are never filtered)."""
        return self.categories is not None and self.digest.format != "weekly"


# ---------------------------------------------------------------------------------------------
# Public API


def render_newsletter(
    digest: Digest,
    settings: Settings,
    *,
    categories: frozenset[str] | None = None,
    unsubscribe_url: str | None = None,
) -> Newsletter | None:
    """The email for `digest`, restricted to `categories`, within the size budget.

    None when the category filter leaves no paper: such subscribers get no email that day.
    """
    issue = _issue(digest, categories)
    if not issue.papers:
        return None
    return _within_budget(issue, settings, unsubscribe_url)[0]


def render_issue_files(digest: Digest, settings: Settings) -> dict[str, bytes]:
    """newsletter/<id>.html and .txt (the full web version) and .eml (the message as sent)."""
    issue = _issue(digest, None)
    if not issue.papers:
        return {}
    sent, eml = _within_budget(issue, settings, None)
    full = sent
    if sent.degradation:
        full = _render(issue, settings, level=0, limit=sent.count, unsubscribe_url=None)
    stem = f"newsletter/{digest.id}"
    return {
        f"{stem}.html": full.html.encode("utf-8"),
        f"{stem}.txt": full.text.encode("utf-8"),
        f"{stem}.eml": eml,
    }


def render_archive(ctx: BuildContext, settings: Settings) -> dict[str, bytes]:
    """newsletter/index.html: every issue, newest first.

    A web page, not an email: the stylesheet stays in a `<style>` block (no CSS inlining), and
    each row needs only what light digests keep (titles, keys, stars), so ten years of issues
    cost a template loop, not a newsletter rendering each.
    """
    rows = []
    for digest in ctx.digests:
        items = _distinct(digest.items)
        if not items or not digest.id:
            continue
        date, heading, summary = _masthead(digest)
        rows.append(
            {
                "id": digest.id,
                "date": date,
                "heading": heading,
                # The summary line, or the first Chinese titles for digests without one.
                "summary": _shorten(summary or "、".join(_short_title(i) for i in items[:6])),
                "count": len(items),
                "starred": sum(i.starred for i in items),
                "weekly": digest.format == "weekly",
            }
        )
    env = _environment(settings.paths.templates)
    html = env.get_template("archive.html").render(
        site_title=_clean_line(settings.site.title),
        site_url=settings.site.url(""),
        feed_url=settings.site.url("feeds/all.rss"),
        css=_css(env),
        issues=rows,
        language=settings.site.language,
    )
    return {"newsletter/index.html": html.encode("utf-8")}


def wrap(text: str, width: int = TEXT_WIDTH, indent: str = "") -> list[str]:
    """Wrap mixed Chinese/English text to `width` display columns.

    English breaks between words, Chinese between characters (each two columns wide), never
    before closing or after opening punctuation; a word longer than the line (a URL) stays whole.
    """
    lines: list[str] = []
    room = max(10, width - display_width(indent))
    current = ""
    used = 0
    for unit, spaced, w in _units(text):
        gap = 1 if spaced and current else 0
        if current and used + gap + w > room:
            lines.append(indent + current)
            current, used, gap = "", 0, 0
        current += " " * gap + unit
        used += gap + w
    if current:
        lines.append(indent + current)
    return lines


def safe_href(url: str | None) -> str | None:
    """`url` if it is a plain http(s) link; anything else (javascript:, data:, junk) is no link."""
    if not url:
        return None
    url = url.strip()
    if any(c.isspace() or unicodedata.category(c)[0] == "C" for c in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return url


# ---------------------------------------------------------------------------------------------
# From a digest to what the templates show


def _issue(digest: Digest, categories: frozenset[str] | None) -> _Issue:
    items = _distinct(digest.items)
    if categories is not None and digest.format != "weekly":
        # Weekly picks have no categories and go to every subscriber; in a daily digest a
        # paper without a category only reaches those who take all categories.
        items = [i for i in items if i.category in categories]
    date, heading, summary = _masthead(digest)
    return _Issue(
        digest=digest,
        date=date,
        heading=heading,
        summary=summary,
        papers=tuple(_paper_view(i) for i in items),
        categories=categories,
    )


def _masthead(digest: Digest) -> tuple[str, str, str | None]:
    """The issue's date, heading and summary line (None without one)."""
    date = digest.id[:10] if digest.id else (digest.date.date().isoformat() if digest.date else "")
    heading = "Weekly picks" if digest.format == "weekly" else "Daily digest"
    summary = re.sub(r"^摘要\s*[:：]\s*", "", _clean_line(digest.summary))
    if not summary and digest.format == "weekly":
        # A weekly list has no summary line; its title ("2020.7.11周论文精选与精读") says more.
        summary = _clean_line(digest.title)
    return date, heading, summary or None


def _short_title(item: Item) -> str:
    """The title a list of titles shows: Chinese if there is one, as `_paper_view` cleans it."""
    return _clean_line(item.title_zh) or _clean_line(item.title) or "(untitled)"


def _distinct(items: Iterable[Item]) -> list[Item]:
    """One entry per paper: a weekly list may name the same paper twice."""
    seen: set[str] = set()
    kept = []
    for item in items:
        if item.key in seen:
            continue
        seen.add(item.key)
        kept.append(item)
    return kept


def _paper_view(item: Item) -> PaperView:
    title_zh = _clean_line(item.title_zh) if item.title_zh else None
    summary = _clean_block(item.summary_zh) if item.summary_zh else None
    if summary and title_zh and summary.startswith(title_zh):
        # The digest's Chinese summary opens with its Chinese title; don't print it twice.
        summary = summary[len(title_zh) :].lstrip("。. \n") or None
    authors = [_clean_line(a) for a in item.authors if _clean_line(a)]
    shown = ", ".join(authors[:MAX_AUTHORS])
    if len(authors) > MAX_AUTHORS or item.authors_truncated:
        shown += " et al."
    url = safe_href(item.url)
    links: list[tuple[str, str]] = []
    for link in item.links:
        href = safe_href(link.href)
        if href and all(href != h for _, h in links):
            links.append((_LINK_LABELS.get(link.kind, "Link"), href))
    if url is None and links:
        url = links[0][1]
    notes = _clean_block(item.notes) if item.notes else ""
    return PaperView(
        rank=item.rank,
        section=item.section,
        category=_clean_line(item.category) if item.category else None,
        category_name=_clean_line(item.category_name) if item.category_name else None,
        starred=item.starred,
        title=_clean_line(item.title) or title_zh or "(untitled)",
        title_zh=title_zh if title_zh != _clean_line(item.title) else None,
        url=url,
        authors=shown,
        affiliations=" & ".join(a for a in (_clean_line(x) for x in item.affiliations) if a),
        summary_zh=summary,
        abstract=_clean_block(item.abstract) if item.abstract else None,
        notes=tuple(p for p in (s.strip() for s in notes.split("\n\n")) if p),
        links=tuple(links),
    )


def _clean_line(text: str | None) -> str:
    """One line of visible text: no control characters, no line breaks, no runs of spaces."""
    if not text:
        return ""
    return _SPACES.sub(" ", _INVISIBLE.sub("", text)).strip()


def _clean_block(text: str | None) -> str:
    """Paragraphs of visible text, separated by one blank line."""
    if not text:
        return ""
    text = _INVISIBLE.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    paragraphs = re.split(r"\n\s*\n", text)
    cleaned = (" ".join(_clean_line(line) for line in p.split("\n")).strip() for p in paragraphs)
    return "\n\n".join(p for p in cleaned if p)


def _degrade(paper: PaperView, level: int) -> PaperView:
    if level >= 1 and paper.section == "more":
        paper = replace(paper, summary_zh=None, abstract=None, notes=())
    if level >= 2 and paper.abstract and len(paper.abstract) > SHORT_ABSTRACT:
        cut = paper.abstract[:SHORT_ABSTRACT].rsplit(" ", 1)[0]
        paper = replace(paper, abstract=cut.rstrip(",;:") + " …")
    if level >= 3:
        paper = replace(paper, summary_zh=None, notes=())
    if level >= 4:
        paper = replace(paper, authors="", affiliations="", abstract=None, links=())
    return paper


# ---------------------------------------------------------------------------------------------
# Rendering


def _render(
    issue: _Issue,
    settings: Settings,
    *,
    level: int,
    limit: int,
    unsubscribe_url: str | None,
) -> Newsletter:
    papers = [_degrade(p, level) for p in issue.papers[:limit]]
    count = len(issue.papers)
    digest = issue.digest
    subject = _subject(settings, issue, count)
    preheader = _preheader(issue)
    omitted = [s for s in LEVELS[1 : level + 1] if s]
    if limit < count and LEVELS[-1] not in omitted:
        omitted.append(LEVELS[-1])
    web_url = settings.site.url(f"newsletter/{digest.id}.html")
    mailto = re.sub(r"[^!#-;=?-~]+", "", settings.newsletter.unsubscribe_mailto)
    unsubscribe = safe_href(unsubscribe_url) or (
        f"mailto:{mailto}?subject=unsubscribe" if mailto else None
    )
    context: dict[str, Any] = {
        "subject": subject,
        "site_title": _clean_line(settings.site.title),
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
        "archive_url": settings.site.url("newsletter/index.html"),
        "unsubscribe": unsubscribe,
    }
    env = _environment(settings.paths.templates)
    raw_html = env.get_template("email.html").render(css=_css(env), **context)
    text = env.get_template("email.txt").render(**context)
    return Newsletter(
        digest_id=digest.id,
        subject=subject,
        html=inline_css(raw_html),
        text=_tidy_text(text),
        count=count,
        categories=issue.categories,
        date=_digest_datetime(digest, settings),
        title=f"{_clean_line(settings.site.title)} · {issue.heading} {issue.date}",
        degradation=level if limit == count else len(LEVELS) - 1,
    )


def _within_budget(
    issue: _Issue, settings: Settings, unsubscribe_url: str | None
) -> tuple[Newsletter, bytes]:
    """The fullest rendering whose archive-copy message fits the budget, and that message."""
    budget = settings.newsletter.size_budget - RECIPIENT_HEADROOM
    limit = len(issue.papers)
    level = 0
    while True:
        letter = _render(issue, settings, level=level, limit=limit, unsubscribe_url=unsubscribe_url)
        raw = message.as_bytes(message.compose(letter, settings, unsubscribe_url=unsubscribe_url))
        if len(raw) <= budget:
            return letter, raw
        if level < len(LEVELS) - 1:
            level += 1
        elif limit > 1:
            # Titles only and still too big: keep the share of papers that fits, with a margin.
            limit = max(1, min(limit - 1, int(limit * budget / len(raw) * 0.95)))
        else:
            return letter, raw


def _subject(settings: Settings, issue: _Issue, count: int) -> str:
    noun = "paper" if count == 1 else "papers"
    parts = [_clean_line(settings.site.title)]
    parts.append(f"weekly picks {issue.date}" if issue.digest.format == "weekly" else issue.date)
    head = " ".join(p for p in parts if p)
    if issue.filtered:
        return f"{head} · {', '.join(sorted(issue.categories or ()))} · {count} {noun}"
    return f"{head} · {count} {noun}"


def _preheader(issue: _Issue) -> str:
    if issue.summary and not issue.filtered:
        text = issue.summary
    else:
        # A subset (or a digest without summary) gets a summary of what it really holds.
        text = "、".join(p.title_zh or p.title for p in issue.papers[:6])
    return _shorten(text)


def _shorten(text: str) -> str:
    return text if len(text) <= PREHEADER_CHARS else text[: PREHEADER_CHARS - 1] + "…"


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
    import jinja2

    folder = templates / "newsletter"
    missing = [name for name in TEMPLATE_FILES if not (folder / name).is_file()]
    if missing:
        raise ConfigError(
            f"newsletter templates missing: {', '.join(missing)}",
            path=str(folder),
            hint="[paths] templates must hold newsletter/ as shipped in templates/",
        )
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["wrap"] = _wrap_filter
    return env


def _css(env: jinja2.Environment) -> str:
    assert env.loader is not None
    source, _, _ = env.loader.get_source(env, "newsletter.css")
    return source


def _wrap_filter(text: str | None, indent: int = 0, first: str | None = None) -> str:
    """Jinja filter: wrap paragraphs of `text`, indented; `first` prefixes the first line."""
    if not text:
        return ""
    pad = " " * indent
    out: list[str] = []
    for paragraph in text.split("\n\n"):
        if out:
            out.append("")
        out.extend(wrap(paragraph, TEXT_WIDTH, pad))
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


# ---------------------------------------------------------------------------------------------
# Wrapping text by display width

# No line starts with these...
_NO_START = set("，。、；：？！）」』】》〉”’,.;:!?)]}%…·")
# ...and none ends with these.
_NO_END = set("（「『【《〈“‘([{")


class _CharClasses(dict[int, str]):
    """A str.translate table: space -> " ", wide (2-column) -> "W", anything else -> "n".

    Filled as characters are first met, so it costs nothing up front and a dict lookup after.
    """

    def __missing__(self, code: int) -> str:
        c = chr(code)
        kind = " " if c.isspace() else "W" if unicodedata.east_asian_width(c) in "WF" else "n"
        self[code] = kind
        return kind


_CHAR_CLASSES = _CharClasses()
# Over the text's character classes: spaces, one wide character, a run of narrow ones.
_PIECES = re.compile(r"( +)|(W)|(n+)")


def display_width(text: str) -> int:
    """Columns `text` takes in a terminal: East Asian wide and full-width characters take two."""
    return len(text) + text.translate(_CHAR_CLASSES).count("W")


def _units(text: str) -> Sequence[tuple[str, bool, int]]:
    """Unbreakable pieces of `text`: each with whether a space precedes it, and its width."""
    units: list[tuple[str, bool, int]] = []
    spaced = False
    classes = text.translate(_CHAR_CLASSES)
    for match in _PIECES.finditer(classes):
        if match.lastindex == 1:
            spaced = True
            continue
        piece = text[match.start() : match.end()]
        width = 2 if match.lastindex == 2 else len(piece)
        if units and not spaced and (piece[0] in _NO_START or units[-1][0][-1] in _NO_END):
            # Closing punctuation sticks to what precedes it, opening to what follows.
            last = units[-1]
            units[-1] = (last[0] + piece, last[1], last[2] + width)
        else:
            units.append((piece, spaced, width))
        spaced = False
    return units
