"""`feeds build` with the search on ([site] search = true) on ten years of digests: the full
build (every month indexed), the no-op rebuild (nothing indexed), and one more digest (its
month alone indexed again). Whole-process wall times, as in bench_build.py. Target: one digest
added < 3 s with the search on (issue 14).
"""

from __future__ import annotations

import sys

from bench_build import phases
from measure import FEEDS, best_of, print_table, print_verdicts, run, sync, workspace

DAYS = 3650
TARGETS = {"one": 3.0}


def main() -> None:
    from corpus import extra_digest

    _, inputs, config = workspace("bench_search_build", DAYS, "[site]\nsearch = true")
    feeds = [FEEDS, "--config", str(config), "build", "-v"]
    run([sys.executable, "-c", "import feeds.cli, feeds.build"])
    sync()
    full, full_mb, full_out = run(feeds)
    sync()
    noop, noop_mb, noop_out = best_of(feeds, 3)
    extra_digest(inputs, DAYS)
    sync()
    one, one_mb, one_out = run(feeds)
    print_table([
        ("full build, search on", full, full_mb, f"phases {phases(full_out)}"),
        ("no-op rebuild", noop, noop_mb, "indexes nothing"),
        ("one digest added, search on", one, one_mb,
         f"target < {TARGETS['one']:.0f} s; phases {phases(one_out)}"),
    ])
    print_verdicts({
        "one": one < TARGETS["one"],
        "noop indexes nothing": "search" not in phases(noop_out),
    })


if __name__ == "__main__":
    main()
