"""Pagefind's indexer, driven directly: each period's records in, each period's bundle out.

Pagefind's binary (`pagefind_extended --service`, from PyPI `pagefind-bin-extended`) is an
indexing service that reads requests from stdin and answers on stdout, each message base64 of
a JSON object followed by a comma; the `pagefind` package's own client speaks the same
protocol. That client waits for every answer before sending the next request (one pipe round
trip per record) and paused 0.1 s before each read; this one writes all of a process's
requests from a thread while reading the answers, and keeps the files in memory (`GetFiles`),
so no temporary folder is written. Measured where the time goes (benchmarks/README.md): the
round trips were never the cost; Pagefind's own work is, about 1.5 ms a record, and one index
runs mostly on one core. So the periods are shared out among up to two service processes.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from feeds.errors import OutputError
from feeds.search import Record

# Service processes at once: Pagefind keeps a core busy per index; more than the machine's
# cores only adds switching, and two already halve a full indexing on a 2-core machine.
MAX_PROCESSES = 2


def executable() -> Path:
    """The extended binary (it segments Chinese into words), or a clear error."""
    try:
        from pagefind_bin_extended import get_executable  # type: ignore[import-untyped]
    except ImportError as exc:
        raise OutputError(
            "[site] search is on, but Pagefind's extended binary is not installed",
            hint="install digest-feeds again (pagefind[extended] is a dependency), or set "
            "[site] search = false",
        ) from exc
    found: Path = get_executable()
    return found


class Warm:
    """Service processes started before their records are ready. The first Chinese record a
    process indexes loads its segmenter's dictionary, 0.2 s of the 0.45 s a month of papers
    takes; started early (`feeds.search_build` does at planning), that happens while the build
    renders the rest. Processes not taken are stopped by `close`, or end with the program
    (the service exits at the end of its input)."""

    def __init__(self, processes: int, language: str) -> None:
        binary = executable()
        warm_up: list[dict[str, Any]] = [
            {"type": "NewIndex", "config": None},
            {"type": "AddRecord", "index_id": 0, "url": "/", "content": "预热 warm",
             "language": language},
            {"type": "DeleteIndex", "index_id": 0},
        ]
        self.ready: list[subprocess.Popen[bytes]] = []
        for _ in range(processes):
            process = _start(binary)
            assert process.stdin is not None
            try:
                process.stdin.write(
                    b"".join(_message(n, payload) for n, payload in enumerate(warm_up, start=1)))
                process.stdin.flush()
            except OSError:  # a service that died: `_run` finds out and says so
                pass
            self.ready.append(process)

    def take(self) -> subprocess.Popen[bytes] | None:
        return self.ready.pop() if self.ready else None

    def close(self) -> None:
        while self.ready:
            process = self.ready.pop()
            process.kill()
            process.wait()
            for pipe in (process.stdin, process.stdout):
                if pipe is not None:
                    pipe.close()


# Messages a warm process has had, and the indexes it made, before its first real one.
_WARM_MESSAGES = 3
_WARM_INDEXES = 1


def index_periods(
    periods: Mapping[str, Sequence[Record]],
    processes: int = MAX_PROCESSES,
    warm: Warm | None = None,
) -> dict[str, dict[str, bytes]]:
    """{period: {path in the bundle: bytes}} for each period's records, each its own index;
    with `warm`, its processes are used first."""
    if not periods:
        return {}
    binary = executable()
    # Biggest first, each to the process with the least work so far: the processes end close
    # together.
    loads: list[list[str]] = [[] for _ in range(max(1, min(processes, len(periods))))]
    sizes = [0] * len(loads)
    for name in sorted(periods, key=lambda p: (-len(periods[p]), p)):
        least = sizes.index(min(sizes))
        loads[least].append(name)
        sizes[least] += len(periods[name])
    with ThreadPoolExecutor(len(loads), thread_name_prefix="pagefind") as pool:
        started = [warm.take() if warm else None for _ in loads]
        done = pool.map(
            lambda names, process: _run(binary, [(n, periods[n]) for n in names], process),
            loads, started,
        )
        made: dict[str, dict[str, bytes]] = {}
        for part in done:
            made.update(part)
    return made


def _start(binary: Path) -> subprocess.Popen[bytes]:
    try:
        return subprocess.Popen(
            [str(binary), "--service"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, cwd=os.getcwd(),
        )
    except OSError as exc:
        raise OutputError(f"cannot build the search index: cannot start Pagefind: {exc}") from exc


def _run(
    binary: Path,
    work: Sequence[tuple[str, Sequence[Record]]],
    process: subprocess.Popen[bytes] | None = None,
) -> dict[str, dict[str, bytes]]:
    """One service process (`process`, a warm one, or a new one) indexing `work` (period,
    records) one index after another."""
    first_message, first_index = (_WARM_MESSAGES, _WARM_INDEXES) if process else (0, 0)
    # Message ids run on in the order `_requests` makes them: per index, NewIndex, a message
    # per record, GetFiles (the answer with the files), DeleteIndex.
    files_at: dict[int, str] = {}
    count = first_message
    for name, found in work:
        count += 2 + len(found)
        files_at[count] = name
        count += 1
    if process is None:
        process = _start(binary)
    assert process.stdin is not None and process.stdout is not None
    # Requests are made as they are written, not all at once first: ten years of records,
    # encoded, would be another 130 MB held until the end.
    failed: list[BaseException] = []
    requests = _requests(work, first_message, first_index)
    writer = threading.Thread(target=_send, args=(process.stdin, requests, failed), daemon=True)
    writer.start()
    made: dict[str, dict[str, bytes]] = {}
    try:
        for message_id, payload in _answers(process.stdout, count):
            if payload.get("type") == "Error":
                raise OutputError(f"cannot build the search index: {payload.get('message')}")
            done = files_at.get(message_id)
            if done is not None:
                made[done] = {
                    file["path"]: base64.b64decode(file["content"]) for file in payload["files"]
                }
    finally:
        # Every answer is in (or an error came): the service has nothing more to say.
        process.kill()
        process.wait()
        writer.join()
        with contextlib.suppress(OSError, ValueError):
            process.stdin.close()
        process.stdout.close()
    if failed and not isinstance(failed[0], BrokenPipeError):
        raise OutputError(f"cannot build the search index: {failed[0]}") from failed[0]
    if len(made) != len(work):
        raise OutputError("cannot build the search index: Pagefind stopped before the end")
    return made


def _requests(
    work: Sequence[tuple[str, Sequence[Record]]], message_id: int, first_index: int
) -> Iterator[bytes]:

    def message(payload: dict[str, Any]) -> bytes:
        nonlocal message_id
        message_id += 1
        return _message(message_id, payload)

    for index_id, (_name, found) in enumerate(work, start=first_index):
        yield message({"type": "NewIndex", "config": None})
        for record in found:
            yield message({
                "type": "AddRecord", "index_id": index_id, "url": record.url,
                "content": record.content, "language": record.language, "meta": record.meta,
                "filters": record.filters, "sort": record.sort,
            })
        yield message({"type": "GetFiles", "index_id": index_id})
        yield message({"type": "DeleteIndex", "index_id": index_id})


def _message(message_id: int, payload: dict[str, Any]) -> bytes:
    body = json.dumps({"message_id": message_id, "payload": payload}, ensure_ascii=False)
    return base64.b64encode(body.encode("utf-8")) + b","


def _send(stdin: Any, requests: Iterable[bytes], failed: list[BaseException]) -> None:
    try:
        for request in requests:
            stdin.write(request)
        # Not closed: the service exits at the end of its input at once, with answers unsent.
        stdin.flush()
    except BaseException as exc:
        # A request that could not be made, or a service that died (a broken pipe): closing
        # its input ends it, so the reader stops waiting, and `_run` reports this.
        failed.append(exc)
        with contextlib.suppress(OSError, ValueError):
            stdin.close()


def _answers(stdout: Any, count: int) -> Iterable[tuple[int, dict[str, Any]]]:
    """(message id, payload) of each answer, until `count` have come or the output ends."""
    pending = b""
    seen = 0
    while seen < count:
        chunk = os.read(stdout.fileno(), 1 << 20)
        if not chunk:
            return
        pending += chunk
        *whole, pending = pending.split(b",")
        for part in whole:
            answer = json.loads(base64.b64decode(part))
            seen += 1
            yield int(answer.get("message_id") or 0), answer.get("payload") or {}
