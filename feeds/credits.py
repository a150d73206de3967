"""Who wrote a paper, written so that readers built on feedparser show every author.

feedparser, and every reader built on it (the `reader` library, many others), keeps one
`entry.author` (and `author_detail`, which `reader` takes for Atom): the *last* author element
of an entry. With one element per author, such a reader credits a paper to its last author
only. arXiv's feeds answer the same complaint with one element holding every author; here that
credit comes last, after one element per author, so `entry.author` names everybody and
`entry.authors` still lists each author (then the credit):

- RSS: a `<dc:creator>` per author, then one with all of them (only when there are several):
  this extension;
- Atom: an `<author>` per author, then one `<author>` with all of them (only when there are
  several): `credited` gives that list to feedgen. A `dc:creator` would not do in Atom:
  feedparser's `author_detail`, which `reader` reads, only changes with an `<author>`.
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


def credited(names: Sequence[str]) -> list[str]:
    """The names of an entry's author elements: each author, then (when there are several)
    the credit naming them all, which is what feedparser's one `entry.author` shows."""
    return [*names, credit(names)] if len(names) > 1 else list(names)


class CreditsExtension(BaseExtension):  # type: ignore[misc]
    """Declares the Dublin Core namespace on the feed's root element."""

    def extend_ns(self) -> dict[str, str]:
        return {"dc": DC_NS}


class CreditsEntryExtension(BaseEntryExtension):  # type: ignore[misc]
    """An RSS item's authors as `dc:creator` elements; set with `authors(names)`."""

    def __init__(self) -> None:
        self._names: tuple[str, ...] = ()

    def authors(self, names: Sequence[str]) -> None:
        self._names = tuple(names)

    def extend_rss(self, item: Any) -> Any:
        for name in credited(self._names):
            element = etree.SubElement(item, f"{{{DC_NS}}}creator")
            element.text = name
        return item
