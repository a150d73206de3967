"""The build's worker pool: results in order, work in other processes, and large tasks made
only as results are taken; the archive documents rendered there equal those rendered here."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_build import NOW, copy_samples, quiet, settings_for

from feeds import archive_build
from feeds.build import build
from feeds.workers import Workers


def square_and_pid(n: int) -> tuple[int, int]:
    return n * n, os.getpid()


def interrupted_square(n: int) -> int:
    """A task whose worker gets the Ctrl-C a terminal sends to the whole process group."""
    os.kill(os.getpid(), signal.SIGINT)
    return n * n


def test_a_worker_leaves_ctrl_c_to_the_build() -> None:
    # The build stops the pool itself; a worker that died of the SIGINT printed a traceback,
    # and the build could hang at exit on a queue no worker read.
    with Workers(2) as workers:
        assert list(workers.stream(interrupted_square, range(6), many=True)) == [
            n * n for n in range(6)
        ]


def test_stream_gives_results_in_order_from_the_workers_or_from_here() -> None:
    with Workers(2) as workers:
        there = list(workers.stream(square_and_pid, range(20), many=True))
        here = list(workers.stream(square_and_pid, range(20), many=False))
    assert [r for r, _ in there] == [n * n for n in range(20)] == [r for r, _ in here]
    assert os.getpid() not in {pid for _, pid in there}
    assert {pid for _, pid in here} == {os.getpid()}


def test_stream_makes_tasks_only_as_results_are_taken() -> None:
    made: list[int] = []

    def tasks() -> Iterator[int]:
        for n in range(50):
            made.append(n)
            yield n

    with Workers(2) as workers:
        results = workers.stream(square_and_pid, tasks(), many=True)
        first = next(results)
        # Two tasks per worker in flight, and the one whose result was just taken.
        assert first[0] == 0 and len(made) <= 2 * 2 + 1
        assert [r for r, _ in results] == [n * n for n in range(1, 50)]


def test_archive_documents_rendered_by_the_workers_equal_those_rendered_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one core: the workers are never used")
    inputs = copy_samples(tmp_path / "digests")
    here = settings_for(tmp_path, inputs, "here")
    build(here, now=NOW, log=quiet)
    monkeypatch.setattr(archive_build, "PARALLEL_DOCUMENTS", 1)
    asked: list[bool] = []
    stream = Workers.stream

    def recording(self: Workers, *args: object, many: bool) -> object:
        asked.append(many and self.count > 1)
        return stream(self, *args, many=many)  # type: ignore[arg-type]

    monkeypatch.setattr(Workers, "stream", recording)
    there = settings_for(tmp_path, inputs, "there")
    build(there, now=NOW, log=quiet)
    assert asked == [True]  # the archive documents went to the workers

    def documents(root: Path) -> dict[str, bytes]:
        folder = root / "feeds" / "archive"
        return {p.relative_to(folder).as_posix(): p.read_bytes()
                for p in sorted(folder.rglob("*")) if p.is_file()}

    assert documents(here.paths.output)
    assert documents(there.paths.output) == documents(here.paths.output)
