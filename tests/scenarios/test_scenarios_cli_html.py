"""`vmlab replay`, `vmlab import --html`, and the exported pages (offline, in chromium)."""

from __future__ import annotations

import json
import re

import pytest

from vmlab.cli import main
from vmlab.io import load_sample
from vmlab.io import scenario as S
from vmlab.io.html_export import export_html


def test_replay_cli_writes_the_same_trace_as_the_api(tmp_path, capsys):
    out = tmp_path / "t.json"
    assert main(["replay", "fork-and-cow", "--trace", str(out)]) == 0
    got = json.loads(out.read_text())
    assert got == json.loads(S.replay(S.load_example("fork-and-cow")).trace_json())
    assert "ok  steps[2] parent: fork returned 0" in capsys.readouterr().out


def test_replay_cli_exit_codes(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "vmlab-scenario", "version": 1, "processes": ["p"],
                               "steps": [{"proc": "p", "op": "mmap", "args": {"len": 1}}]}))
    assert main(["replay", str(bad)]) == 2
    assert "steps[0].args.prot: mmap needs argument 'prot'" in capsys.readouterr().err
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"format": "vmlab-scenario", "version": 1, "processes": ["p"],
                                 "steps": [{"proc": "p", "op": "munmap", "expect": "EINVAL",
                                            "args": {"addr": "0x1000", "len": "4K"}}]}))
    assert main(["replay", str(wrong)]) == 1
    assert "FAIL steps[0] p: munmap returned 0. EXPECTED EINVAL" in capsys.readouterr().err
    assert main(["replay", str(tmp_path / "missing.json")]) == 2
    assert main(["replay", "--list"]) == 0
    assert "fork-and-cow" in capsys.readouterr().out


def test_import_html(tmp_path, capsys):
    out = tmp_path / "m.html"
    sample = "vmlab/data/freebsd14-hello.procstat-v.txt"
    assert main(["import", sample, "--html", str(out)]) == 0
    assert "0x7ffffffdf000" in capsys.readouterr().out  # the table is still printed
    assert out.stat().st_size > 100_000


def _offline(html: str) -> None:
    assert not re.search(r"<(script|link)[^>]+(src|href)=\"https?://", html)
    assert "cdn.bokeh.org" not in html


def test_export_is_one_offline_file(tmp_path):
    html = export_html(S.replay(S.load_example("findspace-tour")), tmp_path / "a.html")
    _offline(html)
    assert "a tour of vm_map_findspace" in html and "vmlab-step-forward" in html
    with pytest.raises(TypeError, match="cannot export"):
        export_html(42)


# ---------------------------------------------------------------------------- in a browser


def _open(chromium, path, shots, name):
    page = chromium.new_page(viewport={"width": 1000, "height": 1100})
    errors, requests = [], []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(path.as_uri())
    canvas = page.locator(".bk-Canvas canvas").first
    canvas.wait_for(state="visible", timeout=30_000)
    box = canvas.bounding_box()
    assert box and box["width"] > 500 and box["height"] > 100
    return page, errors, requests


def _explain(page) -> str:
    return page.locator(".vmlab-explain .bk-clearfix").first.inner_text()


@pytest.mark.browser
def test_trace_page_plays_in_chromium(chromium, tmp_path, shots):
    path = tmp_path / "fork.html"
    rep = S.replay(S.load_example("fork-and-cow"))
    export_html(rep, path)
    page, errors, requests = _open(chromium, path, shots, "fork")
    first = _explain(page)
    assert first.startswith("Step 1 of") and "mmap" in first
    page.locator(".vmlab-step-forward button").click()
    page.wait_for_function("() => true")
    second = _explain(page)
    assert second != first and second.startswith("Step 2 of")
    assert rep.trace.steps[1].text[:30] in second
    for _ in range(2):
        page.locator(".vmlab-op-forward button").click()
    third = _explain(page)
    assert "fork()" in third  # operation 3 is the fork
    page.keyboard.press("ArrowLeft")
    assert _explain(page) != third
    page.screenshot(path=str(shots / "scenario-fork-and-cow.png"), full_page=True)
    assert not errors, errors
    assert all(u.startswith("file:") for u in requests), requests
    page.close()


@pytest.mark.browser
def test_imported_map_page_in_chromium(chromium, tmp_path, shots):
    path = tmp_path / "map.html"
    m = load_sample("freebsd14-hello")
    export_html(m, path)
    page, errors, requests = _open(chromium, path, shots, "map")
    first = _explain(page)
    assert f"{len(m.entries)} mappings" in first
    page.locator(".vmlab-step-forward button").click()
    second = _explain(page)
    e0 = m.entries[0]
    assert "mapping 1 of" in second and f"{e0.start:#x}" in second
    page.screenshot(path=str(shots / "imported-map.png"), full_page=True)
    assert not errors, errors
    assert all(u.startswith("file:") for u in requests), requests
    page.close()
