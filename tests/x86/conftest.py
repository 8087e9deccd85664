"""Fixtures for the x86 tests."""

import pytest
from x86_tables import Tables


@pytest.fixture
def tables() -> Tables:
    return Tables()
