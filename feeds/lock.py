"""The locks beside the state database: one build at a time, one sender at a time.

Each is an advisory `flock` on a small file next to the database. The kernel releases it when
the process dies, however it dies, so a killed run never blocks the next one. The holder writes
its pid into the file so that the run that finds the lock taken can say who has it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from feeds.errors import LockedError, StateError
from feeds.output import private_folder


def build_lock(state: Path) -> Path:
    """Held by `feeds build` (and the build half of `feeds run`)."""
    return state.with_name(state.name + ".lock")


def send_lock(state: Path) -> Path:
    """Held by whoever sends: `feeds send` and the send half of `feeds run`."""
    return state.with_name(state.name + ".send.lock")


@contextmanager
def held(path: Path, *, busy: str, hint: str, wait: float = 0.0) -> Iterator[None]:
    """Hold the lock at `path`, waiting up to `wait` seconds for another process to let it go.

    Raises `LockedError` with `busy` (what the other process is doing) and `hint` when it stays
    taken. Not re-entrant: a process that asks twice for the same lock waits for itself.
    """
    try:
        private_folder(path.parent)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StateError(f"cannot open the lock file: {exc.strerror}", path=str(path)) from exc
    try:
        _acquire(fd, path, busy=busy, hint=hint, wait=wait)
        # Who holds it, for the message another run prints.
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:  # a full disk: the first write of a run, so the first to fail
            raise StateError(
                f"cannot write the lock file: {exc.strerror}", path=str(path),
                hint="free some space on the disk that holds the state database",
            ) from exc
        yield
    finally:
        # Closing the descriptor releases the lock.
        os.close(fd)


def _acquire(fd: int, path: Path, *, busy: str, hint: str, wait: float) -> None:
    deadline = time.monotonic() + max(wait, 0.0)
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise StateError(f"cannot lock: {exc.strerror}", path=str(path)) from exc
        if time.monotonic() >= deadline:
            waited = f"; gave up after waiting {wait:g} s" if wait > 0 else ""
            error = LockedError(f"{busy}{_holder(fd)}{waited}", path=str(path), hint=hint)
            # The holder wrote its pid when it took the lock: the file's age is how long
            # it has held it.
            error.held_for = max(0.0, time.time() - os.fstat(fd).st_mtime)
            raise error
        time.sleep(0.05)


def _holder(fd: int) -> str:
    try:
        pid = os.pread(fd, 32, 0).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return f" (process {pid})" if pid.isdigit() else ""
