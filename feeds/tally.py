"""What a send did: its counts, its failures, and the lines cron gets about them.

Filled by the engine (`feeds.deliver`) as outcomes arrive and by `feeds.send` around it; read
by the command line and `feeds run`, which exit non-zero when `ok` is false.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Failure:
    digest_id: str
    recipient: str
    reply: str
    # A refusal of this address's mailbox by the server (a reply to RCPT or DATA about the
    # mailbox, `feeds.transport`), not of the relay's policy, the message or the connection:
    # permanent, it suppresses the address; temporary, it counts as a soft bounce.
    mailbox: bool = False
    # The same message was deferred by a run before this one, which reported it.
    repeated: bool = False


@dataclass
class Tally:
    """What one run did; `failed` and `deferred` make the run's exit status non-zero."""

    queued: int = 0
    sent: int = 0
    skipped: int = 0
    # Recipients who unsubscribed (or bounced) while the send was under way: not mailed.
    cancelled: int = 0
    resent_in_doubt: int = 0
    failed: list[Failure] = field(default_factory=list)
    deferred: list[Failure] = field(default_factory=list)
    # Messages still undelivered when their time ran out (`ledger.GIVE_UP_AFTER`).
    given_up: list[Failure] = field(default_factory=list)
    # Of those, the addresses this run stopped mailing for good (see feeds.send).
    suppressed: list[Failure] = field(default_factory=list)
    # The send stopped at its time limit (seconds), leaving this many messages due.
    out_of_time: float | None = None
    left: int = 0
    # A dry run: `written` lists the .eml files, nothing was sent.
    dry_run: bool = False
    written: list[Path] = field(default_factory=list)
    # Things worth saying that did not stop the run (skipped subscriber rows).
    notes: list[str] = field(default_factory=list)
    # Errors that did not stop the send but fail the run: a subscriber list file that could not
    # be taken in (it changed nobody; the table as it stood was sent to).
    errors: list[str] = field(default_factory=list)

    @property
    def news(self) -> list[Failure]:
        """The failures to report, each once: every permanent one, and every deferral but a
        mailbox's that an earlier run reported already (a mailbox that stays full would
        otherwise fill cron's mail every ten minutes for days), unless this run suppressed it.
        A relay or connection failure is reported every time: the operator has to act."""
        told = [f for f in self.deferred if not (f.mailbox and f.repeated)]
        named = {f.recipient for f in told}
        # A suppression is news once per address, whatever its messages were.
        gone = {f.recipient: f for f in reversed(self.deferred) if f.recipient not in named}
        told += [gone[f.recipient] for f in self.suppressed if f.recipient in gone]
        return [*self.failed, *self.given_up, *told]

    @property
    def ok(self) -> bool:
        return not self.news and not self.errors and self.out_of_time is None

    def summary(self) -> str:
        parts = [f"wrote {len(self.written)}" if self.dry_run else f"sent {self.sent}"]
        if self.failed:
            parts.append(f"{len(self.failed)} failed permanently")
        if self.deferred:
            parts.append(f"{len(self.deferred)} deferred to a later run")
        if self.given_up:
            parts.append(f"{len(self.given_up)} given up (undelivered for days)")
        if self.skipped:
            parts.append(f"{self.skipped} skipped (nothing in their categories)")
        if self.cancelled:
            parts.append(f"{self.cancelled} not sent (left during the send)")
        if self.suppressed:
            parts.append(f"{len(self.suppressed)} addresses suppressed")
        if self.out_of_time is not None:
            parts.append(
                f"stopped at the time limit ({self.out_of_time:g} s) with {self.left} left due"
                " for the next run"
            )
        return ", ".join(parts)

    def failure_lines(self, most: int = 10) -> list[str]:
        """One line per failed or deferred message with the server's reply, at most `most`,
        then a count of the rest."""
        gone = {f.recipient for f in self.suppressed}
        lines = [
            f"{f.recipient}: {f.reply}" + (" (suppressed: no more mail goes there)"
                                           if f.recipient in gone else "")
            for f in self.news
        ]
        if len(lines) > most:
            lines[most:] = [f"and {len(lines) - most} more"]
        return [*self.errors, *lines]
