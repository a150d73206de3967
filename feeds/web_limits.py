"""What keeps the subscription endpoint from being turned against anybody: a per-address rate
limit on the forms, and the postman that mails notices off the request thread.

Both live in the memory of one process. Behind several worker processes (gunicorn -w 4) each
keeps its own count, so the limit a client meets is at most that many times the configured one;
the daily limit of three notices per mailbox is in the state database and holds across them.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable

log = logging.getLogger("feeds.web")

# Clients remembered at once; past this, the quietest are forgotten first (a flood of spoofed
# addresses must not grow the process without bound).
MAX_CLIENTS = 10_000
# Notices waiting to be mailed; past this, new ones are dropped and logged.
MAX_WAITING = 1_000
# A job that found the state file busy past its timeout (a backup, a long send) is posted again
# this many seconds later, up to this many times: a subscription is not lost to a busy minute.
RETRY_DELAY = 60.0
RETRIES = 5


def client_of(address: str | None) -> str:
    """Whom a request is counted against: its IPv4 address, or the /64 network of an IPv6 one
    (one subscriber line gets a /64, and an address per request from it costs nothing)."""
    import ipaddress

    try:
        found = ipaddress.ip_address(address or "")
    except ValueError:
        return address or "unknown"
    if isinstance(found, ipaddress.IPv6Address):
        if found.ipv4_mapped is not None:
            return str(found.ipv4_mapped)
        return str(ipaddress.ip_network(f"{found}/64", strict=False))
    return str(found)


class RateLimit:
    """At most `per_minute` hits per client (`client_of`) in any sliding 60-second window."""

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = per_minute
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def allow(self, client: str) -> bool:
        """Whether `client` may go on; counts the hit when it may."""
        now = self._clock()
        with self._lock:
            hits = self._hits.pop(client, None) or deque()
            while hits and hits[0] <= now - 60.0:
                hits.popleft()
            allowed = len(hits) < self._limit
            if allowed:
                hits.append(now)
            # Re-inserted last: the dict's order is least recently seen first.
            self._hits[client] = hits
            while len(self._hits) > MAX_CLIENTS:
                del self._hits[next(iter(self._hits))]
        return allowed


class Postman:
    """One background thread that runs the endpoint's mail work in order.

    A form answers the same page at once whatever the address is; looking it up, the daily
    limit and the SMTP conversation happen here, so neither the answer nor its timing says
    whether an address is subscribed. A failure is logged and the next job goes on; one that
    found the state file busy is posted again later (`RETRY_DELAY`, `RETRIES`).
    """

    def __init__(self) -> None:
        self._jobs: queue.Queue[Callable[[], None]] = queue.Queue(MAX_WAITING)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        # Jobs waiting to be posted again (`RETRY_DELAY`), each on a timer of its own.
        self._retrying = 0

    def post(self, job: Callable[[], None]) -> None:
        try:
            self._jobs.put_nowait(job)
        except queue.Full:
            log.error("notice dropped: %d notices are already waiting", MAX_WAITING)
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._work, name="feeds-web-postman", daemon=True
                )
                self._thread.start()

    def wait(self, timeout: float = 30.0) -> bool:
        """Block until every job posted so far is done (tests, shutdown); False on timeout."""
        deadline = time.monotonic() + timeout
        while self._jobs.unfinished_tasks or self._retrying:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                job()
            except Exception as exc:
                tries = getattr(job, "tries", 0)
                if _busy(exc) and tries < RETRIES and self._retrying < MAX_WAITING:
                    log.warning("the state file is busy; a notice is tried again in %g s",
                                RETRY_DELAY)
                    with self._lock:
                        self._retrying += 1
                    timer = threading.Timer(RETRY_DELAY, self._again, args=(job, tries + 1))
                    timer.daemon = True
                    timer.start()
                else:
                    log.exception("a notice could not be sent")
            finally:
                self._jobs.task_done()

    def _again(self, job: Callable[[], None], tries: int) -> None:
        self.post(_Again(job, tries))
        with self._lock:
            self._retrying -= 1


class _Again:
    """A job posted again, and how many times it has been."""

    def __init__(self, job: Callable[[], None], tries: int) -> None:
        self.job = getattr(job, "job", job)
        self.tries = tries

    def __call__(self) -> None:
        self.job()


def _busy(exc: BaseException) -> bool:
    """The state file was locked by another process past the busy timeout (SQLite's own
    error, or ours about it): not a relay's `451 mailbox busy`, which must not be sent again."""
    import sqlite3

    from feeds.errors import StateError

    if isinstance(exc, sqlite3.OperationalError):
        return "locked" in str(exc) or "busy" in str(exc)
    return isinstance(exc, StateError) and "busy" in (exc.hint or "")
