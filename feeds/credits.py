"""Who wrote a paper, written so that readers built on feedparser show every author.

feedparser, and every reader built on it (the `reader` library, many others), keeps one
`entry.author`: the name of the *last* author element of an entry. With one element per author,
such a reader credits a paper to its last author only. arXiv's feeds answer the same complaint
with one `dc:creator` holding every author; here that credit comes last, after one element per
author, so `entry.author` names everybody and `entry.authors` still lists each author:

- RSS: a `<dc:creator>` per author, then one with all of them (only when there are several);
- Atom: an `<author>` per author (feedgen writes those), then one `<dc:creator>` with all of
  them (only when there are several). Foreign elements are allowed in an Atom entry, so the
  feed stays valid.

A feedgen extension, because feedgen's own Dublin Core extension writes the same values into
both formats and cannot put the credit after Atom's `<author>` elements only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from feedgen.ext.base import BaseEntryExtension, BaseExtension
from lxml import etree

DC_NS = "http://purl.org/dc/elements/1.1/"
NAMESPACE = "credits"


def credit(names: Sequence[str]) -> str:
    """Every author in one line, as arXiv's feeds write it: "A, B, C"."""
    return ", ".join(names)


class CreditsExtension(BaseExtension):  # type: ignore[misc]
    """Declares the Dublin Core namespace on the feed's root element."""

    def extend_ns(self) -> dict[str, str]:
        return {"dc": DC_NS}


class CreditsEntryExtension(BaseEntryExtension):  # type: ignore[misc]
    """An entry's authors as `dc:creator` elements; set with `authors(names)`."""

    def __init__(self) -> None:
        self._names: tuple[str, ...] = ()

    def authors(self, names: Sequence[str]) -> None:
        self._names = tuple(names)

    def _creator(self, parent: Any, name: str) -> None:
        element = etree.SubElement(parent, f"{{{DC_NS}}}creator")
        element.text = name

    def extend_rss(self, item: Any) -> Any:
        for name in self._names:
            self._creator(item, name)
        if len(self._names) > 1:
            self._creator(item, credit(self._names))
        return item

    def extend_atom(self, entry: Any) -> Any:
        if len(self._names) > 1:
            self._creator(entry, credit(self._names))
        return entry
