"""The subscriber list: `subscribers.csv` with `email,name,categories` rows.

A bad row never stops the others: it is reported with its line and skipped, so one typo in a
list of thousands does not cancel a newsletter. Addresses are checked strictly because they end
up in the SMTP envelope and the `To` header; names are cleaned of control characters for the
same reason (a name is the one free-text field a subscriber controls).
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, replace
from email.headerregistry import Address
from pathlib import Path
from typing import Literal

from feeds.errors import ConfigError

Severity = Literal["error", "warning"]

_CATEGORY = re.compile(r"[A-Za-z][A-Za-z0-9.-]{0,31}\Z")
_CATEGORY_SPLIT = re.compile(r"[\s,;]+")
_COLUMNS = ("email", "name", "categories")
# `feeds subscribers export` adds each subscriber's state: only confirmed rows are taken back.
_STATUS = "status"
MAX_NAME = 200


@dataclass(frozen=True, slots=True)
class Subscriber:
    email: str
    name: str
    # Category codes as written ("CV", "stat.ML"); empty means every category.
    categories: frozenset[str]
    line: int

    @property
    def key(self) -> str:
        """The identity in the ledger: the address, case-folded (mailboxes are, in practice)."""
        return self.email.lower()

    @property
    def address(self) -> str:
        """The `To` header value; `Address` quotes or encodes the name, never passes it raw."""
        local, _, domain = self.email.rpartition("@")
        return str(Address(display_name=self.name, username=local, domain=domain))


@dataclass(frozen=True)
class Problem:
    line: int
    message: str
    severity: Severity = "error"


@dataclass(frozen=True)
class SubscriberList:
    source: str
    subscribers: tuple[Subscriber, ...]
    problems: tuple[Problem, ...] = ()

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "error")

    def keys(self) -> list[str]:
        """The ledger's identities of the subscribers."""
        return [s.key for s in self.subscribers]


def load_subscribers(path: Path) -> SubscriberList:
    """Read the subscriber list; a missing or unreadable file is an error, a bad row is not."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigError(
            "subscriber list not found",
            path=str(path),
            hint="create it with a header line `email,name,categories`, or set [paths] subscribers",
        ) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read subscriber list: {exc.strerror}", path=str(path)) from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"subscriber list is not UTF-8 (byte {exc.start})",
            path=str(path),
            hint="save it as UTF-8 CSV",
        ) from exc
    return parse_subscribers(text, source=str(path))


def _uncommented(text: str) -> Iterator[str]:
    """The lines of `text`, a comment line (`#` first, outside a quoted field) made blank so
    that line numbers stay right."""
    inside = False
    for line in io.StringIO(text, newline=""):
        if not inside and line.lstrip().startswith("#"):
            yield "\n"
            continue
        # An odd number of quotes opens or closes a field that goes on to the next line.
        inside ^= line.count('"') % 2 == 1
        yield line


def parse_subscribers(text: str, *, source: str = "subscribers.csv") -> SubscriberList:
    """Parse CSV text. The header line is optional; without it the columns are email, name,
    categories. Blank lines and lines starting with `#` are ignored (a quoted `"#..."` field is
    data: `feeds subscribers export` quotes every field)."""
    reader = csv.reader(_uncommented(text))
    columns: tuple[str, ...] = _COLUMNS
    subscribers: list[Subscriber] = []
    problems: list[Problem] = []
    first_line: dict[str, int] = {}
    category_sets: dict[frozenset[str], frozenset[str]] = {}
    end = 0
    first_row = True
    while True:
        start = end + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            problems.append(Problem(reader.line_num or start, f"unreadable CSV: {exc}"))
            break
        end = reader.line_num
        if not row or not "".join(row).strip():
            continue
        if first_row:
            first_row = False
            header = tuple(cell.strip().lower() for cell in row)
            if "email" in header:
                unknown = [c for c in header if c and c not in (*_COLUMNS, _STATUS)]
                if unknown:
                    problems.append(
                        Problem(start, f"unknown column(s) {', '.join(unknown)}", "warning")
                    )
                columns = header
                continue
        record = dict(zip(columns, row, strict=False))
        if len(row) > len(columns) and any(cell.strip() for cell in row[len(columns) :]):
            problems.append(Problem(start, f"{len(row)} fields, expected {len(columns)}"))
            continue
        status = record.get(_STATUS, "").strip().lower()
        if status not in ("", "confirmed"):
            # Someone who left (or whose mailbox refused mail) is never subscribed by a list.
            problems.append(Problem(start, f"{status}: not subscribed again", "warning"))
            continue
        subscriber = _subscriber(record, start, problems)
        if subscriber is None:
            continue
        seen = first_line.get(subscriber.key)
        if seen is not None:
            problems.append(
                Problem(start, f"duplicate of line {seen} ({subscriber.email}); kept line {seen}",
                        "warning")
            )
            continue
        first_line[subscriber.key] = start
        # Thousands of subscribers share a handful of category sets: keep one of each.
        shared = category_sets.setdefault(subscriber.categories, subscriber.categories)
        if shared is not subscriber.categories:
            subscriber = replace(subscriber, categories=shared)
        subscribers.append(subscriber)
    return SubscriberList(source, tuple(subscribers), tuple(problems))


def _subscriber(record: dict[str, str], line: int, problems: list[Problem]) -> Subscriber | None:
    email = record.get("email", "").strip()
    if not email:
        problems.append(Problem(line, "missing email address"))
        return None
    checked = normalize_email(email)
    if isinstance(checked, _Invalid):
        problems.append(Problem(line, f"invalid email address {email!r}: {checked.reason}"))
        return None
    text = record.get("categories", "")
    categories = parse_categories(text)
    if categories is None:
        problems.append(Problem(line, f"invalid category in {text.strip()!r}"))
        return None
    return Subscriber(
        email=checked, name=clean_name(record.get("name", "")), categories=categories, line=line
    )


def parse_categories(text: str) -> frozenset[str] | None:
    """Category codes written as "CV CL" (or with commas); None when one is not a code."""
    codes = [code for code in _CATEGORY_SPLIT.split(text.strip()) if code]
    if not all(_CATEGORY.match(code) for code in codes):
        return None
    return frozenset(codes)


@dataclass(frozen=True)
class _Invalid:
    reason: str


def normalize_email(value: str) -> str | _Invalid:
    """The address as it goes into the envelope (the domain in its ASCII form), or why it
    cannot. Checked by email-validator, without a DNS lookup: no network at send time, and a
    domain that does not exist shows up as a bounce."""
    from email_validator import EmailNotValidError, validate_email

    try:
        checked = validate_email(value, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        return _Invalid(str(exc).rstrip("."))
    address: str = checked.ascii_email or checked.normalized
    return address


def clean_name(value: str) -> str:
    """A display name with line breaks and other control characters turned into spaces."""
    cleaned = "".join(
        " " if unicodedata.category(ch)[0] in "CZ" else ch for ch in value
    )
    return " ".join(cleaned.split())[:MAX_NAME]


def resolve_categories(wanted: frozenset[str], present: frozenset[str]) -> frozenset[str]:
    """Spell a subscriber's codes as the digests do ("cv" -> "CV"), leaving unknown codes as
    written so that they simply match nothing."""
    by_fold = {code.casefold(): code for code in present}
    return frozenset(by_fold.get(code.casefold(), code) for code in wanted)
