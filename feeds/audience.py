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
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from feeds import state
from feeds.errors import ConfigError
from feeds.subscribers import Subscriber, SubscriberList, load_subscribers

Status = Literal["pending", "confirmed", "unsubscribed", "suppressed"]
STATUSES: tuple[Status, ...] = ("pending", "confirmed", "unsubscribed", "suppressed")
# A confirmation link works this long; an address never confirmed is forgotten after a week.
CONFIRM_FOR = timedelta(hours=72)
FORGET_PENDING_AFTER = timedelta(days=7)
# Confirmation and manage emails to one address per day: nobody can flood a stranger's
# mailbox by submitting the form over and over.
NOTICES_PER_DAY = 3
# A subscriber list file changed this recently may still be being written: it waits a run.
SETTLE_SECONDS = 2.0

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
-- Confirmation and manage emails sent, for the daily limit per address.
CREATE TABLE IF NOT EXISTS notices (
    address TEXT NOT NULL,
    sent TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS notices_by_address ON notices (address, sent);
"""

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


@dataclass
class ImportReport:
    added: int = 0
    updated: int = 0
    removed: int = 0
    # "line: why the row changed nobody": rows for people who left, for instance.
    kept: list[str] = field(default_factory=list)

    # "line: message" for each row that could not be read.
    problems: list[str] = field(default_factory=list)

    def notes(self, source: Path) -> list[str]:
        """What is worth a line in cron's mail."""
        return [f"{source}:{problem}" for problem in self.problems] + [
            f"{source}:{kept} (left before: the row changes nobody)" for kept in self.kept
        ]



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

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
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
        now = _iso(self.now())
        with self._writing() as conn:
            conn.execute(
                "INSERT INTO subscribers (address, email, name, categories, status, source,"
                " created, consented, updated) VALUES (?, ?, ?, ?, 'confirmed', ?, ?, ?, ?)"
                " ON CONFLICT (address) DO UPDATE SET email = excluded.email,"
                " name = excluded.name, categories = excluded.categories, status = 'confirmed',"
                " consented = excluded.consented, left_at = NULL, reason = NULL,"
                " updated = excluded.updated",
                (email.lower(), email, name, _codes(categories), source, now, now, now),
            )
        found = self.get(email)
        assert found is not None
        return found

    def remove(self, email: str, *, reason: str = "removed by the operator") -> bool:
        """Unsubscribe `email` (kept on record, so that no stale list subscribes it again)."""
        return self._leave(email, "unsubscribed", reason)

    def import_list(self, people: SubscriberList, *, prune: bool = False) -> ImportReport:
        """Take a subscriber list (CSV) into the table, in one transaction.

        New addresses are confirmed (the operator vouches for them); rows of list subscribers
        update their name and categories; someone who unsubscribed or was suppressed stays so,
        and someone who subscribed on the web keeps their own choices. With `prune`, list
        subscribers whose row is gone are unsubscribed, but only from a list whose every row
        is valid: a row with a typo must not unsubscribe anybody. A list with no valid row at
        all changes nobody and raises ConfigError.
        """
        if not people.subscribers:
            raise ConfigError(
                "the subscriber list has no valid subscriber; nobody was changed",
                path=people.source,
                hint="fix the list, or delete it if you manage subscribers with "
                "`feeds subscribers`",
            )
        report = ImportReport(problems=[
            f"{p.line}: {p.message}" + (" (row skipped)" if p.severity == "error" else "")
            for p in people.problems
        ])
        now = _iso(self.now())
        listed = {p.key for p in people.subscribers}
        with self._writing() as conn:
            for person in people.subscribers:
                row = conn.execute(
                    f"SELECT {_COLUMNS} FROM subscribers WHERE address = ?", (person.key,)
                ).fetchone()
                found = None if row is None else _member(row)
                if found is None:
                    conn.execute(
                        "INSERT INTO subscribers (address, email, name, categories, status,"
                        " source, created, consented, updated)"
                        " VALUES (?, ?, ?, ?, 'confirmed', 'csv', ?, ?, ?)",
                        (person.key, person.email, person.name, _codes(person.categories),
                         now, now, now),
                    )
                    report.added += 1
                elif _list_removed(found, people.source):
                    # The list took them off itself: the list may put them back.
                    conn.execute(
                        "UPDATE subscribers SET name = ?, categories = ?, status = 'confirmed',"
                        " left_at = NULL, reason = NULL, updated = ? WHERE address = ?",
                        (person.name, _codes(person.categories), now, person.key),
                    )
                    report.updated += 1
                elif found.status in ("unsubscribed", "suppressed") or found.left_at:
                    # Someone who left, even if a stranger has since typed the address into the
                    # web form (pending again), is subscribed only by their own confirmation.
                    report.kept.append(f"{person.line}: {person.email} is {found.status}")
                elif found.source == "csv" or found.status == "pending":
                    changed = (
                        found.status != "confirmed" or found.name != person.name
                        or found.categories != person.categories
                    )
                    if changed:
                        conn.execute(
                            "UPDATE subscribers SET name = ?, categories = ?, status = 'confirmed',"
                            " consented = COALESCE(consented, ?), updated = ? WHERE address = ?",
                            (person.name, _codes(person.categories), now, now, person.key),
                        )
                        report.updated += 1
            if prune and not people.errors:
                gone = [
                    address for (address,) in conn.execute(
                        "SELECT address FROM subscribers WHERE source = 'csv'"
                        " AND status IN ('confirmed', 'pending')"
                    )
                    if address not in listed
                ]
                conn.executemany(
                    "UPDATE subscribers SET status = 'unsubscribed', left_at = ?, reason = ?,"
                    " updated = ? WHERE address = ?",
                    [(now, f"removed from {Path(people.source).name}", now, a) for a in gone],
                )
                report.removed = len(gone)
        return report

    def sync_list(self, path: Path) -> ImportReport | None:
        """Take in the subscriber list file (CSV) when it changed since it was last taken in;
        None when it is absent or unchanged. Rows gone from the file unsubscribe their list
        subscribers (see `import_list`). Raises ConfigError for an unreadable file or one with
        no valid row, changing nobody."""
        try:
            info = path.stat()
        except FileNotFoundError:
            return None
        mark = f"{path.resolve()} {info.st_size} {info.st_mtime_ns} {info.st_ino}"
        if state.get_meta(self._conn, "subscriber_list") == mark:
            return None
        people = load_subscribers(path)
        # A list changed a moment ago may still be being written, and a half-written one would
        # unsubscribe the rows it does not show yet: it adds and updates now, and removes
        # nobody until a later run finds it settled.
        after = path.stat()
        same = (after.st_size, after.st_mtime_ns, after.st_ino) == (
            info.st_size, info.st_mtime_ns, info.st_ino
        )
        settled = same and time.time() - info.st_mtime >= SETTLE_SECONDS
        report = self.import_list(people, prune=settled)
        if settled:
            state.set_meta(self._conn, "subscriber_list", mark)
        return report

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
        with self._writing() as conn:
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
                    (email.lower(), email, name, _codes(categories), _iso(now), _iso(now)),
                )
            else:
                conn.execute(
                    "UPDATE subscribers SET email = ?, name = ?, categories = ?,"
                    " status = 'pending', source = 'web', updated = ? WHERE address = ?",
                    (email, name, _codes(categories), _iso(now), email.lower()),
                )
            conn.execute(
                "INSERT INTO confirm_tokens (digest, address, expires) VALUES (?, ?, ?)",
                (_hash(token), email.lower(), _iso(now + CONFIRM_FOR)),
            )
        return self.get(email), token

    def confirm(self, token: str) -> Member | None:
        """Confirm the address a token was made for; None for an unknown or expired token.

        Harmless when used again (a mail scanner, a second click): the address stays
        confirmed. A token does not bring back someone who unsubscribed since.
        """
        now = self.now()
        with self._writing() as conn:
            row = conn.execute(
                "SELECT address, expires FROM confirm_tokens WHERE digest = ?", (_hash(token),)
            ).fetchone()
            if row is None or datetime.fromisoformat(row[1]) < now:
                return None
            conn.execute(
                "UPDATE subscribers SET status = 'confirmed', consented = ?, updated = ?,"
                " left_at = NULL, reason = NULL WHERE address = ? AND status = 'pending'",
                (_iso(now), _iso(now), row[0]),
            )
            address = str(row[0])
        return self.get(address)

    def unsubscribe(self, email: str, *, reason: str = "unsubscribed") -> bool:
        """Stop mailing `email` at once. Idempotent: True whenever the address is known."""
        if self._leave(email, "unsubscribed", reason):
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
        with self._writing() as conn:
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
                (count, today, _iso(now),
                 *((_iso(now), f"{count} days of temporary failures: {reply}"[:500])
                   if suppressed else ()),
                 email.lower()),
            )
        return suppressed

    def unsuppress(self, email: str) -> bool:
        """Put back an address the bounces suppressed (after the operator fixed something)."""
        now = _iso(self.now())
        with self._writing() as conn:
            changed = conn.execute(
                "UPDATE subscribers SET status = 'confirmed', left_at = NULL, reason = NULL,"
                " soft_bounces = 0, soft_last = NULL, updated = ?"
                " WHERE address = ? AND status = 'suppressed'",
                (now, email.lower()),
            ).rowcount
        return bool(changed)

    def choose(self, email: str, categories: frozenset[str]) -> Member | None:
        """Set a confirmed or pending subscriber's categories (empty: every category)."""
        now = _iso(self.now())
        with self._writing() as conn:
            conn.execute(
                "UPDATE subscribers SET categories = ?, updated = ? WHERE address = ?"
                " AND status IN ('confirmed', 'pending')",
                (_codes(categories), now, email.lower()),
            )
        return self.get(email)

    def forget_unconfirmed(self) -> int:
        """Remove addresses never confirmed within a week, and expired tokens."""
        now = self.now()
        with self._writing() as conn:
            gone = conn.execute(
                "DELETE FROM subscribers WHERE status = 'pending' AND consented IS NULL"
                " AND updated < ?",
                (_iso(now - FORGET_PENDING_AFTER),),
            ).rowcount
            conn.execute("DELETE FROM confirm_tokens WHERE expires < ?", (_iso(now),))
            conn.execute("DELETE FROM notices WHERE sent < ?", (_iso(now - timedelta(days=1)),))
        return int(gone)

    def may_notify(self, email: str) -> bool:
        """Whether one more confirmation or manage email may go to `email` today; if so, it is
        counted now."""
        now = self.now()
        with self._writing() as conn:
            (count,) = conn.execute(
                "SELECT COUNT(*) FROM notices WHERE address = ? AND sent >= ?",
                (email.lower(), _iso(now - timedelta(days=1))),
            ).fetchone()
            if count >= NOTICES_PER_DAY:
                return False
            conn.execute(
                "INSERT INTO notices (address, sent) VALUES (?, ?)", (email.lower(), _iso(now))
            )
        return True

    def _leave(
        self, email: str, status: Status, reason: str, *, also: tuple[str, ...] = ()
    ) -> bool:
        now = _iso(self.now())
        marks = ", ".join("?" * (2 + len(also)))
        with self._writing() as conn:
            changed = conn.execute(
                f"UPDATE subscribers SET status = ?, left_at = ?, reason = ?, updated = ?"
                f" WHERE address = ? AND status IN ({marks})",
                (status, now, reason[:500], now, email.lower(), "pending", "confirmed", *also),
            ).rowcount
        return bool(changed)


def create_tables(conn: sqlite3.Connection) -> None:
    """The audience's tables in the state database, if they are not there yet (the ledger
    reads them too)."""
    conn.executescript(_SCHEMA)


def _list_removed(member: Member, source: str) -> bool:
    return member.status == "unsubscribed" and member.reason == f"removed from {Path(source).name}"


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


def _codes(categories: frozenset[str]) -> str:
    return " ".join(sorted(categories))


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
