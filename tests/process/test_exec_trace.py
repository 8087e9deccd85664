"""exec_image's layout and the trace/snapshot format of the process layer."""

import json

from vmlab.core import (
    MAP_ENTRY,
    SHAREDPAGE_LA48,
    STEP_KINDS,
    USRSTACK,
    VM_INHERIT,
    VM_PROT,
    ProcessSnapshot,
    exec_image,
    fork,
    recording,
    vm_read,
    vm_write,
)

P = 4096
R, W, X = VM_PROT.READ, VM_PROT.WRITE, VM_PROT.EXECUTE


def test_exec_layout_like_procstat(machine):
    vm = exec_image(machine, rodata_pages=1, text_pages=4, data_pages=2, bss_pages=1)
    rows = [(e.start, e.end, int(e.protection), e.object.type.name if e.object else None)
            for e in vm.vm_map.entries()]
    assert rows == [
        (0x200000, 0x201000, R, "VNODE"),
        (0x201000, 0x205000, R | X, "VNODE"),
        (0x205000, 0x207000, R | W, "VNODE"),
        (0x207000, 0x208000, R | W, None),
        (USRSTACK - (512 << 20), USRSTACK - 0x20000, 0, None),
        (USRSTACK - 0x20000, USRSTACK, R | W, None),
        (SHAREDPAGE_LA48, SHAREDPAGE_LA48 + P, R | X, "PHYS"),
    ]
    es = vm.vm_map.entries()
    assert all(e.eflags & MAP_ENTRY.COW for e in es[:3])
    assert es[-1].inheritance == VM_INHERIT.SHARE
    assert (vm.vm_taddr, vm.vm_daddr, vm.vm_tsize, vm.vm_dsize) == (0x200000, 0x205000, 5, 3)
    assert vm.vm_maxsaddr == USRSTACK - (512 << 20) and vm.vm_ssize == 32
    assert vm_read(vm, 0x205000) == "/bin/prog[5]"
    assert vm_read(vm, SHAREDPAGE_LA48).startswith("shared page")
    vm_write(vm, 0x205000, "patched")  # private: the file is untouched
    assert machine.files["/bin/prog"].contents[5] == "/bin/prog[5]"


def test_trace_steps_and_snapshots_are_json(machine):
    vm = exec_image(machine)
    with recording(vm) as tr:
        vm_read(vm, 0x202000)
        vm_write(vm, USRSTACK - 0x20000 - 16, 1)  # grows the stack
        _, ch = fork(vm)
    kinds = set(tr.kinds())
    assert {"fault", "lookup", "pagein", "prefault_candidate", "grow", "fork_entry",
            "pmap_enter", "fault_done"} <= kinds
    assert kinds <= set(STEP_KINDS)
    procs = [s for s in tr.states if isinstance(s, ProcessSnapshot)]
    assert procs and procs[-1].map.nentries == vm.vm_map.nentries
    json.dumps(tr.to_dict())
    grow = next(s for s in tr.steps if s.kind == "grow")
    assert grow.data["grow"] == 0x20000 and grow.data["procstack"] is True
    snap = tr.state_at(tr.steps.index(grow))
    assert snap.vm_ssize == 64
