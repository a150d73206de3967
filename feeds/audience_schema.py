"""The audience's tables in the state database: the subscribers, the confirmation links and
the notices mailed (`feeds.audience` keeps them; the ledger reads the subscribers too)."""

from __future__ import annotations

import sqlite3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS subscribers (
    address TEXT PRIMARY KEY,            -- case-folded: the identity, as in the ledger
    email TEXT NOT NULL,                 -- as it goes into the envelope
    name TEXT NOT NULL DEFAULT '',
    categories TEXT NOT NULL DEFAULT '', -- codes separated by spaces; empty: every category
    status TEXT NOT NULL,
    source TEXT NOT NULL,                -- csv, web or cli: who added them
    created TEXT NOT NULL,
    consented TEXT,                      -- confirmed on the web, or vouched for by the operator
    left_at TEXT,                        -- unsubscribed or suppressed
    reason TEXT,                         -- why they left, or the server's reply
    soft_bounces INTEGER NOT NULL DEFAULT 0, -- days with a temporary failure, in a row of weeks
    soft_last TEXT,                      -- the day of the last one
    updated TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS subscribers_by_status ON subscribers (status);
-- Confirmation tokens, stored hashed: a copy of the database confirms nobody.
CREATE TABLE IF NOT EXISTS confirm_tokens (
    digest TEXT PRIMARY KEY,
    address TEXT NOT NULL,
    expires TEXT NOT NULL
) WITHOUT ROWID;
-- What each token confirms: the name and categories asked with it, so that a later form for
-- the same pending address, typed by anyone, never changes what an earlier link confirms.
CREATE TABLE IF NOT EXISTS confirm_choices (
    digest TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    categories TEXT NOT NULL
) WITHOUT ROWID;
-- Confirmation and manage emails sent, for the daily limit per address.
CREATE TABLE IF NOT EXISTS notices (
    address TEXT NOT NULL,
    sent TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS notices_by_address ON notices (address, sent);
"""


def create_tables(conn: sqlite3.Connection) -> None:
    """The audience's tables, if they are not there yet."""
    conn.executescript(_SCHEMA)
