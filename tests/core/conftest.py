"""Shared fixtures for the vm_map core tests."""

from __future__ import annotations

import pytest

from vmlab.core import sysctl_defaults


@pytest.fixture(autouse=True)
def _fresh_sysctls():
    sysctl_defaults()
    yield
    sysctl_defaults()
