"""Identity and dates: link kinds, paper keys, guids, Weibo post times, dates in names and text.

These rules decide what a feed reader sees as "the same entry" across rebuilds, so they depend
only on what a paper is (its links and title), never on file names, positions or config.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo

from feeds.model import Link, LinkKind
from feeds.textutil import normalize_title

_BASE62 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_BASE62_VALUE = {ch: i for i, ch in enumerate(_BASE62)}
# Weibo's mid counts from this epoch in its top bits (the low 22 bits are a sequence).
_WEIBO_EPOCH = 515483463

URL = re.compile(r"https?://[^\s<>\"'\u3000-\u9fff\uff00-\uffef]+")
# Trailing punctuation that ends a sentence rather than the URL.
_URL_TAIL = ".,;:!?)]}’”"

_ARXIV = re.compile(
    r"^https?://(?:www\.|export\.)?arxiv\.org/(?:abs|pdf)/"
    r"(?P<id>\d{4}\.\d{4,5}|[a-z][a-z.\-]*/\d{7})(?:v\d+)?(?:\.pdf)?/?(?:[?#].*)?$",
    re.IGNORECASE,
)
_OPENREVIEW = re.compile(
    r"^https?://(?:www\.)?openreview\.net/(?:forum|pdf)\?id=(?P<id>[\w\-]+)", re.IGNORECASE
)
_DOI = re.compile(r"^https?://(?:dx\.)?doi\.org/(?P<id>10\.\d{4,9}/\S+)$", re.IGNORECASE)
_WEIBO = re.compile(
    r"^https?://(?:www\.)?weibo\.com/(?P<uid>\d+)/(?P<id>[0-9A-Za-z]{6,12})/?(?:[?#].*)?$"
)
_WEIBO_MOBILE = re.compile(
    r"^https?://m\.weibo\.cn/(?:status|detail)/(?P<id>[0-9A-Za-z]+)/?(?:[?#].*)?$"
)

# Link kinds, the one that names a paper best first (the identity rule of
# docs/input-formats.md). A paper's key comes from the first kind that carries an id, and its
# primary link (`feeds.links.primary_url`) follows the same order, so the link a reader follows
# is the paper the guid names.
LINK_ORDER: tuple[LinkKind, ...] = ("arxiv", "openreview", "doi", "weibo", "other")
LINK_RANK: dict[str, int] = {kind: rank for rank, kind in enumerate(LINK_ORDER)}
_TAG_PREFIX = "tag:digest-feeds,2020:"

_FILENAME_DATE = re.compile(r"(?<!\d)(\d{4})(-?)(\d{2})\2(\d{2})(?!\d)")
_TEXT_DATE = re.compile(
    r"(?<!\d)((?:19|20)\d{2})\s*[.\-/年]\s*(\d{1,2})\s*[.\-/月]\s*(\d{1,2})(?!\d)"
)


def find_urls(text: str) -> list[tuple[int, int, str]]:
    """Every http(s) URL in `text` as (start, end, url), sentence punctuation trimmed."""
    found = []
    for match in URL.finditer(text):
        url = match.group()
        end = match.end()
        # A closing parenthesis is the URL's own only while it balances one inside it.
        while url and url[-1] in _URL_TAIL and not (
            url[-1] == ")" and url.count("(") >= url.count(")")
        ):
            url = url[:-1]
            end -= 1
        if len(url) > len("https://"):
            found.append((match.start(), end, url))
    return found


@dataclass(frozen=True)
class Ref:
    """A typed link and the paper id it carries (arXiv id, DOI, Weibo post id, ...), if any."""

    link: Link
    ident: str | None = None


def classify(url: str) -> Ref:
    """A URL as a typed link with its id; cheap substring tests first, a regex only to confirm."""
    if "arxiv.org" in url and (match := _ARXIV.match(url)):
        return Ref(Link("arxiv", url), match["id"])
    if "openreview.net" in url and (match := _OPENREVIEW.match(url)):
        return Ref(Link("openreview", url), match["id"])
    if "doi.org" in url and (match := _DOI.match(url)):
        return Ref(Link("doi", url), match["id"])
    if "weibo" in url:
        match = _WEIBO.match(url) or _WEIBO_MOBILE.match(url)
        if match:
            return Ref(Link("weibo", url), match["id"])
    return Ref(Link("other", url))


def best_link(refs: Sequence[Ref]) -> Ref | None:
    """The link that names the paper best: arXiv, OpenReview, DOI, Weibo, else the first."""
    best: Ref | None = None
    for ref in refs:
        if ref.ident is not None and (
            best is None or LINK_RANK[ref.link.kind] < LINK_RANK[best.link.kind]
        ):
            best = ref
    if best is None and refs:
        return refs[0]
    return best


def key_rank(key: str) -> int:
    """How well a key names its paper: 0 for an arXiv key, up to title hashes last."""
    return LINK_RANK.get(key.split(":", 1)[0], len(LINK_ORDER))


def identify(refs: Sequence[Ref], title: str) -> tuple[str, str]:
    """(key, guid) of a paper from its links, else from its normalized title."""
    ref = best_link(refs)
    if ref is not None and ref.ident is not None:
        ident, kind = ref.ident, ref.link.kind
        if kind == "arxiv":
            return f"arxiv:{ident}", f"https://arxiv.org/abs/{ident}"
        if kind == "openreview":
            return f"openreview:{ident}", f"https://openreview.net/forum?id={ident}"
        if kind == "doi":
            doi = ident.lower()
            return f"doi:{doi}", f"https://doi.org/{doi}"
        match = _WEIBO.match(ref.link.href)
        guid = (
            f"https://weibo.com/{match['uid']}/{ident}"
            if match
            else f"https://m.weibo.cn/status/{ident}"
        )
        return f"weibo:{ident}", guid
    digest = hashlib.sha256(normalize_title(title).encode("utf-8")).hexdigest()[:16]
    key = f"title:{digest}"
    return key, _TAG_PREFIX + key


def weibo_mid(post_id: str) -> int:
    """The numeric mid behind a base62 Weibo post id. Raises ValueError if it is not one.

    The id is the mid in base62, written in groups of 4 characters from the right, each group
    standing for 7 decimal digits (the first group for what is left).
    """
    if not post_id:
        raise ValueError("empty Weibo post id")
    mid = 0
    head = len(post_id) % 4 or 4
    start = 0
    for end in range(head, len(post_id) + 1, 4):
        value = 0
        for ch in post_id[start:end]:
            digit = _BASE62_VALUE.get(ch)
            if digit is None:
                raise ValueError(f"not a Weibo post id: {post_id!r}")
            value = value * 62 + digit
        if start and value >= 10_000_000:
            raise ValueError(f"not a Weibo post id: {post_id!r}")
        mid = mid * 10_000_000 + value
        start = end
    return mid


def weibo_post_time(post_id: str) -> datetime:
    """When a Weibo post was published, decoded from its base62 id (aware, UTC).

    The mid's top bits count seconds from Weibo's epoch. Raises ValueError for an id that is
    not base62 or decodes to no representable time.
    """
    try:
        return datetime.fromtimestamp((weibo_mid(post_id) >> 22) + _WEIBO_EPOCH, UTC)
    except (OverflowError, OSError) as exc:
        raise ValueError(f"Weibo post id out of range: {post_id!r}") from exc


def date_in_filename(name: str) -> date | None:
    """A calendar date written as 2021-03-30 or 20210330 in a file name, if valid."""
    for match in _FILENAME_DATE.finditer(name):
        found = valid_date(match.group(1), match.group(3), match.group(4))
        if found is not None:
            return found
    return None


def date_in_text(text: str) -> date | None:
    """A date written in prose, like `2020.7.11周论文精选` or `2021年3月30日`."""
    for match in _TEXT_DATE.finditer(text):
        found = valid_date(match.group(1), match.group(2), match.group(3))
        if found is not None:
            return found
    return None


# The years a digest can be dated in, however its date is written: arXiv began in 1991, and a
# year outside this is a typo (`0202-03-10`), which the feeds' dates and months cannot hold.
YEARS = range(1990, 2201)


def valid_date(year: str, month: str, day: str) -> date | None:
    """The date, if it is one and its year is in `YEARS`."""
    try:
        found = date(int(year), int(month), int(day))
    except ValueError:
        return None
    return found if found.year in YEARS else None


def local_midnight(day: date, tz: tzinfo) -> datetime:
    """The first moment of `day` in `tz`, as that zone's clock shows it: 00:00, or 01:00 on a
    day whose clocks jump forward at midnight (America/Santiago), when 00:00 never happens."""
    start = datetime(day.year, day.month, day.day, tzinfo=tz)
    return start.astimezone(UTC).astimezone(tz)
