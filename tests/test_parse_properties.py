"""Properties of the parser: any input gives a clean result or the project's own parse error."""

from __future__ import annotations

import json
import re
from zoneinfo import ZoneInfo

from conftest import FIXTURES, SEED_FILES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feeds.errors import ParseError
from feeds.model import Digest, Item
from feeds.parse import parse_text
from feeds.textutil import decode

SHANGHAI = ZoneInfo("Asia/Shanghai")
SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

SEED_LINES = sorted(
    {
        line
        for path in [*SEED_FILES, *sorted((FIXTURES / "variants").glob("*.txt"))]
        for line in path.read_text(encoding="utf-8").splitlines()
    }
)
# Written here independently of the parser: what a reader would call the start of an entry.
_CATEGORY = r"[\[【［]\s*(?:[a-z][a-z\-]*\.)?[A-Z][A-Za-z]{1,4}\s*[\]】］]"
ENTRY_LINE = re.compile(
    rf"^\s*[*＊]?\s*(?:\d{{1,9}}\s*[、,，.．]\s*[*＊]?\s*)?{_CATEGORY}\s*[*＊]?\s*\S"
    r"|^\s*No\s*\d|\">No\s*\d"
)
KEY = re.compile(r"^(arxiv|openreview|doi|weibo|title):\S+$")
# What no item field may carry: C0 and C1 controls (a newline only in the multi-line fields),
# bidi embeddings, overrides and isolates, lone surrogates, and HTML tags (whole or cut off).
UNCLEAN = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
MARKUP = re.compile(r"</?(?:a|b|i|br|p|div|span|em|strong|font|img)(?:[\s/>]|$)", re.IGNORECASE)
MULTI_LINE = {"summary_zh", "abstract", "notes"}

line_mixtures = st.lists(st.sampled_from(SEED_LINES), min_size=1, max_size=60)
# Seed lines, noise and arbitrary text in any order, with any line ends.
mixed = st.lists(
    st.one_of(st.sampled_from(SEED_LINES), st.text(max_size=80)), min_size=1, max_size=40
)
# What a damaged or hostile file puts inside lines: controls, direction overrides, markup.
NASTY = st.sampled_from(
    [
        "\x00", "\x07", "\t", "\x0b", "\x0c", "\x1b[31m", "\x7f", "\x85", "\x9b",
        "\u2028", "\u202e", "\u2066", "\ud800", '<a href="ht', '<a href="https://arxiv.org/abs/2101.00001">',
        "</a>", "<b>", "<br/>", "<", ">", "\ufeff",
    ]
)


@st.composite
def soiled_lines(draw: st.DrawFn) -> str:
    """Seed lines with nasty fragments put in anywhere, and a line cut anywhere at the end."""
    lines = draw(st.lists(st.sampled_from(SEED_LINES), min_size=1, max_size=30))
    out = []
    for line in lines:
        for _ in range(draw(st.integers(0, 3))):
            at = draw(st.integers(0, len(line)))
            line = line[:at] + draw(NASTY) + line[at:]
        out.append(line)
    text = "\n".join(out)
    return text[: draw(st.integers(0, len(text)))] if draw(st.booleans()) else text


def parse_or_error(text: str, filename: str | None = None) -> Digest | None:
    try:
        digest = parse_text(text, source="prop.txt", tz=SHANGHAI, filename=filename)
    except ParseError as exc:
        assert exc.path == "prop.txt"
        return None
    check_invariants(digest)
    return digest


def check_invariants(digest: Digest) -> None:
    json.dumps(digest.as_dict(), ensure_ascii=False)
    assert digest.format in {"daily", "weekly"}
    for item in digest.items:
        assert item.title.strip()
        assert KEY.match(item.key), item.key
        assert item.guid
        assert item.published == digest.date
        assert item.digest_id == digest.id
        check_clean(item)
    assert [w.line for w in digest.warnings] == sorted(w.line for w in digest.warnings)


def check_clean(item: Item) -> None:
    """Every string field of `item` is clean text."""
    fields = item.as_dict()
    strings: list[tuple[str, str]] = [
        (name, value) for name, value in fields.items() if isinstance(value, str)
    ]
    strings += [("authors", a) for a in item.authors]
    strings += [("affiliations", a) for a in item.affiliations]
    strings += [("links", link.href) for link in item.links]
    for name, value in strings:
        assert not UNCLEAN.search(value), (name, value)
        assert not MARKUP.search(value), (name, value)
        if name not in MULTI_LINE:
            assert "\n" not in value, (name, value)


@SETTINGS
@given(st.text())
def test_arbitrary_text_parses_or_raises_a_parse_error(text: str) -> None:
    parse_or_error(text)


@SETTINGS
@given(st.binary(max_size=400))
def test_arbitrary_bytes_decode_and_parse_or_raise_a_parse_error(data: bytes) -> None:
    try:
        text = decode(data, path="prop.txt")
    except ParseError as exc:
        assert exc.path == "prop.txt"
        return
    parse_or_error(text)


@SETTINGS
@given(line_mixtures, st.sampled_from(["\n", "\r\n", "\r"]))
def test_every_entry_line_of_a_seed_mixture_gives_an_item_or_a_warning(
    lines: list[str], newline: str
) -> None:
    digest = parse_or_error(newline.join(lines))
    if digest is None:
        return
    accounted = {item.line for item in digest.items} | {w.line for w in digest.warnings}
    for number, line in enumerate(lines, start=1):
        if ENTRY_LINE.search(line):
            assert number in accounted, (number, line)


@SETTINGS
@given(mixed, st.sampled_from([None, "2021-03-30.txt", "20210330-weekly.txt", "x.txt"]))
def test_seed_lines_mixed_with_noise_never_raise(parts: list[str], filename: str | None) -> None:
    parse_or_error("\n".join(parts), filename=filename)


@SETTINGS
@given(soiled_lines())
def test_any_text_gives_items_whose_every_string_field_is_clean(text: str) -> None:
    parse_or_error(text)
