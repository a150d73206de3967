"""The audience: subscribers in the state database, with their consent and their choices.

A subscriber is `pending` (asked on the web, not confirmed yet), `confirmed` (gets the
newsletter), `unsubscribed` (left; mailed nothing more unless they subscribe again themselves)
or `suppressed` (their mailbox refuses mail). Only confirmed subscribers are sent to, and the
ledger cancels what was queued for anyone who is no longer confirmed.

Every change is one short `BEGIN IMMEDIATE` transaction over the state file the build, the
sender and the web endpoint share; none is held across network I/O.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from feeds import state
from feeds.audience_schema import create_tables
from feeds.subscribers import Subscriber, SubscriberList

Status = Literal["pending", "confirmed", "unsubscribed", "suppressed"]
STATUSES: tuple[Status, ...] = ("pending", "confirmed", "unsubscribed", "suppressed")
# A confirmation link works this long; an address never confirmed is forgotten after a week.
CONFIRM_FOR = timedelta(hours=72)
FORGET_PENDING_AFTER = timedelta(days=7)
# Confirmation and manage emails to one address per day (`[web] notices_per_day`): nobody can
# flood a stranger's mailbox by submitting the form over and over.
NOTICES_PER_DAY = 3

_COLUMNS = "email, name, categories, status, source, created, consented, left_at, reason"


@dataclass(frozen=True)
class Member:
    """One row of the subscribers table."""

    email: str
    name: str
    categories: frozenset[str]
    status: Status
    source: str
    created: datetime
    consented: datetime | None = None
    left_at: datetime | None = None
    reason: str | None = None

    @property
    def key(self) -> str:
        return self.email.lower()

    def as_subscriber(self) -> Subscriber:
        return Subscriber(email=self.email, name=self.name, categories=self.categories, line=0)

    def as_dict(self) -> dict[str, object]:
        return {
            "email": self.email,
            "name": self.name,
            "categories": sorted(self.categories),
            "status": self.status,
            "source": self.source,
            "created": self.created.isoformat(),
            "consented": self.consented.isoformat() if self.consented else None,
            "left": self.left_at.isoformat() if self.left_at else None,
            "reason": self.reason,
        }


class Audience:
    """The subscribers table, over one connection to the state database."""

    def __init__(
        self, conn: sqlite3.Connection, *, clock: Callable[[], datetime] = state.utc_now
    ) -> None:
        self._conn = conn
        self._clock = clock
        create_tables(conn)

    @classmethod
    def open(cls, path: Path, *, clock: Callable[[], datetime] = state.utc_now) -> Audience:
        return cls(state.connect(path), clock=clock)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Audience:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def now(self) -> datetime:
        return self._clock()

    @property
    def conn(self) -> sqlite3.Connection:
        return self._conn

    @contextmanager
    def writing(self) -> Iterator[sqlite3.Connection]:
        """One `BEGIN IMMEDIATE` transaction that counts as a change of the audience."""
        with state.transaction(self._conn) as conn:
            before = conn.total_changes
            yield conn
            if conn.total_changes != before:
                # Counted with the change, for `signature`: times alone miss two in a second.
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('audience_changes', '1')"
                    " ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
                )

    # -- reading ------------------------------------------------------------------------------

    def get(self, email: str) -> Member | None:
        row = self._conn.execute(
            f"SELECT {_COLUMNS} FROM subscribers WHERE address = ?", (email.lower(),)
        ).fetchone()
        return None if row is None else _member(row)

    def members(self, status: Status | None = None) -> list[Member]:
        sql = f"SELECT {_COLUMNS} FROM subscribers"
        params: tuple[str, ...] = ()
        if status is not None:
            sql += " WHERE status = ?"
            params = (status,)
        return [_member(row) for row in self._conn.execute(sql + " ORDER BY address", params)]

    def count(self, status: Status = "confirmed") -> int:
        (found,) = self._conn.execute(
            "SELECT COUNT(*) FROM subscribers WHERE status = ?", (status,)
        ).fetchone()
        return int(found)

    def signature(self) -> str:
        """Changes whenever anyone joins, leaves or changes categories: with the last build's
        stamp, it tells a run whether anything can be due."""
        return f"audience {state.get_meta(self._conn, 'audience_changes') or 0}"

    def recipients(self, source: str = "state") -> SubscriberList:
        """Everyone the newsletter goes to: the confirmed subscribers."""
        people = tuple(m.as_subscriber() for m in self.members("confirmed"))
        return SubscriberList(source, people)

    # -- the operator -------------------------------------------------------------------------

    def add(
        self,
        email: str,
        *,
        name: str = "",
        categories: frozenset[str] = frozenset(),
        source: str = "cli",
    ) -> Member:
        """Subscribe `email` as confirmed: the operator vouches for it. This is the one way back
        for someone who unsubscribed or was suppressed besides subscribing again themselves."""
        now = iso(self.now())
        with self.writing() as conn:
            conn.execute(
                "INSERT INTO subscribers (address, email, name, categories, status, source,"
                " created, consented, updated) VALUES (?, ?, ?, ?, 'confirmed', ?, ?, ?, ?)"
                " ON CONFLICT (address) DO UPDATE SET email = excluded.email,"
                " name = excluded.name, categories = excluded.categories, status = 'confirmed',"
                " consented = excluded.consented, left_at = NULL, reason = NULL,"
                " updated = excluded.updated",
                (email.lower(), email, name, codes(categories), source, now, now, now),
            )
        found = self.get(email)
        assert found is not None
        return found

    def remove(self, email: str, *, reason: str = "removed by the operator") -> bool:
        """Unsubscribe `email` (kept on record, so that no stale list subscribes it again)."""
        return self._leave(email, "unsubscribed", reason)

    # -- the subscribers themselves ---------------------------------------------------------

    def request(
        self, email: str, *, name: str = "", categories: frozenset[str] = frozenset()
    ) -> tuple[Member | None, str | None]:
        """Someone asked on the web to subscribe `email`.

        A new, pending or unsubscribed address becomes pending with these choices and gets a
        confirmation token (returned; only its hash is stored). A confirmed address is left as
        it is (the caller mails it a manage link instead); a suppressed one too (mail to it
        does not arrive). Returns the member as it is now, and the token if one was made.
        """
        now = self.now()
        token = secrets.token_urlsafe(24)
        with self.writing() as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM subscribers WHERE address = ?", (email.lower(),)
            ).fetchone()
            found = None if row is None else _member(row)
            if found is not None and found.status in ("confirmed", "suppressed"):
                return found, None
            if found is None:
                conn.execute(
                    "INSERT INTO subscribers (address, email, name, categories, status, source,"
                    " created, updated) VALUES (?, ?, ?, ?, 'pending', 'web', ?, ?)",
                    (email.lower(), email, name, codes(categories), iso(now), iso(now)),
                )
            else:
                conn.execute(
                    "UPDATE subscribers SET email = ?, name = ?, categories = ?,"
                    " status = 'pending', source = 'web', updated = ? WHERE address = ?",
                    (email, name, codes(categories), iso(now), email.lower()),
                )
            conn.execute(
                "INSERT INTO confirm_tokens (digest, address, expires) VALUES (?, ?, ?)",
                (_hash(token), email.lower(), iso(now + CONFIRM_FOR)),
            )
            conn.execute(
                "INSERT INTO confirm_choices (digest, name, categories) VALUES (?, ?, ?)",
                (_hash(token), name, codes(categories)),
            )
        return self.get(email), token

    def confirm(self, token: str) -> Member | None:
        """Confirm the address a token was made for; None for an unknown or expired token.

        Harmless when used again (a mail scanner, a second click): the address stays
        confirmed. A token does not bring back someone who unsubscribed since.
        """
        now = self.now()
        with self.writing() as conn:
            row = conn.execute(
                "SELECT t.address, t.expires, c.name, c.categories FROM confirm_tokens t"
                " LEFT JOIN confirm_choices c ON c.digest = t.digest WHERE t.digest = ?",
                (_hash(token),),
            ).fetchone()
            if row is None or datetime.fromisoformat(row[1]) < now:
                return None
            # The choices made with this link (a token from before they were kept: the row's).
            conn.execute(
                "UPDATE subscribers SET status = 'confirmed', consented = ?, updated = ?,"
                " name = COALESCE(?, name), categories = COALESCE(?, categories),"
                " left_at = NULL, reason = NULL WHERE address = ? AND status = 'pending'",
                (iso(now), iso(now), row[2], row[3], row[0]),
            )
            address = str(row[0])
        return self.get(address)

    def unsubscribe(self, email: str, *, reason: str = "unsubscribed") -> bool:
        """Stop mailing `email` at once. Idempotent: True whenever the address is known. An
        address already unsubscribed is marked as having left by its own choice: one the
        list had taken off would otherwise be subscribed again if its row came back."""
        if self._leave(email, "unsubscribed", reason, also=("unsubscribed",)):
            return True
        return self.get(email) is not None

    def suppress(self, email: str, reason: str) -> bool:
        """Stop mailing an address whose mailbox refuses mail, with the server's reply."""
        return self._leave(email, "suppressed", reason, also=("unsubscribed",))

    def soft_bounce(self, email: str, reply: str, *, limit: int, reset_days: int) -> bool:
        """Count a temporary failure (4xx, a timeout) for `email`: at most one a day; `limit`
        such days suppress it, and `reset_days` without one start the count afresh. True when
        this one suppressed the address."""
        now = self.now()
        today = now.date().isoformat()
        with self.writing() as conn:
            row = conn.execute(
                "SELECT soft_bounces, soft_last FROM subscribers WHERE address = ?"
                " AND status IN ('confirmed', 'pending')",
                (email.lower(),),
            ).fetchone()
            if row is None or row[1] == today:
                return False
            count, last = int(row[0]), row[1]
            quiet = last is None or (now.date() - datetime.fromisoformat(last).date()).days > (
                reset_days
            )
            count = 1 if quiet else count + 1
            suppressed = count >= limit
            conn.execute(
                "UPDATE subscribers SET soft_bounces = ?, soft_last = ?, updated = ?"
                + (", status = 'suppressed', left_at = ?, reason = ?" if suppressed else "")
                + " WHERE address = ?",
                (count, today, iso(now),
                 *((iso(now), f"{count} days of temporary failures: {reply}"[:500])
                   if suppressed else ()),
                 email.lower()),
            )
        return suppressed

    def unsuppress(self, email: str) -> bool:
        """Put back an address the bounces suppressed (after the operator fixed something)."""
        now = iso(self.now())
        with self.writing() as conn:
            changed = conn.execute(
                "UPDATE subscribers SET status = 'confirmed', left_at = NULL, reason = NULL,"
                " soft_bounces = 0, soft_last = NULL, updated = ?"
                " WHERE address = ? AND status = 'suppressed'",
                (now, email.lower()),
            ).rowcount
        return bool(changed)

    def choose(self, email: str, categories: frozenset[str]) -> Member | None:
        """Set a confirmed or pending subscriber's categories (empty: every category)."""
        now = iso(self.now())
        with self.writing() as conn:
            conn.execute(
                "UPDATE subscribers SET categories = ?, updated = ? WHERE address = ?"
                " AND status IN ('confirmed', 'pending')",
                (codes(categories), now, email.lower()),
            )
        return self.get(email)

    def forget_unconfirmed(self) -> int:
        """Remove addresses never confirmed within a week, and expired tokens."""
        now = self.now()
        with self.writing() as conn:
            gone = conn.execute(
                "DELETE FROM subscribers WHERE status = 'pending' AND consented IS NULL"
                " AND updated < ?",
                (iso(now - FORGET_PENDING_AFTER),),
            ).rowcount
            conn.execute("DELETE FROM confirm_tokens WHERE expires < ?", (iso(now),))
            conn.execute(
                "DELETE FROM confirm_choices"
                " WHERE digest NOT IN (SELECT digest FROM confirm_tokens)"
            )
            conn.execute("DELETE FROM notices WHERE sent < ?", (iso(now - timedelta(days=1)),))
        return int(gone)

    def may_notify(self, email: str, *, per_day: int = NOTICES_PER_DAY) -> bool:
        """Whether one more confirmation or manage email may go to `email` in the last 24 hours
        (at most `per_day`); if so, it is counted now."""
        now = self.now()
        with self.writing() as conn:
            (count,) = conn.execute(
                "SELECT COUNT(*) FROM notices WHERE address = ? AND sent >= ?",
                (email.lower(), iso(now - timedelta(days=1))),
            ).fetchone()
            if count >= per_day:
                return False
            conn.execute(
                "INSERT INTO notices (address, sent) VALUES (?, ?)", (email.lower(), iso(now))
            )
        return True

    def _leave(
        self, email: str, status: Status, reason: str, *, also: tuple[str, ...] = ()
    ) -> bool:
        now = iso(self.now())
        marks = ", ".join("?" * (2 + len(also)))
        with self.writing() as conn:
            changed = conn.execute(
                f"UPDATE subscribers SET status = ?, left_at = ?, reason = ?, updated = ?"
                f" WHERE address = ? AND status IN ({marks})",
                (status, now, reason[:500], now, email.lower(), "pending", "confirmed", *also),
            ).rowcount
        return bool(changed)


def _member(row: tuple[object, ...]) -> Member:
    email, name, codes, status, source, created, consented, left_at, reason = row
    return Member(
        email=str(email),
        name=str(name),
        categories=frozenset(str(codes).split()),
        status=status,  # type: ignore[arg-type]
        source=str(source),
        created=datetime.fromisoformat(str(created)),
        consented=datetime.fromisoformat(str(consented)) if consented else None,
        left_at=datetime.fromisoformat(str(left_at)) if left_at else None,
        reason=str(reason) if reason is not None else None,
    )


def codes(categories: frozenset[str]) -> str:
    return " ".join(sorted(categories))


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
