"""x86-64 paging: emulated physical memory, the page walk (Intel SDM vol. 3A ch. 4), a TLB
model, and FreeBSD's amd64 pmap (sys/amd64/amd64/pmap.c) writing real page tables."""

from .mmu import *  # noqa: F403
from .mmu import __all__ as _mmu_all
from .physmem import *  # noqa: F403
from .physmem import __all__ as _physmem_all
from .pmap import *  # noqa: F403
from .pmap import __all__ as _pmap_all
from .pte import *  # noqa: F403
from .pte import __all__ as _pte_all
from .tlb import *  # noqa: F403
from .tlb import __all__ as _tlb_all

__all__ = [*_physmem_all, *_pte_all, *_mmu_all, *_tlb_all, *_pmap_all]
