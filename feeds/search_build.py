"""The build's side of the search: index the papers with Pagefind, only when they changed.

Pagefind (PyPI `pagefind[extended]`, whose binary segments Chinese into words) builds the whole
index at once; there is no adding to an index. So the build keeps a mark of what the index was
made of (each paper's guid, entry time and the content hashes of the digests that sight it,
the record code, the settings, Pagefind's version) with the list of the index's files in the
state database. Same mark and every file still there: no indexing, and only then are the
digests not loaded in full. Otherwise every paper is indexed again, into a temporary folder
beside the state database, whose files the build then writes into `output/pagefind/` through
its writer (atomic, unchanged bytes untouched; the index's file names are hashes of their
content, so a new index mostly adds files and the build removes the old ones it owns).
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import os
import re
import sqlite3
import tempfile
import threading
from collections.abc import Coroutine
from importlib.metadata import version
from pathlib import Path
from typing import Any

from feeds.config import Settings
from feeds.errors import OutputError
from feeds.model import BuildContext
from feeds.search import Record, records
from feeds.syndicate import entry_times

# The folder under output/ the index and Pagefind's script live in.
BUNDLE = "pagefind"

# Pagefind's own search interfaces: the site has its own (templates/site/search.js), which
# uses pagefind.js alone.
UNUSED = frozenset({
    "pagefind-ui.js", "pagefind-ui.css", "pagefind-modular-ui.js", "pagefind-modular-ui.css",
    "pagefind-component-ui.js", "pagefind-component-ui.css", "pagefind-highlight.js",
})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS search_index (
    path TEXT PRIMARY KEY,
    mark TEXT NOT NULL
)
"""


class SearchIndex:
    """One build's search index: whether to make it again, and which files it has."""

    def __init__(
        self, conn: sqlite3.Connection, settings: Settings, render_fingerprint: str, force: bool
    ) -> None:
        conn.execute(_SCHEMA)
        self.settings = settings
        self.render_fingerprint = render_fingerprint
        self.force = force
        rows = list(conn.execute("SELECT path, mark FROM search_index"))
        self.before: dict[str, str] = dict(rows)
        self.mark = ""
        self.stale = True
        # The index's files, made this time or kept from the build that made them.
        self.paths: list[str] = []

    def plan(self, ctx: BuildContext) -> set[str]:
        """Decide from `ctx` (digests may be light) whether to index; the digests to load."""
        if not self.settings.site.search:
            # Off ([site] search): no index, and the files of an earlier one are removed.
            self.stale, self.mark, self.paths = False, "off", []
            return set()
        self.mark = _mark(ctx, self.settings, self.render_fingerprint)
        kept = sorted(self.before)
        self.stale = (
            self.force
            or not kept
            or any(mark != self.mark for mark in self.before.values())
            or not all((self.settings.paths.output / rel).is_file() for rel in kept)
        )
        if self.stale:
            # Every paper's text goes into the index.
            return {digest.id for digest in ctx.digests}
        self.paths = kept
        return set()

    def render(self, ctx: BuildContext) -> dict[str, bytes]:
        """The index's files, when it is made again; nothing when it is kept."""
        if not self.mark:
            self.plan(ctx)
        if not self.stale:
            return {}
        made = make_index(records(ctx, self.settings), self.settings.paths.state.parent)
        files = {f"{BUNDLE}/{rel}": data for rel, data in made.items()}
        self.paths = sorted(files)
        return files

    def save(self, conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM search_index")
        conn.executemany(
            "INSERT INTO search_index (path, mark) VALUES (?, ?)",
            [(rel, self.mark) for rel in self.paths],
        )


def _mark(ctx: BuildContext, settings: Settings, render_fingerprint: str) -> str:
    """What the index is made of, from a context whose digests may be light."""
    hashes = {digest.id: digest.content_hash for digest in ctx.digests}
    times = entry_times(ctx.papers, settings.site.tz)
    h = hashlib.sha256(repr([render_fingerprint, _pagefind_version()]).encode("utf-8"))
    for paper in ctx.papers:
        sightings = [(d, hashes.get(d, "")) for d in paper.digest_ids]
        h.update(repr((paper.guid, paper.key, times[paper.key].isoformat(), sightings)).encode())
    return h.hexdigest()


def _pagefind_version() -> str:
    try:
        return version("pagefind") + "/" + version("pagefind_bin_extended")
    except Exception:  # a missing package is reported when the index is made
        return ""


def make_index(found: list[Record], scratch: Path) -> dict[str, bytes]:
    """Pagefind's bundle for these records ({path under the bundle: bytes}), made in a
    temporary folder under `scratch` (never under output/, which must only ever show whole
    files) and read back; nothing reaches the network."""
    try:
        from pagefind.index import IndexConfig, PagefindIndex
    except ImportError as exc:
        raise OutputError(
            "[site] search is on, but the pagefind package is not installed",
            hint="pip install 'digest-feeds[search]', or set [site] search = false",
        ) from exc

    async def run(folder: str) -> None:
        config = IndexConfig(output_path=folder)
        async with PagefindIndex(config=config) as index:
            for record in found:
                await index.add_custom_record(
                    url=record.url, content=record.content, language=record.language,
                    meta=record.meta, filters=record.filters, sort=record.sort,
                )

    import pagefind.service

    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch, prefix=".feeds-search-") as folder:
        # pagefind 1.5.2's client waits 0.1 s before reading each answer of its service, so a
        # record costs 0.1 s (ten years of papers: hours); without that pause, a pipe's round
        # trip. Only its own module sees the change, and only while indexing.
        namespace = vars(pagefind.service)
        saved = namespace["asyncio"]
        namespace["asyncio"] = _NoPause()
        try:
            _run_apart(run(folder))
        except Exception as exc:
            raise OutputError(f"cannot build the search index: {exc}") from exc
        finally:
            namespace["asyncio"] = saved
        files: dict[str, bytes] = {}
        for parent, _dirs, names in os.walk(folder):
            for name in names:
                if name in UNUSED:
                    continue
                path = Path(parent) / name
                files[path.relative_to(folder).as_posix()] = path.read_bytes()
    if "pagefind.js" not in files:
        raise OutputError("cannot build the search index: Pagefind wrote no pagefind.js")
    return canonical(files)


def _run_apart(work: Coroutine[Any, Any, None]) -> None:
    """Run `work` to its end on an event loop of its own thread: the caller's thread may have a
    loop running already (a program embedding the build), where `asyncio.run` refuses."""
    failed: list[BaseException] = []

    def main() -> None:
        try:
            asyncio.run(work)
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=main, name="search-index")
    thread.start()
    thread.join()
    if failed:
        raise failed[0]


class _NoPause:
    """`asyncio` as pagefind.service sees it while indexing: `sleep` yields, never waits."""

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    @staticmethod
    async def sleep(delay: float, result: Any = None) -> Any:
        return await asyncio.sleep(0, result)


# -- the same index, the same bytes ----------------------------------------------------------
# Pagefind 1.5 writes the values of a filter in hash-map order, which changes from run to run,
# and names each filter file, the language's metadata file that lists them and the entry file
# that names that after their content's hash. So the same papers would give other file names
# and bytes at every indexing. `canonical` puts each filter's values in order and names the
# files after the hashes of what they then hold, leaving every other file as Pagefind wrote it.

_DCD = b"pagefind_dcd"
_FILTER = re.compile(r"^filter/(?P<id>(?P<lang>[^/_]+)_[0-9a-f]+)\.pf_filter$")
_META = re.compile(r"^pagefind\.(?P<id>(?P<lang>[^/_]+)_[0-9a-f]+)\.pf_meta$")


def canonical(files: dict[str, bytes]) -> dict[str, bytes]:
    """The bundle with its filter values sorted and its hash-named files renamed to match."""
    out = dict(files)
    renamed: dict[str, str] = {}
    for name in sorted(files):
        match = _FILTER.match(name)
        if match is None:
            continue
        data = _sorted_filter(gzip.decompress(files[name]))
        # Same length as Pagefind's ids, so a reference to one is the same size in CBOR.
        new_id = f"{match['lang']}_" + _digest(data, len(match["id"]) - len(match["lang"]) - 1)
        renamed[match["id"]] = new_id
        del out[name]
        out[f"filter/{new_id}.pf_filter"] = _gzip(data)
    entry = files.get("pagefind-entry.json", b"").decode("utf-8")
    for name in sorted(files):
        match = _META.match(name)
        if match is None:
            continue
        data = gzip.decompress(files[name])
        for old, new in renamed.items():
            data = data.replace(old.encode("ascii"), new.encode("ascii"))
        data = _sorted_filter_list(data, set(renamed.values()))
        new_id = f"{match['lang']}_" + _digest(data, len(match["id"]) - len(match["lang"]) - 1)
        del out[name]
        out[f"pagefind.{new_id}.pf_meta"] = _gzip(data)
        entry = entry.replace(f'"{match["id"]}"', f'"{new_id}"')
    if entry:
        out["pagefind-entry.json"] = entry.encode("utf-8")
    return out


def _sorted_filter(data: bytes) -> bytes:
    """A filter file's CBOR, [name, [[value, [pages]], ...]], with the values in order."""
    if not data.startswith(_DCD):
        raise OutputError("cannot build the search index: a filter file of an unknown format")
    pos = len(_DCD)
    top, pos = _head(data, pos, 4)
    name_end = _skip(data, pos)
    count, values_start = _head(data, name_end, 4)
    items = []
    at = values_start
    for _ in range(count):
        end = _skip(data, at)
        items.append(data[at:end])
        at = end
    if top != 2 or at != len(data):
        raise OutputError("cannot build the search index: a filter file of an unknown format")
    return data[:values_start] + b"".join(sorted(items))


def _sorted_filter_list(data: bytes, ids: set[str]) -> bytes:
    """A metadata file's CBOR with its list of filters, [[name, filter file id], ...], in
    order (Pagefind writes it in hash-map order too); the rest as it is."""
    if not data.startswith(_DCD):
        raise OutputError("cannot build the search index: a metadata file of an unknown format")
    count, pos = _head(data, len(_DCD), 4)
    for _ in range(count):
        end = _skip(data, pos)
        if data[pos] >> 5 == 4:
            pairs = _items(data, pos)
            if pairs and all(_is_filter_pair(data, start, ids) for start, _ in pairs):
                inner = b"".join(sorted(data[start:stop] for start, stop in pairs))
                first = pairs[0][0]
                return data[:first] + inner + data[end:]
        pos = end
    return data


def _items(data: bytes, pos: int) -> list[tuple[int, int]]:
    """(start, end) of each item of the CBOR array at `pos`."""
    count, at = _head(data, pos, 4)
    found = []
    for _ in range(count):
        end = _skip(data, at)
        found.append((at, end))
        at = end
    return found


def _is_filter_pair(data: bytes, pos: int, ids: set[str]) -> bool:
    if data[pos] >> 5 != 4:
        return False
    parts = _items(data, pos)
    if len(parts) != 2 or any(data[start] >> 5 != 3 for start, _ in parts):
        return False
    length, text_at = _head(data, parts[1][0])
    return data[text_at : text_at + length].decode("utf-8", "replace") in ids


def _head(data: bytes, pos: int, major: int | None = None) -> tuple[int, int]:
    """A CBOR item's head at `pos`: its argument, and where its content starts."""
    initial = data[pos]
    if major is not None and initial >> 5 != major:
        raise OutputError("cannot build the search index: a filter file of an unknown format")
    info = initial & 31
    if info < 24:
        return info, pos + 1
    size = {24: 1, 25: 2, 26: 4, 27: 8}.get(info)
    if size is None:  # indefinite lengths: Pagefind does not write them
        raise OutputError("cannot build the search index: a filter file of an unknown format")
    return int.from_bytes(data[pos + 1 : pos + 1 + size], "big"), pos + 1 + size


def _skip(data: bytes, pos: int) -> int:
    """Where the CBOR item at `pos` ends."""
    major = data[pos] >> 5
    argument, pos = _head(data, pos)
    if major in (2, 3):
        return pos + argument
    if major in (4, 5):
        for _ in range(argument * (2 if major == 5 else 1)):
            pos = _skip(data, pos)
    return pos


def _digest(data: bytes, length: int) -> str:
    return hashlib.sha256(data).hexdigest()[:length]


def _gzip(data: bytes) -> bytes:
    # No time and no name in the header: the same bytes every time.
    return gzip.compress(data, compresslevel=9, mtime=0)
