"""Scale: a year of newsletters at 100,000 subscribers (`make bench SCALE=1`, or
`bench_scale.py --scale`); without the flag, the same steps at 10,000 subscribers and 60 days,
so that the normal `make bench` stays short.

Steps, each `feeds send` the installed entry point in a fresh process, sending to loopback
aiosmtpd servers in processes of their own (two, sharing the port) that record when each
message arrived and for whom:
1. A year of history: 365 daily digests queued to every subscriber with the ledger's own
   `queue`, each row then recorded `sent` as `mark_sending` + `finish` record it (the first
   row of the first day through those very calls, the rest in one statement a day, checked
   to give the same columns; one in a thousand a 550 instead), and after each day the
   retention a real send runs (`feeds.send.tidy`). Reported: the state database's size.
2. One new digest (built by `feeds build`) sent to everyone on 1 connection: time from the
   process start to the first message at the server, messages per second, peak RSS; each
   subscriber with a paper in their categories gets it exactly once.
3. The next digest on 4 connections, stopped by `[smtp] send_time_limit` after 60 s (the
   rate is taken over what went out), beside the same send over a history of one digest:
   peak RSS must not depend on the history.
4. 1,000,000 subscribers (100,000 without the flag), no history: first message out and peak
   RSS of a send stopped after 20 s.
Targets (at 100,000): state < 300 MB; first message < 2 s (1,000,000: < 15 s, < 300 MB);
>= 250 messages/s on 1 connection, >= 400 on 4; peak RSS D=1 vs D=365 within 10 MB.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from measure import ENV, FEEDS, HERE, ROOT, print_verdicts, sync

SCALE = "--scale" in sys.argv
SUBSCRIBERS = 100_000 if SCALE else 10_000
DAYS = 365 if SCALE else 60
MILLION = 1_000_000 if SCALE else 100_000
CATEGORY_SETS = ("", "CV", "CL LG", "AS CV")
SECRET = "benchmark-secret"

# Answers each line on stdin with what it received since the last "reset": the number of
# messages, the first and last arrival (Unix time) and the recipients that got more than one.
SINK = r"""
import asyncio, json, sys, time
from collections import Counter
from aiosmtpd.smtp import SMTP

class Record:
    def __init__(self):
        self.reset()
    def reset(self):
        self.got = Counter()
        self.first = self.last = None
    async def handle_DATA(self, server, session, envelope):
        now = time.time()
        self.first = self.first or now
        self.last = now
        for rcpt in envelope.rcpt_tos:
            self.got[rcpt] += 1
        return "250 2.0.0 Queued"

async def main():
    handler = Record()
    loop = asyncio.get_running_loop()
    await loop.create_server(lambda: SMTP(handler), "127.0.0.1", int(sys.argv[1]),
                             reuse_port=True)
    print("ready", flush=True)
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        twice = [r for r, n in handler.got.items() if n > 1]
        print(json.dumps([sum(handler.got.values()), handler.first, handler.last,
                          sorted(handler.got), twice]), flush=True)
        if line.strip() == "reset":
            handler.reset()

asyncio.run(main())
"""


class Sinks:
    def __init__(self, count: int = 2) -> None:
        sys.path.insert(0, str(HERE))
        from bench_send import _free_port

        self.port = _free_port()
        self.procs = [
            subprocess.Popen([sys.executable, "-c", SINK, str(self.port)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
            for _ in range(count)
        ]
        for proc in self.procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"

    def ask(
        self, command: str = "count", *, check: bool = True
    ) -> tuple[int, float | None, float | None, list[str]]:
        """(messages, first arrival, last arrival, recipients) since the last reset; exits
        if anybody got a message twice."""
        total, firsts, lasts, everyone = 0, [], [], []
        for proc in self.procs:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(command + "\n")
            proc.stdin.flush()
            n, first, last, got, twice = json.loads(proc.stdout.readline())
            if twice and check:
                raise SystemExit(f"delivered twice: {twice[:5]}")
            total += n
            firsts += [first] if first else []
            lasts += [last] if last else []
            everyone += got
        if check and len(everyone) != len(set(everyone)):
            raise SystemExit("a recipient got one issue on two connections")
        return total, min(firsts, default=None), max(lasts, default=None), everyone

    def stop(self) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(timeout=30)


def project(name: str, port: int, subscribers: int) -> Path:
    """A fresh folder with `subscribers` confirmed subscribers in its state database."""
    from feeds.audience import Audience

    work = HERE / ".work" / "bench_scale" / name
    shutil.rmtree(work, ignore_errors=True)
    (work / "digests").mkdir(parents=True)
    configure(work, port, connections=1, limit=3600)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    with Audience.open(work / "state" / "feeds.sqlite3") as audience, audience.writing() as conn:
        # The columns `Audience.add` writes, for many at once.
        conn.executemany(
            "INSERT INTO subscribers (address, email, name, categories, status, source,"
            " created, consented, updated) VALUES (?, ?, ?, ?, 'confirmed', 'cli', ?, ?, ?)",
            ((f"reader{i}@example.org", f"reader{i}@example.org", f"Reader {i}",
              CATEGORY_SETS[i % len(CATEGORY_SETS)], now, now, now)
             for i in range(subscribers)),
        )
    return work


def configure(work: Path, port: int, *, connections: int, limit: float) -> None:
    (work / "feeds.toml").write_text(
        f'[paths]\ninput = "{work / "digests"}"\noutput = "{work / "output"}"\n'
        f'state = "{work / "state" / "feeds.sqlite3"}"\ntemplates = "{ROOT / "templates"}"\n'
        f'subscribers = "{work / "none.csv"}"\n\n'
        f'[newsletter]\nunsubscribe_url = "https://digest.example.org/u?token={{token}}"\n\n'
        f'[smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\n'
        f"connections = {connections}\nsend_time_limit = {limit}\n",
        encoding="utf-8",
    )


def history(work: Path, days: int, subscribers: int) -> float:
    """`days` digests sent to everyone, one a day up to yesterday, with retention after each;
    seconds taken."""
    from feeds.addressing import message_id
    from feeds.config_file import load_settings
    from feeds.ledger import DigestRef, Ledger
    from feeds.recipients import Confirmed
    from feeds.retention import tidy

    started = time.perf_counter()
    settings = load_settings(work / "feeds.toml", {"FEEDS_UNSUBSCRIBE_SECRET": SECRET})
    today = datetime.now(UTC).replace(hour=7, minute=0, second=0, microsecond=0)
    moment = [today]
    ledger = Ledger.open(settings.paths.state, clock=lambda: moment[0])
    people = Confirmed(ledger.conn)
    conn = ledger.conn
    for day in range(days):
        moment[0] = today - timedelta(days=days - day)
        digest = DigestRef(f"{moment[0]:%Y-%m-%d}-h", moment[0])
        ledger.queue([digest], people.keys())
        if day == 0:
            first = next(e for e in ledger.iter_due())
            ledger.mark_sending(digest.id, first.recipient, message_id(first, settings))
            ledger.finish(digest.id, first.recipient, "sent", "250 2.0.0 Queued")
        stamp = int(moment[0].timestamp())
        with ledger.writing() as tx:
            # What mark_sending and finish leave, for the whole day in one statement: the
            # hash a random 64-bit integer (the real one is an HMAC: the same 8 bytes), one
            # row in a thousand a 550 that keeps its reply and Message-ID.
            tx.execute(
                "UPDATE ledger SET status = CASE WHEN (person + ?) % 1000 = 0 THEN 5 ELSE 0 END,"
                " attempts = 1, mhash = random(), first_attempt = ?, updated = ?,"
                " message_id = CASE WHEN (person + ?) % 1000 = 0 THEN ? ELSE NULL END,"
                " last_reply = CASE WHEN (person + ?) % 1000 = 0"
                " THEN '550 5.1.1 No such user' ELSE NULL END"
                " WHERE digest = (SELECT id FROM ledger_digests WHERE digest_id = ?)"
                " AND status IN (2, 3, 4)",
                (day * 7, stamp, stamp, day * 7, f"<{digest.id}.{'0' * 24}@example.org>",
                 day * 7, digest.id),
            )
        if day == 0:
            shapes = conn.execute(
                "SELECT DISTINCT status, attempts, mhash IS NULL, message_id IS NULL,"
                " last_reply IS NULL, first_attempt IS NULL FROM ledger WHERE status = 0"
            ).fetchall()
            assert len(shapes) == 1, f"synthetic rows differ from recorded ones: {shapes}"
        tidy(settings, ledger, lambda _: None)
    ledger.close()
    return time.perf_counter() - started


def state_mb(work: Path) -> float:
    path = work / "state" / "feeds.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    wal = path.with_name(path.name + "-wal")
    return (path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)) / 1e6


def new_digest(work: Path, day: int) -> Path:
    """Today's (+ `day`) digest, built: a bundled sample with every paper identity rewritten
    (`corpus.py`), so that each is news."""
    import random

    from corpus import DAILY_SAMPLES, _rewrite

    moment = (datetime.now(UTC) + timedelta(days=day)).date()
    path = work / "digests" / f"{moment.isoformat()}.txt"
    text = (ROOT / "digests" / DAILY_SAMPLES[0]).read_text(encoding="utf-8")
    path.write_text(_rewrite(text, moment, random.Random(day), [day * 100 + 7]), encoding="utf-8")
    done = subprocess.run([FEEDS, "--config", str(work / "feeds.toml"), "build"], env=_env(),
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"build failed:\n{done.stderr[-2000:]}")
    return path


def expected(digest: Path, count: int) -> int:
    """How many of the first `count` subscribers have a paper in the digest's categories."""
    from feeds.parse import parse_file

    codes = {i.category for i in parse_file(digest, tz=ZoneInfo("Asia/Shanghai")).items
             if i.category}
    wanted = [set(c.split()) for c in CATEGORY_SETS]
    return sum(1 for i in range(count) if not wanted[i % 4] or wanted[i % 4] & codes)


def timed_send(work: Path, sinks: Sinks, *, limited: bool) -> dict[str, float]:
    """One `feeds send`: seconds to the first message, messages/s, peak RSS, messages."""
    sinks.ask("reset")
    sync()
    started = time.time()
    proc = subprocess.Popen([FEEDS, "--config", str(work / "feeds.toml"), "send"], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    output = proc.stdout.read().decode("utf-8", "replace")
    _, status, usage = os.wait4(proc.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0 and not (limited and "time limit" in output):
        raise SystemExit(f"feeds send failed ({code}):\n{output[-2000:]}")
    count, first, last, _ = sinks.ask()
    if not count or first is None or last is None:
        raise SystemExit(f"nothing was sent:\n{output[-2000:]}")
    return {
        "first": first - started,
        "rate": (count - 1) / max(last - first, 1e-9),
        "mb": usage.ru_maxrss / 1024,
        "count": count,
        "wall": time.time() - started,
    }


def _env() -> dict[str, str]:
    return {**ENV, "FEEDS_UNSUBSCRIBE_SECRET": SECRET}


def main(argv: Sequence[str]) -> None:
    del argv
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{SUBSCRIBERS} subscribers in category sets {CATEGORY_SETS}, {DAYS} days of history"
          f"{'' if SCALE else ' (short run: make bench SCALE=1 for a year at 100,000)'};"
          f" load {load}", flush=True)
    sinks = Sinks()
    try:
        sys.path.insert(0, str(HERE))
        from bench_send import raw_ceiling

        ceiling = raw_ceiling(sinks.port)
        sinks.ask("reset", check=False)
        year = project("year", sinks.port, SUBSCRIBERS)
        seconds = history(year, DAYS, SUBSCRIBERS)
        size = state_mb(year)
        print(f"history: {DAYS} digests to {SUBSCRIBERS} in {seconds:.0f} s; state {size:.1f} MB",
              flush=True)

        today = new_digest(year, 0)
        one = timed_send(year, sinks, limited=False)
        want = expected(today, SUBSCRIBERS)
        print(f"new digest, 1 connection: first message {one['first']:.2f} s, "
              f"{one['rate']:.0f} msg/s, peak {one['mb']:.0f} MB, {one['count']:.0f} messages "
              f"exactly once, {one['wall']:.0f} s", flush=True)
        if one["count"] != want:
            raise SystemExit(f"sent {one['count']} messages, {want} expected")

        configure(year, sinks.port, connections=4, limit=60)
        new_digest(year, 1)
        four = timed_send(year, sinks, limited=True)
        short = project("short", sinks.port, SUBSCRIBERS)
        configure(short, sinks.port, connections=4, limit=60)
        history(short, 1, SUBSCRIBERS)
        new_digest(short, 1)
        fresh = timed_send(short, sinks, limited=True)
        print(f"next digest, 4 connections, 60 s: {four['rate']:.0f} msg/s, peak "
              f"{four['mb']:.0f} MB with {DAYS} digests of history, {fresh['mb']:.0f} MB with 1 "
              f"({fresh['rate']:.0f} msg/s); loopback ceiling {ceiling:.0f} msg/s "
              "(a do-nothing smtplib client, 1 connection)", flush=True)

        shutil.rmtree(short, ignore_errors=True)
        big = project("million", sinks.port, MILLION)
        configure(big, sinks.port, connections=4, limit=20)
        new_digest(big, 0)
        million = timed_send(big, sinks, limited=True)
        print(f"{MILLION} subscribers: first message {million['first']:.2f} s, peak "
              f"{million['mb']:.0f} MB", flush=True)
        shutil.rmtree(big, ignore_errors=True)
    finally:
        sinks.stop()
    scale = SUBSCRIBERS / 100_000
    print(f"load {'/'.join(f'{x:.1f}' for x in os.getloadavg())} at the end")
    print_verdicts({
        f"state < {300 * scale:.0f} MB": size < 300 * scale,
        "first message < 2 s": one["first"] < 2,
        f"{MILLION}: first < 15 s": million["first"] < 15,
        f"{MILLION}: < 300 MB": million["mb"] < 300,
        ">= 250/s on 1": one["rate"] >= 250,
        ">= 400/s on 4": four["rate"] >= 400,
        "RSS D=1 vs D=365 within 10 MB": abs(four["mb"] - fresh["mb"]) <= 10,
    })


if __name__ == "__main__":
    main(sys.argv[1:])
