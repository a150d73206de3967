"""The digest parser: seeds parsed exactly, every variant read, nothing lost silently."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import SEEDS

from feeds.parse import parse_file

SHANGHAI = ZoneInfo("Asia/Shanghai")


def seed(prefix: str) -> Path:
    return next(SEEDS.glob(f"{prefix}_*.txt"))


@pytest.mark.parametrize("prefix", ["000", "001", "002", "004"])
def test_daily_seeds_have_five_featured_and_four_further_papers(prefix: str) -> None:
    digest = parse_file(seed(prefix), tz=SHANGHAI)
    sections = [item.section for item in digest.items]
    assert sections == ["featured"] * 5 + ["more"] * 4
    assert digest.format == "daily"


def test_weekly_seed_has_thirty_picks_six_starred() -> None:
    digest = parse_file(seed("003"), tz=SHANGHAI)
    assert len(digest.items) == 30
    assert sum(item.starred for item in digest.items) == 6
    assert digest.format == "weekly"
