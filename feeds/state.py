"""The state database: what the build has seen and published, in one SQLite file outside output/.

It holds the facts that must survive between runs for the output to stay stable: when each
digest (by content hash) was first seen, the id it was given, the guid each paper was published
under, which newsletter files were rendered from what, and which files the build owns under
output/. Parsed digests are cached here too (as JSON keyed by content hash), so a rebuild of ten
years of digests parses only what is new.

Other stages may keep their own tables in the same file: open it with `connect()`, create
tables with `CREATE TABLE IF NOT EXISTS`, and leave `PRAGMA user_version` (this module's schema
version) alone.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from feeds.errors import LockedError, StateError

if TYPE_CHECKING:
    import sqlite3

    from feeds.model import Digest, Item

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- One row per distinct digest content; the parsed digest is a cache, the rest are facts.
CREATE TABLE IF NOT EXISTS digests (
    content_hash TEXT PRIMARY KEY,
    first_seen TEXT NOT NULL,      -- ISO time the build first saw these bytes
    assigned_id TEXT,              -- the digest id published (with a suffix on collisions)
    parser TEXT,                   -- fingerprint of the parser that produced `parsed`
    parsed TEXT,                   -- Digest as JSON
    light TEXT                     -- the same without the long texts (see `lighten`)
);
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


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the state database, in WAL mode, with the schema up to date."""
    # Imported here: a no-op build decides from the stamp file alone.
    import sqlite3

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    except (OSError, sqlite3.Error) as exc:
        raise StateError(f"cannot open the state database: {exc}", path=str(path)) from exc
    try:
        # WAL: `feeds send` can read while a build writes, and a killed writer loses nothing
        # that was committed.
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        _migrate(conn, path)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise StateError(
            f"the state database is unusable: {exc}",
            path=str(path),
            hint="move it aside; the next build recreates it (guids are recomputed from keys)",
        ) from exc
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
        # One script, one transaction: a half-created schema is never committed.
        conn.executescript(
            f"BEGIN IMMEDIATE;{_SCHEMA}PRAGMA user_version = {SCHEMA_VERSION};COMMIT;"
        )


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One atomic unit: committed on success, rolled back on any exception."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


# -- the lock -------------------------------------------------------------------------------

_held: dict[str, tuple[int, int]] = {}


def lock_path(state_path: Path) -> Path:
    return state_path.with_name(state_path.name + ".lock")


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
    tmp.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


def clear_stamp(state_path: Path) -> None:
    stamp_path(state_path).unlink(missing_ok=True)


@contextmanager
def locked(state_path: Path, *, wait: float = 0.0) -> Iterator[None]:
    """Hold the build lock (a `flock` on a file beside the state database).

    Waits up to `wait` seconds for another run to finish, then raises `LockedError`. The lock
    is re-entrant within one process, so `feeds run` can hold it around build and send. The
    kernel releases it when the process dies, however it dies.
    """
    path = lock_path(state_path)
    key = os.path.abspath(path)
    if key in _held:
        fd, depth = _held[key]
        _held[key] = (fd, depth + 1)
        try:
            yield
        finally:
            fd, depth = _held[key]
            _held[key] = (fd, depth - 1)
        return
    fd = _acquire(path, wait)
    _held[key] = (fd, 1)
    try:
        yield
    finally:
        del _held[key]
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _acquire(path: Path, wait: float) -> int:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StateError(f"cannot open the lock file: {exc.strerror}", path=str(path)) from exc
    deadline = time.monotonic() + max(wait, 0.0)
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                os.close(fd)
                raise StateError(f"cannot lock: {exc.strerror}", path=str(path)) from exc
            if time.monotonic() >= deadline:
                holder = _read_holder(fd)
                os.close(fd)
                waited = f" after waiting {wait:g} s" if wait > 0 else ""
                raise LockedError(
                    f"another feeds build is running{holder}; gave up{waited}",
                    path=str(path),
                    hint="try again later, or pass --wait SECONDS to wait for it",
                ) from None
            time.sleep(0.05)
    # Record who holds it, for the message another run prints.
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _read_holder(fd: int) -> str:
    try:
        pid = os.pread(fd, 32, 0).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return f" (process {pid})" if pid.isdigit() else ""


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


# -- digests ---------------------------------------------------------------------------------


class DigestRow(NamedTuple):
    content_hash: str
    first_seen: datetime
    assigned_id: str | None
    parser: str | None


def digest_rows(conn: sqlite3.Connection) -> dict[str, DigestRow]:
    rows = conn.execute("SELECT content_hash, first_seen, assigned_id, parser FROM digests")
    return {
        h: DigestRow(h, datetime.fromisoformat(seen), assigned, parser)
        for h, seen, assigned, parser in rows
    }


def load_digests(
    conn: sqlite3.Connection, hashes: Iterable[str], *, light: bool = False
) -> dict[str, Digest]:
    """The cached parsed digests for these content hashes (those that have one).

    `light`: as `lighten` makes them, without what only the pages that show a paper need;
    ten years of digests fit in memory this way.
    """
    column = "light" if light else "parsed"
    wanted = sorted(set(hashes))
    out: dict[str, Digest] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(
            f"SELECT content_hash, {column} FROM digests "
            f"WHERE {column} IS NOT NULL AND content_hash IN ({marks})",
            chunk,
        )
        for content_hash, text in rows:
            out[content_hash] = light_from_json(text) if light else digest_from_json(text)
    return out


def save_digest(
    conn: sqlite3.Connection, digest: Digest, *, first_seen: datetime, parser: str
) -> None:
    conn.execute(
        "INSERT INTO digests (content_hash, first_seen, parser, parsed, light) "
        "VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (content_hash) DO UPDATE SET parser = excluded.parser, "
        "parsed = excluded.parsed, light = excluded.light",
        (
            digest.content_hash,
            first_seen.isoformat(),
            parser,
            digest_to_json(digest),
            light_to_json(digest),
        ),
    )


# Bump when `lighten` changes: cached light digests are then rebuilt.
LIGHT_VERSION = 4


def lighten(digest: Digest) -> Digest:
    """The digest as the build keeps every paper no page shows: identity, titles, category.

    Without the long texts (Chinese summary, abstract, notes), authors, affiliations and links:
    what tells papers apart and sorts them into feeds stays; the pages that show a paper get
    it in full.
    """
    from dataclasses import replace

    items = tuple(
        replace(
            item, summary_zh=None, abstract=None, notes=None, authors=(), affiliations=(),
            authors_truncated=False, links=(), url=None,
        )
        for item in digest.items
    )
    return replace(digest, items=items, warnings=())


def record_first_seen(conn: sqlite3.Connection, content_hash: str, first_seen: datetime) -> None:
    conn.execute(
        "INSERT OR IGNORE INTO digests (content_hash, first_seen) VALUES (?, ?)",
        (content_hash, first_seen.isoformat()),
    )


def assign_ids(conn: sqlite3.Connection, ids: dict[str, str]) -> None:
    conn.executemany(
        "UPDATE digests SET assigned_id = ? WHERE content_hash = ?",
        [(digest_id, h) for h, digest_id in ids.items()],
    )


def digest_to_json(digest: Digest) -> str:
    data = digest.as_dict()
    data["content_hash"] = digest.content_hash
    for item, out in zip(digest.items, data["items"], strict=True):
        out["digest_id"] = item.digest_id
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


# What a light item keeps, in the order the light JSON stores it (a list per item, not an
# object: ten years of light digests decode in half the time).
_LIGHT_FIELDS = (
    "key", "guid", "section", "rank", "category", "category_name", "starred", "title",
    "title_zh", "published", "line", "digest_id",
)
_LIGHT_BLANKS: dict[str, Any] = {
    "authors": (), "authors_truncated": False, "affiliations": (), "summary_zh": None,
    "abstract": None, "notes": None, "url": None, "links": (),
}


def light_to_json(digest: Digest) -> str:
    """`lighten(digest)` as compact JSON: the digest's fields, then one list per item."""
    data = digest.as_dict()
    data.update(content_hash=digest.content_hash, warnings=[])
    data["items"] = [
        [
            item.key, item.guid, item.section, item.rank, item.category, item.category_name,
            item.starred, item.title, item.title_zh,
            item.published.isoformat() if item.published else None, item.line, item.digest_id,
        ]
        for item in digest.items
    ]
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def light_from_json(text: str) -> Digest:
    from feeds.model import Digest, Item

    data: dict[str, Any] = json.loads(text)
    new = object.__new__
    fromiso = datetime.fromisoformat
    names = _LIGHT_FIELDS
    items = []
    # Another version of the model (a field added): the dataclass fills in its defaults.
    fast = frozenset(names) | frozenset(_LIGHT_BLANKS) == _item_fields()
    for values in data["items"]:
        fields = dict(zip(names, values, strict=True))
        if fields["published"]:
            fields["published"] = fromiso(fields["published"])
        fields.update(_LIGHT_BLANKS)
        if not fast:
            items.append(Item(**fields))
            continue
        # See digest_from_json: a cache this module wrote, filled without the slow __init__.
        item: Item = new(Item)
        item.__dict__.update(fields)
        items.append(item)
    return _digest(data, tuple(items), Digest)


def digest_from_json(text: str) -> Digest:
    from feeds.model import Digest, Item, Link

    new = object.__new__
    names = _item_fields()

    def item(d: dict[str, Any]) -> Item:
        published = d["published"]
        d["authors"] = tuple(d["authors"])
        d["affiliations"] = tuple(d["affiliations"])
        d["links"] = tuple(Link(link["kind"], link["href"]) for link in d["links"])
        d["published"] = datetime.fromisoformat(published) if published else None
        d.setdefault("digest_id", "")
        if d.keys() != names:
            # Written by another version of the model: let the dataclass sort it out.
            return Item(**{k: v for k, v in d.items() if k in names})
        # The cache holds items this module wrote from valid ones: filling the instance
        # directly skips the frozen dataclass __init__, eight times slower for ten years of
        # items. The round-trip test compares the result with the original, field by field.
        obj: Item = new(Item)
        obj.__dict__.update(d)
        return obj

    data: dict[str, Any] = json.loads(text)
    return _digest(data, tuple(item(i) for i in data["items"]), Digest)


def _digest(data: dict[str, Any], items: tuple[Item, ...], cls: type[Digest]) -> Digest:
    """A Digest from its JSON fields: every field the model has, whatever the version."""
    from feeds.model import Link, ParseWarning

    known = _field_names(cls)
    values = {k: v for k, v in data.items() if k in known}
    values["date"] = datetime.fromisoformat(data["date"]) if data["date"] else None
    values["items"] = items
    values["warnings"] = tuple(
        ParseWarning(w["line"], w["message"]) for w in data.get("warnings", ())
    )
    if "links" in values:
        values["links"] = tuple(Link(link["kind"], link["href"]) for link in values["links"])
    return cls(**values)


_FIELD_NAMES: dict[type, frozenset[str]] = {}


def _field_names(cls: type) -> frozenset[str]:
    if cls not in _FIELD_NAMES:
        from dataclasses import fields

        _FIELD_NAMES[cls] = frozenset(f.name for f in fields(cls))
    return _FIELD_NAMES[cls]


def _item_fields() -> frozenset[str]:
    from feeds.model import Item

    return _field_names(Item)


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


def guid_maps(conn: sqlite3.Connection) -> tuple[dict[str, str], dict[str, str]]:
    """(key -> guid, normalized title -> guid) for every paper ever published."""
    keys = dict(conn.execute("SELECT key, guid FROM paper_keys"))
    titles = dict(conn.execute("SELECT title, guid FROM paper_titles"))
    return keys, titles


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
