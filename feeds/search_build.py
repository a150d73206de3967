"""The build's side of the search: index the papers with Pagefind, a month at a time, and only
the months whose papers changed.

Pagefind (PyPI `pagefind[extended]`, whose binary segments Chinese into words) builds an index
whole; there is no adding to one. So the papers are indexed by period (`feeds.search.period`,
a calendar month), each period its own index under `output/pagefind/YYYY-MM/`, and the build
keeps a mark of what each period's index was made of (each paper's guid, entry time and the
content hashes of the digests that sight it, the record code, the settings, Pagefind's version)
with the list of its files in the state database. A period whose mark is the same and whose
files are all there is not indexed again; a new digest re-indexes its month only, and only
the digests that sight papers of the periods to index are loaded in full. The index's files
reach `output/` through the build's writer (atomic, unchanged bytes untouched); their names are
hashes of their content, so a remade period mostly adds files, and the build removes the old
ones it owns. `pagefind/periods.json` (`feeds.search.manifest`) tells the search box which
periods there are.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path

from feeds.assemble import Load, complete
from feeds.config import Settings
from feeds.errors import OutputError, Unsealed
from feeds.fingerprints import SEARCH_DATA
from feeds.model import BuildContext, Paper
from feeds.search import (
    MANIFEST,
    SORT_KEY,
    Record,
    index_language,
    manifest,
    periods,
    records,
)
from feeds.search_bytes import canonical
from feeds.search_service import MAX_PROCESSES, Warm, index_periods

# The folder under output/ the periods' indexes and the manifest live in.
BUNDLE = "pagefind"

# Pagefind's own search interfaces: the site has its own (templates/site/search.js), which
# uses pagefind.js alone.
UNUSED = frozenset({
    "pagefind-ui.js", "pagefind-ui.css", "pagefind-modular-ui.js", "pagefind-modular-ui.css",
    "pagefind-component-ui.js", "pagefind-component-ui.css", "pagefind-highlight.js",
})
# Periods indexed together, their digests loaded in full together: a year of months.
BATCH_PERIODS = 12

# A row per period: its mark and its files (paths under its folder, one a line). A row per
# file, as the first layout kept, meant reading and writing 34,000 rows at every build.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS search_periods (
    period TEXT PRIMARY KEY,
    mark TEXT NOT NULL,
    files TEXT NOT NULL
)
"""


def is_code(rel: str) -> bool:
    """Whether a file of a period's bundle is Pagefind's code rather than the period's data.

    Pagefind writes its script, its worker and its WebAssembly into every index; the browser
    loads them once, from the newest period's folder (the index it opens first: the others
    are merged into it), so only that folder keeps them: 155 KB a period otherwise.
    """
    return rel in ("pagefind.js", "pagefind-worker.js") or rel.startswith("wasm.")


class SearchIndex:
    """One build's search index: which periods to index again, and which files it has."""

    def __init__(
        self, conn: sqlite3.Connection, settings: Settings, render_fingerprint: str, force: bool
    ) -> None:
        conn.execute(_SCHEMA)
        # The single index's table, from before the index was split by period: its files are
        # owned outputs, which the first build of this layout removes.
        conn.execute("DROP TABLE IF EXISTS search_index")
        self.settings = settings
        self.render_fingerprint = render_fingerprint
        self.force = force
        self.before: dict[str, tuple[str, list[str]]] = {
            period: (mark, files.split("\n") if files else [])
            for period, mark, files in conn.execute(
                "SELECT period, mark, files FROM search_periods")
        }
        self.warm: Warm | None = None
        self.manifest = b""
        # Each period's mark, newest period first, and the papers' entry times.
        self.marks: dict[str, str] = {}
        self.times: dict[str, datetime] = {}
        # The periods to index this time; after `render`, those indexed.
        self.stale: set[str] = set()
        self.indexed: list[str] = []
        # Each period's files (paths under its folder), made this time or kept.
        self.files: dict[str, list[str]] = {}
        # The papers of each period to index, as the light context has them.
        self.groups: dict[str, list[Paper]] = {}

    @property
    def paths(self) -> list[str]:
        """The index's files, as paths under output/."""
        if not self.settings.site.search:
            return []
        return [f"{BUNDLE}/{MANIFEST}"] + [
            f"{BUNDLE}/{name}/{rel}" for name, rels in self.files.items() for rel in rels]

    def plan(
        self, ctx: BuildContext, times: dict[str, datetime], marks: Mapping[str, bytes]
    ) -> None:
        """Decide from `ctx` (digests may be light), its papers' entry times and marks
        (`feeds.syndicate.entry_times`, `entry_marks`), which periods to index."""
        if not self.settings.site.search:
            # Off ([site] search): no index, and the files of an earlier one are removed.
            self.marks, self.stale, self.files = {}, set(), {}
            return
        self.times = times
        groups = periods(ctx, self.settings, self.times)
        sealed = ctx.sealed
        if sealed is not None and (not groups or min(groups) < sealed.month):
            # A recent paper whose entry time falls in an earlier month, or none at all.
            raise Unsealed("the recent papers reach an earlier search period")
        self.marks = _marks(groups, marks, self.render_fingerprint)
        newest = next(iter(groups), None)
        self.manifest = manifest(groups, sealed)
        self.stale, self.files = set(), {}
        if sealed is not None:
            # The earlier months' indexes are kept as they are, and must all be there.
            for name, (mark, kept) in self.before.items():
                if name < sealed.month:
                    wanted = [rel for rel in kept if not is_code(rel)]
                    root = self.settings.paths.output / BUNDLE / name
                    if not kept or not set(wanted) <= _present(root):
                        raise Unsealed(f"the search index of {name} is gone")
                    self.marks[name], self.files[name] = mark, wanted
            if len(self.marks) != len(groups) + len(sealed.periods):
                raise Unsealed("an earlier search period is not indexed")
        for name in groups:
            mark = self.marks[name]
            old_mark, kept = self.before.get(name, ("", []))
            wanted = [rel for rel in kept if name == newest or not is_code(rel)]
            if (
                self.force
                or not kept
                or old_mark != mark
                or (name == newest and "pagefind.js" not in kept)
                or not set(wanted) <= _present(self.settings.paths.output / BUNDLE / name)
            ):
                self.stale.add(name)
            else:
                self.files[name] = wanted
        self.groups = {name: groups[name] for name in groups if name in self.stale}
        if self.stale:
            # Pagefind starts now, loading its Chinese dictionary while the build goes on.
            self.warm = Warm(min(MAX_PROCESSES, len(self.stale)), index_language(self.settings))

    def render(self, load: Load) -> Iterator[dict[str, bytes]]:
        """The files of the periods indexed again, a year of periods at a time, then the
        manifest (last: it must never name a month whose index is not there yet). Each batch
        loads in full (`load`: digest ids -> full digests by id) only the digests its papers
        come from, and its files go to disk before the next is made. A first build indexes
        ten years, whose digests in full took the build to 900 MB."""
        if not self.settings.site.search:
            return
        newest = next(iter(self.marks), None)
        stale = list(self.groups)  # newest first
        try:
            for start in range(0, len(stale), BATCH_PERIODS):
                names = stale[start : start + BATCH_PERIODS]
                papers = [paper for name in names for paper in self.groups[name]]
                full = load(sorted({d for paper in papers for d, _ in paper.sightings}))
                whole = BuildContext((), tuple(complete(paper, full) for paper in papers))
                by_period: dict[str, list[Record]] = {}
                for record in records(whole, self.settings, times=self.times):
                    by_period.setdefault(record.sort[SORT_KEY][:7], []).append(record)
                made = make_indexes(by_period, self.warm)
                files: dict[str, bytes] = {}
                for name, bundle in sorted(made.items()):
                    kept = sorted(rel for rel in bundle if name == newest or not is_code(rel))
                    files.update({f"{BUNDLE}/{name}/{rel}": bundle[rel] for rel in kept})
                    self.files[name] = kept
                self.indexed += sorted(by_period)
                yield files
        finally:
            self.close()
        self.files = dict(sorted(self.files.items(), reverse=True))
        self.indexed.sort()
        yield {f"{BUNDLE}/{MANIFEST}": self.manifest}

    def close(self) -> None:
        """Stop the Pagefind processes started at planning that no indexing took (a build
        that fails before its search is rendered must not leave them running)."""
        if self.warm is not None:
            self.warm.close()
            self.warm = None

    def leftovers(self) -> set[str]:
        """Every file, as a path under output/, of the period folders indexed again this time
        or not periods of this build: a build stopped after writing a period's files leaves
        them unrecorded, and the next one must not keep what it does not make. The folders of
        periods kept as they are are not listed (ten years hold 34,000 files)."""
        root = self.settings.paths.output / BUNDLE
        try:
            folders = [e.name for e in os.scandir(root) if e.is_dir()]
        except OSError:
            return set()
        found: set[str] = set()
        for name in folders:
            if name in self.files and name not in self.stale:
                continue
            for folder, _dirs, names in os.walk(root / name):
                rel = Path(folder).relative_to(self.settings.paths.output).as_posix()
                found.update(f"{rel}/{file}" for file in names)
        return found

    def forget(self, conn: sqlite3.Connection) -> None:
        """Before any is written, drop the rows of the periods about to be indexed again (as
        `archive_build.Shelf.forget`)."""
        conn.executemany(
            "DELETE FROM search_periods WHERE period = ?", [(name,) for name in self.stale]
        )
        for name in self.stale:
            self.before.pop(name, None)

    def save(self, conn: sqlite3.Connection) -> None:
        """Record each period's mark and files; only the rows that changed are written."""
        rows = {name: (self.marks[name], rels) for name, rels in self.files.items()}
        gone = [(name,) for name in self.before if name not in rows]
        conn.executemany("DELETE FROM search_periods WHERE period = ?", gone)
        conn.executemany(
            "INSERT OR REPLACE INTO search_periods (period, mark, files) VALUES (?, ?, ?)",
            [(name, mark, "\n".join(rels)) for name, (mark, rels) in rows.items()
             if self.before.get(name) != (mark, rels)],
        )


def _present(folder: Path) -> set[str]:
    """The files of a period's folder, as paths under it: one listing per folder rather than a
    `stat` per file (a month has about 300 files; ten years, 34,000)."""
    found: set[str] = set()
    for sub in ("", *SEARCH_DATA):
        try:
            with os.scandir(folder / sub) as entries:
                found.update(f"{sub}/{e.name}" if sub else e.name for e in entries if e.is_file())
        except OSError:
            pass
    return found


def _marks(
    groups: dict[str, list[Paper]], marks: Mapping[str, bytes], render_fingerprint: str
) -> dict[str, str]:
    """What each period's index is made of: the rendering code and settings, Pagefind's
    version, and each paper's entry (`marks`: `feeds.syndicate.entry_marks`)."""
    common = repr([render_fingerprint, pagefind_version()]).encode("utf-8")
    return {
        name: hashlib.sha256(b"".join([common, *(marks[p.key] for p in papers)])).hexdigest()
        for name, papers in groups.items()
    }


@functools.cache
def pagefind_version() -> str:
    """The installed Pagefind's version ("" if none): in every period's mark, and in the
    seal's fingerprint (`feeds.seal`) when the search is on."""
    # Imported here: importlib.metadata took 20 ms of every build's start, searched or not.
    from importlib.metadata import version

    try:
        return version("pagefind") + "/" + version("pagefind_bin_extended")
    except Exception:  # a missing package is reported when the index is made
        return ""


def make_indexes(
    by_period: Mapping[str, Sequence[Record]], warm: Warm | None = None
) -> dict[str, dict[str, bytes]]:
    """Pagefind's bundle for each period's records ({period: {path under the bundle: bytes}}),
    made in memory (by `warm`'s processes first); nothing reaches the network."""
    made = index_periods(by_period, warm=warm)
    bundles: dict[str, dict[str, bytes]] = {}
    for name, files in made.items():
        if "pagefind.js" not in files:
            raise OutputError("cannot build the search index: Pagefind wrote no pagefind.js")
        bundles[name] = canonical({rel: data for rel, data in files.items()
                                   if rel not in UNUSED})
    return bundles
