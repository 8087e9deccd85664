"""PrefaultStrip: candidates, verdicts and PTEs shown equal the model's vm_fault_prefault."""

from __future__ import annotations

from wb_helpers import PAGE, anon_process, boxes, prefault_process, texts

from vmlab.widgets import PrefaultStrip, theme
from vmlab.widgets.prefaultview import VERDICTS


def _candidates(w):
    return [dict(s.data) for s in w.trace.steps if s.kind == "prefault_candidate"]


def test_spiral_order_verdicts_and_stop():
    vm, a = prefault_process()
    fault = a + 4 * PAGE
    w = PrefaultStrip(vm, fault, "r")
    cands = _candidates(w)
    offs = [(c["va"] - fault) // PAGE for c in cands]
    assert offs == [-1, 1, -2, 2, -3, 3]  # the spiral, stopped at +3
    assert [c["verdict"] for c in cands] == ["mapped", "already_mapped", "mapped",
                                             "already_mapped", "mapped", "stop"]
    w.player.step = len(w.trace) - 1
    for n, c in enumerate(cands):
        off = (c["va"] - fault) // PAGE
        assert texts(w.view, f"order:{off}") == [str(n + 1)]
        assert texts(w.view, f"verdict:{off}") == VERDICTS[c["verdict"]][0].split(": ")
    # +4 is resident but never visited: the loop stopped before it
    oid = next(e for e in vm.vm_map.entries() if e.start == a).object.id
    assert texts(w.view, "order:4") == [] and texts(w.view, "res:4") == [f"obj #{oid} p8"]
    assert texts(w.view, "res:3") == ["not resident"]
    # the PTEs shown are the model's: prefaulted ones read-only, no A, no D
    for c in cands:
        off = (c["va"] - fault) // PAGE
        pte = vm.vm_pmap.pte(c["va"])
        if c["verdict"] == "mapped":
            assert pte & 1 and not pte & 0x2 and not pte & 0x60
            assert texts(w.view, f"pte:{off}") == ["PTE r--"]
    assert texts(w.view, "pte:0") == ["PTE rw-"]
    assert "stopped at" in w.result.value and "mapped 3 page(s) read-only" in w.result.value


def test_each_step_highlights_the_current_candidate_and_its_pte():
    vm, a = prefault_process()
    fault = a + 4 * PAGE
    w = PrefaultStrip(vm, fault)
    for i, st in enumerate(w.trace.steps):
        if st.kind != "prefault_candidate":
            continue
        w.player.step = i
        off = (st.data["va"] - fault) // PAGE
        hl = [b["tag"] for b in w.view.canvas.shown("boxes")
              if b["tag"].startswith("cell:") and b["line"] == theme.HIGHLIGHT]
        assert hl == [f"cell:{off}"]
        detail = texts(w.view, "detail")[0]
        assert detail.startswith(f"PTE of {st.data['va']:#x}") or "mapped →" in detail \
            or "has no PTE" in detail
        if st.data["verdict"] == "mapped":
            assert f"{vm.vm_pmap.pte(st.data['va']):#018x}" in detail
    # before the prefault loop no candidate is highlighted
    w.player.step = 0
    assert texts(w.view, "order:") == []


def test_zero_fill_fault_has_no_prefault():
    vm, a = anon_process()
    w = PrefaultStrip(vm, a + 3 * PAGE, "w")
    assert _candidates(w) == []
    w.player.step = len(w.trace) - 1
    assert texts(w.view, "note")[0] == "faultcount = 1: no prefault"
    assert "no prefault (faultcount 1)" in w.result.value


def test_file_pagein_uses_behind_and_ahead():
    from wb_helpers import exec_process

    vm = exec_process()
    w = PrefaultStrip(vm, 0x205000)
    pin = next(s.data for s in w.trace.steps if s.kind == "pagein")
    assert (w.view.back, w.view.fwd) == (pin["behind"], pin["ahead"])
    assert texts(w.view, "title")[0].endswith(
        f"(window: {pin['behind']} back, {pin['ahead']} forward)")


def test_bad_inputs_and_targets_inline():
    vm, _a = anon_process()
    w = PrefaultStrip(vm, "nope", "z")
    assert w.trace is None and "is not a number" in w.form.error.value
    assert "is not an access" in w.form.error.value
    w2 = PrefaultStrip(object())
    assert "needs a process" in w2.form.error.value


def test_unmapped_address_fails_inline_in_the_result():
    vm, a = anon_process()
    w = PrefaultStrip(vm, a - 0x100000)
    assert w.value == 1  # KERN_INVALID_ADDRESS from vm_map_lookup
    w.player.step = len(w.trace) - 1
    assert "KERN_INVALID_ADDRESS" in w.result.value
    assert boxes(w.view, "cell:0")  # the strip is still drawn
