"""What the site's full-text search knows of each paper: one Pagefind record per paper.

Pure like every generator: the build context and settings in, records out. A record is the
paper, not a page: its URL is the paper's permanent place on the site (its anchor in the web
copy of the issue that first showed it), its text the titles in both languages, authors,
affiliations, category, summary, abstract and the curator's notes, and its metadata what a
result shows (`templates/site/search.js`). `feeds.search_build` hands the records to Pagefind.
Records are made from the papers rather than by having Pagefind read the written pages: a page
is an issue, and a filter (category, star) belongs to a paper, not to an issue.

The records are indexed a calendar month at a time (`period`), each month its own Pagefind
index under `pagefind/YYYY-MM/`: a new digest re-indexes its month only, and a query reads the
newest month first and older ones only as it needs more results (`templates/site/search.js`,
guided by `manifest`).
"""

from __future__ import annotations

import json
from collections.abc import Container, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from feeds.catalog import STARRED_LABEL, category_label
from feeds.config import Settings
from feeds.entry import clean, entry_authors, entry_title, one_line
from feeds.links import has_page, paper_page
from feeds.model import BuildContext, Paper, Sealed
from feeds.syndicate import entry_times

# The filters a visitor can narrow results with, and the value a starred paper has.
CATEGORY_FILTER = "category"
STARRED_FILTER = "starred"
STARRED_VALUE = STARRED_LABEL
# The sort key: the entry time, "YYYY-MM-DDTHH:MM:SS" in the site's time zone, which sorts
# as text in time order and keeps one digest's papers in the curator's order.
SORT_KEY = "date"
# The manifest the search box starts from, beside the periods' folders.
MANIFEST = "periods.json"


@dataclass(frozen=True)
class Record:
    """One paper for Pagefind: where it is, what it says, what a result shows."""

    url: str
    content: str
    language: str
    meta: dict[str, str] = field(default_factory=dict)
    filters: dict[str, list[str]] = field(default_factory=dict)
    sort: dict[str, str] = field(default_factory=dict)


def index_language(settings: Settings) -> str:
    """The index's language: the site's, as the pages' `<html lang>` names it, which is how
    Pagefind's script picks the index to search. Chinese text is segmented into words only
    under a Chinese code (the default, zh-CN)."""
    return settings.site.language.lower()


def period(moment: datetime) -> str:
    """The index a paper's record goes into: the month of its entry time, "YYYY-MM" (in the
    site's time zone, as the date a result shows)."""
    return f"{moment.year:04d}-{moment.month:02d}"


def periods(
    ctx: BuildContext, settings: Settings, times: Mapping[str, datetime] | None = None
) -> dict[str, list[Paper]]:
    """The papers with a place on the site by period, newest period first. Reads only what a
    light context has (identities, dates), so a build can decide what to index before it loads
    any digest's text. `times`: the papers' entry times, when the caller has them already."""
    tz = settings.site.tz
    if times is None:
        times = entry_times(ctx.papers, tz)
    found: dict[str, list[Paper]] = {}
    for paper in ctx.papers:
        if has_page(paper.item):
            found.setdefault(period(times[paper.key].astimezone(tz)), []).append(paper)
    return dict(sorted(found.items(), reverse=True))


def manifest(groups: dict[str, list[Paper]], sealed: Sealed | None = None) -> bytes:
    """What the search box needs before it loads any index: the periods (`periods`), newest
    first, with their number of papers, and every category label (the category filter's
    choices); with those of the earlier papers a context does not hold (`sealed`)."""
    labels = set(category_labels(groups))
    shown = [{"id": name, "papers": len(papers)} for name, papers in groups.items()]
    if sealed is not None:
        labels |= sealed.labels
        shown += [{"id": name, "papers": count} for name, count in sealed.periods]
    document = {"periods": shown, "categories": sorted(labels)}
    return (json.dumps(document, ensure_ascii=False, indent=1) + "\n").encode("utf-8")


def category_labels(groups: dict[str, list[Paper]]) -> set[str]:
    """The category labels the papers of `groups` show in the search box."""
    named = {(paper.item.category, paper.item.category_name)
             for papers in groups.values() for paper in papers if paper.item.category}
    labels: set[str] = set()
    for category, name in named:
        code = one_line(category)
        if code:
            labels.add(category_label(code, one_line(name) or None))
    return labels


def records(
    ctx: BuildContext,
    settings: Settings,
    only: Container[str] | None = None,
    times: Mapping[str, datetime] | None = None,
) -> list[Record]:
    """A record for every paper with a place on the site (or only for those in the periods
    `only` names), newest first. `times`: the papers' entry times, when the caller has them."""
    tz = settings.site.tz
    language = index_language(settings)
    if times is None:
        times = entry_times(ctx.papers, tz)
    found: list[Record] = []
    for paper in ctx.papers:
        item = paper.item
        moment = times[paper.key].astimezone(tz)
        if only is not None and period(moment) not in only:
            continue
        page = paper_page(item)
        if page is None:
            continue
        title = entry_title(item)
        title_zh = one_line(item.title_zh)
        authors = ", ".join(entry_authors(item))
        if authors and item.authors_truncated:
            authors += " et al."
        affiliations = "; ".join(n for n in (one_line(a) for a in item.affiliations) if n)
        code = one_line(item.category)
        category = category_label(code, one_line(item.category_name) or None) if code else ""
        meta = {"title": title, "date": moment.strftime("%Y-%m-%d")}
        filters: dict[str, list[str]] = {}
        if title_zh and title_zh != title:
            meta["title_zh"] = title_zh
        if authors:
            meta["authors"] = authors
        if affiliations:
            meta["affiliations"] = affiliations
        if category:
            meta["category"] = category
            filters[CATEGORY_FILTER] = [category]
        if item.starred:
            meta["starred"] = STARRED_VALUE
            filters[STARRED_FILTER] = [STARRED_VALUE]
        parts = [title, title_zh, authors, affiliations, category, clean(item.summary_zh),
                 clean(item.abstract), clean(item.notes)]
        found.append(
            Record(
                url=page,
                content="\n".join(part for part in parts if part),
                language=language,
                meta=meta,
                filters=filters,
                sort={SORT_KEY: moment.strftime("%Y-%m-%dT%H:%M:%S")},
            )
        )
    return found
