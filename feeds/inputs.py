"""The build's first stage: the input folder -> every digest to publish, dated and named.

Files are recognized by content (sha256), so a rename changes nothing and an edit is a new
digest that keeps the first-seen time of the text it replaced. A file whose name, size and mtime
did not change is not read again, and content parsed before by the same parser is not parsed
again: the state database keeps the parse. Only here are digest ids and dates settled, once,
and recorded, so that they never move.
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import os
import sqlite3
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from stat import S_ISLNK, S_ISREG
from typing import TYPE_CHECKING, NamedTuple
from zoneinfo import ZoneInfo

import feeds
from feeds import state, store
from feeds.config import Settings
from feeds.errors import ConfigError, FeedsError, display_path
from feeds.model import Digest

if TYPE_CHECKING:
    from feeds.workers import Workers

Listing = list[tuple[str, int, int]]


class Scan(NamedTuple):
    """What the input folder holds: the digest files to read, and those refused, each with
    why: (path, message)."""

    files: Listing
    refused: list[tuple[Path, str]]

    def errors(self) -> list[str]:
        return [f"{display_path(path)}: {why}" for path, why in self.refused]

    def without(self, names: list[str]) -> Scan:
        """The same listing without these files."""
        return self._replace(files=[f for f in self.files if f[0] not in names]) if names else self


def scan(folder: Path) -> Scan:
    """(name, size, mtime_ns) of every digest file, by name; hidden files are editor debris.

    A symbolic link is followed only to a regular file inside the folder: a link to a file
    elsewhere (a secret, by mistake or malice) or a link loop is refused, never read. One stat
    per file relative to the open folder: this is most of what a no-op build costs.
    """
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        raise ConfigError(
            "the input folder does not exist",
            path=str(folder),
            hint="set [paths] input in feeds.toml or pass --input",
        ) from None
    except NotADirectoryError:
        raise ConfigError("the input path is not a folder", path=str(folder)) from None
    found = Scan([], [])
    try:
        for name in sorted(os.listdir(fd)):
            if not name.endswith(".txt") or name.startswith("."):
                continue
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if S_ISLNK(st.st_mode):
                    why = _outside(folder, name)
                    if why:
                        found.refused.append((folder / name, why))
                        continue
                    st = os.stat(name, dir_fd=fd)
            except FileNotFoundError:  # removed while we looked
                continue
            except OSError as exc:
                found.refused.append((folder / name, f"cannot read: {exc.strerror}"))
                continue
            if S_ISREG(st.st_mode):
                found.files.append((name, st.st_size, st.st_mtime_ns))
    finally:
        os.close(fd)
    return found


def _outside(folder: Path, name: str) -> str | None:
    """Why the link `name` in `folder` is not followed, None when it may be."""
    try:
        target = (folder / name).resolve(strict=True)
    except RuntimeError:
        return "a symbolic link loop (not published)"
    except OSError as exc:
        return f"a symbolic link that cannot be followed: {exc.strerror} (not published)"
    if not target.is_relative_to(folder.resolve()):
        return "a symbolic link to a file outside the input folder (not published)"
    return None


def module_fingerprint(names: tuple[str, ...]) -> str:
    """A hash of these modules' source: a change in any of them changes it, an edit elsewhere
    in the package does not."""
    h = hashlib.sha256(feeds.__version__.encode())
    for name in names:
        spec = importlib.util.find_spec(name)
        origin = spec.origin if spec is not None else None
        h.update(name.encode())
        if origin:
            h.update(Path(origin).read_bytes())
    return h.hexdigest()[:32]


def parser_fingerprint(settings: Settings) -> str:
    """Cached parses are valid while the parser's code and the time zone are the same."""
    from feeds.parse import MODULES

    return module_fingerprint(MODULES) + ":" + settings.site.timezone


@dataclass
class Inputs:
    """The digests to publish, with what it takes to load any of them in full."""

    # Dated and named, without items, by content hash.
    headers: dict[str, Digest]
    parsed: list[str] = field(default_factory=list)
    # "path:line: message" each.
    errors: list[str] = field(default_factory=list)
    # Names of the files that could not be read (their name, size and mtime say nothing of
    # whether they can be now: a `chmod` changes neither).
    unread: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def full(self, conn: sqlite3.Connection, hashes: list[str]) -> dict[str, Digest]:
        """These digests with every text, dated and named as in `headers`."""
        return store.load_digests(conn, {h: self.headers[h] for h in hashes})

    def light(self, conn: sqlite3.Connection, hashes: list[str]) -> list[Digest]:
        """These digests with their items, without the long texts (see `store.load_digests`)."""
        return list(
            store.load_digests(conn, {h: self.headers[h] for h in hashes}, texts=False).values()
        )


def read(
    conn: sqlite3.Connection,
    settings: Settings,
    listing: Listing,
    *,
    now: datetime,
    workers: Workers,
) -> Inputs:
    """Every digest to publish. New content is parsed and cached; a file that fails to parse
    is reported, and if an earlier version of it parsed, that version stays published rather
    than vanishing from the feeds. Ids, dates and the stat cache are recorded at once: they are
    facts about the input, not about what was published."""
    folder = settings.paths.input
    tz = settings.site.tz
    parser_fp = parser_fingerprint(settings)
    files_before = state.file_rows(conn)
    rows = store.digest_rows(conn)
    result = Inputs({})

    files: dict[str, state.FileRow] = {}
    sources: dict[str, Path] = {}
    for name, size, mtime in listing:
        row = files_before.get(name)
        if row is not None and row.size == size and row.mtime_ns == mtime:
            content_hash = row.content_hash
        else:
            try:
                content_hash = hashlib.sha256((folder / name).read_bytes()).hexdigest()
            except OSError as exc:  # unreadable, or gone since the scan: this file only
                result.errors.append(f"{display_path(folder / name)}: cannot read: {exc.strerror}")
                result.unread.append(name)
                continue
        files[name] = state.FileRow(size, mtime, content_hash, row.good_hash if row else None)
        if content_hash in sources and (row is None or row.content_hash != content_hash or (
            row.size, row.mtime_ns) != (size, mtime)):
            # A digest is its text: a copy under another name (another date) is the same one.
            # Said when the copy is new (once, like a parse warning), not at every build.
            result.warnings.append(
                f"{display_path(folder / name)}: the same text as "
                f"{display_path(sources[content_hash])}; published once, as that file"
            )
        sources.setdefault(content_hash, folder / name)
    present = set(sources)

    first_seen: dict[str, datetime] = {}
    # Content that replaced another in the same file, with the id the other was published as.
    edited: dict[str, str] = {}
    for content_hash in sorted(present):
        known = rows.get(content_hash)
        before = _replaced(sources[content_hash].name, files_before, rows, present)
        first_seen[content_hash] = (
            known.first_seen if known else before.first_seen if before else now
        )
        # The id it was published under before: its own (a new time zone or parser can move
        # it), or that of the content it replaced in the same file (a corrected date).
        previous = known.assigned_id if known else before.assigned_id if before else None
        if previous:
            edited[content_hash] = previous
    stale = sorted(h for h in present if h not in rows or rows[h].parser != parser_fp)
    results = workers.map(_parse, [(sources[h], tz) for h in stale], chunksize=16)
    failed: set[str] = set()
    # Committed every few hundred digests: a killed first build keeps what it parsed.
    pairs = zip(stale, results, strict=True)
    while batch := list(itertools.islice(pairs, 256)):
        with state.transaction(conn):
            for content_hash, (digest, error) in batch:
                if digest is not None and not digest.items:
                    digest, error = None, (
                        f"{display_path(sources[content_hash])}:1: no entry recognized in this"
                        " file; it is not published (is it a digest?)"
                    )
                if digest is None:
                    result.errors.append(
                        error or f"{display_path(sources[content_hash])}: cannot parse"
                    )
                    failed.add(content_hash)
                    store.record_first_seen(conn, content_hash, first_seen[content_hash])
                    continue
                digest = replace(digest, content_hash=content_hash)
                store.save_digest(
                    conn, digest, first_seen=first_seen[content_hash], parser=parser_fp
                )
                result.parsed.append(str(sources[content_hash]))
                result.warnings += [
                    f"{display_path(digest.source)}:{w.line}: {w.message}" for w in digest.warnings
                ]

    publish = present - failed
    # A file edited into something unparseable keeps its last good version published.
    for name, row in files.items():
        if row.content_hash in failed and row.good_hash and row.good_hash not in present:
            if row.good_hash in rows:
                publish.add(row.good_hash)
                first_seen[row.good_hash] = rows[row.good_hash].first_seen
                result.errors.append(
                    f"{display_path(folder / name)}: publishing its previous version"
                )
        elif row.content_hash in publish:
            files[name] = row._replace(good_hash=row.content_hash)

    headers = store.load_headers(conn, publish)
    result.headers = resolve(headers, first_seen, rows, tz)
    with state.transaction(conn):
        state.save_file_rows(conn, files, files_before)
        store.assign(
            conn,
            {h: (d.id, _date(d)) for h, d in result.headers.items()},
            {h: old for h, old in edited.items()
             if h in result.headers and result.headers[h].id != old},
        )
    result.errors.sort()
    return result


def _date(digest: Digest) -> datetime:
    assert digest.date is not None  # resolved
    return digest.date


def _parse(task: tuple[Path, ZoneInfo]) -> tuple[Digest | None, str | None]:
    """(digest, None) or (None, error): runs in a worker process for a first build."""
    from feeds.parse import parse_file

    path, tz = task
    try:
        return parse_file(path, tz=tz), None
    except FeedsError as exc:
        return None, str(exc)
    except Exception as exc:  # a parser bug must not stop the other digests
        return None, f"{display_path(path)}: cannot parse: {exc!r}"


def _replaced(
    name: str,
    files_before: dict[str, state.FileRow],
    rows: dict[str, store.DigestRow],
    present: set[str],
) -> store.DigestRow | None:
    """The content a file edited in place had before: the new content keeps its first-seen
    time, and if its id changed (a corrected date), it is the same issue under a new id."""
    before = files_before.get(name)
    if before is None or before.content_hash in present:
        return None
    return rows.get(before.content_hash)


def resolve(
    headers: dict[str, Digest],
    first_seen: dict[str, datetime],
    rows: dict[str, store.DigestRow],
    tz: ZoneInfo,
) -> dict[str, Digest]:
    """Date undated digests by first sighting and give every digest a unique, stable id.

    Two digests with the same id (two files for one day): the one seen first keeps the id, the
    other gets `-2` (then `-3`, ...), recorded in the state so it never moves.
    """
    taken: set[str] = set()
    out: dict[str, Digest] = {}
    # By instant as a number, as `assemble` sorts (aware datetimes compare slowly).
    for content_hash in sorted(headers, key=lambda h: (first_seen[h].timestamp(), h)):
        digest = resolve_date(headers[content_hash], first_seen[content_hash], tz)
        base = digest.id
        row = rows.get(content_hash)
        stored = row.assigned_id if row else None
        if stored and stored not in taken and _is_id_of(stored, base):
            chosen = stored
        else:
            chosen = base
            n = 2
            while chosen in taken:
                chosen = f"{base}-{n}"
                n += 1
        taken.add(chosen)
        out[content_hash] = replace(digest, id=chosen) if chosen != digest.id else digest
    return out


def _is_id_of(digest_id: str, base: str) -> bool:
    """`base` itself or `base` with a collision suffix (`-2`, `-3`, ...)."""
    if digest_id == base:
        return True
    suffix = digest_id[len(base) + 1 :]
    return digest_id.startswith(base + "-") and suffix.isdigit() and suffix.isascii()


def resolve_date(digest: Digest, seen: datetime, tz: ZoneInfo) -> Digest:
    """An undated digest is dated by the first time the build saw it."""
    if digest.date is not None:
        return digest
    local = seen.astimezone(tz)
    suffix = "-weekly" if digest.format == "weekly" else ""
    return replace(digest, date=local, date_source="state", id=f"{local:%Y-%m-%d}{suffix}")
