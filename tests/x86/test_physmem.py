"""PhysicalMemory: allocator, raw access, images, errors that leave state intact."""

import numpy as np
import pytest

from vmlab.core.x86.physmem import OutOfFrames, PhysicalMemory


def test_alloc_zeroed_never_frame0_and_kinds():
    pm = PhysicalMemory(16 * 4096)
    assert pm.nframes == 16 and pm.nfree == 15
    pa = pm.alloc_frame("PML4")
    assert pa == 0x1000
    pm.write_u64(pa + 8, 0xDEAD)
    pm.free_frame(pa)
    assert pm.frame_kind(pa) is None
    owner = object()
    pb = pm.alloc_frame("data", owner=owner)
    assert pb == pa and pm.read_u64(pa + 8) == 0
    assert pm.frame_kind(pb + 123) == "data" and pm.frame_owner(pb) is owner
    assert pm.kind_counts() == {"data": 1}


def test_out_of_frames_leaves_state():
    pm = PhysicalMemory(4 * 4096)
    got = [pm.alloc_frame("PT") for _ in range(3)]
    assert sorted(got) == [0x1000, 0x2000, 0x3000]
    img = pm.to_bytes()
    with pytest.raises(OutOfFrames):
        pm.alloc_frame("PT")
    assert pm.nfree == 0 and pm.to_bytes() == img


@pytest.mark.parametrize("bad", [0x1001, 0x0, 0x10000, -4096])
def test_free_errors(bad):
    pm = PhysicalMemory(16 * 4096)
    pa = pm.alloc_frame("PD")
    before = (pm.nfree, pm.to_bytes())
    with pytest.raises(ValueError):
        pm.free_frame(bad)
    assert (pm.nfree, pm.to_bytes()) == before
    pm.free_frame(pa)
    with pytest.raises(ValueError, match="double free"):
        pm.free_frame(pa)


def test_raw_access_and_image_roundtrip():
    pm = PhysicalMemory(8 * 4096, maxphyaddr=36)
    pm.write_u64(0x2008, 0x8000_0000_0012_3467)
    pm.write_u64(0x7FF8, 1)  # unallocated frames are writable too
    img = pm.to_bytes()
    assert len(img) == 8 * 4096
    assert int.from_bytes(img[0x2008:0x2010], "little") == 0x8000_0000_0012_3467
    pm2 = PhysicalMemory.from_bytes(img, maxphyaddr=36)
    assert pm2.read_u64(0x2008) == 0x8000_0000_0012_3467
    assert pm2.frame_kind(0x2000) == "raw" and pm2.frame_kind(0x3000) is None
    assert pm2.nfree == 5
    assert np.array_equal(pm2.frames, pm.frames)


@pytest.mark.parametrize(
    ("pa", "value", "exc"),
    [(0x1004, 0, ValueError), (8 * 4096, 0, ValueError), (0, 1 << 64, ValueError),
     (0, -1, ValueError), (0, "x", TypeError)],
)
def test_raw_access_errors(pa, value, exc):
    pm = PhysicalMemory(8 * 4096)
    with pytest.raises(exc):
        pm.write_u64(pa, value)


def test_bad_construction():
    with pytest.raises(ValueError):
        PhysicalMemory(4096 * 3 + 1)
    with pytest.raises(ValueError):
        PhysicalMemory(1 << 30, maxphyaddr=29)
    with pytest.raises(ValueError):
        PhysicalMemory(1 << 20, maxphyaddr=53)
    with pytest.raises(ValueError):
        PhysicalMemory(8 * 4096).alloc_frame("PTE")
