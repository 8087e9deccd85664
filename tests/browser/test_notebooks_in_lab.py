"""Every notebook in notebooks/ opened in JupyterLab in headless chromium: all cells run, every
widget and bokeh canvas rendered, no error output, vmlab players step; one screenshot each.

Parametrised over the files found at collection time, so a lesson added later is covered
without touching this file. Notebook-specific browser checks go in their own test modules and
reuse `vmlab_browser.open_and_run`.
"""

from __future__ import annotations

import pytest
from vmlab_browser import all_notebooks, open_and_run

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("notebook", all_notebooks())
def test_notebook_in_lab(lab, page, notebook: str) -> None:
    run = open_and_run(page, lab, notebook)
    assert run.code_cells > 0
    assert run.screenshot is not None and run.screenshot.stat().st_size > 0
