"""WebSub against a real HTTP server on 127.0.0.1 standing in for the hub: the feeds name the
hub, a build pings it once for each feed whose bytes changed and never on a no-op build, and a
hub that fails or hangs is retried at the next run without failing the build."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import feedparser
import lxml.etree
import pytest
from conftest import ROOT, SAMPLE_DIGESTS
from test_archive import LATER_DIGEST

from feeds.build import BuildReport, build
from feeds.config import PathSettings, Settings, SiteSettings
from feeds.config_file import load_settings
from feeds.errors import ConfigError
from feeds.websub import announce

NOW = datetime(2022, 9, 30, tzinfo=UTC)
BASE = "https://digest.example.org/"
ATOM = "{http://www.w3.org/2005/Atom}"


class Hub:
    """A hub on 127.0.0.1: records each publish ping; answers `status`, after `delay` s."""

    def __init__(self) -> None:
        self.pings: list[dict[str, list[str]]] = []
        self.status = 204
        self.delay = 0.0
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = parse_qs(self.rfile.read(length).decode("ascii"))
                form["content-type"] = [self.headers.get("Content-Type", "")]
                hub.pings.append(form)
                time.sleep(hub.delay)
                self.send_response(hub.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hub"

    def topics(self) -> list[str]:
        for form in self.pings:
            assert form["hub.mode"] == ["publish"]
            assert form["content-type"] == ["application/x-www-form-urlencoded"]
        return sorted(url for form in self.pings for url in form["hub.url"])


@pytest.fixture
def hub() -> Iterator[Hub]:
    server = Hub()
    thread = threading.Thread(target=server.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()


def settings_for(tmp_path: Path, hub_url: str | None) -> Settings:
    inputs = tmp_path / "digests"
    if not inputs.exists():
        shutil.copytree(SAMPLE_DIGESTS, inputs)
    return Settings(
        site=SiteSettings(items_per_feed=5, websub_hub=hub_url),
        paths=PathSettings(
            input=inputs,
            output=tmp_path / "output",
            state=tmp_path / "state" / "feeds.sqlite3",
            templates=ROOT / "templates",
            subscribers=tmp_path / "subscribers.csv",
        ),
    )


def run_build(settings: Settings, *, force: bool = False) -> BuildReport:
    report = build(settings, now=NOW, log=lambda _: None, force=force)
    assert not report.failed, report.summary_lines(True)
    return report


def changed_feeds(report: BuildReport) -> list[str]:
    return sorted(
        BASE + rel for rel in report.written
        if rel.count("/") == 1 and rel.startswith("feeds/")
        and rel.endswith((".rss", ".atom", ".json"))
    )


def test_every_feed_names_the_hub_and_itself(tmp_path: Path, hub: Hub) -> None:
    settings = settings_for(tmp_path, hub.url)
    run_build(settings)
    feeds = settings.paths.output / "feeds"
    checked = 0
    for path in sorted(feeds.glob("*.atom")) + sorted(feeds.glob("*.rss")):
        parsed = feedparser.parse(path.read_bytes())
        assert not parsed.bozo, path
        rels = {(link.rel, link.href) for link in parsed.feed.links}
        assert ("hub", hub.url) in rels
        assert ("self", BASE + f"feeds/{path.name}") in rels
        checked += 1
    assert checked == 2 * 7  # all, starred, as, cl, cv, lg, ro
    document = json.loads((feeds / "cv.json").read_bytes())
    assert document["hubs"] == [{"type": "WebSub", "url": hub.url}]
    # Where JSON Feed 1.1 puts it: after the language, before the items.
    assert list(document)[-3:] == ["language", "hubs", "items"]
    # Archive documents are not for subscribing: no hub there.
    archived = lxml.etree.fromstring((feeds / "archive" / "cv" / "2021-06.atom").read_bytes())
    assert [el for el in archived.findall(f"{ATOM}link") if el.get("rel") == "hub"] == []


def test_a_build_pings_once_per_changed_feed_and_a_no_op_build_not_at_all(
    tmp_path: Path, hub: Hub
) -> None:
    settings = settings_for(tmp_path, hub.url)
    first = run_build(settings)
    assert hub.topics() == changed_feeds(first)
    assert len(hub.pings) == 3 * 7  # all, starred, as, cl, cv, lg, ro in 3 formats
    assert f"{BASE}feeds/cv.atom" in hub.topics()
    assert not [t for t in hub.topics() if "/archive/" in t]

    hub.pings.clear()
    assert run_build(settings).noop
    assert hub.pings == []
    # Everything re-rendered, no byte changed: nothing to announce either.
    forced = run_build(settings, force=True)
    assert changed_feeds(forced) == [] and hub.pings == []

    (settings.paths.input / "2022-09-02.txt").write_text(LATER_DIGEST, encoding="utf-8")
    later = run_build(settings)
    changed = changed_feeds(later)
    assert f"{BASE}feeds/cv.rss" in changed and f"{BASE}feeds/ir.json" in changed
    assert f"{BASE}feeds/ro.atom" not in changed
    assert hub.topics() == changed


def test_a_failing_hub_never_fails_the_build_and_is_retried_at_the_next_run(
    tmp_path: Path, hub: Hub
) -> None:
    settings = settings_for(tmp_path, hub.url)
    hub.status = 503
    first = run_build(settings)
    expected = changed_feeds(first)
    # A hub that answers is asked for every feed; each failure is a warning, not an error.
    assert hub.topics() == expected
    failed = [w for w in first.warnings if w.startswith(hub.url)]
    assert len(failed) == len(expected)
    assert all("503" in w and "retried at the next run" in w for w in failed)
    # Said with -v only (the first build's quiet lines are what the parser did not understand).
    quiet = first.summary_lines(verbose=False)
    assert quiet == [f"warning: {w}" for w in first.input_warnings]
    assert not [line for line in quiet if hub.url in line]
    assert len([line for line in first.summary_lines(verbose=True) if hub.url in line]) == len(
        expected
    )

    hub.status = 202
    hub.pings.clear()
    retry = run_build(settings)
    assert retry.noop and retry.warnings == []
    assert hub.topics() == expected

    hub.pings.clear()
    assert run_build(settings).noop
    assert hub.pings == []


def test_an_unreachable_hub_is_given_up_at_once_for_this_run(tmp_path: Path, hub: Hub) -> None:
    settings = settings_for(tmp_path, hub.url)
    run_build(settings)
    hub.pings.clear()
    (settings.paths.input / "2022-09-02.txt").write_text(LATER_DIGEST, encoding="utf-8")
    down = settings_for(tmp_path, hub.url.replace("/hub", "/nothing-here"))
    hub.server.server_close()  # nothing listens any more: connection refused
    report = run_build(down)
    failed = [w for w in report.warnings if "/nothing-here" in w]
    assert len(failed) == 1 and "cannot reach the hub" in failed[0]


def test_a_hub_that_hangs_is_cut_off_at_the_deadline(tmp_path: Path, hub: Hub) -> None:
    settings = settings_for(tmp_path, hub.url)
    hub.delay = 5.0
    started = time.monotonic()
    done = announce(settings, ["feeds/cv.atom", "feeds/cv.rss"], lambda _: None, timeout=0.5)
    assert time.monotonic() - started < 2.5
    assert done.accepted == []
    assert len(done.failures) == 1 and "no answer within" in done.failures[0]
    hub.delay = 0.0
    hub.pings.clear()
    again = announce(settings, [], lambda _: None)
    assert again.accepted == [BASE + "feeds/cv.atom", BASE + "feeds/cv.rss"]


def test_without_a_hub_nothing_is_named_or_pinged(tmp_path: Path, hub: Hub) -> None:
    settings = settings_for(tmp_path, None)
    run_build(settings)
    assert hub.pings == []
    assert b'rel="hub"' not in (settings.paths.output / "feeds" / "all.atom").read_bytes()
    assert "hubs" not in json.loads((settings.paths.output / "feeds" / "all.json").read_bytes())


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("ftp://hub.example.org/", "must be an http(s) URL"),
        ("https://", "must be an http(s) URL"),
        ("http://hub.example.org/", "must be https://"),
    ],
)
def test_a_wrong_hub_is_refused_when_the_settings_are_read(
    tmp_path: Path, value: str, problem: str
) -> None:
    config = tmp_path / "feeds.toml"
    config.write_text(f'[site]\nwebsub_hub = "{value}"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="websub_hub") as caught:
        load_settings(config)
    assert problem in str(caught.value)


def test_a_hub_on_this_machine_may_be_plain_http(tmp_path: Path) -> None:
    config = tmp_path / "feeds.toml"
    config.write_text('[site]\nwebsub_hub = "http://127.0.0.1:8080/"\n', encoding="utf-8")
    assert load_settings(config).site.websub_hub == "http://127.0.0.1:8080/"
