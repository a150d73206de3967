"""`feeds run`, the command cron starts, on ten years of digests with a subscriber list.

Each step is the installed `feeds` entry point in a fresh process, timed whole (wall time and
peak memory), sending to a loopback SMTP sink in a process of its own that records every message
it accepts (recipient and Message-ID). Steps: the first run (full build, then the newest issue
to every subscriber), a run with nothing new, a run after one more digest, and a run with
nothing new after that. After each, what the server received is checked: the new issue reached
every subscriber with a matching category exactly once, and nobody ever got one issue twice.
Last, the sink's own pace: the last one-digest run's messages sent to it again by a bare
smtplib loop on one connection, the floor of that step's send.
Targets: no-op run < 0.3 s; one digest added < 2 s and < 200 MB. With the search index off
([site] search = false), as the targets were set; `bench_search_build.py` measures the build
with it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from zoneinfo import ZoneInfo

from measure import (
    FEEDS,
    best_of,
    fastest,
    from_one_state,
    print_table,
    print_verdicts,
    run,
    sync,
    workspace,
)

DAYS = 3650
SUBSCRIBERS = 200
CATEGORY_SETS = ("", "CV", "CL LG", "AS CV")
TARGETS = {"noop": 0.3, "one": 2.0, "one_mb": 200.0}
ONE_TRIES = 5

# Mail from this sender is the floor's replay (`smtp_floor`): accepted, never counted.
REPLAY_FROM = "replay@bench.invalid"

# The SMTP server, in a process of its own. A sink, as a relay's queue would be for the sender:
# it takes each message in one read, and keeps what the checks need. aiosmtpd, which the tests
# use as their real server, reads DATA a line at a time in Python: about 1.5 ms for each 40 KB
# newsletter (0.25 to 0.3 s of a 200-message step on this machine, measured against this
# sink with the same smtplib loop), which is the benchmark's time, not the sender's.
#
# Binds a free port itself (no race with another process picking the same one), says which,
# then answers each line on stdin: "count", with every (recipient, Message-ID) it accepted and
# how often; "mark", by forgetting the messages it kept; "save PATH", by writing the messages
# accepted since the last mark to PATH (JSON: sender, recipients, content as latin-1).
SINK = r"""
import asyncio, json, sys
from collections import Counter
from email.parser import BytesHeaderParser
from email.policy import default

received = Counter()
kept = []

def address(arg):
    return arg.partition(b"<")[2].partition(b">")[0].decode("utf-8")

async def session(reader, writer):
    sender, rcpts = None, []
    writer.write(b"220 sink ESMTP\r\n")
    while line := await reader.readline():
        verb = line[:4].upper()
        if verb in (b"EHLO", b"HELO"):
            reply = b"250-sink\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 0\r\n"
        elif verb == b"MAIL":
            sender, rcpts, reply = address(line), [], b"250 2.1.0 OK\r\n"
        elif verb == b"RCPT":
            rcpts.append(address(line))
            reply = b"250 2.1.5 OK\r\n"
        elif verb == b"DATA":
            writer.write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
            await writer.drain()
            # The message up to the lone dot, its dots unstuffed (RFC 5321 4.5.2; a message
            # starts with a header, never with a dot).
            data = (await reader.readuntil(b"\r\n.\r\n"))[:-3].replace(b"\r\n..", b"\r\n.")
            if sender != "REPLAY_FROM":
                headers = BytesHeaderParser(policy=default).parsebytes(data)
                for rcpt in rcpts:
                    received[f"{rcpt} {headers['Message-ID']}"] += 1
                kept.append((sender, rcpts, data))
            sender, rcpts, reply = None, [], b"250 2.0.0 Queued\r\n"
        elif verb == b"QUIT":
            writer.write(b"221 2.0.0 Bye\r\n")
            break
        elif verb == b"RSET":
            sender, rcpts, reply = None, [], b"250 2.0.0 OK\r\n"
        elif verb == b"NOOP":
            reply = b"250 2.0.0 OK\r\n"
        else:
            reply = b"502 5.5.1 Not implemented\r\n"
        writer.write(reply)
        await writer.drain()
    await writer.drain()
    writer.close()

async def main():
    global kept
    loop = asyncio.get_running_loop()
    server = await asyncio.start_server(session, "127.0.0.1", 0, limit=1 << 26)
    print(f"ready {server.sockets[0].getsockname()[1]}", flush=True)
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        command, _, argument = line.strip().partition(" ")
        if command == "mark":
            kept = []
            print("ok", flush=True)
        elif command == "save":
            with open(argument, "w", encoding="utf-8") as out:
                json.dump([(f, t, c.decode("latin-1")) for f, t, c in kept], out)
            print("ok", flush=True)
        else:
            print(json.dumps(received), flush=True)

asyncio.run(main())
""".replace("REPLAY_FROM", REPLAY_FROM)


class Sink:
    """The SMTP server in its own process, so that it takes no time from the measured one."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-c", SINK], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self._proc.stdout is not None
        ready, port = self._proc.stdout.readline().split()
        assert ready == "ready"
        self.port = int(port)

    def received(self) -> Counter[tuple[str, str]]:
        """How many messages each (recipient, digest id) got so far."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write("count\n")
        self._proc.stdin.flush()
        counts: Counter[tuple[str, str]] = Counter()
        for key, n in json.loads(self._proc.stdout.readline()).items():
            recipient, message_id = key.split(" ", 1)
            # Message-ID: <digest id>.<24 hex>@<sender domain>
            counts[recipient, message_id.strip("<>").split("@")[0].rsplit(".", 1)[0]] += n
        return counts

    def command(self, line: str) -> None:
        """"mark" or "save PATH" (see SINK)."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(line + "\n")
        self._proc.stdin.flush()
        assert self._proc.stdout.readline().strip() == "ok"

    def stop(self) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        self._proc.wait(timeout=30)


def smtp_floor(port: int, saved: Path) -> tuple[float, int, int]:
    """The messages of `saved` (a step's, as the sink kept them) sent again to the same sink by
    a bare smtplib loop on one connection, as `feeds run` sends on its default one: the sink's
    own pace, which no sender on one connection can beat. (seconds, messages, bytes)."""
    import smtplib
    import time

    messages = json.loads(saved.read_text(encoding="utf-8"))
    payloads = [(rcpts, content.encode("latin-1")) for _, rcpts, content in messages]
    with smtplib.SMTP("127.0.0.1", port) as client:
        client.ehlo()
        started = time.perf_counter()
        for rcpts, data in payloads:
            client.sendmail(REPLAY_FROM, rcpts, data)
        seconds = time.perf_counter() - started
    return seconds, len(payloads), sum(len(data) for _, data in payloads)


def write_subscribers(path: Path) -> dict[str, frozenset[str]]:
    """The list, and each address's categories (upper case; empty: every category)."""
    people = {
        f"reader{i}@example.org": CATEGORY_SETS[i % len(CATEGORY_SETS)]
        for i in range(SUBSCRIBERS)
    }
    rows = ["email,name,categories"] + [
        f"{email},Reader {i},{codes}" for i, (email, codes) in enumerate(people.items())
    ]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return {email: frozenset(codes.upper().split()) for email, codes in people.items()}


def expected(digest_file: Path, people: dict[str, frozenset[str]]) -> tuple[str, set[str]]:
    """The digest's id and who should get it: everyone whose categories it has a paper in."""
    from feeds.parse import parse_file

    digest = parse_file(digest_file, tz=ZoneInfo("Asia/Shanghai"))
    present = {item.category.upper() for item in digest.items if item.category}
    return digest.id, {email for email, codes in people.items() if not codes or codes & present}


def check_delivery(
    step: str, before: Counter[tuple[str, str]], after: Counter[tuple[str, str]],
    want: tuple[str, set[str]] | None, *, repeat: bool = False,
) -> int:
    """Fail the benchmark unless the step delivered exactly `want` (None: nothing)."""
    new = after - before
    # A repeated step (the same digest added again to a restored state) counts its own
    # messages only.
    twice = sorted(key for key, n in (new if repeat else after).items() if n > 1)
    problems = []
    if twice:
        problems.append(f"{len(twice)} got an issue twice, e.g. {twice[0]}")
    digest_id, recipients = want if want else ("", set())
    if set(new) != {(r, digest_id) for r in recipients}:
        got = Counter(d for _, d in new)
        problems.append(
            f"expected issue {digest_id or '(none)'} to {len(recipients)} subscribers, "
            f"the server received {dict(got) or 'nothing'}"
        )
    if problems:
        raise SystemExit(f"{step}: " + "; ".join(problems))
    return sum(new.values())


def main() -> None:
    from corpus import extra_digest

    sink = Sink()
    try:
        work, inputs, config = workspace(
            "bench_run", DAYS,
            f'[site]\nsearch = false\n[smtp]\nhost = "127.0.0.1"\nport = {sink.port}\n'
            'security = "none"',
        )
        people = write_subscribers(work / "subscribers.csv")
        newest = max(inputs.glob("*.txt"))
        python = sys.executable
        feeds = [FEEDS, "--config", str(config), "run"]
        print(
            f"corpus: {DAYS} digests; {SUBSCRIBERS} subscribers in category sets "
            f"{', '.join(repr(c) for c in CATEGORY_SETS)}; SMTP sink on 127.0.0.1:{sink.port}; "
            "[site] search = false",
            flush=True,
        )

        # Compile once (as installing does), then time.
        run([python, "-c", "import feeds.cli, feeds.build, feeds.deliver"])
        startup, startup_mb, _ = best_of([python, "-c", "import feeds"], 7)
        received = sink.received()

        sync()
        first, first_mb, first_out = run(feeds)
        now = sink.received()
        first_sent = check_delivery("first run", received, now, expected(newest, people))
        received = now

        sync()
        noop, noop_mb, noop_out = best_of(feeds, 5)
        now = sink.received()
        check_delivery("no-op run", received, now, None)

        # One digest added, five times from the same state and output: the best of five,
        # as for the other short steps; each run's time is printed.
        ones = []
        for attempt in from_one_state(work, ONE_TRIES):
            added = extra_digest(inputs, DAYS)
            sink.command("mark")
            sync()
            ones.append(run(feeds))
            now = sink.received()
            one_sent = check_delivery(
                "one digest added", received, now, expected(added, people), repeat=attempt > 0
            )
            received = now
        one, one_mb, one_out = fastest(ones)
        # The last try's messages, sent again the fastest way there is, once the checks of
        # every step are done (the sink does not count them).
        saved = work / "one-digest-messages.json"
        sink.command(f"save {saved}")

        sync()
        noop_after, noop_after_mb, after_out = best_of(feeds, 5)
        check_delivery("no-op after that", received, sink.received(), None, repeat=True)
        floor, floor_count, floor_bytes = smtp_floor(sink.port, saved)
    finally:
        sink.stop()

    print_table([
        ("python -c 'import feeds'", startup, startup_mb, ""),
        ("first run", first, first_mb, f"full build, {first_sent} messages sent; no target"),
        ("no-op run", noop, noop_mb,
         f"best of 5; target < {TARGETS['noop']} s; {noop / startup:.1f}x start-up"),
        ("one digest added", one, one_mb,
         f"best of {ONE_TRIES} ({', '.join(f'{r[0]:.2f}' for r in ones)} s), "
         f"{one_sent} messages sent each time; target < {TARGETS['one']:.0f} s "
         f"and < {TARGETS['one_mb']:.0f} MB"),
        ("no-op after that", noop_after, noop_after_mb,
         f"best of 5; {noop_after / startup:.1f}x start-up"),
        ("the sink's own pace", floor, None,
         f"the last try's {floor_count} messages ({floor_bytes / floor_count / 1024:.0f} KB "
         "on average) sent again by a bare smtplib loop on one connection: what the send of "
         f"'one digest added' cannot go below; the rest of that step {one - floor:.2f} s"),
    ])
    # cron mails whatever a run prints; a successful run is meant to print nothing.
    for step, out in (("first run", first_out), ("no-op run", noop_out),
                      ("one digest added", one_out), ("no-op after that", after_out)):
        if out.strip():
            print(f"{step} printed:\n{out.rstrip()}")
    print(f"delivery checked: each issue reached each matching subscriber once "
          f"({first_sent + ONE_TRIES * one_sent} messages in all, none twice in one step)")
    print_verdicts({
        "noop": noop < TARGETS["noop"],
        "one": one < TARGETS["one"],
        "one_mb": one_mb < TARGETS["one_mb"],
    })


if __name__ == "__main__":
    main()
