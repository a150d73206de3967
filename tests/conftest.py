"""Shared fixtures: the seed digests as the curator posted them, and isolated work folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SEEDS = FIXTURES / "seeds"
SEED_FILES = sorted(SEEDS.glob("*.txt"))
SAMPLE_DIGESTS = ROOT / "digests"

# Golden files are rewritten, not compared, when this is set: review the diff like code.
REGENERATE = os.environ.get("FEEDS_REGENERATE_GOLDEN") == "1"
IN_CI = os.environ.get("CI") == "true"


@pytest.fixture
def seed_paths() -> list[Path]:
    return list(SEED_FILES)


@pytest.fixture
def artifacts_dir(request: pytest.FixtureRequest) -> Path:
    """A folder kept after the run (screenshots and the like), one per test."""
    path = ROOT / "tests" / ".artifacts" / request.node.name
    path.mkdir(parents=True, exist_ok=True)
    return path
