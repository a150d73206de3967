"""The sealed history: a build of the recent digests publishes what a build over every digest
publishes, byte for byte, whatever happened to the digests in between."""

from __future__ import annotations

import hashlib
import random
import sqlite3
import sys
from contextlib import closing
from dataclasses import replace
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import ROOT
from test_build import NOW, contents, settings_for

from feeds import seal
from feeds.build import BuildReport, build
from feeds.config import Settings

sys.path.insert(0, str(ROOT / "benchmarks"))
from corpus import weibo_id_for  # the benchmarks' corpus: not a package

TZ = ZoneInfo("Asia/Shanghai")

CATEGORIES = {"LG": "机器学习", "CV": "计算机视觉", "CL": "计算与语言", "RO": "机器人"}
# RO is rare: its feed reaches back past the recent months for its newest papers.
WEIGHTS = (6, 4, 3, 0.3)
# Tables a build writes that two ways of building must leave equal.
TABLES = ("papers", "paper_keys", "paper_titles", "renders", "outputs", "archive_marks",
          "search_periods")


def digest_text(
    day: date,
    entries: list[tuple[str, str, str, bool]],
    names: dict[str, str] = CATEGORIES,
    posted: int | None = None,
) -> str:
    """A dated daily digest of (category, title, link, starred) entries; with `posted`, each
    entry also links a Weibo post of that many seconds after the day's midnight, which dates
    the digest to that moment."""
    legend = " ".join(f"{code} - {name}" for code, name in names.items())
    lines = [f"date: {day.isoformat()}", legend, ""]
    for n, (code, title, link, starred) in enumerate(entries, 1):
        lines += [
            f"{n}、[{code}] {'*' if starred else ''}{title}", "A Author, B Author", "[MIT]",
            f"一篇关于{title}的论文。This paper studies {title} at some length.", link,
        ]
        if posted is not None:
            moment = datetime.combine(day, time(), TZ) + timedelta(seconds=posted + n)
            lines.append(f"https://weibo.com/1402400261/{weibo_id_for(moment, n)}")
        lines.append("")
    return "\n".join(lines)


class Digests:
    """A folder of daily digests a random walk changes: days added (now and then sighting an
    earlier paper again), recent and old ones edited or removed, an old day added late."""

    def __init__(self, folder: Path, seed: int) -> None:
        self.folder = folder
        self.rng = random.Random(seed)
        self.days: dict[date, list[tuple[str, str, str, bool]]] = {}
        # The categories' names in the legend of new days, and the days posted at a time.
        self.names = dict(CATEGORIES)
        self.posted: dict[date, int] = {}
        self.serial = 0
        self.next_day = date(2021, 1, 1)

    def paper(self) -> tuple[str, str, str, bool]:
        self.serial += 1
        code = self.rng.choices(list(CATEGORIES), WEIGHTS)[0]
        link = f"https://arxiv.org/abs/2101.{self.serial:05d}"
        return code, f"Paper number {self.serial}", link, self.rng.random() < 0.15

    def write(self, day: date) -> None:
        path = self.folder / f"{day.isoformat()}.txt"
        text = digest_text(day, self.days[day], self.names, self.posted.get(day))
        path.write_text(text, encoding="utf-8")

    def add_day(self, again: str | None = None) -> str:
        day = self.next_day
        self.next_day += timedelta(days=self.rng.choice((1, 1, 1, 2, 5)))
        entries = [self.paper() for _ in range(self.rng.randint(2, 5))]
        if self.rng.random() < 0.2:
            # Posted in the first seconds of the day: its papers' entry times count back
            # into the day before, on the first of a month into the month before.
            self.posted[day] = self.rng.choice((0, 2, 36000))
        earlier = sorted(d for d in self.days if d < day)
        if again and earlier:
            # A paper of a recent or of an old day, in today's digest again.
            pool = earlier[-5:] if again == "recent" else earlier[: max(1, len(earlier) // 3)]
            entries.append(self.rng.choice(self.days[self.rng.choice(pool)]))
        self.days[day] = entries
        self.write(day)
        return f"add {day} {again or ''}"

    def pick(self, old: bool) -> date:
        """A day of the first third (old), or one of the last few."""
        days = sorted(self.days)
        return self.rng.choice(days[: len(days) // 3] if old else days[-4:])

    def edit(self, old: bool) -> str:
        day = self.pick(old)
        entries = list(self.days[day])
        if self.rng.random() < 0.5 and len(entries) > 1:
            entries.pop(self.rng.randrange(len(entries)))
        else:
            entries.append(self.paper())
        self.days[day] = entries
        self.write(day)
        return f"edit {day}"

    def remove(self, old: bool) -> str:
        day = self.pick(old)
        del self.days[day]
        (self.folder / f"{day.isoformat()}.txt").unlink()
        return f"remove {day}"

    def backfill(self) -> str:
        days = sorted(self.days)
        day = days[0] + timedelta(days=self.rng.randrange((days[-1] - days[0]).days))
        while day in self.days:
            day += timedelta(hours=24)
        self.days[day] = [self.paper() for _ in range(2)]
        self.write(day)
        return f"backfill {day}"

    def rename(self) -> str:
        """The rare category's name changes in the days to come (its feed's title follows
        once the new name is the more frequent)."""
        self.names["RO"] = "机器人学" if self.names["RO"] == CATEGORIES["RO"] else CATEGORIES["RO"]
        return f"rename RO {self.names['RO']}"

    def step(self) -> str:
        roll = self.rng.random()
        if roll < 0.03:
            return self.rename()
        if roll < 0.6:
            return self.add_day()
        if roll < 0.68:
            return self.add_day(again="recent")
        if roll < 0.73:
            return self.add_day(again="old")
        if roll < 0.81:
            return self.edit(old=False)
        if roll < 0.85:
            return self.edit(old=True)
        if roll < 0.9:
            return self.remove(old=False)
        if roll < 0.93:
            return self.remove(old=True)
        return self.backfill()


def without_seal(settings: Settings) -> None:
    """Take the seal away, so the next build is over every digest."""
    if settings.paths.state.exists():
        # Closed, not only committed: a connection left to the collector keeps its files
        # open, and a few hundred builds run out of what `select()` can watch.
        with closing(sqlite3.connect(settings.paths.state)) as conn, conn:
            conn.execute("DELETE FROM meta WHERE key = ?", (seal.KEY,))


def table(settings: Settings, name: str) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(settings.paths.state)) as conn:
        return sorted(conn.execute(f"SELECT * FROM {name}"))


def two_ways(tmp_path: Path, search: bool) -> tuple[Settings, Settings]:
    inputs = tmp_path / "digests"
    inputs.mkdir()
    settings = []
    for name in ("sealed", "whole"):
        base = settings_for(tmp_path, inputs, name)
        site = replace(base.site, items_per_feed=4, search=search)
        settings.append(replace(base, site=site))
    return settings[0], settings[1]


def check_same(sealed: Settings, whole: Settings, what: str) -> BuildReport:
    report = build(sealed, now=NOW, log=lambda _: None)
    without_seal(whole)
    expected = build(whole, now=NOW, log=lambda _: None)
    assert contents(sealed.paths.output) == contents(whole.paths.output), what
    for name in TABLES:
        assert table(sealed, name) == table(whole, name), (what, name)
    assert (report.digests, report.papers) == (expected.digests, expected.papers), what
    return report


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_build_of_the_recent_digests_publishes_what_a_build_over_all_of_them_does(
    tmp_path: Path, seed: int
) -> None:
    sealed, whole = two_ways(tmp_path, search=False)
    walk = Digests(sealed.paths.input, seed)
    for _ in range(45):  # a month and a half before anything can be sealed
        walk.add_day()
    check_same(sealed, whole, "first build")
    ways = []
    for _ in range(40):
        what = walk.step()
        report = check_same(sealed, whole, what)
        ways.append(report.sealed_digests > 0)
    # Both ways were taken: most builds read the recent digests only, some reached back.
    assert ways.count(True) >= 15, ways
    assert ways.count(False) >= 2, ways


def test_the_search_index_is_the_same_built_either_way(tmp_path: Path) -> None:
    sealed, whole = two_ways(tmp_path, search=True)
    walk = Digests(sealed.paths.input, 7)
    for _ in range(70):
        walk.add_day()
    check_same(sealed, whole, "first build")
    ways = []
    for change in (walk.add_day, lambda: walk.add_day(again="recent"),
                   lambda: walk.edit(old=False), lambda: walk.add_day(again="old"),
                   walk.add_day):
        ways.append(check_same(sealed, whole, change()).sealed_digests > 0)
    # The old paper sighted again is met, and the build is over every digest.
    assert ways[:4] == [True, True, True, False]


class Days:
    """A folder of dated digests written by hand, each paper numbered."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.days, self.serial = folder, {}, 0

    def paper(self, n: int | None = None) -> tuple[str, str, str, bool]:
        if n is None:
            self.serial += 1
            n = self.serial
        return "LG", f"Paper number {n}", f"https://arxiv.org/abs/2101.{n:05d}", False

    def put(self, day: date, entries: list[tuple[str, str, str, bool]] | None = None,
            posted: int | None = None) -> None:
        self.days[day] = entries if entries is not None else [self.paper(), self.paper()]
        text = digest_text(day, self.days[day], posted=posted)
        (self.folder / f"{day.isoformat()}.txt").write_text(text, encoding="utf-8")

    def span(self, start: date, end: date, every: int = 3) -> None:
        while start <= end:
            self.put(start)
            start += timedelta(days=every)


def test_a_paper_whose_first_sighting_moved_before_the_cut_is_met_when_sighted_again(
    tmp_path: Path,
) -> None:
    sealed, whole = two_ways(tmp_path, search=False)
    days = Days(sealed.paths.input)
    days.span(date(2020, 10, 1), date(2021, 2, 15))
    x = days.paper(90000)
    wrong = sealed.paths.input / "2021-02-14.txt"
    wrong.write_text(digest_text(date(2021, 2, 14), [x]), encoding="utf-8")
    check_same(sealed, whole, "x first published on 2021-02-14")
    # The file's date is corrected: x was first seen in November, before the new cut, though
    # the state still has it published in February.
    wrong.write_text(digest_text(date(2020, 11, 20), [x]), encoding="utf-8")
    check_same(sealed, whole, "date corrected to 2020-11-20")
    days.put(date(2021, 2, 18), [days.paper(), x])
    assert check_same(sealed, whole, "2021-02-18 sights x again").sealed_digests == 0


def test_a_new_search_indexer_is_a_build_over_every_digest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import feeds.search_build

    sealed, whole = two_ways(tmp_path, search=True)
    days = Days(sealed.paths.input)
    days.span(date(2020, 11, 1), date(2021, 2, 15), every=5)
    check_same(sealed, whole, "first build")
    days.put(date(2021, 2, 17))
    assert check_same(sealed, whole, "a day").sealed_digests > 0
    # Every month's index is made again by the new version, not only the recent ones.
    monkeypatch.setattr(feeds.search_build, "pagefind_version", lambda: "9.9.9/9.9.9")
    days.put(date(2021, 2, 19))
    assert check_same(sealed, whole, "after an upgrade").sealed_digests == 0


def test_a_digest_posted_just_after_the_cut_does_not_keep_every_build_whole(
    tmp_path: Path,
) -> None:
    sealed, whole = two_ways(tmp_path, search=True)
    days = Days(sealed.paths.input)
    days.span(date(2020, 11, 1), date(2021, 1, 28), every=4)
    # Posted a second after midnight on 1 February: its papers' entry times, counted back,
    # fall in January, so 1 February cannot be the cut.
    days.put(date(2021, 2, 1), [days.paper() for _ in range(3)], posted=0)
    days.span(date(2021, 2, 4), date(2021, 3, 5), every=4)
    check_same(sealed, whole, "first build")
    ways = []
    for day in range(6, 26, 4):
        days.put(date(2021, 3, day))
        ways.append(check_same(sealed, whole, f"2021-03-{day}").sealed_digests > 0)
    assert all(ways), ways


@pytest.mark.parametrize(
    "damage", ["cut", "garbage", "empty", "edited", "other checksum", "not an object"]
)
def test_a_damaged_seal_is_no_seal(tmp_path: Path, damage: str) -> None:
    sealed, whole = two_ways(tmp_path, search=False)
    days = Days(sealed.paths.input)
    days.span(date(2020, 11, 1), date(2021, 2, 15))
    check_same(sealed, whole, "first build")
    with closing(sqlite3.connect(sealed.paths.state)) as conn, conn:
        (value,) = conn.execute("SELECT value FROM meta WHERE key = ?", (seal.KEY,)).fetchone()
        value = {
            "cut": value[: len(value) // 2],
            "garbage": "{not json",
            "empty": "",
            "edited": value.replace('"hash":', '"hush":'),
            "other checksum": "0" * 64 + "\n[1, 2]",
            # Its checksum right, its content not a seal's.
            "not an object": hashlib.sha256(b"[1, 2]").hexdigest() + "\n[1, 2]",
        }[damage]
        conn.execute("UPDATE meta SET value = ? WHERE key = ?", (value, seal.KEY))
    days.put(date(2021, 2, 17))
    assert check_same(sealed, whole, "a day").sealed_digests == 0
    days.put(date(2021, 2, 19))
    assert check_same(sealed, whole, "the next day").sealed_digests > 0
