"""Worker processes for the steps of a build that handle many digests at once.

A first build (or a template change) parses and renders thousands of digests; spread over the
cores, it takes a fraction of the time. A daily build handles one or two and never starts a
worker. The pool lives as long as the build (`with Workers() as workers`), comes from a fork
server (workers inherit neither the build lock nor the open database), and every worker exits
as soon as the build process is gone, however it died.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, TypeVar

# Imported when a pool starts: a daily build never starts one.
if TYPE_CHECKING:
    from concurrent.futures import Future, ProcessPoolExecutor

T = TypeVar("T")
R = TypeVar("R")

# Below this many tasks, starting processes costs more than it saves.
PARALLEL_FROM = 24


class Workers:
    def __init__(self, max_workers: int | None = None) -> None:
        self.count = max_workers or min(os.cpu_count() or 1, 4)
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def map(
        self, fn: Callable[[T], R], tasks: list[T], *, chunksize: int = 1
    ) -> Iterable[R]:
        """`fn` over `tasks`, results in order: in this process when there are few tasks or
        one core, in the workers otherwise. `fn` must be a module-level function."""
        if len(tasks) < PARALLEL_FROM or self.count < 2:
            return map(fn, tasks)
        return self._executor().map(fn, tasks, chunksize=chunksize)

    def stream(self, fn: Callable[[T], R], tasks: Iterable[T], *, many: bool) -> Iterator[R]:
        """`fn` over `tasks`, results in order, with at most two tasks per worker in flight:
        tasks are made as results are taken, so large ones (the papers of a month in full)
        never pile up. In this process unless `many` says the work is worth the workers and
        there is more than one core. `fn` must be a module-level function."""
        if not many or self.count < 2:
            yield from map(fn, tasks)
            return
        pool = self._executor()
        window: deque[Future[R]] = deque()
        for task in tasks:
            window.append(pool.submit(fn, task))
            if len(window) >= 2 * self.count:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            methods = multiprocessing.get_all_start_methods()
            context = multiprocessing.get_context("forkserver" if "forkserver" in methods else None)
            self._pool = ProcessPoolExecutor(
                max_workers=self.count,
                mp_context=context,
                initializer=_watch_parent,
                initargs=(os.getpid(),),
            )
        return self._pool


def _watch_parent(parent: int) -> None:
    """In a worker: exit as soon as the build process is gone (killed, crashed); leave Ctrl-C
    to the build, which stops the pool (a terminal sends SIGINT to the whole process group:
    workers that died of it printed tracebacks, and the build could hang at exit on a queue
    no worker read any more)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch, args=(parent,), daemon=True).start()


def _watch(parent: int) -> None:
    while True:
        time.sleep(0.5)
        try:
            os.kill(parent, 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:
            pass
