"""`feeds build`: digests folder -> state -> generators -> output/, incrementally and safely.

The order of a build is what makes it safe to kill and cheap to repeat:

1. Take the lock; fingerprint the world (`feeds.fingerprints`: input names, sizes and mtimes;
   settings; templates; the code and libraries that parse and render). Unchanged since the
   last complete build: done, nothing imported.
2. Read the inputs (`feeds.inputs`): parse only content not seen before; ids and dates are
   settled and committed at once.
3. Merge sightings of the same paper into one `Paper` under its published guid (`assemble`),
   over every digest or, with a seal, over the recent ones (`feeds.context`, `feeds.seal`),
   and render: newsletters of new or changed digests, then the rest from the whole context.
4. Forget what the files about to be replaced were made of, write changed files atomically,
   remove files the build owned and no longer produces, and only then commit what was
   published. A build killed before that point redoes its work next time, whatever the input
   is by then; the output it leaves is the previous one with some files already replaced by
   complete new versions.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Callable
from contextlib import closing, suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from feeds import fingerprints, inputs, lock, output, state
from feeds.collector import collector_paused
from feeds.config import Settings
from feeds.errors import Unsealed, display_path

# The real build's stages are imported where it starts: a no-op build, the common cron case,
# decides from stat calls alone.
if TYPE_CHECKING:
    from feeds.additions import Additions
    from feeds.model import Digest
    from feeds.workers import Workers

Log = Callable[[str], None]

# Digests whose full text is loaded at once while newsletters are rendered.
RENDER_CHUNK = 64
# Newsletter files written (and synced to disk) together: a large batch is synced with one
# `sync`, which waits for every dirty page of the machine, so fewer, larger batches.
WRITE_BATCH = 600
# ... or files of this many bytes in all, whichever comes first (archive documents are large).
WRITE_BYTES = 32_000_000


@dataclass
class BuildReport:
    """What a build did, for the command line and for `feeds run`."""

    output: Path
    digests: int = 0
    papers: int = 0
    # Of those digests, how many the build took from the seal rather than reading them
    # (`feeds.seal`).
    sealed_digests: int = 0
    noop: bool = False
    parsed: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    # Each "path:line: message": a digest that could not be published as it is.
    errors: list[str] = field(default_factory=list)
    # What the parser did not understand in the files this build parsed ("path:line:
    # message"): said once, whether or not -v asks, since it may be an entry skipped.
    input_warnings: list[str] = field(default_factory=list)
    # Other warnings (a WebSub hub that failed, retried at the next run): with -v.
    warnings: list[str] = field(default_factory=list)
    # Seconds per phase (parse, newsletter, archive, feeds, site, write), for -v and the
    # benchmark.
    timings: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return bool(self.errors)

    def summary_lines(self, verbose: bool) -> list[str]:
        """Errors and what the parser did not understand always (cron mails them); with
        `verbose`, the other warnings, what was written and a summary."""
        lines = [f"error: {error}" for error in self.errors]
        lines += [f"warning: {warning}" for warning in self.input_warnings]
        if not verbose:
            return lines
        lines += [f"warning: {warning}" for warning in self.warnings]
        if self.noop:
            lines.append(
                f"nothing changed: {self.digests} digests already built into {self.output} "
                f"({self.seconds:.2f} s)"
            )
            return lines
        lines += [f"parsed {display_path(source)}" for source in self.parsed]
        lines += [f"wrote {display_path(self.output / rel)}" for rel in self.written]
        lines += [f"removed {display_path(self.output / rel)}" for rel in self.removed]
        phases = ", ".join(f"{name} {secs:.2f} s" for name, secs in self.timings.items())
        sealed = f" ({self.sealed_digests} of them sealed)" if self.sealed_digests else ""
        lines.append(
            f"{self.digests} digests{sealed}, {self.papers} papers: wrote {len(self.written)} "
            f"files, removed {len(self.removed)} in {self.seconds:.2f} s ({phases})"
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
    output.check_folder(paths.output)
    report = BuildReport(output=paths.output)
    with lock.held(
        lock.build_lock(paths.state),
        busy="another feeds build is running",
        hint="try again later, or pass --wait SECONDS to wait for it",
        wait=wait,
    ):
        listing = inputs.scan(paths.input)
        stamp = fingerprints.stamp(settings, listing)
        last = state.read_stamp(paths.state)
        made = state.created(paths.state)
        same_state = made is not None and last.get("state") == made
        if not force and same_state and last.get("stamp") == stamp:
            report.noop = True
            report.digests = int(last.get("digests", 0))
            report.papers = int(last.get("papers", 0))
            report.errors = list(last.get("errors", []))
        else:
            # Gone before anything is written: a killed build can never look complete.
            state.clear_stamp(paths.state)
            conn = state.connect(paths.state)
            created = state.get_meta(conn, state.CREATED)
            # Decided before a file is written, from the newsletters' times: a build that
            # rewrites every newsletter (after a template change) would otherwise make any
            # database look like their publisher. An output that names no database and is not
            # this one's is then said to be nobody's, so that the send refuses.
            claim = None
            if created is not None and output.publisher(paths.output) is None:
                claim = created if output.belongs_to(paths.output, created) else output.NOBODY
            try:
                from feeds.additions import Additions
                from feeds.workers import Workers

                render_fp = fingerprints.render_fingerprint(settings)
                # Closed however the build ends: planning may start Pagefind's processes.
                with Workers() as workers, closing(
                    Additions(conn, settings, render_fp, force)
                ) as additions:
                    unread = _publish(conn, settings, now, log, report, listing, force,
                                      workers, additions)
            finally:
                # What the build froze (see `_publish`) is the collector's again for whatever
                # the process does next, such as the send of `feeds run`.
                gc.unfreeze()
                conn.close()
            if claim is not None:
                # A build names the state database it publishes from in an output that is its
                # own; a send checks it before mailing anything (`feeds.send`).
                report.written = sorted(report.written + output.claim(paths.output, claim))
            state.write_stamp(
                paths.state,
                {
                    # A file that could not be read stays out of it: the next build tries
                    # it again, whether or not anything about it that a stat sees changed.
                    "stamp": fingerprints.stamp(settings, listing.without(unread)),
                    "state": created,
                    "digests": report.digests,
                    "papers": report.papers,
                    "errors": report.errors,
                },
            )
        if settings.site.websub_hub:
            # After the files are in place; a no-op build retries what a failed hub left.
            from feeds.websub import announce

            report.warnings += announce(settings, report.written, log).failures
    report.seconds = time.perf_counter() - started
    return report


# -- the real build ----------------------------------------------------------------------------


def _publish(
    conn: sqlite3.Connection,
    settings: Settings,
    now: datetime,
    log: Log,
    report: BuildReport,
    listing: inputs.Scan,
    force: bool,
    workers: Workers,
    additions: Additions,
) -> list[str]:
    """Read, assemble, render, write and commit; the names of the input files that could not
    be read."""
    from feeds import context, seal
    from feeds.search_build import pagefind_version

    paths = settings.paths
    render_fp = additions.render_fingerprint
    for leftover in output.remove_temporaries(paths.output):
        log(f"removed a temporary file left by a killed build: {leftover}")

    tick = time.perf_counter()
    with collector_paused():
        found = inputs.read(conn, settings, listing.files, now=now, workers=workers)
    report.parsed, report.input_warnings = found.parsed, found.warnings
    report.errors = sorted(found.errors + listing.errors())
    report.timings["parse"] = time.perf_counter() - tick

    tick = time.perf_counter()
    indexer = pagefind_version() if settings.site.search else ""
    seal_fp = seal.fingerprint(render_fp, inputs.parser_fingerprint(settings), indexer)
    record = None if force else seal.stored(conn, seal_fp, found.headers)
    try:
        ctx, identities, keys, titles = context.assembled(conn, settings, found, additions, record)
    except Unsealed as why:
        log(f"building over every digest: {why}")
        ctx, identities, keys, titles = context.assembled(conn, settings, found, additions, None)
    report.digests = len(found.headers)
    report.papers = len(ctx.papers) + (ctx.sealed.papers if ctx.sealed else 0)
    report.sealed_digests = ctx.sealed.digests if ctx.sealed else 0
    report.timings["assemble"] = time.perf_counter() - tick
    # Every digest, the sealed ones as their headers after the context's (in no order that
    # matters: each is looked at alone).
    every = list(ctx.digests)
    if ctx.sealed is not None:
        recent = {d.id for d in every}
        every += [d for d in found.headers.values() if d.id not in recent]

    owned_before = state.outputs(conn)
    rendered_before = state.renders(conn)
    owned: dict[str, str] = {}
    rendered: dict[str, str] = {}
    files_by_owner: dict[str, list[str]] = {}
    for rel, owner in owned_before.items():
        files_by_owner.setdefault(owner, []).append(rel)
    existing = output.existing(paths.output, owned_before)
    stale: list[Digest] = []
    for digest in every:
        fp = _fingerprint([render_fp, digest.content_hash, digest.id, _iso(digest.date)])
        rendered[digest.id] = fp
        previous = files_by_owner.get(digest.id, [])
        if not force and rendered_before.get(digest.id) == fp and set(previous) <= existing:
            owned.update(dict.fromkeys(previous, digest.id))
        else:
            stale.append(digest)

    # Before the first file is replaced, what the files about to be replaced were made of is
    # forgotten: a build stopped after writing some leaves them new while the record still
    # described the old ones, and the next build, over the old input again (an edit undone, a
    # digest withdrawn), would have kept them as they were.
    forgotten = [d.id for d in stale if d.id in rendered_before]
    with state.transaction(conn):
        state.forget_renders(conn, forgotten)
        additions.forget(conn)
    for digest_id in forgotten:
        del rendered_before[digest_id]

    # Newsletters first: the archive and the index link to them, so link targets exist first.
    tick = time.perf_counter()
    write_seconds = 0.0
    batch: dict[str, bytes] = {}
    for start in range(0, len(stale), RENDER_CHUNK):
        chunk = stale[start : start + RENDER_CHUNK]
        # The context keeps most digests without their texts; a newsletter needs them all.
        full = found.full(conn, [d.content_hash for d in chunk])
        tasks = [(full[d.content_hash], settings) for d in chunk]
        for digest, files in zip(chunk, workers.map(_render_issue, tasks, chunksize=2),
                                 strict=True):
            owned.update(dict.fromkeys(files, digest.id))
            batch.update(files)
        if len(batch) >= WRITE_BATCH or start + RENDER_CHUNK >= len(stale):
            w = time.perf_counter()
            report.written += output.write_files(paths.output, batch)
            write_seconds += time.perf_counter() - w
            batch = {}
    report.timings["newsletter"] = time.perf_counter() - tick - write_seconds

    from feeds import newsletter, site, syndicate

    tick = time.perf_counter()
    site_files = newsletter.render_archive(ctx, settings)
    report.timings["archive"] = time.perf_counter() - tick
    tick = time.perf_counter()
    site_files.update(syndicate.render_feeds(ctx, settings))
    report.timings["feeds"] = time.perf_counter() - tick
    # Written batch by batch: a first build's archive documents are most of a gigabyte.
    hashes = {digest.id: digest.content_hash for digest in every}

    def load(ids: list[str]) -> dict[str, Digest]:
        return {d.id: d for d in found.full(conn, [hashes[i] for i in ids]).values()}

    pending: dict[str, bytes] = {}
    size = 0
    for batch in additions.render(ctx, load, workers):
        pending.update(batch)
        size += sum(len(data) for data in batch.values())
        # Batches gathered up to a write batch: written one by one, a first build's archive
        # documents were fsynced a file at a time (many seconds); gathered, one `sync` each.
        if len(pending) >= WRITE_BATCH or size >= WRITE_BYTES:
            w = time.perf_counter()
            report.written += output.write_files(paths.output, pending)
            write_seconds += time.perf_counter() - w
            pending, size = {}, 0
    w = time.perf_counter()
    report.written += output.write_files(paths.output, pending)
    write_seconds += time.perf_counter() - w
    report.timings.update(additions.timings)
    tick = time.perf_counter()
    site_files.update(site.render_site(ctx, settings))
    report.timings["site"] = time.perf_counter() - tick

    tick = time.perf_counter()
    report.written += output.write_files(paths.output, site_files)
    owned.update(dict.fromkeys(site_files, ""))
    owned.update(dict.fromkeys(additions.paths, ""))
    gone = (
        set(owned_before) | _in_our_layout(paths.output) | additions.leftovers()
    ) - set(owned)
    report.removed = output.remove_files(paths.output, gone)
    report.timings["write"] = time.perf_counter() - tick + write_seconds
    report.written.sort()

    # Sealed again by a build over every digest; a build of the recent ones keeps the seal.
    made = None
    if ctx.sealed is None:
        made = seal.make(ctx, settings, additions.archive, seal_fp, identities)

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
        state.set_meta(conn, "published", json.dumps(sorted(found.headers)))
        additions.save(conn)
        if ctx.sealed is None:
            seal.save(conn, made)
    return found.unread


def _render_issue(task: tuple[Digest, Settings]) -> dict[str, bytes]:
    """One digest's newsletter files: runs in a worker process for a first build."""
    from feeds import newsletter

    digest, settings = task
    return newsletter.render_issue_files(digest, settings)


# The files of the output layout, by folder: whatever a build finds there and did not produce
# this time is stale (a killed build's newsletter for a digest since removed, say), whatever
# the record says. Other files (a robots.txt, a CNAME) are the operator's and stay. The
# archive documents are a folder per feed under `ARCHIVE`.
LAYOUT = {"feeds": (".rss", ".atom", ".json", ".html"), "newsletter": (".html", ".txt", ".eml")}
ARCHIVE = ("feeds/archive", (".atom", ".rss"))


def _in_our_layout(root: Path) -> set[str]:
    found: set[str] = set()
    folders = dict(LAYOUT)
    archive, suffixes = ARCHIVE
    with suppress(OSError):
        folders.update(
            {f"{archive}/{e.name}": suffixes for e in os.scandir(root / archive) if e.is_dir()}
        )
    for folder, wanted in folders.items():
        try:
            names = os.listdir(root / folder)
        except OSError:
            continue
        found.update(f"{folder}/{name}" for name in names if name.endswith(wanted))
    return found


def _fingerprint(parts: list[object]) -> str:
    return hashlib.sha256(repr(parts).encode("utf-8")).hexdigest()


def _iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment else ""
