"""Which digests are queued to whom: the rules of docs/delivery.md, as statements over the
ledger's tables (`feeds.ledger` runs them inside its transactions).

A subscriber seen for the first time is queued the newest digest; a digest seen for the first
time is queued to every subscriber already on the list, unless it is an archive file dated well
before the newest digest already seen; a digest whose rows retention collapsed is never queued
again. The list goes through a temporary table, and every rule is one statement over it, so
memory does not grow with the list.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from feeds.errors import StateError
from feeds.ledger_schema import CODES, DOUBT, DUE_SQL, doubts
from feeds.recipients import ConfirmedKeys

# A digest seen for the first time that is dated this much before the newest digest already
# known is an archive file being added, not news: it is sent only when asked for by id.
BACKFILL_WINDOW = timedelta(days=7)


@dataclass(frozen=True)
class DigestRef:
    """What the ledger needs to know of a digest."""

    id: str
    date: datetime | None
    # The id an earlier version of this digest was published under (its date was corrected):
    # the same issue, already sent under that id, so never news again.
    replaces: str | None = None


def queue(
    conn: sqlite3.Connection,
    digests: Sequence[DigestRef],
    recipients: Iterable[str],
    *,
    now: datetime,
    only: str | None,
) -> None:
    """Register digests (newest first) and listed recipients, and queue what the rules say;
    with `only`, also queue that digest to every listed recipient."""
    seconds = int(now.timestamp())
    stamp = format_time(now)
    listed(conn, recipients)
    known = {
        row[0]: parse_time(row[1])
        for row in conn.execute("SELECT digest_id, digest_date FROM ledger_digests")
    }
    newest_known = max((d for d in known.values() if d is not None), default=None)
    new = [d for d in digests if d.id not in known]
    # Oldest first, so that ids (and the order of sending) follow the dates.
    conn.executemany(
        "INSERT INTO ledger_digests (digest_id, digest_date, registered) VALUES (?, ?, ?)",
        [(d.id, format_time(d.date), stamp) for d in reversed(new)],
    )
    conn.execute(
        "UPDATE temp.listed SET fresh = 1 WHERE recipient NOT IN"
        " (SELECT recipient FROM ledger_subscribers WHERE enrolled IS NOT NULL)"
    )
    # An empty list is more likely a file being rewritten than everyone leaving.
    if conn.execute("SELECT 1 FROM temp.listed LIMIT 1").fetchone():
        conn.execute(
            "UPDATE ledger_subscribers SET enrolled = NULL WHERE enrolled IS NOT NULL"
            " AND recipient NOT IN (SELECT recipient FROM temp.listed)"
        )
    conn.execute(
        "INSERT INTO ledger_subscribers (recipient, enrolled)"
        " SELECT recipient, ? FROM temp.listed WHERE fresh ORDER BY recipient"
        " ON CONFLICT (recipient) DO UPDATE SET enrolled = excluded.enrolled",
        (stamp,),
    )
    renamed = [d for d in new if d.replaces is not None and d.replaces in known]
    # The same issue under a new id: what was still due under the old one goes on under the
    # new one (the old id is no longer published), and nothing is queued afresh.
    conn.executemany(
        "UPDATE OR IGNORE ledger SET digest = (SELECT id FROM ledger_digests WHERE digest_id = ?)"
        f" WHERE digest = (SELECT id FROM ledger_digests WHERE digest_id = ?) AND {DUE_SQL}",
        [(d.id, d.replaces) for d in renamed],
    )
    fresh_news = [d for d in new if d not in renamed]
    for digest in _news(fresh_news, known=bool(known), newest_known=newest_known):
        _add(conn, digest.id, seconds, "NOT fresh")
    if digests:
        _add(conn, digests[0].id, seconds, "fresh")
    if only is not None:
        _add(conn, only, seconds, "1")
    conn.execute("DELETE FROM temp.listed")


def adopt(
    conn: sqlite3.Connection,
    digests: Sequence[DigestRef],
    recipients: Iterable[str],
    *,
    now: datetime,
) -> None:
    """Take these digests as sent to these recipients, queueing nothing."""
    stamp = format_time(now)
    conn.executemany(
        "INSERT OR IGNORE INTO ledger_digests (digest_id, digest_date, registered)"
        " VALUES (?, ?, ?)",
        [(d.id, format_time(d.date), stamp) for d in reversed(digests)],
    )
    conn.executemany(
        "INSERT INTO ledger_subscribers (recipient, enrolled) VALUES (?, ?)"
        " ON CONFLICT (recipient) DO UPDATE SET enrolled = excluded.enrolled",
        ((r.lower(), stamp) for r in recipients),
    )


def give_up_doubted(conn: sqlite3.Connection, sends: int, now: int) -> list[tuple[int, int]]:
    """Give up the rows left in doubt `sends` times (`ledger_schema.doubts`), not those a
    killed run left `sending` nor earlier refusals; their (digest, person) keys."""
    limit = max(1, sends)
    times = "once" if limit == 1 else "twice" if limit == 2 else f"{limit} times"
    given: list[tuple[int, int]] = []
    for digest, person, reply in conn.execute(
        f"SELECT digest, person, last_reply FROM ledger WHERE status = {CODES['sending']}"
        f" AND last_reply LIKE '{DOUBT} %'"
    ).fetchall():
        if doubts(reply) >= limit:
            conn.execute(
                f"UPDATE ledger SET status = {CODES['failed_permanent']}, updated = ?,"
                " last_reply = ? WHERE digest = ? AND person = ?",
                (now, f"gave up: sent {times} without an answer", digest, person),
            )
            given.append((digest, person))
    return given


def listed(conn: sqlite3.Connection, recipients: Iterable[str]) -> None:
    """The recipients (case-folded) in `temp.listed`, for the statements that follow."""
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS listed"
        " (recipient TEXT PRIMARY KEY, fresh INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID"
    )
    conn.execute("DELETE FROM temp.listed")
    if isinstance(recipients, ConfirmedKeys):
        # Addresses of the same database, case-folded there: copied inside SQLite, a million
        # in well under a second, none through Python.
        conn.execute(f"INSERT OR IGNORE INTO temp.listed (recipient) {ConfirmedKeys.SQL}")
        return
    conn.executemany(
        "INSERT OR IGNORE INTO temp.listed (recipient) VALUES (?)",
        ((r.lower(),) for r in recipients),
    )


def _add(conn: sqlite3.Connection, digest_id: str, now: int, which: str) -> None:
    """Queue a digest to the listed recipients `which` selects (an SQL condition on
    `temp.listed`), unless they have a row for it already or retention collapsed it."""
    conn.execute(
        "INSERT OR IGNORE INTO ledger (digest, person, status, queued, updated)"
        f" SELECT d.id, s.id, {CODES['pending']}, ?, ? FROM ledger_digests d,"
        " temp.listed l JOIN ledger_subscribers s ON s.recipient = l.recipient"
        f" WHERE d.digest_id = ? AND d.compacted IS NULL AND ({which})"
        " ORDER BY s.id",
        (now, now, digest_id),
    )


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


def format_time(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise StateError(f"naive datetime {value!r} in the ledger")
    return value.astimezone(UTC).isoformat(timespec="seconds")


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None
