"""The sealed history: a daily build reads and assembles the recent digests only.

Every stage that shows more than one month reads every paper: the feed list counts the
categories' names, a rare category's feed reaches back years for its newest papers, the
archive and the search index plan from every paper's entry, the newsletter archive lists every
issue. With ten years of digests that was about a second of each daily build, growing every
year, for pages whose earlier part does not change.

So after a build over every digest, the digests dated before the first day of the month before
the newest one are sealed: the state keeps what each of those stages takes from them (the
counts of the feed list, each feed's newest earlier papers by their sightings, each feed's
last earlier month, the search periods' sizes, the newsletter archive's rows, a hash of the
sealed digests, and in `seal_terms` every earlier paper's guids, keys and titles). The next
build with the same fingerprint (parser, rendering, the assembling code, the search indexer)
whose sealed digests are all unchanged reads and assembles only the digests from the cut on,
and the stages take the rest from `BuildContext.sealed`. Whatever reaches back is met before a
file is written (`Unsealed`) and the build is done over every digest, which seals again: a
recent digest sighting an earlier paper (a weekly list), a feed's first recent month or its
words changing, an earlier archive document or search index gone, a damaged seal. The seal is
a cache, never a source: equal output either way is what tests/test_seal.py holds.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any

from feeds import state
from feeds.archive import FORMATS
from feeds.archive_build import Shelf
from feeds.assemble import Identities, whole
from feeds.catalog import feed_list, select
from feeds.config import Settings
from feeds.identity import local_midnight
from feeds.inputs import module_fingerprint
from feeds.model import BuildContext, Digest, Item, Paper, Sealed
from feeds.newsletter import archive_rows
from feeds.search import category_labels, periods
from feeds.syndicate import aware

# The state's meta key; the version of what it holds.
KEY = "seal"
VERSION = 2
# Every identity of the earlier papers, each a term: "g" and a guid, "k" and a key, "t" and a
# normalized title, with a unit separator between.
_SCHEMA = "CREATE TABLE IF NOT EXISTS seal_terms (term TEXT PRIMARY KEY) WITHOUT ROWID"
# The meta key of a hash of what `seal_terms` holds.
TERMS = "seal_terms"
# The cuts tried, in months before the newest digest's month, until one has earlier papers
# and no recent digest sights one of them: the month before, then earlier ones, and last
# the newest digest's own month (a paper of long ago sighted again last month).
CUTS = (1, 2, 3, 0)
# A seal is used while its cut is at most this many days before the newest digest.
MAX_RECENT_DAYS = 120

# Digest ids -> those digests in full, by id.
LoadById = Callable[[list[str]], dict[str, Digest]]


def fingerprint(render_fingerprint: str, parser_fingerprint: str, indexer: str) -> str:
    """What a seal is only valid with: the parser's and the rendering's fingerprints, the code
    that assembles papers and makes and reads seals, and the search indexer's version (the
    earlier months' indexes are kept as that version made them)."""
    code = module_fingerprint((
        "feeds.assemble", "feeds.context", "feeds.seal", "feeds.archive_build",
        "feeds.search_build",
    ))
    parts = [VERSION, render_fingerprint, parser_fingerprint, code, indexer]
    return hashlib.sha256(repr(parts).encode("utf-8")).hexdigest()


def stored(
    conn: sqlite3.Connection, fingerprint: str, headers: dict[str, Digest]
) -> dict[str, Any] | None:
    """The state's seal if a build of the recent digests may use it: made with the same
    fingerprint, over the same earlier digests, and with recent digests to build."""
    text = state.get_meta(conn, KEY)
    # Written with a checksum of itself: a seal damaged or edited by hand is no seal, and the
    # build is over every digest (which writes a new one).
    checksum, _, body = (text or "").partition("\n")
    if not body or hashlib.sha256(body.encode("utf-8")).hexdigest() != checksum:
        return None
    data = json.loads(body)
    if not isinstance(data, dict) or data.get("fingerprint") != fingerprint:
        return None
    cut = data["cut_ts"]
    earlier = [d for d in headers.values() if _ts(d) < cut]
    if len(earlier) == len(headers) or _hash(earlier) != data["hash"]:
        return None
    # The recent months grow while builds keep the seal: past a few, a build over every
    # digest seals again, so that a daily build stays a few months' work.
    newest = max(_ts(d) for d in headers.values())
    if newest - cut > MAX_RECENT_DAYS * 86400:
        return None
    return data


def recent(headers: dict[str, Digest], data: dict[str, Any]) -> dict[str, Digest]:
    """The digests the seal `data` leaves to read: those dated from its cut on."""
    cut = data["cut_ts"]
    return {h: d for h, d in headers.items() if _ts(d) >= cut}


def earlier_part(
    data: dict[str, Any], ctx: BuildContext, settings: Settings, load: LoadById
) -> Sealed:
    """The earlier part of a build whose context `ctx` holds the recent digests only: the
    earlier papers each feed may show, in full (`load`), after the recent ones."""
    base = Sealed(
        month=data["month"],
        digests=data["digests"],
        papers=data["papers"],
        pairs=tuple(((code, name), n) for code, name, n in data["pairs"]),
        tails={},
        times={},
        volumes={slug: (v[0], v[1], v[2], v[3]) for slug, v in data["volumes"].items()},
        documents=data["documents"],
        periods=tuple((name, n) for name, n in data["periods"]),
        labels=frozenset(data["labels"]),
        rows=tuple(data["rows"]),
    )
    probe = replace(ctx, sealed=base)
    limit = settings.site.items_per_feed
    wanted: dict[str, list[Any]] = {}
    for feed in feed_list(probe, settings):
        # The recent papers come first; only what they leave of the feed is read.
        room = limit - len(select(probe, feed, limit))
        wanted[feed.slug] = data["tails"].get(feed.slug, [])[: max(0, room)]
    ids = sorted({d for entries in wanted.values() for _, _, seen in entries for d, _ in seen})
    full = load(ids)
    tz = settings.site.tz
    made: dict[str, Paper] = {}
    times: dict[str, datetime] = {}
    tails: dict[str, tuple[Paper, ...]] = {}
    for slug, entries in wanted.items():
        papers = []
        for guid, step, seen in entries:
            paper = made.get(guid)
            if paper is None:
                sightings = tuple((d, n) for d, n in seen)
                first = full[sightings[0][0]].date
                assert first is not None  # resolved by the build
                paper = made[guid] = whole(sightings, guid, first, full)
                times[paper.key] = aware(paper.first_seen, tz) + timedelta(seconds=step)
            papers.append(paper)
        tails[slug] = tuple(papers)
    return replace(base, tails=tails, times=times)


def reaches_back(
    conn: sqlite3.Connection,
    items: list[Item],
    named: list[str],
    keys: dict[str, str],
    titles: dict[str, str],
) -> bool:
    """Whether the recent sightings (`items`, with their titles as `assemble` compares them,
    `named`) meet an earlier paper: one of their keys or titles is one of its, or their own
    guid or the one their key or title was published under is its. A build over every digest
    would have merged them, or moved a guid between them (a guid `assemble` makes up for a
    clash names a recent digest, so it is never an earlier paper's). The earlier papers'
    identities are the seal's (`seal_terms`), not the published ones: a paper's first
    sighting can move before the cut (a date corrected)."""
    guids = {item.guid for item in items}
    guids.update(keys[item.key] for item in items if item.key in keys)
    guids.update(titles[title] for title in named if title in titles)
    terms = sorted(
        {f"g\x1f{g}" for g in guids}
        | {f"k\x1f{item.key}" for item in items}
        | {f"t\x1f{title}" for title in named if title}
    )
    conn.execute(_SCHEMA)
    for start in range(0, len(terms), 500):
        chunk = terms[start : start + 500]
        marks = ",".join("?" * len(chunk))
        if conn.execute(f"SELECT 1 FROM seal_terms WHERE term IN ({marks}) LIMIT 1", chunk
                        ).fetchone():
            return True
    return False


def make(
    ctx: BuildContext,
    settings: Settings,
    shelf: Shelf,
    fingerprint: str,
    identities: Identities,
) -> tuple[dict[str, Any], list[str]] | None:
    """The seal of a build over every digest (`ctx`, and the archive's plan of it, `shelf`:
    its volumes and every paper's entry time), or None when there is nothing to seal or no cut
    a recent digest does not reach across."""
    times = shelf.times
    if not ctx.digests:
        return None
    tz = settings.site.tz
    newest = ctx.digests[0].date
    assert newest is not None  # resolved by the build
    local = newest.astimezone(tz)
    dates = {d.id: _ts(d) for d in ctx.digests}
    for back in CUTS:
        year, month = divmod(local.year * 12 + local.month - 1 - back, 12)
        month += 1
        cut = local_midnight(date(year, month, 1), tz)
        cut_ts = cut.timestamp()
        earlier = [p for p in ctx.papers if p.first_seen.timestamp() < cut_ts]
        if not earlier or any(dates[d] >= cut_ts for p in earlier for d in p.digest_ids):
            continue
        # The search indexes a paper in the month of its entry time, which a digest posted
        # in the first seconds of the cut's day puts before it: every build would reach back.
        recent = ctx.papers[: len(ctx.papers) - len(earlier)]
        if not settings.site.search or all(times[p.key].timestamp() >= cut_ts for p in recent):
            break
    else:
        return None
    cut_month = f"{year:04d}-{month:02d}"
    digests = [d for d in ctx.digests if _ts(d) < cut_ts]
    old = BuildContext(tuple(digests), tuple(earlier))
    limit = settings.site.items_per_feed
    tails = {}
    for feed in feed_list(ctx, settings):
        tails[feed.slug] = [
            [p.guid, _step(p, times, settings), [list(s) for s in p.sightings]]
            for p in select(old, feed, limit)
        ]
    ends: dict[str, list[Any]] = {}
    documents = 0
    for volume in shelf.volumes:
        if volume.month < cut_month:
            documents += len(FORMATS)
            feed = volume.feed
            ends[feed.slug] = [volume.month, volume.next, feed.title, feed.description]
    # The search box's manifest is all they are for.
    groups = periods(old, settings, times) if settings.site.search else {}
    pairs = Counter((p.item.category, p.item.category_name) for p in earlier)
    guids = {p.guid for p in earlier}
    terms = [f"g\x1f{guid}" for guid in sorted(guids)]
    terms += sorted({f"k\x1f{key}" for key, guid in identities[1] if guid in guids})
    terms += sorted({f"t\x1f{title}" for title, guid in identities[2] if guid in guids})
    return {
        "fingerprint": fingerprint,
        "cut": cut.isoformat(),
        "cut_ts": cut_ts,
        "month": cut_month,
        "hash": _hash(digests),
        "digests": len(digests),
        "papers": len(earlier),
        "pairs": [[code, name, n] for (code, name), n in sorted(pairs.items(), key=_pair)],
        "tails": tails,
        "volumes": ends,
        "documents": documents,
        "periods": [[name, len(papers)] for name, papers in groups.items()],
        "labels": sorted(category_labels(groups)),
        "rows": archive_rows(digests),
    }, terms


def save(conn: sqlite3.Connection, made: tuple[dict[str, Any], list[str]] | None) -> None:
    """Keep the seal `make` made, or none."""
    conn.execute(_SCHEMA)
    if made is None:
        conn.execute("DELETE FROM seal_terms")
        conn.execute("DELETE FROM meta WHERE key IN (?, ?)", (KEY, TERMS))
        return
    data, terms = made
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    state.set_meta(conn, KEY, hashlib.sha256(body.encode("utf-8")).hexdigest() + "\n" + body)
    # Written again only when they changed: ten years hold 100,000 (0.15 s to write), and a
    # build over every digest whose cut did not move seals the same papers.
    mark = hashlib.sha256("\n".join(terms).encode("utf-8")).hexdigest()
    if state.get_meta(conn, TERMS) != mark:
        conn.execute("DELETE FROM seal_terms")
        conn.executemany("INSERT OR IGNORE INTO seal_terms (term) VALUES (?)",
                         ((t,) for t in terms))
        state.set_meta(conn, TERMS, mark)


def _step(paper: Paper, times: dict[str, datetime], settings: Settings) -> int:
    """A paper's entry time, as seconds from its first-seen moment (`entry_times`)."""
    return round((times[paper.key] - aware(paper.first_seen, settings.site.tz)).total_seconds())


def _hash(digests: Iterable[Digest]) -> str:
    facts = sorted((d.content_hash, d.id, _ts(d)) for d in digests)
    return hashlib.sha256(repr(facts).encode("utf-8")).hexdigest()


def _ts(digest: Digest) -> float:
    assert digest.date is not None  # resolved by the build
    return digest.date.timestamp()


def _pair(entry: tuple[tuple[str | None, str | None], int]) -> tuple[str, str]:
    (code, name), _ = entry
    return code or "", name or ""
