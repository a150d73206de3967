"""Retention: what the state keeps of old sends, so that a year at 100,000 subscribers stays
a few hundred megabytes instead of growing by a gigabyte a month.

Once a digest has nothing due and neither it nor any of its rows changed within
`[newsletter] ledger_retention_days` (30), its `sent` and `skipped` rows collapse into counts
on the digest's own row (`ledger_digests.collapsed`); the rows that say something (failures,
suppressions, cancellations) stay. The digest is marked `compacted`, and the ledger never
queues a compacted digest again, to anyone: a subscriber whose row was collapsed is never
mailed it twice, and nobody who joins later is mailed an issue that old.

Also removed: dry-run outboxes of compacted digests, parsed copies of input files that are no
longer anybody's content (old versions of edited files), and the free pages all this leaves
(incremental vacuum). Runs after a send, under the send lock.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from feeds import lock
from feeds.config import Settings
from feeds.errors import LockedError
from feeds.ledger import Ledger
from feeds.ledger_schema import CODES, DUE_SQL, NAMES

# Rows that carry nothing a later run or the operator needs, once the digest is old: the
# counts are kept. Failures, suppressions and cancellations stay as rows.
_COLLAPSED = (CODES["sent"], CODES["skipped"])


@dataclass
class Tidied:
    """What one pass removed."""

    compacted: list[str] = field(default_factory=list)
    rows: int = 0
    outboxes: int = 0
    digests: int = 0
    freed: int = 0  # bytes given back to the file system


def tidy(settings: Settings, ledger: Ledger, log: Callable[[str], None]) -> None:
    """After a send, under the send lock: collapse the ledger rows of old digests, remove
    their dry-run outboxes and, when no build is at work, stale parsed copies of edited
    files; then give the free pages back (`feeds.retention`)."""
    paths = settings.paths
    keep = timedelta(days=settings.newsletter.ledger_retention_days)
    done = compact(ledger, keep=keep)
    done.outboxes = remove_outboxes(paths.state.parent / "outbox", done.compacted)
    try:
        with lock.held(lock.build_lock(paths.state), busy="a build", hint="next time"):
            done.digests = prune_digests(ledger.conn, before=ledger.now() - keep)
    except LockedError:
        pass
    if done.rows or done.digests:
        done.freed = reclaim(ledger.conn)
        log(
            f"retention: {len(done.compacted)} digest(s) compacted ({done.rows} rows), "
            f"{done.outboxes} dry-run outbox(es) and {done.digests} stale parsed digest(s) "
            f"removed, {done.freed / 1_000_000:.1f} MB given back"
        )


def compact(ledger: Ledger, *, keep: timedelta) -> Tidied:
    """Collapse the rows of every digest with nothing due that nothing touched for `keep`."""
    now = ledger.now()
    cutoff = int((now - keep).timestamp())
    registered = (now - keep).astimezone(UTC).isoformat(timespec="seconds")
    done = Tidied()
    conn = ledger.conn
    candidates = conn.execute(
        "SELECT id, digest_id FROM ledger_digests WHERE compacted IS NULL AND registered < ?"
        " ORDER BY id",
        (registered,),
    ).fetchall()
    for number, digest_id in candidates:
        # One transaction per digest: a send waiting for the database waits for one digest.
        with ledger.writing() as conn:
            busy = conn.execute(
                f"SELECT 1 FROM ledger WHERE digest = ? AND ({DUE_SQL} OR updated >= ?) LIMIT 1",
                (number, cutoff),
            ).fetchone()
            if busy:
                continue
            counts = {
                NAMES[code]: int(n)
                for code, n in conn.execute(
                    "SELECT status, COUNT(*) FROM ledger WHERE digest = ?"
                    f" AND status IN {_COLLAPSED} GROUP BY status",
                    (number,),
                )
            }
            removed = conn.execute(
                f"DELETE FROM ledger WHERE digest = ? AND status IN {_COLLAPSED}", (number,)
            ).rowcount
            conn.execute(
                "UPDATE ledger_digests SET compacted = ?, collapsed = ? WHERE id = ?",
                (now.astimezone(UTC).isoformat(timespec="seconds"),
                 json.dumps(counts, sort_keys=True), number),
            )
        done.compacted.append(str(digest_id))
        done.rows += removed
    if done.compacted:
        with ledger.writing() as conn:
            # Nobody on the list and nothing left about them: the address goes too.
            conn.execute(
                "DELETE FROM ledger_subscribers WHERE enrolled IS NULL AND NOT EXISTS"
                " (SELECT 1 FROM ledger WHERE person = ledger_subscribers.id)"
            )
    return done


def remove_outboxes(outbox: Path, digest_ids: list[str]) -> int:
    """The dry-run folders (`<outbox>/<digest id>/`) of these digests; how many were there."""
    gone = 0
    for digest_id in digest_ids:
        folder = outbox / digest_id
        if folder.is_dir() and folder.parent == outbox:
            shutil.rmtree(folder, ignore_errors=True)
            gone += 1
    return gone


def prune_digests(conn: sqlite3.Connection, *, before: datetime) -> int:
    """Parsed copies (and their items) of contents no input file has any more and the last
    build did not publish, first seen before `before`: the old versions of edited files.
    What was published under them (ids, guids, first-seen dates of papers) is kept in the
    tables that record it. Call it holding the build lock: a build reads these rows."""
    published = conn.execute("SELECT value FROM meta WHERE key = 'published'").fetchone()
    if published is None:
        # No complete build yet: nothing tells which contents are still wanted.
        return 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS wanted (h TEXT PRIMARY KEY) WITHOUT ROWID")
        conn.execute("DELETE FROM temp.wanted")
        conn.executemany(
            "INSERT OR IGNORE INTO temp.wanted (h) VALUES (?)",
            ((h,) for h in json.loads(published[0])),
        )
        conn.execute(
            "INSERT OR IGNORE INTO temp.wanted (h) SELECT content_hash FROM files"
            " UNION SELECT good_hash FROM files WHERE good_hash IS NOT NULL"
        )
        stale = [
            row[0] for row in conn.execute(
                "SELECT content_hash FROM digests WHERE first_seen < ?"
                " AND content_hash NOT IN (SELECT h FROM temp.wanted)",
                (before.isoformat(),),
            )
        ]
        conn.executemany("DELETE FROM items WHERE content_hash = ?", [(h,) for h in stale])
        conn.executemany("DELETE FROM digests WHERE content_hash = ?", [(h,) for h in stale])
        conn.execute("DELETE FROM temp.wanted")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return len(stale)


def reclaim(conn: sqlite3.Connection) -> int:
    """Give the free pages back to the file system; the bytes freed.

    A database made by this version is in incremental auto-vacuum mode (`feeds.state`), so
    this is cheap. An older one is converted by one full VACUUM the first time a quarter or
    more of it is free (the first compaction after the upgrade); if another process holds
    the database then, the pages are simply reused by the next sends and it is tried again."""
    page = int(conn.execute("PRAGMA page_size").fetchone()[0])
    free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
    pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
    mode = int(conn.execute("PRAGMA auto_vacuum").fetchone()[0])
    try:
        if free and mode == 2:
            # Run to the end by sqlite3_exec: stepped once, as `execute` does, it frees a
            # single page.
            conn.executescript("PRAGMA incremental_vacuum;")
        elif free * 4 >= pages > 0:
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            conn.execute("VACUUM")
        # The write-ahead log grows to the largest transaction (a queue of the whole list)
        # and stays that size unless truncated.
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    except sqlite3.OperationalError:
        return 0
    after = int(conn.execute("PRAGMA page_count").fetchone()[0])
    return max(0, pages - after) * page


@dataclass(frozen=True)
class StateSize:
    """How big the state is, for `feeds check`."""

    database: int
    wal: int
    free: int
    rows: int
    digests: int
    compacted: int

    def describe(self) -> str:
        return (
            f"{_mb(self.database + self.wal)} ({_mb(self.free)} of it free, write-ahead log "
            f"{_mb(self.wal)}); ledger: {self.rows} rows for {self.digests} digests, "
            f"{self.compacted} of them compacted"
        )


def state_size(path: Path) -> StateSize | None:
    """The state database's size, read-only; None when there is none."""
    if not path.exists():
        return None
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        page = int(conn.execute("PRAGMA page_size").fetchone()[0])
        free = int(conn.execute("PRAGMA freelist_count").fetchone()[0]) * page
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        rows = digests = compacted = 0
        if {"ledger", "ledger_digests"} <= tables:
            rows = int(conn.execute("SELECT COUNT(*) FROM ledger").fetchone()[0])
            digests, compacted = conn.execute(
                "SELECT COUNT(*), COUNT(compacted) FROM ledger_digests"
            ).fetchone() if _has_column(conn, "ledger_digests", "compacted") else (
                conn.execute("SELECT COUNT(*) FROM ledger_digests").fetchone()[0], 0
            )
    finally:
        conn.close()
    wal = path.with_name(path.name + "-wal")
    return StateSize(
        database=path.stat().st_size,
        wal=wal.stat().st_size if wal.exists() else 0,
        free=free,
        rows=rows,
        digests=int(digests),
        compacted=int(compacted),
    )


def _has_column(conn: sqlite3.Connection, table: str, column: str) -> bool:
    return any(row[1] == column for row in conn.execute(f"PRAGMA table_info({table})"))


def _mb(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"
