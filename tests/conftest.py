"""Settings shared by every test directory (keep area-specific fixtures in tests/<area>/).

Hypothesis: no per-example deadline (a loaded 2-core CI machine makes timing flaky; speed is
measured by benchmarks/, never by tests), and in CI print the blob that reproduces a failure.
Tests still choose their own `max_examples` with `@settings`.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("vmlab", deadline=None)
settings.register_profile("vmlab-ci", deadline=None, print_blob=True)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("vmlab-ci" if os.environ.get("CI") else "vmlab")
)
