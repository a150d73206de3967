"""The build: deterministic, incremental, safe to interrupt, and honest about bad input."""

from __future__ import annotations

import email
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import lock_holder, make_digest, make_item
from lxml import etree
from lxml import html as lxml_html

from feeds import output, state, store
from feeds.assemble import assemble
from feeds.build import build
from feeds.cli import cli
from feeds.config import Settings
from feeds.config_file import load_settings
from feeds.fingerprints import RENDER_MODULES
from feeds.lock import build_lock
from feeds.model import Digest, Item, Link
from feeds.output import TEMP_PREFIX
from feeds.send import Issues

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "digests"
NOW = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


def settings_for(tmp_path: Path, input_dir: Path, name: str = "out") -> Settings:
    base = load_settings(None, environ={}, base=tmp_path)
    paths = replace(
        base.paths,
        input=input_dir,
        output=tmp_path / name,
        state=tmp_path / f"{name}-state" / "feeds.sqlite3",
    )
    return replace(base, paths=paths)


def copy_samples(dest: Path, names: list[str] | None = None) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for path in sorted(SAMPLES.glob("*.txt")):
        if names is None or path.name in names:
            shutil.copyfile(path, dest / path.name)
    return dest


def published(settings: Settings) -> list[Digest]:
    """What the last complete build published, newest first, in full."""
    issues = Issues.published(settings.paths.state)
    found = issues.load([ref.id for ref in issues.refs])
    return [found[ref.id] for ref in issues.refs]


def snapshot(root: Path) -> dict[str, tuple[bytes, int, int]]:
    """Every file under `root`: (bytes, inode, mtime_ns)."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            st = path.stat()
            out[path.relative_to(root).as_posix()] = (path.read_bytes(), st.st_ino, st.st_mtime_ns)
    return out


def contents(root: Path) -> dict[str, bytes]:
    """What two builds of the same input must publish byte for byte: every file but the record
    of which state database published the folder (`output.PUBLISHER`), which names its own."""
    return {
        rel: data for rel, (data, _, _) in snapshot(root).items() if rel != output.PUBLISHER
    }


def quiet(_: str) -> None:
    pass


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    return copy_samples(tmp_path / "digests")


def test_a_build_publishes_feeds_site_and_newsletters_for_every_sample(
    tmp_path: Path, inputs: Path
) -> None:
    settings = settings_for(tmp_path, inputs)
    report = build(settings, now=NOW, log=quiet)
    out = settings.paths.output
    assert not report.failed
    assert report.digests == 5
    for digest_id in ("2020-07-11-weekly", "2021-03-10", "2021-03-30", "2021-06-17",
                      "2022-08-13"):
        for ext in ("html", "txt", "eml"):
            assert (out / "newsletter" / f"{digest_id}.{ext}").is_file()
    for name in ("index.html", "feeds.opml", "newsletter/index.html", "feeds/all.rss",
                 "feeds/all.atom", "feeds/all.json", "feeds/all.html", "feeds/lg.rss"):
        assert (out / name).is_file(), name
    assert sorted(report.written) == sorted(snapshot(out))


def test_newsletters_from_the_parse_cache_equal_newsletters_from_the_parser(
    tmp_path: Path, inputs: Path
) -> None:
    from feeds.newsletter import render_issue_files
    from feeds.parse import parse_file

    settings = settings_for(tmp_path, inputs)
    build(settings, now=NOW, log=quiet)
    # The second build reads every digest back from the state's cache.
    build(settings, now=NOW, log=quiet, force=True)
    for path in sorted(inputs.glob("*.txt")):
        digest = parse_file(path, tz=settings.site.tz)
        for rel, data in render_issue_files(digest, settings).items():
            assert (settings.paths.output / rel).read_bytes() == data, rel


def test_building_twice_rewrites_nothing(tmp_path: Path, inputs: Path) -> None:
    settings = settings_for(tmp_path, inputs)
    build(settings, now=NOW, log=quiet)
    before = snapshot(settings.paths.output)

    again = build(settings, now=NOW + timedelta(days=1), log=quiet)
    assert again.noop and again.written == [] and not again.failed
    forced = build(settings, now=NOW + timedelta(days=2), log=quiet, force=True)
    assert not forced.noop
    assert forced.written == [] and forced.removed == []
    assert snapshot(settings.paths.output) == before


def test_two_builds_into_two_folders_are_byte_identical(tmp_path: Path, inputs: Path) -> None:
    first = settings_for(tmp_path, inputs, "one")
    second = settings_for(tmp_path, inputs, "two")
    build(first, now=NOW, log=quiet)
    build(second, now=NOW, log=quiet)
    assert contents(first.paths.output) == contents(second.paths.output)
    # Each folder names the state database that published it, and only that one.
    for settings in (first, second):
        assert output.publisher(settings.paths.output) == state.created(settings.paths.state)
    assert output.publisher(first.paths.output) != output.publisher(second.paths.output)


def test_newsletters_rendered_on_every_core_are_the_same_bytes(
    tmp_path: Path, inputs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    serial = settings_for(tmp_path, inputs, "serial")
    build(serial, now=NOW, log=quiet)
    monkeypatch.setattr("feeds.workers.PARALLEL_FROM", 2)
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    parallel = settings_for(tmp_path, inputs, "parallel")
    build(parallel, now=NOW, log=quiet)
    assert contents(parallel.paths.output) == contents(serial.paths.output)


def test_renaming_an_input_file_changes_nothing(tmp_path: Path, inputs: Path) -> None:
    settings = settings_for(tmp_path, inputs)
    build(settings, now=NOW, log=quiet)
    before = snapshot(settings.paths.output)
    # Even a name that no longer carries the date: the content was seen and dated before.
    (inputs / "2022-08-13.txt").rename(inputs / "latest digest.txt")
    (inputs / "2021-03-30.txt").rename(inputs / "b.txt")

    report = build(settings, now=NOW + timedelta(days=3), log=quiet)
    assert not report.noop
    assert report.written == [] and report.removed == [] and report.parsed == []
    assert snapshot(settings.paths.output) == before


def test_adding_a_digest_rewrites_only_files_whose_content_changed(tmp_path: Path) -> None:
    inputs = copy_samples(tmp_path / "digests", ["2020-07-11-weekly.txt", "2021-03-10.txt",
                                                  "2021-03-30.txt", "2021-06-17.txt"])
    settings = settings_for(tmp_path, inputs)
    build(settings, now=NOW, log=quiet)
    before = snapshot(settings.paths.output)

    shutil.copyfile(SAMPLES / "2022-08-13.txt", inputs / "2022-08-13.txt")
    report = build(settings, now=NOW, log=quiet)
    after = snapshot(settings.paths.output)

    changed = {rel for rel in after if rel not in before or after[rel][0] != before[rel][0]}
    assert set(report.written) == changed
    assert {"newsletter/2022-08-13.html", "newsletter/2022-08-13.eml", "index.html",
            "feeds/all.rss", "newsletter/index.html"} <= changed
    # The older issues were neither re-rendered nor touched; what went is the files of the
    # search index's month made again that the new one does not have.
    assert set(before) - set(after) == set(report.removed)
    assert all(rel.startswith("pagefind/") for rel in report.removed)
    for rel in after.keys() & before.keys():
        if rel not in changed:
            assert after[rel][1:] == before[rel][1:], rel
    assert "newsletter/2021-03-30.html" not in changed
    assert report.parsed == [str(inputs / "2022-08-13.txt")]


def test_an_incremental_build_equals_a_fresh_build_of_the_same_input(tmp_path: Path) -> None:
    # Two entries per feed: most papers are out of every feed and stay light in memory.
    inputs = copy_samples(tmp_path / "digests", ["2020-07-11-weekly.txt", "2021-03-10.txt",
                                                  "2021-03-30.txt", "2021-06-17.txt"])
    incremental = settings_for(tmp_path, inputs, "incremental")
    incremental = replace(incremental, site=replace(incremental.site, items_per_feed=2))
    build(incremental, now=NOW, log=quiet)
    shutil.copyfile(SAMPLES / "2022-08-13.txt", inputs / "2022-08-13.txt")
    build(incremental, now=NOW, log=quiet)

    fresh = settings_for(tmp_path, inputs, "fresh")
    fresh = replace(fresh, site=replace(fresh.site, items_per_feed=2))
    build(fresh, now=NOW, log=quiet)
    assert contents(incremental.paths.output) == contents(fresh.paths.output)
    # The papers shown are whole: summaries and abstracts are on the feed pages.
    page = (fresh.paths.output / "feeds" / "all.html").read_text(encoding="utf-8")
    assert page.count('class="summary"') == 2 and page.count("<details") == 2


def test_a_removed_digest_takes_its_newsletter_files_with_it(
    tmp_path: Path, inputs: Path
) -> None:
    settings = settings_for(tmp_path, inputs)
    build(settings, now=NOW, log=quiet)
    (settings.paths.output / "unrelated.txt").write_text("not ours\n")
    (inputs / "2021-03-10.txt").unlink()
    # The issue, its message and the web copy of each of its categories.
    issue_files = sorted(
        f"newsletter/{p.name}" for p in (settings.paths.output / "newsletter").glob("2021-03-10.*")
    )
    assert len(issue_files) > 3 and "newsletter/2021-03-10.ro.html" in issue_files

    report = build(settings, now=NOW, log=quiet)
    # Robotics (RO) appeared in that digest only: its feed goes too, as a fresh build would
    # (and files of the search index's months made again).
    assert sorted(r for r in report.removed if not r.startswith("pagefind/")) == [
        "feeds/archive/ro/2021-03.atom", "feeds/archive/ro/2021-03.rss",
        "feeds/ro.atom", "feeds/ro.html", "feeds/ro.json", "feeds/ro.rss", *issue_files,
    ]
    assert (settings.paths.output / "unrelated.txt").exists()
    fresh = settings_for(tmp_path, inputs, "fresh")
    build(fresh, now=NOW, log=quiet)
    assert contents(fresh.paths.output).keys() == contents(settings.paths.output).keys() - {
        "unrelated.txt"
    }


def test_a_lost_state_database_makes_the_next_build_a_real_one(
    tmp_path: Path, inputs: Path
) -> None:
    settings = settings_for(tmp_path, inputs)
    build(settings, now=NOW, log=quiet)
    before = contents(settings.paths.output)
    settings.paths.state.unlink()

    report = build(settings, now=NOW, log=quiet)
    assert not report.noop and report.written == []
    assert len(report.parsed) == 5
    assert contents(settings.paths.output) == before
    assert len(published(settings)) == 5


def test_a_deleted_output_file_is_restored_by_the_next_build(
    tmp_path: Path, inputs: Path
) -> None:
    settings = settings_for(tmp_path, inputs)
    build(settings, now=NOW, log=quiet)
    original = (settings.paths.output / "newsletter" / "2021-03-30.html").read_bytes()
    (settings.paths.output / "newsletter" / "2021-03-30.html").unlink()

    report = build(settings, now=NOW, log=quiet)
    assert "newsletter/2021-03-30.html" in report.written
    assert (settings.paths.output / "newsletter" / "2021-03-30.html").read_bytes() == original


def test_a_digest_that_fails_to_parse_is_reported_and_the_others_are_published(
    tmp_path: Path, inputs: Path
) -> None:
    (inputs / "2021-01-01.txt").write_bytes(b"\x00\x01 not a digest")
    config = tmp_path / "feeds.toml"
    config.write_text(
        f'[paths]\ninput = "{inputs}"\noutput = "{tmp_path / "out"}"\n'
        f'state = "{tmp_path / "state" / "feeds.sqlite3"}"\n',
        encoding="utf-8",
    )
    result = CliRunner().invoke(cli, ["--config", str(config), "build"])
    assert result.exit_code == 1
    assert f"error: {inputs / '2021-01-01.txt'}" in result.output
    assert (tmp_path / "out" / "newsletter" / "2021-03-30.html").is_file()
    assert (tmp_path / "out" / "feeds" / "all.rss").is_file()

    # Nothing changed, but the failure is still there: cron keeps hearing about it.
    again = CliRunner().invoke(cli, ["--config", str(config), "build", "-v"])
    assert again.exit_code == 1
    assert "nothing changed" in again.output and "2021-01-01.txt" in again.output


def test_a_digest_edited_into_garbage_keeps_its_previous_version_published(
    tmp_path: Path, inputs: Path
) -> None:
    settings = settings_for(tmp_path, inputs)
    build(settings, now=NOW, log=quiet)
    (inputs / "2021-03-30.txt").write_bytes(b"")

    report = build(settings, now=NOW, log=quiet)
    assert report.failed
    assert any("2021-03-30.txt" in error for error in report.errors)
    assert report.removed == []
    assert (settings.paths.output / "newsletter" / "2021-03-30.html").is_file()


def test_an_undated_digest_is_dated_when_first_seen_and_keeps_that_date(
    tmp_path: Path,
) -> None:
    inputs = tmp_path / "digests"
    inputs.mkdir()
    # The 2022 sample dates itself only by its file name.
    shutil.copyfile(SAMPLES / "2022-08-13.txt", inputs / "latest.txt")
    settings = settings_for(tmp_path, inputs)
    first_seen = datetime(2023, 5, 6, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
    build(settings, now=first_seen, log=quiet)
    assert (settings.paths.output / "newsletter" / "2023-05-06.html").is_file()

    report = build(settings, now=first_seen + timedelta(days=30), log=quiet, force=True)
    assert report.written == []
    digests = published(settings)
    assert [d.id for d in digests] == ["2023-05-06"]
    assert digests[0].date == first_seen
    assert digests[0].date_source == "state"
    assert all(item.published == first_seen for item in digests[0].items)


def test_two_digests_with_the_same_id_get_a_stable_suffix(tmp_path: Path) -> None:
    inputs = tmp_path / "digests"
    inputs.mkdir()
    text = (SAMPLES / "2021-03-30.txt").read_text(encoding="utf-8")
    (inputs / "a.txt").write_text(text, encoding="utf-8")
    settings = settings_for(tmp_path, inputs)
    build(settings, now=NOW, log=quiet)
    (inputs / "b.txt").write_text(text + "\n另一个版本\n", encoding="utf-8")
    build(settings, now=NOW + timedelta(hours=1), log=quiet)

    ids = [d.id for d in published(settings)]
    assert sorted(ids) == ["2021-03-30", "2021-03-30-2"]
    # The first one leaves; the second keeps the id it was published under.
    (inputs / "a.txt").unlink()
    build(settings, now=NOW + timedelta(hours=2), log=quiet)
    assert [d.id for d in published(settings)] == ["2021-03-30-2"]


def test_a_send_sees_what_the_last_build_published(tmp_path: Path, inputs: Path) -> None:
    settings = settings_for(tmp_path, inputs)
    assert Issues.published(settings.paths.state).refs == ()
    assert not settings.paths.state.exists()
    build(settings, now=NOW, log=quiet)
    digests = published(settings)
    assert [d.id for d in digests] == [
        "2022-08-13", "2021-06-17", "2021-03-30", "2021-03-10", "2020-07-11-weekly"
    ]
    assert all(item.digest_id == d.id for d in digests for item in d.items)
    assert any(item.abstract for item in digests[0].items)
    # A new file is not part of it until a build publishes it.
    (inputs / "2021-03-30.txt").rename(inputs / "renamed.txt")
    assert [d.id for d in published(settings)][2] == "2021-03-30"


# -- identity across digests ---------------------------------------------------------------


def digest_of(day: int, *items: Item) -> Digest:
    """The daily digest of 2021-03-`day`, dated by its header, its items sighted in it."""
    date, digest_id = datetime(2021, 3, day, 8, 0, tzinfo=UTC), f"2021-03-{day:02d}"
    return make_digest(
        [replace(i, published=date, digest_id=digest_id) for i in items],
        id=digest_id, date=date, date_source="header", source=f"{digest_id}.txt", title="",
        content_hash=digest_id,
    )


def tag(key: str) -> str:
    return f"tag:digest-feeds,2020:{key}"


def test_the_same_paper_in_two_digests_is_one_paper_dated_by_its_first_sighting() -> None:
    weibo = ("weibo", "https://weibo.com/1402400261/K8wjSoUDC")
    arxiv = ("arxiv", "https://arxiv.org/abs/2103.0001")
    first = make_item(
        key="weibo:K8wjSoUDC", guid=tag("weibo:K8wjSoUDC"), title="Self-supervised Learning!",
        url=weibo[1], links=(Link(*weibo),), category=None,
    )
    later = make_item(
        key="arxiv:2103.0001", guid=tag("arxiv:2103.0001"), title="self-supervised learning",
        url=arxiv[1], links=(Link(*arxiv), Link(*weibo)), category="LG", starred=True,
    )
    other_abs = "https://arxiv.org/abs/2103.0002"
    other = make_item(
        2, key="arxiv:2103.0002", guid=tag("arxiv:2103.0002"), title="Another paper",
        url=other_abs, links=(Link("arxiv", other_abs),),
    )

    ctx, (published, keys, titles) = assemble(
        [digest_of(30, later, other), digest_of(10, first)], {}, {}
    )
    assert [p.key for p in ctx.papers] == ["arxiv:2103.0002", "weibo:K8wjSoUDC"]
    paper = ctx.papers[1]
    assert paper.first_seen == datetime(2021, 3, 10, 8, 0, tzinfo=UTC)
    assert paper.digest_ids == ("2021-03-10", "2021-03-30")
    assert [link.href for link in paper.item.links] == [weibo[1], arxiv[1]]
    assert paper.item.url == arxiv[1]
    assert paper.guid == first.guid
    # What the first sighting lacked, the later one filled in.
    assert paper.item.category == "LG" and paper.item.starred
    assert ("arxiv:2103.0001", first.guid) in keys
    assert {guid for _, guid in titles} == {p.guid for p in ctx.papers}
    assert [guid for guid, _, _ in published] == [first.guid, other.guid]
    assert [d.id for d in ctx.digests] == ["2021-03-30", "2021-03-10"]


def test_a_published_guid_never_changes() -> None:
    item = make_item(key="arxiv:2103.0001", guid=tag("arxiv:2103.0001"), title="A paper")
    ctx, _ = assemble([digest_of(10, item)], {}, {"a paper": "tag:old-guid"})
    assert ctx.papers[0].guid == "tag:old-guid"
    ctx, _ = assemble([digest_of(10, item)], {"arxiv:2103.0001": "tag:older"}, {})
    assert ctx.papers[0].guid == "tag:older"


def daily(day: int, *entries: tuple[str, str]) -> str:
    """A small dated daily digest: one featured entry per (title, link)."""
    lines = [f"date: 2021-03-{day:02d}", "LG - 机器学习", ""]
    for n, (title, link) in enumerate(entries, 1):
        lines += [
            f"{n}、[LG] {title}", "A Author, B Author", "[MIT]",
            "一篇论文。This paper studies the question at some length, with results.", link, "",
        ]
    return "\n".join(lines)


def test_no_published_guid_ever_changes_as_digests_come_one_by_one(tmp_path: Path) -> None:
    inputs = tmp_path / "digests"
    inputs.mkdir()
    settings = settings_for(tmp_path, inputs)
    weibo = "https://weibo.com/1402400261/K6abcdEFG"
    arxiv = "https://arxiv.org/abs/2103.00001"
    # Day 10 and day 11 name one paper (same title), which the state records as one guid.
    days = {
        10: [("Shared Title of a Paper", weibo)],
        11: [("Shared title of a paper", arxiv), ("Second", "https://arxiv.org/abs/2103.00002")],
    }
    for day in range(12, 17):
        days[day] = [(f"Paper of day {day}", f"https://arxiv.org/abs/2103.{day:05d}")]
    published: dict[str, str] = {}

    def check() -> None:
        build(settings, now=NOW, log=quiet)
        feed = json.loads((settings.paths.output / "feeds" / "all.json").read_bytes())
        guids = {item["_digest_feeds"]["key"]: item["id"] for item in feed["items"]}
        for key, guid in guids.items():
            assert published.setdefault(key, guid) == guid, key
        assert len(set(guids.values())) == len(guids)

    for day in (10, 11):
        (inputs / f"2021-03-{day:02d}.txt").write_text(daily(day, *days[day]), encoding="utf-8")
        check()
    assert published == {
        "weibo:K6abcdEFG": weibo, "arxiv:2103.00002": "https://arxiv.org/abs/2103.00002"
    }
    # The curator moves the arXiv sighting to an earlier day under another title: the two are
    # two papers now, both once published under one guid. The paper whose own guid it is keeps
    # it, although the other is seen first; the other gets a guid of its own, and both stay put
    # as digests keep coming.
    days[11] = days[11][1:]
    days[9] = [("A Different Title", arxiv)]
    for day in (11, 9):
        (inputs / f"2021-03-{day:02d}.txt").write_text(daily(day, *days[day]), encoding="utf-8")
    check()
    assert published["weibo:K6abcdEFG"] == weibo
    assert published["arxiv:2103.00001"] == arxiv
    for day in range(12, 17):
        (inputs / f"2021-03-{day}.txt").write_text(daily(day, *days[day]), encoding="utf-8")
        check()
    assert len(published) == 8


def full_and_light(settings: Settings) -> tuple[list[Digest], list[Digest]]:
    """After a build: the published digests in full, and the same as a build reads them
    without their texts (`store.load_digests(..., texts=False)`), in the same order."""
    build(settings, now=NOW, log=quiet)
    full = published(settings)
    conn = state.connect(settings.paths.state)
    try:
        headers = {d.content_hash: replace(d, items=()) for d in full}
        summary = store.load_digests(conn, headers, texts=False)
    finally:
        conn.close()
    return full, [summary[d.content_hash] for d in full]


def test_the_archive_is_the_same_from_digests_without_their_texts(
    tmp_path: Path, inputs: Path
) -> None:
    from feeds.model import BuildContext
    from feeds.newsletter import render_archive

    settings = settings_for(tmp_path, inputs)
    full, short = full_and_light(settings)
    assert all(not item.authors and item.abstract is None for d in short for item in d.items)
    assert render_archive(BuildContext(tuple(short), ()), settings) == render_archive(
        BuildContext(tuple(full), ()), settings
    )


def test_papers_from_digests_without_texts_made_whole_equal_papers_from_full_digests(
    tmp_path: Path, inputs: Path
) -> None:
    from feeds.assemble import assemble, complete

    full, short = full_and_light(settings_for(tmp_path, inputs))
    whole, _ = assemble(full, {}, {})
    light, _ = assemble(short, {}, {})
    by_id = {d.id: d for d in full}
    # Papers sighted in more than one digest are merged: those are made whole too.
    assert any(len(paper.sightings) > 1 for paper in light.papers)
    assert light.papers != whole.papers
    assert [complete(paper, by_id) for paper in light.papers] == list(whole.papers)


# -- concurrency and interruption -----------------------------------------------------------


def write_config(path: Path, inputs: Path, out: Path, title: str = "ML Paper Digest") -> Path:
    path.write_text(
        f'[site]\ntitle = "{title}"\n'
        f'[paths]\ninput = "{inputs}"\noutput = "{out}"\n'
        f'state = "{path.parent / (path.stem + "-state") / "feeds.sqlite3"}"\n'
        f'templates = "{ROOT / "templates"}"\n',
        encoding="utf-8",
    )
    return path


def feeds_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "feeds.cli", *args]


def test_a_second_build_refuses_the_lock_with_a_clear_message(
    tmp_path: Path, inputs: Path
) -> None:
    config = write_config(tmp_path / "feeds.toml", inputs, tmp_path / "out")
    state_path = tmp_path / "feeds-state" / "feeds.sqlite3"
    with lock_holder(build_lock(state_path)) as holder:
        started = time.monotonic()
        second = subprocess.run(
            feeds_command("--config", str(config), "build", "--wait", "0.5"),
            capture_output=True, text=True, timeout=60,
        )
        assert second.returncode == 1
        assert time.monotonic() - started >= 0.5
        assert "another feeds build is running" in second.stderr
        assert f"(process {holder.pid})" in second.stderr
        assert "--wait" in second.stderr
        assert not (tmp_path / "out").exists()
    # The kernel dropped the lock with its holder.
    after = subprocess.run(feeds_command("--config", str(config), "build"), timeout=120)
    assert after.returncode == 0


def check_complete(root: Path) -> None:
    """Every published file under `root` is whole: it parses as what its name says."""
    for path in root.rglob("*"):
        # A build killed between writing a temporary file and renaming it leaves that hidden
        # file behind; the next build removes it (checked by the caller).
        if not path.is_file() or path.name.startswith(TEMP_PREFIX):
            continue
        data = path.read_bytes()
        assert data, path
        if path.suffix in (".rss", ".atom", ".opml"):
            etree.fromstring(data)
        elif path.suffix == ".json":
            json.loads(data)
        elif path.suffix == ".html":
            assert data.rstrip().endswith(b"</html>"), path
            lxml_html.fromstring(data)
        elif path.suffix == ".eml":
            assert email.message_from_bytes(data)["Subject"], path
        elif path.suffix.startswith(".pf_") or path.suffix == ".pagefind":
            gzip.decompress(data)  # the search index's files are gzip streams
        else:
            data.decode("utf-8")


def test_killing_a_build_at_any_moment_leaves_complete_files(tmp_path: Path) -> None:
    four = ["2020-07-11-weekly.txt", "2021-03-10.txt", "2021-03-30.txt", "2021-06-17.txt"]
    inputs = copy_samples(tmp_path / "digests", four)
    out = tmp_path / "out"
    old_config = write_config(tmp_path / "feeds.toml", inputs, out, "Old title")
    assert subprocess.run(feeds_command("--config", str(old_config), "build")).returncode == 0
    old = contents(out)

    # The next build changes every file: a new title everywhere and one more digest.
    shutil.copyfile(SAMPLES / "2022-08-13.txt", inputs / "2022-08-13.txt")
    write_config(tmp_path / "feeds.toml", inputs, out, "New title")
    reference = tmp_path / "reference"
    ref_config = write_config(tmp_path / "ref.toml", inputs, reference, "New title")
    assert subprocess.run(feeds_command("--config", str(ref_config), "build")).returncode == 0
    new = contents(reference)

    for delay in (0.05, 0.3, 0.6, 0.9, 1.2, 1.6):
        proc = subprocess.Popen(feeds_command("--config", str(old_config), "build"))
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        check_complete(out)
        for rel, data in contents(out).items():
            if not Path(rel).name.startswith(TEMP_PREFIX):
                assert data in (old.get(rel), new.get(rel)), rel

    assert subprocess.run(feeds_command("--config", str(old_config), "build")).returncode == 0
    # Complete, and no temporary file left over.
    assert contents(out) == new


def test_a_digest_that_could_not_be_read_is_read_again_at_the_next_build(
    tmp_path: Path, inputs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(tmp_path, inputs)
    locked = inputs / "2021-03-30.txt"
    real = Path.read_bytes

    def refuse(path: Path) -> bytes:
        if path == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(Path, "read_bytes", refuse)
    first = build(settings, now=NOW, log=quiet)
    assert [e for e in first.errors if "cannot read" in e] == [
        f"{locked}: cannot read: Permission denied"
    ]
    assert first.digests == 4
    # Made readable again (a chmod changes neither its size nor its mtime): the next build
    # reads and publishes it, rather than repeating the error as a build with nothing new.
    monkeypatch.setattr(Path, "read_bytes", real)
    second = build(settings, now=NOW, log=quiet)
    assert not second.noop and not second.failed
    assert second.digests == 5
    assert (settings.paths.output / "newsletter" / "2021-03-30.eml").is_file()


class Stopped(BaseException):
    """The build process dying where a test says (as a kill would: nothing after it runs)."""


@pytest.mark.parametrize("stop_after", [1, 2])
@pytest.mark.parametrize("change", ["settings changed", "digest added"])
def test_a_build_stopped_midway_then_undone_publishes_the_old_output_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str, stop_after: int
) -> None:
    inputs = copy_samples(tmp_path / "digests", ["2021-03-10.txt", "2021-03-30.txt"])
    out = tmp_path / "out"
    config = write_config(tmp_path / "feeds.toml", inputs, out, "Old title")
    build(load_settings(config), now=NOW, log=quiet)
    old = contents(out)

    # A change that rewrites files the record keeps (the newsletters, the archive documents,
    # the search index) and one that adds some (a new month), each stopped after the first
    # batch of files (newsletters) or the second (archive documents and search index).
    added = inputs / "2023-01-05.txt"
    if change == "settings changed":
        write_config(config, inputs, out, "New title")
    else:
        added.write_text(
            "date: 2023-01-05\n" + (SAMPLES / "2022-08-13.txt").read_text(encoding="utf-8"),
            encoding="utf-8",
        )
    real = output.write_files
    calls: list[int] = []

    def write_then_stop(root: Path, files: dict[str, bytes]) -> list[str]:
        written = real(root, files)
        calls.append(len(written))
        if len(calls) == stop_after:
            raise Stopped
        return written

    monkeypatch.setattr(output, "write_files", write_then_stop)
    with pytest.raises(Stopped):
        build(load_settings(config), now=NOW, log=quiet)
    monkeypatch.setattr(output, "write_files", real)
    assert calls[-1] > 0 and contents(out) != old

    # Undone: the old input again. Whatever the stopped build replaced or added goes.
    write_config(config, inputs, out, "Old title")
    added.unlink(missing_ok=True)
    build(load_settings(config), now=NOW, log=quiet)
    assert contents(out) == old


def test_make_run_says_what_it_wrote(tmp_path: Path, inputs: Path) -> None:
    config = write_config(tmp_path / "feeds.toml", inputs, tmp_path / "out")
    result = CliRunner().invoke(cli, ["--config", str(config), "build", "-v"])
    assert result.exit_code == 0, result.output
    assert f"wrote {tmp_path / 'out' / 'index.html'}" in result.output
    assert "5 digests" in result.output
    quiet_run = CliRunner().invoke(cli, ["--config", str(config), "build"])
    assert quiet_run.exit_code == 0 and quiet_run.output == ""


def test_a_missing_input_folder_is_one_clear_line(tmp_path: Path) -> None:
    config = write_config(tmp_path / "feeds.toml", tmp_path / "nowhere", tmp_path / "out")
    result = CliRunner().invoke(cli, ["--config", str(config), "build"])
    assert result.exit_code == 1
    assert "the input folder does not exist" in result.output
    assert "Traceback" not in result.output


def test_the_build_command_has_help_with_an_example() -> None:
    result = CliRunner().invoke(cli, ["build", "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output and "--wait" in result.output


def test_the_state_records_published_guids(tmp_path: Path, inputs: Path) -> None:
    settings = settings_for(tmp_path, inputs)
    build(settings, now=NOW, log=quiet)
    conn = state.connect(settings.paths.state)
    try:
        keys, titles = state.guid_maps(conn)
    finally:
        conn.close()
    entries = json.loads((settings.paths.output / "feeds" / "all.json").read_bytes())["items"]
    assert len(entries) == 65
    for entry in entries:
        assert keys[entry["_digest_feeds"]["key"]] == entry["id"]
    assert set(titles.values()) == {entry["id"] for entry in entries}


FINGERPRINTS = """
import json, sys
from dataclasses import replace
from pathlib import Path
from feeds.fingerprints import render_fingerprint
from feeds.config import Settings
from feeds.inputs import parser_fingerprint
base = Settings()
settings = replace(base, paths=replace(base.paths, templates=Path(sys.argv[1])))
print(json.dumps([parser_fingerprint(settings), render_fingerprint(settings)]))
"""


def fingerprints(package: Path) -> tuple[str, str]:
    """(parser, render) fingerprints as the code in `package` computes them."""
    done = subprocess.run(
        [sys.executable, "-c", FINGERPRINTS, str(ROOT / "templates")],
        capture_output=True, text=True, check=True, cwd=package,
        env={**os.environ, "PYTHONPATH": str(package), "PYTHONDONTWRITEBYTECODE": "1"},
    )
    parser, render = json.loads(done.stdout)
    return parser, render


def test_fingerprints_cover_the_code_that_parses_and_renders_and_nothing_else(
    tmp_path: Path,
) -> None:
    copy = tmp_path / "feeds"
    shutil.copytree(ROOT / "feeds", copy, ignore=shutil.ignore_patterns("__pycache__"))
    parser, render = fingerprints(tmp_path)
    # A comment in the delivery code re-renders nothing and re-parses nothing.
    with (copy / "ledger.py").open("a", encoding="utf-8") as f:
        f.write("\n# a comment\n")
    assert fingerprints(tmp_path) == (parser, render)
    with (copy / "textutil.py").open("a", encoding="utf-8") as f:
        f.write("\n# changed\n")
    changed = fingerprints(tmp_path)
    assert changed[0] != parser and changed[1] != render
    with (copy / "newsletter.py").open("a", encoding="utf-8") as f:
        f.write("\n# changed\n")
    assert fingerprints(tmp_path)[0] == changed[0]
    assert fingerprints(tmp_path)[1] != changed[1]


def test_the_render_fingerprint_covers_every_module_the_generators_import() -> None:
    modules = ["feeds.newsletter", "feeds.syndicate", "feeds.site", "feeds.message"]
    code = (
        "import sys\n"
        + "".join(f"import {name}\n" for name in modules)
        + "print(' '.join(sorted(m for m in sys.modules if m.startswith('feeds.'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert set(done.stdout.split()) - {"feeds.errors", "feeds.config"} <= set(RENDER_MODULES)


def test_the_render_fingerprint_counts_the_endpoint_only_by_its_address() -> None:
    from dataclasses import replace

    from feeds.config import Settings
    from feeds.fingerprints import render_fingerprint

    base = Settings()
    busier = replace(base, web=replace(base.web, requests_per_minute=99, notices_per_day=9))
    assert render_fingerprint(busier) == render_fingerprint(base)
    moved = replace(base, web=replace(base.web, public_url="https://digest.example.org/list"))
    assert render_fingerprint(moved) != render_fingerprint(base)
