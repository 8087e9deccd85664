"""Write-back errors: a failing pager makes vm_object_page_clean / vm_object_sync return FALSE,
vm_map_sync KERN_FAILURE and msync(2) EIO, as FreeBSD 14 does (vm_pageout_flush sets eio,
vm_object_page_clean returns FALSE, vm_map_sync collects it into KERN_FAILURE, kern_msync maps
that to EIO). The failed pages stay dirty and the file keeps its old contents."""

from __future__ import annotations

from vmlab.core import (
    EIO,
    KERN,
    MAP_SHARED,
    MS_ASYNC,
    MS_INVALIDATE,
    MS_SYNC,
    PROT_READ,
    PROT_WRITE,
    PagerOp,
    mmap,
    msync,
    open_file,
    vm_map_sync,
    vm_object_page_clean,
    vm_object_sync,
    vm_read,
    vm_write,
)

P = 4096
RW = PROT_READ | PROT_WRITE


def _dirty_file(vm, name, pages=4, dirty=(1, 2)):
    fd = open_file(vm, name, pages * P)
    errno, a = mmap(vm, 0, pages * P, RW, MAP_SHARED, fd, 0)
    assert errno == 0
    for i in dirty:
        vm_write(vm, a + i * P, f"new{i}")
    return a, vm.machine.files[name]


def test_msync_returns_eio_when_the_pager_fails(vm):
    a, f = _dirty_file(vm, "d")
    pager = vm.machine.pager
    pager.fail_putpages = True
    n = len(pager.log)
    assert msync(vm, a, 4 * P, MS_SYNC) == EIO == 5
    assert pager.log[n:] == [PagerOp("pageout", f.object.id, "d", 1, 2, -1, EIO)]
    assert (pager.pageouts, pager.pageout_errors) == (0, 2)
    assert f.contents[1:3] == ["d[1]", "d[2]"]  # nothing reached the file
    assert [f.object.memq[i].dirty for i in (1, 2)] == [True, True]
    # MS_ASYNC goes the same way (vm_object_sync without syncio still cleans)
    assert msync(vm, a, 4 * P, MS_ASYNC) == EIO
    # the disk comes back: the pages were still dirty, so now they are written
    pager.fail_putpages = False
    n = len(pager.log)
    assert msync(vm, a, 4 * P, MS_SYNC) == 0
    assert pager.log[n:] == [PagerOp("pageout", f.object.id, "d", 1, 2, -1)]
    assert f.contents[1:3] == ["new1", "new2"]
    assert [f.object.memq[i].dirty for i in (1, 2)] == [False, False]


def test_the_kern_codes_along_the_way(vm):
    a, f = _dirty_file(vm, "k")
    f.fail_writes = True
    obj = f.object
    assert vm_object_page_clean(obj, 0, 0, True) is False
    assert vm_object_sync(obj, 0, 4 * P, True, False) is False
    assert vm_map_sync(vm.vm_map, a, a + 4 * P, True, False) == KERN.FAILURE
    f.fail_writes = False
    assert vm_map_sync(vm.vm_map, a, a + 4 * P, True, False) == KERN.SUCCESS
    assert vm_object_page_clean(obj, 0, 0, True) is True  # nothing left to write


def test_one_failing_file_does_not_stop_the_others(vm):
    """vm_map_sync syncs every piece and reports the failure at the end: the good file is
    written even though the bad one (mapped below it) failed."""
    a, bad = _dirty_file(vm, "bad", dirty=(0,))
    b, good = _dirty_file(vm, "good", dirty=(3,))
    assert b == a + 4 * P  # adjacent, so one msync covers both
    bad.fail_writes = True
    assert msync(vm, a, 8 * P, MS_SYNC) == EIO
    assert bad.contents[0] == "bad[0]" and good.contents[3] == "new3"
    ops = [(op.file, op.pindex, op.count, op.error) for op in vm.machine.pager.log
           if op.op == "pageout"]
    assert ops == [("bad", 0, 1, EIO), ("good", 3, 1, 0)]


def test_invalidate_keeps_the_pages_that_could_not_be_written(vm):
    """MS_INVALIDATE frees only clean pages (OBJPR_CLEANONLY): a failed page stays resident
    and dirty, so its data is not lost."""
    a, f = _dirty_file(vm, "inv", dirty=(2,))
    vm.machine.pager.fail_putpages = True
    assert vm_read(vm, a + P) == "inv[1]"  # page 1 resident and clean
    assert msync(vm, a, 4 * P, MS_INVALIDATE) == EIO
    assert sorted(f.object.memq) == [2]  # clean pages freed, the dirty one kept
    assert f.object.memq[2].dirty and f.object.memq[2].value == "new2"


def test_pager_op_repr_shows_error_only_for_failures():
    ok = PagerOp("pageout", 7, "f", 1, 2, -1)
    assert repr(ok) == "PagerOp(op='pageout', object=7, file='f', pindex=1, count=2, reqpage=-1)"
    assert repr(PagerOp("pageout", 7, "f", 1, 2, -1, EIO)).endswith("reqpage=-1, error=5)")
