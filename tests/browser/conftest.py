"""Fixtures for real-browser tests: a JupyterLab server, Debian's chromium, a watched page.

Where a browser test *must* run (CI, or VMLAB_REQUIRE_BROWSER=1) a missing Playwright or
chromium is a hard error, never a skip; elsewhere those tests skip with a reason. `.ci/run`
also fails on any skipped browser test. See docs/testing.md.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest
import vmlab_browser as vb

REQUIRED = os.environ.get("VMLAB_REQUIRE_BROWSER") == "1" or os.environ.get("CI", "").lower() in {
    "1",
    "true",
    "yes",
}

try:
    from playwright.sync_api import sync_playwright
except ImportError as exc:  # playwright not installed
    sync_playwright = None
    _IMPORT_ERROR = f"playwright is not importable ({exc}); pip install -e '.[browser]'"


def _unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(
            f"browser tests must run here (CI or VMLAB_REQUIRE_BROWSER=1) but {reason}",
            pytrace=False,
        )
    pytest.skip(f"browser unavailable: {reason}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)  # lets the page fixture know the test failed
    return rep


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if sync_playwright is None:
        _unavailable(_IMPORT_ERROR)
    path = vb.chromium_path()
    if path is None:
        _unavailable("chromium is missing (apt-get install chromium; never `playwright install`)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=path, args=vb.CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def lab(browser) -> Iterator[object]:
    """One JupyterLab for the whole session (loopback, free port, token, copy of notebooks/)."""
    server = vb.start_lab()
    yield server
    with contextlib.suppress(OSError):  # kept for debugging a failed run
        (vb.shots_dir() / "lab.log").write_text(server.log_tail(200_000))
    server.stop()


@pytest.fixture
def page(browser, request) -> Iterator[object]:
    """A fresh page (1400x1000) that records page errors; on failure its screenshot is kept in
    the shots dir as FAILED-<test>.png. Kernels the test started through Lab are shut down."""
    context = browser.new_context(viewport=vb.VIEWPORT)
    pg = vb.watch_page(context.new_page())
    yield pg
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        name = "".join(c if c.isalnum() or c in "-_." else "_" for c in request.node.name)
        with contextlib.suppress(Exception):  # a dead page must not hide the real failure
            vb.save_screenshot(pg, f"FAILED-{name}")
    context.close()
    server = request.node.funcargs.get("lab")
    if server is not None:  # free the kernels of this test's notebooks
        try:
            for s in server.api("GET", "/api/sessions") or []:
                server.api("DELETE", f"/api/sessions/{s['id']}")
        except OSError:
            pass
