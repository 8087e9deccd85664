"""Map, tree and lock views and the player, driven without a browser on synthetic traces."""

import numpy as np
import pytest
from widget_synth import big_map, findspace_trace, small_map, snapshot, trace_of

from vmlab.widgets import LockView, MapView, Player, TreeView, theme
from vmlab.widgets.bokeh_embed import set_data
from vmlab.widgets.scale import WIDTH, AddressScale
from vmlab.widgets.treeview import tree_layout


def _player(start=0x1000, length=0x5000):
    snap = small_map()
    tr, ans = findspace_trace(snap, start, length)
    mv, tv = MapView(), TreeView()
    return Player(tr, [mv, tv]), mv, tv, tr, ans, snap


def test_player_steps_and_explanation():
    p, mv, tv, tr, ans, snap = _player()
    assert p.step == 0 and p.slider.max == len(tr) - 1
    assert "vmlab-player" in p._dom_classes
    assert "vmlab-step-forward" in p.forward_button._dom_classes
    assert "vmlab-step-back" in p.back_button._dom_classes
    p.forward()
    assert p.step == 1 and f"Step 2 of {len(tr)}" in p.explain.value
    assert "splay_visit" in p.explain.value
    p.back()
    p.back()  # clamps at 0
    assert p.step == 0
    p.jump.value = len(tr)  # 1-based jump box
    assert p.step == len(tr) - 1
    p.play.value = 2  # Play is linked to the slider
    assert p.step == 2 and p.slider.value == 2
    p.speed.value = "fast"
    assert p.play.interval == 350


def test_stepping_back_is_exact():
    p, mv, tv, tr, *_ = _player()
    def state():  # deep copies: patches modify the source's lists in place
        return [{k: list(v) for k, v in src.data.items()}
                for src in (mv.hl, mv.gap_hl, mv.pruned, mv.marks, tv.nodes, tv.edges)]

    seen = []
    for i in range(len(tr)):
        p.step = i
        seen.append(state())
    for i in reversed(range(len(tr))):
        p.step = i
        assert state() == seen[i]


def test_highlights_follow_the_steps():
    p, mv, tv, tr, ans, snap = _player()
    kinds = tr.kinds()
    i = kinds.index("splay_visit")
    p.step = i
    node = tr.steps[i].data["node"]
    row = snap.entry(node)
    assert mv.hl.data["l"] == [pytest.approx(mv.scale.x(int(row["start"])))]
    nodes = tv.nodes.data
    k = list(nodes["id"]).index(node)
    assert nodes["line"][k] == theme.HIGHLIGHT and nodes["lw"][k] == 4
    # prune: the whole subtree is greyed in the tree and shaded on the map
    j = kinds.index("prune")
    p.step = j
    pruned = tr.steps[j].data["node"]
    k = list(tv.nodes.data["id"]).index(pruned)
    assert tv.nodes.data["fill"][k] == theme.PRUNED
    assert len(mv.pruned.data["l"]) == 1
    # the earlier visit stays on the path (blue)
    k0 = list(tv.nodes.data["id"]).index(node)
    assert tv.nodes.data["line"][k0] == theme.PATH
    # gap checks: red when too small, green when it fits
    checks = [s for s, st in enumerate(tr.steps) if st.kind == "gap_check"]
    p.step = checks[-1]
    assert mv.gap_hl.data["color"] == [theme.OK] and "fits" in mv.gap_hl.data["text"][0]
    p.step = checks[0]
    assert mv.gap_hl.data["color"] == [theme.ERROR]
    assert mv.hl.data["l"] == []
    # the return marks the answer on the map
    p.step = len(tr) - 1
    assert mv.marks.data["text"] == [f"→ {ans:#x}"]


def test_entry_source_has_every_field():
    snap = small_map()
    mv = MapView()
    mv.show_snapshot(snap)
    d = mv.entries.data
    assert list(d["start"]) == snap.entries["start"].astype(float).tolist()
    for f in ("end", "size", "offset", "prot", "max_prot", "inheritance", "eflags", "object",
              "wired_count", "max_free", "id"):
        assert len(d[f]) == len(snap.entries)
    guard = list(d["eflags"]).index(0x10000)
    assert d["color"][guard] == theme.GUARD_FILL
    assert d["color"][0] == theme.PROT_COLORS[3]
    gaps = mv.gaps.data
    assert list(zip(gaps["start"], gaps["end"], strict=True)) == [
        (float(a), float(b)) for a, b in snap.gaps()]


def test_unchanged_snapshot_sends_nothing():
    snap = small_map()
    mv = MapView()
    mv.show_snapshot(snap)
    cols, _ = mv.columns(*_one(snap))
    assert set_data(mv.entries, cols) == "same"


def _one(snap):
    tr = trace_of([("note", "", {}, 0)], [snap])
    return tr, 0


def test_set_data_patch_and_replace():
    from bokeh.models import ColumnDataSource

    src = ColumnDataSource({"a": np.arange(100.0), "b": list(range(100))})
    new = {"a": np.arange(100.0), "b": list(range(100))}
    new["a"][5] = -1
    assert set_data(src, new) == "patch" and src.data["a"][5] == -1
    assert set_data(src, {"a": np.zeros(3), "b": [1, 2, 3]}) == "replace"
    assert list(src.data["b"]) == [1, 2, 3]


def test_scale_modes():
    lin = AddressScale.build(0, 0x10000, [0x1000], [0x8000], mode="auto")
    assert lin.mode == "linear" and lin.x(0x8000) == pytest.approx(WIDTH / 2)
    snap = big_map(60)
    e = snap.entries
    sc = AddressScale.build(snap.min, snap.max, e["start"], e["end"], mode="auto")
    assert sc.mode in ("gaps", "log")
    xs = sc.x(e["start"].astype(float))
    assert np.all(np.diff(xs) > 0)  # monotone: address order kept
    widths = sc.x(e["end"].astype(float)) - xs
    assert widths.min() / WIDTH * 860 >= 1.0  # every entry visible on a laptop-wide figure
    assert sc.addr(sc.x(int(e["start"][10]))) == int(e["start"][10])


def test_tree_layout_full_and_focused():
    snap = small_map()
    lay = tree_layout(snap)
    assert sorted(lay["ids"]) == sorted(snap.entries["id"].tolist())
    assert lay["y"][lay["ids"].index(snap.root)] == 0
    big = big_map(500)
    deep = int(big.entries["id"][0])  # leftmost leaf: deep in the tree
    lay2 = tree_layout(big, {deep})
    assert deep in lay2["ids"] and len(lay2["ids"]) < 100
    assert sum(lay2["hidden"]) + len(lay2["ids"]) == 500


def test_lock_view_timeline_and_cursor():
    s0 = snapshot([(0x2000, 0x3000, 3)], timestamp=1)
    s1 = snapshot([(0x2000, 0x3000, 3)], timestamp=2, lock_mode="exclusive", holders=("A",))
    tr = trace_of([
        ("lock", "A locks", {"op": "lock", "ok": True, "mode": "exclusive",
                             "holders": ("A",), "timestamp": 2}, 1),
        ("lock", "B would sleep", {"op": "lock_read", "ok": False, "mode": "exclusive",
                                   "holders": ("A",), "timestamp": 2}, 1),
        ("lock", "A unlocks", {"op": "unlock", "ok": True, "mode": "unlocked",
                               "holders": (), "timestamp": 2}, 0),
    ], [s0, s1])
    lv = LockView()
    p = Player(tr, [lv])
    d = lv.cells.data
    assert list(d["mode"]) == ["exclusive", "exclusive", "unlocked"]
    assert list(d["timestamp"]) == [2, 2, 2]
    assert list(lv.fails.data["x"]) == [2]
    p.step = 2
    assert lv.cursor_band.location == 3


def test_empty_trace_player():
    from vmlab.core.trace import Trace

    p = Player(Trace(), [MapView()])
    assert "No steps" in p.explain.value and p.forward_button.disabled
    p.forward()
    assert p.step == 0
