"""The full-text search on ten years of digests: indexing every paper with Pagefind, and what a
browser fetches to answer one query.

In-process and without the rest of a build: the corpus is parsed and assembled as the build
does, then `feeds.search.records` and `feeds.search_build.make_indexes` (every month's index,
what a build spends when every period is made again) are timed, and then the one month a new
digest re-indexes. The site's index page, `search.js` and the index are then
served by a real http.server on 127.0.0.1, and headless Chromium types one query; the bytes of
every response the search needed (the script, Pagefind's files, index chunks, fragments) are
summed as they came over the wire. Targets: indexing < 30 s, one query's payload < 300 KB.
A query no paper matches walks back a year of months (the most one step of the search box
opens): its payload is printed too, as the worst case.
"""

from __future__ import annotations

import functools
import re
import shutil
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from measure import HERE, print_table, print_verdicts

DAYS = 3650
QUERIES = ("self-supervised", "自监督")
# Matches nothing: the search walks back a year of months, the most one step opens.
NO_MATCH = "qqqzzzxxy"
TARGETS = {"index": 30.0, "payload_kb": 300.0}


def main() -> None:
    from corpus import ensure_corpus

    from feeds.assemble import assemble
    from feeds.config import Settings, SiteSettings
    from feeds.output import write_files
    from feeds.parse import parse_file
    from feeds.search import MANIFEST, SORT_KEY, manifest, periods, records
    from feeds.search_build import BUNDLE, is_code, make_indexes
    from feeds.site import render_site

    corpus = ensure_corpus(DAYS)
    settings = Settings(site=SiteSettings(search=True))
    tick = time.perf_counter()
    tz = ZoneInfo(settings.site.timezone)
    digests = [parse_file(path, tz=tz) for path in sorted(corpus.glob("*.txt"))]
    ctx, _ = assemble(digests, {}, {})
    prepared = time.perf_counter() - tick

    tick = time.perf_counter()
    found = records(ctx, settings)
    made_records = time.perf_counter() - tick
    work = HERE / ".work" / "bench_search"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    by_period: dict[str, list[Any]] = {}
    for record in found:
        by_period.setdefault(record.sort[SORT_KEY][:7], []).append(record)
    tick = time.perf_counter()
    bundles = make_indexes(by_period)
    indexing = time.perf_counter() - tick
    newest = max(bundles)
    tick = time.perf_counter()
    make_indexes({newest: by_period[newest]})
    one_month = time.perf_counter() - tick

    site = work / "site"
    files = {f"{BUNDLE}/{name}/{rel}": data for name, bundle in bundles.items()
             for rel, data in bundle.items() if name == newest or not is_code(rel)}
    size = sum(len(data) for data in files.values()) / 1e6
    files[f"{BUNDLE}/{MANIFEST}"] = manifest(periods(ctx, settings))
    files.update(render_site(ctx, settings))
    write_files(site, files)
    print(f"indexing every month: {indexing:.1f} s ({len(bundles)} months); "
          f"the newest month alone: {one_month:.2f} s", flush=True)
    # The payload needs Debian's Chromium; without it, only indexing is measured.
    browser = Path("/usr/bin/chromium").exists()
    payloads = {query: payload(site, query) for query in QUERIES} if browser else {}
    no_hit = "#search-status:has-text('No results')"
    worst = payload(site, NO_MATCH, wait_for=no_hit) if browser else None
    if not browser:
        print("payload not measured: /usr/bin/chromium is missing")

    print(f"corpus: {len(ctx.digests)} digests, {len(ctx.papers)} papers "
          f"(parsed and assembled in {prepared:.1f} s)")
    print_table([
        ("records from the context", made_records, None, f"{len(found)} records"),
        ("Pagefind indexes, every month", indexing, None,
         f"target < {TARGETS['index']:.0f} s; {len(bundles)} months, {len(files)} files, "
         f"{size:.1f} MB"),
        (f"the newest month alone ({newest})", one_month, None,
         f"{len(by_period[newest])} records"),
    ])
    for query, (kb, requests) in payloads.items():
        print(f"payload for one query {query!r}: {kb:.0f} KB in {requests} requests "
              f"(target < {TARGETS['payload_kb']:.0f} KB)")
    if worst is not None:
        print(f"payload for a query nothing matches (a year of months searched): {worst[0]:.0f} KB "
              f"in {worst[1]} requests (no target: the most one step fetches)")
    print_verdicts({
        "index": indexing < TARGETS["index"],
        "payload": bool(payloads)
        and all(kb < TARGETS["payload_kb"] for kb, _ in payloads.values()),
    })


def payload(
    site: Path, query: str, wait_for: str = "#search-results .search-result"
) -> tuple[float, int]:
    """KB a fresh browser fetches for the search box and one query's first results, and the
    number of requests."""
    from playwright.sync_api import sync_playwright

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sizes: dict[str, int] = {}
    try:
        with sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
            browser = playwright.chromium.launch_persistent_context(
                profile, executable_path="/usr/bin/chromium", headless=True,
                args=["--no-sandbox", "--disable-gpu", "--headless"],
            )
            page = browser.new_page()

            def seen(response: Any) -> None:
                if "/pagefind/" in response.url or response.url.endswith("search.js"):
                    sizes[response.url] = len(response.body())

            page.on("response", seen)
            base = f"http://127.0.0.1:{server.server_address[1]}/"
            page.goto(base + "index.html")
            page.wait_for_selector("#search-q", state="visible", timeout=60_000)
            page.fill("#search-q", query)
            page.wait_for_selector(wait_for, timeout=120_000)
            page.wait_for_load_state("networkidle")
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
    kinds: dict[str, int] = {}
    for url, size in sizes.items():
        name = url.split("?")[0].rsplit("/", 2)
        kind = name[-2] if name[-2] in ("index", "filter", "fragment") else name[-1]
        kind = re.sub(r"[._]zh-cn_[0-9a-f]+", "", kind)
        kinds[kind] = kinds.get(kind, 0) + size
    print(f"  {query!r}: " + ", ".join(
        f"{kind} {size / 1024:.1f} KB" for kind, size in sorted(kinds.items(), key=lambda k: -k[1])
    ))
    return sum(sizes.values()) / 1024, len(sizes)


if __name__ == "__main__":
    main()
