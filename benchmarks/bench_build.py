"""`feeds build` on ten years of digests: full build, no-op rebuild, one more digest, and a
forced re-render of everything, with the search index off ([site] search = false): these are
the build's own targets; `bench_search_build.py` measures the same steps with the index, whose
one-digest target (< 3 s) includes it.

Whole-process wall times (what cron sees), each with the process's peak memory (including the
render workers it waited for), in one run on one machine, compared with `python -c "import
feeds"` started the same way. Targets: full build < 60 s, one digest added < 2 s, no-op < 0.3 s,
and < 300 MB on every path (the forced re-render renders every newsletter again, so it is the
path most likely to need memory).
"""

from __future__ import annotations

import re
import resource
import sys

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
TARGETS = {"full": 60.0, "one": 2.0, "noop": 0.3, "peak_mb": 300.0}
ONE_TRIES = 5


def phases(output: str) -> dict[str, float]:
    """The phase timings `feeds build -v` prints on its summary line."""
    names = "parse|assemble|newsletter|archive|feeds|history|search|site|write"
    found = re.findall(rf"({names}) (\d+\.\d+) s", output)
    return {name: float(value) for name, value in found}


def main() -> None:
    from corpus import extra_digest

    work, inputs, config = workspace("bench_build", DAYS, "[site]\nsearch = false")
    python = sys.executable
    feeds = [FEEDS, "--config", str(config), "build", "-v"]
    size = sum(p.stat().st_size for p in inputs.glob("*.txt")) / 1e6
    print(f"corpus: {DAYS} digests, {size:.1f} MB; [site] search = false")

    # Compile once (as installing does), then time.
    run([python, "-c", "import feeds.cli, feeds.build"])
    startup, startup_mb, _ = best_of([python, "-c", "import feeds"], 7)
    sync()
    full, full_mb, full_out = run(feeds)
    sync()
    noop, noop_mb, _ = best_of(feeds, 7)
    # One digest added, five times from the same state and output: the best of five, as
    # for the other short steps; each run's time is printed.
    ones = []
    for _ in from_one_state(work, ONE_TRIES):
        extra_digest(inputs, DAYS)
        sync()
        ones.append(run(feeds))
    one, one_mb, one_out = fastest(ones)
    sync()
    noop_after, noop_after_mb, _ = best_of(feeds, 3)
    sync()
    force, force_mb, force_out = run([*feeds, "--force"])
    children_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024

    print_table([
        ("python -c 'import feeds'", startup, startup_mb, ""),
        ("full build", full, full_mb, f"target < {TARGETS['full']:.0f} s"),
        ("no-op rebuild", noop, noop_mb,
         f"target < {TARGETS['noop']} s; {noop / startup:.1f}x start-up"),
        ("one digest added", one, one_mb,
         f"best of {ONE_TRIES} ({', '.join(f'{r[0]:.2f}' for r in ones)} s); "
         f"target < {TARGETS['one']:.0f} s"),
        ("no-op after that", noop_after, noop_after_mb, f"{noop_after / startup:.1f}x start-up"),
        ("re-render everything", force, force_mb,
         f"build --force, {force / full:.2f}x the full build"),
    ])
    peak = max(full_mb, noop_mb, *(r[1] for r in ones), noop_after_mb, force_mb, children_mb)
    print(f"peak memory of any process: {peak:.1f} MB (target < {TARGETS['peak_mb']:.0f} MB)")
    for name, out, wall in (("full build", full_out, full), ("re-render", force_out, force)):
        found = phases(out)
        if found:
            shares = ", ".join(f"{k} {v:.1f} s ({v / wall:.0%})" for k, v in found.items())
            print(f"{name} phases: {shares}; other {wall - sum(found.values()):.1f} s")
    print(f"one digest phases: {phases(one_out)}")
    print_verdicts({
        "full": full < TARGETS["full"],
        "one": one < TARGETS["one"],
        "noop": noop < TARGETS["noop"],
        "peak": peak < TARGETS["peak_mb"],
    })


if __name__ == "__main__":
    main()
