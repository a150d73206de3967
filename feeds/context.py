"""The build's context: the published digests, without their texts, assembled into papers
(`feeds.assemble`), with the digests of the papers a page shows loaded in full; over every
digest, or over the recent ones with the seal (`feeds.seal`) for the rest.
"""

from __future__ import annotations

import gc
import sqlite3
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from feeds import inputs, state
from feeds.collector import collector_paused
from feeds.config import Settings
from feeds.errors import Unsealed

if TYPE_CHECKING:
    from feeds.additions import Additions
    from feeds.assemble import Identities
    from feeds.model import BuildContext, Digest, Sealed


def assembled(
    conn: sqlite3.Connection,
    settings: Settings,
    found: inputs.Inputs,
    additions: Additions,
    record: dict[str, Any] | None,
) -> tuple[BuildContext, Identities, dict[str, str], dict[str, str]]:
    """The build context, the identities to record, and the published guids of the keys and
    titles it holds (`state.guid_maps`): over every digest, or with the state's seal as
    `seal.stored` read it (`record`) over the recent ones. Raises Unsealed when the recent ones
    reach back.

    The context is assembled from digests without their texts, which tell which papers the
    feeds and the index show (selection depends only on dates, categories, stars and
    identities); only the digests those papers come from are then loaded in full, so the
    context equals one made of full digests everywhere it is read.
    """
    from feeds import seal
    from feeds.assemble import assemble, title_key
    from feeds.catalog import feed_list, select

    headers = found.headers if record is None else seal.recent(found.headers, record)
    # Ten years of digests, and then their papers, live until the build ends and form no
    # cycles. While they are made, the collector waits (it walked them three or four times
    # for nothing: 0.1 to 0.15 s of a one-digest build, measured); once made, they are frozen,
    # so no full collection the rest of the build triggers walks them again.
    with collector_paused():
        digests = found.light(conn, list(headers))
    gc.freeze()
    if record is None:
        keys, titles = state.guid_maps(conn)
    else:
        items = [item for digest in digests for item in digest.items]
        named = [title_key(i) for i in items]
        keys, titles = state.guid_maps(conn, ([i.key for i in items], named))
        # Before anything is planned or loaded: a build that reaches back starts again.
        if seal.reaches_back(conn, items, named, keys, titles):
            raise Unsealed("a recent digest sights an earlier paper")
    by_id = {d.id: h for h, d in found.headers.items()}
    earlier: list[Sealed] = []

    def load(ids: list[str]) -> dict[str, Digest]:
        return {d.id: d for d in found.full(conn, [by_id[i] for i in ids]).values()}

    def hydrate(summary: BuildContext) -> dict[str, Digest]:
        if record is not None:
            earlier.append(seal.earlier_part(record, summary, settings, load))
            summary = replace(summary, sealed=earlier[0])
        # The archive documents and the search index plan here, and load their own digests.
        additions.plan(summary)
        needed: set[str] = set()
        limit = settings.site.items_per_feed
        for feed in feed_list(summary, settings):
            for paper in select(summary, feed, limit):
                needed.update(paper.digest_ids)
        if summary.digests:
            needed.add(summary.digests[0].id)
        hashes = [d.content_hash for d in summary.digests if d.id in needed]
        return {d.id: d for d in found.full(conn, hashes).values()}

    try:
        with collector_paused():
            ctx, identities = assemble(digests, keys, titles, hydrate=hydrate)
    except Unsealed:
        # Pagefind's processes, if the search index planned to index.
        additions.close()
        raise
    finally:
        gc.freeze()
    return (replace(ctx, sealed=earlier[0]) if earlier else ctx), identities, keys, titles
