"""FreeBSD's top-down splay tree with ``max_free``, ported from sys/vm/vm_map.c (FreeBSD 14).

This is a line-by-line port of SPLAY_LEFT_STEP / SPLAY_RIGHT_STEP, vm_map_splay_split,
vm_map_splay_findnext / findprev, vm_map_splay_merge_{left,right,pred,succ}(_walk),
vm_map_splay, vm_map_entry_link / unlink / resize, vm_map_lookup_entry's search and the tree part
of vm_map_findspace, so the tree has FreeBSD's exact shape and ``max_free`` values after every
operation. Everything is iterative, as in C.

The tree is *threaded* as in vm_map.c: a node without a left (right) child has its ``left``
(``right``) link pointing at its in-order predecessor (successor); the header (slot 0) is the
predecessor of the first entry and the successor of the last. ``header.start`` holds the map's
max and ``header.end`` its min. NULL (an empty tree's root, the end of a search) is -1.

C's vm_size_t arithmetic is unsigned: ``max_free - 1`` with ``max_free == 0`` wraps, which the
code below spells out as ``max_free != 0 and ...``.

Tracing: when ``m._trace`` is set, the descent records ``splay_visit`` / ``rotate`` / ``prune``
steps; the tree is mid-surgery then, so those steps point at the snapshot taken before the splay
(the map is only marked dirty once the tree is whole again, in ``splay_done``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .entries import HEADER, NULL

if TYPE_CHECKING:
    from .vm_map import VmMap

#: A column of the entry table as the hot paths see it (a memoryview, indexed by slot).
Cols = memoryview

__all__: list[str] = []  # internal module: the public API is in vm_map.py

H = HEADER

# test modes for the step functions (the C macros take an expression)
T_TRUE = 0
T_SPLIT = 1  # y->max_free >= length && addr </>= y bound
T_FIND = 2  # findspace: compare length with y's left max_free


def _rec(m: VmMap, kind: str, text: str, **data: object) -> None:
    m._trace.record(m, kind, text, **data)  # type: ignore[union-attr]


def _left_step(
    m: VmMap, root: int, llist: int, rlist: int, mode: int, addr: int, length: int
) -> tuple[int, int]:
    """SPLAY_LEFT_STEP: go left from root; maybe rotate right; put root on rlist.
    Returns (new root or NULL, new rlist)."""
    t = m._t
    S, E, L, R, MF = t.start, t.end, t.left, t.right, t.max_free
    y = L[root]
    max_free = MF[root]
    lmf = MF[y] if y != llist else S[root] - E[llist]
    if max_free != 0 and max_free - 1 < lmf:
        r = R[root]
        max_free = MF[r] if r != rlist else S[rlist] - E[root]
    if y != llist:
        if mode == T_TRUE:
            test = True
        elif mode == T_SPLIT:
            test = MF[y] >= length and addr < S[y]
        else:  # T_FIND: length <= vm_map_entry_max_free_left(y, llist)
            yl = L[y]
            test = length <= (MF[yl] if yl != llist else S[y] - E[llist])
        if test:
            # Rotate right and make y root.
            z = R[y]
            if z != root:
                L[root] = z
                R[y] = root
                if max_free < MF[y]:
                    max_free = max(max_free, MF[z])
                    MF[root] = max_free
            elif max_free < MF[y]:
                max_free = max(max_free, S[root] - E[y])
                MF[root] = max_free
            if m._trace is not None:
                _rec(
                    m,
                    "rotate",
                    f"Rotate right: entry #{y} [{S[y]:#x}, {E[y]:#x}) moves up above "
                    f"entry #{root} [{S[root]:#x}, {E[root]:#x}).",
                    node=root,
                    up=y,
                    direction="right",
                )
            root = y
            y = L[root]
    # Copy right->max_free.  Put root on rlist.
    MF[root] = max_free
    L[root] = rlist
    if m._trace is not None:
        _rec(
            m,
            "splay_visit",
            f"Entry #{root} [{S[root]:#x}, {E[root]:#x}) is above the target: it goes onto the "
            f"right spine (everything there is larger).",
            node=root,
            start=S[root],
            end=E[root],
            max_free=max_free,
            go="left",
            spine="right",
        )
    return (y if y != llist else NULL), root


def _right_step(
    m: VmMap, root: int, llist: int, rlist: int, mode: int, addr: int, length: int
) -> tuple[int, int]:
    """SPLAY_RIGHT_STEP: go right from root; maybe rotate left; put root on llist.
    Returns (new root or NULL, new llist)."""
    t = m._t
    S, E, L, R, MF = t.start, t.end, t.left, t.right, t.max_free
    y = R[root]
    max_free = MF[root]
    rmf = MF[y] if y != rlist else S[rlist] - E[root]
    if max_free != 0 and max_free - 1 < rmf:
        lft = L[root]
        max_free = MF[lft] if lft != llist else S[root] - E[llist]
    if y != rlist:
        if mode == T_TRUE:
            test = True
        elif mode == T_SPLIT:
            test = MF[y] >= length and addr >= E[y]
        else:  # T_FIND: length > vm_map_entry_max_free_left(y, root)
            yl = L[y]
            test = length > (MF[yl] if yl != root else S[y] - E[root])
        if test:
            # Rotate left and make y root.
            z = L[y]
            if z != root:
                R[root] = z
                L[y] = root
                if max_free < MF[y]:
                    max_free = max(max_free, MF[z])
                    MF[root] = max_free
            elif max_free < MF[y]:
                max_free = max(max_free, S[y] - E[root])
                MF[root] = max_free
            if m._trace is not None:
                _rec(
                    m,
                    "rotate",
                    f"Rotate left: entry #{y} [{S[y]:#x}, {E[y]:#x}) moves up above "
                    f"entry #{root} [{S[root]:#x}, {E[root]:#x}).",
                    node=root,
                    up=y,
                    direction="left",
                )
            root = y
            y = R[root]
    # Copy left->max_free.  Put root on llist.
    MF[root] = max_free
    R[root] = llist
    if m._trace is not None:
        _rec(
            m,
            "splay_visit",
            f"Entry #{root} [{S[root]:#x}, {E[root]:#x}) is below the target: it goes onto the "
            f"left spine (everything there is smaller).",
            node=root,
            start=S[root],
            end=E[root],
            max_free=max_free,
            go="right",
            spine="left",
        )
    return (y if y != rlist else NULL), root


def splay_split(m: VmMap, addr: int, length: int) -> tuple[int, int, int]:
    """vm_map_splay_split: walk down towards addr, breaking off the nodes below (llist) and
    above (rlist) it; subtrees with max_free < length count as empty.
    Returns (root or NULL, llist, rlist).

    Without tracing this runs `_split`, an inlined copy of the two step macros (the hottest
    loop of the model: function calls would double its cost); `_splay_split_traced` is the
    same walk through `_left_step` / `_right_step`, recording each step."""
    if m._trace is not None:
        return _splay_split_traced(m, addr, length)
    t = m._t
    return _split(t.start, t.end, t.left, t.right, t.max_free, m.root, addr, length)


def _split(S: Cols, E: Cols, L: Cols, R: Cols, MF: Cols, root: int, addr: int,
           length: int) -> tuple[int, int, int]:
    """vm_map_splay_split's loop with SPLAY_LEFT_STEP / SPLAY_RIGHT_STEP inlined (no tracing).

    Same reads and writes as the macros, in C's order, except that a value read for one test is
    not read again by the next: when a step does not rotate, its y becomes the next root and
    y->max_free (and y->start or y->end, when the test read it) are already known; the test that
    failed tells which way the next step goes. ``s`` and ``max_free`` always hold the current
    root's start and max_free. (Each column read is a memoryview index, ~20 ns, and a step used
    to re-read them: this loop runs ~15-25 times per findspace at 10^5 entries.)"""
    left = right = 0  # HEADER
    if root == -1:  # NULL: empty tree
        return root, left, right
    mf0 = max_free = MF[root]
    if mf0 < length:
        return root, left, right
    s = S[root]
    while True:
        if addr < s:
            # SPLAY_LEFT_STEP(root, y, left, right, y->max_free >= length && addr < y->start)
            y = L[root]
            if y == left:
                # max_free - 1 < vm_map_entry_max_free_left(root, left) (unsigned: 0 - 1 wraps)
                if 0 < max_free <= s - E[left]:
                    r = R[root]
                    max_free = MF[r] if r != right else S[right] - E[root]
                # Copy right->max_free.  Put root on rlist.
                if max_free != mf0:
                    MF[root] = max_free
                L[root] = right
                return -1, left, root
            mfy = MF[y]
            if 0 < max_free <= mfy:
                r = R[root]
                max_free = MF[r] if r != right else S[right] - E[root]
            if mfy < length:
                # No rotation; y (max_free < length) is where the walk stops.
                if max_free != mf0:
                    MF[root] = max_free
                L[root] = right
                return y, left, root
            sy = S[y]
            if addr < sy:
                # Rotate right and make y root.
                z = R[y]
                if z != root:
                    L[root] = z
                    R[y] = root
                    if max_free < mfy:
                        mz = MF[z]
                        if mz > max_free:
                            max_free = mz
                        MF[root] = max_free
                elif max_free < mfy:
                    g = s - E[y]
                    if g > max_free:
                        max_free = g
                    MF[root] = max_free
                root = L[y]
                # Copy right->max_free.  Put y on rlist.
                if max_free != mfy:
                    MF[y] = max_free
                L[y] = right
                right = y
                if root == left:
                    return -1, left, right
                mf0 = max_free = MF[root]
                if mf0 < length:
                    return root, left, right
                s = S[root]
                continue
            # No rotation: root goes on rlist and y, with addr >= y->start, is the next root.
            if max_free != mf0:
                MF[root] = max_free
            L[root] = right
            right = root
            root = y
            mf0 = max_free = mfy
            s = sy
        # Here addr >= s (root's start).
        e = E[root]
        if addr < e:
            return root, left, right
        # SPLAY_RIGHT_STEP(root, y, left, right, y->max_free >= length && addr >= y->end)
        y = R[root]
        if y == right:
            if 0 < max_free <= S[right] - e:
                lft = L[root]
                max_free = MF[lft] if lft != left else s - E[left]
            # Copy left->max_free.  Put root on llist.
            if max_free != mf0:
                MF[root] = max_free
            R[root] = left
            return -1, root, right
        mfy = MF[y]
        if 0 < max_free <= mfy:
            lft = L[root]
            max_free = MF[lft] if lft != left else s - E[left]
        if mfy < length:
            if max_free != mf0:
                MF[root] = max_free
            R[root] = left
            return y, root, right
        ey = E[y]
        if addr >= ey:
            # Rotate left and make y root.
            z = L[y]
            if z != root:
                R[root] = z
                L[y] = root
                if max_free < mfy:
                    mz = MF[z]
                    if mz > max_free:
                        max_free = mz
                    MF[root] = max_free
            elif max_free < mfy:
                g = S[y] - e
                if g > max_free:
                    max_free = g
                MF[root] = max_free
            root = R[y]
            # Copy left->max_free.  Put y on llist.
            if max_free != mfy:
                MF[y] = max_free
            R[y] = left
            left = y
            if root == right:
                return -1, left, right
            mf0 = max_free = MF[root]
            if mf0 < length:
                return root, left, right
            s = S[root]
            continue
        # No rotation: root goes on llist; y, with addr < y->end, is the next root.
        if max_free != mf0:
            MF[root] = max_free
        R[root] = left
        left = root
        root = y
        mf0 = max_free = mfy
        s = S[y]
        if addr >= s:
            return root, left, right


def _splay_split_traced(m: VmMap, addr: int, length: int) -> tuple[int, int, int]:
    """splay_split through the step functions, recording visits, rotations and prunes."""
    t = m._t
    S, E, MF = t.start, t.end, t.max_free
    left = right = H
    root = m.root
    tr = m._trace
    while root != NULL:
        if MF[root] < length:
            if tr is not None:
                _rec(
                    m,
                    "prune",
                    f"Subtree under entry #{root} has no gap of {length:#x} bytes "
                    f"(max_free {MF[root]:#x}): skip it whole.",
                    node=root,
                    max_free=MF[root],
                    length=length,
                )
            break
        if addr < S[root]:
            root, right = _left_step(m, root, left, right, T_SPLIT, addr, length)
        elif addr >= E[root]:
            root, left = _right_step(m, root, left, right, T_SPLIT, addr, length)
        else:
            if tr is not None:
                _rec(
                    m,
                    "splay_visit",
                    f"Entry #{root} [{S[root]:#x}, {E[root]:#x}) contains {addr:#x}: "
                    f"stop here.",
                    node=root,
                    start=S[root],
                    end=E[root],
                    max_free=MF[root],
                    go="found",
                    spine="",
                )
            break
    return root, left, right


def splay_findnext(m: VmMap, root: int, rlist: int) -> int:
    """vm_map_splay_findnext: splay root's right subtree so its least node (root's successor)
    ends up at the head of rlist."""
    t = m._t
    S, E, L, R, MF = t.start, t.end, t.left, t.right, t.max_free
    right = rlist
    hi = R[root]
    if hi == right:
        return rlist
    if m._trace is not None:
        while hi != NULL:
            hi, right = _left_step(m, hi, root, right, T_TRUE, 0, 0)
        return right
    while hi != NULL:
        # SPLAY_LEFT_STEP(hi, y, root, right, true)
        y = L[hi]
        max_free = MF[hi]
        if y != root:
            mfy = MF[y]
            if max_free and max_free - 1 < mfy:
                r = R[hi]
                max_free = MF[r] if r != right else S[right] - E[hi]
            # Rotate right and make y root.
            z = R[y]
            if z != hi:
                L[hi] = z
                R[y] = hi
                if max_free < mfy:
                    mz = MF[z]
                    if mz > max_free:
                        max_free = mz
                    MF[hi] = max_free
            elif max_free < mfy:
                g = S[hi] - E[y]
                if g > max_free:
                    max_free = g
                MF[hi] = max_free
            hi = y
            y = L[hi]
        elif max_free and max_free - 1 < S[hi] - E[root]:
            r = R[hi]
            max_free = MF[r] if r != right else S[right] - E[hi]
        MF[hi] = max_free
        L[hi] = right
        right = hi
        hi = y if y != root else NULL
    return right


def splay_findprev(m: VmMap, root: int, llist: int) -> int:
    """vm_map_splay_findprev: mirror of findnext for root's predecessor."""
    t = m._t
    S, E, L, R, MF = t.start, t.end, t.left, t.right, t.max_free
    left = llist
    lo = L[root]
    if lo == left:
        return llist
    if m._trace is not None:
        while lo != NULL:
            lo, left = _right_step(m, lo, left, root, T_TRUE, 0, 0)
        return left
    while lo != NULL:
        # SPLAY_RIGHT_STEP(lo, y, left, root, true)
        y = R[lo]
        max_free = MF[lo]
        if y != root:
            mfy = MF[y]
            if max_free and max_free - 1 < mfy:
                lft = L[lo]
                max_free = MF[lft] if lft != left else S[lo] - E[left]
            # Rotate left and make y root.
            z = L[y]
            if z != lo:
                R[lo] = z
                L[y] = lo
                if max_free < mfy:
                    mz = MF[z]
                    if mz > max_free:
                        max_free = mz
                    MF[lo] = max_free
            elif max_free < mfy:
                g = S[y] - E[lo]
                if g > max_free:
                    max_free = g
                MF[lo] = max_free
            lo = y
            y = R[lo]
        elif max_free and max_free - 1 < S[root] - E[lo]:
            lft = L[lo]
            max_free = MF[lft] if lft != left else S[lo] - E[left]
        MF[lo] = max_free
        R[lo] = left
        left = lo
        lo = y if y != root else NULL
    return left


# The merge helpers take the table's columns (S, E, L, R, MF = start, end, left, right,
# max_free) rather than the map: they run two to four times per splay, and the walks inline
# vm_map_splay_merge_{left,right}_walk so each costs one Python call.


def _merge_pred(S: Cols, E: Cols, L: Cols, R: Cols, MF: Cols, header: int, root: int,
                llist: int) -> int:
    """vm_map_splay_merge_pred: llist is known to be root's predecessor."""
    max_free = S[root] - E[llist]
    if llist == header:
        L[root] = header
        R[header] = root
        return max_free
    # vm_map_splay_merge_left_walk(header, root, root, max_free, llist)
    tail = root
    while True:
        mf = MF[llist]
        if mf >= max_free:
            max_free = mf  # MF[llist] already holds it
        else:
            MF[llist] = max_free
        nxt = R[llist]
        R[llist] = tail
        tail = llist
        llist = nxt
        if llist == H:
            break
    L[root] = tail
    return max_free


def _merge_left(S: Cols, E: Cols, L: Cols, R: Cols, MF: Cols, root: int, llist: int) -> int:
    """vm_map_splay_merge_left(header, root, llist): llist may or may not be root's
    predecessor."""
    tail = L[root]
    if tail != llist:
        max_free = MF[tail]
    else:
        max_free = S[root] - E[llist]
        tail = root
    if llist == H:
        return max_free
    # vm_map_splay_merge_left_walk(header, root, tail, max_free, llist)
    while True:
        mf = MF[llist]
        if mf >= max_free:
            max_free = mf  # MF[llist] already holds it
        else:
            MF[llist] = max_free
        nxt = R[llist]
        R[llist] = tail
        tail = llist
        llist = nxt
        if llist == H:
            break
    L[root] = tail
    return max_free


def _merge_succ(S: Cols, E: Cols, L: Cols, R: Cols, MF: Cols, header: int, root: int,
                rlist: int) -> int:
    """vm_map_splay_merge_succ: rlist is known to be root's successor."""
    max_free = S[rlist] - E[root]
    if rlist == header:
        R[root] = header
        L[header] = root
        return max_free
    # vm_map_splay_merge_right_walk(header, root, root, max_free, rlist)
    tail = root
    while True:
        mf = MF[rlist]
        if mf >= max_free:
            max_free = mf  # MF[rlist] already holds it
        else:
            MF[rlist] = max_free
        nxt = L[rlist]
        L[rlist] = tail
        tail = rlist
        rlist = nxt
        if rlist == H:
            break
    R[root] = tail
    return max_free


def _merge_right(S: Cols, E: Cols, L: Cols, R: Cols, MF: Cols, root: int, rlist: int) -> int:
    """vm_map_splay_merge_right(header, root, rlist): rlist may or may not be root's
    successor."""
    tail = R[root]
    if tail != rlist:
        max_free = MF[tail]
    else:
        max_free = S[rlist] - E[root]
        tail = root
    if rlist == H:
        return max_free
    # vm_map_splay_merge_right_walk(header, root, tail, max_free, rlist)
    while True:
        mf = MF[rlist]
        if mf >= max_free:
            max_free = mf  # MF[rlist] already holds it
        else:
            MF[rlist] = max_free
        nxt = L[rlist]
        L[rlist] = tail
        tail = rlist
        rlist = nxt
        if rlist == H:
            break
    R[root] = tail
    return max_free


def _done(m: VmMap, root: int, why: str) -> None:
    """The tree is whole again (traced runs only: the fast paths just set m.root)."""
    m.root = root
    m._trace.mark_dirty(m)  # type: ignore[union-attr]
    t = m._t
    if root == NULL:
        _rec(m, "splay_done", f"{why}: the tree is now empty.", root=NULL, max_free=0)
    else:
        _rec(
            m,
            "splay_done",
            f"{why}: entry #{root} [{t.start[root]:#x}, {t.end[root]:#x}) is the new root "
            f"(max_free {t.max_free[root]:#x}).",
            root=root,
            max_free=t.max_free[root],
        )


def vm_map_splay(m: VmMap, addr: int) -> int:
    """vm_map_splay: make the entry containing addr (else a neighbour, lower if possible) the
    root. Returns the new root, NULL for an empty map."""
    t = m._t
    S, E, L, R, MF = t.start, t.end, t.left, t.right, t.max_free
    root, llist, rlist = splay_split(m, addr, 0)
    if root != NULL:
        mfl = _merge_left(S, E, L, R, MF, root, llist)
        mfr = _merge_right(S, E, L, R, MF, root, rlist)
    elif llist != H:
        # Recover the greatest node in the left subtree and make it the root.
        root = llist
        llist = R[root]
        mfl = _merge_left(S, E, L, R, MF, root, llist)
        mfr = _merge_succ(S, E, L, R, MF, H, root, rlist)
    elif rlist != H:
        # Recover the least node in the right subtree and make it the root.
        root = rlist
        rlist = L[root]
        mfl = _merge_pred(S, E, L, R, MF, H, root, llist)
        mfr = _merge_right(S, E, L, R, MF, root, rlist)
    else:
        return NULL
    MF[root] = mfl if mfl > mfr else mfr
    m.root = root
    if m._trace is not None:
        _done(m, root, f"Splay for {addr:#x} done")
    return root


def entry_link(m: VmMap, entry: int) -> None:
    """vm_map_entry_link: insert entry and make it the root. When entry is a clip clone
    (same start or same end as an existing entry) the existing entry is trimmed here."""
    t = m._t
    S, E, L, R, MF = t.start, t.end, t.left, t.right, t.max_free
    m.nentries += 1
    root, llist, rlist = splay_split(m, S[entry], 0)
    if root == NULL:
        # The new entry does not overlap any existing entry: it becomes the new root.
        mfl = _merge_pred(S, E, L, R, MF, H, entry, llist)
        mfr = _merge_succ(S, E, L, R, MF, H, entry, rlist)
    elif S[entry] == S[root]:
        # Clone of root with only end changed (clip_start): root shrinks to abut it and becomes
        # the new root's right child.
        if not E[entry] < E[root]:
            raise RuntimeError("vm_map_entry_link: clip_start not within entry")
        llist = splay_findprev(m, root, llist)
        t.offset[root] = t.offset[root] + E[entry] - S[root]
        S[root] = E[entry]
        mfl = _merge_pred(S, E, L, R, MF, H, entry, llist)
        mfr = max(
            _merge_pred(S, E, L, R, MF, entry, root, entry),
            _merge_right(S, E, L, R, MF, root, rlist),
        )
        MF[root] = mfr
    else:
        # Clone of root with only start changed (clip_end): root shrinks and becomes the new
        # root's left child.
        if E[entry] != E[root]:
            raise RuntimeError("vm_map_entry_link: clip_end not within entry")
        rlist = splay_findnext(m, root, rlist)
        t.offset[entry] = t.offset[entry] + S[entry] - S[root]
        E[root] = S[entry]
        mfl = max(
            _merge_left(S, E, L, R, MF, root, llist),
            _merge_succ(S, E, L, R, MF, entry, root, entry),
        )
        MF[root] = mfl
        mfr = _merge_succ(S, E, L, R, MF, H, entry, rlist)
    MF[entry] = mfl if mfl > mfr else mfr
    m.root = entry
    if m._trace is not None:
        _done(m, entry, f"Linked entry #{entry}")


def entry_unlink(m: VmMap, entry: int, merge_next: bool) -> None:
    """vm_map_entry_unlink (UNLINK_MERGE_NONE / UNLINK_MERGE_NEXT). With merge_next the
    successor takes over entry's start and offset."""
    t = m._t
    S, E, L, R, MF = t.start, t.end, t.left, t.right, t.max_free
    root, llist, rlist = splay_split(m, S[entry], 0)
    if root == NULL:
        raise RuntimeError("vm_map_entry_unlink: unlink object not mapped")
    llist = splay_findprev(m, root, llist)
    rlist = splay_findnext(m, root, rlist)
    if merge_next:
        S[rlist] = S[root]
        t.offset[rlist] = t.offset[root]
    if llist != H:
        root = llist
        llist = R[root]
        mfl = _merge_left(S, E, L, R, MF, root, llist)
        mfr = _merge_succ(S, E, L, R, MF, H, root, rlist)
        MF[root] = mfl if mfl > mfr else mfr
    elif rlist != H:
        root = rlist
        rlist = L[root]
        mfl = _merge_pred(S, E, L, R, MF, H, root, llist)
        mfr = _merge_right(S, E, L, R, MF, root, rlist)
        MF[root] = mfl if mfl > mfr else mfr
    else:
        L[H] = R[H] = H
        root = NULL
    m.nentries -= 1
    m.root = root
    if m._trace is not None:
        _done(m, root, f"Unlinked entry #{entry}")


def entry_resize(m: VmMap, entry: int, grow: int) -> None:
    """vm_map_entry_resize: entry.end += grow (grow may be negative), fixing max_free."""
    t = m._t
    S, E, L, R, MF = t.start, t.end, t.left, t.right, t.max_free
    root, llist, rlist = splay_split(m, S[entry], 0)
    if root == NULL:
        raise RuntimeError("vm_map_entry_resize: resize object not mapped")
    rlist = splay_findnext(m, root, rlist)
    E[entry] = E[entry] + grow
    MF[root] = max(
        _merge_left(S, E, L, R, MF, root, llist), _merge_succ(S, E, L, R, MF, H, root, rlist)
    )
    m.root = root
    if m._trace is not None:
        _done(m, root, f"Resized entry #{entry}")


def tree_search(m: VmMap, addr: int) -> tuple[bool, int]:
    """The plain binary search vm_map_lookup_entry does when it may not splay (read lock
    shared with other threads). Returns (found, entry or lower bound)."""
    t = m._t
    S, E, L, R = t.start, t.end, t.left, t.right
    cur = m.root
    lbound = ubound = H
    tr = m._trace
    while True:
        if tr is not None:
            _rec(
                m,
                "splay_visit",
                f"Read-only search visits entry #{cur} [{S[cur]:#x}, {E[cur]:#x}) "
                f"(no splay: other readers share the lock).",
                node=cur,
                start=S[cur],
                end=E[cur],
                max_free=t.max_free[cur],
                go="search",
                spine="",
            )
        if addr < S[cur]:
            ubound = cur
            cur = L[cur]
            if cur == lbound:
                break
        elif E[cur] <= addr:
            lbound = cur
            cur = R[cur]
            if cur == ubound:
                break
        else:
            return True, cur
    return False, lbound


def findspace_tree(m: VmMap, start: int, length: int, kernel_tail_quirk: bool = False) -> int:
    """The tree part of vm_map_findspace (after its range checks, on a non-empty map).
    Returns the address found, or -1 when no gap is large enough.

    Without tracing this is the fast path: vm_map.c's code with the merge walks and the
    SPLAY_LEFT_STEP / SPLAY_RIGHT_STEP bodies of the final search inlined (a Python call per
    tree level would cost as much as the level itself). `_findspace_tree_traced` is the same
    walk through the step functions, recording every step; both leave the same tree."""
    if m._trace is not None:
        return _findspace_tree_traced(m, start, length, kernel_tail_quirk)
    t = m._t
    S, E, L, R, MF = t.start, t.end, t.left, t.right, t.max_free
    # Split the tree at start, treating subtrees whose max_free < length as empty.
    root, llist, rlist = _split(S, E, L, R, MF, m.root, start, length)
    gap_end = S[rlist]
    if root != NULL:
        # start is inside root: the candidate gap is the one after root.
        start = E[root]
        if R[root] != rlist:
            gap_end = start
        mfl = _merge_left(S, E, L, R, MF, root, llist)
        mfr = _merge_right(S, E, L, R, MF, root, rlist)
    elif rlist != H:
        root = rlist
        rlist = L[root]
        mfl = _merge_pred(S, E, L, R, MF, H, root, llist)
        mfr = _merge_right(S, E, L, R, MF, root, rlist)
    else:
        root = llist
        llist = R[root]
        mfl = _merge_left(S, E, L, R, MF, root, llist)
        mfr = _merge_succ(S, E, L, R, MF, H, root, rlist)
    MF[root] = mfl if mfl > mfr else mfr
    m.root = root
    if length <= gap_end - start:
        return start
    # With max_free, can immediately tell if no solution.
    r = R[root]
    if r == H:
        # vmlab's first-fit difference from vm_map.c: see _findspace_tree_traced.
        if not kernel_tail_quirk and length <= S[H] - E[root]:
            return E[root]
        return -1
    if length > MF[r]:
        return -1
    # Splay for the least large-enough gap in the right subtree:
    #   for (left_length = 0;; left_length = vm_map_entry_max_free_left(root, llist))
    # left_max always holds vm_map_entry_max_free_left(root, llist); go_left is C's
    # "length <= left_length" (left_length starts at 0, so the first step goes right).
    llist = rlist = H
    lft = L[root]
    left_max = MF[lft] if lft != llist else S[root] - E[llist]
    go_left = length <= 0
    while True:
        mf0 = max_free = MF[root]  # stores of an unchanged max_free are skipped below
        if go_left:
            # SPLAY_LEFT_STEP(root, y, llist, rlist,
            #     length <= vm_map_entry_max_free_left(y, llist))
            y = L[root]
            if max_free and max_free - 1 < left_max:
                r = R[root]
                max_free = MF[r] if r != rlist else S[rlist] - E[root]
            if y == llist:
                if max_free != mf0:
                    MF[root] = max_free
                L[root] = rlist
                rlist = root
                break
            yl = L[y]
            y_left_max = MF[yl] if yl != llist else S[y] - E[llist]
            if length <= y_left_max:
                # Rotate right and make y root.
                z = R[y]
                mfy = MF[y]
                if z != root:
                    L[root] = z
                    R[y] = root
                    if max_free < mfy:
                        mz = MF[z]
                        if mz > max_free:
                            max_free = mz
                        MF[root] = max_free
                elif max_free < mfy:
                    g = S[root] - E[y]
                    if g > max_free:
                        max_free = g
                    MF[root] = max_free
                root = y
                y = yl
                if max_free != mfy:
                    MF[root] = max_free
                L[root] = rlist
                rlist = root
                if y == llist:
                    break
                root = y
                lft = L[root]
                left_max = MF[lft] if lft != llist else S[root] - E[llist]
            else:
                # No rotation: y becomes root, llist is unchanged, so its left max_free is
                # the one just computed.
                if max_free != mf0:
                    MF[root] = max_free
                L[root] = rlist
                rlist = root
                root = y
                left_max = y_left_max
        else:
            # SPLAY_RIGHT_STEP(root, y, llist, rlist,
            #     length > vm_map_entry_max_free_left(y, root))
            y = R[root]
            if y == rlist:
                if 0 < max_free <= S[rlist] - E[root]:
                    max_free = left_max
                if max_free != mf0:
                    MF[root] = max_free
                R[root] = llist
                llist = root
                break
            mfy = MF[y]
            if 0 < max_free <= mfy:
                max_free = left_max
            yl = L[y]
            y_left_max = MF[yl] if yl != root else S[y] - E[root]
            if length > y_left_max:
                # Rotate left and make y root.
                if yl != root:
                    R[root] = yl
                    L[y] = root
                    if max_free < mfy:
                        mz = MF[yl]
                        if mz > max_free:
                            max_free = mz
                        MF[root] = max_free
                elif max_free < mfy:
                    g = S[y] - E[root]
                    if g > max_free:
                        max_free = g
                    MF[root] = max_free
                root = y
                y = R[root]
                if max_free != mfy:
                    MF[root] = max_free
                R[root] = llist
                llist = root
                if y == rlist:
                    break
                root = y
                lft = L[root]
                left_max = MF[lft] if lft != llist else S[root] - E[llist]
            else:
                # No rotation: y becomes root with llist = the old root, whose left max_free
                # (y's left subtree, or the gap after the old root) was just computed.
                if max_free != mf0:
                    MF[root] = max_free
                R[root] = llist
                llist = root
                root = y
                left_max = y_left_max
        go_left = length <= left_max
    root = llist
    llist = R[root]
    mfl = _merge_left(S, E, L, R, MF, root, llist)
    if rlist == H:
        mfr = _merge_succ(S, E, L, R, MF, H, root, rlist)
        MF[root] = mfl if mfl > mfr else mfr
    else:
        y = rlist
        rlist = L[y]
        a = _merge_pred(S, E, L, R, MF, root, y, root)
        b = _merge_right(S, E, L, R, MF, y, rlist)
        MF[y] = a if a > b else b
        MF[root] = mfl if mfl > MF[y] else MF[y]
    m.root = root
    return E[root]


def _findspace_tree_traced(
    m: VmMap, start: int, length: int, kernel_tail_quirk: bool = False
) -> int:
    """findspace_tree through the step functions, recording every step."""
    t = m._t
    S, E, L, R, MF = t.start, t.end, t.left, t.right, t.max_free
    tr = m._trace
    root, llist, rlist = splay_split(m, start, length)
    gap_end = S[rlist]
    if root != NULL:
        start = E[root]
        if R[root] != rlist:
            gap_end = start
        mfl = _merge_left(S, E, L, R, MF, root, llist)
        mfr = _merge_right(S, E, L, R, MF, root, rlist)
    elif rlist != H:
        root = rlist
        rlist = L[root]
        mfl = _merge_pred(S, E, L, R, MF, H, root, llist)
        mfr = _merge_right(S, E, L, R, MF, root, rlist)
    else:
        root = llist
        llist = R[root]
        mfl = _merge_left(S, E, L, R, MF, root, llist)
        mfr = _merge_succ(S, E, L, R, MF, H, root, rlist)
    MF[root] = max(mfl, mfr)
    _done(m, root, f"Splay for start {start:#x} done")
    fits = length <= gap_end - start
    if tr is not None:
        _rec(
            m,
            "gap_check",
            f"Gap [{start:#x}, {gap_end:#x}) holds {gap_end - start:#x} bytes; "
            f"{length:#x} needed: {'it fits' if fits else 'too small'}.",
            start=start,
            end=gap_end,
            size=gap_end - start,
            length=length,
            fits=fits,
        )
    if fits:
        return start
    # With max_free, can immediately tell if no solution.
    r = R[root]
    if r == H and not kernel_tail_quirk and length <= S[H] - E[root]:
        # vm_map.c returns failure here although the gap after the last entry fits: when
        # start lies in the gap before the last entry and that gap is too small, the kernel
        # never looks at the tail gap. vmlab follows the first-fit rule (the reference's
        # findspace step 6) unless the sysctl vmlab.findspace_kernel_quirk is 1.
        if tr is not None:
            _rec(
                m,
                "gap_check",
                f"The last gap, [{E[root]:#x}, {S[H]:#x}), has room for {length:#x} bytes.",
                start=E[root],
                end=S[H],
                size=S[H] - E[root],
                length=length,
                fits=True,
            )
        return E[root]
    if r == H or length > MF[r]:
        if tr is not None:
            _rec(
                m,
                "prune",
                f"No gap above entry #{root} is {length:#x} bytes or more "
                f"(max_free of the right subtree is {0 if r == H else MF[r]:#x}): no space.",
                node=r if r != H else NULL,
                max_free=0 if r == H else MF[r],
                length=length,
            )
        return -1
    # Splay for the least large-enough gap in the right subtree.
    llist = rlist = H
    left_length = 0
    while True:
        if length <= left_length:
            root, rlist = _left_step(m, root, llist, rlist, T_FIND, 0, length)
        else:
            root, llist = _right_step(m, root, llist, rlist, T_FIND, 0, length)
        if root == NULL:
            break
        lft = L[root]
        left_length = MF[lft] if lft != llist else S[root] - E[llist]
    root = llist
    llist = R[root]
    mfl = _merge_left(S, E, L, R, MF, root, llist)
    if rlist == H:
        MF[root] = max(mfl, _merge_succ(S, E, L, R, MF, H, root, rlist))
    else:
        y = rlist
        rlist = L[y]
        MF[y] = max(
            _merge_pred(S, E, L, R, MF, root, y, root), _merge_right(S, E, L, R, MF, y, rlist)
        )
        MF[root] = max(mfl, MF[y])
    _done(m, root, "Splay for the lowest large-enough gap done")
    if tr is not None:
        nxt = vm_map_entry_succ_id(m, root)
        _rec(
            m,
            "gap_check",
            f"The gap after entry #{root}, [{E[root]:#x}, {S[nxt]:#x}), is the lowest one with "
            f"room for {length:#x} bytes.",
            start=E[root],
            end=S[nxt],
            size=S[nxt] - E[root],
            length=length,
            fits=True,
        )
    return E[root]


def vm_map_entry_succ_id(m: VmMap, entry: int) -> int:
    """vm_map_entry_succ (sys/vm/vm_map.h) on slot ids."""
    t = m._t
    S, L = t.start, t.left
    after = t.right[entry]
    if S[L[after]] > S[entry]:
        after = L[after]
        while L[after] != entry:
            after = L[after]
    return after


def vm_map_entry_pred_id(m: VmMap, entry: int) -> int:
    """vm_map_entry_pred (vm_map.c) on slot ids."""
    t = m._t
    S, R = t.start, t.right
    prior = t.left[entry]
    if S[R[prior]] < S[entry]:
        prior = R[prior]
        while R[prior] != entry:
            prior = R[prior]
    return prior


def inorder(m: VmMap) -> list[tuple[int, int, int]]:
    """Every entry in address order as (id, real left child or NULL, real right child or NULL),
    found by walking the threaded tree with search bounds (O(n), no recursion)."""
    out: list[tuple[int, int, int]] = []
    if m.root == NULL:
        return out
    t = m._t
    L, R = t.left, t.right
    # stack of (node, lbound, ubound, expanded)
    stack: list[tuple[int, int, int, bool]] = [(m.root, H, H, False)]
    while stack:
        node, lb, ub, expanded = stack.pop()
        lc = L[node] if L[node] != lb else NULL
        rc = R[node] if R[node] != ub else NULL
        if expanded:
            out.append((node, lc, rc))
            continue
        if rc != NULL:
            stack.append((rc, node, ub, False))
        stack.append((node, lb, ub, True))
        if lc != NULL:
            stack.append((lc, lb, node, False))
    return out


def recompute_max_free(m: VmMap) -> None:
    """Recompute every max_free bottom-up from the threaded tree (O(n)); used after a raw
    start/end write through an entry handle."""
    t = m._t
    S, E, MF = t.start, t.end, t.max_free
    if m.root == NULL:
        return
    L, R = t.left, t.right
    stack: list[tuple[int, int, int, bool]] = [(m.root, H, H, False)]
    while stack:
        node, lb, ub, expanded = stack.pop()
        lc = L[node]
        rc = R[node]
        if expanded:
            lp = MF[lc] if lc != lb else S[node] - E[lb]
            rp = MF[rc] if rc != ub else S[ub] - E[node]
            MF[node] = max(lp, rp, 0) & ((1 << 64) - 1)
            continue
        stack.append((node, lb, ub, True))
        if rc != ub:
            stack.append((rc, node, ub, False))
        if lc != lb:
            stack.append((lc, lb, node, False))
