"""x86-64 paging: emulated physical memory, the page walk (Intel SDM vol. 3A ch. 4), a TLB
model, and FreeBSD's amd64 pmap (sys/amd64/amd64/pmap.c) writing real page tables."""

from .physmem import *  # noqa: F403
from .physmem import __all__ as _physmem_all

__all__ = [*_physmem_all]
