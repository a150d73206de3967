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

import json
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import feeds
from feeds import state
from feeds.config import Settings
from feeds.errors import ConfigError, FeedsError

if TYPE_CHECKING:
    import sqlite3

    from feeds.model import BuildContext, Digest, Item, Link, Paper

Log = Callable[[str], None]
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
    # Seconds per phase (parse, newsletter, feeds, site, write), for -v and the benchmark.
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
        if not force and last.get("stamp") == _stamp(world, paths.output):
            report.noop = True
            report.digests = int(last.get("digests", 0))
            report.papers = int(last.get("papers", 0))
            report.errors = list(last.get("errors", []))
        else:
            # Gone before anything is written: a killed build can never look complete.
            state.clear_stamp(paths.state)
            conn = state.connect(paths.state)
            try:
                _full_build(conn, settings, now, log, report, world, force)
            finally:
                conn.close()
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
    """(name, size, mtime_ns) of every digest file, by name; hidden files are editor debris."""
    try:
        with os.scandir(folder) as entries:
            found = []
            for entry in entries:
                if entry.name.endswith(".txt") and not entry.name.startswith("."):
                    if not entry.is_file():
                        continue
                    st = entry.stat()
                    found.append((entry.name, st.st_size, st.st_mtime_ns))
    except FileNotFoundError:
        raise ConfigError(
            "the input folder does not exist",
            path=str(folder),
            hint="set [paths] input in feeds.toml or pass --input",
        ) from None
    except NotADirectoryError:
        raise ConfigError("the input path is not a folder", path=str(folder)) from None
    found.sort()
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


def parser_fingerprint(settings: Settings) -> str:
    """Cached parses are valid while the parser, the model and the time zone are the same."""
    import hashlib

    h = hashlib.sha256(feeds.__version__.encode())
    for name in ("parse.py", "model.py"):
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
    digests, published_hashes = _read_digests(conn, settings, now, report, world.listing)
    report.timings["parse"] = time.perf_counter() - tick

    keys, titles = state.guid_maps(conn)
    ctx, identities = assemble(digests, keys, titles)
    report.digests = len(ctx.digests)
    report.papers = len(ctx.papers)

    owned_before = state.outputs(conn)
    owned: dict[str, str] = {}
    rendered_before = {} if force else state.renders(conn)
    rendered: dict[str, str] = {}

    # Newsletters first: the archive and the index link to them, so link targets exist first.
    tick = time.perf_counter()
    files_by_owner: dict[str, list[str]] = {}
    for rel, owner in owned_before.items():
        files_by_owner.setdefault(owner, []).append(rel)
    from feeds import newsletter, site, syndicate

    stale: list[Digest] = []
    for digest in ctx.digests:
        fp = _digest_of([render_fp, digest.content_hash, digest.id, _iso(digest.date)])
        rendered[digest.id] = fp
        previous = files_by_owner.get(digest.id, [])
        if rendered_before.get(digest.id) == fp and all(
            (paths.output / rel).exists() for rel in previous
        ):
            owned.update(dict.fromkeys(previous, digest.id))
        else:
            stale.append(digest)
    write_seconds = 0.0
    batch: dict[str, bytes] = {}
    for digest, issue_files in _render_issues(stale, settings):
        owned.update(dict.fromkeys(issue_files, digest.id))
        batch.update(issue_files)
        if len(batch) >= _WRITE_BATCH or digest is stale[-1]:
            w = time.perf_counter()
            report.written += output.write_files(paths.output, batch)
            write_seconds += time.perf_counter() - w
            batch = {}
    report.timings["newsletter"] = time.perf_counter() - tick - write_seconds

    site_files = newsletter.render_archive(ctx, settings)
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
    with state.transaction(conn):
        state.record_papers(conn, *identities)
        state.save_renders(conn, rendered)
        state.save_outputs(conn, owned)
        state.set_meta(conn, "published", json.dumps(published_hashes))


# Files per write batch (one disk sync each) while newsletters are rendered.
_WRITE_BATCH = 300
# From this many newsletters to render (a first build, a template change), use every core.
_PARALLEL_FROM = 24


def _render_issues(
    digests: list[Digest], settings: Settings
) -> Iterator[tuple[Digest, dict[str, bytes]]]:
    """(digest, its newsletter files), in order; in worker processes when there are many.

    Newsletter rendering (templates, then CSS inlining) dominates a full build. Workers come
    from a fork server: they inherit neither the build lock nor the open database.
    """
    workers = min(os.cpu_count() or 1, 4)
    if len(digests) < _PARALLEL_FROM or workers < 2:
        from feeds import newsletter

        for digest in digests:
            yield digest, newsletter.render_issue_files(digest, settings)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else None
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        context.set_forkserver_preload(["feeds.newsletter"])
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        results = pool.map(_render_issue, digests, [settings] * len(digests), chunksize=4)
        yield from zip(digests, results, strict=True)


def _render_issue(digest: Digest, settings: Settings) -> dict[str, bytes]:
    from feeds import newsletter

    return newsletter.render_issue_files(digest, settings)


def _iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment else ""


def _read_digests(
    conn: sqlite3.Connection,
    settings: Settings,
    now: datetime,
    report: BuildReport,
    listing: list[tuple[str, int, int]],
) -> tuple[list[Digest], list[str]]:
    """Every digest to publish (dates and ids resolved), and their content hashes.

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

    cached = state.load_digests(conn, present)
    parsed: dict[str, Digest] = {}
    failed: set[str] = set()
    first_seen: dict[str, datetime] = {}
    stale = [h for h in sorted(present) if h not in cached or rows[h].parser != parser_fp]
    if stale:
        from feeds.parse import parse_file
    for content_hash in sorted(present):
        path = sources[content_hash]
        if content_hash in rows:
            first_seen[content_hash] = rows[content_hash].first_seen
        else:
            first_seen[content_hash] = _inherited_first_seen(
                path.name, files_before, rows, present
            ) or now
        if content_hash not in stale:
            parsed[content_hash] = cached[content_hash]
            continue
        try:
            digest = parse_file(path, tz=tz)
        except FeedsError as exc:
            report.errors.append(str(exc))
            failed.add(content_hash)
            continue
        except Exception as exc:  # a parser bug must not stop the other digests
            report.errors.append(f"{path}: cannot parse: {exc!r}")
            failed.add(content_hash)
            continue
        digest = replace(digest, content_hash=content_hash)
        parsed[content_hash] = digest
        report.parsed.append(str(path))
        report.warnings += [f"{digest.source}:{w.line}: {w.message}" for w in digest.warnings]

    # A file edited into something unparseable keeps its last good version published.
    for name, row in files.items():
        if row.content_hash in failed and row.good_hash and row.good_hash not in present:
            good = state.load_digests(conn, [row.good_hash]).get(row.good_hash)
            if good is not None and row.good_hash in rows:
                parsed[row.good_hash] = good
                first_seen[row.good_hash] = rows[row.good_hash].first_seen
                report.errors.append(f"{folder / name}: publishing its previous version")
        elif row.content_hash in parsed:
            files[name] = row._replace(good_hash=row.content_hash)

    digests, assigned = _resolve(parsed, first_seen, rows, tz)
    with state.transaction(conn):
        state.save_file_rows(conn, files)
        for content_hash, digest in parsed.items():
            if content_hash in stale:
                state.save_digest(
                    conn, digest, first_seen=first_seen[content_hash], parser=parser_fp
                )
            else:
                state.record_first_seen(conn, content_hash, first_seen[content_hash])
        for content_hash in failed:
            state.record_first_seen(conn, content_hash, first_seen[content_hash])
        state.assign_ids(conn, assigned)
    report.errors.sort()
    return digests, sorted(parsed)


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
        if stored and stored not in taken and re.fullmatch(re.escape(base) + r"(-\d+)?", stored):
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


def _resolve_date(digest: Digest, seen: datetime, tz: ZoneInfo) -> Digest:
    if digest.date is not None:
        return digest
    local = seen.astimezone(tz)
    suffix = "-weekly" if digest.format == "weekly" else ""
    return replace(
        digest, date=local, date_source="state", id=f"{local:%Y-%m-%d}{suffix}"
    )


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
    """One paper being assembled: its first sighting, plus what later sightings add."""

    __slots__ = ("digest_ids", "first", "hrefs", "keys", "links", "order", "seen", "titles",
                 "updates")

    def __init__(self, item: Item, seen: datetime, order: tuple[int, int], title: str) -> None:
        self.first = item
        self.seen = seen
        self.order = order
        self.digest_ids = [item.digest_id]
        self.links: list[Link] = list(item.links)
        self.hrefs = {link.href for link in item.links}
        self.keys = [item.key]
        self.titles = [title] if title else []
        self.updates: dict[str, object] = {}

    def merge(self, item: Item, title: str) -> None:
        if item.digest_id not in self.digest_ids:
            self.digest_ids.append(item.digest_id)
        for link in item.links:
            if link.href not in self.hrefs:
                self.hrefs.add(link.href)
                self.links.append(link)
        if item.key not in self.keys:
            self.keys.append(item.key)
        if title and title not in self.titles:
            self.titles.append(title)
        # What the first sighting lacked, a later one may tell (a weekly pick has no category).
        for name in ("category", "category_name", "title_zh", "summary_zh", "abstract"):
            if getattr(self.first, name) is None and name not in self.updates:
                value = getattr(item, name)
                if value is not None:
                    self.updates[name] = value
        if not self.first.authors and item.authors and "authors" not in self.updates:
            self.updates["authors"] = item.authors
            self.updates["authors_truncated"] = item.authors_truncated
        if not self.first.affiliations and item.affiliations:
            self.updates.setdefault("affiliations", item.affiliations)
        if item.starred and not self.first.starred:
            self.updates["starred"] = True

    def paper(self, guid: str) -> Paper:
        from feeds.model import Paper

        changes: dict[str, object] = dict(self.updates)
        if guid != self.first.guid:
            changes["guid"] = guid
        if len(self.links) != len(self.first.links):
            changes["links"] = tuple(self.links)
            primary = _primary_url(self.links)
            if primary and primary != self.first.url:
                changes["url"] = primary
        item = replace(self.first, **changes) if changes else self.first  # type: ignore[arg-type]
        return Paper(item=item, first_seen=self.seen, digest_ids=tuple(self.digest_ids))


def _primary_url(links: list[Link]) -> str | None:
    for kind in _PRIMARY_KINDS:
        for link in links:
            if link.kind == kind:
                return link.href
    return None


def assemble(
    digests: list[Digest], keys: dict[str, str], titles: dict[str, str]
) -> tuple[BuildContext, Identities]:
    """The build context: digests newest first, and every paper once, with its published guid.

    `keys` and `titles` map what was published before to its guid: a paper keeps the guid it
    was first published under even if a later parse would give it another one. Returns the
    identities to record as published, too.
    """
    from feeds.model import BuildContext
    from feeds.parse import normalize_title

    chrono = sorted(digests, key=lambda d: (d.date, d.id))
    count = len(chrono)
    by_key: dict[str, _Sighting] = {}
    by_title: dict[str, _Sighting] = {}
    sightings: list[_Sighting] = []
    for index, digest in enumerate(chrono):
        assert digest.date is not None  # resolved by the build
        for position, item in enumerate(digest.items):
            title = normalize_title(item.title or item.title_zh or "")
            found = by_key.get(item.key) or (by_title.get(title) if title else None)
            if found is None:
                found = _Sighting(item, digest.date, (count - 1 - index, position), title)
                sightings.append(found)
            else:
                found.merge(item, title)
            by_key.setdefault(item.key, found)
            if title:
                by_title.setdefault(title, found)

    used: set[str] = set()
    papers = []
    records: Identities = ([], [], [])
    for sighting in sightings:
        guid = _published_guid(sighting, keys, titles)
        if guid in used:
            # Two papers the state once knew as one; the newcomer gets its own guid.
            guid = sighting.first.guid if sighting.first.guid not in used else (
                f"tag:digest-feeds,2020:{sighting.first.key}#{sighting.order[0]}"
            )
        used.add(guid)
        paper = sighting.paper(guid)
        papers.append(paper)
        records[0].append((guid, sighting.seen, sighting.first.digest_id))
        records[1].extend((key, guid) for key in sighting.keys)
        records[2].extend((title, guid) for title in sighting.titles)

    ranked = sorted(
        zip(sightings, papers, strict=True),
        key=lambda sp: (-sp[0].seen.timestamp(), sp[0].order),
    )
    ctx = BuildContext(
        digests=tuple(reversed(chrono)), papers=tuple(paper for _, paper in ranked)
    )
    return ctx, records


def _published_guid(sighting: _Sighting, keys: dict[str, str], titles: dict[str, str]) -> str:
    for key in sighting.keys:
        if key in keys:
            return keys[key]
    for title in sighting.titles:
        if title in titles:
            return titles[title]
    return sighting.first.guid
