"""The delivery ledger: one row per (digest, recipient) in the SQLite state, so each newsletter
reaches each subscriber once however often cron starts `feeds send` and wherever it is killed.

A row moves pending -> sending -> sent, or to failed_temporary (tried again later),
failed_permanent (a 5xx: never retried), skipped (no paper in the subscriber's categories) or
cancelled (the subscriber left the list before delivery). `sending` is committed before the
message data goes out and `sent` only after the server accepted it, so after a crash the only
row whose fate is unknown is the one left in `sending`.

Which digests are queued is `feeds.queueing`; the tables and their compact rows are
`feeds.ledger_schema`; what is kept of old digests is `feeds.retention`.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from feeds import audience_schema, ledger_schema, queueing, state
from feeds.ledger_schema import (
    CODES,
    DUE_SQL,
    NAMES,
    Status,
    doubt,
    hash_key,
    message_hash_key,
)
from feeds.queueing import BACKFILL_WINDOW as BACKFILL_WINDOW
from feeds.queueing import DigestRef as DigestRef

STATUSES: tuple[Status, ...] = (
    "pending", "sending", "sent", "failed_temporary", "failed_permanent", "skipped", "cancelled"
)
DUE: tuple[Status, ...] = ("pending", "sending", "failed_temporary")
# A newsletter that could not be delivered within this long after it was queued is given up:
# by then it is old news, and the mailbox (or the relay) has been failing for days.
GIVE_UP_AFTER = timedelta(days=3)


@dataclass(frozen=True, slots=True)
class Entry:
    digest_id: str
    recipient: str
    status: Status
    attempts: int
    last_reply: str | None
    # None once sent (`feeds.addressing.message_id` makes it again, the same, when needed).
    message_id: str | None
    queued: str
    first_attempt: str | None
    updated: str


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


# A digest and a recipient by their text, in a statement about one row.
_ROW = (
    "digest = (SELECT id FROM ledger_digests WHERE digest_id = ?)"
    " AND person = (SELECT id FROM ledger_subscribers WHERE recipient = ?)"
)


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
            ledger_schema.create(conn)
            audience_schema.create_tables(conn)

    @classmethod
    def open(cls, path: Path, *, clock: Callable[[], datetime] = state.utc_now) -> Ledger:
        """The ledger in the state database at `path` (one connection the sending threads
        share; `Ledger` serializes its writes)."""
        return cls(state.connect(path), clock=clock)

    def close(self) -> None:
        self._conn.close()

    @property
    def conn(self) -> sqlite3.Connection:
        return self._conn

    def now(self) -> datetime:
        return self._clock()

    def _now(self) -> int:
        return int(self._clock().timestamp())

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
    def writing(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (inside a preview: part of the preview's, rolled back)."""
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
        recipients: Iterable[str],
        *,
        only: str | None = None,
    ) -> None:
        """Register digests (newest first) and listed recipients, and queue what the rules say
        (`feeds.queueing`); with `only`, also queue that digest to every listed recipient."""
        with self.writing() as conn:
            queueing.queue(conn, digests, recipients, now=self._clock(), only=only)

    def adopt(self, digests: Sequence[DigestRef], recipients: Iterable[str]) -> None:
        """Take these digests as sent to these recipients, queueing nothing: a fresh start after
        the state was lost, so that the next send mails only what comes next."""
        with self.writing() as conn:
            queueing.adopt(conn, digests, recipients, now=self._clock())

    def settle(self, recipients: Iterable[str], *, sends: int | None = None) -> list[Entry]:
        """Before sending: cancel what is queued for recipients no longer listed, and give up
        rows queued too long ago, and (with `sends`) rows left in doubt (`sending`) after that
        many sends; the rows given up (each reported once, by this run). Done in SQL, so
        memory does not grow with the list."""
        now = self._now()
        cutoff = int((self._clock() - GIVE_UP_AFTER).timestamp())
        gave_up = f"gave up after {GIVE_UP_AFTER.days} days"
        with self.writing() as conn:
            # A relay that takes the message and never answers in time would otherwise get it
            # again at every run, for days.
            doubted = [] if sends is None else queueing.give_up_doubted(conn, sends, now)
            queueing.listed(conn, recipients)
            conn.execute(
                f"UPDATE ledger SET status = {CODES['cancelled']}, last_reply = ?, updated = ?"
                f" WHERE {DUE_SQL} AND person NOT IN (SELECT s.id FROM ledger_subscribers s"
                " JOIN temp.listed l ON l.recipient = s.recipient)",
                ("unsubscribed before delivery", now),
            )
            keys = conn.execute(
                f"UPDATE ledger SET status = {CODES['failed_permanent']}, updated = ?,"
                " last_reply = CASE WHEN COALESCE(last_reply, '') = '' THEN ?"
                f" ELSE ? || ': ' || last_reply END WHERE {DUE_SQL} AND queued < ?"
                " RETURNING digest, person",
                (now, gave_up, gave_up, cutoff),
            ).fetchall() + doubted
            conn.execute("DELETE FROM temp.listed")
            given_up = [_entry(row) for key in keys for row in conn.execute(
                f"{_SELECT} WHERE l.digest = ? AND l.person = ?", key
            )]
        return sorted(given_up, key=lambda e: (e.digest_id, e.recipient))

    def count_due(self, digest_id: str | None = None) -> tuple[int, int]:
        """(rows due, of which left `sending` by a run that stopped)."""
        sql = (
            f"SELECT COUNT(*), COALESCE(SUM(status = {CODES['sending']}), 0) FROM ledger"
            f" WHERE {DUE_SQL}"
        )
        params: tuple[str, ...] = ()
        if digest_id is not None:
            sql += " AND digest = (SELECT id FROM ledger_digests WHERE digest_id = ?)"
            params = (digest_id,)
        with self._lock:
            total, in_doubt = self._conn.execute(sql, params).fetchone()
        return int(total), int(in_doubt)

    def iter_due(self, digest_id: str | None = None, *, page: int = 512) -> Iterator[Entry]:
        """Rows still to deliver, oldest digest first, read a page at a time (and so safe to
        interleave with the writes of a send in progress)."""
        sql = f"{_SELECT} WHERE l.{DUE_SQL}"
        if digest_id is not None:
            sql += " AND l.digest = (SELECT id FROM ledger_digests WHERE digest_id = ?)"
        sql += " AND (l.digest, l.person) > (?, ?) ORDER BY l.digest, l.person LIMIT ?"
        after = (0, 0)
        while True:
            params = (*((digest_id,) if digest_id is not None else ()), *after, page)
            with self._lock:
                rows = self._conn.execute(sql, params).fetchall()
            yield from map(_entry, rows)
            if len(rows) < page:
                return
            after = (rows[-1][0], rows[-1][1])

    def due_digests(self, digest_id: str | None = None) -> list[str]:
        """The digests with rows still to deliver."""
        sql = (
            "SELECT digest_id FROM ledger_digests d WHERE EXISTS"
            f" (SELECT 1 FROM ledger WHERE digest = d.id AND {DUE_SQL})"
        )
        params: tuple[str, ...] = ()
        if digest_id is not None:
            sql += " AND digest_id = ?"
            params = (digest_id,)
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
                f"UPDATE ledger SET status = {CODES['sending']}, attempts = attempts + 1,"
                " message_id = ?, mhash = ?, first_attempt = COALESCE(first_attempt, ?),"
                f" updated = ? WHERE {_ROW} AND NOT EXISTS (SELECT 1 FROM subscribers"
                " WHERE address = ? AND status != 'confirmed')",
                (message_id, message_hash_key(message_id), now, now, digest_id, recipient,
                 recipient),
            ).rowcount
        return bool(changed)

    def doubted(self, digest_id: str, recipient: str, reply: str) -> None:
        """A message sent whole without an answer: the row stays `sending` (sent again by the
        next run), and says how many times this happened to it (`settle` gives it up)."""
        now = self._now()
        with self._lock:
            row = self._conn.execute(
                f"SELECT last_reply FROM ledger WHERE {_ROW}", (digest_id, recipient)
            ).fetchone()
            self._conn.execute(
                f"UPDATE ledger SET last_reply = ?, updated = ? WHERE {_ROW}",
                (doubt(row[0] if row else None, reply), now, digest_id, recipient),
            )

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
        `mark_sending` did not count it). A `sent` row keeps no reply and no Message-ID: the
        one reply it would keep is a 250, and its Message-ID is made again from the row."""
        now = self._now()
        # Committed one message at a time, `sent` too: a batch of outcomes lost to a kill would
        # leave every message of the batch in `sending`, each sent again by the next run, and
        # exactly once allows one such message per connection. A commit costs microseconds.
        kept = None if status == "sent" else reply[:500]
        with self._lock:
            self._conn.execute(
                "UPDATE ledger SET status = ?, last_reply = ?, updated = ?,"
                " attempts = attempts + ?,"
                " message_id = CASE WHEN ? THEN NULL ELSE message_id END,"
                " first_attempt = CASE WHEN ? THEN COALESCE(first_attempt, ?) ELSE first_attempt"
                f" END WHERE {_ROW}",
                (CODES[status], kept, now, int(attempted), int(status == "sent"),
                 int(attempted), now, digest_id, recipient),
            )

    # -- reading ------------------------------------------------------------------------------

    def by_message_hash(self, found: str) -> Entry | None:
        """The row whose Message-ID carries this hash (`feeds.verp.message_hash`), if any: what
        a bounce is about."""
        with self._lock:
            rows = self._conn.execute(
                f"{_SELECT} WHERE l.mhash = ?", (hash_key(found),)
            ).fetchall()
        # 64 of the hash's 96 bits find the row; a Message-ID still kept must agree in full.
        for row in rows:
            entry = _entry(row)
            if entry.message_id is None or found in entry.message_id:
                return entry
        return None

    def entries(self, digest_id: str | None = None) -> list[Entry]:
        sql = _SELECT
        params: tuple[str, ...] = ()
        if digest_id is not None:
            sql += " WHERE d.digest_id = ?"
            params = (digest_id,)
        with self._lock:
            rows = self._conn.execute(
                sql + " ORDER BY d.digest_id, s.recipient", params
            ).fetchall()
        return [_entry(row) for row in rows]

    def counts(self, digest_id: str | None = None) -> dict[Status, int]:
        """Rows by status, those retention collapsed included."""
        import json

        where, params = ("", ()) if digest_id is None else (
            " WHERE d.digest_id = ?", (digest_id,)
        )
        found: dict[str, int] = {}
        with self._lock:
            for code, n in self._conn.execute(
                "SELECT l.status, COUNT(*) FROM ledger l JOIN ledger_digests d ON d.id = l.digest"
                + where + " GROUP BY l.status", params
            ):
                found[NAMES[code]] = found.get(NAMES[code], 0) + int(n)
            for (collapsed,) in self._conn.execute(
                "SELECT collapsed FROM ledger_digests d" + where
                + (" AND" if where else " WHERE") + " collapsed IS NOT NULL", params
            ):
                for status, n in json.loads(collapsed).items():
                    found[status] = found.get(status, 0) + int(n)
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

    def compacted(self, digest_id: str) -> str | None:
        """When retention compacted this digest (feeds.retention); None if it has not."""
        with self._lock:
            row = self._conn.execute(
                "SELECT compacted FROM ledger_digests WHERE digest_id = ?", (digest_id,)
            ).fetchone()
        return None if row is None or row[0] is None else str(row[0])

    def known_digests(self) -> set[str]:
        with self._lock:
            return {row[0] for row in self._conn.execute("SELECT digest_id FROM ledger_digests")}


_SELECT = (
    "SELECT l.digest, l.person, d.digest_id, s.recipient, l.status, l.attempts, l.last_reply,"
    " l.message_id, l.queued, l.first_attempt, l.updated FROM ledger l"
    " JOIN ledger_digests d ON d.id = l.digest JOIN ledger_subscribers s ON s.id = l.person"
)


def _entry(row: tuple[object, ...]) -> Entry:
    _, _, digest_id, recipient, code, attempts, reply, mid, queued, first, updated = row
    return Entry(
        digest_id=str(digest_id),
        recipient=str(recipient),
        status=NAMES[int(code)],  # type: ignore[call-overload]
        attempts=int(attempts),  # type: ignore[call-overload]
        last_reply=None if reply is None else str(reply),
        message_id=None if mid is None else str(mid),
        queued=_iso(queued),
        first_attempt=None if first is None else _iso(first),
        updated=_iso(updated),
    )


def _iso(seconds: object) -> str:
    return datetime.fromtimestamp(int(seconds), UTC).isoformat(timespec="seconds")  # type: ignore[call-overload]
