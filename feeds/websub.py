"""WebSub publishing: after a build, tell the hub which feeds changed, so that readers
subscribed through it get the new papers at once instead of at their next poll.

With `[site] websub_hub` set, every RSS, Atom and JSON subscription document names the hub
(`feeds.syndicate`). After the files are written, each feed whose bytes changed is first
recorded as pending in the state database, then announced to the hub with one form POST
(`hub.mode=publish`, `hub.url=<the feed's URL>`), the publishing convention hubs share
(PubSubHubbub 0.4; WebSub leaves it to the hub). A 2xx answer clears it. A hub that fails, is
unreachable or too slow costs the build nothing: the feed stays pending and is announced again
at the next run, no-op runs included. Every exchange has a deadline in all (a hub that
trickles its answer is cut off too), and the pings of one run have a deadline together.
"""

from __future__ import annotations

import contextlib
import http.client
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

from feeds import state
from feeds.config import Settings

Log = Callable[[str], None]

# Seconds one ping may take in all, and all the pings of one run together: a cron run must
# not hang on a hub.
PING_TIMEOUT = 10.0
RUN_DEADLINE = 60.0
# The subscription documents (never the archive documents, which nobody subscribes to).
_TOPIC = re.compile(r"^feeds/[^/]+\.(?:rss|atom|json)$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS websub_pending (
    topic TEXT PRIMARY KEY
)
"""


@dataclass
class Announced:
    """What one run told the hub: the feeds it accepted, and one line per failure."""

    accepted: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def topics(settings: Settings, written: Iterable[str]) -> list[str]:
    """The public URLs of the subscription documents among `written` (paths under output/)."""
    return sorted(settings.site.url(rel) for rel in written if _TOPIC.match(rel))


def announce(
    settings: Settings,
    written: Iterable[str],
    log: Log,
    *,
    timeout: float = PING_TIMEOUT,
    deadline: float = RUN_DEADLINE,
) -> Announced:
    """Record the changed feeds among `written` as pending, then ping the hub for every
    pending feed (these and those a failed run left). Never raises for the hub's sake."""
    hub = settings.site.websub_hub
    done = Announced()
    if not hub:
        return done
    conn = state.connect(settings.paths.state)
    try:
        conn.execute(_SCHEMA)
        fresh = topics(settings, written)
        if fresh:
            with state.transaction(conn):
                conn.executemany(
                    "INSERT OR IGNORE INTO websub_pending (topic) VALUES (?)",
                    [(t,) for t in fresh],
                )
        pending = [row[0] for row in conn.execute("SELECT topic FROM websub_pending ORDER BY 1")]
        stop = time.monotonic() + deadline
        for n, topic in enumerate(pending):
            left = stop - time.monotonic()
            if left <= 0:
                done.failures.append(
                    f"{hub}: {len(pending) - n} feed(s) not announced within {deadline:.0f} s; "
                    "retried at the next run"
                )
                break
            problem = ping(hub, topic, min(timeout, left))
            if problem is None:
                with state.transaction(conn):
                    conn.execute("DELETE FROM websub_pending WHERE topic = ?", (topic,))
                done.accepted.append(topic)
                log(f"announced {topic} to {hub}")
                continue
            done.failures.append(f"{hub}: {problem} (announcing {topic}); retried at the next run")
            if problem.startswith("cannot reach"):
                # A hub that is down fails every ping alike: the rest wait for the next run.
                break
    finally:
        conn.close()
    return done


def ping(hub: str, topic: str, timeout: float) -> str | None:
    """POST `hub.mode=publish&hub.url=topic` to the hub: None when it accepted (2xx), else
    why not, in a few words. The whole exchange ends within `timeout` seconds."""
    parts = urlsplit(hub)
    body = urlencode({"hub.mode": "publish", "hub.url": topic}).encode("ascii")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    end = time.monotonic() + timeout
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(
            parts.hostname or "", parts.port, timeout=timeout,
            context=ssl.create_default_context(),
        )
    else:
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    watchdog: threading.Timer | None = None
    try:
        connection.connect()
        # The socket's timeout bounds each wait; the watchdog bounds the exchange in all, so a
        # hub that trickles its answer a byte at a time is cut off too.
        watchdog = threading.Timer(max(0.0, end - time.monotonic()), _cut, (connection,))
        watchdog.daemon = True
        watchdog.start()
        connection.request(
            "POST", path, body=body,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "User-Agent": "digest-feeds",
            },
        )
        response = connection.getresponse()
        status, reason = response.status, response.reason
        # The answer's body says nothing we need; it is read so the hub sees a clean exchange.
        response.read(65536)
    except TimeoutError:
        return f"cannot reach the hub: no answer within {timeout:.0f} s"
    except (OSError, http.client.HTTPException) as exc:
        if time.monotonic() >= end:
            return f"cannot reach the hub: no answer within {timeout:.0f} s"
        return f"cannot reach the hub: {exc}"
    finally:
        if watchdog is not None:
            watchdog.cancel()
        connection.close()
    if 200 <= status < 300:
        return None
    return f"the hub answered {status} {reason}".rstrip()


def _cut(connection: http.client.HTTPConnection) -> None:
    """Wake a read blocked on a hub that is past its deadline."""
    sock = connection.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
