"""Fixtures for the browser tests: one private JupyterLab and one headless Chromium per session.

Artefacts (screenshots, the Lab log, a screenshot of the page when a test fails) go to
$COBOT_BROWSER_ARTIFACTS, default <pytest's basetemp>/artifacts. With COBOT_UPDATE_SCREENSHOTS=1
the final screenshots are also copied to docs/images/ (the committed ones in the README).
COBOT_BROWSER_BREAK=widgets starts Lab with the ipywidgets front end disabled: a negative control
under which these tests must fail.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from lab_harness import (
    CHROMIUM_ARGS,
    Lab,
    NotebookUI,
    chromium_executable,
    running_lab,
)

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "images"
VIEWPORT = {"width": 1400, "height": 1000}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Remember each phase's report on the item, so fixtures can tell a failed test."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> Path:
    chosen = os.environ.get("COBOT_BROWSER_ARTIFACTS")
    path = Path(chosen) if chosen else tmp_path_factory.getbasetemp() / "artifacts"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def lab(tmp_path_factory, artifacts) -> Iterator[Lab]:
    """JupyterLab on 127.0.0.1 serving the repository; stopped (with its kernels) afterwards."""
    broken = os.environ.get("COBOT_BROWSER_BREAK", "") == "widgets"
    workdir = tmp_path_factory.mktemp("lab")
    try:
        with running_lab(ROOT, workdir, disable_widgets=broken) as server:
            yield server
    finally:
        for log in workdir.glob("*/jupyterlab.log"):
            shutil.copy(log, artifacts / "jupyterlab.log")


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    """Debian's Chromium, headless, with a fresh profile (never a downloaded browser)."""
    from playwright.sync_api import sync_playwright

    executable = chromium_executable()
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=executable,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport=VIEWPORT,
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def notebook(request, lab: Lab, browser, artifacts) -> Iterator:
    """Open a notebook in Lab: `ui = notebook("notebooks/x.ipynb")` returns a NotebookUI.

    The file must be byte-identical afterwards (autosave is off and nothing is saved), and the
    server plus its kernels must listen on loopback only.
    """
    pages, hashes = [], {}

    def open_notebook(relpath: str) -> NotebookUI:
        path = ROOT / relpath
        assert path.is_file(), f"{relpath} not found in {ROOT}"
        hashes[path] = hashlib.sha256(path.read_bytes()).hexdigest()
        page = browser.new_page()
        page.set_default_timeout(60_000)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        pages.append((page, errors))
        ui = NotebookUI(page)
        ui.open(lab, relpath)
        return ui

    yield open_notebook

    failed = (
        getattr(request.node, "report_call", None) is not None and request.node.report_call.failed
    )
    for number, (page, errors) in enumerate(pages):
        if failed:
            page.screenshot(
                path=artifacts / f"FAILED-{request.node.name}-{number}.png", full_page=True
            )
        if errors:
            (artifacts / f"{request.node.name}-{number}-page-errors.txt").write_text(
                "\n".join(errors)
            )
        page.close()
    for path, digest in hashes.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, f"{path} was modified"


@pytest.fixture
def screenshot(artifacts: Path):
    """`screenshot(locator, name)`: into the artefacts; into docs/images when asked to."""

    def take(locator, name: str) -> Path:
        target = artifacts / name
        locator.screenshot(path=target)
        if os.environ.get("COBOT_UPDATE_SCREENSHOTS") == "1":
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copy(target, SCREENSHOTS / name)
        return target

    return take
