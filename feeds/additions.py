"""What a build publishes besides the newsletters, the feeds and the site's pages: the feeds'
archive documents (`feeds.archive_build`) and the search index (`feeds.search_build`).

Both are made of every paper, so both are made again only when what they are made of changed;
each decides that from the light context first and names the digests it needs in full. The
build drives them through this one object.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator

from feeds.archive_build import Shelf
from feeds.assemble import Load
from feeds.config import Settings
from feeds.model import BuildContext
from feeds.search_build import SearchIndex
from feeds.syndicate import entry_marks, entry_times
from feeds.workers import Workers


class Additions:
    """The archive documents and the search index of one build."""

    def __init__(
        self, conn: sqlite3.Connection, settings: Settings, render_fingerprint: str, force: bool
    ) -> None:
        self.archive = Shelf(conn, settings, render_fingerprint, force)
        self.search = SearchIndex(conn, settings, render_fingerprint, force)
        self.settings = settings
        self.render_fingerprint = render_fingerprint
        self.planned = False
        # Seconds each took to render, for the build's report.
        self.timings: dict[str, float] = {}

    def plan(self, ctx: BuildContext) -> None:
        """From the light context: what to make again. Both are made of the papers' entries,
        whose times and marks are worked out once for both."""
        times = entry_times(ctx.papers, self.settings.site.tz)
        marks = entry_marks(ctx, times)
        self.archive.plan(ctx, times, marks)
        self.search.plan(ctx, times, marks)
        self.planned = True

    def render(
        self, ctx: BuildContext, load: Load, workers: Workers
    ) -> Iterator[dict[str, bytes]]:
        """The files that changed, in batches to write one after the other: the archive's,
        then the search index's, each batch made from the digests it needs in full (`load`)."""
        if not self.planned:
            self.plan(ctx)
        for name, batches in (("history", self.archive.render(load, workers)),
                              ("search", self.search.render(load))):
            spent = 0.0
            tick = time.perf_counter()
            for batch in batches:
                spent += time.perf_counter() - tick
                yield batch
                tick = time.perf_counter()
            spent += time.perf_counter() - tick
            # A build that did not index does not say "search" (`feeds build -v`, benchmarks).
            if name == "history" or self.search.indexed:
                self.timings[name] = spent

    def close(self) -> None:
        """Whatever planning started and rendering did not finish (Pagefind's processes)."""
        self.search.close()

    @property
    def paths(self) -> list[str]:
        """Every file of both, rendered this time or kept."""
        return self.archive.paths + self.search.paths

    def leftovers(self) -> set[str]:
        """Files of the search index's folders that this build may not have made (see
        `SearchIndex.leftovers`); the build removes those it did not."""
        return self.search.leftovers()

    def forget(self, conn: sqlite3.Connection) -> None:
        """Before anything is written: what the files about to be replaced were made of."""
        self.archive.forget(conn)
        self.search.forget(conn)

    def save(self, conn: sqlite3.Connection) -> None:
        self.archive.save(conn)
        self.search.save(conn)
