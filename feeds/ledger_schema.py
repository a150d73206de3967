"""The ledger's tables in the state database, and the migration of older layouts.

A year at 100,000 subscribers is 36.5 million (digest, recipient) facts, so a row is kept
small: the digest and the recipient are integer references (`ledger_digests.id`,
`ledger_subscribers.id`), the status a one-digit code (`sent`, by far the most common, is 0,
which SQLite stores in no bytes at all), times are Unix seconds, a `sent` row keeps neither the
server's reply nor its Message-ID (the Message-ID can be computed again, see
`feeds.addressing.message_id`), and a bounce finds its message through a 64-bit integer of the hash
in its Message-ID. About 60 bytes a row with its indexes, against 265 in the first layout.

The ledger keeps its own schema version (`ledger_meta` key `schema`), beside the build's
`PRAGMA user_version`, so that the two stages can change their tables independently.
"""

from __future__ import annotations

import re
import sqlite3
from typing import Literal

LEDGER_SCHEMA = 2

Status = Literal[
    "pending", "sending", "sent", "failed_temporary", "failed_permanent", "skipped", "cancelled"
]
# The code each status is stored as. 0 and 1 take no bytes in an SQLite record: the two
# statuses nearly every row ends in.
CODES: dict[Status, int] = {
    "sent": 0,
    "skipped": 1,
    "pending": 2,
    "sending": 3,
    "failed_temporary": 4,
    "failed_permanent": 5,
    "cancelled": 6,
}
NAMES: dict[int, Status] = {code: name for name, code in CODES.items()}
# Due: pending, sending, failed_temporary. Written out, not bound: the partial index below is
# used only by queries whose WHERE repeats its condition as written.
DUE_SQL = "status IN (2, 3, 4)"

_TABLES = f"""
CREATE TABLE IF NOT EXISTS ledger_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ledger_digests (
    id          INTEGER PRIMARY KEY,
    digest_id   TEXT NOT NULL UNIQUE,
    digest_date TEXT,
    registered  TEXT NOT NULL,
    -- Set when retention collapsed its rows: from then on nothing is queued for it, ever.
    compacted   TEXT,
    -- JSON {{status: count}} of the rows retention removed (sent and skipped).
    collapsed   TEXT
);
CREATE TABLE IF NOT EXISTS ledger_subscribers (
    id        INTEGER PRIMARY KEY,
    recipient TEXT NOT NULL UNIQUE,
    -- When they were last taken onto the list, NULL while they are not on it. The row stays
    -- while ledger rows refer to it.
    enrolled  TEXT
);
CREATE TABLE IF NOT EXISTS ledger (
    digest        INTEGER NOT NULL,   -- ledger_digests.id
    person        INTEGER NOT NULL,   -- ledger_subscribers.id
    status        INTEGER NOT NULL,   -- CODES
    attempts      INTEGER NOT NULL DEFAULT 0,
    queued        INTEGER NOT NULL,   -- Unix seconds
    updated       INTEGER NOT NULL,
    first_attempt INTEGER,
    mhash         INTEGER,            -- the Message-ID's hash, first 64 bits, signed
    message_id    TEXT,               -- until sent
    last_reply    TEXT,               -- not kept for sent
    PRIMARY KEY (digest, person)
) WITHOUT ROWID;
-- Only the rows still due: small after every send, whatever the history.
CREATE INDEX IF NOT EXISTS ledger_due ON ledger (digest, person) WHERE {DUE_SQL};
CREATE INDEX IF NOT EXISTS ledger_by_hash ON ledger (mhash) WHERE mhash IS NOT NULL;
"""

# Schema 1: text digest ids and recipients in every row, ISO times, every reply and Message-ID.
_FROM_1 = """
DROP INDEX IF EXISTS ledger_by_status;
DROP INDEX IF EXISTS ledger_by_hash;
ALTER TABLE ledger RENAME TO ledger_v1;
ALTER TABLE ledger_digests RENAME TO ledger_digests_v1;
ALTER TABLE ledger_subscribers RENAME TO ledger_subscribers_v1;
"""
_COPY_1 = """
INSERT INTO ledger_digests (digest_id, digest_date, registered)
    SELECT digest_id, digest_date, registered FROM ledger_digests_v1
    ORDER BY COALESCE(digest_date, registered), digest_id;
INSERT OR IGNORE INTO ledger_digests (digest_id, registered)
    SELECT digest_id, MIN(queued) FROM ledger_v1 GROUP BY digest_id ORDER BY digest_id;
INSERT INTO ledger_subscribers (recipient, enrolled)
    SELECT recipient, enrolled FROM ledger_subscribers_v1 ORDER BY recipient;
INSERT OR IGNORE INTO ledger_subscribers (recipient)
    SELECT DISTINCT recipient FROM ledger_v1 ORDER BY recipient;
INSERT INTO ledger (digest, person, status, attempts, queued, updated, first_attempt, mhash,
                    message_id, last_reply)
    SELECT d.id, s.id,
        CASE o.status WHEN 'sent' THEN 0 WHEN 'skipped' THEN 1 WHEN 'pending' THEN 2
            WHEN 'sending' THEN 3 WHEN 'failed_temporary' THEN 4 WHEN 'failed_permanent' THEN 5
            ELSE 6 END,
        o.attempts, unixepoch(o.queued), unixepoch(o.updated), unixepoch(o.first_attempt),
        ledger_mhash(o.message_id),
        CASE WHEN o.status = 'sent' THEN NULL ELSE o.message_id END,
        CASE WHEN o.status = 'sent' THEN NULL ELSE o.last_reply END
    FROM ledger_v1 o
    JOIN ledger_digests d ON d.digest_id = o.digest_id
    JOIN ledger_subscribers s ON s.recipient = o.recipient
    ORDER BY d.id, s.id;
DROP TABLE ledger_v1;
DROP TABLE ledger_digests_v1;
DROP TABLE ledger_subscribers_v1;
"""


def message_hash_key(message_id: str | None) -> int | None:
    """The integer a Message-ID is found by (`ledger.mhash`): the first 64 bits of the hash
    in `<digest.HASH@domain>` as a signed integer; None for a Message-ID not made by
    `feeds.addressing.message_id` (a test copy)."""
    from feeds.verp import message_hash

    found = message_hash(message_id) if message_id else None
    return None if found is None else hash_key(found)


def hash_key(found: str) -> int:
    """`message_hash_key` of a hash already taken out of its Message-ID."""
    value = int(found[:16], 16)
    return value - (1 << 64) if value >= 1 << 63 else value


def create(conn: sqlite3.Connection) -> None:
    """The ledger's tables as this version keeps them, migrating an older layout in one
    transaction (a half-migrated ledger is never committed). `conn` is in autocommit mode."""
    conn.create_function("ledger_mhash", 1, message_hash_key, deterministic=True)
    if _version(conn) == LEDGER_SCHEMA:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Another process may have migrated it while this one waited for the lock.
        version = _version(conn)
        if version != LEDGER_SCHEMA:
            if version == 1:
                _run(conn, _FROM_1)
            _run(conn, _TABLES)
            if version == 1:
                _run(conn, _COPY_1)
            conn.execute(
                "INSERT OR REPLACE INTO ledger_meta (key, value) VALUES ('schema', ?)",
                (str(LEDGER_SCHEMA),),
            )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _version(conn: sqlite3.Connection) -> int:
    """2 (this layout), 1 (the first: text ids in every row) or 0 (no ledger yet)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(ledger)")}
    if not columns:
        return 0
    if "digest_id" in columns:
        return 1
    return LEDGER_SCHEMA


def _run(conn: sqlite3.Connection, script: str) -> None:
    """Each statement of `script` inside the transaction already open (`executescript` would
    commit it first)."""
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


# How a row left in doubt (sent whole, no answer: still `sending`) says so, and how many times:
# "in doubt 2: <the last reply>" (`Ledger.doubted`, `queueing.give_up_doubted`).
DOUBT = "in doubt"


def doubts(reply: str | None) -> int:
    found = re.match(rf"{DOUBT} (\d+): ", reply or "")
    return int(found[1]) if found else 0


def doubt(reply_before: str | None, reply: str) -> str:
    """The reply a row keeps once more left in doubt."""
    return f"{DOUBT} {doubts(reply_before) + 1}: {reply}"[:500]

