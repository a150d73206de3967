"""`feeds send`: which newsletter goes to whom (the ledger's rules), then out through the engine.

A send needs every published digest's id and date (to queue what is new) but the full text of
only the digests it sends today: `Issues` carries the first and loads the second on demand, so
a send after ten years of digests decodes one or two of them.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from email.utils import make_msgid, parseaddr
from pathlib import Path

from feeds import lock
from feeds.addressing import check_sending, envelope_for, envelope_sender, message_id
from feeds.audience import Audience
from feeds.config import Settings
from feeds.deliver import LogFn, ProgressFn, deliver, silent
from feeds.errors import ConfigError, DeliveryError, FeedsError, StateError, display_path
from feeds.ledger import DigestRef, Ledger, due_mark, nothing_due
from feeds.model import Digest
from feeds.output import belongs_to, claim, write_private
from feeds.personalize import Job, Messages
from feeds.recipients import Confirmed, InMemory, Recipients
from feeds.roster import sync_list
from feeds.subscribers import Subscriber, SubscriberList, clean_name, normalize_email
from feeds.tally import Failure, Tally
from feeds.transport import Transport


@dataclass(frozen=True)
class Issues:
    """The digests a send may mail: each one's id and date, newest first, and a way to load
    some of them in full by id."""

    refs: tuple[DigestRef, ...]
    load: Callable[[Collection[str]], Mapping[str, Digest]]

    @classmethod
    def of(cls, digests: Sequence[Digest]) -> Issues:
        """Digests already in memory (newest first)."""
        by_id = {d.id: d for d in digests}
        return cls(
            tuple(DigestRef(d.id, d.date) for d in digests),
            lambda ids: {i: by_id[i] for i in ids if i in by_id},
        )

    @classmethod
    def published(cls, state_path: Path) -> Issues:
        """What the last complete build published, from the state database."""
        from feeds import state, store

        if not state_path.exists():
            return cls((), lambda ids: {})
        conn = state.connect(state_path)
        try:
            found = store.published(conn)
        finally:
            conn.close()
        # By instant as a number, as `assemble` sorts (aware datetimes compare slowly).
        found.sort(key=lambda row: (row.date.timestamp(), row.id), reverse=True)

        def load(ids: Collection[str]) -> Mapping[str, Digest]:
            conn = state.connect(state_path)
            try:
                return store.load_published(conn, ids)
            finally:
                conn.close()

        return cls(tuple(DigestRef(p.id, p.date, p.replaces) for p in found), load)


def send(
    settings: Settings,
    issues: Issues,
    subscribers: SubscriberList | Recipients,
    ledger: Ledger,
    *,
    now: datetime,
    digest_id: str | None = None,
    outbox: Path | None = None,
    retry_delay: float = 1.0,
    progress: ProgressFn | None = None,
    log: LogFn = silent,
    audience: Audience | None = None,
) -> Tally:
    """Queue and send what is due: every digest not yet sent to each subscriber by the rules in
    feeds.ledger, or only `digest_id`. With `outbox`, write the messages there as .eml files
    instead, connect to nothing and change nothing in the ledger. With `audience`, addresses
    the server refuses are suppressed there."""
    check_sending(settings)
    if digest_id is not None and digest_id not in {ref.id for ref in issues.refs}:
        raise DeliveryError(
            f"no digest {digest_id!r}",
            hint="known: " + (", ".join(ref.id for ref in issues.refs[:5]) or "none"),
        )
    if digest_id is not None and ledger.compacted(digest_id) is not None:
        raise DeliveryError(
            f"digest {digest_id!r} is older than [newsletter] ledger_retention_days: its record "
            "was compacted, and a compacted digest is never sent again",
            hint="send a test copy with --to ADDRESS",
        )
    listed = InMemory.of(subscribers) if isinstance(subscribers, SubscriberList) else subscribers
    tally = Tally(dry_run=outbox is not None)
    if outbox is not None:
        # Listed, then rolled back before any file is written: the preview's transaction must
        # not keep a real send or a build waiting for the database.
        with ledger.preview():
            digests = _plan(
                ledger, issues, listed, digest_id, tally, log, sends=settings.smtp.max_attempts
            )
            jobs = list(_jobs(ledger, digests, listed, settings, digest_id, record=False))
        # Rolled back with the preview: the real run gives these up, and reports them.
        tally.notes += [f"{f.recipient}: would be given up: {f.reply}" for f in tally.given_up]
        tally.given_up = []
        write_outbox(jobs, Messages(settings, digests, now=now).build, outbox, tally)
        return tally
    digests = _plan(
        ledger, issues, listed, digest_id, tally, log, sends=settings.smtp.max_attempts
    )
    stopped: DeliveryError | None = None
    try:
        deliver(
            _jobs(ledger, digests, listed, settings, digest_id, record=True),
            Messages(settings, digests, now=now).build,
            ledger,
            settings.smtp,
            sender=lambda job: envelope_for(settings, job.message_id),
            total=tally.queued,
            retry_delay=retry_delay,
            progress=progress,
            log=log,
            tally=tally,
        )
    except DeliveryError as exc:
        stopped = exc
    finally:
        if audience is not None:
            _bounced(settings, audience, tally, log)
    if stopped is not None:
        # Said with the error: the failures, suppressions and give-ups of the run so far.
        stopped.failures = tuple(tally.failure_lines())
        raise stopped
    return tally


def _bounced(settings: Settings, audience: Audience, tally: Tally, log: LogFn) -> None:
    """Stop mailing addresses whose mailbox the server refused (`Failure.mailbox`): at once
    for a permanent refusal, after `[bounces] soft_limit` days of temporary ones. Each
    suppression is reported once, in the run that makes it."""
    bounces = settings.bounces
    for failure in tally.failed:
        if failure.mailbox and audience.suppress(failure.recipient, failure.reply):
            tally.suppressed.append(failure)
    for failure in tally.deferred:
        # A relay that is down or a connection that drops says nothing about the address.
        if failure.mailbox and audience.soft_bounce(
            failure.recipient, failure.reply, limit=bounces.soft_limit,
            reset_days=bounces.soft_reset_days,
        ):
            tally.suppressed.append(failure)
    for failure in tally.suppressed:
        log(f"suppressed {failure.recipient}: {failure.reply}")


def _check_record(settings: Settings, audience: Audience, *, fresh_start: bool, log: LogFn) -> None:
    """Refuse to send when the record of what was sent is lost: a ledger that has never sent
    anything in a state database other than the one the output was published from (deleted,
    emptied, or moved without it), whoever created the database (a build, a send, the web
    endpoint). The output says which one (`feeds.output.belongs_to`)."""
    from feeds import state

    paths = settings.paths
    ledger = Ledger.open(paths.state)
    try:
        if ledger.known_digests():
            return
        conn = state.connect(paths.state)
        try:
            created = state.get_meta(conn, state.CREATED)
        finally:
            conn.close()
        if created is None or belongs_to(paths.output, created):
            return
        if not fresh_start:
            raise StateError(
                f"the state database did not publish the newsletters in "
                f"{display_path(paths.output)}: the record of what was sent is lost, and "
                "sending now could mail the archive again",
                path=str(paths.state),
                hint="restore the state database from a backup, or run with --fresh-start to "
                "take every published issue as sent",
            )
        refs = Issues.published(paths.state).refs
        if not refs:
            # Nothing to take as sent yet: naming this database the publisher now would let
            # the next run mail the newest issue to everyone as new.
            raise StateError(
                "--fresh-start takes what this state database published as sent, and it has "
                "published nothing yet",
                path=str(paths.state),
                hint="run `feeds build` first (or `feeds run --fresh-start`, which builds)",
            )
        ledger.adopt(refs, Confirmed(audience.conn).keys())
        claim(paths.output, created)
        log(f"fresh start: {len(refs)} published issues taken as sent")
    finally:
        ledger.close()


def _plan(
    ledger: Ledger,
    issues: Issues,
    listed: Recipients,
    digest_id: str | None,
    tally: Tally,
    log: LogFn,
    *,
    sends: int,
) -> dict[str, Digest]:
    """Queue what the rules say and settle the rest; the digests due, loaded in full. `sends`:
    how many times a message left in doubt is sent before it is given up."""
    ledger.queue(issues.refs, listed.keys(), only=digest_id)
    tally.given_up = [
        Failure(e.digest_id, e.recipient, e.last_reply or "")
        for e in ledger.settle(listed.keys(), sends=sends)
    ]
    tally.queued, tally.resent_in_doubt = ledger.count_due(digest_id)
    if tally.resent_in_doubt:
        log(
            f"{tally.resent_in_doubt} message(s) were in flight when a previous run stopped;"
            " sending them again with their original Message-ID"
        )
    return dict(issues.load(ledger.due_digests(digest_id)))


def _jobs(
    ledger: Ledger,
    digests: dict[str, Digest],
    listed: Recipients,
    settings: Settings,
    digest_id: str | None,
    *,
    record: bool,
) -> Iterator[Job]:
    for entry in ledger.iter_due(digest_id):
        subscriber = listed.get(entry.recipient)
        if entry.digest_id not in digests:
            if record:
                ledger.finish(entry.digest_id, entry.recipient, "cancelled", "digest removed")
            continue
        if subscriber is not None:
            yield Job(
                entry.digest_id, subscriber, message_id(entry, settings),
                retried=entry.status == "failed_temporary",
            )


def send_due(
    settings: Settings,
    *,
    now: datetime,
    digest_id: str | None = None,
    outbox: Path | None = None,
    retry_delay: float = 1.0,
    progress: ProgressFn | None = None,
    log: LogFn = silent,
    fresh_start: bool = False,
) -> Tally:
    """`feeds send`: take the send lock (not for a dry run), take in the subscriber list file if
    it changed, and send what is due to the confirmed subscribers.

    A state database found new beside earlier output (deleted, emptied) has lost the record of
    what was sent: sending is refused, unless `fresh_start` accepts it, which takes every
    published digest as sent to every subscriber and mails nothing of the archive.

    When nothing was left due by the last run and neither the build nor the audience changed
    since, it returns at once without loading anything (`ledger.nothing_due`)."""
    check_sending(settings)
    paths = settings.paths
    sending = lock.held(
        lock.send_lock(paths.state),
        busy="another `feeds send` or `feeds run` is sending",
        hint="it will send what is due; try again when it has finished",
    )
    with nullcontext() if outbox is not None else sending, Audience.open(paths.state) as audience:
        # A dry run too: it shows what the next run would send, to the list as it now is.
        notes: list[str] = []
        errors: list[str] = []
        try:
            taken = sync_list(audience, paths.subscribers)
            notes = taken.notes(paths.subscribers) if taken else []
        except ConfigError as exc:
            # The list changed nobody: the subscribers as they stand still get what is due.
            errors.append(str(exc))
        if outbox is None:
            _check_record(settings, audience, fresh_start=fresh_start, log=log)
        mark = due_mark(paths.state, audience.signature())
        if outbox is None and digest_id is None and nothing_due(paths.state, mark):
            log("nothing new to send")
            return Tally(notes=notes, errors=errors)
        # Read as the send goes: memory does not grow with the list.
        people = Confirmed(audience.conn)
        ledger = Ledger.open(paths.state)
        try:
            tally = send(
                settings, Issues.published(paths.state), people, ledger, now=now,
                digest_id=digest_id, outbox=outbox, retry_delay=retry_delay,
                progress=progress, log=log, audience=audience,
            )
            if outbox is None and mark is not None and tally.ok and ledger.count_due() == (0, 0):
                ledger.set_meta("sent_for", mark)
            if outbox is None:
                from feeds.retention import tidy

                # Housekeeping fails alone: what the send did is still reported, once.
                try:
                    tidy(settings, ledger, log)
                except sqlite3.Error as exc:
                    from feeds.state import explain

                    errors.append(str(explain(exc, paths.state)))
                except FeedsError as exc:
                    errors.append(str(exc))
        finally:
            ledger.close()
    tally.notes[:0] = notes
    tally.errors[:0] = errors
    return tally


def send_test(
    settings: Settings,
    issues: Issues,
    address: str,
    *,
    now: datetime,
    digest_id: str | None = None,
    outbox: Path | None = None,
) -> str:
    """Send one digest (default: the newest) to `address`, outside the ledger, and return the
    server's reply (or the file written, with `outbox`)."""
    check_sending(settings)
    email = normalize_email(address.strip())
    if not isinstance(email, str):
        raise ConfigError(f"invalid address {address!r}: {email.reason}")
    if not issues.refs:
        raise DeliveryError("there is no digest to send", hint="run `feeds build` first")
    chosen = digest_id or issues.refs[0].id
    digests = dict(issues.load([chosen]))
    if chosen not in digests:
        raise DeliveryError(f"no digest {chosen!r}")
    subscriber = Subscriber(email=email, name=clean_name(""), categories=frozenset(), line=0)
    domain = parseaddr(settings.newsletter.sender)[1].rpartition("@")[2] or None
    job = Job(chosen, subscriber, make_msgid(domain=domain))
    data = Messages(settings, digests, now=now).build(job)
    if data is None:
        raise DeliveryError(f"digest {chosen} has no papers to send")
    if outbox is not None:
        tally = Tally(dry_run=True)
        write_outbox([job], lambda _: data, outbox, tally, fresh=False)
        return str(tally.written[0])
    return send_one(settings, email, data)


def send_one(settings: Settings, recipient: str, data: bytes) -> str:
    """One message outside the ledger (a test copy, a confirmation email): the server's reply.

    Raises DeliveryError when the server refuses it or cannot be reached."""
    transport = Transport(settings.smtp)
    try:
        while True:
            result = transport.send(envelope_sender(settings), recipient, data, _nothing)
            if result.outcome != "unreachable":
                break
    finally:
        transport.close()
    if result.outcome != "sent":
        raise DeliveryError(f"{recipient}: {result.reply}")
    return result.reply


def _nothing() -> bool:
    return True


def write_outbox(
    jobs: Iterable[Job],
    build: Callable[[Job], bytes | None],
    outbox: Path,
    tally: Tally,
    *,
    fresh: bool = True,
) -> None:
    """The dry run: each message as `<outbox>/<digest id>/<address>.eml`. A digest's folder
    holds one dry run: with `fresh`, the files of an earlier one are removed first (not for a
    single test copy)."""
    import shutil

    cleared: set[str] = set()
    for job in jobs:
        if fresh and job.digest_id not in cleared:
            cleared.add(job.digest_id)
            if (outbox / job.digest_id).parent == outbox:
                shutil.rmtree(outbox / job.digest_id, ignore_errors=True)
        data = build(job)
        if data is None:
            tally.skipped += 1
            continue
        path = outbox / job.digest_id / (re.sub(r"[^A-Za-z0-9@._+-]", "_", job.recipient) + ".eml")
        write_private(path, data)
        tally.written.append(path)
