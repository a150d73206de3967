"""Who a send goes to: a list already in memory, or the confirmed subscribers of the state
database read as the send goes, so that a send to a million subscribers holds none of them.

The ledger takes the addresses (`keys`) into a temporary table in one statement when they
come from the database; the engine looks each recipient up (`get`) when their message is due.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from feeds.subscribers import Subscriber, SubscriberList


class Recipients(Protocol):
    def keys(self) -> Iterable[str]:
        """The ledger's identities (case-folded addresses) of everyone on the list."""

    def get(self, key: str) -> Subscriber | None:
        """The subscriber behind an identity, None if there is none."""


@dataclass(frozen=True)
class InMemory:
    """A list already read (a CSV, a test)."""

    by_key: Mapping[str, Subscriber]

    @classmethod
    def of(cls, people: SubscriberList) -> InMemory:
        return cls({s.key: s for s in people.subscribers})

    def keys(self) -> Iterable[str]:
        return self.by_key.keys()

    def get(self, key: str) -> Subscriber | None:
        return self.by_key.get(key)


class ConfirmedKeys:
    """The confirmed addresses of the database behind `conn`, read as they are iterated; the
    ledger copies them inside SQLite instead (`feeds.queueing.listed`)."""

    SQL = "SELECT address FROM subscribers WHERE status = 'confirmed'"

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __iter__(self) -> Iterator[str]:
        return (str(row[0]) for row in self.conn.execute(self.SQL))


class Confirmed:
    """The confirmed subscribers in the state database, never all in memory."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def keys(self) -> ConfirmedKeys:
        return ConfirmedKeys(self._conn)

    def get(self, key: str) -> Subscriber | None:
        # Whatever their status now: one who left since the send began is still looked up,
        # and the ledger then refuses to mark them sending (`Ledger.mark_sending`).
        row = self._conn.execute(
            "SELECT email, name, categories FROM subscribers WHERE address = ?", (key,)
        ).fetchone()
        if row is None:
            return None
        email, name, codes = row
        # As `Member.as_subscriber` makes it: the same message either way.
        return Subscriber(
            email=str(email), name=str(name), categories=frozenset(str(codes).split()), line=0
        )
