"""The locks beside the state database: refused while held, released when the holder dies."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import lock_holder

from feeds import lock
from feeds.errors import LockedError


def test_a_lock_is_refused_while_another_process_holds_it(tmp_path: Path) -> None:
    path = lock.build_lock(tmp_path / "state" / "feeds.sqlite3")
    with lock_holder(path) as holder:
        started = time.monotonic()
        with pytest.raises(LockedError) as info, lock.held(
            path, busy="another feeds build is running", hint="try later", wait=0.2
        ):
            pass
        assert time.monotonic() - started >= 0.2
        assert str(info.value).startswith(f"{path}: another feeds build is running")
        assert f"(process {holder.pid})" in str(info.value)
        assert "gave up after waiting 0.2 s (try later)" in str(info.value)
    # The kernel dropped the lock with its holder.
    with lock.held(path, busy="busy", hint="wait"):
        pass


def test_a_waiting_run_gets_the_lock_once_the_holder_finishes(tmp_path: Path) -> None:
    path = lock.send_lock(tmp_path / "state" / "feeds.sqlite3")
    with lock_holder(path, seconds=0.8):
        started = time.monotonic()
        with lock.held(path, busy="busy", hint="wait", wait=30):
            waited = time.monotonic() - started
    assert 0.2 < waited < 30


def test_a_process_that_asks_twice_waits_for_itself(tmp_path: Path) -> None:
    path = lock.build_lock(tmp_path / "feeds.sqlite3")
    with lock.held(path, busy="busy", hint="wait"), pytest.raises(LockedError), lock.held(
        path, busy="busy", hint="wait"
    ):
        pass


def test_the_build_and_send_locks_are_separate_private_files(tmp_path: Path) -> None:
    state = tmp_path / "state" / "feeds.sqlite3"
    with lock.held(lock.build_lock(state), busy="b", hint="h"), lock.held(
        lock.send_lock(state), busy="s", hint="h"
    ):
        pass
    names = {p.name for p in state.parent.iterdir()}
    assert names == {"feeds.sqlite3.lock", "feeds.sqlite3.send.lock"}
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in state.parent.iterdir())


def test_a_lock_file_that_cannot_be_written_is_one_line_naming_it(tmp_path: Path) -> None:
    """A full disk fails the first write of a run, the holder's pid into the lock file. Here a
    file size limit of 0 bytes makes that write fail as a full disk would."""
    import resource
    import signal
    import subprocess
    import sys

    path = lock.build_lock(tmp_path / "state" / "feeds.sqlite3")
    script = (
        "from pathlib import Path\n"
        "from feeds import lock\n"
        "from feeds.errors import FeedsError\n"
        "try:\n"
        f"    with lock.held(Path({str(path)!r}), busy='busy', hint='wait'):\n"
        "        pass\n"
        "except FeedsError as exc:\n"
        "    print(exc)\n"
    )

    def no_file_may_grow() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))

    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
        preexec_fn=no_file_may_grow,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        f"{path}: cannot write the lock file: File too large "
        "(free some space on the disk that holds the state database)\n"
    )
