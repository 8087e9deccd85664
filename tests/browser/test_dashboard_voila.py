"""The sandbox dashboard (notebooks/dashboard.ipynb) served by Voilà, as `make dashboard` does,
opened in headless chromium: every cell ran, widgets and bokeh canvases rendered, no error
output, players step. Until the dashboard exists this test skips with an allowed reason."""

from __future__ import annotations

import pytest
from vmlab_browser import (
    NOTEBOOKS,
    OPTIONAL_SKIP,
    check_outputs,
    exercise_players,
    open_voila,
    save_screenshot,
    shots_dir,
    start_voila,
)

pytestmark = pytest.mark.browser
DASHBOARD = "dashboard.ipynb"


def test_dashboard_in_voila(browser, page) -> None:
    if not (NOTEBOOKS / DASHBOARD).exists():
        pytest.skip(f"{OPTIONAL_SKIP} notebooks/{DASHBOARD} does not exist yet")
    server = start_voila(DASHBOARD)
    try:
        open_voila(page, server)
        exercise_players(page)
        page.wait_for_timeout(500)
        check_outputs(page)
        page.locator("body").evaluate("e => window.scrollTo(0, 0)")
        save_screenshot(page, "dashboard-voila")
    finally:
        (shots_dir() / "voila.log").write_text(server.log_tail(200_000))
        server.stop()
