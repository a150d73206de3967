"""Timing a whole `feeds` process as cron starts it: wall time and peak memory, one table.

Shared by the benchmarks that start the installed entry point (bench_build, bench_run).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
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


def snapshot(work: Path, folders: Sequence[str]) -> Path:
    """A copy of `folders` of `work` to go back to (`restore`): the state copied, the output
    hard-linked (a build replaces files by renaming and removes them by unlinking, so the
    snapshot's files are never touched), in a second or two for ten years of output."""
    saved = work.parent / (work.name + ".snapshot")
    subprocess.run(["rm", "-rf", str(saved)], check=True)
    saved.mkdir()
    for name in folders:
        link = ["-al"] if name == "output" else ["-a"]
        subprocess.run(["cp", *link, str(work / name), str(saved / name)], check=True)
    return saved


def restore(saved: Path, work: Path, folders: Sequence[str]) -> None:
    """Put `folders` of `work` back as `snapshot` found them."""
    for name in folders:
        subprocess.run(["rm", "-rf", str(work / name)], check=True)
        link = ["-al"] if name == "output" else ["-a"]
        subprocess.run(["cp", *link, str(saved / name), str(work / name)], check=True)


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
