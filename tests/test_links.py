"""Link rules: which URLs become links, an item's primary link, link labels; every generator
follows the same rule."""

from __future__ import annotations

import json
from functools import partial

import lxml.etree
import lxml.html
import pytest
from conftest import DIGEST_TIME, make_context, make_digest, make_item

from feeds.config import Settings
from feeds.links import link_label, primary_link, primary_url, safe_url
from feeds.model import Item, Link, Paper
from feeds.newsletter import render_newsletter
from feeds.site import render_site
from feeds.syndicate import render_feeds

SETTINGS = Settings()

# (URL as a digest might give it, the link it becomes or None for no link)
TRICKY_URLS: list[tuple[str, str | None]] = [
    ("https://example.org/paper", "https://example.org/paper"),
    ("HTTPS://EXAMPLE.ORG/Paper", "HTTPS://EXAMPLE.ORG/Paper"),
    (" http://example.org/a?b=1&c=2 ", "http://example.org/a?b=1&c=2"),
    ("http://[::1]/x", "http://[::1]/x"),
    # A URI, as RSS and Atom require: the host in IDNA, the rest percent-encoded UTF-8.
    ("https://例子.测试/论文", "https://xn--fsqu00a.xn--0zwm56d/%E8%AE%BA%E6%96%87"),
    ("https://de.wikipedia.org/wiki/Künstliche_Intelligenz",
     "https://de.wikipedia.org/wiki/K%C3%BCnstliche_Intelligenz"),
    ("http://[2001:db8::1]:8080/ü?q=é#ö", "http://[2001:db8::1]:8080/%C3%BC?q=%C3%A9#%C3%B6"),
    # A browser reads a backslash as a slash: this goes to evil.example, Python says arxiv.org.
    ("https://evil.example\\@arxiv.org/abs/2101.00002", None),
    ("https://arxiv.org\\@evil.example/x", None),
    ("javascript:alert(1)", None),
    ("JavaScript://example.org/%0Aalert(1)", None),
    ("data:text/html,<script>alert(1)</script>", None),
    ("https://a b", None),
    ("https://example.org/a\tb", None),
    ("https://example.org/a\nb", None),
    ("https://example.org/\x07", None),
    ("https://example.org/\x85", None),
    ("https://example.org/\u3000", None),
    ("https://example.org/\u202eevil", None),
    ("https://", None),
    ("https:///no-host", None),
    ("https://@/", None),
    ("//example.org/x", None),
    ("ftp://example.org/", None),
    ("http://[::1", None),
    ("https://example.org:port/", None),
    ("", None),
    (" ", None),
]


# A paper known by its title alone, not by an arXiv id: the links a test gives it are its only ones.
tricky_item = partial(
    make_item,
    key="title:0123456789abcdef",
    guid="tag:digest-feeds,2020:title:0123456789abcdef",
    title="A paper with a tricky link",
)


@pytest.mark.parametrize(("url", "expected"), TRICKY_URLS)
def test_only_plain_http_links_to_a_host_are_safe(url: str, expected: str | None) -> None:
    assert safe_url(url) == expected


def test_no_url_is_no_link() -> None:
    assert safe_url(None) is None


@pytest.mark.parametrize(
    ("url", "links", "expected"),
    [
        ("https://arxiv.org/abs/1", (), "https://arxiv.org/abs/1"),
        (
            None,
            (
                Link("weibo", "https://weibo.com/1/K"),
                Link("openreview", "https://openreview.net/forum?id=x"),
                Link("arxiv", "https://arxiv.org/abs/2"),
            ),
            "https://arxiv.org/abs/2",
        ),
        (
            None,
            (
                Link("weibo", "https://weibo.com/1/K"),
                Link("openreview", "https://openreview.net/f"),
            ),
            "https://openreview.net/f",
        ),
        ("javascript:alert(1)", (Link("weibo", "https://weibo.com/1/K"),), "https://weibo.com/1/K"),
        (None, (Link("arxiv", "ftp://arxiv.org/x"),), None),
        (None, (), None),
    ],
)
def test_primary_link_prefers_the_url_then_arxiv_openreview_weibo(
    url: str | None, links: tuple[Link, ...], expected: str | None
) -> None:
    assert primary_link(tricky_item(url=url, links=links)) == expected


def test_the_primary_url_of_links_is_the_best_safe_kind_and_the_first_of_a_kind() -> None:
    links = [
        Link("other", "https://github.com/x"),
        Link("weibo", "https://weibo.com/1/K"),
        Link("doi", "https://a b"),
        Link("weibo", "https://weibo.com/1/L"),
    ]
    assert primary_url(links) == "https://weibo.com/1/K"
    assert primary_url([Link("other", "https://a"), Link("other", "https://b")]) == "https://a"
    assert primary_url([Link("arxiv", "javascript:x")]) is None
    assert primary_url([]) is None


def test_links_are_named_by_kind_and_other_links_by_host_where_asked() -> None:
    assert link_label(Link("arxiv", "https://arxiv.org/abs/1")) == "arXiv"
    assert link_label(Link("openreview", "https://openreview.net/f")) == "OpenReview"
    other = Link("other", "https://arxiv.org@evil.example:8080/x")
    assert link_label(other) == "Link"
    assert link_label(other, name_hosts=True) == "evil.example"
    assert link_label(Link("other", "javascript:alert(1)"), name_hosts=True) == "Link"


# ---------------------------------------------------------------------------------------------
# Every generator follows the same rule


def render_all(item: Item) -> dict[str, set[str]]:
    """Every href each generator makes for a context of one paper, by generator."""
    digest = make_digest([item])
    ctx = make_context(Paper(item=item, first_seen=DIGEST_TIME), digests=[digest])
    found: dict[str, set[str]] = {}
    pages = render_site(ctx, SETTINGS)
    found["site"] = {
        href
        for name in ("index.html", "feeds/all.html")
        for href in lxml.html.fromstring(pages[name]).xpath("//main//a/@href")
    }
    feeds = render_feeds(ctx, SETTINGS)
    atom = lxml.etree.fromstring(feeds["feeds/all.atom"])
    ns = {"a": "http://www.w3.org/2005/Atom"}
    entry_links = set(atom.xpath("//a:entry/a:link/@href", namespaces=ns))
    content = "".join(atom.xpath("//a:entry/a:content/text()", namespaces=ns))
    entry_links |= set(lxml.html.fromstring(content).xpath("//a/@href"))
    document = json.loads(feeds["feeds/all.json"])
    entry_links |= {entry["url"] for entry in document["items"] if "url" in entry}
    found["feeds"] = entry_links
    letter = render_newsletter(digest, SETTINGS)
    assert letter is not None
    # As written: every generator's links are URIs already (`safe_url`), so lxml, writing the
    # inlined HTML, has nothing left to percent-encode.
    found["newsletter"] = set(lxml.html.fromstring(letter.html).xpath("//a/@href"))
    return found


@pytest.mark.parametrize(("url", "expected"), [pair for pair in TRICKY_URLS if pair[0].strip()])
def test_site_feeds_and_newsletter_agree_on_what_is_a_link(
    url: str, expected: str | None
) -> None:
    found = render_all(tricky_item(url=url, links=(Link("other", url),)))
    for generator, hrefs in found.items():
        linked = {href for href in hrefs if href.strip() == url.strip() or href == expected}
        if expected is None:
            assert not linked, (generator, linked)
        else:
            assert linked == {expected}, (generator, hrefs)


def test_the_site_no_longer_links_a_url_with_a_space_in_it() -> None:
    item = tricky_item(
        url="https://a b",
        links=(Link("other", "https://a b"), Link("arxiv", "https://arxiv.org/abs/1")),
    )
    pages = render_site(make_context(Paper(item=item, first_seen=DIGEST_TIME)), SETTINGS)
    tree = lxml.html.fromstring(pages["feeds/all.html"])
    hrefs = tree.xpath("//main//a/@href")
    assert "https://a b" not in hrefs and "https://a%20b" not in hrefs
    # The title links the paper's next best link instead.
    assert tree.xpath("//main//*[contains(@class, 'title')]/a/@href") == [
        "https://arxiv.org/abs/1"
    ]
