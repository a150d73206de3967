"""The search index's bytes made reproducible (`canonical`).

Pagefind 1.5 writes the values of a filter in hash-map order, which changes from run to run,
and names each filter file, the language's metadata file that lists them and the entry file
that names that after their content's hash. So the same papers would give other file names
and bytes at every indexing. `canonical` puts each filter's values in order and names the
files after the hashes of what they then hold, leaving every other file as Pagefind wrote it.
"""

from __future__ import annotations

import gzip
import hashlib
import re

from feeds.errors import OutputError

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
