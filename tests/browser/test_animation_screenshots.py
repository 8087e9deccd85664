"""Every vmlab animation in JupyterLab in headless chromium, stepped a few steps and
photographed: the README's "What it looks like" images (``anim_<name>.png``), plus a check
that linked highlighting works in the browser (hovering a splay-tree node marks its entry in
the map view).

The notebook is generated at test time into the server's **copy** of notebooks/ (it is not a
lesson). Screenshots go to the shots dir (`.ci-shots/` by default); ``make screenshots``
(``VMLAB_SHOTS_DIR=docs/screenshots``) writes the README's copies.
"""

from __future__ import annotations

import json

import nbformat
import pytest
from vmlab_browser import PLAYER, STEP_FORWARD, open_and_run, save_screenshot

pytestmark = pytest.mark.browser

NOTEBOOK = "_animation_screenshots.ipynb"
OUTPUT = ".jp-OutputArea-output"  # a cell's last output is its widget (BokehJS comes first)

SETUP = """\
from vmlab.core import *
from vmlab.widgets import *

m = vm_map_create(None, 0x1000, 0x1000000)
vm_map_lock(m)
for s, e, p in [(0x10000, 0x14000, VM_PROT.RW), (0x20000, 0x21000, VM_PROT.READ),
                (0x40000, 0x48000, VM_PROT.RW | VM_PROT.EXECUTE), (0x100000, 0x101000, VM_PROT.RW),
                (0x200000, 0x210000, VM_PROT.READ), (0x600000, 0x602000, VM_PROT.RW)]:
    assert vm_map_insert(m, None, 0, s, e, p, VM_PROT.ALL, 0) == KERN.SUCCESS
vm_map_unlock(m)
vm = exec_image(name="/bin/sh")    # stack growth, then fork
vm2 = exec_image(name="/bin/sh")   # a text-page fault (prefault), then a walk that succeeds
"""

#: (screenshot name, code that displays the animation, the step (1-based) to photograph:
#: the player is stepped forward with its ▶ button, then sent there with its "step" box)
ANIMATIONS: list[tuple[str, str, int]] = [
    ("insert_find", 'find = Find(m, 0, 0x3000, "aligned(16)")\nfind', 35),
    ("gap_search", "gaps = GapSearch(m, 0x11000, 0x8000)\ngaps", 8),
    ("stack_growth", "stack = StackGrowth(vm)\nstack", 24),
    ("fork", "fork_ = ForkView(vm)\nfork_", 38),
    ("prefault", "pf = PrefaultStrip(vm2, 0x202000)\npf", 36),
    ("page_walk", "walk = PageWalk(vm2, 0x203000)\nwalk", 5),
    ("overview", "Overview(m)", 0),
    ("lock_view", "locks = LockTimeline(m)\nlocks", 4),
]

#: The ids the linking check needs: the tree's and the map's bokeh figures and sources.
IDS_CELL = """\
import json
tree, mapv = gaps.views
print(json.dumps({"tree_fig": tree.figure.id, "tree_src": tree.nodes.id,
                  "tree_linked": tree.linked.id, "map_fig": mapv.figure.id,
                  "map_src": mapv.entries.id, "map_linked": mapv.linked.id}))
"""

# Bokeh 3: the plot view of a model id, and a data point's position in page pixels.
POINT_JS = """([fig, x, y]) => {
  for (const v of Bokeh.index.all_views ? Bokeh.index.all_views() : Object.values(Bokeh.index)) {
    const stack = [v];
    while (stack.length) {
      const w = stack.pop();
      if (w.model && w.model.id === fig && w.frame) {
        const r = w.canvas_view.el.getBoundingClientRect();
        return [r.left + w.frame.x_scale.compute(x), r.top + w.frame.y_scale.compute(y)];
      }
      if (w.child_views) stack.push(...w.child_views);
      else if (w.child_views_list) stack.push(...w.child_views_list());
    }
  }
  return null;
}"""

# The newest document first: a re-sent BokehModel renders into a new document, the old stays.
MODEL_DATA_JS = """([id, col]) => {
  for (const doc of [...Bokeh.documents].reverse()) {
    const m = doc.get_model_by_id(id);
    if (m) { const d = m.data; return Array.from(d.get ? d.get(col) : d[col]); }
  }
  return null;
}"""


def make_notebook() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(SETUP)]
    nb.cells += [nbformat.v4.new_code_cell(code) for _name, code, _n in ANIMATIONS]
    nb.cells.append(nbformat.v4.new_code_cell(IDS_CELL))
    return nb


def _go_to_step(page, output, target: int) -> None:
    """Two clicks on ▶ (each must show the next step), then the "step" box to ``target``."""
    player = output.locator(PLAYER).first
    for k in range(min(2, target - 1)):
        before = player.inner_text()
        player.locator(STEP_FORWARD).first.click()
        page.wait_for_function("([el, t]) => el.innerText !== t",
                               arg=[player.element_handle(), before], timeout=15_000)
        assert f"Step {k + 2} of" in player.inner_text()
    if target > 3:
        box = player.locator(".vmlab-jump input")
        box.fill(str(target))
        box.press("Enter")
        box.evaluate("e => e.blur()")  # no focus ring in the picture
        page.wait_for_function("([el, t]) => el.innerText.includes(t)",
                               arg=[player.element_handle(), f"Step {target} of"],
                               timeout=15_000)


def _hover_marks(page, fig: str, src: str, marks: str) -> None:
    """Hover the first glyph of ``src`` (drawn in figure ``fig``); the linked view's mark
    source ``marks`` must fill, and empty again when the pointer leaves."""
    cols = {c: page.evaluate(MODEL_DATA_JS, [src, c]) for c in ("l", "r", "b", "t")}
    assert cols["l"], f"source {src} not found in the browser's bokeh documents"
    assert page.evaluate(MODEL_DATA_JS, [marks, "l"]) == []
    x = (cols["l"][0] + cols["r"][0]) / 2
    y = (cols["b"][0] + cols["t"][0]) / 2
    pt = page.evaluate(POINT_JS, [fig, x, y])
    assert pt is not None, f"no view of figure {fig}"
    page.mouse.move(pt[0] - 1, pt[1] - 1)
    page.mouse.move(pt[0], pt[1])
    filled = f"() => ({MODEL_DATA_JS})({json.dumps([marks, 'l'])}).length"
    page.wait_for_function(f"() => ({filled})() > 0", timeout=5_000)
    page.mouse.move(5, 5)  # off every figure
    page.wait_for_function(f"() => ({filled})() === 0", timeout=5_000)


def test_animation_screenshots_and_linking(lab, page) -> None:
    nbformat.write(make_notebook(), lab.root / NOTEBOOK)
    open_and_run(page, lab, NOTEBOOK, players=False)
    cells = page.locator(".jp-Notebook .jp-CodeCell")
    assert cells.count() == len(ANIMATIONS) + 2
    for k, (name, _code, steps) in enumerate(ANIMATIONS, start=1):
        output = cells.nth(k).locator(OUTPUT).last
        output.scroll_into_view_if_needed()
        if steps:
            _go_to_step(page, output, steps)
        page.wait_for_timeout(400)  # let bokeh repaint after the last patch
        widget = output.locator(".vmlab-animation, .vmlab-overview").first  # ≤ 880 px wide
        shot = save_screenshot(page, f"anim_{name}", widget)
        assert shot.stat().st_size > 5_000, f"{name}: screenshot looks empty"

    # Linked highlighting: hover a splay-tree node, the map view outlines the same entry.
    ids = json.loads(cells.nth(len(ANIMATIONS) + 1).locator(OUTPUT).last.inner_text())
    gaps_out = cells.nth(2).locator(OUTPUT).last
    gaps_out.scroll_into_view_if_needed()
    _hover_marks(page, ids["tree_fig"], ids["tree_src"], ids["map_linked"])
    # and back: an entry on the map outlines its node in the tree
    _hover_marks(page, ids["map_fig"], ids["map_src"], ids["tree_linked"])


VOILA_NB = "_voila_first_render.ipynb"
VOILA_CELLS = [
    SETUP.split("vm = exec_image")[0],
    "g = GapSearch(m, 0x11000, 0x8000)\ng",
    # a later cell moves the player to the first gap test: the bokeh views must follow
    'g.player.step = [s.kind for s in g.trace.steps].index("gap_check")',
    'import json\nprint(json.dumps({"gap_hl": g.views[1].gap_hl.id, "step": g.player.step + 1}))',
]


def test_voila_first_render_shows_final_state(browser, page, tmp_path, monkeypatch) -> None:
    """Voilà renders the widget state it fetches after the whole notebook ran. BokehModel's
    state is the document as built, so without `Embedded`'s end-of-cell re-send the map would
    show step 1 while the player says a later step (jupyter-notes.md, "Stale plot on first
    render")."""
    import vmlab_browser as vb

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(c) for c in VOILA_CELLS]
    nbformat.write(nb, tmp_path / VOILA_NB)
    monkeypatch.setattr(vb, "NOTEBOOKS", tmp_path)
    server = vb.start_voila(VOILA_NB)
    try:
        vb.open_voila(page, server)
        ids = json.loads(page.get_by_text('{"gap_hl"').inner_text())
        assert f"Step {ids['step']} of" in page.locator(PLAYER).first.inner_text()
        # a gap_check step: one highlighted gap on the map (none at step 1)
        assert len(page.evaluate(MODEL_DATA_JS, [ids["gap_hl"], "l"])) == 1
    finally:
        server.stop()
