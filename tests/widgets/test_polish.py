"""Fixes found in the browser, checked on the model side: input boxes wide enough for their
text, integer lock-timeline ticks, overview entries with a minimum on-screen width, the
end-of-cell re-send that keeps Voilà's first render current, and linked hover marks."""

import numpy as np
import pytest
from bokeh.models import CustomJS, HoverTool, Quad, Rect
from widget_synth import big_map, findspace_trace, small_map

from vmlab.widgets import Embedded, LockView, MapView, Player, TreeView, link_views
from vmlab.widgets import bokeh_embed as be
from vmlab.widgets.animations import Find, LockTimeline
from vmlab.widgets.inputs import Field, fit_width, parse_addr
from vmlab.widgets.overview import MIN_PX, AddressSpaceOverview
from vmlab.widgets.scale import WIDTH

core = pytest.importorskip("vmlab.core")


def _px(width: str) -> int:
    assert width.endswith("px")
    return int(width[:-2])


def _needed(label: str, value: str) -> float:
    return 7.5 * len(label) + 8.5 * len(value) + 30  # label + text + padding, DejaVu 13px


def make_map():
    m = core.vm_map_create(None, 0x1000, 0x100000)
    core.vm_map_lock(m)
    for s, e in [(0x2000, 0x4000), (0x8000, 0xA000), (0x30000, 0x31000)]:
        assert core.vm_map_insert(m, None, 0, s, e, 3, 7, 0) == core.KERN.SUCCESS
    core.vm_map_unlock(m)
    return m


def test_find_space_box_fits_aligned():
    f = Find(make_map(), 0, 0x3000, "aligned(16)")
    assert f.value[0] == core.KERN.SUCCESS
    box = f.form.boxes["find_space"]
    assert box.value == "aligned(16)"
    assert _px(box.layout.width) >= _needed("find_space", "aligned(16)")


@pytest.mark.parametrize("label,value", [("va", "0x7ffffffff000"), ("find_space", "optimal"),
                                         ("script", "A:lock_read, " * 20)])
def test_every_box_fits_its_label_and_value_but_not_wider_than_a_view(label, value):
    w = _px(fit_width(Field(label, label, parse_addr, value, "90px")))
    assert w >= min(_needed(label, value), 860)
    assert w <= 860


def test_every_animation_box_fits():
    m = make_map()
    for anim in (Find(m, 0x2000, 0x1000, "optimal"), LockTimeline(m)):
        for name, box in anim.form.boxes.items():
            label = next(f.label for f in anim.form.fields if f.name == name)
            assert _px(box.layout.width) >= min(_needed(label, box.value), 860), name


def test_lock_timeline_ticks_are_integers():
    v = LockView()
    assert v.ts_fig.xaxis[0].ticker.min_interval == 1
    assert v.ts_fig.yaxis[0].ticker.min_interval == 1


def test_overview_linear_keeps_pages_and_draws_min_width_markers():
    snap = big_map(300)
    ov = AddressSpaceOverview(snap, mode="linear")
    d = ov.source.data
    assert d["l"].dtype == np.float64  # float32 would collapse a page to zero width
    one_page = np.nonzero(d["end"] - d["start"] == 4096)[0]
    assert len(one_page) and np.all(d["r"][one_page] > d["l"][one_page])
    assert np.allclose(d["m"], (d["l"] + d["r"]) / 2)
    # visible: each band's outline is MIN_PX screen pixels in the fill colour
    quads = [r for r in ov.figure.renderers if isinstance(r.glyph, Quad)
             and r.data_source is ov.source]
    assert len(quads) == 2 and all(q.glyph.line_width == MIN_PX for q in quads)
    assert all(q.glyph.line_color == q.glyph.fill_color for q in quads)
    # hoverable: a transparent MIN_PX-wide marker at each entry's centre
    markers = [r for r in ov.figure.renderers if isinstance(r.glyph, Rect)]
    assert len(markers) == 1 and markers[0] is ov.marker_renderer
    g = markers[0].glyph
    assert (g.width, g.width_units, g.x) == (MIN_PX, "screen", "m") and g.fill_alpha == 0
    assert markers[0].data_source is ov.source
    hovers = [t for t in ov.figure.tools if isinstance(t, HoverTool)]
    assert {t.renderers[0].id for t in hovers} == {ov.entry_renderer.id,
                                                   ov.marker_renderer.id}
    wide = {t.renderers[0].id: t.filters["@l"].args["wide"] for t in hovers}
    assert wide == {ov.entry_renderer.id: True, ov.marker_renderer.id: False}
    for t in hovers:  # the true range is what the tooltip shows
        assert ("range", "@start{custom} – @end{custom}") in t.tooltips
    assert ov.figure.x_range.start < 0 and ov.figure.x_range.end > WIDTH
    assert ov.figure.x_range.min_interval < 1e-3


def test_figure_changed_during_a_cell_is_resent_at_its_end(monkeypatch):
    """Voilà renders BokehModel's state as built; a later cell's change must re-send it."""
    snap = small_map()
    tr, _ = findspace_trace(snap, 0x1000, 0x5000)
    mv = MapView()
    p = Player(tr, [mv])
    emb = Embedded(mv.figure)
    mv.embedded = emb
    sent = []
    monkeypatch.setattr(emb.widget, "update_from_model", lambda layout: sent.append(layout))
    p.step = 3  # outside a cell (a button click): live views get patches, no re-send
    be._post_run_cell()
    assert not emb.stale and sent == []
    be._pre_run_cell()  # a cell runs and moves the player
    p.step = 5
    assert emb.stale
    be._post_run_cell()
    assert sent == [mv.figure] and not emb.stale
    be._pre_run_cell()  # a cell that changes nothing re-sends nothing
    be._post_run_cell()
    assert sent == [mv.figure]


def test_linked_hover_callbacks_share_one_table():
    mv, tv = MapView(), TreeView()
    link_views(mv.linkables + tv.linkables)
    cbs = [t.callback for f in (mv.figure, tv.figure) for t in f.tools
           if isinstance(t, HoverTool) and isinstance(t.callback, CustomJS)]
    assert len(cbs) == 3  # map entries, map gaps, tree nodes
    targets = cbs[0].args["targets"]
    assert all(cb.args["targets"] == targets for cb in cbs)
    # the map's two tools feed one mark source; each records its range in the shared table,
    # so a tool with no hit cannot erase what the other one marked
    assert all("_vmlab_hovered" in cb.code for cb in cbs)
