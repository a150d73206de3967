"""The newsletter: HTML with inlined CSS, the plain-text part, the size budget, the archive."""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import cssselect
import cssutils
import lxml.html
import pytest
from conftest import REGENERATE, ROOT, SAMPLE_DIGESTS, arxiv_abs, make_digest, make_item
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feeds import issue, message, newsletter
from feeds.config import NewsletterSettings, Settings
from feeds.errors import ConfigError
from feeds.model import BuildContext, Digest, Item, Link
from feeds.textutil import display_width

GOLDEN = Path(__file__).resolve().parent / "golden" / "newsletter"
CSS = ROOT / "templates" / "newsletter" / "newsletter.css"
SETTINGS = Settings()

ABSTRACT = (
    "Deep Convolutional Neural Networks (CNNs) have long been the architecture of choice for "
    "computer vision tasks. Recently, Transformer-based architectures like Vision Transformer "
    "(ViT) have matched or even surpassed ResNets for image classification. However, details "
    "of the Transformer architecture, such as the use of non-overlapping patches, lead one to "
    "wonder whether these networks are as robust."
)
SUMMARY_ZH = (
    "理解Transformer图像分类的鲁棒性。对视觉Transformer(ViT)模型各种不同的鲁棒性度量进行了广泛"
    "研究,并将研究结果与ResNet基线进行了比较。发现当使用足够数据量进行预训练时,ViT模型在广泛扰动"
    "范围内至少与ResNet对应模型一样鲁棒。"
)
DIGEST_SUMMARY = "多视角看自监督学习、理解Transformer图像分类的鲁棒性"
WEIBO = Link("weibo", "https://weibo.com/1402400261/K8wjSoUDC")
# The newsletter's papers carry one real paper's text at full length, so the layout shows.
ROBUSTNESS: dict[str, Any] = {
    "title_zh": "理解Transformer图像分类的鲁棒性",
    "authors": ("S Bhojanapalli", "A Chakrabarti", "D Glasner"),
    "affiliations": ("Google Research",),
    "summary_zh": SUMMARY_ZH,
    "abstract": ABSTRACT,
}


def letter_item(rank: int = 1, **fields: Any) -> Item:
    """Paper `rank` of a digest: part `rank` of the robustness paper, on arXiv and Weibo."""
    title = f"Understanding Robustness of Transformers, part {rank}"
    links = (Link("arxiv", arxiv_abs(rank)), WEIBO)
    return make_item(rank, **{**ROBUSTNESS, "title": title, "links": links, **fields})


# The newsletter's digests have a summary line unless a test takes it away.
letter_digest = partial(make_digest, summary=DIGEST_SUMMARY)


def daily_digest() -> Digest:
    return letter_digest(
        [
            letter_item(1, category="LG", starred=True),
            letter_item(2, category="CV"),
            letter_item(3, category="CL"),
            letter_item(4, category="CV", section="more", summary_zh=None, abstract=None),
            letter_item(5, category="RO", section="more", summary_zh=None, abstract=None),
        ]
    )


def weekly_digest() -> Digest:
    picks = [
        letter_item(
            n,
            section="weekly",
            category=None,
            starred=n == 1,
            summary_zh=None,
            abstract=None,
            notes="技术背景:对比学习的核心是学习一个映射函数 $f$。\n\n来源: https://arxiv.org/abs/2007.00224",
        )
        for n in (1, 2, 3)
    ]
    # The weekly list names its first paper twice; the email shows it once.
    picks.append(replace(picks[0], rank=4))
    return letter_digest(picks, id="2020-07-11-weekly", format="weekly", summary=None)


def big_digest(papers: int = 60) -> Digest:
    long_abstract = " ".join([ABSTRACT] * 4)
    items = [
        letter_item(
            n,
            category=("LG", "CV", "CL", "RO")[n % 4],
            section="featured" if n <= 40 else "more",
            abstract=long_abstract,
            summary_zh=SUMMARY_ZH * 3,
        )
        for n in range(1, papers + 1)
    ]
    return letter_digest(items)


def render(digest: Digest, **kwargs: Any) -> newsletter.Newsletter:
    letter = newsletter.render_newsletter(digest, SETTINGS, **kwargs)
    assert letter is not None
    return letter


def doc(html: str) -> Any:
    return lxml.html.document_fromstring(html)


def paper_titles(html: str) -> list[str]:
    tree = doc(html)
    return [el.text_content() for el in tree.cssselect(".paper-title, .more-title a")]


# ---------------------------------------------------------------------------------------------
# Content


def test_the_email_shows_date_summary_and_every_paper_with_its_parts() -> None:
    letter = render(daily_digest())
    tree = doc(letter.html)
    assert "2021-03-30" in tree.cssselect(".issue-title")[0].text_content()
    assert tree.cssselect(".intro")[0].text_content().startswith("多视角看自监督学习")
    assert len(tree.cssselect(".paper")) == 3
    assert len(tree.cssselect(".more-item")) == 2
    first = tree.cssselect(".paper")[0]
    assert first.cssselect(".badge")[0].text == "LG"
    assert first.cssselect(".paper-title a")[0].get("href") == "https://arxiv.org/abs/2103.00001"
    assert first.cssselect(".title-zh")[0].text == "理解Transformer图像分类的鲁棒性"
    assert "S Bhojanapalli" in first.cssselect(".byline")[0].text_content()
    assert "Google Research" in first.cssselect(".affiliation")[0].text_content()
    # The Chinese title opens the summary in the digest; the email does not repeat it.
    assert first.cssselect(".summary-zh")[0].text_content().startswith("对视觉Transformer")
    assert first.cssselect(".abstract")[0].text_content().startswith("Deep Convolutional")


def test_a_subset_does_not_open_with_the_summary_line_of_papers_it_lacks() -> None:
    subset = render(daily_digest(), categories=frozenset({"CL"}))
    assert DIGEST_SUMMARY not in subset.text and DIGEST_SUMMARY not in subset.html
    # All the day's categories: every paper is there, and so is the line that names them.
    whole = render(daily_digest(), categories=frozenset({"LG", "CV", "CL", "RO"}))
    assert DIGEST_SUMMARY in whole.text


def test_a_paper_listed_under_two_categories_reaches_the_subscribers_of_either() -> None:
    twice = letter_item(2, category="CV")
    digest = letter_digest([letter_item(1, category="CL"), twice, replace(twice, category="LG")])
    letter = render(digest, categories=frozenset({"LG"}))
    assert paper_titles(letter.html) == [twice.title]
    pages = newsletter.category_copies(digest, SETTINGS)
    assert sorted(pages) == [f"newsletter/{digest.id}.{slug}.html" for slug in ("cl", "cv", "lg")]
    assert twice.title.encode() in pages[f"newsletter/{digest.id}.lg.html"]


@pytest.mark.parametrize("mark", ["\u200e", "\u200f", "\u061c", "\u202e", "\u200b"])
def test_direction_marks_and_invisible_characters_never_reach_the_email(mark: str) -> None:
    digest = letter_digest([letter_item(1, category="CV", title=f"Self{mark}Attention")])
    letter = render(digest)
    assert mark not in letter.text and mark not in letter.html
    assert "SelfAttention" in letter.text


def test_starred_papers_are_highlighted_and_marked() -> None:
    tree = doc(render(daily_digest()).html)
    starred = tree.cssselect(".paper-starred")
    assert len(starred) == 1
    assert "★" in starred[0].text_content()
    assert "background-color:#fffaeb" in starred[0].get("style").replace(" ", "")
    assert starred[0].get("bgcolor") == "#fffaeb"


def test_the_footer_links_the_feeds_the_web_version_and_unsubscribe() -> None:
    tree = doc(render(daily_digest()).html)
    hrefs = [a.get("href") for a in tree.cssselect(".footer a")]
    assert "https://digest.example.org/feeds/all.rss" in hrefs
    assert "https://digest.example.org/" in hrefs
    assert "https://digest.example.org/newsletter/2021-03-30.html" in hrefs
    assert "mailto:unsubscribe@example.org?subject=unsubscribe" in hrefs


def test_a_personal_unsubscribe_link_replaces_the_placeholder() -> None:
    url = "https://digest.example.org/unsubscribe?token=abc"
    letter = render(daily_digest(), unsubscribe_url=url)
    hrefs = [a.get("href") for a in doc(letter.html).cssselect(".footer a")]
    assert url in hrefs
    assert not any(h.startswith("mailto:") for h in hrefs)
    assert f"Unsubscribe:  {url}" in letter.text


def test_the_preheader_carries_the_digest_summary_and_is_hidden() -> None:
    tree = doc(render(daily_digest()).html)
    pre = tree.cssselect(".preheader")[0]
    assert pre.text_content().startswith("多视角看自监督学习")
    style = pre.get("style").replace(" ", "")
    assert "display:none" in style
    assert "mso-hide:all" in style
    # Hidden by display alone: text colored like the background is a spam sign
    # (SpamAssassin's HTML_FONT_LOW_CONTRAST), and so is a 1 px font.
    assert "color:" not in style and "opacity" not in style and "font-size" not in style
    assert ".preheader" not in tree.cssselect("head style")[0].text


def test_a_digest_without_summary_gets_a_preheader_made_of_its_titles() -> None:
    digest = replace(daily_digest(), summary=None)
    pre = doc(render(digest).html).cssselect(".preheader")[0].text_content()
    assert pre.startswith("理解Transformer图像分类的鲁棒性、")


def test_the_html_has_no_script_no_external_css_and_needs_no_image() -> None:
    html = render(daily_digest()).html
    tree = doc(html)
    assert not tree.cssselect("script, link, img, iframe, form")
    assert "javascript:" not in html.lower()
    assert not any(el.get(a) for el in tree.iter() for a in ("onclick", "onload", "onerror"))


def test_the_layout_is_a_fluid_presentation_table_with_a_fixed_outlook_wrapper() -> None:
    html = render(daily_digest()).html
    tree = doc(html)
    container = tree.cssselect("table.container")[0]
    # Fluid from its inline style alone (clients that drop <style> keep it): at most 600 px.
    assert container.get("width") == "100%"
    style = container.get("style").replace(" ", "")
    assert style.startswith("width:100%;") and "max-width:600px" in style
    assert container.get("role") == "presentation"
    assert all(t.get("role") == "presentation" for t in tree.iter("table"))
    assert '<!--[if mso]><table role="presentation" width="600"' in html
    assert "<![endif]-->" in html
    assert tree.cssselect('meta[name="color-scheme"]')[0].get("content") == "light dark"


def test_the_responsive_and_dark_mode_rules_stay_in_a_style_block_with_important() -> None:
    tree = doc(render(daily_digest()).html)
    styles = tree.cssselect("head style")
    assert len(styles) == 1
    css = styles[0].text
    assert "@media (max-width: 620px)" in css
    assert "@media (prefers-color-scheme: dark)" in css
    assert "width: 100% !important" in css
    assert css.count("!important") >= 20
    # Everything else was inlined: no plain rule is left for clients that drop <style>.
    assert not re.search(r"^\.[a-z-]+ \{", css, re.M)


def test_weekly_picks_render_with_their_notes_and_without_categories() -> None:
    letter = render(weekly_digest())
    tree = doc(letter.html)
    assert letter.count == 3
    assert letter.subject == "ML Paper Digest weekly picks 2020-07-11 · 3 papers"
    assert len(tree.cssselect(".paper")) == 3
    assert not tree.cssselect(".badge")
    assert "技术背景" in tree.cssselect(".paper")[0].text_content()
    assert "Weekly picks" in tree.cssselect(".issue-title")[0].text_content()


def test_the_curators_commentary_keeps_its_line_breaks_in_html_and_text() -> None:
    notes = "Illustrative Example\nCompare dollar\n当你被要求画一张美元\n\n来源: https://x.example/1"
    digest = replace(weekly_digest(), items=(
        letter_item(1, section="weekly", notes=notes, summary_zh=None, abstract=None),
    ))
    letter = render(digest)
    paragraphs = doc(letter.html).cssselect(".paper .summary-zh")
    assert len(paragraphs) == 2
    lines = [t.strip() for t in paragraphs[0].itertext()]
    assert lines == ["Illustrative Example", "Compare dollar", "当你被要求画一张美元"]
    assert len(paragraphs[0].findall("br")) == 2
    assert "    Illustrative Example\n    Compare dollar\n    当你被要求画一张美元\n" in letter.text


def test_every_paper_has_its_permanent_anchor_the_feeds_link_to() -> None:
    from feeds.links import paper_anchor, paper_page

    digest = weekly_digest()
    tree = doc(render(digest).html)
    ids = [el.get("id") for el in tree.cssselect(".paper, .more-item")]
    assert ids == [paper_anchor(item) for item in digest.items[:3]]
    assert all(re.fullmatch(r"p-[0-9a-f]{12}", i) for i in ids)
    item = replace(digest.items[1], digest_id=digest.id)  # as the build makes it
    assert paper_page(item) == f"newsletter/2020-07-11-weekly.html#{ids[1]}"


# ---------------------------------------------------------------------------------------------
# Category filter


def test_a_category_subset_has_only_its_papers_and_an_honest_count() -> None:
    letter = render(daily_digest(), categories=frozenset({"CV", "CL"}))
    tree = doc(letter.html)
    badges = [b.text for b in tree.cssselect(".badge")]
    assert sorted(badges) == ["CL", "CV", "CV"]
    assert letter.count == 3
    assert letter.subject == "ML Paper Digest 2021-03-30 · CL, CV · 3 papers"
    assert "3 papers · CL, CV" in tree.cssselect(".issue-meta")[0].text_content()
    assert "3 papers · CL, CV" in letter.text
    assert "[LG]" not in letter.text and "[RO]" not in letter.text


def test_a_subset_subscriber_gets_footer_links_to_their_own_category_feeds() -> None:
    letter = render(daily_digest(), categories=frozenset({"CV", "CL"}))
    hrefs = [a.get("href") for a in doc(letter.html).cssselect(".footer a")]
    assert "https://digest.example.org/feeds/cl.rss" in hrefs
    assert "https://digest.example.org/feeds/cv.rss" in hrefs
    assert "https://digest.example.org/feeds/all.rss" not in hrefs
    assert "CL feed:      https://digest.example.org/feeds/cl.rss" in letter.text
    assert "CV feed:      https://digest.example.org/feeds/cv.rss" in letter.text
    assert "feeds/all.rss" not in letter.text
    # Everybody else keeps the feed of all papers.
    assert "https://digest.example.org/feeds/all.rss" in render(daily_digest()).text


def test_a_subset_subscriber_gets_a_web_copy_of_each_of_their_categories() -> None:
    letter = render(daily_digest(), categories=frozenset({"CV", "CL"}))
    hrefs = [a.get("href") for a in doc(letter.html).cssselect(".footer a")]
    copies = [
        "https://digest.example.org/newsletter/2021-03-30.cl.html",
        "https://digest.example.org/newsletter/2021-03-30.cv.html",
    ]
    assert [h for h in hrefs if h.startswith(tuple(copies))] == copies
    assert "https://digest.example.org/newsletter/2021-03-30.html" in hrefs  # the whole issue
    assert f"Web, CL:      {copies[0]}" in letter.text
    files = newsletter.render_issue_files(daily_digest(), SETTINGS)
    cv = doc(files["newsletter/2021-03-30.cv.html"].decode("utf-8"))
    # What a CV subscriber received: its papers, nothing else, and complete.
    assert [b.text for b in cv.cssselect(".badge")] == ["CV", "CV"]
    assert "2 papers · CV" in cv.cssselect(".issue-meta")[0].text_content()
    assert cv.cssselect(".abstract")
    # A web page, like the archive: its stylesheet applies from a <style> block.
    assert ".paper-title {" in cv.cssselect("head style")[0].text


def test_a_subset_without_papers_gives_no_email() -> None:
    assert newsletter.render_newsletter(daily_digest(), SETTINGS, categories=frozenset()) is None
    digest = daily_digest()
    assert newsletter.render_newsletter(digest, SETTINGS, categories=frozenset({"AS"})) is None


def test_weekly_picks_reach_every_category_subscriber_whole() -> None:
    letter = render(weekly_digest(), categories=frozenset({"CV"}))
    assert letter.count == 3
    assert letter.subject == "ML Paper Digest weekly picks 2020-07-11 · 3 papers"
    assert doc(letter.html).cssselect(".issue-meta")[0].text_content() == "3 papers"


def test_characters_utf8_cannot_carry_are_dropped_instead_of_failing_the_email() -> None:
    digest = letter_digest([letter_item(1, title="Lone \ud800 surrogate \ufffe here")])
    letter = render(digest)
    assert "Lone surrogate here" in letter.text
    assert "\ud800" not in letter.html and "\ufffe" not in letter.html
    assert eml_size(letter) > 0


def test_a_subset_gets_a_preheader_about_its_own_papers() -> None:
    digest = letter_digest(
        [letter_item(1, category="LG", title_zh="只属于机器学习"), letter_item(2)]
    )
    pre = doc(render(digest, categories=frozenset({"LG"})).html).cssselect(".preheader")[0]
    assert pre.text_content().startswith("只属于机器学习")


# ---------------------------------------------------------------------------------------------
# Hostile input


def hostile_digest() -> Digest:
    return letter_digest(
        [
            letter_item(
                1,
                title='Evil <script>alert(1)</script> "quoted"\r\nBcc: victim@example.org',
                title_zh="<img src=x onerror=alert(1)>\x00\x1b[31m中文",
                authors=("<b>Mallory</b>", "A\u202eB"),
                affiliations=("</td></tr></table>",),
                summary_zh="<a href='javascript:alert(1)'>点我</a>",
                abstract="Text with \x07 bell and \x0c form feed.",
                url="javascript:alert(document.cookie)",
                links=(
                    Link("other", "javascript:alert(1)"),
                    Link("other", "data:text/html,<script>alert(1)</script>"),
                    Link("other", "https://ok.example.org/a?b=1&c=<2>"),
                    Link("other", "https://bad example.org/"),
                ),
                category="CV<i>",
            ),
        ],
        summary="摘要:<style>body{display:none}</style>\nSubject: injected",
    )


def test_markup_in_the_input_never_reaches_the_html_as_markup() -> None:
    letter = render(hostile_digest())
    tree = doc(letter.html)
    assert not tree.cssselect("body script, body b, body img, body i, body style")
    assert len(tree.cssselect("table")) == 2  # outer and container: no table closed early
    assert "<script>alert(1)</script>" in tree.cssselect(".paper-title")[0].text_content()
    assert "&lt;script&gt;" in letter.html


def test_only_http_links_become_links() -> None:
    letter = render(hostile_digest())
    hrefs = [a.get("href") for a in doc(letter.html).iter("a")]
    assert hrefs
    assert all(h.startswith(("https://", "mailto:")) for h in hrefs), hrefs
    assert "https://ok.example.org/a?b=1&c=<2>" in hrefs
    # The text part lists links too: only the http(s) ones.
    assert "javascript:alert(document.cookie)" not in letter.text
    assert "data:text" not in letter.text
    assert "    Link: https://ok.example.org/a?b=1&c=<2>" in letter.text


def test_control_characters_and_newlines_are_removed_from_every_part() -> None:
    letter = render(hostile_digest())
    for part in (letter.html, letter.text, letter.subject):
        assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u202e]", part)
    title = doc(letter.html).cssselect(".paper-title")[0].text_content()
    assert "\n" not in title and "\r" not in title
    assert "\n" not in letter.subject


def test_hostile_input_never_reaches_a_header() -> None:
    letter = render(hostile_digest())
    raw = message.as_bytes(message.compose(letter, SETTINGS))
    head = raw.split(b"\r\n\r\n", 1)[0]
    names = [line.split(b":", 1)[0] for line in head.split(b"\r\n") if not line.startswith(b" ")]
    assert b"Bcc" not in names
    assert b"Subject" in names
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Bcc"] is None
    assert not parsed.defects


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    title=st.text(min_size=1),
    title_zh=st.text(),
    author=st.text(),
    summary=st.text(),
    url=st.text(),
)
def test_any_text_renders_inert_and_composes(
    title: str, title_zh: str, author: str, summary: str, url: str
) -> None:
    digest = letter_digest(
        [
            letter_item(1, title=title, title_zh=title_zh, authors=(author,), url=url),
            letter_item(2, section="more", title=title, summary_zh=summary, links=()),
        ],
        summary=summary,
    )
    letter = render(digest)
    tree = doc(letter.html)
    assert len(tree.cssselect(".paper-title")) == 1
    assert len(tree.cssselect(".more-title")) == 1
    assert not tree.cssselect("body script, body style, body img")
    assert all(a.get("href").startswith(("https://", "http://", "mailto:")) for a in tree.iter("a"))
    raw = message.as_bytes(message.compose(letter, SETTINGS))
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert "\n" not in parsed["Subject"]
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    names = [line.split(b":", 1)[0] for line in head if line[:1] not in (b" ", b"\t")]
    assert len(names) == len(set(names)) == 8


# ---------------------------------------------------------------------------------------------
# CSS inlining


def _declared_styles(sheet: Any, tree: Any) -> dict[Any, dict[str, str]]:
    """For each element: the winning value of each property, computed as a browser would."""
    winners: dict[Any, dict[str, tuple[tuple[int, int, int], int, str]]] = {}
    order = 0
    for rule in sheet:
        if rule.type != rule.STYLE_RULE:
            continue
        for selector in rule.selectorList:
            specificity = cssselect.parse(selector.selectorText)[0].specificity()
            for element in tree.cssselect(selector.selectorText):
                for prop in rule.style:
                    order += 1
                    mine = (specificity, order, prop.value)
                    current = winners.setdefault(element, {}).get(prop.name)
                    if current is None or mine[:2] > current[:2]:
                        winners[element][prop.name] = mine
    return {el: {k: v[2] for k, v in props.items()} for el, props in winners.items()}


def test_every_style_rule_of_the_template_reaches_the_elements_it_targets() -> None:
    cssutils.log.setLevel("CRITICAL")
    sheet = cssutils.parseString(CSS.read_text(encoding="utf-8"), validate=False)
    archive = newsletter.render_archive(BuildContext((daily_digest(),), ()), SETTINGS)[
        "newsletter/index.html"
    ].decode()
    # Emails carry their styles inline; the archive is a web page and keeps the stylesheet.
    pages = [
        (render(daily_digest()).html, True),
        (render(big_digest()).html, True),  # the shortened email shows the notice
        (archive, False),
    ]
    matched: set[str] = set()
    checked = 0
    for html, inlined in pages:
        tree = doc(html)
        for rule in sheet:
            if rule.type == rule.STYLE_RULE and tree.cssselect(rule.selectorText):
                matched.add(rule.selectorText)
        if not inlined:
            continue
        for element, expected in _declared_styles(sheet, tree).items():
            actual = {p.name: p.value for p in cssutils.parseStyle(element.get("style", ""))}
            for name, value in expected.items():
                assert actual.get(name) == value, (element.tag, element.get("class"), name)
                checked += 1
    rules = {r.selectorText for r in sheet if r.type == r.STYLE_RULE}
    assert rules - matched == set(), "rules that style nothing"
    assert checked > 500


def test_css_inlining_prints_nothing_to_the_terminal(capfd: pytest.CaptureFixture[str]) -> None:
    # As in a fresh process: cssutils at its default level, premailer not yet set up.
    cssutils.log.setLevel("WARNING")
    newsletter._premailer.cache_clear()
    render(daily_digest())
    out, err = capfd.readouterr()
    assert out == "" and err == ""


# ---------------------------------------------------------------------------------------------
# Plain text


def test_the_text_part_is_written_for_reading() -> None:
    text = render(daily_digest()).text
    assert text.startswith("ML Paper Digest · Daily digest 2021-03-30\n=====")
    assert "\n1.  [LG] * Understanding Robustness of Transformers, part 1\n" in text
    assert "    理解Transformer图像分类的鲁棒性\n" in text
    assert "    S Bhojanapalli, A Chakrabarti, D Glasner\n" in text
    assert "    @ Google Research\n" in text
    assert "    arXiv: https://arxiv.org/abs/2103.00001\n" in text
    assert "Web version:  https://digest.example.org/newsletter/2021-03-30.html" in text
    assert "<" not in text


def test_text_lines_fit_72_columns_and_urls_stay_whole() -> None:
    long_url = "https://example.org/" + "x" * 90
    digest = letter_digest([letter_item(1, url=long_url, links=()), letter_item(2)])
    text = render(digest).text
    for line in text.splitlines():
        if display_width(line) > 72:
            assert "https://" in line, line
    assert long_url in text


# ---------------------------------------------------------------------------------------------
# Size budget


def eml_size(letter: newsletter.Newsletter) -> int:
    return len(message.as_bytes(message.compose(letter, SETTINGS)))


def test_a_60_paper_digest_with_long_abstracts_stays_under_the_budget() -> None:
    digest = big_digest(60)
    letter = render(digest)
    assert eml_size(letter) <= SETTINGS.newsletter.size_budget
    assert letter.count == 60
    assert letter.degradation > 0
    notice = doc(letter.html).cssselect(".notice")[0]
    assert "shortened" in notice.text_content()
    assert notice.cssselect("a")[0].get("href").endswith("/newsletter/2021-03-30.html")
    assert "This email is shortened" in letter.text


def test_the_email_degrades_in_the_planned_order() -> None:
    digest = big_digest(60)
    budgets = (600_000, 450_000, 300_000, 200_000, 100_000, 40_000, 15_000)
    levels = []
    for budget in budgets:
        settings = replace(SETTINGS, newsletter=NewsletterSettings(size_budget=budget))
        letter = newsletter.render_newsletter(digest, settings)
        assert letter is not None
        size = len(message.as_bytes(message.compose(letter, settings)))
        assert size <= budget
        levels.append(letter.degradation)
    assert levels == [0, 1, 2, 3, 4, 5, 5]
    # The smallest budget keeps the first papers, titles only, and says how many are shown.
    letter = newsletter.render_newsletter(
        digest, replace(SETTINGS, newsletter=NewsletterSettings(size_budget=15_000))
    )
    assert letter is not None
    assert letter.count == 60
    assert "shown here" in letter.text
    assert not doc(letter.html).cssselect(".abstract, .summary-zh, .byline")


def test_the_web_version_of_a_shortened_email_is_complete() -> None:
    files = newsletter.render_issue_files(big_digest(60), SETTINGS)
    html = files["newsletter/2021-03-30.html"].decode()
    assert not doc(html).cssselect(".notice")
    assert len(doc(html).cssselect(".abstract")) == 60
    eml = files["newsletter/2021-03-30.eml"]
    assert len(eml) <= SETTINGS.newsletter.size_budget


def test_one_paper_with_a_huge_title_and_abstract_stays_within_the_budget() -> None:
    # Items made by hand, not by the parser: the budget holds whatever the fields hold.
    huge = letter_item(
        1,
        title="Enormous " * 2_500_000,
        title_zh="巨" * 3_000_000,
        abstract="word " * 300_000,
        summary_zh="摘" * 300_000,
        authors=("A " * 100_000,),
        affiliations=("Lab " * 100_000,),
        url="https://example.org/" + "x" * 3_000_000,
        links=(Link("other", "https://example.org/" + "y" * 3_000_000),),
    )
    digest = letter_digest([huge], summary="摘要:" + "长" * 3_000_000)
    files = newsletter.render_issue_files(digest, SETTINGS)
    assert len(files["newsletter/2021-03-30.eml"]) <= SETTINGS.newsletter.size_budget
    for name in ("newsletter/2021-03-30.html",):
        html = files[name].decode()
        assert html.rstrip().endswith("</html>")
        assert doc(html).cssselect(".footer")
        assert len(html) < 1_000_000
    letter = newsletter.render_newsletter(digest, SETTINGS)
    assert letter is not None
    assert eml_size(letter) <= SETTINGS.newsletter.size_budget
    assert letter.html.rstrip().endswith("</html>")
    assert doc(letter.html).cssselect(".footer")
    assert "1 paper" in letter.text


# ---------------------------------------------------------------------------------------------
# Files, archive, determinism


def test_issue_files_are_html_text_and_eml_named_by_digest_id() -> None:
    files = newsletter.render_issue_files(daily_digest(), SETTINGS)
    assert sorted(files) == [
        # The web copy for a subscriber of each category of the digest.
        "newsletter/2021-03-30.cl.html",
        "newsletter/2021-03-30.cv.html",
        "newsletter/2021-03-30.eml",
        "newsletter/2021-03-30.html",
        "newsletter/2021-03-30.lg.html",
        "newsletter/2021-03-30.ro.html",
        "newsletter/2021-03-30.txt",
    ]
    assert sorted(newsletter.render_issue_files(weekly_digest(), SETTINGS)) == [
        "newsletter/2020-07-11-weekly.eml",
        "newsletter/2020-07-11-weekly.html",
        "newsletter/2020-07-11-weekly.txt",
    ]
    eml = files["newsletter/2021-03-30.eml"]
    parsed = email.message_from_bytes(eml, policy=email.policy.default)
    assert parsed.get_content_type() == "multipart/alternative"


def test_the_eml_carries_the_same_html_and_text_as_the_web_files() -> None:
    files = newsletter.render_issue_files(daily_digest(), SETTINGS)
    parsed = email.message_from_bytes(
        files["newsletter/2021-03-30.eml"], policy=email.policy.default
    )
    assert isinstance(parsed, email.message.EmailMessage)
    text, html = (part.get_content().replace("\r\n", "\n") for part in parsed.iter_parts())
    assert text == files["newsletter/2021-03-30.txt"].decode()
    assert html.rstrip("\n") == files["newsletter/2021-03-30.html"].decode().rstrip("\n")


def test_a_templates_folder_without_the_newsletter_templates_is_a_config_error(
    tmp_path: Path,
) -> None:
    (tmp_path / "newsletter").mkdir()
    (tmp_path / "newsletter" / "email.html").write_text("<p></p>", encoding="utf-8")
    settings = replace(SETTINGS, paths=replace(SETTINGS.paths, templates=tmp_path))
    with pytest.raises(ConfigError, match=re.escape("email.txt, archive.html, newsletter.css")):
        newsletter.render_newsletter(daily_digest(), settings)


def test_a_digest_without_papers_has_no_newsletter_files() -> None:
    assert newsletter.render_issue_files(letter_digest([]), SETTINGS) == {}


def test_identical_input_gives_identical_bytes() -> None:
    first = newsletter.render_issue_files(daily_digest(), SETTINGS)
    second = newsletter.render_issue_files(daily_digest(), SETTINGS)
    assert first == second


def test_the_archive_lists_every_issue_newest_first_with_counts_and_links() -> None:
    ctx = BuildContext((daily_digest(), weekly_digest()), ())
    html = newsletter.render_archive(ctx, SETTINGS)["newsletter/index.html"].decode()
    tree = doc(html)
    rows = tree.cssselect(".archive-row")
    assert [r.cssselect(".archive-date")[0].text_content() for r in rows] == [
        "2021-03-30",
        "2020-07-11 · weekly",
    ]
    assert "5 papers" in rows[0].text_content()
    assert "1 starred" in rows[0].text_content()
    assert "3 papers" in rows[1].text_content()
    links = [a.get("href") for a in rows[0].iter("a")]
    assert links == ["2021-03-30.html", "2021-03-30.html", "2021-03-30.txt", "2021-03-30.eml"]


def test_the_archive_is_a_web_page_with_the_newsletter_stylesheet_in_a_style_block() -> None:
    ctx = BuildContext((daily_digest(),), ())
    html = newsletter.render_archive(ctx, SETTINGS)["newsletter/index.html"].decode()
    tree = doc(html)
    styles = "".join(s.text_content() for s in tree.cssselect("head style"))
    assert CSS.read_text(encoding="utf-8").strip() in styles
    assert not tree.cssselect("[style]")


def lighten(digest: Digest) -> Digest:
    """The digest as the build keeps a paper no page shows: identity, titles, category."""
    items = tuple(
        replace(
            item, summary_zh=None, abstract=None, notes=None, authors=(), affiliations=(),
            authors_truncated=False, links=(), url=None,
        )
        for item in digest.items
    )
    return replace(digest, items=items, warnings=())


def test_an_archive_row_needs_only_what_a_light_digest_keeps() -> None:
    full = daily_digest()
    light = lighten(full)
    assert light.items[0].abstract is None and full.items[0].abstract is not None
    assert newsletter.render_archive(BuildContext((light,), ()), SETTINGS) == (
        newsletter.render_archive(BuildContext((full,), ()), SETTINGS)
    )


def test_an_archive_row_without_a_summary_line_lists_the_first_chinese_titles() -> None:
    digest = replace(daily_digest(), summary=None)
    html = newsletter.render_archive(BuildContext((digest,), ()), SETTINGS)[
        "newsletter/index.html"
    ].decode()
    summary = doc(html).cssselect(".archive-row .summary-zh")[0].text_content()
    view = issue.issue_for(digest, None)
    assert summary == newsletter._preheader(view)
    assert summary.startswith(view.papers[0].title_zh or view.papers[0].title)


def sample_digests() -> list[Digest]:
    from feeds.parse import parse_file

    return [parse_file(path, tz=SETTINGS.site.tz) for path in sorted(SAMPLE_DIGESTS.glob("*.txt"))]


# Category copies pinned byte for byte: one. The others are the same rendering with another
# filter; that each holds exactly its category's papers is checked for every one below.
PINNED_COPIES = {"2021-03-30.cv.html"}


def is_category_copy(name: str) -> bool:
    """newsletter/<id>.<slug>.html (digest ids and slugs hold no dot)."""
    return name.rsplit("/", 1)[-1].count(".") == 2


def test_sample_digests_match_their_golden_html_text_and_eml() -> None:
    for digest in sample_digests():
        files = newsletter.render_issue_files(digest, SETTINGS)
        stem = f"newsletter/{digest.id}"
        assert {f"{stem}.html", f"{stem}.txt", f"{stem}.eml"} <= set(files)
        for name, data in files.items():
            path = GOLDEN / name.rsplit("/", 1)[1]
            if is_category_copy(name) and path.name not in PINNED_COPIES:
                continue
            if REGENERATE:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
            assert path.read_bytes() == data, f"{path} differs; FEEDS_REGENERATE_GOLDEN=1 updates"


def test_every_category_copy_of_the_samples_holds_exactly_its_categorys_papers() -> None:
    from feeds.catalog import category_slug

    checked = 0
    for digest in sample_digests():
        files = newsletter.render_issue_files(digest, SETTINGS)
        copies = {name for name in files if is_category_copy(name)}
        codes: dict[str, set[str]] = {}
        if digest.format != "weekly":
            for item in digest.items:
                if item.category:
                    codes.setdefault(category_slug(item.category), set()).add(item.category)
        assert copies == {f"newsletter/{digest.id}.{slug}.html" for slug in codes}
        every = {p.anchor for p in issue.issue_for(digest, None).papers}
        for slug, group in codes.items():
            tree = doc(files[f"newsletter/{digest.id}.{slug}.html"].decode("utf-8"))
            shown = [e.get("id") for e in tree.xpath("//*[@id]") if e.get("id") in every]
            wanted = [p.anchor for p in issue.issue_for(digest, frozenset(group)).papers]
            assert shown == wanted and wanted, (digest.id, slug)
            assert {b.text for b in tree.cssselect(".badge")} == group
            # A web page: its stylesheet applies from a <style> block, nothing inlined.
            assert tree.cssselect("head style") and not tree.cssselect("[style]")
            checked += 1
    assert checked == 14


def test_every_sample_digest_fits_the_budget_without_leaving_anything_out() -> None:
    for digest in sample_digests():
        letter = render(digest)
        assert letter.degradation == 0, digest.id
        assert eml_size(letter) <= SETTINGS.newsletter.size_budget - newsletter.RECIPIENT_HEADROOM
        assert letter.count == len({item.key for item in digest.items})
