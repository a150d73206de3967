"""Properties of the parser: any input gives a clean result or the project's own parse error."""

from __future__ import annotations

import json
import re
from zoneinfo import ZoneInfo

from conftest import FIXTURES, SEED_FILES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feeds.errors import ParseError
from feeds.model import Digest
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

line_mixtures = st.lists(st.sampled_from(SEED_LINES), min_size=1, max_size=60)
# Seed lines, noise and arbitrary text in any order, with any line ends.
mixed = st.lists(
    st.one_of(st.sampled_from(SEED_LINES), st.text(max_size=80)), min_size=1, max_size=40
)


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
    assert [w.line for w in digest.warnings] == sorted(w.line for w in digest.warnings)


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
