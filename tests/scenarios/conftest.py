"""Fixtures for the scenario tests: a headless chromium for the HTML-export checks.

Same rules as tests/browser (docs/testing.md): where browser tests must run (CI or
VMLAB_REQUIRE_BROWSER=1) a missing Playwright or chromium fails the test; elsewhere it skips.
The chromium path, flags and screenshot folder come from tests/browser/vmlab_browser.py.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "browser"))
import vmlab_browser as vb  # noqa: E402

REQUIRED = os.environ.get("VMLAB_REQUIRE_BROWSER") == "1" or os.environ.get("CI", "").lower() in {
    "1", "true", "yes"}


def _unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"browser tests must run here (CI or VMLAB_REQUIRE_BROWSER=1) but {reason}",
                    pytrace=False)
    pytest.skip(f"browser unavailable: {reason}")


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        _unavailable(f"playwright is not importable ({exc})")
    path = vb.chromium_path()
    if path is None:
        _unavailable("chromium is missing (apt-get install chromium; never `playwright install`)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=path, args=vb.CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def shots() -> Path:
    return vb.shots_dir()
