"""Fixtures of the browser tests: a JupyterLab server and headless Debian Chromium driven by Playwright.

The browser is the system's chromium (`apt-get install chromium`), never one Playwright
downloads. Without it, or without the playwright package, the tests are skipped with the reason.
Screenshots go to `test-artifacts/` at the repository root (git-ignored); a failing test leaves
`<test name>-failure.png` there.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from typing import Any, Iterator

import pytest

from browser_lab import ARTIFACTS, JupyterLab

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
#: a tall window: JupyterLab's page does not scroll, its panels do, so the page is the window.
VIEWPORT = {"width": 1400, "height": 1500}


def chromium_path() -> str | None:
    """Debian's chromium (or NBFLOW_TEST_CHROMIUM), if it is installed."""
    candidates = [os.environ.get("NBFLOW_TEST_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")]
    return next((c for c in candidates if c and os.path.isfile(c) and os.access(c, os.X_OK)), None)


def _missing() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed (pip install -e '.[test]')"
    if importlib.util.find_spec("jupyterlab") is None:
        return "jupyterlab is not installed (pip install -e '.[test]')"
    if chromium_path() is None:
        return "Debian's chromium is not installed at /usr/bin/chromium (sudo apt-get install chromium)"
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(scope="module")
def jupyter_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterLab]:
    """A running JupyterLab on a free port with a random token and a scratch NBFLOW_HOME."""
    reason = _missing()
    if reason:
        pytest.skip(reason)
    base = tmp_path_factory.mktemp("jupyter-lab")
    server = JupyterLab(base, nbflow_home=base / "nbflow-home")
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Debian Chromium, launched by Playwright."""
    reason = _missing()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser page; a screenshot of it is saved when the test fails."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        yield page
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            ARTIFACTS.mkdir(exist_ok=True)
            try:
                page.screenshot(path=str(ARTIFACTS / f"{request.node.name}-failure.png"), full_page=True)
            except Exception:  # the page may be the thing that broke
                pass
        context.close()
