"""Sending the newsletters: who gets what (the ledger), one message per recipient built from one
rendering per category set, and an SMTP engine that survives faults.

The engine runs `[smtp] connections` threads, each with its own SMTP connection reused for many
messages, pulling from one schedule. A reply decides a message's fate: 250 after DATA is `sent`,
4xx (and 421, a dropped connection, a timeout) is temporary and retried with exponential backoff
within the run and again by later runs, 5xx is permanent and recorded, never retried. Ledger
writes are serialized; `sending` is committed before DATA so that a crash leaves at most one
message per connection in doubt, and that one is sent again with the same Message-ID (mail
systems that deduplicate by Message-ID then drop the copy).
"""

from __future__ import annotations

import fcntl
import hashlib
import heapq
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import make_msgid, parseaddr
from pathlib import Path

from feeds.config import Settings, SmtpSettings
from feeds.errors import ConfigError, DeliveryError, LockedError
from feeds.ledger import DigestRef, Entry, Ledger
from feeds.model import BuildContext, Digest
from feeds.personalize import Job, Messages
from feeds.subscribers import (
    Subscriber,
    SubscriberList,
    clean_name,
    load_subscribers,
    normalize_email,
)
from feeds.transport import Transport, backoff
from feeds.unsubscribe import check_template

ProgressFn = Callable[[int, int], None]
LogFn = Callable[[str], None]


def _silent(_: str) -> None:
    return None


# -- results of a run ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    digest_id: str
    recipient: str
    reply: str


@dataclass
class Tally:
    """What one run did; `failed` and `deferred` make the run's exit status non-zero."""

    queued: int = 0
    sent: int = 0
    skipped: int = 0
    resent_in_doubt: int = 0
    failed: list[Failure] = field(default_factory=list)
    deferred: list[Failure] = field(default_factory=list)
    # A dry run: `written` lists the .eml files, nothing was sent.
    dry_run: bool = False
    written: list[Path] = field(default_factory=list)
    # Things worth saying that did not stop the run (skipped subscriber rows).
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.deferred

    def summary(self) -> str:
        parts = [f"wrote {len(self.written)}" if self.dry_run else f"sent {self.sent}"]
        if self.failed:
            parts.append(f"{len(self.failed)} failed permanently")
        if self.deferred:
            parts.append(f"{len(self.deferred)} deferred to a later run")
        if self.skipped:
            parts.append(f"{self.skipped} skipped (nothing in their categories)")
        return ", ".join(parts)


# -- the engine ---------------------------------------------------------------------------------


class _Schedule:
    """Jobs in order, read lazily from `source` (memory does not grow with the list), each
    retried no sooner than its backoff allows; done when the source is empty and all are idle."""

    def __init__(self, source: Iterable[Job]) -> None:
        self._source: Iterator[Job] | None = iter(source)
        self._heap: list[tuple[float, int, Job, int]] = []
        self._seq = 0
        self._busy = 0
        self._stopped = False
        self._cond = threading.Condition()
        self.error: BaseException | None = None

    def take(self) -> tuple[Job, int] | None:
        with self._cond:
            while not self._stopped:
                wait = self._heap[0][0] - time.monotonic() if self._heap else None
                if wait is not None and wait <= 0:
                    _, _, job, tries = heapq.heappop(self._heap)
                    self._busy += 1
                    return job, tries
                if self._source is not None:
                    try:
                        job = next(self._source)
                    except StopIteration:
                        self._source = None
                        continue
                    except BaseException as exc:
                        self.error = exc
                        self._stopped = True
                        break
                    self._busy += 1
                    return job, 0
                if wait is not None:
                    self._cond.wait(wait)
                elif self._busy:
                    self._cond.wait()
                else:
                    return None
            return None

    def done(self, job: Job, tries: int, retry_in: float | None) -> None:
        with self._cond:
            self._busy -= 1
            if retry_in is not None and not self._stopped:
                heapq.heappush(self._heap, (time.monotonic() + retry_in, self._seq, job, tries))
                self._seq += 1
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()


class _Pace:
    """`[smtp] messages_per_second` across all connections."""

    def __init__(self, per_second: float) -> None:
        self._interval = 1.0 / per_second if per_second > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self._interval:
            return
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self._interval
        if slot > now:
            time.sleep(slot - now)


class _Engine:
    def __init__(
        self,
        jobs: Iterable[Job],
        build: Callable[[Job], bytes | None],
        ledger: Ledger,
        smtp: SmtpSettings,
        *,
        sender: str,
        retry_delay: float,
        tally: Tally,
        log: LogFn,
    ) -> None:
        self.schedule = _Schedule(jobs)
        self.build = build
        self.ledger = ledger
        self.smtp = smtp
        self.sender = sender
        self.retry_delay = retry_delay
        self.tally = tally
        self.log = log
        self.pace = _Pace(smtp.messages_per_second)
        self.finished = 0
        self.fatal: BaseException | None = None
        self._lock = threading.Lock()

    def work(self) -> None:
        transport = Transport(self.smtp, retry_delay=self.retry_delay)
        try:
            while (taken := self.schedule.take()) is not None:
                job, tries = taken
                retry_in: float | None = None
                try:
                    retry_in, tries = self._one(transport, job, tries)
                except BaseException as exc:
                    with self._lock:
                        self.fatal = self.fatal or exc
                    self.schedule.stop()
                finally:
                    self.schedule.done(job, tries, retry_in)
        finally:
            transport.close()

    def _one(self, transport: Transport, job: Job, tries: int) -> tuple[float | None, int]:
        data = self.build(job)
        if data is None:
            self.ledger.finish(
                job.digest_id, job.recipient, "skipped", "no paper in the subscribed categories"
            )
            self._final(skipped=True)
            return None, tries
        self.pace.wait()
        result = transport.send(
            self.sender,
            job.subscriber.email,
            data,
            lambda: self.ledger.mark_sending(job.digest_id, job.recipient, job.message_id),
        )
        if result.outcome == "unreachable":
            # Nothing was tried for this recipient: hand the job on, the transport backs off.
            self.log(f"cannot connect, will retry: {result.reply}")
            return 0.0, tries
        attempted = not result.data_sent
        failure = Failure(job.digest_id, job.recipient, result.reply)
        if result.outcome == "sent":
            self.ledger.finish(job.digest_id, job.recipient, "sent", result.reply)
            self._final(sent=True)
            return None, tries + 1
        if result.outcome == "permanent":
            self.ledger.finish(
                job.digest_id, job.recipient, "failed_permanent", result.reply, attempted=attempted
            )
            self._final(failed=failure)
            return None, tries + 1
        self.ledger.finish(
            job.digest_id, job.recipient, "failed_temporary", result.reply, attempted=attempted
        )
        tries += 1
        if tries < max(1, self.smtp.max_attempts):
            delay = backoff(self.retry_delay, tries)
            self.log(f"{job.recipient}: {result.reply}; retrying in {delay:g}s")
            return delay, tries
        self._final(deferred=failure)
        return None, tries

    def _final(
        self,
        *,
        sent: bool = False,
        skipped: bool = False,
        failed: Failure | None = None,
        deferred: Failure | None = None,
    ) -> None:
        with self._lock:
            self.finished += 1
            self.tally.sent += sent
            self.tally.skipped += skipped
            if failed is not None:
                self.tally.failed.append(failed)
            if deferred is not None:
                self.tally.deferred.append(deferred)


def deliver(
    jobs: Iterable[Job],
    build: Callable[[Job], bytes | None],
    ledger: Ledger,
    smtp: SmtpSettings,
    *,
    sender: str,
    total: int | None = None,
    retry_delay: float = 1.0,
    progress: ProgressFn | None = None,
    log: LogFn = _silent,
    tally: Tally | None = None,
) -> Tally:
    """Send every job over `[smtp] connections` connections and record each outcome.

    `build(job)` returns the message bytes, or None when the recipient gets nothing from this
    digest. `jobs` is read as the sending goes (`total` is for progress). Raises DeliveryError
    when the run cannot go on (login refused, relay unreachable); what was not sent stays
    queued for the next run.
    """
    tally = tally if tally is not None else Tally()
    if total is None:
        jobs = list(jobs)
        total = len(jobs)
    if total == 0:
        return tally
    engine = _Engine(
        jobs, build, ledger, smtp, sender=sender, retry_delay=retry_delay, tally=tally, log=log
    )
    threads = [
        threading.Thread(target=engine.work, name=f"smtp-{n}", daemon=True)
        for n in range(min(max(1, smtp.connections), total))
    ]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive():
                thread.join(0.2)
                if progress is not None:
                    progress(engine.finished, total)
    except BaseException:
        engine.schedule.stop()
        for thread in threads:
            thread.join()
        raise
    if progress is not None:
        progress(engine.finished, total)
    if engine.fatal is None and engine.schedule.error is not None:
        engine.fatal = engine.schedule.error
    if engine.fatal is not None:
        if isinstance(engine.fatal, DeliveryError):
            fatal = engine.fatal
            raise DeliveryError(
                f"{fatal.message} (stopped after {tally.summary()}; the rest stays queued)",
                hint=fatal.hint,
            )
        raise engine.fatal
    return tally


# -- what to send, and to whom --------------------------------------------------------------------


def send(
    settings: Settings,
    ctx: BuildContext,
    subscribers: SubscriberList,
    ledger: Ledger,
    *,
    now: datetime,
    digest_id: str | None = None,
    outbox: Path | None = None,
    retry_delay: float = 1.0,
    progress: ProgressFn | None = None,
    log: LogFn = _silent,
) -> Tally:
    """Queue and send what is due: every digest not yet sent to each subscriber by the rules in
    feeds.ledger, or only `digest_id`. With `outbox`, write the messages there as .eml files
    instead, connect to nothing and change nothing in the ledger."""
    check_sending(settings)
    digests = {d.id: d for d in ctx.digests}
    if digest_id is not None and digest_id not in digests:
        raise DeliveryError(
            f"no digest {digest_id!r}",
            hint="known: " + (", ".join(d.id for d in ctx.digests[:5]) or "none"),
        )
    listed = {s.key: s for s in subscribers.subscribers}
    refs = [DigestRef(d.id, d.date) for d in ctx.digests]
    tally = Tally(dry_run=outbox is not None)
    messages = Messages(settings, digests, now=now)
    if outbox is not None:
        # Listed, then rolled back before any file is written: the preview's transaction must
        # not keep a real send or a build waiting for the database.
        with ledger.preview():
            _plan(ledger, refs, listed, digest_id, tally, log)
            jobs = list(_jobs(ledger, digests, listed, settings, digest_id, record=False))
        write_outbox(jobs, messages.build, outbox, tally)
        return tally
    _plan(ledger, refs, listed, digest_id, tally, log)
    return deliver(
        _jobs(ledger, digests, listed, settings, digest_id, record=True),
        messages.build,
        ledger,
        settings.smtp,
        sender=envelope_sender(settings),
        total=tally.queued,
        retry_delay=retry_delay,
        progress=progress,
        log=log,
        tally=tally,
    )


def _plan(
    ledger: Ledger,
    refs: list[DigestRef],
    listed: dict[str, Subscriber],
    digest_id: str | None,
    tally: Tally,
    log: LogFn,
) -> None:
    ledger.queue(refs, listed, only=digest_id)
    ledger.settle(listed)
    tally.queued, tally.resent_in_doubt = ledger.count_due(digest_id)
    if tally.resent_in_doubt:
        log(
            f"{tally.resent_in_doubt} message(s) were in flight when a previous run stopped;"
            " sending them again with their original Message-ID"
        )


def _jobs(
    ledger: Ledger,
    digests: dict[str, Digest],
    listed: dict[str, Subscriber],
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
            yield Job(entry.digest_id, subscriber, message_id(entry, settings))


def send_due(
    settings: Settings,
    load: Callable[[], BuildContext],
    *,
    now: datetime,
    digest_id: str | None = None,
    outbox: Path | None = None,
    retry_delay: float = 1.0,
    progress: ProgressFn | None = None,
    log: LogFn = _silent,
) -> Tally:
    """`feeds send`: take the send lock (not for a dry run), read the subscriber list, load
    what the last build published (`load`), and send what is due. Bad subscriber rows are
    skipped and listed in `Tally.notes`.

    When nothing was left due by the last run and neither the build nor the subscriber list
    changed since, it returns at once without loading anything: cron's every-ten-minutes
    `feeds run` costs next to nothing."""
    check_sending(settings)
    with nullcontext() if outbox is not None else send_lock(settings.paths.state):
        ledger = Ledger.open(settings.paths.state)
        try:
            mark = _fingerprint(settings) if outbox is None and digest_id is None else None
            if (
                mark is not None
                and ledger.get_meta("sent_for") == mark
                and ledger.count_due() == (0, 0)
            ):
                log("nothing new to send")
                return Tally()
            people = load_subscribers(settings.paths.subscribers)
            tally = send(
                settings, load(), people, ledger, now=now, digest_id=digest_id, outbox=outbox,
                retry_delay=retry_delay, progress=progress, log=log,
            )
            if mark is not None and tally.ok and ledger.count_due() == (0, 0):
                ledger.set_meta("sent_for", mark)
        finally:
            ledger.close()
    tally.notes[:0] = [
        f"{people.source}:{p.line}: {p.severity}: {p.message}" for p in people.problems
    ]
    return tally


def _fingerprint(settings: Settings) -> str | None:
    """What decides what is due besides the ledger: the last complete build (its stamp) and
    the subscriber list (its size and time). None when there is no complete build."""
    from feeds.state import read_stamp

    stamp = read_stamp(settings.paths.state).get("stamp")
    if not stamp:
        return None
    try:
        info = settings.paths.subscribers.stat()
    except OSError:
        return None
    return f"{stamp} {info.st_size} {info.st_mtime_ns} {info.st_ino}"


def send_test(
    settings: Settings,
    ctx: BuildContext,
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
    if not ctx.digests:
        raise DeliveryError("there is no digest to send", hint="run `feeds build` first")
    digests = {d.id: d for d in ctx.digests}
    chosen = digest_id or ctx.digests[0].id
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
        write_outbox([job], lambda _: data, outbox, tally)
        return str(tally.written[0])
    transport = Transport(settings.smtp)
    try:
        while True:
            result = transport.send(envelope_sender(settings), email, data, _nothing)
            if result.outcome != "unreachable":
                break
    finally:
        transport.close()
    if result.outcome != "sent":
        raise DeliveryError(f"{email}: {result.reply}")
    return result.reply


def _nothing() -> None:
    return None


def check_sending(settings: Settings) -> None:
    """What must hold before anything is sent (also run by `feeds check`)."""
    where = str(settings.source) if settings.source else None
    check_template(settings.newsletter.unsubscribe_url, settings.unsubscribe_secret, where=where)
    if not envelope_sender(settings):
        raise ConfigError(
            f"[newsletter] from has no address: {settings.newsletter.sender!r}", path=where
        )
    reply_to = settings.newsletter.reply_to
    if reply_to and not isinstance(normalize_email(parseaddr(reply_to)[1]), str):
        raise ConfigError(f"[newsletter] reply_to is not an address: {reply_to!r}", path=where)


def envelope_sender(settings: Settings) -> str:
    """The `MAIL FROM` address: the `From` address, if it is a plain one."""
    address = parseaddr(settings.newsletter.sender)[1]
    return address if isinstance(normalize_email(address), str) else ""


def message_id(entry: Entry, settings: Settings) -> str:
    """The same for every attempt at one (digest, recipient), so a copy sent again after a crash
    can be recognised as the same message; it does not reveal the address."""
    if entry.message_id:
        return entry.message_id
    seed = f"{settings.newsletter.list_id}\0{entry.digest_id}\0{entry.recipient}"
    digest = hashlib.sha256(seed.encode("utf-8")).hexdigest()[:24]
    domain = envelope_sender(settings).rpartition("@")[2] or "localhost"
    return f"<{entry.digest_id}.{digest}@{domain}>"


def write_outbox(
    jobs: Iterable[Job], build: Callable[[Job], bytes | None], outbox: Path, tally: Tally
) -> None:
    """The dry run: each message as `<outbox>/<digest id>/<address>.eml`."""
    for job in jobs:
        data = build(job)
        if data is None:
            tally.skipped += 1
            continue
        folder = outbox / job.digest_id
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / (re.sub(r"[^A-Za-z0-9@._+-]", "_", job.recipient) + ".eml")
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        tally.written.append(path)


@contextmanager
def send_lock(state: Path) -> Iterator[None]:
    """Only one sender at a time: `<state>.send.lock`, held for the whole run (flock is released
    by the kernel if the process dies, so a killed run never blocks the next)."""
    path = state.with_name(state.name + ".send.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockedError(
                "another `feeds send` or `feeds run` is sending",
                path=str(path),
                hint="it will send what is due; try again when it has finished",
            ) from None
        yield
    finally:
        os.close(fd)
