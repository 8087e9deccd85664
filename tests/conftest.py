"""Settings shared by every test directory (keep area-specific fixtures in tests/<area>/).

Imports: pytest runs with ``--import-mode=importlib`` (pyproject), so two areas may both have a
``test_pmap.py``. Each ``tests/<area>/`` directory is put on ``sys.path`` here, so a test can
still import its area's helper module (``from core_util import ...``); helper module names
(not test module names) must therefore be unique across tests/.

Hypothesis: no per-example deadline (a loaded 2-core CI machine makes timing flaky; speed is
measured by benchmarks/, never by tests), and in CI print the blob that reproduces a failure.
Tests still choose their own `max_examples` with `@settings`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from hypothesis import settings

for _area in sorted(p for p in Path(__file__).parent.iterdir() if p.is_dir()):
    if not _area.name.startswith((".", "_")) and str(_area) not in sys.path:
        sys.path.insert(0, str(_area))

settings.register_profile("vmlab", deadline=None)
settings.register_profile("vmlab-ci", deadline=None, print_blob=True)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("vmlab-ci" if os.environ.get("CI") else "vmlab")
)
