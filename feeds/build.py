"""`feeds build`: digests folder -> state -> generators -> output/, incrementally and safely.

The order of a build is what makes it safe to kill and cheap to repeat:

1. Take the lock; fingerprint the world (input names, sizes and mtimes; settings; templates;
   the package's own code). Unchanged since the last complete build: done, nothing imported.
2. Hash the inputs (a file whose stat did not change is not re-read) and parse only content not
   seen before; the parse cache, first-seen times and digest ids are committed at once (they are
   facts about the input, not about what was published).
3. Resolve dates and ids, merge sightings of the same paper into one `Paper` with the guid it was
   first published under, and render: newsletter files only for new or changed digests, then
   the archive, the feeds and the site from the whole context.
4. Write changed files atomically, remove files the build owned and no longer produces, and only
   then commit what was published. A build killed before that point redoes its work next time;
   the output it leaves is the previous one with some files already replaced by complete new
   versions.
"""

from __future__ import annotations

import gc
import itertools
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from stat import S_ISREG
from typing import TYPE_CHECKING, TypeVar
from zoneinfo import ZoneInfo

import feeds
from feeds import state
from feeds.config import Settings
from feeds.errors import ConfigError, FeedsError

if TYPE_CHECKING:
    import sqlite3
    from concurrent.futures import ProcessPoolExecutor

    from feeds.model import BuildContext, Digest, Item, Link, Paper

Log = Callable[[str], None]
T = TypeVar("T")
PACKAGE_DIR = Path(feeds.__file__).resolve().parent
# Links, best first, for an entry's primary link once sightings are merged.
_PRIMARY_KINDS = ("arxiv", "openreview")


@dataclass
class BuildReport:
    """What a build did, for the command line and for `feeds run`."""

    output: Path
    digests: int = 0
    papers: int = 0
    noop: bool = False
    parsed: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    # Each "path:line: message": a digest that could not be published as it is.
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # Seconds per phase (parse, newsletter, archive, feeds, site, write), for -v and the
    # benchmark.
    timings: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return bool(self.errors)

    def summary_lines(self, verbose: bool) -> list[str]:
        """Errors always (cron mails them); with `verbose`, what was written and a summary."""
        lines = [f"error: {error}" for error in self.errors]
        if not verbose:
            return lines
        lines += [f"warning: {warning}" for warning in self.warnings]
        if self.noop:
            lines.append(
                f"nothing changed: {self.digests} digests already built into {self.output} "
                f"({self.seconds:.2f} s)"
            )
            return lines
        lines += [f"parsed {source}" for source in self.parsed]
        lines += [f"wrote {self.output / rel}" for rel in self.written]
        lines += [f"removed {self.output / rel}" for rel in self.removed]
        phases = ", ".join(f"{name} {secs:.2f} s" for name, secs in self.timings.items())
        lines.append(
            f"{self.digests} digests, {self.papers} papers: wrote {len(self.written)} files, "
            f"removed {len(self.removed)} in {self.seconds:.2f} s ({phases})"
        )
        return lines


def build(
    settings: Settings,
    *,
    now: datetime,
    log: Log,
    force: bool = False,
    wait: float = 0.0,
) -> BuildReport:
    """Build feeds, site and newsletters from `settings.paths.input` into `.output`.

    `now` is only used as the first-seen time of digests seen for the first time (it dates a
    digest nothing else dates). `force` re-renders everything; `wait` is how long to wait for
    another run holding the lock.
    """
    started = time.perf_counter()
    paths = settings.paths
    report = BuildReport(output=paths.output)
    with state.locked(paths.state, wait=wait):
        world = _world(settings, _scan_inputs(paths.input))
        last = state.read_stamp(paths.state)
        if (
            not force
            and last.get("stamp") == _stamp(world, paths.output)
            and paths.state.exists()
        ):
            report.noop = True
            report.digests = int(last.get("digests", 0))
            report.papers = int(last.get("papers", 0))
            report.errors = list(last.get("errors", []))
        else:
            # Gone before anything is written: a killed build can never look complete.
            state.clear_stamp(paths.state)
            conn = state.connect(paths.state)
            # A build makes a few hundred thousand long-lived objects (light digests, items,
            # papers) and next to no reference cycles: the collector's repeated passes over
            # them cost a fifth of a one-digest build. Off while building, back on after.
            collecting = gc.isenabled()
            gc.disable()
            try:
                _full_build(conn, settings, now, log, report, world, force)
            finally:
                if collecting:
                    gc.enable()
                conn.close()
                _close_pool()
            state.write_stamp(
                paths.state,
                {
                    "stamp": _stamp(world, paths.output),
                    "digests": report.digests,
                    "papers": report.papers,
                    "errors": report.errors,
                },
            )
    report.seconds = time.perf_counter() - started
    return report


def load_context(settings: Settings, *, now: datetime) -> BuildContext:
    """The digests and papers as of the last complete build, without parsing or writing.

    For `feeds send`: what it sends is what was published. Empty before the first build.
    `now` dates digests the state has never seen (none, after a build).
    """
    conn = state.connect(settings.paths.state)
    try:
        hashes: list[str] = json.loads(state.get_meta(conn, "published") or "[]")
        cached = state.load_digests(conn, hashes)
        rows = state.digest_rows(conn)
        keys, titles = state.guid_maps(conn)
    finally:
        conn.close()
    tz = settings.site.tz
    digests = []
    for content_hash in hashes:
        if content_hash not in cached:
            continue
        row = rows.get(content_hash)
        seen = row.first_seen if row else now
        digest = _resolve_date(cached[content_hash], seen, tz)
        if row and row.assigned_id:
            digest = _with_id(digest, row.assigned_id)
        digests.append(digest)
    ctx, _ = assemble(digests, keys, titles)
    return ctx


# -- fingerprints ------------------------------------------------------------------------------


def _scan_inputs(folder: Path) -> list[tuple[str, int, int]]:
    """(name, size, mtime_ns) of every digest file, by name; hidden files are editor debris.

    One stat per file relative to the open folder: this is most of what a no-op build costs.
    """
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        raise ConfigError(
            "the input folder does not exist",
            path=str(folder),
            hint="set [paths] input in feeds.toml or pass --input",
        ) from None
    except NotADirectoryError:
        raise ConfigError("the input path is not a folder", path=str(folder)) from None
    try:
        found = []
        for name in sorted(os.listdir(fd)):
            if name.endswith(".txt") and not name.startswith("."):
                try:
                    st = os.stat(name, dir_fd=fd)
                except FileNotFoundError:  # removed while we looked
                    continue
                if S_ISREG(st.st_mode):
                    found.append((name, st.st_size, st.st_mtime_ns))
    finally:
        os.close(fd)
    return found


class _World:
    """Everything a build's output depends on, as cheap stat results (no file is read)."""

    def __init__(
        self, render: list[object], source: Path, listing: list[tuple[str, int, int]]
    ) -> None:
        self.render = render
        self.source = source
        self.listing = listing

    def render_fingerprint(self) -> str:
        return _digest_of(self.render)


def _world(settings: Settings, listing: list[tuple[str, int, int]]) -> _World:
    """The settings that reach the output, the templates, and the package's own code (by size
    and mtime: an upgrade or an edit re-renders everything), and the input files.

    Library upgrades are not seen; run `feeds build --force` after one.
    """
    render: list[object] = [
        feeds.__version__,
        repr(settings.site),
        repr(settings.newsletter),
        str(settings.paths.templates),
        _tree_stat(PACKAGE_DIR, ".py"),
        _tree_stat(settings.paths.templates, ""),
    ]
    return _World(render, settings.paths.input, listing)


def _tree_stat(root: Path, suffix: str) -> list[tuple[str, int, int]]:
    out = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__")))
        for name in names:
            if name.endswith(suffix) and not name.startswith("."):
                st = os.stat(os.path.join(folder, name))
                out.append((os.path.relpath(os.path.join(folder, name), root), st.st_size,
                            st.st_mtime_ns))
    out.sort()
    return out


def _stamp(world: _World, output: Path) -> str:
    """The world plus the output folders' mtimes, as one comparable string.

    A folder's mtime changes when a file in it is created, removed or renamed, so deleting
    output files by hand makes the next build a real one, at the cost of three stat calls.
    The string is kept whole rather than hashed: hashlib's import alone costs a no-op build
    more than comparing a few hundred kilobytes.
    """
    marks = []
    for folder in (output, output / "feeds", output / "newsletter"):
        try:
            marks.append(os.stat(folder).st_mtime_ns)
        except OSError:
            marks.append(-1)
    return repr([str(world.source), str(output), marks, world.render, world.listing])


def _digest_of(parts: Iterable[object]) -> str:
    import hashlib

    return hashlib.sha256(repr(list(parts)).encode("utf-8")).hexdigest()


# What a cached parse depends on: the parser, the helpers it parses with, and the model.
PARSER_MODULES = ("parse.py", "identity.py", "textutil.py", "model.py")


def parser_fingerprint(settings: Settings) -> str:
    """Cached parses are valid while the parser's code and the time zone are the same."""
    import hashlib

    h = hashlib.sha256(f"{feeds.__version__}:{state.LIGHT_VERSION}".encode())
    for name in PARSER_MODULES:
        try:
            h.update((PACKAGE_DIR / name).read_bytes())
        except OSError:
            h.update(name.encode())
    h.update(settings.site.timezone.encode())
    return h.hexdigest()[:32]


# -- the real build ----------------------------------------------------------------------------


def _full_build(
    conn: sqlite3.Connection,
    settings: Settings,
    now: datetime,
    log: Log,
    report: BuildReport,
    world: _World,
    force: bool,
) -> None:
    paths = settings.paths
    render_fp = world.render_fingerprint()
    from feeds import output

    for leftover in output.remove_temporaries(paths.output):
        log(f"removed a temporary file left by a killed build: {leftover}")

    tick = time.perf_counter()
    inputs = _read_digests(conn, settings, now, report, world.listing)
    report.timings["parse"] = time.perf_counter() - tick

    owned_before = state.outputs(conn)
    owned: dict[str, str] = {}
    rendered_before = state.renders(conn)
    rendered: dict[str, str] = {}

    # Which newsletters to render is known from the resolved digests alone (newest first, as
    # in the context), so a few can render on another core while the context is assembled.
    tick = time.perf_counter()
    files_by_owner: dict[str, list[str]] = {}
    for rel, owner in owned_before.items():
        files_by_owner.setdefault(owner, []).append(rel)
    existing = _existing_files(paths.output, owned_before)
    stale: list[Digest] = []
    newest_first = sorted(inputs.light, key=lambda d: (d.date, d.id), reverse=True)
    for digest in newest_first:
        fp = _digest_of([render_fp, digest.content_hash, digest.id, _iso(digest.date)])
        rendered[digest.id] = fp
        previous = files_by_owner.get(digest.id, [])
        if (
            not force
            and rendered_before.get(digest.id) == fp
            and all(rel in existing for rel in previous)
        ):
            owned.update(dict.fromkeys(previous, digest.id))
        else:
            stale.append(digest)
    early = _Forked.start(inputs, conn, stale, newest_first, settings)
    newsletter_seconds = time.perf_counter() - tick

    try:
        keys, titles = state.guid_maps(conn)
        ctx, identities = _context(conn, inputs, keys, titles, settings)
    except BaseException:
        if early is not None:
            early.discard()
        raise
    report.digests = len(ctx.digests)
    report.papers = len(ctx.papers)

    # Newsletters first: the archive and the index link to them, so link targets exist first.
    tick = time.perf_counter()
    write_seconds = 0.0
    batch: dict[str, bytes] = {}
    archive: dict[str, bytes] | None = None
    if early is not None:
        rendered_early = early.result()
        if rendered_early is None:  # the worker failed: render here, to report why
            early = None
        else:
            issues, archive = rendered_early
            for digest, issue_files in issues:
                owned.update(dict.fromkeys(issue_files, digest.id))
                batch.update(issue_files)
            w = time.perf_counter()
            report.written += output.write_files(paths.output, batch)
            write_seconds += time.perf_counter() - w
    for n, chunk in enumerate(_chunks(stale if early is None else [], _RENDER_CHUNK)):
        # The context holds light digests; a newsletter needs the whole text.
        full = inputs.full(conn, [d.content_hash for d in chunk])
        for digest, issue_files in _render_issues([full[d.content_hash] for d in chunk], settings):
            owned.update(dict.fromkeys(issue_files, digest.id))
            batch.update(issue_files)
        if len(batch) >= _WRITE_BATCH or (n + 1) * _RENDER_CHUNK >= len(stale):
            w = time.perf_counter()
            report.written += output.write_files(paths.output, batch)
            write_seconds += time.perf_counter() - w
            batch = {}
    report.timings["newsletter"] = (
        newsletter_seconds + time.perf_counter() - tick - write_seconds
    )

    from feeds import newsletter, site, syndicate

    tick = time.perf_counter()
    # The archive lists every issue: most digests reach it light (it needs their titles only).
    site_files = newsletter.render_archive(ctx, settings) if archive is None else archive
    report.timings["archive"] = time.perf_counter() - tick
    tick = time.perf_counter()
    site_files.update(syndicate.render_feeds(ctx, settings))
    report.timings["feeds"] = time.perf_counter() - tick
    tick = time.perf_counter()
    site_files.update(site.render_site(ctx, settings))
    report.timings["site"] = time.perf_counter() - tick

    tick = time.perf_counter()
    report.written += output.write_files(paths.output, site_files)
    owned.update(dict.fromkeys(site_files, ""))
    report.removed = output.remove_files(paths.output, set(owned_before) - set(owned))
    report.timings["write"] = time.perf_counter() - tick + write_seconds
    report.written.sort()

    # Only now, with every file in place, is the publication recorded.
    known = set(keys.values())
    with state.transaction(conn):
        state.record_papers(
            conn,
            [p for p in identities[0] if p[0] not in known],
            [k for k in identities[1] if k[0] not in keys],
            [t for t in identities[2] if t[0] not in titles],
        )
        state.save_renders(conn, rendered, rendered_before)
        state.save_outputs(conn, owned, owned_before)
        state.set_meta(conn, "published", json.dumps(inputs.published))


def _context(
    conn: sqlite3.Connection,
    inputs: _Inputs,
    keys: dict[str, str],
    titles: dict[str, str],
    settings: Settings,
) -> tuple[BuildContext, Identities]:
    """The build context: light digests, except where a page shows a paper in full.

    Assembled from light digests, which tell which papers the feeds and the index show; the
    digests that sight any of those papers are then loaded in full and those papers rebuilt
    from them. Selection depends only on what light digests keep (dates, categories, stars,
    identities), so the context equals one made of full digests everywhere it is read.
    """
    from feeds.catalog import feed_list, select

    def hydrate(light: BuildContext) -> dict[str, Digest]:
        needed: set[str] = set()
        limit = settings.site.items_per_feed
        for feed in feed_list(light, settings):
            for paper in select(light, feed, limit):
                needed.update(paper.digest_ids)
        if light.digests:
            needed.add(light.digests[0].id)
        hashes = [d.content_hash for d in light.digests if d.id in needed]
        return {d.id: d for d in inputs.full(conn, hashes).values()}

    return assemble(inputs.light, keys, titles, hydrate=hydrate)


def _existing_files(root: Path, paths: Iterable[str]) -> set[str]:
    """Which of these relative paths exist: one directory listing per folder, not a stat each."""
    folders: dict[str, set[str]] = {}
    found: set[str] = set()
    for rel in paths:
        folder, _, name = rel.rpartition("/")
        if folder not in folders:
            try:
                folders[folder] = set(os.listdir(root / folder))
            except OSError:
                folders[folder] = set()
        if name in folders[folder]:
            found.add(rel)
    return found


# Digests whose full text is loaded at once while newsletters are rendered.
_RENDER_CHUNK = 64
# Newsletter files written (and synced to disk) together: each sync waits for every dirty page
# of the machine, so fewer, larger batches, within a few tens of megabytes.
_WRITE_BATCH = 600
# From this many newsletters to render (a first build, a template change), use every core.
_PARALLEL_FROM = 24


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _render_issues(
    digests: list[Digest], settings: Settings
) -> Iterator[tuple[Digest, dict[str, bytes]]]:
    """(digest, its newsletter files), in order; in worker processes when there are many.

    Newsletter rendering (templates, then CSS inlining) dominates a full build. Workers come
    from a fork server: they inherit neither the build lock nor the open database, and they
    exit when the build dies.
    """
    workers = min(os.cpu_count() or 1, 4)
    if len(digests) < _PARALLEL_FROM or workers < 2:
        from feeds import newsletter

        for digest in digests:
            yield digest, newsletter.render_issue_files(digest, settings)
        return
    results = _pool(workers).map(_render_issue, digests, [settings] * len(digests), chunksize=2)
    yield from zip(digests, results, strict=True)


_POOL: list[ProcessPoolExecutor] = []


def _pool(workers: int) -> ProcessPoolExecutor:
    """One pool of workers per build, for parsing and rendering; closed when the build ends."""
    if not _POOL:
        import atexit
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("forkserver" if "forkserver" in methods else None)
        if "forkserver" in methods:
            context.set_forkserver_preload(["feeds.newsletter", "feeds.parse"])
        pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=context,
            initializer=_watch_parent,
            initargs=(os.getpid(),),
        )
        atexit.register(pool.shutdown)
        _POOL.append(pool)
    return _POOL[0]


def _close_pool() -> None:
    """Render workers hold memory; `feeds run` goes on to send, so let them go now."""
    while _POOL:
        _POOL.pop().shutdown()


def _watch_parent(parent: int) -> None:
    """In a render worker: exit as soon as the build process is gone (killed, crashed)."""
    import threading

    def watch() -> None:
        while True:
            time.sleep(0.5)
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:
                pass

    threading.Thread(target=watch, daemon=True).start()


class _Forked:
    """A few newsletters and the archive rendered in a forked child while the build assembles
    its context.

    The common cron case (one new digest) renders them on the second core instead of after
    the context. The archive needs only the light digests (titles, keys, stars), which are
    known before the context is. The child gets the full digests before it forks (it never
    touches the database), sends the files back through a pipe and exits without running any
    cleanup of the build's.
    """

    def __init__(self, pid: int, fd: int, digests: list[Digest]) -> None:
        self.pid = pid
        self.fd = fd
        self.digests = digests

    @classmethod
    def start(
        cls,
        inputs: _Inputs,
        conn: sqlite3.Connection,
        stale: list[Digest],
        newest_first: list[Digest],
        settings: Settings,
    ) -> _Forked | None:
        # Many newsletters go to the worker pool; a process with pool threads is never forked.
        if not stale or len(stale) >= _PARALLEL_FROM or _POOL or not hasattr(os, "fork"):
            return None
        if (os.cpu_count() or 1) < 2:
            return None
        full = inputs.full(conn, [d.content_hash for d in stale])
        digests = [full[d.content_hash] for d in stale]
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child's coverage is not collected
            status = 1
            try:
                os.close(read_end)
                import pickle

                from feeds import newsletter
                from feeds.model import BuildContext

                files = [newsletter.render_issue_files(d, settings) for d in digests]
                archive = newsletter.render_archive(BuildContext(tuple(newest_first), ()), settings)
                with os.fdopen(write_end, "wb") as out:
                    out.write(pickle.dumps((files, archive), protocol=pickle.HIGHEST_PROTOCOL))
                status = 0
            finally:
                os._exit(status)
        os.close(write_end)
        return cls(pid, read_end, digests)

    def result(
        self,
    ) -> tuple[list[tuple[Digest, dict[str, bytes]]], dict[str, bytes]] | None:
        """(digest, its files) per digest, in order, and the archive; None if the child
        failed."""
        import pickle

        with os.fdopen(self.fd, "rb") as pipe:
            data = pipe.read()
        _, status = os.waitpid(self.pid, 0)
        if status != 0 or not data:
            return None
        files: list[dict[str, bytes]]
        archive: dict[str, bytes]
        files, archive = pickle.loads(data)
        return list(zip(self.digests, files, strict=True)), archive

    def discard(self) -> None:
        """The build failed before it needed the files: let the child go and reap it."""
        os.close(self.fd)  # its write fails, and it exits
        os.waitpid(self.pid, 0)


def _render_issue(digest: Digest, settings: Settings) -> dict[str, bytes]:
    from feeds import newsletter

    return newsletter.render_issue_files(digest, settings)


def _iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment else ""


class _Inputs:
    """The digests to publish, light, with what it takes to load any of them in full."""

    def __init__(
        self,
        light: list[Digest],
        published: list[str],
        resolved: dict[str, tuple[datetime, str]],
        tz: ZoneInfo,
    ) -> None:
        self.light = light
        self.published = published
        self.resolved = resolved
        self.tz = tz

    def full(self, conn: sqlite3.Connection, hashes: list[str]) -> dict[str, Digest]:
        """These digests with every text, dated and named exactly as their light versions."""
        loaded = state.load_digests(conn, hashes)
        out = {}
        for content_hash, digest in loaded.items():
            seen, digest_id = self.resolved[content_hash]
            out[content_hash] = _with_id(_resolve_date(digest, seen, self.tz), digest_id)
        return out


def _read_digests(
    conn: sqlite3.Connection,
    settings: Settings,
    now: datetime,
    report: BuildReport,
    listing: list[tuple[str, int, int]],
) -> _Inputs:
    """Every digest to publish (light, dates and ids resolved), and their content hashes.

    New content is parsed and cached; a file that fails to parse is reported, and if an earlier
    version of it parsed, that version stays published rather than vanishing from the feeds.
    """
    import hashlib

    folder = settings.paths.input
    tz = settings.site.tz
    parser_fp = parser_fingerprint(settings)
    files_before = state.file_rows(conn)
    rows = state.digest_rows(conn)

    files: dict[str, state.FileRow] = {}
    sources: dict[str, Path] = {}
    for name, size, mtime in listing:
        row = files_before.get(name)
        if row is not None and row.size == size and row.mtime_ns == mtime:
            content_hash = row.content_hash
        else:
            content_hash = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        files[name] = state.FileRow(size, mtime, content_hash, row.good_hash if row else None)
        sources.setdefault(content_hash, folder / name)
    present = set(sources)

    fresh = {h for h in present if h in rows and rows[h].parser == parser_fp}
    light = state.load_digests(conn, fresh, light=True)
    failed: set[str] = set()
    first_seen: dict[str, datetime] = {}
    for content_hash in sorted(present):
        if content_hash in rows:
            first_seen[content_hash] = rows[content_hash].first_seen
        else:
            first_seen[content_hash] = _inherited_first_seen(
                sources[content_hash].name, files_before, rows, present
            ) or now
    stale = [h for h in sorted(present) if h not in light]
    results = _parse_all([sources[h] for h in stale], tz)
    # Committed every few hundred digests: a killed first build keeps what it parsed.
    pairs = zip(stale, results, strict=True)
    while batch := list(itertools.islice(pairs, 256)):
        with state.transaction(conn):
            for content_hash, (digest, error) in batch:
                if digest is None:
                    report.errors.append(error or f"{sources[content_hash]}: cannot parse")
                    failed.add(content_hash)
                    continue
                digest = replace(digest, content_hash=content_hash)
                state.save_digest(
                    conn, digest, first_seen=first_seen[content_hash], parser=parser_fp
                )
                light[content_hash] = state.lighten(digest)
                report.parsed.append(str(sources[content_hash]))
                report.warnings += [
                    f"{digest.source}:{w.line}: {w.message}" for w in digest.warnings
                ]

    # A file edited into something unparseable keeps its last good version published.
    for name, row in files.items():
        if row.content_hash in failed and row.good_hash and row.good_hash not in present:
            good = state.load_digests(conn, [row.good_hash], light=True).get(row.good_hash)
            if good is not None and row.good_hash in rows:
                light[row.good_hash] = good
                first_seen[row.good_hash] = rows[row.good_hash].first_seen
                report.errors.append(f"{folder / name}: publishing its previous version")
        elif row.content_hash in light:
            files[name] = row._replace(good_hash=row.content_hash)

    digests, assigned = _resolve(light, first_seen, rows, tz)
    with state.transaction(conn):
        state.save_file_rows(conn, files, files_before)
        for content_hash in failed:
            state.record_first_seen(conn, content_hash, first_seen[content_hash])
        state.assign_ids(
            conn,
            {
                h: digest_id
                for h, digest_id in assigned.items()
                if h not in rows or rows[h].assigned_id != digest_id
            },
        )
    report.errors.sort()
    resolved = {h: (first_seen[h], assigned[h]) for h in assigned}
    return _Inputs(digests, sorted(light), resolved, tz)


def _parse_all(paths: list[Path], tz: ZoneInfo) -> Iterator[tuple[Digest | None, str | None]]:
    """(digest, None) or (None, error) per path, in order; on every core when there are many."""
    workers = min(os.cpu_count() or 1, 4)
    if len(paths) < _PARALLEL_FROM or workers < 2:
        for path in paths:
            yield _parse(path, tz)
        return
    yield from _pool(workers).map(_parse, paths, [tz] * len(paths), chunksize=16)


def _parse(path: Path, tz: ZoneInfo) -> tuple[Digest | None, str | None]:
    from feeds.parse import parse_file

    try:
        return parse_file(path, tz=tz), None
    except FeedsError as exc:
        return None, str(exc)
    except Exception as exc:  # a parser bug must not stop the other digests
        return None, f"{path}: cannot parse: {exc!r}"


def _inherited_first_seen(
    name: str,
    files_before: dict[str, state.FileRow],
    rows: dict[str, state.DigestRow],
    present: set[str],
) -> datetime | None:
    """A file edited in place keeps the first-seen time of the content it replaced."""
    before = files_before.get(name)
    if before is None or before.content_hash in present:
        return None
    row = rows.get(before.content_hash)
    return row.first_seen if row else None


def _resolve(
    parsed: dict[str, Digest],
    first_seen: dict[str, datetime],
    rows: dict[str, state.DigestRow],
    tz: ZoneInfo,
) -> tuple[list[Digest], dict[str, str]]:
    """Date undated digests by first sighting and give every digest a unique, stable id.

    Two digests with the same id (two files for one day): the one seen first keeps the id, the
    other gets `-2` (then `-3`, ...), recorded in the state so it never moves.
    """
    order = sorted(parsed, key=lambda h: (first_seen[h], h))
    taken: set[str] = set()
    assigned: dict[str, str] = {}
    digests = []
    for content_hash in order:
        digest = _resolve_date(parsed[content_hash], first_seen[content_hash], tz)
        base = digest.id
        row = rows.get(content_hash)
        stored = row.assigned_id if row else None
        if stored and stored not in taken and _is_id_of(stored, base):
            chosen = stored
        else:
            chosen = base
            n = 2
            while chosen in taken:
                chosen = f"{base}-{n}"
                n += 1
        taken.add(chosen)
        assigned[content_hash] = chosen
        digests.append(_with_id(digest, chosen))
    return digests, assigned


def _is_id_of(digest_id: str, base: str) -> bool:
    """`base` itself or `base` with a collision suffix (`-2`, `-3`, ...)."""
    if digest_id == base:
        return True
    suffix = digest_id[len(base) + 1 :]
    return digest_id.startswith(base + "-") and suffix.isdigit() and suffix.isascii()


def _resolve_date(digest: Digest, seen: datetime, tz: ZoneInfo) -> Digest:
    if digest.date is not None:
        return digest
    local = seen.astimezone(tz)
    suffix = "-weekly" if digest.format == "weekly" else ""
    return replace(digest, date=local, date_source="state", id=f"{local:%Y-%m-%d}{suffix}")


def _with_id(digest: Digest, digest_id: str) -> Digest:
    """The digest under `digest_id`, every item carrying it and the digest date."""
    if digest.id != digest_id:
        digest = replace(digest, id=digest_id)
    if all(i.digest_id == digest_id and i.published == digest.date for i in digest.items):
        return digest
    items = tuple(replace(i, digest_id=digest_id, published=digest.date) for i in digest.items)
    return replace(digest, items=items)


# -- identity across digests -------------------------------------------------------------------


Identities = tuple[
    list[tuple[str, datetime, str]], list[tuple[str, str]], list[tuple[str, str]]
]


class _Sighting:
    """One paper being assembled: its first sighting, and later sightings if any.

    Most papers are sighted once; they cost one small object and no merging. Each sighting
    keeps its position in its digest, so it can be swapped for the full item later.
    """

    __slots__ = ("first", "guid", "later", "order", "position", "seen", "title")

    def __init__(
        self,
        item: Item,
        seen: datetime,
        order: tuple[float, int, int],
        title: str,
        position: int,
    ) -> None:
        self.first = item
        self.guid = item.guid
        self.position = position
        self.seen = seen
        self.order = order
        self.title = title
        self.later: list[tuple[Item, str, int]] | None = None

    def add(self, item: Item, title: str, position: int) -> None:
        if self.later is None:
            self.later = []
        self.later.append((item, title, position))

    def hydrate(self, full: dict[str, Digest]) -> bool:
        """Use the full items if every digest sighting this paper is in `full`."""
        sightings = [(self.first, self.position)] + [(i, p) for i, _, p in self.later or ()]
        if any(item.digest_id not in full for item, _ in sightings):
            return False
        self.first = full[self.first.digest_id].items[self.position]
        if self.later is not None:
            self.later = [
                (full[item.digest_id].items[position], title, position)
                for item, title, position in self.later
            ]
        return True

    def all_keys(self) -> list[str]:
        keys = [self.first.key]
        for item, _, _ in self.later or ():
            if item.key not in keys:
                keys.append(item.key)
        return keys

    def all_titles(self) -> list[str]:
        titles = [self.title] if self.title else []
        for _, title, _ in self.later or ():
            if title and title not in titles:
                titles.append(title)
        return titles

    def paper(self, paper: type[Paper]) -> Paper:
        """The assembled paper (`paper` is the model's class, passed to keep imports lazy)."""
        guid = self.guid
        first = self.first
        if self.later is None:
            item = first if guid == first.guid else replace(first, guid=guid)
            return paper(item=item, first_seen=self.seen, digest_ids=(first.digest_id,))
        digest_ids = [first.digest_id]
        links: list[Link] = list(first.links)
        hrefs = {link.href for link in links}
        changes: dict[str, object] = {}
        for item, _, _ in self.later:
            if item.digest_id not in digest_ids:
                digest_ids.append(item.digest_id)
            for link in item.links:
                if link.href not in hrefs:
                    hrefs.add(link.href)
                    links.append(link)
            # What the first sighting lacked, a later one may tell (a weekly pick has no
            # category, a short entry no summary).
            for name in ("category", "category_name", "title_zh", "summary_zh", "abstract"):
                if getattr(first, name) is None and name not in changes:
                    value = getattr(item, name)
                    if value is not None:
                        changes[name] = value
            if not first.authors and item.authors and "authors" not in changes:
                changes["authors"] = item.authors
                changes["authors_truncated"] = item.authors_truncated
            if not first.affiliations and item.affiliations:
                changes.setdefault("affiliations", item.affiliations)
            if item.starred and not first.starred:
                changes["starred"] = True
        if guid != first.guid:
            changes["guid"] = guid
        if len(links) != len(first.links):
            changes["links"] = tuple(links)
            primary = _primary_url(links)
            if primary and primary != first.url:
                changes["url"] = primary
        item = replace(first, **changes) if changes else first  # type: ignore[arg-type]
        return paper(item=item, first_seen=self.seen, digest_ids=tuple(digest_ids))


def _primary_url(links: list[Link]) -> str | None:
    for kind in _PRIMARY_KINDS:
        for link in links:
            if link.kind == kind:
                return link.href
    return None


def assemble(
    digests: list[Digest],
    keys: dict[str, str],
    titles: dict[str, str],
    *,
    hydrate: Callable[[BuildContext], dict[str, Digest]] | None = None,
) -> tuple[BuildContext, Identities]:
    """The build context: digests newest first, and every paper once, with its published guid.

    `keys` and `titles` map what was published before to its guid: a paper keeps the guid it
    was first published under even if a later parse would give it another one. Returns the
    identities to record as published, too.

    `hydrate`, given the context, returns full versions of some digests (by id); papers sighted
    only in those are rebuilt from them, and those digests replace theirs in the context.
    """
    from feeds.model import BuildContext, Paper
    from feeds.textutil import normalize_title

    chrono = sorted(digests, key=lambda d: (d.date, d.id))
    count = len(chrono)
    by_key: dict[str, _Sighting] = {}
    by_title: dict[str, _Sighting] = {}
    sightings: list[_Sighting] = []
    for index, digest in enumerate(chrono):
        assert digest.date is not None  # resolved by the build
        # Newest first; ties by digest order (newest first), then position in the digest.
        newest, rank = -digest.date.timestamp(), count - 1 - index
        for position, item in enumerate(digest.items):
            title = normalize_title(item.title or item.title_zh or "")
            found = by_key.get(item.key) or (by_title.get(title) if title else None)
            if found is None:
                order = (newest, rank, position)
                found = _Sighting(item, digest.date, order, title, position)
                sightings.append(found)
            else:
                found.add(item, title, position)
            by_key.setdefault(item.key, found)
            if title:
                by_title.setdefault(title, found)

    used: set[str] = set()
    records: Identities = ([], [], [])
    for sighting in sightings:
        first = sighting.first
        guid = _published_guid(sighting, keys, titles)
        if guid in used:
            # Two papers the state once knew as one; the newcomer gets its own guid.
            guid = first.guid if first.guid not in used else (
                f"tag:digest-feeds,2020:{first.key}#{sighting.order[1]}"
            )
        used.add(guid)
        sighting.guid = guid
        records[0].append((guid, sighting.seen, first.digest_id))
        if sighting.later is None:
            records[1].append((first.key, guid))
            if sighting.title:
                records[2].append((sighting.title, guid))
        else:
            records[1].extend((key, guid) for key in sighting.all_keys())
            records[2].extend((title, guid) for title in sighting.all_titles())
    sightings.sort(key=_order)
    newest_first = tuple(reversed(chrono))
    ctx = BuildContext(
        digests=newest_first, papers=tuple(sighting.paper(Paper) for sighting in sightings)
    )
    if hydrate is None:
        return ctx, records
    full = hydrate(ctx)
    papers = list(ctx.papers)
    for n, sighting in enumerate(sightings):
        # Most papers are sighted once, in a digest not loaded in full: skip them cheaply.
        if sighting.later is None and sighting.first.digest_id not in full:
            continue
        if sighting.hydrate(full):
            papers[n] = sighting.paper(Paper)
    hydrated = BuildContext(
        digests=tuple(full.get(d.id, d) for d in newest_first), papers=tuple(papers)
    )
    return hydrated, records


def _order(sighting: _Sighting) -> tuple[float, int, int]:
    return sighting.order


def _published_guid(sighting: _Sighting, keys: dict[str, str], titles: dict[str, str]) -> str:
    if sighting.later is None:
        found = keys.get(sighting.first.key)
        if found is None and sighting.title:
            found = titles.get(sighting.title)
        return found or sighting.first.guid
    for key in sighting.all_keys():
        if key in keys:
            return keys[key]
    for title in sighting.all_titles():
        if title in titles:
            return titles[title]
    return sighting.first.guid
