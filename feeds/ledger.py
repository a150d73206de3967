"""The delivery ledger: one row per (digest, recipient) in the SQLite state, so each newsletter
reaches each subscriber once however often cron starts `feeds send` and wherever it is killed.

A row moves pending -> sending -> sent, or to failed_temporary (tried again later),
failed_permanent (a 5xx: never retried), skipped (no paper in the subscriber's categories) or
cancelled (the subscriber left the list before delivery). `sending` is committed before the
message data goes out and `sent` only after the server accepted it, so after a crash the only
row whose fate is unknown is the one left in `sending`.

Which digests are queued (see docs/delivery.md): a subscriber seen for the first time is queued
the newest digest; a digest seen for the first time is queued to every subscriber already on
the list, unless it is an archive file dated well before the newest digest already seen.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from feeds import audience, state
from feeds.errors import StateError

Status = Literal[
    "pending", "sending", "sent", "failed_temporary", "failed_permanent", "skipped", "cancelled"
]
STATUSES: tuple[Status, ...] = (
    "pending", "sending", "sent", "failed_temporary", "failed_permanent", "skipped", "cancelled"
)
DUE: tuple[Status, ...] = ("pending", "sending", "failed_temporary")
# A newsletter that could not be delivered within this long after it was queued is given up:
# by then it is old news, and the mailbox (or the relay) has been failing for days.
GIVE_UP_AFTER = timedelta(days=3)
# A digest seen for the first time that is dated this much before the newest digest already
# known is an archive file being added, not news: it is sent only when asked for by id.
BACKFILL_WINDOW = timedelta(days=7)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger (
    digest_id     TEXT NOT NULL,
    recipient     TEXT NOT NULL,
    status        TEXT NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    last_reply    TEXT,
    message_id    TEXT,
    queued        TEXT NOT NULL,
    first_attempt TEXT,
    updated       TEXT NOT NULL,
    PRIMARY KEY (digest_id, recipient)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ledger_by_status ON ledger (status, digest_id);
-- A bounce names its message by the hash in its Message-ID (<digest.HASH@domain>), through
-- the VERP token or the headers it quotes.
CREATE INDEX IF NOT EXISTS ledger_by_hash
    ON ledger (substr(message_id, instr(message_id, '@') - 24, 24));
CREATE TABLE IF NOT EXISTS ledger_digests (
    digest_id   TEXT PRIMARY KEY,
    digest_date TEXT,
    registered  TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ledger_subscribers (
    recipient TEXT PRIMARY KEY,
    enrolled  TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ledger_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
"""


@dataclass(frozen=True, slots=True)
class Entry:
    digest_id: str
    recipient: str
    status: Status
    attempts: int
    last_reply: str | None
    message_id: str | None
    queued: str
    first_attempt: str | None
    updated: str


@dataclass(frozen=True)
class DigestRef:
    """What the ledger needs to know of a digest."""

    id: str
    date: datetime | None
    # The id an earlier version of this digest was published under (its date was corrected):
    # the same issue, already sent under that id, so never news again.
    replaces: str | None = None



def due_mark(state_path: Path, audience: str) -> str | None:
    """What decides what is due besides the ledger: the last complete build (its stamp) and
    the audience (`Audience.signature`). None when there is no complete build."""
    stamp = state.read_stamp(state_path).get("stamp")
    return f"{stamp} {audience}" if stamp else None


def nothing_due(state_path: Path, mark: str | None) -> bool:
    """Whether the last send left nothing due and nothing changed since (`due_mark`): cron's
    every-ten-minutes `feeds run` then ends here, before the sending stack is imported."""
    if mark is None or not state_path.exists():
        return False
    ledger = Ledger.open(state_path)
    try:
        return ledger.get_meta("sent_for") == mark and ledger.count_due() == (0, 0)
    finally:
        ledger.close()


class Ledger:
    def __init__(
        self, conn: sqlite3.Connection, *, clock: Callable[[], datetime] = state.utc_now
    ) -> None:
        self._conn = conn
        self._clock = clock
        self._lock = threading.Lock()
        self._in_preview = False
        conn.isolation_level = None
        with self._lock:
            conn.executescript(_SCHEMA)
            audience.create_tables(conn)

    @classmethod
    def open(cls, path: Path, *, clock: Callable[[], datetime] = state.utc_now) -> Ledger:
        """The ledger in the state database at `path` (one connection the sending threads
        share; `Ledger` serializes its writes)."""
        return cls(state.connect(path), clock=clock)

    def close(self) -> None:
        self._conn.close()

    def _now(self) -> str:
        return self._clock().astimezone(UTC).isoformat(timespec="seconds")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextmanager
    def preview(self) -> Iterator[None]:
        """Everything done inside is rolled back: what a dry run would queue, without queueing."""
        with self._lock:
            self._conn.execute("BEGIN")
            self._in_preview = True
        try:
            yield
        finally:
            with self._lock:
                self._in_preview = False
                self._conn.execute("ROLLBACK")

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        if self._in_preview:
            with self._lock:
                yield self._conn
        else:
            with self._transaction() as conn:
                yield conn

    # -- what to send ---------------------------------------------------------------------

    def queue(
        self,
        digests: Sequence[DigestRef],
        recipients: Collection[str],
        *,
        only: str | None = None,
    ) -> None:
        """Register digests (newest first) and listed recipients, and queue what the rules say;
        with `only`, also queue that digest to every listed recipient."""
        now = self._now()
        listed = {r.lower() for r in recipients}
        with self._writing() as conn:
            known = {
                row[0]: _parse_time(row[1])
                for row in conn.execute("SELECT digest_id, digest_date FROM ledger_digests")
            }
            newest_known = max((d for d in known.values() if d is not None), default=None)
            new = [d for d in digests if d.id not in known]
            conn.executemany(
                "INSERT INTO ledger_digests (digest_id, digest_date, registered) VALUES (?, ?, ?)",
                [(d.id, _format_time(d.date), now) for d in new],
            )
            enrolled = {row[0] for row in conn.execute("SELECT recipient FROM ledger_subscribers")}
            # An empty list is more likely a file being rewritten than everyone leaving.
            if listed:
                conn.executemany(
                    "DELETE FROM ledger_subscribers WHERE recipient = ?",
                    [(r,) for r in enrolled - listed],
                )
            existing = sorted(enrolled & listed)
            fresh = sorted(listed - enrolled)
            conn.executemany(
                "INSERT INTO ledger_subscribers (recipient, enrolled) VALUES (?, ?)",
                [(r, now) for r in fresh],
            )
            renamed = [d for d in new if d.replaces is not None and d.replaces in known]
            # The same issue under a new id: what was still due under the old one goes on under
            # the new one (the old id is no longer published), and nothing is queued afresh.
            conn.executemany(
                "UPDATE ledger SET digest_id = ? WHERE digest_id = ? AND status IN (?, ?, ?)",
                [(d.id, d.replaces, *DUE) for d in renamed],
            )
            fresh_news = [d for d in new if d not in renamed]
            for digest in _news(fresh_news, known=bool(known), newest_known=newest_known):
                self._add(conn, digest.id, existing, now)
            if digests:
                self._add(conn, digests[0].id, fresh, now)
            if only is not None:
                self._add(conn, only, sorted(listed), now)

    def adopt(self, digests: Sequence[DigestRef], recipients: Collection[str]) -> None:
        """Take these digests as sent to these recipients, queueing nothing: a fresh start after
        the state was lost, so that the next send mails only what comes next."""
        now = self._now()
        with self._writing() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO ledger_digests (digest_id, digest_date, registered)"
                " VALUES (?, ?, ?)",
                [(d.id, _format_time(d.date), now) for d in digests],
            )
            conn.executemany(
                "INSERT OR IGNORE INTO ledger_subscribers (recipient, enrolled) VALUES (?, ?)",
                [(r.lower(), now) for r in recipients],
            )

    @staticmethod
    def _add(conn: sqlite3.Connection, digest_id: str, recipients: Sequence[str], now: str) -> None:
        conn.executemany(
            "INSERT OR IGNORE INTO ledger (digest_id, recipient, status, queued, updated)"
            " VALUES (?, ?, 'pending', ?, ?)",
            [(digest_id, r, now, now) for r in recipients],
        )

    def settle(self, recipients: Iterable[str]) -> list[Entry]:
        """Before sending: cancel what is queued for recipients no longer listed, and give up
        rows queued too long ago; the rows given up (each reported once, by this run). Done in
        SQL, so memory does not grow with the list."""
        now = self._clock()
        stamp = _format_time(now)
        cutoff = _format_time(now - GIVE_UP_AFTER)
        gave_up = f"gave up after {GIVE_UP_AFTER.days} days"
        with self._writing() as conn:
            conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS listed (recipient TEXT PRIMARY KEY) WITHOUT ROWID"
            )
            conn.execute("DELETE FROM temp.listed")
            conn.executemany(
                "INSERT OR IGNORE INTO temp.listed (recipient) VALUES (?)",
                ((r.lower(),) for r in recipients),
            )
            conn.execute(
                "UPDATE ledger SET status = 'cancelled', last_reply = ?, updated = ?"
                " WHERE status IN (?, ?, ?)"
                " AND recipient NOT IN (SELECT recipient FROM temp.listed)",
                ("unsubscribed before delivery", stamp, *DUE),
            )
            given_up = [_entry(row) for row in conn.execute(
                "UPDATE ledger SET status = 'failed_permanent', updated = ?, last_reply ="
                " CASE WHEN COALESCE(last_reply, '') = '' THEN ? ELSE ? || ': ' || last_reply END"
                f" WHERE status IN (?, ?, ?) AND queued < ? RETURNING {_FIELDS}",
                (stamp, gave_up, gave_up, *DUE, cutoff),
            ).fetchall()]
            conn.execute("DELETE FROM temp.listed")
        return sorted(given_up, key=lambda e: (e.digest_id, e.recipient))

    def count_due(self, digest_id: str | None = None) -> tuple[int, int]:
        """(rows due, of which left `sending` by a run that stopped)."""
        sql = (
            "SELECT COUNT(*), COALESCE(SUM(status = 'sending'), 0) FROM ledger"
            " WHERE status IN (?, ?, ?)"
        )
        params: tuple[str, ...] = DUE
        if digest_id is not None:
            sql += " AND digest_id = ?"
            params = (*DUE, digest_id)
        with self._lock:
            total, in_doubt = self._conn.execute(sql, params).fetchone()
        return int(total), int(in_doubt)

    def iter_due(self, digest_id: str | None = None, *, page: int = 512) -> Iterator[Entry]:
        """Rows still to deliver, oldest digest first, read a page at a time (and so safe to
        interleave with the writes of a send in progress)."""
        sql = f"SELECT {_FIELDS} FROM ledger WHERE status IN (?, ?, ?)"
        if digest_id is not None:
            sql += " AND digest_id = ?"
        sql += " AND (digest_id, recipient) > (?, ?) ORDER BY digest_id, recipient LIMIT ?"
        after = ("", "")
        while True:
            params = (*DUE, *((digest_id,) if digest_id is not None else ()), *after, page)
            with self._lock:
                rows = self._conn.execute(sql, params).fetchall()
            yield from map(_entry, rows)
            if len(rows) < page:
                return
            after = (rows[-1][0], rows[-1][1])

    def due_digests(self, digest_id: str | None = None) -> list[str]:
        """The digests with rows still to deliver."""
        sql = "SELECT DISTINCT digest_id FROM ledger WHERE status IN (?, ?, ?)"
        params: tuple[str, ...] = DUE
        if digest_id is not None:
            sql += " AND digest_id = ?"
            params = (*DUE, digest_id)
        with self._lock:
            return [row[0] for row in self._conn.execute(sql, params)]

    def due(self, recipients: Iterable[str], *, digest_id: str | None = None) -> list[Entry]:
        """`settle`, then every row still to deliver."""
        self.settle(recipients)
        return list(self.iter_due(digest_id))

    # -- while sending ----------------------------------------------------------------------

    def mark_sending(self, digest_id: str, recipient: str, message_id: str) -> bool:
        """Committed before DATA: from here on a crash leaves this row, and only this one, in
        doubt. False, and nothing marked, when the recipient has left since the send began (an
        unsubscribe or a bounce arriving mid-send is honoured at once)."""
        now = self._now()
        with self._lock:
            changed = self._conn.execute(
                "UPDATE ledger SET status = 'sending', attempts = attempts + 1, message_id = ?,"
                " first_attempt = COALESCE(first_attempt, ?), updated = ?"
                " WHERE digest_id = ? AND recipient = ? AND recipient NOT IN (SELECT address"
                " FROM subscribers WHERE status != 'confirmed')",
                (message_id, now, now, digest_id, recipient),
            ).rowcount
        return bool(changed)

    def finish(
        self,
        digest_id: str,
        recipient: str,
        status: Status,
        reply: str,
        *,
        attempted: bool = False,
    ) -> None:
        """Record an outcome. `attempted`: an SMTP transaction that ended before DATA (so
        `mark_sending` did not count it)."""
        now = self._now()
        with self._lock:
            self._conn.execute(
                "UPDATE ledger SET status = ?, last_reply = ?, updated = ?,"
                " attempts = attempts + ?,"
                " first_attempt = CASE WHEN ? THEN COALESCE(first_attempt, ?) ELSE first_attempt"
                " END WHERE digest_id = ? AND recipient = ?",
                (status, reply[:500], now, int(attempted), int(attempted), now, digest_id,
                 recipient),
            )

    # -- reading ------------------------------------------------------------------------------

    def by_message_hash(self, found: str) -> Entry | None:
        """The row whose Message-ID carries this hash (`feeds.verp.message_hash`), if any: what
        a bounce is about."""
        with self._lock:
            row = self._conn.execute(
                f"SELECT {_FIELDS} FROM ledger"
                " WHERE substr(message_id, instr(message_id, '@') - 24, 24) = ?",
                (found,),
            ).fetchone()
        return None if row is None else _entry(row)

    def entries(self, digest_id: str | None = None) -> list[Entry]:
        sql = f"SELECT {_FIELDS} FROM ledger"
        params: tuple[str, ...] = ()
        if digest_id is not None:
            sql += " WHERE digest_id = ?"
            params = (digest_id,)
        with self._lock:
            rows = self._conn.execute(sql + " ORDER BY digest_id, recipient", params).fetchall()
        return [_entry(row) for row in rows]

    def counts(self, digest_id: str | None = None) -> dict[Status, int]:
        sql = "SELECT status, COUNT(*) FROM ledger"
        params: tuple[str, ...] = ()
        if digest_id is not None:
            sql += " WHERE digest_id = ?"
            params = (digest_id,)
        with self._lock:
            rows = self._conn.execute(sql + " GROUP BY status", params).fetchall()
        found = dict(rows)
        return {status: int(found.get(status, 0)) for status in STATUSES}

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT value FROM ledger_meta WHERE key = ?", (key,))
            found = row.fetchone()
        return str(found[0]) if found else None

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO ledger_meta (key, value) VALUES (?, ?)", (key, value)
            )

    def known_digests(self) -> set[str]:
        with self._lock:
            return {row[0] for row in self._conn.execute("SELECT digest_id FROM ledger_digests")}


_FIELDS = (
    "digest_id, recipient, status, attempts, last_reply, message_id, queued, first_attempt,"
    " updated"
)


def _entry(row: tuple[object, ...]) -> Entry:
    return Entry(*row)  # type: ignore[arg-type]


def _news(
    new: Sequence[DigestRef], *, known: bool, newest_known: datetime | None
) -> list[DigestRef]:
    """Which newly seen digests go to the subscribers already on the list."""
    if not new:
        return []
    if not known:
        # The first digests ever seen are an archive: only the newest is news.
        return [new[0]]
    if newest_known is None:
        return list(new)
    floor = newest_known - BACKFILL_WINDOW
    return [d for d in new if d.date is None or d.date >= floor]


def _format_time(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise StateError(f"naive datetime {value!r} in the ledger")
    return value.astimezone(UTC).isoformat(timespec="seconds")


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None
