"""An issue of the newsletter as its templates see it: one digest's papers, cleaned and chosen.

Between the digest and the templates: the category filter, one entry per paper, text cleaned
of what an email must not show, only safe links, and what each size level leaves out
(`LEVELS`). `feeds.newsletter` renders these views and keeps the message within its budget.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

from feeds.links import link_label, paper_anchor, primary_link, safe_url
from feeds.model import Digest, Item
from feeds.textutil import INVISIBLE, cut

# A list of a hundred authors says nothing more in an email than the first dozen.
MAX_AUTHORS = 12
SHORT_ABSTRACT = 300
PREHEADER_CHARS = 140
# The most an email shows of one field, whatever made the item: the parser cuts longer fields
# with a warning, and these keep any one paper far below the size budget.
TITLE_CHARS = 1_000
TEXT_CHARS = 20_000
NAME_CHARS = 300
SUMMARY_CHARS = 1_000
# A longer link is no link a reader could follow; it is left out.
URL_CHARS = 2_000

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

# What an issue is called, by digest format: its masthead, and where a feed entry names it.
HEADINGS = {"daily": "Daily digest", "weekly": "Weekly picks"}

_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class PaperView:
    """One paper as the templates show it: cleaned text, safe links only."""

    rank: int
    section: str
    # The id of the paper's block: its permanent anchor in the issue's web copy.
    anchor: str
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
    # The curator's commentary: paragraphs, each keeping its line breaks ("\n").
    notes: tuple[str, ...]
    links: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Issue:
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


def issue_for(digest: Digest, categories: frozenset[str] | None) -> Issue:
    """What the email for `digest` shows to subscribers of `categories` (None: all)."""
    items = list(digest.items)
    if categories is not None and digest.format != "weekly":
        # Weekly picks have no categories and go to every subscriber; in a daily digest a
        # paper without a category only reaches those who take all categories. Filtered
        # before one entry per paper is kept: a paper listed under two categories reaches
        # the subscribers of either.
        items = [i for i in items if i.category in categories]
    items = distinct(items)
    date, heading, summary = masthead(digest)
    if len(items) < len(distinct(digest.items)):
        # The digest's summary line names its papers: a subset that lacks some would open
        # with titles its reader does not get.
        summary = None
    return Issue(
        digest=digest,
        date=date,
        heading=heading,
        summary=summary,
        papers=tuple(_paper_view(i) for i in items),
        categories=categories,
    )


def masthead(digest: Digest) -> tuple[str, str, str | None]:
    """The issue's date, heading and summary line (None without one)."""
    date = digest.id[:10] if digest.id else (digest.date.date().isoformat() if digest.date else "")
    heading = HEADINGS[digest.format]
    summary = re.sub(r"^摘要\s*[:：]\s*", "", _clean_cut(digest.summary, SUMMARY_CHARS))
    if not summary and digest.format == "weekly":
        # A weekly list has no summary line; its title ("2020.7.11周论文精选与精读") says more.
        summary = _clean_cut(digest.title, SUMMARY_CHARS)
    return date, heading, summary or None


def short_title(item: Item) -> str:
    """The title a list of titles shows: Chinese if there is one, as `_paper_view` cleans it."""
    title_zh = _clean_cut(item.title_zh, TITLE_CHARS)
    return title_zh or _clean_cut(item.title, TITLE_CHARS) or "(untitled)"


def shorten(text: str) -> str:
    """`text` cut to the length of a preheader (what an inbox shows after the subject)."""
    return text if len(text) <= PREHEADER_CHARS else text[: PREHEADER_CHARS - 1] + "…"


def distinct(items: Iterable[Item]) -> list[Item]:
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
    title_zh = _clean_cut(item.title_zh, TITLE_CHARS) or None
    title = _clean_cut(item.title, TITLE_CHARS)
    summary = clean_block(cut(item.summary_zh, TEXT_CHARS)) if item.summary_zh else None
    if summary and title_zh and summary.startswith(title_zh):
        # The digest's Chinese summary opens with its Chinese title; don't print it twice.
        summary = summary[len(title_zh) :].lstrip("。. \n") or None
    authors = [a for a in (_clean_cut(a, NAME_CHARS) for a in item.authors) if a]
    shown = ", ".join(authors[:MAX_AUTHORS])
    if len(authors) > MAX_AUTHORS or item.authors_truncated:
        shown += " et al."
    links: list[tuple[str, str]] = []
    for link in item.links:
        href = safe_url(link.href) if len(link.href) <= URL_CHARS else None
        if href and all(href != h for _, h in links):
            links.append((link_label(link), href))
    notes = clean_block(cut(item.notes, TEXT_CHARS), keep_lines=True) if item.notes else ""
    url = primary_link(item)
    return PaperView(
        rank=item.rank,
        section=item.section,
        anchor=paper_anchor(item),
        category=_clean_cut(item.category, NAME_CHARS) or None,
        category_name=_clean_cut(item.category_name, NAME_CHARS) or None,
        starred=item.starred,
        title=title or title_zh or "(untitled)",
        title_zh=title_zh if title_zh != title else None,
        url=url if url is not None and len(url) <= URL_CHARS else None,
        authors=shown,
        affiliations=" & ".join(
            a for a in (_clean_cut(x, NAME_CHARS) for x in item.affiliations[:MAX_AUTHORS]) if a
        ),
        summary_zh=summary,
        abstract=clean_block(cut(item.abstract, TEXT_CHARS)) if item.abstract else None,
        notes=tuple(p for p in (s.strip() for s in notes.split("\n\n")) if p),
        links=tuple(links),
    )


def clean_line(text: str | None) -> str:
    """One line of visible text: no invisible characters, no line breaks, no runs of spaces."""
    if not text:
        return ""
    return _SPACES.sub(" ", INVISIBLE.sub("", text)).strip()


def _clean_cut(text: str | None, limit: int) -> str:
    """`clean_line` of `text` cut to `limit` characters (cut first: the text may be huge)."""
    return clean_line(cut(text, limit)) if text else ""


def clean_block(text: str | None, *, keep_lines: bool = False) -> str:
    """Paragraphs of visible text, separated by one blank line; the lines of a paragraph are
    joined with spaces, or, with `keep_lines` (the curator's commentary, written line by
    line), kept on lines of their own."""
    if not text:
        return ""
    text = INVISIBLE.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    paragraphs = re.split(r"\n\s*\n", text)
    joiner = "\n" if keep_lines else " "
    cleaned = (
        joiner.join(line for line in (clean_line(x) for x in p.split("\n")) if line).strip()
        for p in paragraphs
    )
    return "\n\n".join(p for p in cleaned if p)


def degrade(paper: PaperView, level: int) -> PaperView:
    """`paper` as shown at size level `level` (an index into `LEVELS`)."""
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
