"""Fixtures for the process-layer tests: a fresh small machine per test, default sysctls."""

import pytest

from vmlab.core import Machine, sysctl_defaults, vmspace_alloc


@pytest.fixture(autouse=True)
def _defaults():
    sysctl_defaults()
    yield
    sysctl_defaults()


@pytest.fixture
def machine():
    return Machine(8 << 20, "mem")


@pytest.fixture(params=["mem", "amd64"])
def any_machine(request):
    return Machine(8 << 20, request.param)


@pytest.fixture
def vm(machine):
    return vmspace_alloc(machine=machine)
