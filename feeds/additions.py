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

from feeds.archive_build import Load, Shelf
from feeds.config import Settings
from feeds.model import BuildContext
from feeds.search_build import SearchIndex


class Additions:
    """The archive documents and the search index of one build."""

    def __init__(
        self, conn: sqlite3.Connection, settings: Settings, render_fingerprint: str, force: bool
    ) -> None:
        self.archive = Shelf(conn, settings, render_fingerprint, force)
        self.search = SearchIndex(conn, settings, render_fingerprint, force)
        # Seconds each took to render, for the build's report.
        self.timings: dict[str, float] = {}

    def plan(self, ctx: BuildContext) -> set[str]:
        """From the light context: what to make again, and the ids of the digests the search
        index needs in full (the archive loads its own, batch by batch)."""
        self.archive.plan(ctx)
        return self.search.plan(ctx)

    def render(self, ctx: BuildContext, load: Load) -> Iterator[dict[str, bytes]]:
        """The files that changed, in batches to write one after the other: the archive's
        (`load` gives it digests in full), then the search index's."""
        tick = time.perf_counter()
        spent = 0.0
        for batch in self.archive.render(ctx, load):
            spent += time.perf_counter() - tick
            yield batch
            tick = time.perf_counter()
        spent += time.perf_counter() - tick
        self.timings["history"] = spent
        tick = time.perf_counter()
        index = self.search.render(ctx)
        if self.search.indexed:
            # Only a build that indexed says so (`feeds build -v`, the benchmarks).
            self.timings["search"] = time.perf_counter() - tick
            yield index

    @property
    def paths(self) -> list[str]:
        """Every file of both, rendered this time or kept."""
        return self.archive.paths + self.search.paths

    def save(self, conn: sqlite3.Connection) -> None:
        self.archive.save(conn)
        self.search.save(conn)
