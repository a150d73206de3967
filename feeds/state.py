"""The state database: what the build has seen and published, in one SQLite file outside output/.

It holds the facts that must survive between runs for the output to stay stable: when each
digest (by content hash) was first seen, the id and date it was published under, the guid each
paper was published under, which newsletter files were rendered from what, and which files the
build owns under output/. Parsed digests are kept here too, one row per digest and one per
item, so a rebuild of ten years of digests parses only what is new, and a build that needs only
titles and categories reads only those columns.

Other stages keep their own tables in the same file (the ledger, the subscribers): they open it
with `connect()`, create their tables with `CREATE TABLE IF NOT EXISTS`, and leave
`PRAGMA user_version` (this module's schema version) alone.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from feeds.errors import StateError
from feeds.model import Digest, Item, Link, ParseWarning

SCHEMA_VERSION = 2

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
UPDATE digests SET parser = NULL;
"""

_SHORT = "key, guid, section, rank, category, category_name, starred, title, title_zh, line"
_LONG = "authors, authors_truncated, affiliations, summary_zh, abstract, notes, url, links"


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the state database, in WAL mode, with the schema up to date.

    A new database (and its folder) is private to its owner: it holds subscriber addresses.
    """
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.exists():
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        conn = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    except (OSError, sqlite3.Error) as exc:
        raise StateError(f"cannot open the state database: {exc}", path=str(path)) from exc
    try:
        # WAL: a send reads while a build writes, and a killed writer loses nothing committed.
        # synchronous=NORMAL: a commit survives the process being killed at any moment without
        # an fsync per commit; only a power cut can lose the last few.
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        _migrate(conn, path)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise StateError(
            f"the state database is unusable: {exc}",
            path=str(path),
            hint="restore it from a backup, or move it aside to start afresh",
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
        steps = _FROM_1 if version == 1 else ""
        # One script, one transaction: a half-migrated schema is never committed.
        conn.executescript(
            f"BEGIN IMMEDIATE;{steps}{_TABLES}PRAGMA user_version = {SCHEMA_VERSION};COMMIT;"
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
    tmp.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


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


def save_digest(
    conn: sqlite3.Connection, digest: Digest, *, first_seen: datetime, parser: str
) -> None:
    """Cache a parsed digest (replacing an older parse of the same bytes); `first_seen` is
    recorded only the first time."""
    header = digest.as_dict()
    del header["items"]
    header["content_hash"] = digest.content_hash
    conn.execute(
        "INSERT INTO digests (content_hash, first_seen, parser, header) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (content_hash) DO UPDATE SET parser = excluded.parser, "
        "header = excluded.header",
        (digest.content_hash, first_seen.isoformat(), parser, _dumps(header)),
    )
    conn.execute("DELETE FROM items WHERE content_hash = ?", (digest.content_hash,))
    conn.executemany(
        f"INSERT INTO items (content_hash, position, {_SHORT}, {_LONG}) "
        f"VALUES ({', '.join('?' * 20)})",
        [
            (
                digest.content_hash, position, i.key, i.guid, i.section, i.rank, i.category,
                i.category_name, i.starred, i.title, i.title_zh, i.line, _dumps(i.authors),
                i.authors_truncated, _dumps(i.affiliations), i.summary_zh, i.abstract, i.notes,
                i.url, _dumps([(link.kind, link.href) for link in i.links]),
            )
            for position, i in enumerate(digest.items)
        ],
    )


def load_headers(conn: sqlite3.Connection, hashes: Collection[str]) -> dict[str, Digest]:
    """The cached digests for these content hashes, without their items."""
    rows = conn.execute("SELECT content_hash, header FROM digests WHERE header IS NOT NULL")
    return {h: _header(text) for h, text in rows if h in hashes}


def load_digests(
    conn: sqlite3.Connection,
    headers: Mapping[str, Digest],
    *,
    texts: bool = True,
) -> dict[str, Digest]:
    """These digests (by content hash) with their items; each item carries its digest's id and
    date, so pass headers whose id and date are resolved.

    Without `texts`, items have no authors, affiliations, summaries, abstracts, notes or links:
    what tells papers apart and sorts them into feeds and the archive, read from the short
    columns only. Ten years of digests fit in memory this way.
    """
    columns = f"{_SHORT}, {_LONG}" if texts else _SHORT
    items: dict[str, list[Item]] = {h: [] for h in headers}
    wanted = sorted(headers)
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        rows = conn.execute(
            f"SELECT content_hash, {columns} FROM items WHERE content_hash IN "
            f"({','.join('?' * len(chunk))}) ORDER BY content_hash, position",
            chunk,
        )
        for row in rows:
            digest = headers[row[0]]
            items[row[0]].append(_item(row, digest, texts))
    return {h: _with_items(headers[h], tuple(found)) for h, found in items.items()}


def _item(row: tuple[Any, ...], digest: Digest, texts: bool) -> Item:
    long: tuple[Any, ...] = row[11:] if texts else ((), False, (), None, None, None, None, ())
    authors, truncated, affiliations, summary_zh, abstract, notes, url, links = long
    if texts:
        authors, affiliations = tuple(json.loads(authors)), tuple(json.loads(affiliations))
        links = tuple(Link(kind, href) for kind, href in json.loads(links))
    return Item(
        key=row[1], guid=row[2], section=row[3], rank=row[4], category=row[5],
        category_name=row[6], starred=bool(row[7]), title=row[8], title_zh=row[9],
        authors=authors, authors_truncated=bool(truncated), affiliations=affiliations,
        summary_zh=summary_zh, abstract=abstract, notes=notes, url=url, links=links,
        published=digest.date, line=row[10], digest_id=digest.id,
    )


def _with_items(digest: Digest, items: tuple[Item, ...]) -> Digest:
    from dataclasses import replace

    return replace(digest, items=items)


def _header(text: str) -> Digest:
    data: dict[str, Any] = json.loads(text)
    return Digest(
        id=data["id"],
        date=datetime.fromisoformat(data["date"]) if data["date"] else None,
        date_source=data["date_source"],
        source=data["source"],
        format=data["format"],
        title=data["title"],
        summary=data["summary"],
        items=(),
        warnings=tuple(ParseWarning(w["line"], w["message"]) for w in data["warnings"]),
        content_hash=data["content_hash"],
        credit=data["credit"],
        links=tuple(Link(link["kind"], link["href"]) for link in data["links"]),
    )


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def record_first_seen(conn: sqlite3.Connection, content_hash: str, first_seen: datetime) -> None:
    conn.execute(
        "INSERT OR IGNORE INTO digests (content_hash, first_seen) VALUES (?, ?)",
        (content_hash, first_seen.isoformat()),
    )


def assign(conn: sqlite3.Connection, published: Mapping[str, tuple[str, datetime]]) -> None:
    """Record the id and date each digest (by content hash) is published under."""
    conn.executemany(
        "UPDATE digests SET assigned_id = ?, date = ? WHERE content_hash = ? "
        "AND (assigned_id IS NOT ? OR date IS NOT ?)",
        [
            (digest_id, date.isoformat(), h, digest_id, date.isoformat())
            for h, (digest_id, date) in published.items()
        ],
    )


def published(conn: sqlite3.Connection) -> list[tuple[str, str, datetime]]:
    """(content hash, id, date) of every digest the last complete build published."""
    hashes = set(json.loads(get_meta(conn, "published") or "[]"))
    rows = conn.execute(
        "SELECT content_hash, assigned_id, date FROM digests WHERE assigned_id IS NOT NULL "
        "AND date IS NOT NULL"
    )
    return [(h, i, datetime.fromisoformat(d)) for h, i, d in rows if h in hashes]


def load_published(conn: sqlite3.Connection, ids: Collection[str]) -> dict[str, Digest]:
    """Digests the last complete build published, by id, in full, named and dated as published."""
    from dataclasses import replace

    wanted = {h: (i, d) for h, i, d in published(conn) if i in ids}
    headers = {}
    for h, header in load_headers(conn, wanted).items():
        digest_id, date = wanted[h]
        source = header.date_source if header.date is not None else "state"
        headers[h] = replace(header, id=digest_id, date=date, date_source=source)
    return {d.id: d for d in load_digests(conn, headers).values()}


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
