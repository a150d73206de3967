"""Link rules every generator follows: which URLs become links, an item's primary link, labels.

The feeds, the site, the newsletter and the message headers all ask these functions, so a URL
that is a link in one output is a link in all of them, and a paper links to the same page
everywhere. Pure and import-light: the build calls `primary_url` too.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from urllib.parse import quote, urlsplit

from feeds.identity import LINK_RANK
from feeds.model import Item, Link, LinkKind

# What a link of each kind is called where the link text is all a reader sees.
LINK_LABELS: Mapping[LinkKind, str] = {
    "arxiv": "arXiv",
    "openreview": "OpenReview",
    "doi": "DOI",
    "weibo": "Weibo",
    "other": "Link",
}


_ASCII_SPACE = " \t\n\r\x0b\x0c"
# Every printable ASCII character: what `quote` leaves as it is when a URL is made ASCII.
_PRINTABLE = "".join(chr(c) for c in range(33, 127))


def safe_url(url: str | None) -> str | None:
    """`url` without surrounding spaces if it is a plain http(s) link to a host, else None;
    written in ASCII (a URI, as RSS and Atom require): an international host in its IDNA
    form, other non-ASCII characters percent-encoded as UTF-8.

    Anything else is no link: `javascript:` and `data:` (they run or smuggle content), no
    host, a space or control character inside (a browser would repair it into another URL
    than the one shown), a backslash (a browser reads it as `/`, so that
    `https://evil.example\\@arxiv.org/` goes to evil.example, where Python sees arxiv.org),
    or a URL the standard library cannot split (an unclosed IPv6 bracket).
    """
    if not url:
        return None
    # Only the ASCII spaces browsers strip from an href's ends: U+0085 or U+3000 there is junk.
    url = url.strip(_ASCII_SPACE)
    if "\\" in url:
        return None
    if url.isascii():
        # The same test at C speed: in ASCII, the space is the one blank `isprintable` lets
        # through, and every other blank is a control character. Feeds and pages check
        # thousands of links a build.
        if " " in url or not url.isprintable():
            return None
    elif any(ch.isspace() or unicodedata.category(ch)[0] == "C" for ch in url):
        return None
    try:
        parts = urlsplit(url)
        # Reading the port validates it: `https://host:abc/` is no URL.
        _ = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    if url.isascii():
        return url
    try:
        host = parts.hostname.encode("idna").decode("ascii")
    except UnicodeError:
        return None  # no name a resolver could look up
    if ":" in host:
        host = f"[{host}]"  # an IPv6 address, which `hostname` gives without its brackets
    userinfo, at, _ = parts.netloc.rpartition("@")
    port = f":{parts.port}" if parts.port is not None else ""
    netloc = (quote(userinfo, safe=_PRINTABLE) + at if at else "") + host + port
    rest = url[len(parts.scheme) + 3 + len(parts.netloc):]
    return f"{parts.scheme}://{netloc}{quote(rest, safe=_PRINTABLE)}"


def primary_url(links: Iterable[Link]) -> str | None:
    """The safe link that names the paper best: arXiv, OpenReview, DOI, Weibo, other, the
    earlier of two of a kind; None when no link is safe."""
    best: tuple[int, str] | None = None
    for link in links:
        href = safe_url(link.href)
        if href is not None and (best is None or LINK_RANK[link.kind] < best[0]):
            best = (LINK_RANK[link.kind], href)
    return best[1] if best else None


def primary_link(item: Item) -> str | None:
    """Where an item's title links: its own URL if safe, else `primary_url` of its links."""
    return safe_url(item.url) or primary_url(item.links)


def issue_page(digest_id: str, slug: str | None = None) -> str:
    """The web copy of an issue, as a path under output/: `newsletter/<digest id>.html`; with a
    category's slug, the copy of what a subscriber to that category receives,
    `newsletter/<digest id>.<slug>.html`."""
    stem = quote(digest_id, safe="")
    return f"newsletter/{stem}.{slug}.html" if slug else f"newsletter/{stem}.html"


def paper_anchor(item: Item) -> str:
    """The id of a paper's place in the web copy of an issue: `p-` and 12 hex digits.

    Made from the paper's key, which is what its guid is made of and, unlike the guid the
    state may keep from an earlier build, known to the issue page rendered from the digest
    alone; the same in every build, and safe in an HTML id and a URL fragment.
    """
    return "p-" + hashlib.sha256(item.key.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def has_page(item: Item) -> bool:
    """Whether the paper has a place on the site (`paper_page`), without making its path."""
    return bool(item.digest_id)


def paper_page(item: Item) -> str | None:
    """The paper's permanent place on the site, as a path under output/: its anchor in the
    web copy of the issue that first showed it; None for an item of no digest."""
    if not has_page(item):
        return None
    return f"{issue_page(item.digest_id)}#{paper_anchor(item)}"


def entry_link(item: Item, site_url: Callable[[str], str]) -> str | None:
    """Where a feed entry links: the paper's primary link, else its place on the site
    (`site_url` makes a path under output/ absolute), so every entry has a web link."""
    page = paper_page(item)
    return primary_link(item) or (site_url(page) if page else None)


def link_label(link: Link, *, name_hosts: bool = False) -> str:
    """A link's name for a reader: its kind (arXiv, Weibo, ...), "Link" for any other link.

    With `name_hosts`, another link is named by the host it leads to instead, for pages where
    the name is all a reader sees of the link. The host, not the whole authority:
    `https://arxiv.org@evil.example/` is named `evil.example`, where it really goes.
    """
    if link.kind == "other" and name_hosts:
        href = safe_url(link.href)
        host = urlsplit(href).hostname if href else None
        if host:
            return host
    return LINK_LABELS[link.kind]
