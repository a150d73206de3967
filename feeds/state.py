"""The state database: what the build has seen and published, in one SQLite file outside output/.

It holds the facts that must survive between runs for the output to stay stable: when each
digest (by content hash) was first seen, the id and date it was published under, the guid each
paper was published under, which newsletter files were rendered from what, and which files the
build owns under output/. Parsed digests are kept here too (`feeds.store` reads and writes
them), so a rebuild of ten years of digests parses only what is new.

Other stages keep their own tables in the same file (the ledger, the subscribers): they open it
with `connect()`, create their tables with `CREATE TABLE IF NOT EXISTS`, and leave
`PRAGMA user_version` (this module's schema version) alone.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from feeds.errors import StateError, display_path
from feeds.output import private_folder

SCHEMA_VERSION = 2
# Meta key: when this database was created (the output names the one it was published from:
# `feeds.output.belongs_to`).
CREATED = "created"
# Seconds a writer waits for another one to finish before giving up with "database is locked".
BUSY_TIMEOUT = 30.0

_TABLES = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- One row per distinct digest content; `header` and the items are a cache, the rest are facts.
CREATE TABLE IF NOT EXISTS digests (
    content_hash TEXT PRIMARY KEY,
    first_seen TEXT NOT NULL,      -- ISO time the build first saw these bytes
    assigned_id TEXT,              -- the digest id published (with a suffix on collisions)
    date TEXT,                     -- the digest date published (resolved for undated digests)
    replaces TEXT,                 -- the id this content was published under before an edit
    parser TEXT,                   -- fingerprint of the parser that produced the cached parse
    header TEXT                    -- the Digest's own fields as JSON, without its items
);
-- The items of each cached digest, in file order. The short columns come first: the build
-- reads only those for the papers no page shows.
CREATE TABLE IF NOT EXISTS items (
    content_hash TEXT NOT NULL,
    position INTEGER NOT NULL,
    key TEXT NOT NULL,
    guid TEXT NOT NULL,
    section TEXT NOT NULL,
    rank INTEGER NOT NULL,
    category TEXT,
    category_name TEXT,
    starred INTEGER NOT NULL,
    title TEXT NOT NULL,
    title_zh TEXT,
    line INTEGER NOT NULL,
    authors TEXT NOT NULL,         -- JSON list
    authors_truncated INTEGER NOT NULL,
    affiliations TEXT NOT NULL,    -- JSON list
    summary_zh TEXT,
    abstract TEXT,
    notes TEXT,
    url TEXT,
    links TEXT NOT NULL,           -- JSON list of [kind, href]
    PRIMARY KEY (content_hash, position)
) WITHOUT ROWID;
-- Input file stat cache: a file whose name, size and mtime did not change is not re-read.
CREATE TABLE IF NOT EXISTS files (
    name TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    content_hash TEXT NOT NULL,
    good_hash TEXT                 -- the last content of this file that parsed
);
-- Published papers: a guid, once published, never changes for the same key or title.
CREATE TABLE IF NOT EXISTS papers (
    guid TEXT PRIMARY KEY,
    first_seen TEXT NOT NULL,
    digest_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS paper_keys (
    key TEXT PRIMARY KEY,
    guid TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS paper_titles (
    title TEXT PRIMARY KEY,        -- normalize_title(...) of the English or Chinese title
    guid TEXT NOT NULL
);
-- Newsletter files per digest id, and the fingerprint of what they were rendered from.
CREATE TABLE IF NOT EXISTS renders (
    digest_id TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL
);
-- Every file the build owns under output/ (owner: a digest id, or '' for site-wide files).
CREATE TABLE IF NOT EXISTS outputs (
    path TEXT PRIMARY KEY,
    owner TEXT NOT NULL
);
"""

# Schema 1 kept each parsed digest as one JSON document plus a second, "light" JSON copy. Both
# were caches: they go, every digest is parsed again once, and the facts stay.
_FROM_1 = """
ALTER TABLE digests DROP COLUMN parsed;
ALTER TABLE digests DROP COLUMN light;
ALTER TABLE digests ADD COLUMN date TEXT;
ALTER TABLE digests ADD COLUMN header TEXT;
ALTER TABLE digests ADD COLUMN replaces TEXT;
UPDATE digests SET parser = NULL;
"""



def connect(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the state database, in WAL mode, with the schema up to date.

    A new database (and its folder) is private to its owner: it holds subscriber addresses.
    """
    try:
        private_folder(path.parent)
        new = not path.exists() or path.stat().st_size == 0
        if not path.exists():
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        # A database from an earlier release may be readable by others; it holds addresses.
        for part in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            if part.exists() and part.stat().st_mode & 0o077:
                part.chmod(0o600)
        conn = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
        )
    except (OSError, sqlite3.Error) as exc:
        # An OSError's own text repeats the path: its reason alone, as every error line reads.
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise StateError(f"cannot open the state database: {why}", path=str(path)) from exc
    try:
        # WAL: a send reads while a build writes, and a killed writer loses nothing committed.
        # synchronous=NORMAL: a commit survives the process being killed at any moment without
        # an fsync per commit; only a power cut can lose the last few.
        if new:
            # Set before the first table: free pages (the ledger's retention frees a digest's
            # rows every day) can then be given back without rewriting the whole file.
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        _migrate(conn, path)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise explain(exc, path) from exc
    return conn


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StateError(
            f"the state database has schema {version}, newer than this version knows "
            f"({SCHEMA_VERSION})",
            path=str(path),
            hint="upgrade digest-feeds",
        )
    if version < SCHEMA_VERSION:
        steps = _FROM_1 if version == 1 else ""
        # A database made now is as young as now; one from the first release counts as old
        # as any output (it has kept its record).
        created = json.dumps(time.time()) if version == 0 else "0"
        steps += f"INSERT OR IGNORE INTO meta (key, value) VALUES ('{CREATED}', '{created}');"
        # One script, one transaction: a half-migrated schema is never committed.
        conn.executescript(
            f"BEGIN IMMEDIATE;{_TABLES}{steps}PRAGMA user_version = {SCHEMA_VERSION};COMMIT;"
        )


def created(path: Path) -> str | None:
    """When the database at `path` was created, read without changing anything; None when it
    is missing or unreadable. A build's stamp records it, so that a database deleted and made
    anew (by any command) is never taken for the one the stamp describes."""
    if not looks_whole(path):
        return None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (CREATED,)).fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    return str(row[0]) if row else None


def utc_now() -> datetime:
    """The clock the ledger, the audience and the bounces default to (tests pass their own)."""
    return datetime.now(UTC)


def looks_whole(path: Path) -> bool:
    """Whether `path` is an SQLite database at first sight (its header), without opening it:
    a deleted, emptied or overwritten state is never taken for an unchanged one."""
    try:
        with path.open("rb") as handle:
            return handle.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One atomic unit: committed on success, rolled back on any exception, a failed commit
    (a full disk) included: nothing is ever half-recorded."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def explain(exc: sqlite3.Error, path: Path) -> StateError:
    """An SQLite error as one line for the user: which file, what happened, what to do."""
    text = str(exc)
    if "locked" in text or "busy" in text:
        hint = (
            f"another process kept it busy for {BUSY_TIMEOUT:g} s: a backup, an sqlite3 shell "
            "or a stuck run? Try again when it is done"
        )
    elif "full" in text:
        hint = "free some space on the disk that holds it; nothing was half-recorded"
    elif "disk I/O" in text:
        # What SQLite says when its write-ahead log cannot grow on a full disk, too: the
        # database is most likely sound, and moving it aside would lose every subscriber.
        hint = (
            "the disk could not read or write it (is it full?); free space or check the disk, "
            "then try again: nothing was half-recorded"
        )
    elif "readonly" in text or "permission" in text:
        hint = "check who owns the file, its -wal and -shm files beside it, and its folder"
    elif "malformed" in text or "not a database" in text:
        hint = "restore it from a backup, or move it aside to start afresh"
    else:
        hint = (
            f"try again; if it keeps failing, check it with "
            f"sqlite3 {display_path(path)} 'PRAGMA integrity_check'"
        )
    what = "failed" if isinstance(exc, sqlite3.OperationalError) else "is unusable"
    return StateError(f"the state database {what}: {text}", path=str(path), hint=hint)


# -- the stamp of the last complete build ----------------------------------------------------


def stamp_path(state_path: Path) -> Path:
    """The last complete build's fingerprint and report, beside the database.

    A no-op build reads this file alone: no SQLite, no hashing, nothing heavy imported.
    """
    return state_path.with_name(state_path.name + ".stamp")


def read_stamp(state_path: Path) -> dict[str, Any]:
    try:
        data = json.loads(stamp_path(state_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_stamp(state_path: Path, data: dict[str, Any]) -> None:
    path = stamp_path(state_path)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        # Without its stamp the next build is a real one: nothing is lost but time.
        raise StateError(
            f"cannot record the finished build: {exc.strerror}", path=str(path),
            hint="free some space on the disk that holds the state",
        ) from exc


def clear_stamp(state_path: Path) -> None:
    stamp_path(state_path).unlink(missing_ok=True)


# -- key/value ------------------------------------------------------------------------------


def get_meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


# -- the input stat cache --------------------------------------------------------------------


class FileRow(NamedTuple):
    size: int
    mtime_ns: int
    content_hash: str
    good_hash: str | None


def file_rows(conn: sqlite3.Connection) -> dict[str, FileRow]:
    rows = conn.execute("SELECT name, size, mtime_ns, content_hash, good_hash FROM files")
    return {name: FileRow(size, mtime, h, good) for name, size, mtime, h, good in rows}


def save_file_rows(
    conn: sqlite3.Connection, files: dict[str, FileRow], before: dict[str, FileRow]
) -> None:
    """Store the stat cache, touching only the rows that changed since `before`."""
    conn.executemany("DELETE FROM files WHERE name = ?", [(n,) for n in before if n not in files])
    conn.executemany(
        "INSERT OR REPLACE INTO files (name, size, mtime_ns, content_hash, good_hash) "
        "VALUES (?, ?, ?, ?, ?)",
        [
            (name, row.size, row.mtime_ns, row.content_hash, row.good_hash)
            for name, row in sorted(files.items())
            if before.get(name) != row
        ],
    )


# -- published identities -------------------------------------------------------------------


def guid_maps(
    conn: sqlite3.Connection, only: tuple[Iterable[str], Iterable[str]] | None = None
) -> tuple[dict[str, str], dict[str, str]]:
    """(key -> guid, normalized title -> guid) for every paper ever published, or for these
    keys and titles only (`only`)."""
    if only is None:
        return dict(conn.execute("SELECT key, guid FROM paper_keys")), dict(
            conn.execute("SELECT title, guid FROM paper_titles"))
    found: list[dict[str, str]] = [{}, {}]
    for n, (table, column) in enumerate((("paper_keys", "key"), ("paper_titles", "title"))):
        wanted = sorted(set(only[n]))
        for chunk in (wanted[i : i + 500] for i in range(0, len(wanted), 500)):
            marks = ",".join("?" * len(chunk))
            query = f"SELECT {column}, guid FROM {table} WHERE {column} IN ({marks})"
            found[n].update(conn.execute(query, chunk))
    return found[0], found[1]


def record_papers(
    conn: sqlite3.Connection,
    papers: Iterable[tuple[str, datetime, str]],
    keys: Iterable[tuple[str, str]],
    titles: Iterable[tuple[str, str]],
) -> None:
    """Remember published guids; existing mappings are never overwritten."""
    conn.executemany(
        "INSERT OR IGNORE INTO papers (guid, first_seen, digest_id) VALUES (?, ?, ?)",
        [(guid, seen.isoformat(), digest_id) for guid, seen, digest_id in papers],
    )
    conn.executemany("INSERT OR IGNORE INTO paper_keys (key, guid) VALUES (?, ?)", keys)
    conn.executemany("INSERT OR IGNORE INTO paper_titles (title, guid) VALUES (?, ?)", titles)


# -- newsletter renders and the output manifest ----------------------------------------------


def renders(conn: sqlite3.Connection) -> dict[str, str]:
    return dict(conn.execute("SELECT digest_id, fingerprint FROM renders"))


def forget_renders(conn: sqlite3.Connection, digest_ids: list[str]) -> None:
    conn.executemany("DELETE FROM renders WHERE digest_id = ?", [(i,) for i in digest_ids])


def save_renders(
    conn: sqlite3.Connection, fingerprints: dict[str, str], before: dict[str, str]
) -> None:
    _save_mapping(conn, "renders", "digest_id", "fingerprint", fingerprints, before)


def outputs(conn: sqlite3.Connection) -> dict[str, str]:
    """Every file the build owns under output/, with its owner ('' for site-wide files)."""
    return dict(conn.execute("SELECT path, owner FROM outputs"))


def save_outputs(conn: sqlite3.Connection, owned: dict[str, str], before: dict[str, str]) -> None:
    _save_mapping(conn, "outputs", "path", "owner", owned, before)


def _save_mapping(
    conn: sqlite3.Connection,
    table: str,
    key: str,
    value: str,
    now: dict[str, str],
    before: dict[str, str],
) -> None:
    """Make `table` hold `now`, given that it holds `before`: only differences are written."""
    conn.executemany(
        f"DELETE FROM {table} WHERE {key} = ?", [(k,) for k in before if k not in now]
    )
    conn.executemany(
        f"INSERT OR REPLACE INTO {table} ({key}, {value}) VALUES (?, ?)",
        sorted((k, v) for k, v in now.items() if before.get(k) != v),
    )
