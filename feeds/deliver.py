"""The SMTP engine: messages out over several connections, every outcome in the ledger.

The engine runs `[smtp] connections` threads, each with its own SMTP connection reused for many
messages, pulling from one schedule. A reply decides a message's fate: 250 after DATA is `sent`,
4xx (and 421, a dropped connection, a timeout) is temporary and retried with exponential backoff
within the run and again by later runs, 5xx is permanent and recorded, never retried. Ledger
writes are serialized; `sending` is committed before DATA so that a crash leaves at most one
message per connection in doubt, and that one is sent again with the same Message-ID (mail
systems that deduplicate by Message-ID then drop the copy).
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace

from feeds.config import SmtpSettings
from feeds.errors import DeliveryError
from feeds.ledger import Ledger
from feeds.personalize import Job
from feeds.tally import Failure, Tally
from feeds.transport import Transport, Unreachable, backoff

ProgressFn = Callable[[int, int], None]
LogFn = Callable[[str], None]


def silent(_: str) -> None:
    return None


# -- the engine ---------------------------------------------------------------------------------


class _Schedule:
    """Jobs in order, read lazily from `source` (memory does not grow with the list), each
    retried no sooner than its backoff allows; done when the source is empty and all are idle."""

    def __init__(self, source: Iterable[Job], *, time_limit: float | None = None) -> None:
        self._source: Iterator[Job] | None = iter(source)
        self._heap: list[tuple[float, int, Job, int]] = []
        self._seq = 0
        self._busy = 0
        self._stopped = False
        self._cond = threading.Condition()
        self._until = None if time_limit is None else time.monotonic() + time_limit
        self.error: BaseException | None = None
        # Jobs left untaken because the time limit passed: they stay due in the ledger.
        self.out_of_time = False

    def take(self) -> tuple[Job, int] | None:
        with self._cond:
            while not self._stopped:
                if self._until is not None and time.monotonic() >= self._until:
                    self.out_of_time = True
                    self._stopped = True
                    self._cond.notify_all()
                    break
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
                    if self._until is not None:
                        wait = min(wait, max(0.0, self._until - time.monotonic()))
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


class _StepAside(Exception):
    """A connection that could not open leaves the send to the others."""


class _Engine:
    def __init__(
        self,
        jobs: Iterable[Job],
        build: Callable[[Job], bytes | None],
        ledger: Ledger,
        smtp: SmtpSettings,
        *,
        sender: Callable[[Job], str],
        retry_delay: float,
        tally: Tally,
        log: LogFn,
    ) -> None:
        self.schedule = _Schedule(jobs, time_limit=smtp.send_time_limit)
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
        self._transports: list[Transport] = []
        # Connections still sending: not stepped aside, not ended.
        self._live = 0

    def work(self) -> None:
        transport = Transport(self.smtp, retry_delay=self.retry_delay)
        with self._lock:
            self._transports.append(transport)
            self._live += 1
        stepped_aside = False
        try:
            while (taken := self.schedule.take()) is not None:
                job, tries = taken
                retry_in: float | None = None
                try:
                    retry_in, tries = self._one(transport, job, tries)
                except _StepAside as aside:
                    # The job goes back at once, to a connection that works.
                    retry_in = 0.0
                    stepped_aside = True
                    self.log(
                        f"a connection to the relay could not open ({aside}): it steps aside "
                        "for this run, the others carry on (see [smtp] connections)"
                    )
                    break
                except BaseException as exc:
                    with self._lock:
                        self.fatal = self.fatal or exc
                    self.schedule.stop()
                finally:
                    self.schedule.done(job, tries, retry_in)
        finally:
            transport.close()
            if not stepped_aside:
                with self._lock:
                    self._live -= 1

    def _may_step_aside(self, transport: Transport, *, others_open: bool) -> bool:
        """Whether this connection leaves the send to the others (and if so, it is counted out
        at once, under the lock: two connections failing together never both leave). With
        `others_open`, only while another is open; else while another is still sending."""
        with self._lock:
            if others_open:
                others = any(t.connected for t in self._transports if t is not transport)
            else:
                others = self._live > 1
            if others:
                self._live -= 1
            return others

    def _one(self, transport: Transport, job: Job, tries: int) -> tuple[float | None, int]:
        data = self.build(job)
        if data is None:
            self.ledger.finish(
                job.digest_id, job.recipient, "skipped", "no paper in the subscribed categories"
            )
            self._final(skipped=True)
            return None, tries
        self.pace.wait()
        try:
            result = transport.send(
                self.sender(job),
                job.subscriber.email,
                data,
                lambda: self.ledger.mark_sending(job.digest_id, job.recipient, job.message_id),
            )
        except Unreachable as exc:
            # Its tries are used up. Another connection still at work may be open by now, or
            # about to be (they all start at once): the send stops only when every connection
            # has given up.
            if self._may_step_aside(transport, others_open=False):
                raise _StepAside(exc.message) from None
            raise
        if result.outcome == "cancelled":
            self.ledger.finish(job.digest_id, job.recipient, "cancelled", result.reply)
            self._final(cancelled=True)
            return None, tries
        if result.outcome == "unreachable":
            if self._may_step_aside(transport, others_open=True):
                # A relay that takes fewer connections from one client than `connections`
                # (a 421 greeting): this one steps aside for the run instead of failing its
                # attempts and stopping the send the others are carrying.
                raise _StepAside(result.reply)
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
            self._final(failed=replace(failure, mailbox=result.mailbox))
            return None, tries + 1
        if result.outcome == "in_doubt":
            # The server may have taken it: the row stays `sending`, as after a crash, and the
            # next run sends it once more with the same Message-ID (up to `max_attempts`
            # sends in all, then given up and reported: `Ledger.settle`); sent again now, a
            # relay slower than [smtp] timeout got every try of every run.
            self.ledger.doubted(job.digest_id, job.recipient, result.reply)
            reply = f"{result.reply} (sent again by the next run, with its Message-ID)"
            self._final(deferred=replace(failure, reply=reply))
            return None, tries + 1
        self.ledger.finish(
            job.digest_id, job.recipient, "failed_temporary", result.reply, attempted=attempted
        )
        tries += 1
        if tries < max(1, self.smtp.max_attempts):
            delay = backoff(self.retry_delay, tries)
            self.log(f"{job.recipient}: {result.reply}; retrying in {delay:g}s")
            return delay, tries
        self._final(deferred=replace(failure, mailbox=result.mailbox, repeated=job.retried))
        return None, tries

    def _final(
        self,
        *,
        sent: bool = False,
        skipped: bool = False,
        cancelled: bool = False,
        failed: Failure | None = None,
        deferred: Failure | None = None,
    ) -> None:
        with self._lock:
            self.finished += 1
            self.tally.sent += sent
            self.tally.skipped += skipped
            self.tally.cancelled += cancelled
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
    sender: Callable[[Job], str],
    total: int | None = None,
    retry_delay: float = 1.0,
    progress: ProgressFn | None = None,
    log: LogFn = silent,
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
    if engine.schedule.out_of_time:
        tally.out_of_time = smtp.send_time_limit
        tally.left = total - engine.finished
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
