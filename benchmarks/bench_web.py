"""The endpoint under load: one-click unsubscribes while a send of 10,000 messages runs.

Three processes share one state file, as on the production machine: `feeds send` (the installed
entry point) mailing 10,000 confirmed subscribers through a loopback aiosmtpd sink, the endpoint
(`feeds.web.serve`, waitress) and this one, whose 8 client threads POST `List-Unsubscribe=
One-Click` as mail providers do (each thread keeps its connection open), to addresses taken in
a shuffled order from the 10,000. Loopback only; bounded in count and time.

Reports requests/s, p50/p99 latency, errors (any non-200 answer or "database is locked"
anywhere), lost unsubscribes (acknowledged but not `unsubscribed` afterwards), copies the sink
took after the address's unsubscribe was acknowledged, and whether the send stayed exactly-once
(no address got two copies). Target: >= 300 requests/s with p99 < 100 ms on 2 cores.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from measure import ENV, FEEDS, print_verdicts  # noqa: E402

SUBSCRIBERS = 10_000
CLIENTS = 8
# The clients run this long once the first message is out (each address at most once), then
# the send finishes on its own.
WINDOW = 20.0
MAX_REQUESTS = SUBSCRIBERS
MAX_SECONDS = 300.0
SECRET = "benchmark-secret"
PUBLIC = "https://digest.example.org/list"

# Records when each message arrived, per recipient; prints them as JSON when stdin closes.
SINK = r"""
import asyncio, json, sys, time
from aiosmtpd.smtp import SMTP

class Record:
    def __init__(self):
        self.got = []
    async def handle_DATA(self, server, session, envelope):
        now = time.time()
        if not self.got:
            print("first", flush=True)
        self.got.extend((rcpt, now) for rcpt in envelope.rcpt_tos)
        return "250 2.0.0 Queued"

async def main():
    handler = Record()
    loop = asyncio.get_running_loop()
    await loop.create_server(lambda: SMTP(handler), "127.0.0.1", int(sys.argv[1]))
    print("ready", flush=True)
    await loop.run_in_executor(None, sys.stdin.read)
    print(json.dumps(handler.got), flush=True)

asyncio.run(main())
"""

SERVER = r"""
import logging, sys
from pathlib import Path
from feeds.config_file import load_settings
from feeds.web import serve
logging.basicConfig(level=logging.WARNING)
serve(load_settings(Path(sys.argv[1])), host="127.0.0.1", port=int(sys.argv[2]))
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def prepare(work: Path, smtp_port: int) -> Path:
    """A built digest and 10,000 confirmed subscribers in a fresh state file; the config."""
    from datetime import UTC, datetime

    from feeds.audience import Audience
    from feeds.build import build
    from feeds.config_file import load_settings
    from feeds.roster import import_list
    from feeds.subscribers import parse_subscribers

    (work / "digests").mkdir(parents=True)
    shutil.copy(ROOT / "digests" / "2022-08-13.txt", work / "digests")
    config = work / "feeds.toml"
    config.write_text(
        f'[smtp]\nhost = "127.0.0.1"\nport = {smtp_port}\nsecurity = "none"\n'
        f'[web]\npublic_url = "{PUBLIC}"\nrequests_per_minute = 20\n',
        encoding="utf-8",
    )
    settings = load_settings(config, {"FEEDS_UNSUBSCRIBE_SECRET": SECRET})
    report = build(settings, now=datetime(2022, 8, 14, tzinfo=UTC), log=lambda _: None)
    assert not report.failed
    rows = "email,name,categories\n" + "".join(
        f"reader{i}@example.org,Reader {i},\n" for i in range(SUBSCRIBERS)
    )
    with Audience.open(settings.paths.state) as audience:
        import_list(audience, parse_subscribers(rows))
    return config


class Clients:
    """8 threads posting one-clicks until told to stop or out of budget."""

    def __init__(self, port: int, addresses: list[str]) -> None:
        from feeds.unsubscribe import make_token

        self.port = port
        self.tokens = {
            a: make_token(a, list_id="ml-digest.example.org", secret=SECRET) for a in addresses
        }
        self.order = addresses
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.next = 0
        self.latencies: list[float] = []
        self.acked: dict[str, float] = {}
        self.errors: list[str] = []

    def _take(self) -> str | None:
        with self.lock:
            if self.next >= min(MAX_REQUESTS, len(self.order)):
                return None
            address = self.order[self.next]
            self.next += 1
            return address

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        body = b"List-Unsubscribe=One-Click"
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        try:
            while not self.stop.is_set() and (address := self._take()) is not None:
                started = time.perf_counter()
                try:
                    conn.request("POST", f"/unsubscribe?token={self.tokens[address]}", body,
                                 headers)
                    response = conn.getresponse()
                    page = response.read()
                except (OSError, http.client.HTTPException) as exc:
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                    with self.lock:
                        self.errors.append(f"{address}: {exc!r}")
                    continue
                done = time.time()
                elapsed = time.perf_counter() - started
                with self.lock:
                    self.latencies.append(elapsed)
                    if response.status == 200 and b"locked" not in page:
                        self.acked.setdefault(address, done)
                    else:
                        self.errors.append(f"{address}: {response.status}")
        finally:
            conn.close()


def wait_ready(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/subscribe")
            if conn.getresponse().status == 200:
                conn.close()
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("the endpoint did not start")


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="bench-web-"))
    try:
        measure(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def measure(work: Path) -> None:
    smtp_port, web_port = _free_port(), _free_port()
    env = {**ENV, "FEEDS_UNSUBSCRIBE_SECRET": SECRET, "FEEDS_SMTP_PASSWORD": "",
           "PYTHONPATH": str(ROOT)}
    sink = server = sender = None
    try:
        config = prepare(work, smtp_port)
        sink = subprocess.Popen([sys.executable, "-c", SINK, str(smtp_port)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
        # The children's output goes to files: a pipe nobody reads fills up and stops them.
        server_log, send_log = work / "server.log", work / "send.log"
        with server_log.open("w") as log:
            server = subprocess.Popen([sys.executable, "-c", SERVER, str(config), str(web_port)],
                                      stdout=log, stderr=log, env=env)
        wait_ready(web_port, time.monotonic() + 30)

        addresses = [f"reader{i}@example.org" for i in range(SUBSCRIBERS)]
        random.Random(8058).shuffle(addresses)
        clients = Clients(web_port, addresses)
        threads = [threading.Thread(target=clients.run) for _ in range(CLIENTS)]
        send_started = time.perf_counter()
        with send_log.open("w") as log:
            sender = subprocess.Popen([FEEDS, "--config", str(config), "send"],
                                      stdout=log, stderr=log, env=env)
        # The load starts once messages are going out, not while the send reads its list.
        if not select.select([sink.stdout], [], [], 60)[0]:
            raise SystemExit("the send sent nothing within 60 s:\n" + send_log.read_text())
        assert sink.stdout.readline().strip() == "first"
        started, window_start = time.perf_counter(), time.time()
        for thread in threads:
            thread.start()
        clients.stop.wait(WINDOW)
        clients.stop.set()
        for thread in threads:
            thread.join()
        seconds, window_end = time.perf_counter() - started, time.time()
        try:
            sender.wait(timeout=MAX_SECONDS)
        except subprocess.TimeoutExpired:
            sender.kill()
            sender.wait()
        send_seconds = time.perf_counter() - send_started
        sent_output = send_log.read_text(encoding="utf-8", errors="replace")
        server_output = server_log.read_text(encoding="utf-8", errors="replace")

        assert sink.stdin is not None
        sink.stdin.close()
        received: list[tuple[str, float]] = json.loads(sink.stdout.readline())
    finally:
        for proc in (sender, server):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=10)
        if sink is not None and sink.poll() is None:
            sink.kill()
            sink.wait()
    from feeds.audience import Audience

    with Audience.open(work / "state" / "feeds.sqlite3") as audience:
        lost = [a for a in clients.acked if (m := audience.get(a)) is None
                or m.status != "unsubscribed"]
    copies: dict[str, int] = {}
    late = 0
    for rcpt, when in received:
        copies[rcpt.lower()] = copies.get(rcpt.lower(), 0) + 1
        acked = clients.acked.get(rcpt.lower())
        late += acked is not None and when > acked
    twice = sum(1 for n in copies.values() if n > 1)
    locked = sum(text.count("database is locked") for text in (server_output, sent_output))
    crashed = server_output.count("Traceback")

    latencies = sorted(clients.latencies)
    count = len(latencies)
    rate = count / seconds
    p50 = latencies[count // 2] * 1000 if count else 0.0
    p99 = latencies[min(count - 1, int(count * 0.99))] * 1000 if count else 0.0
    errors = len(clients.errors) + locked + crashed
    print(f"{count} one-click POSTs from {CLIENTS} threads in {seconds:.1f} s: {rate:.0f} "
          f"requests/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms, {errors} errors "
          f"({locked} 'database is locked'); {os.cpu_count()} cores")
    during = sum(1 for _, when in received if window_start <= when <= window_end)
    print(f"send: {len(received)} messages in {send_seconds:.1f} s, exit status "
          f"{sender.returncode if sender else '?'}; {during / seconds:.0f} msg/s during the "
          f"load; addresses with two copies: {twice}")
    print(f"unsubscribes acknowledged: {len(clients.acked)}; lost: {len(lost)}; copies the sink "
          f"took after the address's unsubscribe was acknowledged: {late} (the send reads its "
          "recipients when it starts)")
    if clients.errors[:3]:
        print("first errors: " + "; ".join(clients.errors[:3]))
    print_verdicts({
        ">= 300 requests/s": rate >= 300,
        "p99 < 100 ms": p99 < 100,
        "no errors": errors == 0,
        "no lost unsubscribe": not lost,
        "exactly-once": twice == 0 and sender is not None and sender.returncode == 0,
    })


if __name__ == "__main__":
    sys.exit(main())
