"""Feed-level links feedgen cannot write in RSS: the RFC 5005 archive links (`prev-archive`,
`next-archive`, `current`, and the `fh:archive` mark of an archive document) and the WebSub
`hub` link.

feedgen writes only `rel="self"` of its feed links into RSS (and makes the last link added the
channel `<link>`), so these go through an extension that writes the same `atom:link` elements
into an Atom feed and an RSS channel (RFC 5005 Appendix B, WebSub section 4), before the
entries.
"""

from __future__ import annotations

from typing import Any

from feedgen.ext.base import BaseExtension
from lxml import etree

ATOM_NS = "http://www.w3.org/2005/Atom"
FH_NS = "http://purl.org/syndication/history/1.0"
NAMESPACE = "feedlinks"


class FeedLinksExtension(BaseExtension):  # type: ignore[misc]
    """Set with `links([(rel, href), ...])` and `archive(True)`; written in the order given."""

    def __init__(self) -> None:
        self._links: tuple[tuple[str, str], ...] = ()
        self._archive = False

    def links(self, pairs: list[tuple[str, str]]) -> None:
        self._links = tuple(pairs)

    def archive(self, flag: bool) -> None:
        self._archive = flag

    def extend_ns(self) -> dict[str, str]:
        # Declared only where used: a subscription document without archive mark stays free of
        # a namespace it does not need.
        return {"fh": FH_NS} if self._archive else {}

    def extend_atom(self, feed: Any) -> Any:
        # feedgen puts the Atom namespace on <feed> as a plain xmlns attribute, so its
        # children are un-namespaced elements in lxml's tree: a link must be one too, or it
        # is written with a prefix of its own.
        self._write(feed, "link")
        return feed

    def extend_rss(self, feed: Any) -> Any:
        channel = feed.find("channel")
        self._write(channel if channel is not None else feed, f"{{{ATOM_NS}}}link")
        return feed

    def _write(self, parent: Any, link_tag: str) -> None:
        if self._archive:
            etree.SubElement(parent, f"{{{FH_NS}}}archive")
        for rel, href in self._links:
            etree.SubElement(parent, link_tag, rel=rel, href=href)
