"""The digest store: every parsed digest in the state database, one row per digest and one per
item, and the id and date each was published under.

A build that needs only titles and categories (for the papers no page shows) reads only the
short columns of the items; a page or a newsletter that shows a paper reads them all.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any, NamedTuple

from feeds.model import Digest, Item, Link, ParseWarning

_SHORT = "key, guid, section, rank, category, category_name, starred, title, title_zh, line"
_LONG = "authors, authors_truncated, affiliations, summary_zh, abstract, notes, url, links"
# From this many digests, their items without texts are read in one pass over the table.
SCAN_FROM = 1000


class DigestRow(NamedTuple):
    content_hash: str
    first_seen: datetime
    assigned_id: str | None
    parser: str | None


def digest_rows(conn: sqlite3.Connection) -> dict[str, DigestRow]:
    rows = conn.execute("SELECT content_hash, first_seen, assigned_id, parser FROM digests")
    return {
        h: DigestRow(h, datetime.fromisoformat(seen), assigned, parser)
        for h, seen, assigned, parser in rows
    }


def save_digest(
    conn: sqlite3.Connection, digest: Digest, *, first_seen: datetime, parser: str
) -> None:
    """Cache a parsed digest (replacing an older parse of the same bytes); `first_seen` is
    recorded only the first time."""
    header = digest.as_dict()
    del header["items"]
    header["content_hash"] = digest.content_hash
    conn.execute(
        "INSERT INTO digests (content_hash, first_seen, parser, header) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (content_hash) DO UPDATE SET parser = excluded.parser, "
        "header = excluded.header",
        (digest.content_hash, first_seen.isoformat(), parser, _dumps(header)),
    )
    conn.execute("DELETE FROM items WHERE content_hash = ?", (digest.content_hash,))
    conn.executemany(
        f"INSERT INTO items (content_hash, position, {_SHORT}, {_LONG}) "
        f"VALUES ({', '.join('?' * 20)})",
        [
            (
                digest.content_hash, position, i.key, i.guid, i.section, i.rank, i.category,
                i.category_name, i.starred, i.title, i.title_zh, i.line, _dumps(i.authors),
                i.authors_truncated, _dumps(i.affiliations), i.summary_zh, i.abstract, i.notes,
                i.url, _dumps([(link.kind, link.href) for link in i.links]),
            )
            for position, i in enumerate(digest.items)
        ],
    )


def load_headers(conn: sqlite3.Connection, hashes: Collection[str]) -> dict[str, Digest]:
    """The cached digests for these content hashes, without their items."""
    rows = conn.execute("SELECT content_hash, header FROM digests WHERE header IS NOT NULL")
    return {h: _header(text) for h, text in rows if h in hashes}


def load_digests(
    conn: sqlite3.Connection,
    headers: Mapping[str, Digest],
    *,
    texts: bool = True,
) -> dict[str, Digest]:
    """These digests (by content hash) with their items; each item carries its digest's id and
    date, so pass headers whose id and date are resolved.

    Without `texts`, items have no authors, affiliations, summaries, abstracts, notes or links:
    what tells papers apart and sorts them into feeds and the archive, read from the short
    columns only. Ten years of digests fit in memory this way.
    """
    items: dict[str, list[Item]] = {h: [] for h in headers}
    if texts or len(headers) <= SCAN_FROM:
        wanted = sorted(headers)
        columns = f"{_SHORT}, {_LONG}" if texts else _SHORT
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            rows = conn.execute(
                f"SELECT content_hash, {columns} FROM items WHERE content_hash IN "
                f"({','.join('?' * len(chunk))}) ORDER BY content_hash, position",
                chunk,
            )
            for row in rows:
                items[row[0]].append(_item(row, headers[row[0]], texts))
    else:
        # Over SCAN_FROM digests (a build over every digest of a long archive): one pass over
        # the table, in the order of its key (no sort), was a third faster than asking for 500
        # at a time; the rows of versions no longer published are skipped.
        for row in conn.execute(
            f"SELECT content_hash, {_SHORT} FROM items ORDER BY content_hash, position"
        ):
            found = items.get(row[0])
            if found is not None:
                found.append(_item(row, headers[row[0]], texts))
    return {h: _with_items(headers[h], tuple(found)) for h, found in items.items()}


def _item(row: tuple[Any, ...], digest: Digest, texts: bool) -> Item:
    if not texts:
        # The columns come in the model's field order, so the arguments can be positional:
        # ten years of items are built at every build, and keywords cost a third more.
        return Item(
            row[1], row[2], row[3], row[4], row[5], row[6], bool(row[7]), row[8], row[9], (),
            False, (), None, None, None, None, (), digest.date, row[10], digest.id,
        )
    authors, truncated, affiliations, summary_zh, abstract, notes, url, links = row[11:]
    return Item(
        key=row[1], guid=row[2], section=row[3], rank=row[4], category=row[5],
        category_name=row[6], starred=bool(row[7]), title=row[8], title_zh=row[9],
        authors=tuple(json.loads(authors)), authors_truncated=bool(truncated),
        affiliations=tuple(json.loads(affiliations)), summary_zh=summary_zh, abstract=abstract,
        notes=notes, url=url, links=tuple(Link(kind, href) for kind, href in json.loads(links)),
        published=digest.date, line=row[10], digest_id=digest.id,
    )


def _with_items(digest: Digest, items: tuple[Item, ...]) -> Digest:
    return replace(digest, items=items)


def _header(text: str) -> Digest:
    data: dict[str, Any] = json.loads(text)
    return Digest(
        id=data["id"],
        date=datetime.fromisoformat(data["date"]) if data["date"] else None,
        date_source=data["date_source"],
        source=data["source"],
        format=data["format"],
        title=data["title"],
        summary=data["summary"],
        items=(),
        warnings=tuple(ParseWarning(w["line"], w["message"]) for w in data["warnings"]),
        content_hash=data["content_hash"],
        credit=data["credit"],
        links=tuple(Link(link["kind"], link["href"]) for link in data["links"]),
    )


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def record_first_seen(conn: sqlite3.Connection, content_hash: str, first_seen: datetime) -> None:
    conn.execute(
        "INSERT OR IGNORE INTO digests (content_hash, first_seen) VALUES (?, ?)",
        (content_hash, first_seen.isoformat()),
    )


def assign(
    conn: sqlite3.Connection,
    published: Mapping[str, tuple[str, datetime]],
    replaces: Mapping[str, str] | None = None,
) -> None:
    """Record the id and date each digest (by content hash) is published under, and for an
    edit that changed the id (a corrected date), the id it replaces."""
    conn.executemany(
        "UPDATE digests SET assigned_id = ?, date = ? WHERE content_hash = ? "
        "AND (assigned_id IS NOT ? OR date IS NOT ?)",
        [
            (digest_id, date.isoformat(), h, digest_id, date.isoformat())
            for h, (digest_id, date) in published.items()
        ],
    )
    conn.executemany(
        "UPDATE digests SET replaces = ? WHERE content_hash = ?",
        [(old, h) for h, old in (replaces or {}).items()],
    )


class Published(NamedTuple):
    content_hash: str
    id: str
    date: datetime
    # The id an earlier version of the same file was published under, when an edit changed it.
    replaces: str | None


def published(conn: sqlite3.Connection) -> list[Published]:
    """Every digest the last complete build published."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'published'").fetchone()
    hashes = set(json.loads(row[0] if row else "[]"))
    rows = conn.execute(
        "SELECT content_hash, assigned_id, date, replaces FROM digests"
        " WHERE assigned_id IS NOT NULL AND date IS NOT NULL"
    )
    return [
        Published(h, i, datetime.fromisoformat(d), r) for h, i, d, r in rows if h in hashes
    ]


def load_published(conn: sqlite3.Connection, ids: Collection[str]) -> dict[str, Digest]:
    """Digests the last complete build published, by id, in full, named and dated as published."""
    wanted = {p.content_hash: (p.id, p.date) for p in published(conn) if p.id in ids}
    headers = {}
    for h, header in load_headers(conn, wanted).items():
        digest_id, date = wanted[h]
        source = header.date_source if header.date is not None else "state"
        headers[h] = replace(header, id=digest_id, date=date, date_source=source)
    return {d.id: d for d in load_digests(conn, headers).values()}
