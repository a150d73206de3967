"""Digest text -> `Digest` with `Item`s, plus warnings for whatever was not understood.

One pass over the lines sorts each into a grammar of line kinds: entry starts (`1、[LG] Title`
featured, `[CV] Title` further papers, `No 3. 《Title》` weekly picks), section markers, digest
front matter (legend, `转自…`, `摘要:`), noise (image names, page chrome, the copyright line)
and the body lines that belong to the entry above them. A second step reads each entry's body
by position (authors, [affiliations], summary and abstract, links) and a last one settles
identity and the digest date. Nothing is dropped silently: a line that looks like an entry but
cannot be read becomes a `ParseWarning` with its line number.
"""

from __future__ import annotations

import hashlib
import html
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from feeds.errors import ParseError
from feeds.identity import (
    Ref,
    best_link,
    classify,
    date_in_filename,
    date_in_text,
    find_urls,
    identify,
    local_midnight,
    weibo_post_time,
)
from feeds.model import DateSource, Digest, DigestFormat, Item, Link, ParseWarning, Section
from feeds.textutil import (
    collapse_spaces,
    decode_with_notes,
    fit,
    has_cjk,
    has_ideograph,
    has_latin,
    normalize_title,
    split_lines,
    split_zh_en,
)

__all__ = ["format_table", "normalize_title", "parse_file", "parse_text", "weibo_post_time"]

_STAR = "[*＊]"
_OPEN = "[\\[【［]"
_CLOSE = "[\\]】］]"
# LG, CV, IR, stat.ML, cs.LG, q-bio.NC: an arXiv-style category code.
_CATEGORY = r"(?P<cat>(?:[a-z][a-z\-]*\.)?[A-Z][A-Za-z]{1,4})"

_FEATURED = re.compile(
    rf"^(?P<s1>{_STAR})?\s*(?P<num>\d{{1,3}})\s*[、,，.．]\s*(?P<s2>{_STAR})?\s*"
    rf"{_OPEN}\s*{_CATEGORY}\s*{_CLOSE}\s*(?P<s3>{_STAR})?\s*(?P<title>.*)$"
)
# `3、Title` without a [category]: read as an entry, with a warning (daily digests only).
_FEATURED_LOOSE = re.compile(rf"^(?P<s1>{_STAR})?\s*(?P<num>\d{{1,3}})\s*、\s*(?P<title>.*)$")
_MORE = re.compile(
    rf"^(?P<s1>{_STAR})?\s*{_OPEN}\s*{_CATEGORY}\s*{_CLOSE}\s*(?P<s3>{_STAR})?\s*(?P<title>\S.*)$"
)
# Not anchored with ^: it is also matched from the middle of a line, after page chrome.
_WEEKLY = re.compile(
    r"\s*[Nn][Oo]\s*\.?\s*(?P<num>\d{1,3})(?!\d)\s*[.．、,，:：]?\s*(?P<title>.*)$"
)
_MORE_HEADER = re.compile(r"^另外几篇值得关注的论文\s*[:：]?\s*$")
_LEGEND_PAIR = re.compile(
    r"(?<![\w.])((?:[a-z][a-z\-]*\.)?[A-Z][A-Za-z]{1,4})\s*[-–—－]\s*([^\s(（]+)"
)
_CREDIT = re.compile(r"^转(?:载)?自\s*[:：]?\s*(?P<who>.+)$")
_SUMMARY = re.compile(r"^摘要\s*[:：]\s*(?P<text>.*)$")
_SOURCE = re.compile(r"^来源\s*[:：]\s*(?P<text>.*)$")
_CHROME = re.compile(r"^(?:文章|标签|分类|评论|阅读|字数)\s*\d+$")
_COPYRIGHT = re.compile(r"版权.*(?:联系|删除)|(?:联系|删除).*版权")
_DATE_HEADER = re.compile(
    r"^\s*date\s*[:：]\s*(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})\s*$", re.IGNORECASE
)
_IMAGE = re.compile(r"^(?:[\w\-]*\.(?:png|jpe?g|gif|webp|bmp|svg))+$", re.IGNORECASE)
_IMAGE_ENDS = frozenset({"png", "jpg", "peg", "gif", "ebp", "bmp", "svg"})
# First characters of entry starts: numbers, stars, brackets and `No`.
_START_CHARS = frozenset("0123456789*＊[【［Nn")
_AFFILIATION = re.compile(rf"^{_OPEN}(?P<inner>.*){_CLOSE}$")
_AMPERSAND = re.compile(r"\s*[&＆]\s*")
_AUTHOR_SEP = re.compile(r"\s*[,，、]\s*")
_TRUNCATION = ("…", "...", "等", "et al.", "et al")
_A_TAG = re.compile(r"<a\b[^>]*?href\s*=\s*[\"']([^\"']+)[\"'][^>]*>", re.IGNORECASE)
_TAG = re.compile(r"</?[a-zA-Z][^>]*>")
_WRAPPED = re.compile(r"^[《【〈](?P<title>.*)[》】〉](?P<rest>.*)$")
# Page titles saved from a browser end in ` :: SSRN`; the site name is not part of the title.
_SITE_SUFFIX = re.compile(r"\s+::\s+[^:]{1,40}$")
_TITLE_END = "。！？"


@dataclass(slots=True)
class _Entry:
    """An entry start and the raw lines under it, before they are read."""

    section: Section
    line: int
    number: int | None
    category: str | None
    starred: bool
    title_text: str
    body: list[tuple[int, str]] = field(default_factory=list)
    # A `3、Title` line without [category]; `raw` keeps the line for when it is not an entry.
    loose: bool = False
    raw: str = ""


@dataclass(slots=True)
class _Front:
    """What the lines before the first entry say about the digest."""

    title: str | None = None
    summary: str | None = None
    credit: str | None = None
    legend: dict[str, str] = field(default_factory=dict)
    text_date: date | None = None
    links: list[Link] = field(default_factory=list)


def parse_file(path: Path, *, tz: ZoneInfo) -> Digest:
    """Read one digest file. Raises ParseError (and nothing else) if it is no digest at all."""
    source = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ParseError(f"cannot read: {exc.strerror or exc}", path=source) from exc
    text, notes = decode_with_notes(data, path=source)
    digest = parse_text(
        text,
        source=source,
        tz=tz,
        filename=path.name,
        content_hash=hashlib.sha256(data).hexdigest(),
    )
    if notes:
        warnings = [*digest.warnings, *(ParseWarning(line, message) for line, message in notes)]
        warnings.sort(key=lambda w: w.line)
        digest = replace(digest, warnings=tuple(warnings))
    return digest


def parse_text(
    text: str,
    *,
    source: str,
    tz: ZoneInfo,
    filename: str | None = None,
    content_hash: str = "",
) -> Digest:
    """Parse the text of one digest; `filename` (no folder) may carry its date."""
    if not text.replace("\ufeff", "").strip():
        raise ParseError("empty file", path=source, hint="a digest needs at least one entry")
    lines = split_lines(text)
    return _Parser(lines, source=source, tz=tz, filename=filename).run(content_hash)


class _Parser:
    """The state of one parse: lines in, entries, front matter and warnings collected."""

    def __init__(
        self, lines: list[str], *, source: str, tz: ZoneInfo, filename: str | None
    ) -> None:
        self.lines = lines
        self.source = source
        self.tz = tz
        self.filename = filename
        self.warnings: list[ParseWarning] = []
        self.front = _Front()
        self.entries: list[_Entry] = []
        self.header_date: date | None = None

    def warn(self, line: int, message: str) -> None:
        self.warnings.append(ParseWarning(line, message))

    # -- pass 1: line kinds -------------------------------------------------------------

    def run(self, content_hash: str) -> Digest:
        lines = self.lines
        current: _Entry | None = None
        in_more = False
        weekly_starts = daily_starts = 0
        for index in range(self._header(), len(lines)):
            raw = lines[index]
            if not raw:
                if current is not None:
                    current.body.append((index + 1, ""))
                continue
            text = raw.lstrip() if raw[0].isspace() else raw
            if not text:
                if current is not None:
                    current.body.append((index + 1, ""))
                continue
            first = text[0]
            if first in _START_CHARS or '">' in text:
                entry = self._entry_start(text, index + 1)
                if entry is not None:
                    if entry.section == "weekly":
                        weekly_starts += 1
                    elif entry.section == "featured" and not entry.loose:
                        daily_starts += 1
                    self.entries.append(entry)
                    current = entry
                    continue
            if text[-3:].lower() in _IMAGE_ENDS and _IMAGE.match(text):
                continue
            if "版权" in text and len(text) < 80 and _COPYRIGHT.search(text):
                continue
            if first == "另" and _MORE_HEADER.match(text):
                in_more = True
                current = None
                continue
            if current is None:
                self._front_line(text, index + 1, in_more)
            else:
                current.body.append((index + 1, text))
        weekly = weekly_starts > daily_starts
        self._settle_loose(weekly)
        self._check_numbers()
        return self._finish(weekly, content_hash)

    def _settle_loose(self, weekly: bool) -> None:
        """`3、Title` lines are entries in a daily digest, but commentary in a weekly one."""
        kept: list[_Entry] = []
        for entry in self.entries:
            if not entry.loose:
                kept.append(entry)
            elif not weekly:
                self.warn(entry.line, f"entry {entry.number} has no [category]: {_clip(entry.raw)}")
                kept.append(entry)
            elif kept:
                kept[-1].body.append((entry.line, entry.raw))
                kept[-1].body.extend(entry.body)
            else:
                for number, text in [(entry.line, entry.raw), *entry.body]:
                    if text:
                        self._front_line(text, number, False)
        self.entries = kept

    def _check_numbers(self) -> None:
        last = {"featured": 0, "weekly": 0}
        for entry in self.entries:
            if entry.number is None or entry.section not in last:
                continue
            expected = last[entry.section] + 1
            if entry.number != expected:
                self.warn(entry.line, f"entry {entry.number} follows entry {expected - 1}")
            last[entry.section] = entry.number

    def _header(self) -> int:
        """Honour a `date: YYYY-MM-DD` first line; return the index of the first content line."""
        match = _DATE_HEADER.match(self.lines[0]) if self.lines else None
        if match is None:
            return 0
        try:
            self.header_date = date(int(match["y"]), int(match["m"]), int(match["d"]))
        except ValueError:
            self.warn(1, f"invalid date in header: {self.lines[0].strip()}")
        return 1

    def _entry_start(self, text: str, number: int) -> _Entry | None:
        first = text[0]
        if '">' in text:
            match = _weekly_after_fragment(text)
            if match is not None:
                # Page chrome: a cut-off link (`…》">No 1. …`) glued before the entry.
                return self._weekly(match, number)
        if first.isdigit() or first in "*＊":
            match = _FEATURED.match(text)
            if match is not None:
                return self._daily(match, number, "featured")
            match = _FEATURED_LOOSE.match(text)
            if match is not None:
                return _Entry(
                    "featured",
                    number,
                    int(match["num"]),
                    None,
                    match["s1"] is not None,
                    match["title"],
                    loose=True,
                    raw=text,
                )
        if first in "[【［*＊":
            match = _MORE.match(text)
            if match is not None:
                return self._daily(match, number, "more")
        if first in "Nn":
            match = _WEEKLY.match(text)
            if match is not None:
                return self._weekly(match, number)
        return None

    def _daily(self, match: re.Match[str], number: int, section: Section) -> _Entry:
        if section == "featured":
            starred = bool(match["s1"] or match["s2"] or match["s3"])
            return _Entry(section, number, int(match["num"]), match["cat"], starred, match["title"])
        starred = bool(match["s1"] or match["s3"])
        return _Entry(section, number, None, match["cat"], starred, match["title"])

    def _weekly(self, match: re.Match[str], number: int) -> _Entry:
        return _Entry("weekly", number, int(match["num"]), None, False, match["title"])

    def _front_line(self, text: str, number: int, in_more: bool) -> None:
        front = self.front
        if in_more:
            self.warn(number, f"line outside any entry ignored: {_clip(text)}")
            return
        if not front.legend:
            pairs = _LEGEND_PAIR.findall(text)
            if len(pairs) >= 2:
                front.legend = dict(pairs)
                return
        match = _CREDIT.match(text)
        if match is not None and front.credit is None:
            front.credit = match["who"].strip()
            return
        if front.summary == "":
            # `摘要:` stood alone on its line; the summary is the next one.
            front.summary = text
            return
        match = _SUMMARY.match(text)
        if match is not None and front.summary is None:
            front.summary = match["text"].strip()
            return
        if _CHROME.match(text):
            return
        if front.text_date is None and not self.entries:
            front.text_date = date_in_text(text)
        if front.title is None and not self.entries:
            front.title = collapse_spaces(text)
            return
        self.warn(number, f"line outside any entry ignored: {_clip(text)}")

    # -- pass 2: entries -> items ---------------------------------------------------------

    def _finish(self, weekly: bool, content_hash: str) -> Digest:
        self._trailing_source()
        drafts = [d for d in (self._read(entry) for entry in self.entries) if d is not None]
        if not drafts:
            self.warn(1, "no entries found")
        _rank(drafts)
        self._settle_keys(drafts)
        moment, date_source = self._date(drafts)
        digest_format: DigestFormat = "weekly" if weekly else "daily"
        digest_id = ""
        if moment is not None:
            digest_id = moment.date().isoformat() + ("-weekly" if weekly else "")
        title = self.front.title or _default_title(digest_format)
        items = tuple(d.item(published=moment, digest_id=digest_id) for d in drafts)
        self.warnings.sort(key=lambda w: w.line)
        return Digest(
            id=digest_id,
            date=moment,
            date_source=date_source,
            source=self.source,
            format=digest_format,
            title=title,
            summary=self.front.summary or None,
            items=items,
            warnings=tuple(self.warnings),
            content_hash=content_hash,
            credit=self.front.credit,
            links=tuple(self.front.links),
        )

    def _trailing_source(self) -> None:
        """A `来源:` paragraph closing a list of bare weekly titles credits the digest.

        Under an entry with commentary it is that commentary's source and stays with it.
        """
        if not self.entries or self.entries[-1].section != "weekly":
            return
        body = self.entries[-1].body
        filled = [(n, t) for n, t in body if t]
        if not filled or body[0][1] or not _SOURCE.match(filled[0][1]):
            return
        if len(filled) != 1:
            return
        number, text = filled[0]
        match = _SOURCE.match(text)
        assert match is not None
        rest = match["text"]
        for start, end, url in reversed(find_urls(rest)):
            self.front.links.insert(0, classify(url).link)
            rest = rest[:start] + rest[end:]
        if self.front.credit is None and rest.strip():
            self.front.credit = collapse_spaces(rest)
        self.entries[-1].body = [(n, t) for n, t in body if n < number]

    def _read(self, entry: _Entry) -> _Draft | None:
        title, links, starred, extra = _title_parts(entry.title_text)
        draft = _Draft(entry, title=title, starred=entry.starred or starred, links=links)
        if entry.section == "weekly":
            draft.read_weekly(extra)
        else:
            draft.read_daily(extra, self.warn, last=entry is self.entries[-1])
        if not draft.title:
            if draft.title_zh:
                draft.title = draft.title_zh
            else:
                self.warn(entry.line, f"{_label(draft)} has no title; skipped")
                return None
        if draft.title_zh is None and not has_latin(draft.title) and has_cjk(draft.title):
            # A Chinese-only title is both the title and the Chinese title.
            draft.title_zh = draft.title
        draft.category_name = self.front.legend.get(entry.category or "")
        return draft

    def _settle_keys(self, drafts: list[_Draft]) -> None:
        """One key per paper in a digest: entries with the same key or title share the best."""
        group_of: dict[str, int] = {}
        groups: list[list[_Draft]] = []
        for draft in drafts:
            draft.key, draft.guid = identify(draft.links, draft.title)
            names = [draft.key]
            normalized = normalize_title(draft.title)
            if normalized:
                names.append("t:" + normalized)
            found = next((group_of[n] for n in names if n in group_of), None)
            if found is None:
                found = len(groups)
                groups.append([])
            else:
                first = groups[found][0]
                self.warn(
                    draft.entry.line,
                    f"{_label(draft)} repeats {_label(first)} (same paper); both kept, one key",
                )
            groups[found].append(draft)
            for name in names:
                group_of.setdefault(name, found)
        for group in groups:
            if len(group) > 1:
                best = min(group, key=lambda d: _KEY_RANK[d.key.split(":", 1)[0]])
                for draft in group:
                    draft.key, draft.guid = best.key, best.guid

    def _date(self, drafts: list[_Draft]) -> tuple[datetime | None, DateSource]:
        """The digest date by the first rule that applies (header, file name, text, Weibo)."""
        earliest = self._earliest_post(drafts)
        day: date | None = None
        source: DateSource = "unknown"
        if self.header_date is not None:
            day, source = self.header_date, "header"
        elif self.filename and (found := date_in_filename(self.filename)) is not None:
            day, source = found, "filename"
        elif self.front.text_date is not None:
            day, source = self.front.text_date, "text"
        if day is None:
            return (earliest, "weibo") if earliest is not None else (None, "unknown")
        if earliest is not None and earliest.date() == day:
            # The same day, known to the second: the feed shows when it was really posted.
            return earliest, "weibo"
        return local_midnight(day, self.tz), source

    def _earliest_post(self, drafts: list[_Draft]) -> datetime | None:
        """The earliest Weibo post time among the entries' links.

        Only one id is decoded: ids of one length sort like their times once the case is
        swapped (base62 counts 0-9, a-z, A-Z; ASCII sorts 0-9, A-Z, a-z).
        """
        posts = sorted(
            (len(ref.ident), ref.ident.swapcase(), ref.ident)
            for draft in drafts
            for ref in draft.links
            if ref.link.kind == "weibo" and ref.ident is not None
        )
        for _, _, post in posts:
            try:
                moment = weibo_post_time(post).astimezone(self.tz)
            except ValueError:
                continue
            if 2009 <= moment.year <= 2200:
                return moment
        return None


def _rank(drafts: list[_Draft]) -> None:
    """Numbered entries keep their number; further papers continue after the highest so far."""
    highest = 0
    for draft in drafts:
        number = draft.entry.number
        if draft.entry.section == "more" or number is None:
            number = highest + 1
        draft.rank = number
        highest = max(highest, number)


_KEY_RANK = {"arxiv": 0, "openreview": 1, "doi": 2, "weibo": 3, "title": 4}


@dataclass(slots=True)
class _Draft:
    """An entry being read; becomes an `Item` once the digest's date and keys are known."""

    entry: _Entry
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

    def add_link(self, url: str) -> None:
        if all(ref.link.href != url for ref in self.links):
            self.links.append(classify(url))

    def read_daily(self, extra: str, warn: Callable[[int, str], None], *, last: bool) -> None:
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
        for _, text in entry.body:
            if not text:
                gap = True
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
            warn(entry.line, f"{_label(self)} has no author line")
        if not self.links:
            hint = " (is the file truncated?)" if last else ""
            warn(entry.line, f"{_label(self)} has no link{hint}")

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
        for _, text in self.entry.body:
            if not text:
                fresh = True
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

    def _strip_urls(self, text: str) -> str:
        urls = find_urls(text)
        if not urls:
            return text
        for start, end, url in reversed(urls):
            self.add_link(url)
            text = text[:start] + text[end:]
        return text.strip()

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


def _weekly_after_fragment(text: str) -> re.Match[str] | None:
    return _WEEKLY.match(text, text.rfind('">') + 2)


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
        text = _TAG.sub("", text)
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


def _label(draft: _Draft) -> str:
    entry = draft.entry
    if entry.section == "weekly":
        return f"No {entry.number}"
    if entry.number is not None:
        return f"entry {entry.number}"
    return f"entry '{_clip(draft.title, 40)}'"


def _clip(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _default_title(digest_format: DigestFormat) -> str:
    # No date in it: the build may date an undated digest later, and pages show the date anyway.
    return "Weekly picks" if digest_format == "weekly" else "Daily digest"


def format_table(digest: Digest) -> str:
    """A readable table of one digest: rank, category, star, title, authors, link, date."""
    when = digest.date.isoformat() if digest.date else "undated"
    head = (
        f"{digest.source}: {digest.format} digest {digest.id or '(no id yet)'}, {when} "
        f"({digest.date_source}), {len(digest.items)} items, {len(digest.warnings)} warnings"
    )
    rows = [head, f"{'#':>3} {'cat':<7} * {fit('title', 60)} {'au':>3} {'link':<44} date"]
    for item in digest.items:
        day = item.published.date().isoformat() if item.published else "-"
        rows.append(
            f"{item.rank:>3} {fit(item.category or '-', 7)} {'*' if item.starred else ' '} "
            f"{fit(item.title, 60)} {len(item.authors):>3} {fit(item.url or '-', 44)} {day}"
        )
    return "\n".join(rows) + "\n"
