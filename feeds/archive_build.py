"""The build's side of the archived feeds: render only the archive documents that changed.

Ten years of papers make thousands of archive documents, and rendering them all would cost
every daily build most of its time. So each document's mark (`feeds.archive.volume_marks`:
what it is made of) is kept in the state database; a build renders the documents whose mark
changed or whose file is gone, loads in full only the digests those need, and keeps owning the
others untouched. A daily digest thus re-renders the current month of the feeds it adds to
(and, when it opens a month, the month before, which gains its `next-archive` link). The
documents are planned from the light context and rendered from the digests in full, a month or
two at a time (`Shelf.render`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import datetime

from feeds import output
from feeds.archive import Volume, render_volumes, volume_marks, volumes
from feeds.assemble import Load, complete
from feeds.config import Settings
from feeds.errors import Unsealed
from feeds.model import BuildContext, Sealed
from feeds.workers import Workers

# Digests loaded in full at once while archive documents are rendered (a month has about 30).
BATCH_DIGESTS = 64
# From this many documents to render, the workers render them (a first build, a template
# change); a daily build renders a few, in this process.
PARALLEL_DOCUMENTS = 64

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
        # The volumes to render, as the light context has them, and every paper's entry time
        # (the same in the light and the full context: it depends on dates and order alone).
        self.stale: list[Volume] = []
        # Every volume of the context planned from.
        self.volumes: list[Volume] = []
        self.times: dict[str, datetime] = {}
        # Every archive document of this build, rendered or kept.
        self.paths: list[str] = []

    def plan(
        self, ctx: BuildContext, times: dict[str, datetime], marks: Mapping[str, bytes]
    ) -> None:
        """Decide what to render from `ctx` (its digests may be light), its papers' entry
        times and marks (`feeds.syndicate.entry_times`, `entry_marks`)."""
        found = self.volumes = volumes(ctx, self.settings)
        self.times = times
        self.marks = volume_marks(found, marks, self.render_fingerprint)
        if ctx.sealed is not None:
            self.marks.update(self._kept(ctx.sealed, found))
        self.paths = sorted(self.marks)
        present = output.existing(self.settings.paths.output, self.paths)
        if ctx.sealed is not None and any(
            p not in present for p in self.paths if _month(p) < ctx.sealed.month
        ):
            raise Unsealed("an earlier month's archive document is gone")
        self.stale = [
            volume
            for volume in found
            if self.force
            or any(
                self.before.get(p) != self.marks[p] or p not in present
                for p in (volume.path("atom"), volume.path("rss"))
            )
        ]

    def _kept(self, sealed: Sealed, found: list[Volume]) -> dict[str, str]:
        """The marks of the earlier months' documents, kept as they are: their papers are the
        same, and so are their feed's words and, for each feed's last earlier month, the next
        month (`Sealed.volumes`)."""
        first: dict[str, Volume] = {}
        for volume in found:
            first.setdefault(volume.feed.slug, volume)
        for slug, (_last, following, title, description) in sealed.volumes.items():
            recent = first.get(slug)
            if (recent.month if recent else None) != following or (
                recent and (recent.feed.title, recent.feed.description) != (title, description)
            ):
                raise Unsealed(f"the feed {slug} changed beyond the recent months")
        kept = {p: m for p, m in self.before.items() if _month(p) < sealed.month}
        if len(kept) != sealed.documents:
            raise Unsealed("an earlier month's archive document is not recorded")
        return kept

    def render(self, load: Load, workers: Workers) -> Iterator[dict[str, bytes]]:
        """The changed archive documents, in batches of a month or two: each batch loads in
        full (`load`: digest ids -> full digests by id) only the digests its papers come from,
        and its bytes go to disk before the next is made. A first build renders every month of
        ten years, some 400 MB of XML over 33,000 papers in full, which held at once would
        take most of a gigabyte; it renders them on every core (`workers`)."""
        return workers.stream(
            _render_batch, self._batches(load), many=len(self.stale) >= PARALLEL_DOCUMENTS
        )

    def _batches(self, load: Load) -> Iterator[_Batch]:
        batch: list[Volume] = []
        needed: set[str] = set()
        # By month: a month's volumes ("all", each category's, "starred") share its digests.
        for volume in sorted(self.stale, key=lambda v: (v.month, v.feed.slug)):
            wants = {digest_id for p in volume.papers for digest_id, _ in p.sightings}
            if batch and len(needed | wants) > BATCH_DIGESTS:
                yield self._whole(batch, needed, load)
                batch, needed = [], set()
            batch.append(volume)
            needed |= wants
        if batch:
            yield self._whole(batch, needed, load)

    def _whole(self, batch: list[Volume], needed: set[str], load: Load) -> _Batch:
        """The batch's volumes with their papers in full, and those papers' entry times."""
        full = load(sorted(needed))
        whole = [
            replace(volume, papers=tuple(complete(p, full) for p in volume.papers))
            for volume in batch
        ]
        times = {p.key: self.times[p.key] for volume in whole for p in volume.papers}
        return whole, self.settings, times

    def forget(self, conn: sqlite3.Connection) -> None:
        """Before any is written, drop the marks of the documents about to be replaced: a build
        stopped after writing some would otherwise leave them marked as what they replaced
        (see `feeds.build`)."""
        stale = [volume.path(ext) for volume in self.stale for ext in ("atom", "rss")]
        conn.executemany("DELETE FROM archive_marks WHERE path = ?", [(p,) for p in stale])
        for path in stale:
            self.before.pop(path, None)

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


def _month(path: str) -> str:
    """The month of an archive document's path (`feeds/archive/<slug>/<YYYY-MM>.<ext>`)."""
    return path.rpartition("/")[2][:7]


# The volumes of one batch (papers in full), the settings and their papers' entry times.
_Batch = tuple[list[Volume], Settings, dict[str, datetime]]


def _render_batch(batch: _Batch) -> dict[str, bytes]:
    """One batch's archive documents: runs in a worker process for a first build."""
    volumes_, settings, times = batch
    return render_volumes(volumes_, BuildContext((), ()), settings, times)
