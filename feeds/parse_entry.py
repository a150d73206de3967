"""The second pass of the parser: reading one entry's lines into a paper.

An entry's title line may carry a link, a star and a `《…》` or `【…】` wrapper. Under a daily
entry, position decides what a line is: a Chinese title (further papers only), the authors,
`[affiliations]`, then the Chinese summary and English abstract, then the links. Everything
under a weekly pick is commentary. What cannot be read becomes a warning.
"""

from __future__ import annotations

import html
import itertools
import re
from dataclasses import dataclass
from datetime import datetime

from feeds.identity import Ref, best_link, classify, find_urls
from feeds.model import Item
from feeds.parse_lines import CLOSE, LINK_LABEL, OPEN, Entry, Warn, clip
from feeds.textutil import (
    collapse_spaces,
    cut,
    has_cjk,
    has_ideograph,
    has_latin,
    split_zh_en,
    strip_tags,
)

_AFFILIATION = re.compile(rf"^{OPEN}(?P<inner>.*){CLOSE}$")
_AMPERSAND = re.compile(r"\s*[&＆]\s*")
_AUTHOR_SEP = re.compile(r"\s*[,，、]\s*")
_TRUNCATION = ("…", "...", "等", "et al.", "et al")
_A_TAG = re.compile(r"<a\b[^<>]*?href\s*=\s*[\"']([^\"'<>\s]+)[\"'][^<>]*>", re.IGNORECASE)
_WRAPPED = re.compile(r"^[《【〈](?P<title>.*)[》】〉](?P<rest>.*)$")
# Page titles saved from a browser end in ` :: SSRN`; the site name is not part of the title.
_SITE_SUFFIX = re.compile(r"\s+::\s+[^:]{1,40}$")
_TITLE_END = "。！？"
# The longest title and the longest summary, abstract or commentary an item keeps; no real one
# comes near, and a longer field (a file glued together, a paste gone wrong) is cut, with a
# warning, before it swamps every page and email it appears in.
TITLE_CHARS = 1_000
TEXT_CHARS = 20_000


def read_entry(entry: Entry, legend: dict[str, str], warn: Warn, *, last: bool) -> Draft | None:
    """The paper an entry describes; None (with a warning) when it has no title at all.

    `legend` names the digest's categories; `last` says the entry ends the file, where a
    missing link suggests a truncated file.
    """
    title, links, starred, extra = _title_parts(entry.title_text)
    draft = Draft(entry, title=title, starred=entry.starred or starred, links=links)
    if entry.section == "weekly":
        draft.read_weekly(extra)
    else:
        draft.read_daily(extra, warn, last=last)
    if not draft.title:
        if draft.title_zh:
            draft.title = draft.title_zh
        else:
            markup = " (only cut-off HTML markup)" if "<" in entry.title_text else ""
            warn(entry.line, f"{label(draft)} has no title{markup}; skipped")
            return None
    if draft.title_zh is None and not has_latin(draft.title) and has_cjk(draft.title):
        # A Chinese-only title is both the title and the Chinese title.
        draft.title_zh = draft.title
    draft.category_name = legend.get(entry.category or "")
    draft.cut_long_fields(warn)
    return draft


@dataclass(slots=True)
class Draft:
    """An entry being read; becomes an `Item` once the digest's date and keys are known."""

    entry: Entry
    title: str
    starred: bool
    links: list[Ref]
    title_zh: str | None = None
    authors: tuple[str, ...] = ()
    authors_truncated: bool = False
    affiliations: tuple[str, ...] = ()
    summary_zh: str | None = None
    abstract: str | None = None
    notes: str | None = None
    category_name: str | None = None
    key: str = ""
    guid: str = ""
    rank: int = 0

    def cut_long_fields(self, warn: Warn) -> None:
        """Cut fields over their limit, each cut a warning at the entry's line."""
        name = label(self)
        for field, limit in (
            ("title", TITLE_CHARS),
            ("title_zh", TITLE_CHARS),
            ("summary_zh", TEXT_CHARS),
            ("abstract", TEXT_CHARS),
            ("notes", TEXT_CHARS),
        ):
            value: str | None = getattr(self, field)
            if value is not None and len(value) > limit:
                setattr(self, field, cut(value, limit))
                warn(
                    self.entry.line,
                    f"{name}: {field} cut from {len(value):,} to {limit:,} characters",
                )

    def add_link(self, url: str) -> None:
        if all(ref.link.href != url for ref in self.links):
            self.links.append(classify(url))

    def read_daily(self, extra: str, warn: Warn, *, last: bool) -> None:
        """Position decides: [Chinese title], authors, [affiliations], summary/abstract, link."""
        entry = self.entry
        # What the next non-blank line may be: 0 Chinese title (further papers only),
        # 1 authors, 2 [affiliations], 3 body.
        stage = 0 if entry.section == "more" else 1
        zh: list[tuple[int, str]] = []
        en: list[tuple[int, str]] = []
        if extra:
            self._body_line(extra, -1, zh, en)
        paragraph, gap = 0, False
        for _, line in entry.body:
            text = self._unmark(line)
            if not text:
                gap = gap or not line
                continue
            if gap:
                paragraph, gap = paragraph + 1, False
            if stage < 3:
                if stage == 0:
                    stage = 1
                    if has_cjk(text) and text[0] not in "[【［" and not _is_link_line(text):
                        self.title_zh = collapse_spaces(text)
                        continue
                if stage == 1:
                    stage = 2
                    authors = _read_authors(text)
                    if authors is not None:
                        self.authors, self.authors_truncated = authors
                        continue
                stage = 3
                match = _AFFILIATION.match(text)
                if match is not None:
                    self.affiliations = _affiliations(match["inner"])
                    continue
            self._body_line(text, paragraph, zh, en)
        self.summary_zh = _join(zh)
        self.abstract = _join(en)
        if self.title_zh is None and self.summary_zh:
            self.title_zh = _first_sentence(self.summary_zh)
        if not self.authors:
            warn(entry.line, f"{label(self)} has no author line")
        if not self.links:
            hint = " (is the file truncated?)" if last else ""
            warn(entry.line, f"{label(self)} has no link{hint}")

    def _body_line(
        self, text: str, paragraph: int, zh: list[tuple[int, str]], en: list[tuple[int, str]]
    ) -> None:
        if "http" in text:
            text = self._strip_urls(text)
            if not text:
                return
        if not self.affiliations and text[0] in "[【［" and (match := _AFFILIATION.match(text)):
            self.affiliations = _affiliations(match["inner"])
            return
        part_zh, part_en = split_zh_en(text)
        if part_zh:
            zh.append((paragraph, part_zh))
        if part_en:
            en.append((paragraph, part_en))

    def read_weekly(self, extra: str) -> None:
        """Everything under a weekly pick is commentary; URLs in it are its links."""
        paragraphs: list[list[str]] = [[extra]] if extra else []
        fresh = True
        for _, line in self.entry.body:
            text = self._unmark(line)
            if not text:
                fresh = fresh or not line
                continue
            urls = find_urls(text)
            for _, _, url in urls:
                self.add_link(url)
            if len(urls) == 1 and urls[0][2] == text:
                continue
            if fresh or not paragraphs:
                paragraphs.append([])
                fresh = False
            paragraphs[-1].append(text)
        self.notes = "\n\n".join("\n".join(p) for p in paragraphs) or None

    def _unmark(self, text: str) -> str:
        """A body line as text: the links of its `<a href>` tags kept, every tag removed."""
        if "<" not in text:
            return text
        for match in _A_TAG.finditer(text):
            self.add_link(match.group(1))
        return collapse_spaces(strip_tags(text))

    def _strip_urls(self, text: str) -> str:
        urls = find_urls(text)
        if not urls:
            return text
        for start, end, url in reversed(urls):
            self.add_link(url)
            text = text[:start] + text[end:]
        text = text.strip()
        return "" if LINK_LABEL.match(text) else text

    def item(self, *, published: datetime | None, digest_id: str) -> Item:
        best = best_link(self.links)
        return Item(
            key=self.key,
            guid=self.guid,
            section=self.entry.section,
            rank=self.rank,
            category=self.entry.category,
            category_name=self.category_name,
            starred=self.starred,
            title=self.title,
            title_zh=self.title_zh,
            authors=self.authors,
            authors_truncated=self.authors_truncated,
            affiliations=self.affiliations,
            summary_zh=self.summary_zh,
            abstract=self.abstract,
            notes=self.notes,
            url=best.link.href if best else None,
            links=tuple(ref.link for ref in self.links),
            published=published,
            line=self.entry.line,
            digest_id=digest_id,
        )


def label(draft: Draft) -> str:
    """How a warning names an entry: `entry 3`, `No 2`, or by its title."""
    entry = draft.entry
    if entry.section == "weekly":
        return f"No {entry.number}"
    if entry.number is not None:
        return f"entry {entry.number}"
    return f"entry '{clip(draft.title, 40)}'"


def _is_link_line(text: str) -> bool:
    urls = find_urls(text)
    return len(urls) == 1 and urls[0][2] == text


def _title_parts(text: str) -> tuple[str, list[Ref], bool, str]:
    """(title, links, starred, text after the title) from an entry's title text.

    Handles `<a href="…">《…》</a>`, `《…》` and `【…】` wrappers, a `*` star on either side
    and a URL pasted after the title.
    """
    links: list[Ref] = []
    if "<" in text:
        links.extend(classify(m.group(1)) for m in _A_TAG.finditer(text))
        text = strip_tags(text)
    if "&" in text:
        text = html.unescape(text)
    for start, end, url in reversed(find_urls(text)):
        links.insert(0, classify(url))
        text = text[:start] + text[end:]
    text = text.strip()
    starred = False
    if text[:1] in ("*", "＊"):
        starred, text = True, text[1:].lstrip()
    extra = ""
    match = _WRAPPED.match(text)
    if match is not None:
        text, extra = match["title"], match["rest"].strip()
        if extra[:1] in ("*", "＊"):
            starred, extra = True, extra[1:].strip()
    elif text[-1:] in ("*", "＊") and not text.endswith("**"):
        starred, text = True, text[:-1].rstrip()
    text = collapse_spaces(text)
    if "::" in text:
        text = _SITE_SUFFIX.sub("", text)
    return text, links, starred, extra


def _read_authors(text: str) -> tuple[tuple[str, ...], bool] | None:
    """`Y H Tsai, Y Wu, R Salakhutdinov` or `T Ma` -> (names, cut short?); None if no names.

    Names are short Latin words between commas; `…`, `...`, `等` or `et al.` at the end mean
    the list was cut short.
    """
    if len(text) > 600 or "://" in text or text[0] in "[【［":
        return None
    names_text, truncated = _strip_truncation(text)
    if has_ideograph(names_text) or names_text.endswith("。"):
        return None
    if names_text.endswith(".") and not truncated:
        return None
    parts = (
        names_text.split(",")
        if "，" not in names_text and "、" not in names_text
        else _AUTHOR_SEP.split(names_text)
    )
    names = []
    for name in parts:
        words = name.split()
        if not words:
            continue
        if len(words) > 6 or not words[0][0].isalpha():
            return None
        names.append(" ".join(words))
    return (tuple(names), truncated) if names else None


def _strip_truncation(text: str) -> tuple[str, bool]:
    text = text.strip()
    for mark in _TRUNCATION:
        if text.endswith(mark):
            return text[: -len(mark)].rstrip(" ,，"), True
    return text, False


def _affiliations(inner: str) -> tuple[str, ...]:
    return tuple(collapse_spaces(a) for a in _AMPERSAND.split(inner) if a.strip())


def _join(parts: list[tuple[int, str]]) -> str | None:
    if not parts:
        return None
    out = [parts[0][1]]
    for (prev, _), (para, text) in itertools.pairwise(parts):
        out.append(("\n" if para == prev and para >= 0 else "\n\n") + text)
    return "".join(out)


def _first_sentence(summary: str) -> str | None:
    """The Chinese title: the summary's first sentence, up to `。` (kept: `？` and `！`)."""
    line = summary.split("\n", 1)[0]
    ends = [(i, ch) for ch in _TITLE_END if (i := line.find(ch)) >= 0]
    if not ends:
        return None
    index, ch = min(ends)
    return line[: index + (0 if ch == "。" else 1)].strip() or None
