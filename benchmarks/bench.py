"""`make bench`: every benchmarks/bench_*.py, each in a fresh process, in one run.

Figures from one run on one machine are comparable with each other (ratios), not with another
machine's; that is why each benchmark reports ratios beside its absolute times.
"""

from __future__ import annotations

import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    sys.path.insert(0, str(HERE))
    from corpus import ensure_corpus

    started = time.perf_counter()
    corpus = ensure_corpus(3650)
    print(f"# digest-feeds benchmarks on {platform.machine()}, Python {platform.python_version()}")
    print(f"corpus: {corpus} ({time.perf_counter() - started:.1f} s to prepare)")
    failed = []
    for script in sorted(HERE.glob("bench_*.py")):
        print(f"\n## {script.stem}", flush=True)
        result = subprocess.run([sys.executable, str(script)], check=False)
        if result.returncode != 0:
            failed.append(script.name)
    if failed:
        print(f"\nFAILED: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
