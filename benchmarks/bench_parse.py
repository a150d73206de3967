"""Parse throughput on the ten-year corpus, against merely reading and decoding the same files.

Target: the whole corpus parses in under 4 s, within 15x of read+decode. Both are measured in
one run on one machine, so the ratio is what compares across machines.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus import make_corpus

from feeds.parse import parse_file
from feeds.textutil import decode

DAYS = 3650
TARGET_SECONDS = 4.0
TARGET_RATIO = 15.0


def _best_of(runs: int, work: list[Path], step: Callable[[Path], None]) -> float:
    """Fastest of `runs` passes over all files: the least disturbed by other processes."""
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        for path in work:
            step(path)
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    tz = ZoneInfo("Asia/Shanghai")
    with tempfile.TemporaryDirectory(prefix="bench-parse-") as tmp:
        paths = make_corpus(Path(tmp) / "digests", days=DAYS)
        size = sum(path.stat().st_size for path in paths)

        def read(path: Path) -> None:
            decode(path.read_bytes(), path=str(path))

        def parse(path: Path) -> None:
            parse_file(path, tz=tz)

        # Warm the page cache and the regex cache once so both sides measure steady state.
        for path in paths:
            read(path)
        items = sum(len(parse_file(path, tz=tz).items) for path in paths)
        read_s = _best_of(3, paths, read)
        parse_s = _best_of(3, paths, parse)

    megabytes = size / 1e6
    ratio = parse_s / read_s
    print(f"corpus: {len(paths)} digests, {megabytes:.1f} MB, {items} items")
    print(f"read+decode: {read_s:.3f} s  ({megabytes / read_s:.0f} MB/s)")
    print(f"parse:       {parse_s:.3f} s  ({megabytes / parse_s:.1f} MB/s)")
    print(f"ratio parse / read+decode: {ratio:.1f}x (target <= {TARGET_RATIO:.0f}x)")
    ok = parse_s < TARGET_SECONDS and ratio <= TARGET_RATIO
    verdict = "met" if ok else "MISSED"
    # A missed target is reported, as by every benchmark; only a benchmark that cannot run fails.
    print(f"target: {verdict} (< {TARGET_SECONDS:.0f} s and <= {TARGET_RATIO:.0f}x)")


if __name__ == "__main__":
    main()
