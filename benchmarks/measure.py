"""Timing a whole `feeds` process as cron starts it: wall time and peak memory, one table.

Shared by the benchmarks that start the installed entry point (bench_build, bench_run).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# The installed `feeds` script beside the interpreter running the benchmark (the venv's).
FEEDS = str(Path(sys.executable).parent / "feeds")
# An installed package has its bytecode compiled; a checkout run with PYTHONDONTWRITEBYTECODE
# would compile every module on every start and measure the compiler, not the command.
ENV = {
    **{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
    "PYTHONPYCACHEPREFIX": str(HERE / ".work" / "pycache"),
}


def run(command: Sequence[str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MB, stdout+stderr) of one process; exits if it fails."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=ENV
    )
    assert proc.stdout is not None
    output = proc.stdout.read().decode("utf-8", "replace")
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(command)}\n{output[-2000:]}")
    # ru_maxrss is in kilobytes on Linux: the peak of the process (or of any of its own
    # children it waited for, such as render workers).
    return wall, usage.ru_maxrss / 1024, output


def best_of(command: Sequence[str], times: int) -> tuple[float, float, str]:
    """Fastest wall time of `times` runs (the least disturbed), the highest peak, any output."""
    runs = [run(command) for _ in range(times)]
    return min(r[0] for r in runs), max(r[1] for r in runs), "".join(r[2] for r in runs)


def fastest(runs: Sequence[tuple[float, float, str]]) -> tuple[float, float, str]:
    """Of runs of one step: the fastest's wall time and output, and the highest peak."""
    wall, _, output = min(runs, key=lambda r: r[0])
    return wall, max(r[1] for r in runs), output


def workspace(name: str, days: int, settings: str) -> tuple[Path, Path, Path]:
    """A fresh benchmarks/.work/<name>: the corpus of `days` digests copied into digests/, and
    a feeds.toml with its paths there and `settings` (more TOML). (work, inputs, config)."""
    from corpus import ensure_corpus

    corpus = ensure_corpus(days)
    work = HERE / ".work" / name
    shutil.rmtree(work, ignore_errors=True)
    inputs = work / "digests"
    shutil.copytree(corpus, inputs, ignore=shutil.ignore_patterns(".*"))
    config = work / "feeds.toml"
    config.write_text(
        f'{settings}\n[paths]\ninput = "{inputs}"\noutput = "{work / "output"}"\n'
        f'state = "{work / "state" / "feeds.sqlite3"}"\ntemplates = "{ROOT / "templates"}"\n'
        f'subscribers = "{work / "subscribers.csv"}"\n',
        encoding="utf-8",
    )
    return work, inputs, config


def from_one_state(work: Path, tries: int) -> Iterator[int]:
    """Each try (0, 1, ...) of a step that changes `work`, all from the state it has now: its
    digests, state and output are put back between tries from a snapshot (the state copied,
    the output hard-linked: a build replaces files by renaming and removes them by unlinking,
    so the snapshot's files are never touched), in a second or two for ten years of output."""
    folders = ("digests", "state", "output")
    saved = work.parent / (work.name + ".snapshot")
    shutil.rmtree(saved, ignore_errors=True)
    saved.mkdir()
    try:
        _copy(work, saved, folders)
        for attempt in range(tries):
            if attempt:
                for name in folders:
                    shutil.rmtree(work / name, ignore_errors=True)
                _copy(saved, work, folders)
            yield attempt
    finally:
        shutil.rmtree(saved, ignore_errors=True)


def _copy(source: Path, dest: Path, folders: Sequence[str]) -> None:
    for name in folders:
        link = ["-al"] if name == "output" else ["-a"]
        subprocess.run(["cp", *link, str(source / name), str(dest / name)], check=True)


def sync() -> None:
    """Each timed step starts with the disk idle, as a cron run does: not still writing back
    the hundreds of megabytes the step before wrote."""
    os.sync()


def print_table(rows: Sequence[tuple[str, float, float | None, str]]) -> None:
    """Rows of (step, wall seconds, peak MB or None, note)."""
    width = max(26, *(len(row[0]) for row in rows))
    print(f"{'':{width}} {'wall':>9} {'peak RSS':>10}")
    for name, wall, mb, note in rows:
        peak = f"{mb:8.1f}MB" if mb is not None else f"{'':10}"
        print(f"{name:{width}} {wall:8.3f}s {peak}  {note}".rstrip())


def print_verdicts(verdicts: Mapping[str, bool]) -> None:
    print("targets: " + ", ".join(f"{k} {'met' if ok else 'MISSED'}" for k, ok in verdicts.items()))
