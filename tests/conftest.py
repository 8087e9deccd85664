"""Settings and fixtures shared by every test directory (area-specific ones live in
tests/<area>/conftest.py).

Imports: pytest runs with ``--import-mode=importlib`` (pyproject), so two areas may both have a
``test_pmap.py``. Each ``tests/<area>/`` directory is put on ``sys.path`` here, so a test can
still import its area's helper module (``from core_util import ...``); helper module names
(not test module names) must therefore be unique across tests/.

Hypothesis: no per-example deadline (a loaded 2-core CI machine makes timing flaky; speed is
measured by benchmarks/, never by tests), and in CI print the blob that reproduces a failure.
Tests still choose their own `max_examples` with `@settings`.

Browser fixtures (any area may use them; see docs/testing.md): ``browser`` (Debian's chromium
through Playwright, one per test, so no Playwright instance outlives a test and areas never
clash: do not start your own ``sync_playwright``), ``page`` (watched for page errors,
screenshot kept on failure), ``lab`` (one JupyterLab for the session). Where a browser test must
run (CI, or VMLAB_REQUIRE_BROWSER=1) a missing Playwright or chromium is a hard error, never a
skip; elsewhere those tests skip with a reason.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

for _area in sorted(p for p in Path(__file__).parent.iterdir() if p.is_dir()):
    if not _area.name.startswith((".", "_")) and str(_area) not in sys.path:
        sys.path.insert(0, str(_area))

import vmlab_browser as vb  # noqa: E402 - lives in tests/browser, on sys.path just above

settings.register_profile("vmlab", deadline=None)
settings.register_profile("vmlab-ci", deadline=None, print_blob=True)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("vmlab-ci" if os.environ.get("CI") else "vmlab")
)

REQUIRE_BROWSER = os.environ.get("VMLAB_REQUIRE_BROWSER") == "1" or os.environ.get(
    "CI", ""
).lower() in {"1", "true", "yes"}


def _unavailable(reason: str) -> None:
    if REQUIRE_BROWSER:
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
def chromium_executable() -> str:
    """Path of Debian's chromium, after checking Playwright is importable (skip or fail)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        _unavailable(f"playwright is not importable ({exc}); pip install -e '.[browser]'")
    path = vb.chromium_path()
    if path is None:
        _unavailable("chromium is missing (apt-get install chromium; never `playwright install`)")
    return path


@pytest.fixture
def browser(chromium_executable: str) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium_executable, args=vb.CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def lab(chromium_executable: str) -> Iterator[object]:
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
        with contextlib.suppress(OSError):
            for s in server.api("GET", "/api/sessions") or []:
                server.api("DELETE", f"/api/sessions/{s['id']}")
