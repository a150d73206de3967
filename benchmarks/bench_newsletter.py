"""Newsletter rendering over the ten-year corpus: time per issue, premailer beside the rest.

Renders every issue's files (`render_issue_files`: HTML, text, .eml, with the size check) for a
systematic sample of the corpus (every 10th day, so every sample digest shape is represented)
and extrapolates to all 3650 days; set BENCH_NEWSLETTER_EVERY=1 to render all of them. Then a
real `build` of the same sample says what share of a full build the newsletter is.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DAYS = 3650


def timed(fn: Callable[..., Any], bucket: list[float]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            bucket.append(time.perf_counter() - started)

    return wrapper


def main() -> None:
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(ROOT))
    from corpus import ensure_corpus

    from feeds import message, newsletter
    from feeds.build import build
    from feeds.config import PathSettings, Settings
    from feeds.parse import parse_file

    every = int(os.environ.get("BENCH_NEWSLETTER_EVERY", "10"))
    corpus = ensure_corpus(DAYS)
    paths = sorted(corpus.glob("*.txt"))[::every]
    settings = Settings()
    digests = [parse_file(p, tz=settings.site.tz) for p in paths]

    # Count premailer and MIME composition separately, inside the real code path.
    inline: list[float] = []
    compose: list[float] = []
    newsletter.inline_css = timed(newsletter.inline_css, inline)  # type: ignore[method-assign]
    message.compose = timed(message.compose, compose)  # type: ignore[method-assign]

    started = time.perf_counter()
    newsletter.render_issue_files(digests[0], settings)  # templates, CSS parse, width table
    first = time.perf_counter() - started
    inline.clear()
    compose.clear()

    per_issue: list[float] = []
    sizes: list[int] = []
    cpu = time.process_time()
    for digest in digests:
        started = time.perf_counter()
        files = newsletter.render_issue_files(digest, settings)
        per_issue.append(time.perf_counter() - started)
        sizes.append(len(files[f"newsletter/{digest.id}.eml"]))
    cpu = time.process_time() - cpu

    n = len(per_issue)
    total = sum(per_issue)
    t_inline = sum(inline)
    t_compose = sum(compose)
    rest = total - t_inline - t_compose
    scale = DAYS / n
    ms = 1000.0
    print(f"sample: {n} of {DAYS} digests (every {every}th day); first issue {first * ms:.0f} ms")
    print(f"CPU time of the loop: {cpu:.1f} s for {total:.1f} s wall (others share the cores)")
    print(
        f"per issue: mean {total / n * ms:.1f} ms, median "
        f"{statistics.median(per_issue) * ms:.1f} ms, "
        f"p95 {sorted(per_issue)[int(n * 0.95)] * ms:.1f} ms"
    )
    print(
        f"  premailer {t_inline / n * ms:.1f} ms ({len(inline) / n:.1f} calls), "
        f"MIME compose + size {t_compose / n * ms:.1f} ms ({len(compose) / n:.1f} calls), "
        f"templates + text + rest {rest / n * ms:.1f} ms"
    )
    print(
        f"  premailer share of rendering: {t_inline / total:.0%}; "
        f"premailer / rest-of-rendering = {t_inline / (total - t_inline):.2f}"
    )
    print(
        f"total for the sample: {total:.1f} s; extrapolated to {DAYS} digests: "
        f"{total * scale:.0f} s (premailer {t_inline * scale:.0f} s)"
    )
    print(
        f".eml size: min {min(sizes)} B, median {int(statistics.median(sizes))} B, "
        f"max {max(sizes)} B (budget {settings.newsletter.size_budget} B)"
    )

    # The same sample through a real build, for the newsletter's share of it.
    work = HERE / ".work" / "bench_newsletter"
    shutil.rmtree(work, ignore_errors=True)
    inputs = work / "digests"
    inputs.mkdir(parents=True)
    for path in paths:
        shutil.copy(path, inputs / path.name)
    build_settings = Settings(
        paths=PathSettings(
            input=inputs,
            output=work / "output",
            state=work / "state" / "feeds.sqlite3",
            templates=ROOT / "templates",
            subscribers=work / "subscribers.csv",
        )
    )
    report = build(build_settings, now=datetime(2022, 1, 1, tzinfo=UTC), log=lambda _: None)
    share = report.timings.get("newsletter", 0.0)
    print(
        f"build of the sample: {report.seconds:.1f} s, newsletter phase {share:.1f} s "
        f"({share / report.seconds:.0%} of the build)"
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
