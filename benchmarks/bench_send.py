"""Sending: 10,000 subscribers in 4 category sets to a loopback aiosmtpd in other processes.

Reports messages per second on one connection and on several, and the sender's peak memory
(ru_maxrss) at 2,000 and at 10,000 subscribers, each run in a fresh process so that the figures
do not mix. The server only counts what it receives; the sender does everything it does in
production (ledger in a real SQLite file, per-recipient token, To and Message-ID).
Target: >= 200 messages/s on one connection.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CATEGORY_SETS = ("", "CV", "CL LG", "AS CV")

# One server process; several share the port (SO_REUSEPORT) so that the server is not the only
# thing measured when the sender uses several connections.
SERVER = r"""
import asyncio, sys
from aiosmtpd.smtp import SMTP

class Count:
    def __init__(self):
        self.messages = 0
        self.bytes = 0
    async def handle_DATA(self, server, session, envelope):
        if DELAY:
            await asyncio.sleep(DELAY)
        self.messages += 1
        self.bytes += len(envelope.content)
        return "250 2.0.0 Queued"

DELAY = float(sys.argv[2])

async def main():
    handler = Count()
    loop = asyncio.get_running_loop()
    await loop.create_server(
        lambda: SMTP(handler), "127.0.0.1", int(sys.argv[1]), reuse_port=True
    )
    print("ready", flush=True)
    while await loop.run_in_executor(None, sys.stdin.readline):
        print(f"{handler.messages} {handler.bytes}", flush=True)

asyncio.run(main())
"""
SERVERS = 2


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run_sender(subscribers: int, connections: int, port: int) -> dict[str, float]:
    """One send in this process: the figures for one configuration."""
    from dataclasses import replace
    from datetime import UTC, datetime

    from feeds.config import Settings
    from feeds.ledger import Ledger
    from feeds.parse import parse_file
    from feeds.send import Issues, send
    from feeds.subscribers import parse_subscribers

    base = Settings()
    with tempfile.TemporaryDirectory() as tmp:
        settings = replace(
            base,
            paths=replace(base.paths, state=Path(tmp) / "feeds.sqlite3"),
            smtp=replace(
                base.smtp, host="127.0.0.1", port=port, security="none",
                connections=connections,
            ),
            newsletter=replace(
                base.newsletter, unsubscribe_url="https://digest.example.org/u?token={token}"
            ),
            unsubscribe_secret="benchmark-secret",
        )
        digest = parse_file(ROOT / "digests" / "2022-08-13.txt", tz=settings.site.tz)
        issues = Issues.of([digest])
        rows = ["email,name,categories"] + [
            f"reader{i}@example.org,Reader {i},{CATEGORY_SETS[i % len(CATEGORY_SETS)]}"
            for i in range(subscribers)
        ]
        people = parse_subscribers("\n".join(rows) + "\n")
        ledger = Ledger.open(settings.paths.state)
        started = time.perf_counter()
        cpu = time.process_time()
        tally = send(settings, issues, people, ledger, now=datetime(2022, 8, 14, tzinfo=UTC))
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu
        ledger.close()
    assert tally.ok and tally.sent == subscribers, tally.summary()
    return {
        "sent": tally.sent,
        "seconds": seconds,
        "rate": tally.sent / seconds,
        "cpu_ms": cpu / tally.sent * 1000,
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def raw_ceiling(port: int, count: int = 1_000) -> float:
    """Messages per second a client that does nothing but send prebuilt bytes achieves."""
    import smtplib
    from datetime import UTC, datetime

    from feeds.config import Settings
    from feeds.message import as_bytes, compose
    from feeds.newsletter import render_newsletter
    from feeds.parse import parse_file

    settings = Settings()
    digest = parse_file(ROOT / "digests" / "2022-08-13.txt", tz=settings.site.tz)
    letter = render_newsletter(digest, settings)
    assert letter is not None
    data = as_bytes(compose(letter, settings, to="x@example.org", date=datetime.now(UTC)))
    conn = smtplib.SMTP("127.0.0.1", port)
    conn.ehlo()
    started = time.perf_counter()
    for _ in range(count):
        conn.mail("digest@example.org")
        conn.rcpt("x@example.org")
        conn.data(data)
    seconds = time.perf_counter() - started
    conn.quit()
    return count / seconds


def _child(subscribers: int, connections: int, port: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(subscribers), str(connections), str(port)],
        check=False, capture_output=True, text=True, env=env,
    )
    if done.returncode != 0:
        raise SystemExit(f"sender failed:\n{done.stderr}")
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def _servers(port: int, delay: float, count: int) -> list[subprocess.Popen[str]]:
    servers = [
        subprocess.Popen(
            [sys.executable, "-c", SERVER, str(port), str(delay)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        for _ in range(count)
    ]
    for server in servers:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "ready"
    return servers


def _stop(servers: list[subprocess.Popen[str]]) -> None:
    for server in servers:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=30)


def with_latency(delay: float = 0.02, subscribers: int = 400) -> None:
    """A relay that takes `delay` seconds per message (a remote server's round trips and
    queueing): what several connections are for."""
    port = _free_port()
    servers = _servers(port, delay, 1)
    try:
        rates = {n: _child(subscribers, n, port)["rate"] for n in (1, 4)}
    finally:
        _stop(servers)
    print(
        f"relay taking {delay * 1000:.0f} ms per message, {subscribers} subscribers: "
        f"{rates[1]:.0f} msg/s on 1 connection, {rates[4]:.0f} msg/s on 4 "
        f"({rates[4] / rates[1]:.2f}x)"
    )


def main() -> None:
    port = _free_port()
    servers = _servers(port, 0.0, SERVERS)
    try:
        ceiling = raw_ceiling(port)
        print(
            f"ceiling: a do-nothing smtplib client sends the same message at {ceiling:.0f}/s "
            "on one connection (what this server and machine allow)",
            flush=True,
        )
        runs = [(2_000, 1), (10_000, 1), (10_000, 4)]
        results = {}
        for subscribers, connections in runs:
            figures = _child(subscribers, connections, port)
            results[(subscribers, connections)] = figures
            print(
                f"{subscribers:>6} subscribers, {connections} connection(s): "
                f"{figures['rate']:7.0f} messages/s ({figures['seconds']:.1f} s), "
                f"sender CPU {figures['cpu_ms']:.2f} ms/message, "
                f"peak RSS {figures['maxrss_mb']:.0f} MB",
                flush=True,
            )
        received = size = 0
        for server in servers:
            assert server.stdin is not None and server.stdout is not None
            server.stdin.write("count\n")
            server.stdin.flush()
            messages, octets = (int(x) for x in server.stdout.readline().split())
            received += messages
            size += octets
    finally:
        _stop(servers)
    total = sum(int(f["sent"]) for f in results.values()) + 1_000
    print(f"server received {received} of {total} messages, {size / received / 1024:.0f} KiB each")
    one = results[(10_000, 1)]["rate"]
    many = results[(10_000, 4)]["rate"]
    growth = results[(10_000, 1)]["maxrss_mb"] - results[(2_000, 1)]["maxrss_mb"]
    cpu = results[(10_000, 1)]["cpu_ms"]
    print(
        f"one connection: {one:.0f} msg/s (target >= 200: {'ok' if one >= 200 else 'MISSED'}; "
        f"{one / ceiling:.0%} of the ceiling); 4 connections: {many:.0f} msg/s "
        f"({many / one:.2f}x); the sender alone could do {1000 / cpu:.0f} msg/s per CPU"
    )
    print(f"peak memory, 10,000 vs 2,000 subscribers: {growth:+.1f} MB")
    with_latency()


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        print(json.dumps(run_sender(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))))
    else:
        main()
