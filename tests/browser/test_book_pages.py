"""The HTML book of the stored notebooks in a real browser (Debian's Chromium, headless).

The book is built from the committed, executed notebooks exactly as ``workbook.py run`` builds it
from its fresh copies, then every page is opened from disk (file:// URLs):

- it loads without console errors or page errors, and requests nothing from the network;
- every figure block is drawn by plotly.js (an SVG or WebGL plot replaces its static picture)
  and the page's math is typeset by the local MathJax;
- navigation works: the sidebar's table of contents leads to each notebook, "next" and
  "previous" walk the reading order, and each page lists its own sections;
- with JavaScript switched off, every figure shows its static picture instead.

Screenshots go to the artefacts folder (and docs/images/ with COBOT_UPDATE_SCREENSHOTS=1).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from cobot_lib.notebook.book import build_book
from cobot_lib.notebook.walkthrough import discover

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ("file:", "data:", "blob:", "about:")
ALL_DRAWN = (
    "() => [...document.querySelectorAll('.cobot-figure')]"
    ".every(b => b.classList.contains('cobot-figure-drawn'))"
)


@pytest.fixture(scope="module")
def book(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("book") / "book"
    build_book(discover(ROOT / "notebooks"), out)
    return out


def _pages(book: Path) -> list[Path]:
    return [book / f"{p.stem}.html" for p in discover(ROOT / "notebooks")]


def _open(browser, url: str):
    page = browser.new_page()
    page.set_default_timeout(90_000)
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type == "error" else None)  # fmt: skip
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("request", lambda r: problems.append(f"network: {r.url}")
            if not r.url.startswith(LOCAL) else None)  # fmt: skip
    page.goto(url, wait_until="load")
    return page, problems


def _shot(page, artifacts: Path, name: str) -> None:
    page.screenshot(path=artifacts / name)
    if os.environ.get("COBOT_UPDATE_SCREENSHOTS") == "1":
        (ROOT / "docs" / "images").mkdir(parents=True, exist_ok=True)
        shutil.copy(artifacts / name, ROOT / "docs" / "images" / name)


def test_every_page_loads_offline_and_draws_every_figure(book, browser, artifacts):
    drawn_total = 0
    for path in [book / "index.html", *_pages(book)]:
        page, problems = _open(browser, path.as_uri())
        figures = page.locator(".cobot-figure").count()
        page.wait_for_function(ALL_DRAWN)
        assert page.locator(".cobot-figure img.cobot-figure-static").count() == 0, path.name
        plots = page.locator(".cobot-figure .js-plotly-plot")
        assert plots.count() == figures, path.name
        for i in range(figures):  # something was drawn: plotly's SVG layers or a WebGL canvas
            assert plots.nth(i).locator("svg.main-svg, canvas").count() > 0, (path.name, i)
        if "$" in path.with_suffix(".html").read_text() or path.stem.startswith("01"):
            assert page.locator("mjx-container").count() > 0, f"no typeset math on {path.name}"
        if path.stem.startswith("01"):
            page.locator(".cobot-figure").nth(1).scroll_into_view_if_needed()
            _shot(page, artifacts, "book_01_t_product.png")
        page.close()
        assert problems == [], (path.name, problems)
        drawn_total += figures
    assert drawn_total >= 30


def test_navigation_by_toc_next_and_previous(book, browser, artifacts):
    page, problems = _open(browser, (book / "index.html").as_uri())
    _shot(page, artifacts, "book_index.png")
    stems = [p.stem for p in _pages(book)]
    toc = page.locator("nav.bd-docs-nav a.reference.internal")
    hrefs = [toc.nth(i).get_attribute("href") for i in range(toc.count())]
    assert [h for h in hrefs if h != "#"] == [f"{s}.html" for s in stems]  # "#": the home page
    toc.filter(has_text=stems[0][:2]).first.click()
    page.wait_for_url(f"**/{stems[0]}.html")
    for stem in stems[1:]:  # "next" walks the reading order, appendix last
        page.locator("a.right-next").click()
        page.wait_for_url(f"**/{stem}.html")
        sections = page.locator("nav.page-toc a")
        assert sections.count() >= 3, f"{stem}: its own table of contents is missing"
        assert "Summary" in " ".join(sections.all_inner_texts()), stem
    page.locator("a.left-prev").click()
    page.wait_for_url(f"**/{stems[-2]}.html")
    page.close()
    assert problems == [], problems


def test_without_javascript_every_figure_is_a_picture(book, browser, artifacts):
    page = browser.new_page()
    session = page.context.new_cdp_session(page)
    session.send("Emulation.setScriptExecutionDisabled", {"value": True})
    for path in _pages(book):
        page.goto(path.as_uri(), wait_until="load")
        blocks = page.locator(".cobot-figure")
        pictures = page.locator(".cobot-figure img.cobot-figure-static")
        assert pictures.count() == blocks.count(), path.name
        assert page.locator(".js-plotly-plot").count() == 0  # nothing drew them
        for i in range(pictures.count()):
            picture = pictures.nth(i)
            picture.scroll_into_view_if_needed()
            width = picture.evaluate("img => img.complete ? img.naturalWidth : 0")
            assert width > 100 and picture.is_visible(), (path.name, i)
        if path.stem.startswith("02"):  # the rotation slider's static picture
            page.locator("#turn-it-yourself").scroll_into_view_if_needed()
            _shot(page, artifacts, "book_02_without_javascript.png")
    page.close()
