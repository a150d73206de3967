"""Bounces: a delivery status notification -> a suppressed or soft-bounced subscriber.

Each notification (read by `feeds.dsn`) is matched to the message it is about: by the VERP
token of the address it came back to, else by the Message-ID of the original it quotes. A
match acts on the recipient the ledger sent that message to, never on an address the
notification's text names: a permanent failure (5.x.x) suppresses it, a temporary one (4.x.x,
or a delayed notice) counts one soft bounce. The notification is then moved to the processed
folder; one that matches nothing of ours, or cannot be read, to the unmatched folder. Mail that
is not a notification (a person's reply) stays where it is, unread as it was. Nothing is ever
deleted. Reading the Maildir or IMAP folder and moving messages is `feeds.mailbox`'s part.

The subscriber is changed before the notification is moved, so a run stopped in between reads
it again next time: suppressing is idempotent, and a soft bounce counts at most once a day.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from feeds import dsn, verp
from feeds.addressing import message_id
from feeds.audience import Audience
from feeds.config import Settings
from feeds.errors import ConfigError
from feeds.ledger import Entry, Ledger

LogFn = Callable[[str], None]
Folder = Literal["processed", "unmatched"]

# A notification's report is a few kilobytes, and mail servers return at most the first
# 50-100 kB of the original; a bigger message is not read, only filed as unmatched.
MAX_MESSAGE_BYTES = 1024 * 1024
@dataclass
class BounceReport:
    """What one pass over a mailbox did."""

    hard: int = 0
    soft: int = 0
    # Notifications of ours that report no failure (a "delivered" or "relayed" notice).
    informational: int = 0
    unmatched: int = 0
    # Mail that is no notification at all, left where it is.
    left_alone: int = 0
    # (address, reason) for each address this pass suppressed.
    suppressed: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.hard} permanent and {self.soft} temporary failures, "
            f"{self.informational} other notices, {self.unmatched} unmatched, "
            f"{self.left_alone} other messages left alone; "
            f"{len(self.suppressed)} addresses suppressed"
        )


# -- deciding what a message is and doing it ---------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    folder: Folder
    line: str


class Judge:
    """Reads one message at a time and acts on the subscriber it is about."""

    def __init__(
        self, settings: Settings, ledger: Ledger, audience: Audience, log: LogFn
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.audience = audience
        self.log = log
        self.report = BounceReport()

    @classmethod
    @contextmanager
    def open(
        cls, settings: Settings, log: LogFn, clock: Callable[[], datetime]
    ) -> Iterator[Judge]:
        ledger = Ledger.open(settings.paths.state)
        try:
            with Audience.open(settings.paths.state, clock=clock) as audience:
                yield cls(settings, ledger, audience, log)
        finally:
            ledger.close()

    def judge(
        self, label: str, head: bytes, size: int, rest: Callable[[], bytes]
    ) -> Verdict | None:
        """Where the message goes, and the log line that says why; None: it is not a
        notification, and stays where it is. `head` is its first bytes, `rest()` reads it all
        (called only for a notification no bigger than MAX_MESSAGE_BYTES)."""
        # Anyone can mail the bounce address: a message the email package cannot take apart
        # (its address parser recursed itself to death on a From of 600 parentheses) is filed
        # aside like any unreadable one, never a traceback that stops every run at it.
        try:
            notification_like = dsn.is_notification(dsn.read_header(head))
        except Exception as error:  # whatever the parser raises
            return self._unmatched(label, f"unreadable header: {error!r}"[:300])
        if not notification_like:
            self.report.left_alone += 1
            return None
        if size > MAX_MESSAGE_BYTES:
            return self._unmatched(
                label, f"too big to be read as a notification ({size} bytes; the limit is "
                f"{MAX_MESSAGE_BYTES})"
            )
        try:
            notification = dsn.read(rest())
        except dsn.Unreadable as error:
            return self._unmatched(label, f"unreadable: {error}")
        except Exception as error:  # as above
            return self._unmatched(label, f"unreadable: {error!r}"[:300])
        found = self._match(notification)
        if isinstance(found, str):
            return self._unmatched(label, f"{notification.shape}: {found}")
        entry, how = found
        return self._act(label, notification, entry, how)

    def _match(self, notification: dsn.Notification) -> tuple[Entry, str] | str:
        """The ledger row a notification is about and how it was found, or why none is."""
        secret = self.settings.unsubscribe_secret
        for address in notification.delivered_to:
            if not _carries_token(address):
                continue
            if not secret:
                return f"VERP token in {address} cannot be checked without FEEDS_UNSUBSCRIBE_SECRET"
            found = verp.read_token(address, secret)
            if found is None:
                # Not made by us, or altered on the way: trusting its quoted Message-ID
                # instead would let whoever forged it suppress somebody.
                return f"forged or damaged VERP token in {address}"
            entry = self._row(found)
            if entry is None:
                return f"VERP token of {address} names a message the ledger does not hold"
            return entry, "VERP token"
        quoted = [(mid, verp.message_hash(mid)) for mid in notification.quoted_ids]
        ours = [(mid, found) for mid, found in quoted if found is not None]
        for mid, found in ours:
            entry = self._row(found)
            if entry is not None:
                return entry, f"quoted Message-ID {mid}"
        if ours:
            return f"quotes Message-ID {ours[0][0]}, which the ledger does not hold"
        named = ", ".join(dict.fromkeys(f.recipient for f in notification.failures if f.recipient))
        return (
            f"no VERP token and no quoted Message-ID of ours (it names {named or 'nobody'})"
        )

    def _row(self, found: str) -> Entry | None:
        """The ledger row of the message whose Message-ID carries the hash `found`. The ledger
        finds it by 64 of the hash's 96 bits and keeps no Message-ID once a message is sent:
        the Message-ID made again must carry the whole hash."""
        entry = self.ledger.by_message_hash(found)
        if entry is None or verp.message_hash(message_id(entry, self.settings)) != found:
            return None
        return entry

    def _act(
        self, label: str, notification: dsn.Notification, entry: Entry, how: str
    ) -> Verdict:
        recipient = entry.recipient
        member = self.audience.get(recipient)
        if member is None:
            return self._unmatched(
                label, f"about {recipient} (by {how}), who is not a subscriber"
            )
        failure = notification.worst
        about = f"{recipient}, {entry.digest_id} (by {how})"
        if failure.recipient and failure.recipient != recipient.lower():
            about += f", reported as {failure.recipient}"
        bounces = self.settings.bounces
        if failure.kind == "hard":
            self.report.hard += 1
            reason = f"bounce {failure.describe()}"
            if self.audience.suppress(recipient, reason):
                self.report.suppressed.append((recipient, reason))
                return self._processed(label, f"permanent failure: {about}: suppressed ({reason})")
            return self._processed(
                label, f"permanent failure: {about}: already {member.status}"
            )
        if failure.kind == "soft":
            self.report.soft += 1
            reply = failure.describe()
            if member.status not in ("confirmed", "pending"):
                return self._processed(
                    label, f"temporary failure: {about}: already {member.status}"
                )
            if self.audience.soft_bounce(
                recipient, reply, limit=bounces.soft_limit, reset_days=bounces.soft_reset_days
            ):
                reason = f"{bounces.soft_limit} days of temporary failures: {reply}"
                self.report.suppressed.append((recipient, reason))
                return self._processed(label, f"temporary failure: {about}: suppressed ({reply})")
            return self._processed(
                label, f"temporary failure: {about}: counted, at most once a day ({reply})"
            )
        self.report.informational += 1
        return self._processed(label, f"{failure.action} notice: {about}: nothing to do")

    def _processed(self, label: str, why: str) -> Verdict:
        return Verdict("processed", f"{label}: {why}")

    def _unmatched(self, label: str, why: str) -> Verdict:
        self.report.unmatched += 1
        return Verdict("unmatched", f"{label}: {why}")


def _carries_token(address: str) -> bool:
    """Whether an address looks like a VERP address (`local+HASH.MAC@domain`)."""
    local = address.rpartition("@")[0]
    return "+" in local and "." in local.partition("+")[2]


def need_secret(settings: Settings) -> None:
    """Without the signing secret no bounce can be told from a forged one (VERP tokens and
    Message-ID hashes are keyed with it): read none rather than let a forgery suppress."""
    if not settings.unsubscribe_secret:
        raise ConfigError(
            "reading bounces needs FEEDS_UNSUBSCRIBE_SECRET: without it a forged bounce could "
            "suppress any subscriber",
            hint="export FEEDS_UNSUBSCRIBE_SECRET, the secret the messages were sent with",
        )
