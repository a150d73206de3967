"""Papers across digests: every sighting of the same paper becomes one `Paper`, under the guid
it was first published with.

The same paper (same key, or same normalized title) seen twice, in one digest or across
digests, is one entry in every feed: its first sighting's date, every sighting's links merged,
and what the first sighting lacked filled in from later ones. A guid, once published, never
changes: the state maps every key and title ever published to its guid, and `assemble` looks
there first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime

from feeds.links import primary_url
from feeds.model import BuildContext, Digest, Item, Link, Paper
from feeds.textutil import normalize_title

# Digest ids -> those digests in full, by id: how a stage that makes light papers whole
# (`complete`) asks the build for the digests it needs.
Load = Callable[[list[str]], dict[str, Digest]]

# What a build records as published: (guid, first seen, digest id), (key, guid), (title, guid).
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

    def paper(self) -> Paper:
        """The assembled paper: the first sighting, with what later ones add."""
        first = self.first
        if self.later is None:
            guid = self.guid
            item = first if guid == first.guid else replace(first, guid=guid)
            return Paper(
                item=item, first_seen=self.seen, digest_ids=(first.digest_id,),
                sightings=((first.digest_id, self.position),),
            )
        sightings = (
            (first.digest_id, self.position),
            *((item.digest_id, position) for item, _, position in self.later),
        )
        later = [item for item, _, _ in self.later]
        return _merge(first, later, self.guid, self.seen, sightings)


def _merge(
    first: Item,
    later: list[Item],
    guid: str,
    seen: datetime,
    sightings: tuple[tuple[str, int], ...],
) -> Paper:
    """One paper of several sightings: the first, with what later ones add."""
    digest_ids = [first.digest_id]
    links: list[Link] = list(first.links)
    hrefs = {link.href for link in links}
    changes: dict[str, object] = {}
    for item in later:
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
        primary = primary_url(links)
        if primary and primary != first.url:
            changes["url"] = primary
    item = replace(first, **changes) if changes else first  # type: ignore[arg-type]
    return Paper(item=item, first_seen=seen, digest_ids=tuple(digest_ids), sightings=sightings)


def complete(paper: Paper, full: Mapping[str, Digest]) -> Paper:
    """`paper`, assembled from digests without their texts, made of the full digests `full`
    (by id) instead: equal to the paper a context of full digests has. `full` must hold every
    digest that sights it."""
    if not paper.sightings:
        raise ValueError(f"{paper.key}: not assembled by `assemble`, no sightings to load")
    return whole(paper.sightings, paper.guid, paper.first_seen, full)


def whole(
    sightings: tuple[tuple[str, int], ...], guid: str, seen: datetime, full: Mapping[str, Digest]
) -> Paper:
    """The paper of these sightings ((digest id, position), first first), published as `guid`
    and first seen at `seen`, made of the full digests `full` (by id)."""
    (first_id, first_at), *rest = sightings
    first = full[first_id].items[first_at]
    later = [full[digest_id].items[position] for digest_id, position in rest]
    return _merge(first, later, guid, seen, sightings)


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
    # By instant as a number: aware datetimes of unlike zones compare by working out both
    # offsets, and ten years of digests in the store's order took 0.04 s to sort that way.
    chrono = sorted(digests, key=lambda d: (d.date.timestamp() if d.date else 0.0, d.id))
    count = len(chrono)
    by_key: dict[str, _Sighting] = {}
    by_title: dict[str, _Sighting] = {}
    sightings: list[_Sighting] = []
    for index, digest in enumerate(chrono):
        assert digest.date is not None  # resolved by the build
        # Newest first; ties by digest order (newest first), then position in the digest.
        newest, rank = -digest.date.timestamp(), count - 1 - index
        for position, item in enumerate(digest.items):
            title = title_key(item)
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

    wanted = [_published_guid(sighting, keys, titles) for sighting in sightings]
    # Two papers the state once knew as one both map to one published guid: it stays with the
    # paper whose own guid it is, and the other gets a guid of its own.
    owned = {guid for sighting, guid in zip(sightings, wanted, strict=True)
             if guid == sighting.first.guid}
    used: set[str] = set()
    records: Identities = ([], [], [])
    for sighting, guid in zip(sightings, wanted, strict=True):
        first = sighting.first
        if guid in used or (guid in owned and guid != first.guid):
            # Its own guid if free, else one made of what never moves (its key and the digest
            # that first showed it), so that it is the same at every build.
            guid = first.guid if first.guid not in used and first.guid not in owned else (
                f"tag:digest-feeds,2020:{first.key}#{first.digest_id}"
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
        digests=newest_first, papers=tuple(sighting.paper() for sighting in sightings)
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
            papers[n] = sighting.paper()
    hydrated = BuildContext(
        digests=tuple(full.get(d.id, d) for d in newest_first), papers=tuple(papers)
    )
    return hydrated, records


def title_key(item: Item) -> str:
    """What recognises a paper by its title in another sighting (empty: no title)."""
    return normalize_title(item.title or item.title_zh or "")


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
