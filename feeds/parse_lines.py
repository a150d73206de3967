"""The first pass of the parser: what kind of line each line of a digest is.

Entry starts (`1、[LG] Title` featured, `[CV] Title` further papers, `No 3. 《Title》` weekly
picks), section markers, digest front matter (legend, `转自…`, `摘要:`, a closing `来源:`),
noise (image names, page chrome, the copyright line) and the body lines that belong to the
entry above them. The result is the entries with their raw body lines, and the front matter;
`feeds.parse_entry` reads each entry's body.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

from feeds.identity import YEARS, classify, date_in_text, find_urls, valid_date
from feeds.model import Link, Section
from feeds.textutil import collapse_spaces, has_cjk, strip_tags

Warn = Callable[[int, str], None]

STAR = "[*＊]"
OPEN = "[\\[【［]"
CLOSE = "[\\]】］]"
# LG, CV, IR, stat.ML, cs.LG, q-bio.NC: an arXiv-style category code.
_CATEGORY = r"(?P<cat>(?:[a-z][a-z\-]*\.)?[A-Z][A-Za-z]{1,4})"

# An entry number: any count a file can hold, but not a number too long to be a count.
_NUMBER = r"(?P<num>\d{1,9})(?!\d)"

_FEATURED = re.compile(
    rf"^(?P<s1>{STAR})?\s*{_NUMBER}\s*[、,，.．]\s*(?P<s2>{STAR})?\s*"
    rf"{OPEN}\s*{_CATEGORY}\s*{CLOSE}\s*(?P<s3>{STAR})?\s*(?P<title>.*)$"
)
# `3、Title` without a [category]: read as an entry, with a warning (daily digests only).
_FEATURED_LOOSE = re.compile(rf"^(?P<s1>{STAR})?\s*{_NUMBER}\s*、\s*(?P<title>.*)$")
_MORE = re.compile(
    rf"^(?P<s1>{STAR})?\s*{OPEN}\s*{_CATEGORY}\s*{CLOSE}\s*(?P<s3>{STAR})?\s*(?P<title>\S.*)$"
)
# Not anchored with ^: it is also matched from the middle of a line, after page chrome.
_WEEKLY = re.compile(
    rf"\s*[Nn][Oo]\s*\.?\s*{_NUMBER}\s*[.．、,，:：]?\s*(?P<title>.*)$"
)
# The further papers' heading, with a count (`（4篇）`) or the first entry glued to it.
# The words that label a link on its own line (`[PDF] https://…`, `代码: https://…`): a link of
# the entry above, never an entry, and the word is not text. Only these words: `[MIT]` before
# a link is an affiliation, and a Chinese clause before `：` is a sentence.
LINK_LABEL = re.compile(
    rf"^(?:{OPEN}\s*)?(?:pdf|code|codes|paper|project(?: page)?|home ?page|github|demo|video|"
    r"slides|data(?:set)?|blog|link|arxiv|论文|代码|项目(?:主页|地址)?|主页|链接|地址|视频|数据集?)"
    rf"(?:\s*{CLOSE})?\s*[:：]?$",
    re.IGNORECASE,
)
_LINK_TITLE = re.compile(r"https?://", re.IGNORECASE)
_MORE_HEADER = re.compile(
    r"^另外几篇值得关注的论文\s*(?:[(（]\s*\d+\s*篇?\s*[)）])?\s*[:：]?\s*(?P<rest>.*)$"
)
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
# First characters of entry starts: numbers (any script's digits too: `５．[LG]`), stars,
# brackets and `No`.
_START_CHARS = frozenset("0123456789*＊[【［Nn")
# A line that reads like an entry start but is none (a tag after something else, `📄[LG] …`,
# `5) [LG] …`, `[lg] …`, or a start glued to the end of the line before): read as text of
# the entry above, as before, but said, so that a damaged start never hides a paper.
_HIDDEN_START = re.compile(
    rf"(?:(?<!\d)\d{{1,4}}\s*[、，.．]|^\W{{0,4}}\d{{1,4}}\s*[)）:：,])\s*{STAR}?\s*{OPEN}\s*"
    rf"[A-Za-z][\w.\-/]{{0,15}}\s*{CLOSE}"
    rf"|^\W{{0,4}}(?:{OPEN}\s*\d{{1,4}}\s*{CLOSE}\s*{STAR}?\s*)?{OPEN}\s*"
    rf"[A-Za-z][\w.\-/]{{0,15}}\s*{CLOSE}\s*(?!https?://)\S"
)


@dataclass(slots=True)
class Entry:
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
class Front:
    """What the lines outside any entry say about the digest."""

    title: str | None = None
    summary: str | None = None
    credit: str | None = None
    legend: dict[str, str] = field(default_factory=dict)
    text_date: date | None = None
    links: list[Link] = field(default_factory=list)
    # From a `date: YYYY-MM-DD` first line.
    header_date: date | None = None


@dataclass(slots=True)
class Lines:
    """A digest's lines sorted: its entries in file order, and its front matter."""

    entries: list[Entry]
    front: Front
    # More weekly picks than numbered daily entries: the digest is a weekly list.
    weekly: bool


def read_lines(lines: list[str], warn: Warn) -> Lines:
    """Sort the lines of one digest (as `textutil.split_lines` gives them) into entries and
    front matter, warning about what fits nowhere."""
    return _Reader(lines, warn).read()


def _legend_like(text: str) -> bool:
    """A line that starts with a `LG - 机器学习` pair and has three or more: a digest's legend
    (not `GPT-3, BERT-large`, nor a sentence that glosses three terms)."""
    return _LEGEND_PAIR.match(text) is not None and sum(
        has_cjk(name) for _, name in _LEGEND_PAIR.findall(text)
    ) >= 3


def _has_bracket(text: str) -> bool:
    return "[" in text or "【" in text or "［" in text


def clip(text: str, width: int = 60) -> str:
    """`text` short enough to quote in a warning."""
    return text if len(text) <= width else text[: width - 1] + "…"


class _Reader:
    def __init__(self, lines: list[str], warn: Warn) -> None:
        self.lines = lines
        self.warn = warn
        self.front = Front()
        self.entries: list[Entry] = []

    def read(self) -> Lines:
        lines = self.lines
        current: Entry | None = None
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
            header = _MORE_HEADER.match(text) if first == "另" else None
            if header is not None:
                in_more = True
                current = None
                text = header["rest"]
                if not text:
                    continue
                first = text[0]
            if first in _START_CHARS or first.isdigit() or '">' in text:
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
            if current is None:
                self._front_line(text, index + 1, in_more)
            else:
                # Most body lines hold no bracket: the regular expression over every line of
                # ten years of abstracts cost as much as the rest of the parse.
                if _has_bracket(text) and _HIDDEN_START.search(text):
                    self.warn(
                        index + 1,
                        f"read as text of the entry above, but looks like an entry start: "
                        f"{clip(text)}",
                    )
                elif len(text) < 200 and _legend_like(text):
                    # A second digest pasted below the first: its legend would otherwise be
                    # read as text of the last entry, its entries as this digest's.
                    self.warn(
                        index + 1,
                        f"a digest's legend inside an entry: is a second digest pasted into "
                        f"this file? {clip(text)}",
                    )
                current.body.append((index + 1, text))
        weekly = weekly_starts > daily_starts
        self._settle_loose(weekly)
        self._check_numbers()
        self._trailing_source()
        return Lines(self.entries, self.front, weekly)

    def _settle_loose(self, weekly: bool) -> None:
        """`3、Title` lines are entries in a daily digest, but commentary in a weekly one."""
        kept: list[Entry] = []
        for entry in self.entries:
            if not entry.loose:
                kept.append(entry)
            elif not weekly:
                self.warn(entry.line, f"entry {entry.number} has no [category]: {clip(entry.raw)}")
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
        found = valid_date(match["y"], match["m"], match["d"])
        if found is None:
            self.warn(
                1,
                f"invalid date in header: {self.lines[0].strip()} (a calendar date from "
                f"{YEARS.start} to {YEARS.stop - 1}); the digest is dated another way",
            )
        self.front.header_date = found
        return 1

    def _entry_start(self, text: str, number: int) -> Entry | None:
        first = text[0]
        if '">' in text:
            match = _WEEKLY.match(text, text.rfind('">') + 2)
            if match is not None:
                # Page chrome: a cut-off link (`…》">No 1. …`) glued before the entry.
                return _weekly(match, number)
        if first.isdigit() or first in "*＊":
            match = _FEATURED.match(text)
            if match is not None:
                return _daily(match, number, "featured")
            match = _FEATURED_LOOSE.match(text)
            if match is not None:
                return Entry(
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
            # `[PDF] https://…`, `[Code] https://…`: a labelled link of the entry above.
            if match is not None and not (
                _LINK_TITLE.match(match["title"]) and LINK_LABEL.match(match["cat"])
            ):
                return _daily(match, number, "more")
        if first in "Nn":
            match = _WEEKLY.match(text)
            if match is not None:
                return _weekly(match, number)
        return None

    def _front_line(self, text: str, number: int, in_more: bool) -> None:
        front = self.front
        if in_more:
            self.warn(number, f"line outside any entry ignored: {clip(text)}")
            return
        if not front.legend:
            pairs = _LEGEND_PAIR.findall(text)
            if len(pairs) >= 2:
                # A legend copied from a web page can carry a tag where a name was
                # (`LG -<a href=...`): the name is what is left without it, if anything.
                names = ((code, strip_tags(name)) for code, name in pairs)
                front.legend = {code: name for code, name in names if name}
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
        self.warn(number, f"line outside any entry ignored: {clip(text)}")

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


def _daily(match: re.Match[str], number: int, section: Section) -> Entry:
    if section == "featured":
        starred = bool(match["s1"] or match["s2"] or match["s3"])
        return Entry(section, number, int(match["num"]), match["cat"], starred, match["title"])
    starred = bool(match["s1"] or match["s3"])
    return Entry(section, number, None, match["cat"], starred, match["title"])


def _weekly(match: re.Match[str], number: int) -> Entry:
    return Entry("weekly", number, int(match["num"]), None, False, match["title"])
