"""RFC 5005 archived feeds: walking every feed's `prev-archive` chain meets each paper exactly
once; closed months keep their bytes (and their files) from build to build; feedparser and lxml
accept every archive document; the feed pages and the OPML still name the subscription documents
only."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import feedparser
import lxml.etree
import pytest
from conftest import (
    DIGEST_TIME,
    REGENERATE,
    SAMPLE_DIGESTS,
    make_context,
    make_item,
    make_paper,
)
from test_syndicate import sample_context

from feeds.archive import render_archives, volumes
from feeds.build import BuildReport, build
from feeds.catalog import archive_month
from feeds.config import PathSettings, Settings, SiteSettings
from feeds.model import Paper
from feeds.syndicate import entry_times

BASE = "https://digest.example.org/"
ATOM = "{http://www.w3.org/2005/Atom}"
FH = "{http://purl.org/syndication/history/1.0}"
GOLDEN = Path(__file__).resolve().parent / "golden" / "archive"
NOW = datetime(2022, 9, 30, tzinfo=UTC)

# A digest of a later month with two papers of its own (one of a category new to the site).
LATER_DIGEST = """date: 2022-09-02
LG - 机器学习 CV - 计算机视觉 IR - 信息检索 (*表示值得重点关注)

1、[CV] *A Later Paper on Vision

A Author, B Author
[Somewhere]
一篇后来的视觉论文。 An abstract about vision.
https://arxiv.org/abs/2209.00001

2、[IR] Retrieval Later On

C Author
[Elsewhere]
一篇检索论文。 An abstract about retrieval.
https://arxiv.org/abs/2209.00002
"""


def settings_for(work: Path, inputs: Path, per_feed: int) -> Settings:
    return Settings(
        site=SiteSettings(items_per_feed=per_feed),
        paths=PathSettings(
            input=inputs,
            output=work / "output",
            state=work / "state" / "feeds.sqlite3",
            templates=Path(__file__).resolve().parent.parent / "templates",
            subscribers=work / "subscribers.csv",
        ),
    )


def run_build(settings: Settings, *, force: bool = False) -> BuildReport:
    report = build(settings, now=NOW, log=lambda _: None, force=force)
    assert not report.failed, report.summary_lines(True)
    return report


def local(output: Path, url: str) -> Path:
    assert url.startswith(BASE), url
    return output / url[len(BASE):]


def links(root: lxml.etree._Element, rel: str) -> list[str]:
    parent = root.find("channel") if root.tag == "rss" else root
    assert parent is not None
    found = [
        el.get("href") for el in parent.findall(f"{ATOM}link") if el.get("rel") == rel
    ]
    return [href for href in found if href]


def walk(output: Path, subscription: Path) -> list[tuple[Path, list[str]]]:
    """Each archive document met from `subscription` along `prev-archive`, with its entry ids,
    after checking the links both ways and feedparser's and lxml's reading of it."""
    met: list[tuple[Path, list[str]]] = []
    root = lxml.etree.fromstring(subscription.read_bytes())
    assert root.find(f"{FH}archive") is None and root.find(f"channel/{FH}archive") is None
    current_url = links(root, "self")[0]
    newer_url: str | None = None
    previous = links(root, "prev-archive")
    while previous:
        [url] = previous
        path = local(output, url)
        data = path.read_bytes()
        parsed = feedparser.parse(data)
        assert not parsed.bozo, (path, parsed.get("bozo_exception"))
        root = lxml.etree.fromstring(data)
        assert len(root.findall(f"{FH}archive") + root.findall(f"channel/{FH}archive")) == 1
        assert links(root, "self") == [url]
        assert links(root, "current") == [current_url]
        assert links(root, "next-archive") == ([newer_url] if newer_url else [])
        met.append((path, [entry.id for entry in parsed.entries]))
        newer_url = url
        previous = links(root, "prev-archive")
        assert len(met) < 1000, "prev-archive loops"
    return met


@pytest.fixture(scope="module")
def archived(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[str]]]:
    """The samples built with 3 papers per feed, and every feed's papers (by id, from a build
    whose feeds hold them all)."""
    work = tmp_path_factory.mktemp("archived")
    run_build(settings_for(work / "small", SAMPLE_DIGESTS, 3))
    whole = settings_for(work / "whole", SAMPLE_DIGESTS, 10_000)
    run_build(whole)
    papers = {}
    for path in sorted((whole.paths.output / "feeds").glob("*.json")):
        papers[path.stem] = [item["id"] for item in json.loads(path.read_bytes())["items"]]
    return work / "small" / "output", papers


@pytest.mark.parametrize("ext", ["atom", "rss"])
def test_walking_prev_archive_from_every_feed_meets_each_of_its_papers_exactly_once(
    archived: tuple[Path, dict[str, list[str]]], ext: str
) -> None:
    output, papers = archived
    assert len(papers["all"]) == 65 and {"all", "starred", "cv", "lg"} <= set(papers)
    for slug, ids in papers.items():
        subscription = output / "feeds" / f"{slug}.{ext}"
        window = [e.id for e in feedparser.parse(subscription.read_bytes()).entries]
        assert window == ids[:3]
        met = walk(output, subscription)
        counts = Counter(i for _, entries in met for i in entries)
        assert counts == Counter(ids), slug
        # Newest month first along the chain, each document named after its month.
        months = [path.stem for path, _ in met]
        assert months == sorted(months, reverse=True)
        assert all(path.parent.name == slug for path, _ in met)


def test_a_rebuild_and_a_new_month_leave_closed_months_byte_identical_and_untouched(
    tmp_path: Path,
) -> None:
    inputs = tmp_path / "digests"
    shutil.copytree(SAMPLE_DIGESTS, inputs)
    settings = settings_for(tmp_path, inputs, 3)
    run_build(settings)
    archive = settings.paths.output / "feeds" / "archive"

    def snapshot() -> dict[str, tuple[bytes, int, int]]:
        return {
            str(p.relative_to(archive)): (p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_ino)
            for p in sorted(archive.rglob("*.*"))
        }

    before = snapshot()
    assert len(before) == 32
    forced = run_build(settings, force=True)
    assert not [p for p in forced.written if p.startswith("feeds/archive/")]
    assert snapshot() == before

    (inputs / "2022-09-02.txt").write_text(LATER_DIGEST, encoding="utf-8")
    report = run_build(settings)
    after = snapshot()
    # The month before the new one, in the feeds the new digest adds to, gains its
    # next-archive link; every other document already there is the same file, unrewritten.
    opened = {"all/2022-08.atom", "all/2022-08.rss", "cv/2022-08.atom", "cv/2022-08.rss",
              "starred/2020-07.atom", "starred/2020-07.rss"}
    for name, (data, mtime, inode) in before.items():
        if name in opened:
            assert after[name][0] != data
            assert b'rel="next-archive"' in after[name][0]
        else:
            assert after[name] == (data, mtime, inode), name
    new = sorted(set(after) - set(before))
    assert new == [f"{slug}/2022-09.{ext}" for slug in ("all", "cv", "ir", "starred")
                   for ext in ("atom", "rss")]
    written = sorted(p for p in report.written if p.startswith("feeds/archive/"))
    assert written == sorted(f"feeds/archive/{name}" for name in [*opened, *new])


def test_an_archive_document_deleted_by_hand_is_written_again_by_the_next_build(
    tmp_path: Path,
) -> None:
    inputs = tmp_path / "digests"
    shutil.copytree(SAMPLE_DIGESTS, inputs)
    settings = settings_for(tmp_path, inputs, 3)
    run_build(settings)
    gone = settings.paths.output / "feeds" / "archive" / "cv" / "2021-03.atom"
    data = gone.read_bytes()
    gone.unlink()
    # The build's stamp looks at the archive folders too: the next build is a real one, and
    # writes the missing file and nothing else.
    report = run_build(settings)
    assert not report.noop
    assert report.written == ["feeds/archive/cv/2021-03.atom"]
    assert gone.read_bytes() == data
    assert run_build(settings).noop


def test_a_paper_is_archived_under_its_digests_month_even_when_its_entry_time_is_earlier() -> None:
    # A digest posted two seconds into April: its later papers' entry times count back into
    # March, but every paper belongs to April's archive.
    tz = ZoneInfo("Asia/Shanghai")
    posted = datetime(2021, 4, 1, 0, 0, 2, tzinfo=tz)
    ctx = make_context(*(
        Paper(item=make_item(n, published=posted), first_seen=posted) for n in range(1, 6)
    ))
    times = entry_times(ctx.papers, tz)
    assert times[ctx.papers[-1].key].astimezone(tz).month == 3
    found = volumes(ctx, Settings())
    assert {(v.feed.slug, v.month) for v in found} == {("all", "2021-04"), ("cv", "2021-04")}
    assert all(archive_month(p, tz) == "2021-04" for p in ctx.papers)


def test_a_feed_with_one_month_has_one_archive_document_without_neighbours() -> None:
    ctx = make_context(make_paper(1), make_paper(2, days_ago=1))
    files = render_archives(ctx, Settings())
    assert sorted(files) == [
        "feeds/archive/all/2021-03.atom", "feeds/archive/all/2021-03.rss",
        "feeds/archive/cv/2021-03.atom", "feeds/archive/cv/2021-03.rss",
    ]
    root = lxml.etree.fromstring(files["feeds/archive/cv/2021-03.atom"])
    assert links(root, "prev-archive") == [] and links(root, "next-archive") == []
    assert root.find(f"{FH}archive") is not None
    # The archive document is the same logical feed: the subscription document's id.
    assert root.findtext(f"{ATOM}id") == BASE + "feeds/cv.atom"


def test_archive_documents_are_the_same_bytes_from_the_same_context() -> None:
    ctx = make_context(*(make_paper(n, days_ago=20 * n) for n in range(1, 6)))
    assert render_archives(ctx, Settings()) == render_archives(ctx, Settings())
    months = {v.month for v in volumes(ctx, Settings())}
    expected = {(DIGEST_TIME - timedelta(days=20 * n)).strftime("%Y-%m") for n in range(1, 6)}
    assert months == expected


@pytest.mark.parametrize("name", ["cv/2021-06.atom", "cv/2021-06.rss", "starred/2020-07.atom"])
def test_sample_archive_documents_match_the_golden_files(name: str) -> None:
    produced = render_archives(sample_context(), Settings())[f"feeds/archive/{name}"]
    golden = GOLDEN / name
    if REGENERATE:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_bytes(produced)
    assert produced == golden.read_bytes(), f"{golden} differs; FEEDS_REGENERATE_GOLDEN=1"


def test_feed_pages_and_the_opml_name_the_subscription_documents_only(
    archived: tuple[Path, dict[str, list[str]]],
) -> None:
    output, _ = archived
    opml = (output / "feeds.opml").read_text(encoding="utf-8")
    assert "feeds/archive/" not in opml
    assert 'xmlUrl="https://digest.example.org/feeds/cv.rss"' in opml
    page = (output / "feeds" / "cv.html").read_text(encoding="utf-8")
    assert 'href="../feeds/cv.atom"' in page
    alternates = [line for line in page.splitlines() if 'rel="alternate"' in line]
    assert alternates and not [line for line in alternates if "archive" in line]
