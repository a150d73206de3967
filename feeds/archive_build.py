"""The build's side of the archived feeds: render only the archive documents that changed.

Ten years of papers make thousands of archive documents, and rendering them all would cost
every daily build most of its time. So each document's mark (`feeds.archive.volume_marks`:
what it is made of) is kept in the state database; a build renders the documents whose mark
changed or whose file is gone, loads in full only the digests those need, and keeps owning the
others untouched. A daily digest thus re-renders the current month of the feeds it adds to
(and, when it opens a month, the month before, which gains its `next-archive` link).
"""

from __future__ import annotations

import sqlite3

from feeds import output
from feeds.archive import Volume, render_volumes, volume_marks, volumes
from feeds.config import Settings
from feeds.model import BuildContext
from feeds.syndicate import entry_times

_SCHEMA = """
CREATE TABLE IF NOT EXISTS archive_marks (
    path TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL
)
"""


class Shelf:
    """One build's archive documents: which to render, which to keep, what to record."""

    def __init__(
        self, conn: sqlite3.Connection, settings: Settings, render_fingerprint: str, force: bool
    ) -> None:
        conn.execute(_SCHEMA)
        self.settings = settings
        self.render_fingerprint = render_fingerprint
        self.force = force
        self.before: dict[str, str] = dict(
            conn.execute("SELECT path, fingerprint FROM archive_marks")
        )
        self.marks: dict[str, str] = {}
        self.stale: set[tuple[str, str]] = set()
        # Every archive document of this build, rendered or kept.
        self.paths: list[str] = []

    def plan(self, ctx: BuildContext) -> set[str]:
        """Decide what to render from `ctx` (its digests may be light); return the ids of the
        digests whose full text that needs."""
        found = volumes(ctx, self.settings)
        times = entry_times(ctx.papers, self.settings.site.tz)
        self.marks = volume_marks(found, ctx, self.settings, times, self.render_fingerprint)
        self.paths = sorted(self.marks)
        present = output.existing(self.settings.paths.output, self.paths)
        self.stale = set()
        needed: set[str] = set()
        for volume in found:
            paths = [volume.path("atom"), volume.path("rss")]
            if self.force or any(
                self.before.get(p) != self.marks[p] or p not in present for p in paths
            ):
                self.stale.add((volume.feed.slug, volume.month))
                for paper in volume.papers:
                    needed.update(paper.digest_ids)
        return needed

    def render(self, ctx: BuildContext) -> dict[str, bytes]:
        """The changed archive documents, from the full context."""
        if not self.paths and ctx.papers:
            self.plan(ctx)
        chosen: list[Volume] = [
            v for v in volumes(ctx, self.settings) if (v.feed.slug, v.month) in self.stale
        ]
        return render_volumes(chosen, ctx, self.settings)

    def save(self, conn: sqlite3.Connection) -> None:
        """Record the marks of this build's documents (inside the build's transaction)."""
        conn.executemany(
            "DELETE FROM archive_marks WHERE path = ?",
            [(p,) for p in self.before if p not in self.marks],
        )
        conn.executemany(
            "INSERT OR REPLACE INTO archive_marks (path, fingerprint) VALUES (?, ?)",
            sorted((p, m) for p, m in self.marks.items() if self.before.get(p) != m),
        )
