"""axe-core in a real headless Chromium: the site's index, a feed page, an issue of the
newsletter and the archive, light and dark, at a phone and a desktop width: no violation.

axe-core comes from npm (tests/js/package.json and its lock file; `make test` installs it). It
is injected into each page as it is, so the rules are axe's defaults: WCAG 2.x A and AA
(contrast included) and the best practices (landmarks, headings).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import IN_CI, ROOT
from test_browser import open_page

pytestmark = pytest.mark.browser

AXE = ROOT / "tests" / "js" / "node_modules" / "axe-core" / "axe.min.js"
# The starred feed and the weekly picks show the star; the daily issue affiliations; then the
# web copy of what a subscriber to one category receives.
PAGES = (
    "index.html",
    "feeds/starred.html",
    "newsletter/2020-07-11-weekly.html",
    "newsletter/2021-03-30.html",
    "newsletter/2021-03-30.cv.html",
    "newsletter/index.html",
)

# Each violation as rule id, impact and the first few elements with axe's explanation.
_RUN = """async () => {
  const result = await axe.run(document, {resultTypes: ['violations']});
  return result.violations.map((v) => ({
    id: v.id, impact: v.impact,
    nodes: v.nodes.slice(0, 4).map((n) => n.target.join(' ') + ': ' + n.failureSummary),
  }));
}"""


@pytest.fixture(scope="module")
def axe() -> Path:
    if not AXE.is_file():
        reason = f"axe-core is not installed ({AXE}); `make test` installs it with npm"
        if IN_CI:
            pytest.fail(f"{reason}; CI must run the accessibility tests")
        pytest.skip(reason)
    return AXE


def violations(chromium: Any, path: Path, width: int, dark: bool, axe: Path) -> list[Any]:
    page = open_page(chromium, path, width, dark=dark)
    try:
        page.add_script_tag(path=str(axe))
        found: list[Any] = page.evaluate(_RUN)
        # Checked, not assumed: the scheme the page was rendered in is the one asked for.
        assert page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches") is dark
        return found
    finally:
        page.close()


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
@pytest.mark.parametrize("width", [375, 1280])
@pytest.mark.parametrize("name", PAGES)
def test_axe_finds_no_violation_on_the_site_and_the_newsletter(
    chromium: Any, built_site: Path, name: str, width: int, dark: bool, axe: Path
) -> None:
    found = violations(chromium, built_site / name, width, dark, axe)
    assert found == [], found


def test_axe_does_find_a_planted_contrast_failure_and_a_missing_landmark(
    chromium: Any, tmp_path: Path, axe: Path
) -> None:
    page = tmp_path / "bad.html"
    page.write_text(
        '<!DOCTYPE html><html lang="en"><head><title>t</title></head><body>'
        '<p style="color:#aaaaaa;background:#ffffff">low contrast</p></body></html>',
        encoding="utf-8",
    )
    ids = {v["id"] for v in violations(chromium, page, 375, False, axe)}
    assert {"color-contrast", "landmark-one-main"} <= ids


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
@pytest.mark.parametrize("width", [375, 1280])
@pytest.mark.parametrize("name", ["index.html", "newsletter/index.html"])
def test_axe_finds_no_violation_in_the_search_box_and_its_results(
    chromium: Any, served_site: str, name: str, width: int, dark: bool, axe: Path
) -> None:
    # Over HTTP: the search box shows only where its index loads, which file:// forbids.
    page = chromium.new_page()
    try:
        page.set_viewport_size({"width": width, "height": 900})
        page.emulate_media(color_scheme="dark" if dark else "light")
        page.goto(served_site + name)
        page.wait_for_selector("#search-q", state="visible", timeout=15_000)
        page.fill("#search-q", "self-supervised")
        page.wait_for_selector("#search-results .search-result mark", timeout=15_000)
        assert page.locator("#search-section").is_visible()
        page.add_script_tag(path=str(axe))
        found = page.evaluate(_RUN)
        assert found == [], found
    finally:
        page.close()
