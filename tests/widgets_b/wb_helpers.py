"""Shared set-ups for the WIDGETS-B tests: small processes built through the core's public
functions only (each on its own Machine, so tests are independent)."""

from __future__ import annotations

from typing import Any

from vmlab.core import (
    MAP_ANON,
    MAP_PRIVATE,
    PROT_READ,
    PROT_WRITE,
    Machine,
    exec_image,
    mmap,
    vm_read,
    vm_write,
    vmspace_alloc,
)

PAGE = 4096


def anon_process(pages: int = 16) -> tuple[Any, int]:
    """A process with one private anonymous mapping of ``pages`` pages; returns (vm, addr)."""
    vm = vmspace_alloc(machine=Machine(16 << 20))
    err, a = mmap(vm, 0, pages * PAGE, PROT_READ | PROT_WRITE, MAP_ANON | MAP_PRIVATE)
    assert err == 0
    return vm, a


def prefault_process() -> tuple[Any, int]:
    """Pages 0-6 and 8 resident, none mapped but +1/+2 of page 4 (a read of page 6 prefaulted
    them): a soft fault on page 4 then maps -1, -2, -3, skips +1, +2 and stops at +3."""
    vm, a = anon_process()
    for k in (0, 1, 2, 3, 4, 5, 6, 8):
        vm_write(vm, a + k * PAGE, k)
    vm.vm_pmap.remove(a, a + 16 * PAGE)
    vm_read(vm, a + 6 * PAGE)
    return vm, a


def exec_process() -> Any:
    return exec_image(Machine(16 << 20))


def texts(view: Any, prefix: str) -> list[str]:
    """Texts the view's canvas shows whose tag starts with ``prefix``."""
    return [t["text"] for t in view.canvas.shown("texts") if t["tag"].startswith(prefix)]


def boxes(view: Any, tag: str) -> list[dict[str, Any]]:
    return view.canvas.tagged(tag, "boxes")
