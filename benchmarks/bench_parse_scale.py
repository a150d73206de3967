"""Parsing one enormous daily digest: 10,000 and 100,000 numbered featured entries.

Each file has the shape of a real daily digest (see digests/2021-03-30.txt): a category legend,
then per entry a `N、[LG] Title N` line, an author line, an affiliation line, a body line with a
Chinese summary and an English abstract, and an arXiv link. Each file is parsed by
`feeds.parse.parse_file` in a fresh process (timed around the call, with the process's peak
memory), given at most 120 s. Targets: 100,000 entries in < 10 s, and as many entries parsed as
were written, at both sizes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from measure import ENV, HERE, print_verdicts

SIZES = (10_000, 100_000)
TARGET_SECONDS = 10.0
TIMEOUT = 120.0
CATEGORIES = ("LG", "CV", "CL", "AS", "RO")

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from zoneinfo import ZoneInfo
from feeds.parse import parse_file

tz = ZoneInfo("Asia/Shanghai")
started = time.perf_counter()
digest = parse_file(Path(sys.argv[1]), tz=tz)
seconds = time.perf_counter() - started
print(json.dumps({
    "seconds": seconds,
    "items": len(digest.items),
    "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""


def write_digest(path: Path, entries: int) -> None:
    """A daily digest of `entries` featured papers, numbered from 1, each distinct."""
    lines = [
        "LG - 机器学习 CV - 计算机视觉 CL - 计算与语言 AS - 音频与语音 RO - 机器人 "
        "(*表示值得重点关注)",
        "",
    ]
    for n in range(1, entries + 1):
        lines += [
            f"{n}、[{CATEGORIES[(n - 1) % len(CATEGORIES)]}] Title {n}",
            "",
            "A. Author, B. Author",
            "[MIT & CMU]",
            f"论文{n}的中文摘要。提出一种新的自监督学习方法,在多个基准上取得了更好的结果。 "
            f"We study problem {n} and propose a method that learns representations from "
            "unlabeled data, improving accuracy on several benchmarks.",
            f"https://arxiv.org/abs/2101.{n - 1:05d}",
            "",
        ]
    path.write_text("\n".join(lines), encoding="utf-8")


def parse_in_child(path: Path) -> dict[str, float] | None:
    """The child's figures, or None if it did not finish within TIMEOUT (it is killed)."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(path)],
            capture_output=True, text=True, env=ENV, timeout=TIMEOUT, check=False,
        )
    except subprocess.TimeoutExpired:
        return None
    if done.returncode != 0:
        raise SystemExit(f"parsing {path} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def main() -> None:
    work = HERE / ".work" / "parse_scale"
    work.mkdir(parents=True, exist_ok=True)
    verdicts = {}
    seconds: dict[int, float] = {}
    print(f"{'entries':>8} {'MB':>6} {'parse':>9} {'peak RSS':>10} {'parsed':>8}", flush=True)
    for entries in SIZES:
        path = work / f"2021-01-{entries // 10_000:02d}.txt"
        write_digest(path, entries)
        size = path.stat().st_size / 1e6
        figures = parse_in_child(path)
        if figures is None:
            print(f"{entries:8} {size:6.1f}  did not finish in {TIMEOUT:.0f} s", flush=True)
            verdicts[f"{entries} entries counted"] = False
            if entries == SIZES[-1]:
                verdicts[f"{entries} entries < {TARGET_SECONDS:.0f} s"] = False
            continue
        items = int(figures["items"])
        seconds[entries] = figures["seconds"]
        note = "all" if items == entries else f"{entries - items} missing"
        print(
            f"{entries:8} {size:6.1f} {figures['seconds']:8.3f}s {figures['peak_mb']:8.1f}MB "
            f"{items:8}  {note}",
            flush=True,
        )
        verdicts[f"{entries} entries counted"] = items == entries
        if entries == SIZES[-1]:
            verdicts[f"{entries} entries < {TARGET_SECONDS:.0f} s"] = (
                figures["seconds"] < TARGET_SECONDS
            )
    small, large = (seconds.get(n) for n in SIZES)
    if small and large:
        print(
            f"{SIZES[-1]:,} vs {SIZES[0]:,} entries: {large / small:.1f}x the time for "
            f"{SIZES[-1] // SIZES[0]}x the entries"
        )
    print_verdicts(verdicts)


if __name__ == "__main__":
    main()
