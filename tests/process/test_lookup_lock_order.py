"""vm_map_lookup changes the entry (shadow object, cleared NEEDS_COPY) only while it holds the
map exclusively: between vm_map_lock_upgrade and vm_map_lock_downgrade (sys/vm/vm_map.c,
vm_map_lookup). The trace must show the shadow step inside that window."""

from __future__ import annotations

from vmlab.core import (
    MAP_ANON,
    MAP_PRIVATE,
    PROT_READ,
    PROT_WRITE,
    VM_PROT,
    fork,
    mmap,
    recording,
    vm_fault,
    vm_write,
    vmspace_alloc,
)


def _lock_window(tr, kind: str) -> list[str]:
    """The lock mode changes and the ``kind`` steps, in trace order."""
    out = []
    for s in tr.steps:
        if s.kind == kind:
            out.append(kind)
        elif s.kind == "lock" and ("exclusive" in s.text or "downgrades" in s.text):
            out.append("downgrade" if "downgrades" in s.text else "exclusive")
    return out


def test_cow_write_fault_shadows_under_the_exclusive_lock() -> None:
    vm = vmspace_alloc()
    err, a = mmap(vm, 0, 0x2000, PROT_READ | PROT_WRITE, MAP_ANON | MAP_PRIVATE)
    assert err == 0
    vm_write(vm, a, 1)  # the entry gets its object before the fork
    err, child = fork(vm)
    assert err == 0 and child is not None
    with recording(child) as tr:
        assert vm_fault(child.vm_map, a, VM_PROT.WRITE) == 0
    seq = _lock_window(tr, "shadow")
    assert "shadow" in seq
    k = seq.index("shadow")
    assert seq[k - 1] == "exclusive" and seq[k + 1] == "downgrade"


def test_fork_entry_text_says_write_protected_only_when_pmap_protect_runs() -> None:
    """vm_map_copy_entry calls pmap_protect only for a writable source not already
    NEEDS_COPY; the fork_entry step must say so only then, and the PTE must agree."""
    from vmlab.core import exec_image, pmap_prot

    vm = exec_image(name="/bin/sh")
    err, a = mmap(vm, 0, 0x2000, PROT_READ | PROT_WRITE, MAP_ANON | MAP_PRIVATE)
    assert err == 0
    vm_write(vm, a, 1)
    assert pmap_prot(vm.vm_pmap, a) & VM_PROT.WRITE
    with recording(vm) as tr:
        err, child = fork(vm)
    said = {s.data["start"]: s.text for s in tr.steps if s.kind == "fork_entry"}
    assert "write-protected" in said[a]
    assert pmap_prot(vm.vm_pmap, a) == VM_PROT.READ
    text = min(k for k in said)  # the program's first (read-only, NEEDS_COPY) entry
    assert "write-protected" not in said[text] and "already NEEDS_COPY" in said[text]
