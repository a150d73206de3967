"""The built site as a feed reader sees it: the `reader` library subscribes over HTTP.

The sample digests are built with `[site] base_url` pointing at a real `http.server` on
127.0.0.1 that serves the output folder; `reader` (built on feedparser) subscribes to the RSS,
Atom and JSON feeds of all papers and stores what it reads. Checked as it stores them: every
author of every paper, an http(s) link for every entry that leads to a page of the site or the
paper's source (the anchor exists on the served page), and each paper on its digest's day.
"""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import pytest
from conftest import ROOT, SAMPLE_DIGESTS

from feeds.config import PathSettings, Settings, SiteSettings

TZ = ZoneInfo("Asia/Shanghai")


class QuietHandler(SimpleHTTPRequestHandler):
    # Feed types as docs/feeds.md asks a server to send them.
    extensions_map: ClassVar[dict[str, str]] = {
        **SimpleHTTPRequestHandler.extensions_map,
        ".rss": "application/rss+xml",
        ".atom": "application/atom+xml",
        ".json": "application/feed+json",
    }

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Settings]]:
    """The sample site, built for and served at http://127.0.0.1:<port>/."""
    from feeds.build import build

    work = tmp_path_factory.mktemp("served")
    output = work / "output"
    output.mkdir()
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(QuietHandler, directory=str(output))
    )
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    settings = Settings(
        site=replace(SiteSettings(), base_url=base),
        paths=PathSettings(
            input=SAMPLE_DIGESTS,
            output=output,
            state=work / "state" / "feeds.sqlite3",
            templates=ROOT / "templates",
            subscribers=work / "subscribers.csv",
        ),
    )
    report = build(settings, now=datetime(2022, 8, 14, tzinfo=UTC), log=lambda _: None)
    assert not report.failed, report.summary_lines(True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield base, settings
    finally:
        server.shutdown()
        server.server_close()


def stored_entries(tmp_path: Path, url: str) -> list[Any]:
    """What `reader` stores after subscribing to `url` and updating once."""
    from reader import make_reader

    reader = make_reader(str(tmp_path / "reader.sqlite"))
    try:
        reader.add_feed(url)
        reader.update_feeds()
        feed = reader.get_feed(url)
        assert feed.last_exception is None, feed.last_exception
        return list(reader.get_entries(sort="recent"))
    finally:
        reader.close()


def sample_papers(settings: Settings) -> dict[str, Any]:
    """The sample papers by guid, assembled as a first build (an empty state) does."""
    from feeds.assemble import assemble
    from feeds.parse import parse_file

    digests = [parse_file(p, tz=settings.site.tz) for p in sorted(SAMPLE_DIGESTS.glob("*.txt"))]
    ctx, _ = assemble(digests, {}, {})
    return {paper.guid: paper for paper in ctx.papers}


@pytest.mark.parametrize("ext", ["rss", "atom", "json"])
def test_reader_stores_every_author_a_web_link_and_the_digest_day_of_every_paper(
    served: tuple[str, Settings], tmp_path: Path, ext: str
) -> None:
    base, settings = served
    entries = stored_entries(tmp_path, f"{base}feeds/all.{ext}")
    papers = sample_papers(settings)
    assert len(entries) == len(papers) == 65
    several = 0
    pages: dict[str, str] = {}
    for entry in entries:
        paper = papers[entry.id]
        names = [a for a in paper.item.authors if a.strip()]
        if names:
            # Every author, not the last one: as reader shows them and as it lists them.
            assert entry.authors_str == ", ".join(names), (ext, entry.id)
            several += len(names) > 1
        assert entry.link and entry.link.startswith(("http://", "https://")), entry.id
        if entry.link.startswith(base):
            # A paper without a link of its own leads to its place in the web copy.
            page, _, anchor = entry.link[len(base):].partition("#")
            if page not in pages:
                with urllib.request.urlopen(base + page, timeout=10) as response:
                    pages[page] = response.read().decode("utf-8")
            assert f'id="{anchor}"' in pages[page], entry.link
        day = paper.first_seen.astimezone(TZ).date()
        assert entry.published is not None
        assert entry.published.astimezone(TZ).date() == day, (entry.id, entry.published)
    assert several >= 35  # the issue counted 35 multi-author entries credited to one author
    assert pages, "no entry links into the site: the weekly picks should"
    weekly = [e for e in entries if papers[e.id].item.digest_id == "2020-07-11-weekly"]
    assert len(weekly) >= 20
    assert {e.published.astimezone(TZ).date().isoformat() for e in weekly} == {"2020-07-11"}
    # Newest first is the curator's order within the issue.
    ranks = [papers[e.id].item.rank for e in weekly]
    assert ranks == sorted(ranks)
