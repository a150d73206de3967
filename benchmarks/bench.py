"""`make bench`: every benchmarks/bench_*.py, each in a fresh process, in one run.

Figures from one run on one machine are comparable with each other (ratios), not with another
machine's; that is why each benchmark reports ratios beside its absolute times.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def describe_code() -> str:
    """The commit measured, and whether the package had changes not yet committed."""
    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(HERE.parent), *args], capture_output=True, text=True, check=False
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return "not a git checkout"
    dirty = git("status", "--porcelain", "--", "feeds", "pyproject.toml", "templates")
    return f"commit {commit}" + (" with uncommitted changes to the package" if dirty else "")


def load() -> str:
    """The 1, 5 and 15 minute load averages."""
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> int:
    sys.path.insert(0, str(HERE))
    from corpus import ensure_corpus

    started = time.perf_counter()
    corpus = ensure_corpus(3650)
    print(f"# digest-feeds benchmarks on {platform.machine()}, Python {platform.python_version()}")
    print(f"code: {describe_code()}; {os.cpu_count()} cores, load {load()} at start")
    print(f"corpus: {corpus} ({time.perf_counter() - started:.1f} s to prepare)")
    failed = []
    for script in sorted(HERE.glob("bench_*.py")):
        print(f"\n## {script.stem}", flush=True)
        # `make bench SCALE=1`: bench_scale simulates a year at 100,000 subscribers (long).
        scale = ["--scale"] if "--scale" in sys.argv and script.name == "bench_scale.py" else []
        result = subprocess.run([sys.executable, str(script), *scale], check=False)
        if result.returncode != 0:
            failed.append(script.name)
    # The machine may be shared: how busy it was says how far to trust the absolute times.
    print(f"\nload {load()} at the end")
    if failed:
        print(f"\nFAILED: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
