"""The full-text search: a Pagefind record per paper, an index the build makes only when a
paper changed (byte-identical when made again), and the search box in a real headless
Chromium over a real http.server: Chinese and English queries, the category and starred
filters, the link to the paper's anchor, a phone's width."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, SAMPLE_DIGESTS, make_context, make_paper
from test_archive import LATER_DIGEST

from feeds.build import BuildReport, build
from feeds.config import PathSettings, Settings, SiteSettings
from feeds.links import paper_page
from feeds.search import records

NOW = datetime(2022, 9, 30, tzinfo=UTC)
MULTI_VIEW = "Self-supervised Learning from a Multi-view Perspective"
KERNEL = "Self-Supervised Learning with Kernel Dependence Maximization"


# --- the records ---------------------------------------------------------------------------


def test_each_paper_is_one_record_at_its_anchor_with_what_a_result_shows() -> None:
    starred = make_paper(1, starred=True, category="LG", title_zh="用多视角看自监督学习")
    plain = make_paper(2, days_ago=1, category=None, category_name=None, affiliations=())
    found = records(make_context(starred, plain), Settings())
    assert [r.url for r in found] == [paper_page(starred.item), paper_page(plain.item)]
    assert found[0].url == "newsletter/2021-03-30.html#p-" + found[0].url.split("#p-")[1]
    first, second = found
    assert first.language == "zh-cn"
    assert first.meta == {
        "title": "Paper number 1", "date": "2021-03-30", "title_zh": "用多视角看自监督学习",
        "authors": "Y H Tsai, R Salakhutdinov", "affiliations": "CMU; Google Research",
        "category": "机器学习 (LG)", "starred": "重点关注",
    }
    assert first.filters == {"category": ["机器学习 (LG)"], "starred": ["重点关注"]}
    assert second.filters == {} and "category" not in second.meta
    # The text holds both titles, the people and both summaries.
    for words in ("Paper number 1", "用多视角看自监督学习", "Y H Tsai", "CMU", "一句中文摘要",
                  "An English abstract."):
        assert words in first.content
    # Sorted as text, newer papers sort later: the build's sort key is the entry time.
    assert first.sort["date"] > second.sort["date"]


# --- the index in the build ----------------------------------------------------------------


def settings_for(tmp_path: Path) -> Settings:
    inputs = tmp_path / "digests"
    if not inputs.exists():
        shutil.copytree(SAMPLE_DIGESTS, inputs)
    return Settings(site=SiteSettings(search=True), paths=PathSettings(
        input=inputs, output=tmp_path / "output", state=tmp_path / "state" / "feeds.sqlite3",
        templates=ROOT / "templates", subscribers=tmp_path / "subscribers.csv",
    ))


def run_build(settings: Settings, *, force: bool = False) -> BuildReport:
    report = build(settings, now=NOW, log=lambda _: None, force=force)
    assert not report.failed, report.summary_lines(True)
    return report


def run_context(settings: Settings) -> Any:
    """The build's context of the sample digests, assembled as the build does."""
    from feeds.assemble import assemble
    from feeds.parse import parse_file

    paths = sorted(settings.paths.input.glob("*.txt"))
    digests = [parse_file(p, tz=settings.site.tz) for p in paths]
    return assemble(digests, {}, {})[0]


def bundle(settings: Settings) -> dict[str, bytes]:
    root = settings.paths.output / "pagefind"
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_index_is_made_once_and_again_only_when_a_paper_changed(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    first = run_build(settings)
    assert "search" in first.timings
    made = bundle(settings)
    listed = json.loads(made["periods.json"])
    months = ["2022-08", "2021-06", "2021-03", "2020-07"]
    assert [p["id"] for p in listed["periods"]] == months
    assert sum(p["papers"] for p in listed["periods"]) == len(
        records(run_context(settings), settings))
    assert "机器学习 (LG)" in listed["categories"]
    # A Pagefind index per month; its script, worker and WebAssembly only in the newest.
    for month in months:
        assert f"{month}/pagefind-entry.json" in made
        assert any(name.startswith(f"{month}/index/zh-cn_") for name in made)
    code = {"pagefind.js", "pagefind-worker.js", "wasm.unknown.pagefind"}
    assert {name for name in made if name.split("/")[-1] in code} == {
        f"2022-08/{name}" for name in code}
    # Pagefind's own interfaces are not published: the site has its own search box.
    assert not [name for name in made if "-ui." in name]
    assert (settings.paths.output / "search.js").is_file()

    # No-op build: nothing read, nothing indexed.
    assert run_build(settings).noop
    # A real build with the same papers (an input touched): the index is kept as it is.
    (settings.paths.input / "2021-03-10.txt").touch()
    same = run_build(settings)
    assert not same.noop and "search" not in same.timings
    assert bundle(settings) == made
    # Made again by force: the same bytes, so no file of it is written.
    forced = run_build(settings, force=True)
    assert "search" in forced.timings
    assert not [p for p in forced.written if p.startswith("pagefind/")]

    # A digest of a new month: that month alone is indexed, and becomes the newest.
    (settings.paths.input / "2022-09-02.txt").write_text(LATER_DIGEST, encoding="utf-8")
    later = run_build(settings)
    assert "search" in later.timings
    remade = bundle(settings)
    written = {p for p in later.written if p.startswith("pagefind/")}
    assert written == {"pagefind/periods.json"} | {
        f"pagefind/{name}" for name in remade if name.startswith("2022-09/")}
    assert {f"2022-09/{name}" for name in code} <= set(remade)
    # The month before keeps its data, byte for byte, and drops the code it no longer serves.
    assert set(later.removed) == {f"pagefind/2022-08/{name}" for name in code}
    for name, data in made.items():
        if name != "periods.json" and name.split("/")[-1] not in code:
            assert remade[name] == data, name


def test_an_index_file_deleted_by_hand_makes_the_next_real_build_index_again(
    tmp_path: Path,
) -> None:
    settings = settings_for(tmp_path)
    run_build(settings)
    made = bundle(settings)
    (settings.paths.output / "pagefind" / "2021-03" / "pagefind-entry.json").unlink()
    again = run_build(settings)
    # Only that month is indexed again, and only the missing file written.
    assert "search" in again.timings and again.written == ["pagefind/2021-03/pagefind-entry.json"]
    assert bundle(settings) == made


# --- the search box in Chromium ------------------------------------------------------------


def search_page(chromium: Any, url: str, width: int = 800) -> Any:
    page = chromium.new_page()
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(url)
    page.wait_for_selector("#search-q", state="visible", timeout=15_000)
    return page


def watched_search_page(chromium: Any, url: str) -> tuple[Any, list[str]]:
    """A search page, and the URLs it fetches from now on (which months a search opened)."""
    page = search_page(chromium, url)
    fetched: list[str] = []
    page.on("request", lambda request: fetched.append(request.url))
    return page, fetched


def results(page: Any, query: str, change: Any = None) -> list[dict[str, str]]:
    """Type `query` (or make the `change` given) and wait for that search's results: each
    result's title, link, titles and meta line."""
    before = int(page.get_attribute("#search", "data-done") or 0)
    if change is None:
        page.fill("#search-q", query)
    else:
        change()
    page.wait_for_function(
        "(before) => Number(document.querySelector('#search').dataset.done || 0) > before",
        arg=before, timeout=15_000,
    )
    assert page.input_value("#search-q") == query
    found: list[dict[str, str]] = page.evaluate(
        """() => [...document.querySelectorAll('#search-results .search-result')].map((li) => ({
             title: li.querySelector('.search-title a').textContent,
             href: li.querySelector('.search-title a').href,
             zh: li.querySelector('.search-title-zh')?.textContent || '',
             meta: li.querySelector('.search-meta').textContent,
             authors: li.querySelector('.search-authors')?.textContent || '',
           }))"""
    )
    return found


@pytest.mark.browser
@pytest.mark.parametrize("start", ["index.html", "newsletter/index.html"])
def test_a_chinese_and_an_english_query_find_the_paper_first_and_its_link_lands_on_it(
    chromium: Any, served_site: str, start: str, artifacts_dir: Path
) -> None:
    page = search_page(chromium, served_site + start)
    try:
        # Newest first by default; within a digest, the curator's order. The newest month
        # (2022-08) has no "多视角": Pagefind falls back there to "多", and that month is
        # skipped rather than shown first.
        chinese = results(page, "多视角")
        assert chinese[0]["title"] == MULTI_VIEW
        assert chinese[0]["zh"] == "用多视角看自监督学习"
        assert chinese[0]["meta"] == "2021-03-30 · 机器学习 (LG)"
        assert chinese[0]["authors"] == "Y H Tsai, Y Wu, R Salakhutdinov, L Morency [CMU]"
        english = results(page, "multi-view")
        assert english[0]["title"] == MULTI_VIEW
        assert results(page, "kernel dependence")[0]["title"] == KERNEL
        # Both words of the example find the paper, newest first.
        for query in ("自监督", "self-supervised"):
            newest = results(page, query)
            assert MULTI_VIEW in [r["title"] for r in newest], query
            dates = [r["meta"][:10] for r in newest]
            assert dates == sorted(dates, reverse=True) and len(set(dates)) > 1
        # Best match instead: the same papers, in another order.
        best = results(page, "self-supervised", lambda: page.select_option("#search-sort", ""))
        assert sorted(r["title"] for r in best) == sorted(r["title"] for r in newest)
        assert [r["title"] for r in best] != [r["title"] for r in newest]
        results(page, "self-supervised", lambda: page.select_option("#search-sort", "date"))
        found = results(page, "multi-view")
        page.screenshot(path=str(artifacts_dir / "search.png"), full_page=True)
        href = found[0]["href"]
        assert href.startswith(served_site + "newsletter/2021-03-30.html#p-")
        page.click("#search-results .search-result a")
        page.wait_for_url(href)
        anchor = href.split("#", 1)[1]
        landed = page.evaluate(
            "(id) => { const el = document.getElementById(id); const box = "
            "el.getBoundingClientRect(); return [el.matches(':target'), el.textContent, "
            "box.top, innerHeight]; }",
            anchor,
        )
        assert landed[0] is True and MULTI_VIEW in landed[1]
        assert 0 <= landed[2] < landed[3]  # scrolled to it
    finally:
        page.close()


@pytest.mark.browser
def test_the_category_and_starred_filters_narrow_the_results(
    chromium: Any, served_site: str
) -> None:
    page = search_page(chromium, served_site + "index.html")
    try:
        everything = results(page, "self-supervised")
        categories = {r["meta"].split(" · ")[1] for r in everything if " · " in r["meta"]}
        assert {"机器学习 (LG)", "计算机视觉 (CV)"} <= categories
        vision = results(
            page, "self-supervised",
            lambda: page.select_option("#search-category", "计算机视觉 (CV)"),
        )
        assert vision and len(vision) < len(everything)
        assert all("计算机视觉 (CV)" in r["meta"] for r in vision)
        results(page, "self-supervised", lambda: page.select_option("#search-category", ""))
        results(page, "self-supervised", lambda: page.check("#search-starred"))
        starred = results(page, "learning")
        assert starred and all("★ 重点关注" in r["meta"] for r in starred)
        everything_learning = results(page, "learning", lambda: page.uncheck("#search-starred"))
        assert len(everything_learning) > len(starred)
    finally:
        page.close()


def more(page: Any) -> None:
    """Press "More results" and wait for the page of results it adds."""
    before = int(page.get_attribute("#search", "data-done") or 0)
    page.click("#search-more")
    page.wait_for_function(
        "(before) => Number(document.querySelector('#search').dataset.done || 0) >= before "
        "&& !document.querySelector('#search-more').disabled",
        arg=before, timeout=15_000,
    )


@pytest.mark.browser
def test_newest_first_reads_a_month_at_a_time_and_more_results_goes_back_in_time(
    chromium: Any, served_site: str
) -> None:
    page, fetched = watched_search_page(chromium, served_site + "index.html")
    try:
        first = results(page, "the")
        assert len(first) == 20
        # The first page came from the newest months (9 + 9 + 18 papers): the oldest month
        # (the weekly picks of 2020-07) was not opened, and the status says how far back.
        opened = sorted({url.split("/pagefind/")[1][:7] for url in fetched
                         if "/pagefind/" in url and "-" in url.split("/pagefind/")[1][:7]})
        assert opened == ["2021-03", "2021-06", "2022-08"]
        status = page.text_content("#search-status")
        assert "searched back to 2021-03" in status and "showing 20" in status
        assert page.locator("#search-more").is_visible()
        while page.locator("#search-more").is_visible():
            more(page)
        found = page.evaluate(
            "() => [...document.querySelectorAll('#search-results .search-meta')]"
            ".map((p) => p.textContent.slice(0, 10))"
        )
        assert len(found) > 20 and found == sorted(found, reverse=True)
        assert any(url.startswith(served_site + "pagefind/2020-07/") for url in fetched)
        # Every month searched by now, each paper once; Best match finds the same papers.
        titles = page.evaluate(
            "() => [...document.querySelectorAll('#search-results .search-title a')]"
            ".map((a) => a.textContent)"
        )
        assert len(set(titles)) == len(titles)
        assert "searched back" not in page.text_content("#search-status")
        best = results(page, "the", lambda: page.select_option("#search-sort", ""))
        while page.locator("#search-more").is_visible():
            more(page)
            best = page.evaluate(
                "() => [...document.querySelectorAll('#search-results .search-title a')]"
                ".map((a) => a.textContent)"
            )
        assert sorted(titles) == sorted(r if isinstance(r, str) else r["title"] for r in best)
    finally:
        page.close()


@pytest.mark.browser
def test_the_search_box_and_its_results_fit_a_phone(
    chromium: Any, served_site: str, artifacts_dir: Path
) -> None:
    page = search_page(chromium, served_site + "index.html", width=375)
    try:
        found = results(page, "transformer")
        assert len(found) >= 3
        page.screenshot(path=str(artifacts_dir / "search-375.png"), full_page=True)
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        boxes = page.evaluate(
            """() => [...document.querySelectorAll('#search input, #search select, '
                 + '.search-title a')].map((el) => { const b = el.getBoundingClientRect();
                 return [b.left, b.right, b.width]; })"""
        )
        assert boxes and all(left >= 0 and right <= 375 and w > 0 for left, right, w in boxes)
    finally:
        page.close()


@pytest.mark.browser
def test_without_an_index_the_search_box_stays_hidden(chromium: Any, built_site: Path) -> None:
    # From file:// the module cannot be loaded: the page is the page it was, without a box.
    page = chromium.new_page()
    try:
        page.goto((built_site / "index.html").as_uri())
        page.wait_for_timeout(500)
        assert page.locator("#search-section").is_hidden()
        assert page.locator("main h3").count() >= 9
    finally:
        page.close()


def test_with_search_off_no_index_is_made_and_an_earlier_one_is_removed(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    run_build(settings)
    assert (settings.paths.output / "pagefind").is_dir()
    off = replace(settings, site=replace(settings.site, search=False))
    report = run_build(off)
    assert "search" not in report.timings
    assert [p for p in (settings.paths.output / "pagefind").rglob("*") if p.is_file()] == []
    assert not (settings.paths.output / "search.js").exists()
    assert b"search.js" not in (settings.paths.output / "index.html").read_bytes()


@pytest.fixture(scope="module")
def fourteen_months(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A site of fourteen digests, one a month (2020-01 to 2021-02, made from the samples by the
    benchmarks' corpus generator, so each paper is distinct), served over HTTP; its base URL."""
    import functools
    import random
    import sys
    import threading
    from datetime import date
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from corpus import DAILY_SAMPLES, _rewrite

    work = tmp_path_factory.mktemp("months")
    inputs = work / "digests"
    inputs.mkdir()
    sample = (ROOT / "digests" / DAILY_SAMPLES[0]).read_text(encoding="utf-8")
    rng, serial = random.Random(14), [0]
    for n in range(14):
        day = date(2020 + n // 12, n % 12 + 1, 1)
        (inputs / f"{day.isoformat()}.txt").write_text(
            _rewrite(sample, day, rng, serial), encoding="utf-8")
    settings = settings_for(work)
    settings = replace(settings, paths=replace(settings.paths, input=inputs))
    run_build(settings)

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(settings.paths.output))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.browser
def test_a_rare_word_searches_a_year_of_months_at_a_time(
    chromium: Any, fourteen_months: str
) -> None:
    page, fetched = watched_search_page(chromium, fourteen_months + "index.html")
    try:
        assert results(page, "qqqzzzxxy") == []
        # Twelve months searched, newest first: 2021-02 back to 2020-03; the two oldest not
        # opened until asked for.
        status = page.text_content("#search-status")
        assert status == "没有结果 No results (已搜索至 2020-03 searched back to 2020-03)"
        oldest = ("/pagefind/2020-01/", "/pagefind/2020-02/")
        assert not [url for url in fetched if any(month in url for month in oldest)]
        assert page.text_content("#search-more") == "搜索更早的论文 Search earlier papers"
        more(page)
        assert page.text_content("#search-status") == "没有结果 No results"
        assert page.locator("#search-more").is_hidden()
        assert any("/pagefind/2020-01/" in url for url in fetched)
        # A word of every month still fills its first page from the newest months.
        assert len(results(page, "learning")) == 20
    finally:
        page.close()


def _pagefind_children() -> list[int]:
    """Pagefind processes whose parent is this test process."""
    import os

    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == os.getpid() and b"pagefind" in command:
            found.append(int(entry.name))
    return found


def test_a_build_that_fails_after_planning_leaves_no_pagefind_process_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from feeds import syndicate
    from feeds.errors import OutputError

    def broken(*args: object, **kwargs: object) -> dict[str, bytes]:
        raise OutputError("the disk went away")

    # Planning starts Pagefind's processes (every month is new); the feeds then fail.
    monkeypatch.setattr(syndicate, "render_feeds", broken)
    with pytest.raises(OutputError, match="the disk went away"):
        build(settings_for(tmp_path), now=NOW, log=lambda _: None)
    assert _pagefind_children() == []
    assert not (tmp_path / "output" / "pagefind" / "periods.json").exists()
