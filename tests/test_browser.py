"""The newsletter, its archive and the site's index in a real headless Chromium.

At a phone width (375 px) and a desktop width (800 px): nothing scrolls sideways, every paper
title is on screen, and the responsive and dark-mode rules that premailer left in <style> still
win over the inlined styles. Screenshots go to tests/.artifacts/<test>/ for people to look at.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from feeds.config import NewsletterSettings, Settings

pytestmark = pytest.mark.browser

WIDTHS = (375, 800)
NEWSLETTER_TITLES = ".paper-title, .more-title"

# What a browser finds about each element matching a selector: its box and whether it shows.
_BOXES = """(selector) => [...document.querySelectorAll(selector)].map((el) => {
  const box = el.getBoundingClientRect();
  return {
    text: el.textContent.trim().slice(0, 80),
    left: box.left, right: box.right, width: box.width, height: box.height,
    shown: el.checkVisibility({checkOpacity: true, checkVisibilityCSS: true}),
  };
})"""


@pytest.fixture(scope="module")
def site(built_site: Path) -> Path:
    return built_site


def open_page(chromium: Any, path: Path, width: int, *, dark: bool = False) -> Any:
    page = chromium.new_page()
    page.set_viewport_size({"width": width, "height": 900})
    if dark:
        page.emulate_media(color_scheme="dark")
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page


def check_layout(page: Any, selector: str, width: int, shot: Path) -> list[dict[str, Any]]:
    """No sideways scrolling; every title matching `selector` is shown inside the viewport."""
    page.screenshot(path=str(shot), full_page=True)
    scroll = page.evaluate("document.documentElement.scrollWidth")
    inner = page.evaluate("window.innerWidth")
    assert inner == width
    assert scroll <= inner, f"{shot.name}: page is {scroll}px wide in a {inner}px window"
    boxes: list[dict[str, Any]] = page.evaluate(_BOXES, selector)
    assert boxes, f"{shot.name}: no element matches {selector}"
    for box in boxes:
        assert box["shown"], box
        assert box["width"] > 0 and box["height"] > 0, box
        assert box["left"] >= 0 and box["right"] <= inner, box
    return boxes


def newsletters(site: Path) -> list[Path]:
    pages = sorted((site / "newsletter").glob("*.html"))
    # Not the archive, nor the web copies of one category ("<id>.<slug>.html").
    return [p for p in pages if p.name != "index.html" and "." not in p.stem]


@pytest.mark.parametrize("width", WIDTHS)
def test_every_sample_newsletter_fits_the_window_and_shows_every_title(
    chromium: Any, site: Path, width: int, artifacts_dir: Path
) -> None:
    pages = newsletters(site)
    assert len(pages) == 5
    for path in pages:
        page = open_page(chromium, path, width)
        boxes = check_layout(page, NEWSLETTER_TITLES, width, artifacts_dir / f"{path.stem}.png")
        assert len(boxes) >= 9
        page.close()


@pytest.mark.parametrize("width", WIDTHS)
def test_the_newsletter_archive_fits_the_window_and_lists_every_issue(
    chromium: Any, site: Path, width: int, artifacts_dir: Path
) -> None:
    page = open_page(chromium, site / "newsletter" / "index.html", width)
    boxes = check_layout(page, ".archive-title", width, artifacts_dir / "archive.png")
    assert len(boxes) == 5
    assert boxes[0]["text"].endswith("2022-08-13")
    page.close()


@pytest.mark.parametrize("width", WIDTHS)
def test_the_site_index_fits_the_window_and_shows_its_paper_titles(
    chromium: Any, site: Path, width: int, artifacts_dir: Path
) -> None:
    page = open_page(chromium, site / "index.html", width)
    check_layout(page, "main h3, main .title", width, artifacts_dir / "index.png")
    assert page.locator('a[href="newsletter/index.html"]').count() >= 1
    page.close()


def test_the_phone_layout_rules_win_over_the_inlined_desktop_styles(
    chromium: Any, site: Path
) -> None:
    path = site / "newsletter" / "2021-03-30.html"
    widths = {}
    for width in WIDTHS:
        page = open_page(chromium, path, width)
        widths[width] = page.evaluate(
            """() => [document.querySelector('.container').getBoundingClientRect().width,
                      getComputedStyle(document.querySelector('.paper')).paddingLeft]"""
        )
        page.close()
    assert widths[800] == [600, "28px"]
    assert widths[375] == [375, "16px"]


def test_dark_mode_rules_recolor_the_email(chromium: Any, site: Path, artifacts_dir: Path) -> None:
    path = site / "newsletter" / "2022-08-13.html"
    colors = {}
    for dark in (False, True):
        page = open_page(chromium, path, 375, dark=dark)
        if dark:
            page.screenshot(path=str(artifacts_dir / "dark.png"), full_page=True)
        colors[dark] = page.evaluate(
            """() => [getComputedStyle(document.querySelector('.container')).backgroundColor,
                      getComputedStyle(document.querySelector('.summary-zh')).color]"""
        )
        page.close()
    assert colors[False] == ["rgb(255, 255, 255)", "rgb(47, 47, 47)"]
    assert colors[True] == ["rgb(28, 31, 36)", "rgb(228, 228, 228)"]


def test_a_shortened_newsletter_still_fits_a_phone(
    chromium: Any, tmp_path: Path, artifacts_dir: Path
) -> None:
    from test_newsletter import big_digest

    from feeds import newsletter

    settings = replace(Settings(), newsletter=NewsletterSettings(size_budget=60_000))
    letter = newsletter.render_newsletter(big_digest(60), settings)
    assert letter is not None and letter.degradation > 0
    path = tmp_path / "shortened.html"
    path.write_text(letter.html, encoding="utf-8")
    for width in WIDTHS:
        page = open_page(chromium, path, width)
        check_layout(
            page, ".notice, " + NEWSLETTER_TITLES, width, artifacts_dir / f"short-{width}.png"
        )
        page.close()


def html_part(eml: Path) -> str:
    from email import message_from_bytes, policy

    msg = message_from_bytes(eml.read_bytes(), policy=policy.default)
    body = msg.get_body(("html",))  # type: ignore[attr-defined]
    assert body is not None, eml
    text: str = body.get_content()
    return text


@pytest.mark.parametrize("width", [320, 375])
def test_every_sample_email_fits_a_phone_with_its_style_sheet_dropped(
    chromium: Any, site: Path, width: int, tmp_path: Path, artifacts_dir: Path
) -> None:
    """What a client that drops <style> shows: the inlined styles alone must fit the phone."""
    import re

    emails = sorted((site / "newsletter").glob("*.eml"))
    assert len(emails) == 5
    for eml in emails:
        html = html_part(eml)
        assert "<style" in html
        bare = re.sub(r"<style\b.*?</style>", "", html, flags=re.S | re.I)
        assert "<style" not in bare and "@media" not in bare
        path = tmp_path / f"{eml.stem}-{width}.html"
        path.write_text(bare, encoding="utf-8")
        page = open_page(chromium, path, width)
        boxes = check_layout(
            page, NEWSLETTER_TITLES, width, artifacts_dir / f"{eml.stem}-{width}.png"
        )
        assert len(boxes) >= 9
        page.close()


def test_only_outlook_gets_a_fixed_width_table_and_everybody_else_a_fluid_one(site: Path) -> None:
    import re

    import lxml.html

    html = html_part(site / "newsletter" / "2021-03-30.eml")
    mso = re.findall(r"<!--\[if mso\]>(.*?)<!\[endif\]-->", html, flags=re.S)
    assert any('width="600"' in block for block in mso)
    # Outside Outlook's conditional comments nothing is fixed at 600 px: the container is 100 %
    # wide and at most 600 px, from its inline style alone.
    document = lxml.html.document_fromstring(re.sub(r"<!--.*?-->", "", html, flags=re.S))
    assert not document.xpath('//*[@width="600"]')
    styles = " ".join(document.xpath("//@style"))
    assert not re.search(r"(?<![-\w])width:\s*600px", styles)
    container = document.xpath('//table[contains(@class, "container")]')[0]
    assert container.get("width") == "100%"
    assert "width:100%" in container.get("style").replace(" ", "")
    assert "max-width:600px" in container.get("style").replace(" ", "")
