"""The full-text search on ten years of digests: indexing every paper with Pagefind, and what a
browser fetches to answer one query.

In-process and without the rest of a build: the corpus is parsed and assembled as the build
does, then `feeds.search.records` and `feeds.search_build.make_index` are timed (what a build
spends when the index is made again). The site's index page, `search.js` and the index are then
served by a real http.server on 127.0.0.1, and headless Chromium types one query; the bytes of
every response the search needed (the script, Pagefind's files, index chunks, fragments) are
summed as they came over the wire. Targets: indexing < 30 s, one query's payload < 300 KB.
"""

from __future__ import annotations

import functools
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
TARGETS = {"index": 30.0, "payload_kb": 300.0}


def main() -> None:
    from corpus import ensure_corpus

    from feeds.assemble import assemble
    from feeds.config import Settings
    from feeds.output import write_files
    from feeds.parse import parse_file
    from feeds.search import records
    from feeds.search_build import BUNDLE, make_index
    from feeds.site import render_site

    corpus = ensure_corpus(DAYS)
    settings = Settings()
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
    tick = time.perf_counter()
    bundle = make_index(found, work)
    indexing = time.perf_counter() - tick
    size = sum(len(data) for data in bundle.values()) / 1e6

    site = work / "site"
    files = {f"{BUNDLE}/{rel}": data for rel, data in bundle.items()}
    files.update(render_site(ctx, settings))
    write_files(site, files)
    # The payload needs Debian's Chromium; without it, only indexing is measured.
    browser = Path("/usr/bin/chromium").exists()
    payloads = {query: payload(site, query) for query in QUERIES} if browser else {}
    if not browser:
        print("payload not measured: /usr/bin/chromium is missing")

    print(f"corpus: {len(ctx.digests)} digests, {len(ctx.papers)} papers "
          f"(parsed and assembled in {prepared:.1f} s)")
    print_table([
        ("records from the context", made_records, None, f"{len(found)} records"),
        ("Pagefind index", indexing, None,
         f"target < {TARGETS['index']:.0f} s; {len(bundle)} files, {size:.1f} MB"),
    ])
    for query, (kb, requests) in payloads.items():
        print(f"payload for one query {query!r}: {kb:.0f} KB in {requests} requests "
              f"(target < {TARGETS['payload_kb']:.0f} KB)")
    print_verdicts({
        "index": indexing < TARGETS["index"],
        "payload": bool(payloads)
        and all(kb < TARGETS["payload_kb"] for kb, _ in payloads.values()),
    })


def payload(site: Path, query: str) -> tuple[float, int]:
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
            page.wait_for_selector("#search-results .search-result", timeout=60_000)
            page.wait_for_load_state("networkidle")
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
    return sum(sizes.values()) / 1024, len(sizes)


if __name__ == "__main__":
    main()
