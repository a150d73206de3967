"""Pagefind's indexing service driven directly: each period its own index, shared out among
processes, and a service that dies is an error, never a hang."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from feeds.errors import OutputError
from feeds.search import Record
from feeds.search_service import _run, index_periods


def record(n: int, month: str) -> Record:
    return Record(
        url=f"newsletter/{month}-01.html#p-{n}", content=f"Paper {n} 自监督学习 self-supervised",
        language="zh-cn", meta={"title": f"Paper {n}", "date": f"{month}-01"},
        filters={"category": ["LG"]}, sort={"date": f"{month}-01T08:00:{n:02d}"},
    )


def test_each_period_is_its_own_index_whichever_process_made_it() -> None:
    periods = {
        "2021-03": [record(n, "2021-03") for n in range(5)],
        "2021-02": [record(n, "2021-02") for n in range(3)],
        "2021-01": [record(0, "2021-01")],
    }
    made = index_periods(periods, processes=2)
    assert set(made) == set(periods)
    for name, files in made.items():
        entry = json.loads(files["pagefind-entry.json"])
        assert entry["languages"]["zh-cn"]["page_count"] == len(periods[name])
        assert "pagefind.js" in files
        assert sum(1 for rel in files if rel.startswith("fragment/")) == len(periods[name])
    assert index_periods({}) == {}


@pytest.mark.parametrize("binary", ["/bin/true", "/bin/false"])
def test_a_service_that_ends_early_is_an_error_not_a_hang(binary: str) -> None:
    with pytest.raises(OutputError, match="stopped before the end"):
        _run(Path(binary), [("2021-01", [record(0, "2021-01")])])


def test_a_warm_process_makes_the_same_index_and_unused_ones_are_stopped() -> None:
    from feeds.search_build import make_indexes
    from feeds.search_service import Warm

    periods = {"2021-03": [record(n, "2021-03") for n in range(4)]}
    warm = Warm(2, "zh-cn")
    processes = list(warm.ready)
    assert make_indexes(periods, warm) == make_indexes(periods)
    # One process was taken and ended by the indexing; the other is stopped by close.
    warm.close()
    assert warm.ready == [] and all(p.poll() is not None for p in processes)
