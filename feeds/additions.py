"""What a build publishes besides the newsletters, the feeds and the site's pages: the feeds'
archive documents (`feeds.archive_build`) and the search index (`feeds.search_build`).

Both are made of every paper, so both are made again only when what they are made of changed;
each decides that from the light context first and names the digests it needs in full. The
build drives them through this one object.
"""

from __future__ import annotations

import sqlite3
import time

from feeds.archive_build import Shelf
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
        """From the light context: the ids of the digests to load in full."""
        return self.archive.plan(ctx) | self.search.plan(ctx)

    def render(self, ctx: BuildContext) -> dict[str, bytes]:
        """The files that changed, from the full context."""
        tick = time.perf_counter()
        files = self.archive.render(ctx)
        self.timings["history"] = time.perf_counter() - tick
        tick = time.perf_counter()
        index = self.search.render(ctx)
        if self.search.indexed:
            # Only a build that indexed says so (`feeds build -v`, the benchmarks).
            self.timings["search"] = time.perf_counter() - tick
        files.update(index)
        return files

    @property
    def paths(self) -> list[str]:
        """Every file of both, rendered this time or kept."""
        return self.archive.paths + self.search.paths

    def save(self, conn: sqlite3.Connection) -> None:
        self.archive.save(conn)
        self.search.save(conn)
