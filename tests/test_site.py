"""The static site: index with autodiscovery, one page per feed, the OPML list of feeds."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import REGENERATE, ROOT, SAMPLE_DIGESTS, make_digest, make_item
from lxml import etree
from lxml import html as lxml_html

from feeds.assemble import assemble
from feeds.catalog import feed_list, select
from feeds.config import Settings
from feeds.model import BuildContext, Link, Paper
from feeds.parse import parse_file
from feeds.site import render_site

GOLDEN = ROOT / "tests" / "golden" / "site"
SETTINGS = Settings()
FEED_TYPES = ("application/rss+xml", "application/atom+xml", "application/feed+json")


@pytest.fixture(scope="module")
def sample_ctx() -> BuildContext:
    paths = sorted(SAMPLE_DIGESTS.glob("*.txt"))
    digests = [parse_file(path, tz=SETTINGS.site.tz) for path in paths]
    ctx, _ = assemble(digests, {}, {})
    return ctx


@pytest.fixture(scope="module")
def pages(sample_ctx: BuildContext) -> dict[str, bytes]:
    return render_site(sample_ctx, SETTINGS)


@pytest.mark.parametrize("name", ["index.html", "feeds/cv.html", "feeds/starred.html",
                                  "feeds.opml"])
def test_the_site_matches_its_golden_files(pages: dict[str, bytes], name: str) -> None:
    golden = GOLDEN / name
    if REGENERATE:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_bytes(pages[name])
    assert pages[name] == golden.read_bytes()


def test_the_site_has_an_index_a_page_per_feed_and_the_opml(
    sample_ctx: BuildContext, pages: dict[str, bytes]
) -> None:
    feeds = feed_list(sample_ctx, SETTINGS)
    expected = {"index.html", "feeds.opml", "search.js"} | {feed.html for feed in feeds}
    assert set(pages) == expected
    assert {"feeds/all.html", "feeds/starred.html", "feeds/lg.html", "feeds/cv.html"} <= expected


def test_the_search_box_and_its_script_come_with_search_on_as_by_default(
    sample_ctx: BuildContext, pages: dict[str, bytes]
) -> None:
    assert pages["search.js"] == (ROOT / "templates" / "site" / "search.js").read_bytes()
    doc = lxml_html.fromstring(pages["index.html"])
    # One script only, the search box's, from the site itself (feeds.search).
    assert [(s.get("type"), s.get("src"), s.text) for s in doc.xpath("//script")] == [
        ("module", "search.js", None)
    ]
    assert doc.xpath('//section[@id="search-section"]')
    off = replace(SETTINGS, site=replace(SETTINGS.site, search=False))
    plain = render_site(sample_ctx, off)
    assert "search.js" not in plain
    assert b"search" not in plain["index.html"].lower().replace(b"research", b"")


def test_the_index_announces_every_feed_in_every_format(
    sample_ctx: BuildContext, pages: dict[str, bytes]
) -> None:
    doc = lxml_html.fromstring(pages["index.html"])
    found = {(link.get("type"), link.get("href"))
             for link in doc.xpath('//head/link[@rel="alternate"]')}
    expected = set()
    for feed in feed_list(sample_ctx, SETTINGS):
        for mime, path in zip(FEED_TYPES, (feed.rss, feed.atom, feed.json), strict=True):
            expected.add((mime, SETTINGS.site.url(path)))
    assert found == expected
    assert all(href.startswith("https://digest.example.org/feeds/") for _, href in found)
    # No script but the search box's (on by default).
    assert [s.get("src") for s in doc.xpath("//script")] == ["search.js"]


def test_the_index_shows_the_latest_digest_and_links_its_newsletter(
    sample_ctx: BuildContext, pages: dict[str, bytes]
) -> None:
    latest = sample_ctx.digests[0]
    doc = lxml_html.fromstring(pages["index.html"])
    text = doc.text_content()
    assert latest.id in text
    hrefs = doc.xpath("//a/@href")
    assert f"newsletter/{latest.id}.html" in hrefs
    assert "newsletter/index.html" in hrefs
    headings = doc.xpath('//section[@class="latest"]//h3')
    titles = [" ".join(h.text_content().split()) for h in headings]
    assert titles == list(dict.fromkeys(" ".join(i.title.split()) for i in latest.items))


def test_the_curators_commentary_keeps_its_line_breaks_on_the_site() -> None:
    notes = "Illustrative Example\nCompare dollar\n\n来源: https://x.example/1"
    item = make_item(1, section="weekly", notes=notes)
    digest = make_digest([item], id="2020-07-11-weekly", format="weekly")
    ctx = BuildContext(digests=(digest,), papers=())
    doc = lxml_html.fromstring(render_site(ctx, SETTINGS)["index.html"])
    paragraphs = doc.xpath('//p[@class="notes"]')
    assert [list(p.itertext()) for p in paragraphs] == [
        ["Illustrative Example", "Compare dollar"],
        ["来源: https://x.example/1"],
    ]


def test_a_paper_without_a_source_link_leads_to_its_place_in_the_issue_on_the_site() -> None:
    from feeds.links import paper_anchor

    item = make_item(1, url=None, links=(), section="weekly", digest_id="2020-07-11-weekly")
    digest = make_digest([item], id="2020-07-11-weekly", format="weekly")
    papers = (Paper(item, datetime(2020, 7, 11, tzinfo=UTC), (digest.id,)),)
    pages = render_site(BuildContext(digests=(digest,), papers=papers), SETTINGS)
    target = f"newsletter/2020-07-11-weekly.html#{paper_anchor(item)}"
    index = lxml_html.fromstring(pages["index.html"])
    assert index.xpath('//section[@class="latest"]//h3/a/@href') == [target]
    feed = lxml_html.fromstring(pages["feeds/all.html"])
    assert feed.xpath("//article//h2/a/@href") == ["../" + target]


def test_a_feed_page_lists_the_feeds_entries_and_links_its_formats(
    sample_ctx: BuildContext, pages: dict[str, bytes]
) -> None:
    feed = next(f for f in feed_list(sample_ctx, SETTINGS) if f.slug == "cv")
    doc = lxml_html.fromstring(pages["feeds/cv.html"])
    titles = [" ".join(h.text_content().split()) for h in doc.xpath("//article/h2")]
    chosen = select(sample_ctx, feed, SETTINGS.site.items_per_feed)
    assert titles == [" ".join(p.item.title.split()) for p in chosen]
    hrefs = doc.xpath("//a/@href")
    assert {"../feeds/cv.rss", "../feeds/cv.atom", "../feeds/cv.json"} <= set(hrefs)
    assert "../index.html" in hrefs
    alternates = doc.xpath('//head/link[@rel="alternate"]/@href')
    assert alternates == [SETTINGS.site.url(feed.rss), SETTINGS.site.url(feed.atom),
                          SETTINGS.site.url(feed.json)]


def test_the_opml_lists_every_feed_with_absolute_urls(
    sample_ctx: BuildContext, pages: dict[str, bytes]
) -> None:
    root = etree.fromstring(pages["feeds.opml"])
    assert root.tag == "opml" and root.get("version") == "2.0"
    outlines = root.findall("./body/outline")
    feeds = feed_list(sample_ctx, SETTINGS)
    assert [o.get("xmlUrl") for o in outlines] == [SETTINGS.site.url(f.rss) for f in feeds]
    assert [o.get("htmlUrl") for o in outlines] == [SETTINGS.site.url(f.html) for f in feeds]
    assert all(o.get("type") == "rss" and o.get("text") for o in outlines)
    assert root.findtext("./head/title") == SETTINGS.site.title


def test_the_site_never_depends_on_the_clock_or_the_order_of_the_digests(
    sample_ctx: BuildContext, pages: dict[str, bytes]
) -> None:
    shuffled, _ = assemble(list(sample_ctx.digests[::-1]), {}, {})
    assert render_site(shuffled, SETTINGS) == pages


def hostile_ctx() -> BuildContext:
    when = datetime(2021, 3, 30, 8, 0, tzinfo=UTC)
    item = make_item(
        key="title:0123456789abcdef",
        guid="tag:digest-feeds,2020:title:0123456789abcdef",
        category="CV</title><script>",
        category_name="计算机视觉 & <b>",
        starred=True,
        title='<script>alert("x")</script> & ]]> \'quotes\' "double"\x01\x0b end',
        title_zh="标题<img src=x onerror=alert(1)>",
        authors=("A <Author>", "B & C"),
        affiliations=("<MIT>",),
        summary_zh="摘要 ]]> <iframe>",
        abstract="Abstract with \x00 NUL and <style>body{}</style>",
        url="javascript:alert(1)",
        links=(Link("other", "javascript:alert(1)"), Link("other", 'https://e.org/?a=1&b="2"')),
        published=when,
    )
    digest = make_digest(
        [item], date=when, date_source="header", source="x.txt",
        title="<script>digest</script>", summary="& summary <b>",
    )
    ctx, _ = assemble([digest], {}, {})
    return ctx


def test_hostile_text_stays_inert_text_everywhere() -> None:
    settings = replace(SETTINGS, site=replace(SETTINGS.site, title='Site <"&">'))
    pages = render_site(hostile_ctx(), settings)
    for name, data in pages.items():
        if name == "search.js":
            assert data == (ROOT / "templates" / "site" / "search.js").read_bytes()
            continue
        text = data.decode("utf-8")
        assert "<script>" not in text and "<iframe>" not in text and "<img" not in text, name
        assert "\x00" not in text and "\x01" not in text and "\x0b" not in text, name
        assert "javascript:" not in text.replace("javascript:alert(1)</", ""), name
        if name.endswith(".html"):
            doc = lxml_html.fromstring(data)
            inline = "//script[not(@src)] | //iframe | //img | //style[not(parent::head)]"
            assert not doc.xpath(inline)
            assert [s.get("src") for s in doc.xpath("//script")] in ([], ["search.js"])
            assert all(not h.lower().startswith("javascript") for h in doc.xpath("//a/@href"))
    opml = etree.fromstring(pages["feeds.opml"])
    assert opml.findtext("./head/title") == 'Site <"&">'
    index = lxml_html.fromstring(pages["index.html"])
    heading = index.xpath('//section[@class="latest"]//h3')[0].text_content()
    assert heading.startswith('<script>alert("x")</script> & ]]>')
    assert 'href="https://e.org/?a=1&amp;b=&#34;2&#34;"' in pages["index.html"].decode()


def test_an_empty_site_still_renders() -> None:
    pages = render_site(BuildContext(digests=(), papers=()), SETTINGS)
    assert set(pages) == {
        "index.html", "feeds.opml", "feeds/all.html", "feeds/starred.html", "search.js"}
    lxml_html.fromstring(pages["index.html"])
    etree.fromstring(pages["feeds.opml"])


# -- in a real browser -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser_page(chromium: Any) -> Any:
    """A page 375 px wide, like a small phone."""
    page = chromium.new_page()
    page.set_viewport_size({"width": 375, "height": 800})
    return page


@pytest.mark.browser
@pytest.mark.parametrize(
    "name", ["index.html", "feeds/cv.html", "feeds/all.html"], ids=["index", "cv", "all"]
)
def test_pages_fit_a_phone_screen_without_sideways_scrolling(
    browser_page: Any, pages: dict[str, bytes], tmp_path: Path, name: str,
    artifacts_dir: Path,
) -> None:
    for rel, data in pages.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(data)
    browser_page.goto((tmp_path / name).as_uri())
    width = browser_page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375
    # Every paper title is on screen horizontally, and the page runs no script but the search
    # box's, which from file:// cannot load its index and leaves the page as it was.
    boxes = browser_page.evaluate(
        "[...document.querySelectorAll('article .title')].map(e => e.getBoundingClientRect())"
        ".map(b => [b.left, b.right])"
    )
    assert all(left >= 0 and right <= 375 for left, right in boxes)
    assert browser_page.evaluate("[...document.scripts].map((s) => s.getAttribute('src'))") in (
        [], ["search.js"], ["../search.js"])
    assert all(section.is_hidden() for section in browser_page.locator("#search-section").all())
    assert browser_page.locator("#search-q").count() == 0
    assert browser_page.locator("#search-q").count() == 0
    browser_page.screenshot(path=str(artifacts_dir / f"{name.replace('/', '-')}.png"),
                            full_page=False)
