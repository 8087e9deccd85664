"""vmspace_fork: inheritance modes, COW setup, accounting, who sees which data."""

from vmlab.core import (
    INHERIT_NONE,
    INHERIT_SHARE,
    INHERIT_ZERO,
    MAP_ANON,
    MAP_ENTRY,
    MAP_GUARD,
    MAP_PRIVATE,
    MAP_SHARED,
    PROT_NONE,
    PROT_READ,
    PROT_WRITE,
    VM_INHERIT,
    VM_PROT,
    fork,
    minherit,
    mlock,
    mmap,
    pmap_prot,
    recording,
    vm_read,
    vm_write,
    vmspace_free,
)

P = 4096
RW = PROT_READ | PROT_WRITE


def anon(vm, n, flags=MAP_ANON | MAP_PRIVATE):
    err, a = mmap(vm, 0, n * P, RW, flags)
    assert err == 0
    return a


def entries(vm):
    return {e.start: e for e in vm.vm_map.entries()}


def test_copy_sets_cow_on_both_and_write_protects_parent(vm):
    a = anon(vm, 2)
    vm_write(vm, a, 1)
    obj = entries(vm)[a].object
    assert pmap_prot(vm.vm_pmap, a) == VM_PROT.READ | VM_PROT.WRITE
    err, ch = fork(vm)
    assert err == 0
    pe, ce = entries(vm)[a], entries(ch)[a]
    for e in (pe, ce):
        assert e.eflags & (MAP_ENTRY.COW | MAP_ENTRY.NEEDS_COPY) == (
            MAP_ENTRY.COW | MAP_ENTRY.NEEDS_COPY)
        assert e.object is obj and e.inheritance == VM_INHERIT.COPY
    assert obj.ref_count == 2 and pmap_prot(vm.vm_pmap, a) == VM_PROT.READ
    assert ch.vm_map.size == vm.vm_map.size and ch.vm_map.anon_loc == vm.vm_map.anon_loc


def test_copy_without_object_has_no_cow(vm):
    a = anon(vm, 2)
    _, ch = fork(vm)
    for v in (vm, ch):
        e = entries(v)[a]
        assert e.object is None and not e.eflags & (MAP_ENTRY.COW | MAP_ENTRY.NEEDS_COPY)
    vm_write(ch, a, "c")
    assert vm_read(vm, a) == 0


def test_none_leaves_a_hole_zero_gives_fresh_memory(vm):
    a, b = anon(vm, 1), anon(vm, 1)
    vm_write(vm, a, "a")
    vm_write(vm, b, "b")
    assert minherit(vm, a, P, INHERIT_NONE) == 0
    assert minherit(vm, b, P, INHERIT_ZERO) == 0
    _, ch = fork(vm)
    assert a not in entries(ch)
    ce = entries(ch)[b]
    assert ce.object is None and ce.inheritance == VM_INHERIT.ZERO
    assert vm_read(ch, b) == 0 and vm_read(vm, b) == "b"
    assert ch.vm_map.size == P


def test_share_writes_are_seen_by_both(vm):
    a = anon(vm, 2, MAP_ANON | MAP_SHARED)
    _, ch = fork(vm)  # the entry had no object: one is made and shared
    assert entries(vm)[a].object is entries(ch)[a].object is not None
    vm_write(ch, a, "from child")
    assert vm_read(vm, a) == "from child"
    vm_write(vm, a + P, "from parent")
    assert vm_read(ch, a + P) == "from parent"


def test_share_of_needs_copy_entry_shadows_in_parent(vm):
    a = anon(vm, 1)
    vm_write(vm, a, "orig")
    _, c1 = fork(vm)  # parent entry now NEEDS_COPY over obj
    obj = entries(vm)[a].object
    assert minherit(vm, a, P, INHERIT_SHARE) == 0
    with recording(vm) as tr:
        _, c2 = fork(vm)
    pe, ce = entries(vm)[a], entries(c2)[a]
    assert pe.object is ce.object and pe.object.backing_object is obj
    assert not pe.eflags & MAP_ENTRY.NEEDS_COPY
    step = next(s for s in tr.steps if s.kind == "fork_entry")
    assert step.data["shadowed"] is True and step.data["inheritance"] == "SHARE"
    vm_write(c2, a, "shared write")
    assert vm_read(vm, a) == "shared write" and vm_read(c1, a) == "orig"


def test_guard_is_copied_and_wired_entry_copied_eagerly(vm):
    err, g = mmap(vm, 0, 4 * P, PROT_NONE, MAP_GUARD)
    assert err == 0
    a = anon(vm, 2)
    vm_write(vm, a, "w")
    assert mlock(vm, a, 2 * P) == 0
    _, ch = fork(vm)
    ge = entries(ch)[g]
    assert ge.eflags & MAP_ENTRY.GUARD and ge.object is None
    pe, ce = entries(vm)[a], entries(ch)[a]
    assert ce.object is not pe.object and ce.wired_count == 0
    assert not ce.eflags & (MAP_ENTRY.COW | MAP_ENTRY.USER_WIRED)
    assert pe.eflags & MAP_ENTRY.USER_WIRED and not pe.eflags & MAP_ENTRY.COW
    # copied page: entered with the entry's prot after a read access (not modified)
    assert pmap_prot(ch.vm_pmap, a) == VM_PROT.READ | VM_PROT.WRITE
    assert not ch.vm_pmap.is_modified(a) and ch.vm_pmap.page_at(a).dirty
    vm_write(ch, a, "child")
    assert vm_read(vm, a) == "w"


def test_fork_trace_has_child_snapshot(vm):
    a = anon(vm, 1)
    vm_write(vm, a, 5)
    with recording(vm) as tr:
        _, ch = fork(vm)
    st = tr.state_at(tr.kinds().index("fork_entry"))
    assert st.child is not None and st.child.pid == ch.pid
    assert st.map.nentries == 1 and len(st.mappings) == 1


def test_exit_frees_everything(machine):
    from vmlab.core import exec_image, vnode_destroy_vobject

    base = machine.physmem.nallocated
    vm = exec_image(machine)
    a = anon(vm, 8)
    for i in range(8):
        vm_write(vm, a + i * P, i)
    vm_read(vm, vm.vm_taddr + 3 * P)
    _, ch = fork(vm)
    for i in range(4):
        vm_write(ch, a + i * P, -i)
    vmspace_free(vm)
    assert vm_read(ch, a + 5 * P) == 5
    vmspace_free(ch)
    vnode_destroy_vobject(machine.files["/bin/prog"])
    assert machine.physmem.nallocated == base + 1  # the machine's shared page
