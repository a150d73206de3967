"""`feeds init` and `feeds add`: a site folder made ready, a digest saved whole or not at all."""

from __future__ import annotations

import os
import shlex
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import SAMPLE_DIGESTS

from feeds.config import Settings
from feeds.errors import OutputError
from feeds.starter import add, init

NOW = datetime(2024, 5, 6, 7, 0, tzinfo=UTC)


def test_the_crontab_and_the_service_hold_a_folder_with_a_space(tmp_path: Path) -> None:
    folder = tmp_path / "my site 站点"
    init(folder)
    line = next(
        line for line in (folder / "deploy" / "crontab").read_text(encoding="utf-8").splitlines()
        if line.startswith("*/10")
    )
    words = shlex.split(line)
    assert words[words.index("cd") + 1] == str(folder)
    service = (folder / "deploy" / "digest-feeds.service").read_text(encoding="utf-8")
    assert f"WorkingDirectory={folder}\n" in service
    (start,) = [w for w in service.splitlines() if w.startswith("ExecStart=")]
    assert shlex.split(start.removeprefix("ExecStart="))[-1] == "run"


def test_a_digest_that_cannot_be_written_whole_is_not_there_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inputs = tmp_path / "digests"
    inputs.mkdir()
    settings = replace(Settings(), paths=replace(Settings().paths, input=inputs))
    data = (SAMPLE_DIGESTS / "2021-03-30.txt").read_bytes()

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    # The disk fills up as the file is written: the build must never find half of it.
    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OutputError, match="cannot write: No space left"):
        add(settings, data, source="-", now=NOW)
    assert list(inputs.iterdir()) == []
    monkeypatch.undo()
    added = add(settings, data, source="-", now=NOW)
    assert added.path.read_bytes() == data and [p.name for p in inputs.iterdir()] == [
        added.path.name
    ]
