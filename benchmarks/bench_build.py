"""`feeds build` on ten years of digests: full build, no-op rebuild, one more digest.

Whole-process wall times (what cron sees), each with the child's peak memory, in one run on one
machine, compared with `python -c "import feeds"` started the same way.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DAYS = 3650
# An installed package has its bytecode compiled; a checkout run with PYTHONDONTWRITEBYTECODE
# would compile every module on every start and measure the compiler, not the build.
ENV = {
    **{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
    "PYTHONPYCACHEPREFIX": str(HERE / ".work" / "pycache"),
}
TARGETS = {"noop": 0.5, "noop_ratio": 3.0, "one": 2.0, "full": 60.0, "peak_mb": 300.0}


def run(command: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MB, stdout+stderr) of one process."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=ENV)
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


def best_of(command: list[str], times: int) -> tuple[float, float]:
    runs = [run(command) for _ in range(times)]
    return min(r[0] for r in runs), max(r[1] for r in runs)


def phases(output: str) -> dict[str, float]:
    """The phase timings `feeds build -v` prints on its summary line."""
    found = re.findall(r"(parse|newsletter|archive|feeds|site|write) (\d+\.\d+) s", output)
    return {name: float(value) for name, value in found}


def main() -> None:
    sys.path.insert(0, str(HERE))
    from corpus import ensure_corpus, extra_digest

    corpus = ensure_corpus(DAYS)
    work = HERE / ".work" / "bench_build"
    shutil.rmtree(work, ignore_errors=True)
    inputs = work / "digests"
    shutil.copytree(corpus, inputs, ignore=shutil.ignore_patterns(".*"))
    config = work / "feeds.toml"
    config.write_text(
        f'[paths]\ninput = "{inputs}"\noutput = "{work / "output"}"\n'
        f'state = "{work / "state" / "feeds.sqlite3"}"\ntemplates = "{ROOT / "templates"}"\n',
        encoding="utf-8",
    )
    python = sys.executable
    feeds = [str(Path(python).parent / "feeds"), "--config", str(config), "build", "-v"]
    size = sum(p.stat().st_size for p in inputs.glob("*.txt")) / 1e6
    print(f"corpus: {DAYS} digests, {size:.1f} MB; cores: {os.cpu_count()}")

    # Compile once (as installing does), then time.
    run([python, "-c", "import feeds.cli, feeds.build"])
    startup, startup_mb = best_of([python, "-c", "import feeds"], 7)
    # Each timed step starts with the disk idle, as a cron run does: not still writing back the
    # hundreds of megabytes the step before wrote.
    os.sync()
    full, full_mb, full_out = run(feeds)
    os.sync()
    noop, noop_mb = best_of(feeds, 7)
    extra_digest(inputs, DAYS)
    os.sync()
    one, one_mb, one_out = run(feeds)
    noop_after, _ = best_of(feeds, 3)
    children_mb = _children_peak_mb()

    full_phases = phases(full_out)
    rows = [
        ("python -c 'import feeds'", startup, startup_mb, ""),
        ("full build", full, full_mb, f"target < {TARGETS['full']:.0f} s"),
        ("no-op rebuild", noop, noop_mb,
         f"target < {TARGETS['noop']} s and <= {TARGETS['noop_ratio']:.0f}x start-up: "
         f"{noop / startup:.1f}x"),
        ("one digest added", one, one_mb, f"target < {TARGETS['one']:.0f} s"),
        ("no-op after that", noop_after, 0.0, f"{noop_after / startup:.1f}x start-up"),
    ]
    print(f"{'':26} {'wall':>9} {'peak RSS':>10}")
    for name, wall, mb, note in rows:
        print(f"{name:26} {wall:8.3f}s {mb:8.1f}MB  {note}")
    peak = max(full_mb, noop_mb, one_mb, children_mb)
    print(f"peak memory of any process: {peak:.1f} MB (target < {TARGETS['peak_mb']:.0f} MB)")
    if full_phases:
        total = sum(full_phases.values())
        shares = ", ".join(f"{k} {v:.1f} s ({v / full:.0%})" for k, v in full_phases.items())
        print(f"full build phases: {shares}; other {full - total:.1f} s")
    print(f"one digest phases: {phases(one_out)}")
    verdicts = {
        "full": full < TARGETS["full"],
        "noop": noop < TARGETS["noop"] and noop <= TARGETS["noop_ratio"] * startup,
        "one": one < TARGETS["one"],
        "peak": peak < TARGETS["peak_mb"],
    }
    print("targets: " + ", ".join(f"{k} {'met' if ok else 'MISSED'}" for k, ok in verdicts.items()))


def _children_peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


if __name__ == "__main__":
    main()
