"""Digest text -> `Digest` with `Item`s, plus warnings for whatever was not understood.

Three steps. `feeds.parse_lines` sorts each line into a grammar of line kinds (entry starts,
section markers, front matter, noise, body lines); `feeds.parse_entry` reads each entry's body
by position (authors, [affiliations], summary and abstract, links); this module settles
identity, ranks and the digest date, and is what the rest of the project calls. Nothing is
dropped silently: a line that looks like an entry but cannot be read becomes a `ParseWarning`
with its line number.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from feeds.collector import collector_paused
from feeds.errors import ParseError, display_path
from feeds.identity import (
    date_in_filename,
    identify,
    key_rank,
    local_midnight,
    weibo_post_time,
)
from feeds.model import DateSource, Digest, DigestFormat, ParseWarning
from feeds.parse_entry import Draft, label, read_entry
from feeds.parse_lines import Lines, Warn, read_lines
from feeds.textutil import decode_with_notes, fit, normalize_title, split_lines

__all__ = ["format_table", "normalize_title", "parse_file", "parse_text", "weibo_post_time"]

# Every module of the package a parse depends on (errors and the collector aside: neither changes
# what a parse gives, and errors are never cached). A cached
# parse is valid while these are unchanged; a test checks the list against the imports.
MODULES = (
    "feeds.parse",
    "feeds.parse_lines",
    "feeds.parse_entry",
    "feeds.identity",
    "feeds.textutil",
    "feeds.model",
)


def parse_file(path: Path, *, tz: ZoneInfo) -> Digest:
    """Read one digest file. Raises ParseError (and nothing else) if it is no digest at all."""
    source = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ParseError(f"cannot read: {exc.strerror or type(exc).__name__}", path=source) from exc
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
    # Half the time of a 100,000-entry file was the collector walking what the parse made.
    with collector_paused():
        return _parse(text, source=source, tz=tz, filename=filename, content_hash=content_hash)


def _parse(
    text: str, *, source: str, tz: ZoneInfo, filename: str | None, content_hash: str
) -> Digest:
    warnings: list[ParseWarning] = []

    def warn(line: int, message: str) -> None:
        warnings.append(ParseWarning(line, message))

    found = read_lines(split_lines(text), warn)
    entries = found.entries
    drafts = [
        draft
        for entry in entries
        if (draft := read_entry(entry, found.front.legend, warn, last=entry is entries[-1]))
        is not None
    ]
    if not drafts:
        warn(1, "no entries found")
    _rank(drafts)
    _settle_keys(drafts, warn)
    moment, date_source = _date(found, drafts, filename, tz)
    digest_format: DigestFormat = "weekly" if found.weekly else "daily"
    digest_id = ""
    if moment is not None:
        digest_id = moment.date().isoformat() + ("-weekly" if found.weekly else "")
    front = found.front
    warnings.sort(key=lambda w: w.line)
    return Digest(
        id=digest_id,
        date=moment,
        date_source=date_source,
        source=source,
        format=digest_format,
        title=front.title or _default_title(digest_format),
        summary=front.summary or None,
        items=tuple(d.item(published=moment, digest_id=digest_id) for d in drafts),
        warnings=tuple(warnings),
        content_hash=content_hash,
        credit=front.credit,
        links=tuple(front.links),
    )


def _rank(drafts: list[Draft]) -> None:
    """Numbered entries keep their number; further papers continue after the highest so far."""
    highest = 0
    for draft in drafts:
        number = draft.entry.number
        if draft.entry.section == "more" or number is None:
            number = highest + 1
        draft.rank = number
        highest = max(highest, number)


def _settle_keys(drafts: list[Draft], warn: Warn) -> None:
    """One key per paper in a digest: entries with the same key or title share the best."""
    group_of: dict[str, int] = {}
    groups: list[list[Draft]] = []
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
            warn(
                draft.entry.line,
                f"{label(draft)} repeats {label(first)} (same paper); both kept, one key",
            )
        groups[found].append(draft)
        for name in names:
            group_of.setdefault(name, found)
    for group in groups:
        if len(group) > 1:
            best = min(group, key=lambda d: key_rank(d.key))
            for draft in group:
                draft.key, draft.guid = best.key, best.guid


def _date(
    found: Lines, drafts: list[Draft], filename: str | None, tz: ZoneInfo
) -> tuple[datetime | None, DateSource]:
    """The digest date by the first rule that applies (header, file name, text, Weibo)."""
    earliest = _earliest_post(drafts, tz)
    day: date | None = None
    source: DateSource = "unknown"
    if found.front.header_date is not None:
        day, source = found.front.header_date, "header"
    elif filename and (in_name := date_in_filename(filename)) is not None:
        day, source = in_name, "filename"
    elif found.front.text_date is not None:
        day, source = found.front.text_date, "text"
    if day is None:
        return (earliest, "weibo") if earliest is not None else (None, "unknown")
    if earliest is not None and earliest.date() == day:
        # The same day, known to the second: the feed shows when it was really posted.
        return earliest, "weibo"
    return local_midnight(day, tz), source


def _earliest_post(drafts: list[Draft], tz: ZoneInfo) -> datetime | None:
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
            moment = weibo_post_time(post).astimezone(tz)
        except ValueError:
            continue
        if 2009 <= moment.year <= 2200:
            return moment
    return None


def _default_title(digest_format: DigestFormat) -> str:
    # No date in it: the build may date an undated digest later, and pages show the date anyway.
    return "Weekly picks" if digest_format == "weekly" else "Daily digest"


def format_table(digest: Digest) -> str:
    """A readable table of one digest: rank, category, star, title, authors, link, date."""
    when = digest.date.isoformat() if digest.date else "undated"
    head = (
        f"{display_path(digest.source)}: {digest.format} digest "
        f"{digest.id or '(no id yet)'}, {when} "
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
