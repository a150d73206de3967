"""What a feed entry says, the same in RSS, Atom and JSON Feed: its title, authors,
categories, short summary and full HTML text, every piece of input cleaned for XML and escaped.

Pure and format-free: `feeds.syndicate` puts these into the three formats.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from html import escape

from feeds.catalog import STARRED_LABEL
from feeds.issue import HEADINGS
from feeds.links import link_label, paper_page, safe_url
from feeds.model import Item, Link, Paper
from feeds.textutil import strip_illegal

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
