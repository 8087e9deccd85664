"""Drive notebooks in JupyterLab (and Voilà) in headless Debian chromium through Playwright.

The fixtures live in ``conftest.py``; this module holds the reusable steps so a test can write::

    from vmlab_browser import open_and_run
    def test_gap_search(lab, page):
        run = open_and_run(page, lab, "02_findspace.ipynb")   # every cell ran, output checked
        ...                                                   # notebook-specific assertions

Everything here was verified on this machine; see ``shared/reference/jupyter-notes.md`` for the
races it works around (the lost first "Run All", the "Select Kernel" dialog, stale Voilà plots).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

try:
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture reports this (a skip, or an error in CI)
    PlaywrightError = Exception  # type: ignore[assignment,misc]
    expect = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

REPO = Path(__file__).resolve().parents[2]
# VMLAB_NOTEBOOKS_DIR lets the harness be tried on scratch notebooks (docs/testing.md).
NOTEBOOKS = Path(os.environ.get("VMLAB_NOTEBOOKS_DIR", REPO / "notebooks")).resolve()
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
VIEWPORT = {"width": 1400, "height": 1000}
# A skip whose reason starts with this is allowed in CI (.ci/run fails on every other skip).
OPTIONAL_SKIP = "[ci-optional]"

# Outputs that mean "something went wrong": tracebacks and anything written to stderr (Lab
# renders both with the stderr mimetype), and ipywidgets' failed-view placeholders.
STDERR = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
# A widget output is the ipywidgets renderer, a Lumino Panel with no data-mime-type (Lab 4.x);
# every other mime renderer is a plain lm-Widget. The view appears inside it asynchronously.
WIDGET_OUTPUT = ".jp-OutputArea-output.lm-Panel"
WIDGET_ERROR = ".jupyter-widgets-error-widget"
BOKEH_CANVAS = ".bk-Canvas"  # Playwright's CSS engine pierces bokeh's open shadow roots
# Hooks other helpers' widgets put on their DOM (docs/testing.md, "Widget conventions").
PLAYER = ".vmlab-player"
STEP_FORWARD = ".vmlab-step-forward"
STEP_BACK = ".vmlab-step-back"


def chromium_path() -> str | None:
    """Debian's chromium (never Playwright's download). VMLAB_CHROMIUM overrides."""
    path = os.environ.get("VMLAB_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    return path if os.path.exists(path) else None


def shots_dir() -> Path:
    """Where screenshots go: .ci-shots/ by default, docs/screenshots/ under `make screenshots`."""
    d = Path(os.environ.get("VMLAB_SHOTS_DIR", REPO / ".ci-shots"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def all_notebooks() -> list[str]:
    """Every notebook under notebooks/ (relative paths), so new lessons are covered unasked."""
    return sorted(
        p.relative_to(NOTEBOOKS).as_posix()
        for p in NOTEBOOKS.rglob("*.ipynb")
        if ".ipynb_checkpoints" not in p.parts
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- servers


@dataclass
class Server:
    """A JupyterLab or Voilà process on loopback with a token, serving a COPY of notebooks/."""

    url: str
    token: str
    home: Path  # isolated JUPYTER_*/IPYTHONDIR dirs, the notebook copy and the log
    proc: subprocess.Popen
    log: Path

    @property
    def root(self) -> Path:
        return self.home / "notebooks"

    def api(self, method: str, path: str, body: dict | None = None) -> dict | None:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"{self.url}{path}",
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            raw = r.read()
        return json.loads(raw) if raw else None

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        shutil.rmtree(self.home, ignore_errors=True)


def _prepare_home(prefix: str) -> tuple[Path, dict[str, str]]:
    home = Path(tempfile.mkdtemp(prefix=prefix))
    # A copy: Lab autosaves (megabytes of inline BokehJS) and creates .ipynb_checkpoints/.
    shutil.copytree(NOTEBOOKS, home / "notebooks", ignore=shutil.ignore_patterns(".ipynb_*"))
    env = dict(
        os.environ,
        JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTER_DATA_DIR=str(home / "data"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        IPYTHONDIR=str(home / "ipython"),
        JUPYTER_PLATFORM_DIRS="1",
        PYTHONUNBUFFERED="1",
    )
    return home, env


def _wait_listening(server: Server, probe: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(f"{server.url}{probe}", timeout=2).read()
            return
        except urllib.error.HTTPError:
            return  # it answers: it is up
        except OSError:
            if server.proc.poll() is not None or time.monotonic() > deadline:
                server.proc.kill()
                raise RuntimeError(f"server did not start:\n{server.log_tail()}") from None
            time.sleep(0.2)


def start_lab(token: str = "vmlab-test-token") -> Server:
    home, env = _prepare_home("vmlab-lab-")
    settings = home / "settings"
    settings.mkdir()
    (settings / "overrides.json").write_text(
        json.dumps(
            {
                # no "Jupyter news?" toast over the page, no update check
                "@jupyterlab/apputils-extension:notification": {
                    "fetchNews": "false",
                    "checkForUpdates": False,
                },
                # render every cell (no windowing): off-screen outputs exist and can be checked
                "@jupyterlab/notebook-extension:tracker": {"windowingMode": "none"},
            }
        )
    )
    port = free_port()
    cmd = [
        sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}",
        "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={home / 'notebooks'}", "--allow-root",
        f"--LabApp.app_settings_dir={settings}", "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]  # fmt: skip
    log = home / "lab.log"
    with log.open("w") as f:
        proc = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, cwd=home)
    server = Server(f"http://127.0.0.1:{port}", token, home, proc, log)
    _wait_listening(server, f"/api/status?token={token}")
    return server


def start_voila(notebook: str, token: str = "vmlab-test-token") -> Server:
    """One Voilà server per notebook: each page load starts a kernel that lives until it stops."""
    home, env = _prepare_home("vmlab-voila-")
    port = free_port()
    cmd = [
        sys.executable, "-m", "voila", notebook, "--no-browser", f"--port={port}",
        "--Voila.ip=127.0.0.1", f"--Voila.token={token}", "--show_tracebacks=True",
    ]  # fmt: skip
    log = home / "voila.log"
    with log.open("w") as f:
        proc = subprocess.Popen(
            cmd, env=env, stdout=f, stderr=subprocess.STDOUT, cwd=home / "notebooks"
        )
    server = Server(f"http://127.0.0.1:{port}", token, home, proc, log)
    _wait_listening(server, "/voila/static/no-such-file")  # any HTTP answer will do
    return server


# --------------------------------------------------------------------------- pages


def watch_page(page: Page) -> Page:
    """Record uncaught page errors and console errors on ``page.errors`` / ``page.console``."""
    page.errors = []  # type: ignore[attr-defined]
    page.console = []  # type: ignore[attr-defined]
    page.on("pageerror", lambda e: page.errors.append(str(e)))  # type: ignore[attr-defined]

    def on_console(msg) -> None:
        if msg.type == "error":
            page.console.append(msg.text)  # type: ignore[attr-defined]

    page.on("console", on_console)
    return page


def wait_kernel_idle(page: Page, timeout: float = 60) -> None:
    expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_have_count(
        1, timeout=timeout * 1000
    )


def _error_texts(page: Page) -> list[str]:
    return [t.strip()[-2000:] for t in page.locator(STDERR).all_inner_texts()]


def run_all_cells(page: Page, timeout: float = 180) -> None:
    """Run > Run All Cells; return once the last code cell has an execution count.

    Handles a fresh server's lost first request and its 'Select Kernel' dialog, and fails at
    once (with the traceback) when a cell errors, since Lab then stops running the rest.
    """
    prompts = page.locator(".jp-CodeCell .jp-InputPrompt")
    dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
    idle = page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")

    def click_run_all() -> None:
        try:
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click(timeout=5_000)
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click(
                timeout=5_000
            )
        except PlaywrightError:
            page.keyboard.press("Escape")  # a dialog covered the menu; the loop handles it

    click_run_all()
    issued = start = time.monotonic()
    texts: list[str] = []
    stalled_since = None
    while time.monotonic() - start < timeout:
        texts = [t.strip() for t in prompts.all_inner_texts()]
        if texts and re.fullmatch(r"\[\d+\]:", texts[-1]):
            return
        errors = _error_texts(page)
        if errors and idle.count() and "[*]:" not in texts:
            raise AssertionError("a cell failed under Run All Cells:\n" + "\n---\n".join(errors))
        ran = any(re.fullmatch(r"\[\d+\]:", t) for t in texts)
        if ran and idle.count() and "[*]:" not in texts:
            stalled_since = stalled_since or time.monotonic()
            if time.monotonic() - stalled_since > 15:
                first = next(i for i, t in enumerate(texts) if t == "[ ]:")
                src = page.locator(".jp-CodeCell").nth(first).locator(".jp-InputArea-editor")
                raise AssertionError(
                    f"Run All stopped without an error output before code cell {first}:\n"
                    f"{src.inner_text()[:500]}\nprompts: {texts}"
                )
        else:
            stalled_since = None
        if dialog.count():
            dialog.get_by_role("button", name="Select").click()
            click_run_all()
            issued = time.monotonic()
        elif time.monotonic() - issued > 10 and all(t == "[ ]:" for t in texts):
            click_run_all()  # the fresh-server race swallowed the request
            issued = time.monotonic()
        page.wait_for_timeout(250)
    raise AssertionError(f"Run All Cells did not complete in {timeout} s; prompts: {texts}")


def wait_rendered(page: Page, timeout: float = 60) -> None:
    """Wait until every widget output has a view and the number of bokeh canvases is stable."""
    deadline = time.monotonic() + timeout
    empty_js = f"""() => Array.from(document.querySelectorAll('{WIDGET_OUTPUT}'))
        .filter(e => e.childElementCount === 0 && !e.textContent.trim()).length"""
    last, stable_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        n = page.locator(BOKEH_CANVAS).count()
        if n != last:
            last, stable_since = n, time.monotonic()
        if page.evaluate(empty_js) == 0 and time.monotonic() - stable_since > 1.5:
            return
        page.wait_for_timeout(250)
    raise AssertionError("widget outputs did not finish rendering")


def check_outputs(page: Page, *, scope: str = "") -> int:
    """Assert no error output, no failed widget view, no uncaught page error, and that every
    bokeh canvas is visible with a real size. Returns the number of canvases."""
    stderr = page.locator(f"{scope} {STDERR}".strip())
    errors = [t.strip()[-2000:] for t in stderr.all_inner_texts()]
    assert not errors, "error/stderr outputs:\n" + "\n---\n".join(errors)
    bad = page.locator(f"{scope} {WIDGET_ERROR}".strip())
    assert bad.count() == 0, f"{bad.count()} widget(s) failed to render (BokehJS not inlined?)"
    missing = page.get_by_text(re.compile(r"^Error displaying widget"))
    assert missing.count() == 0, "a widget output refers to a model the kernel does not have"
    canvases = page.locator(f"{scope} {BOKEH_CANVAS}".strip())
    for i in range(canvases.count()):
        c = canvases.nth(i)
        c.scroll_into_view_if_needed()
        expect(c).to_be_visible()
        box = c.bounding_box()
        assert box and box["width"] > 10 and box["height"] > 10, f"bokeh canvas {i} is {box}"
    assert not page.errors, f"uncaught page errors: {page.errors}"  # type: ignore[attr-defined]
    return canvases.count()


def check_log_console(page: Page) -> None:
    """Fail if JupyterLab's log console got messages: that is where ipywidgets puts the
    traceback (or stderr) of a kernel-side callback, e.g. a button handler that raised."""
    status = page.locator(".jp-LogConsoleStatusItem")
    count = status.inner_text().strip() if status.count() else ""
    if not count or count == "0":
        return
    status.first.click()  # opens the log console panel
    panel = page.locator(".jp-LogConsolePanel")
    try:
        panel.first.wait_for(state="visible", timeout=5_000)
        text = panel.first.inner_text()[-3000:]
    except PlaywrightError:
        text = "(could not open the log console)"
    raise AssertionError(f"JupyterLab's log console has {count} message(s):\n{text}")


def reveal_predictions(page: Page) -> int:
    """Press Reveal on every `Predict` widget, so the animations it hides get rendered,
    checked and stepped like the others. Returns the number of reveals."""
    buttons = page.locator(".vmlab-predict .vmlab-reveal-button")
    n = buttons.count()
    for i in range(n):
        buttons.nth(i).scroll_into_view_if_needed()
        buttons.nth(i).click()
    if n:
        page.wait_for_function(
            "n => Array.from(document.querySelectorAll('.vmlab-predict .vmlab-reveal'))"
            ".filter(e => e.offsetHeight > 0).length >= n", arg=n, timeout=30_000)
        wait_kernel_idle(page)
        wait_rendered(page)
        check_outputs(page)
    return n


def exercise_players(page: Page, *, settle_ms: int = 1500) -> int:
    """Step every vmlab player forward (its text must change) and back (it must return), then
    press its Play button, wait, press stop. Returns the number of players found."""
    players = page.locator(PLAYER)
    for i in range(players.count()):
        player = players.nth(i)
        player.scroll_into_view_if_needed()
        forward, back = player.locator(STEP_FORWARD), player.locator(STEP_BACK)
        if forward.count():
            before = player.inner_text()
            forward.first.click()
            try:
                page.wait_for_function(
                    "([el, t]) => el.innerText !== t",
                    arg=[player.element_handle(), before],
                    timeout=15_000,
                )
            except PlaywrightError:
                raise AssertionError(f"player {i}: step forward changed nothing") from None
            if back.count():
                back.first.click()
                try:
                    page.wait_for_function(
                        "([el, t]) => el.innerText === t",
                        arg=[player.element_handle(), before],
                        timeout=15_000,
                    )
                except PlaywrightError:
                    raise AssertionError(
                        f"player {i}: step back did not restore the first step's view"
                    ) from None
        play = player.locator(".widget-play button")
        if play.count():
            play.first.click()  # ipywidgets 8 Play: [play/pause, stop, repeat]
            page.wait_for_timeout(settle_ms)
            if play.count() > 1:
                play.nth(1).click()  # stop
    return players.count()


def save_screenshot(page: Page, name: str, target: Locator | None = None) -> Path:
    """Save ``<shots dir>/<name>.png``: the element ``target`` if given, else the viewport."""
    path = shots_dir() / f"{name}.png"
    if target is not None:
        target.scroll_into_view_if_needed()
        target.screenshot(path=str(path))
    else:
        page.screenshot(path=str(path))
    return path


@dataclass
class NotebookRun:
    notebook: str
    code_cells: int
    canvases: int
    players: int
    seconds: float
    screenshot: Path | None = None
    session: dict = field(default_factory=dict)


def _first_visual(page: Page) -> Locator | None:
    """The output area holding the first player (else bokeh canvas, else widget)."""
    outputs = page.locator(".jp-OutputArea-output")
    for sel in (PLAYER, BOKEH_CANVAS, WIDGET_OUTPUT):
        loc = outputs.filter(has=page.locator(sel)) if sel != WIDGET_OUTPUT else page.locator(sel)
        if loc.count():
            return loc.first
    return None


def open_and_run(
    page: Page, lab: Server, notebook: str, *, timeout: float = 180, players: bool = True
) -> NotebookRun:
    """Open ``notebook`` (path relative to notebooks/) in JupyterLab, run every cell, check every
    output (see `check_outputs`), step the vmlab players, save a screenshot; return once all
    that is done. The kernel stays alive (the test may interact further) until the page fixture
    closes the page."""
    t0 = time.monotonic()
    session = lab.api(
        "POST",
        "/api/sessions",
        {"path": notebook, "name": notebook, "type": "notebook", "kernel": {"name": "python3"}},
    )
    page.goto(f"{lab.url}/lab/tree/{notebook}?token={lab.token}&reset")
    wait_kernel_idle(page, timeout=90)
    page.wait_for_timeout(1500)  # let a fresh server's late kernel switch or dialog happen first
    page.keyboard.press("Control+b")  # hide the file browser: more room for the lesson
    run_all_cells(page, timeout=timeout)
    wait_kernel_idle(page, timeout=timeout)
    wait_rendered(page)
    check_outputs(page)
    if players:
        reveal_predictions(page)
    n_players = exercise_players(page) if players else 0
    wait_kernel_idle(page)
    page.wait_for_timeout(500)  # late comm messages from the players
    canvases = check_outputs(page)
    check_log_console(page)
    first = _first_visual(page)
    if first is not None:
        first.evaluate("e => e.scrollIntoView({block: 'start'})")
        page.wait_for_timeout(300)
    shot = save_screenshot(page, Path(notebook).with_suffix("").as_posix().replace("/", "__"))
    return NotebookRun(
        notebook=notebook,
        code_cells=page.locator(".jp-CodeCell").count(),
        canvases=canvases,
        players=n_players,
        seconds=time.monotonic() - t0,
        screenshot=shot,
        session=session or {},
    )


def open_voila(page: Page, voila: Server, *, timeout: float = 120) -> int:
    """Load a Voilà page, wait for the notebook to finish, check outputs; returns #canvases."""
    page.goto(f"{voila.url}/?token={voila.token}", timeout=timeout * 1000)
    # Voilà 0.5 shows a spinner while its kernel runs the notebook, then the outputs.
    page.wait_for_function(
        "() => !document.querySelector('#loading') ||"
        " getComputedStyle(document.querySelector('#loading')).display === 'none'",
        timeout=timeout * 1000,
    )
    wait_rendered(page, timeout=timeout)
    body = page.locator("body").inner_text()
    assert "There was an error when executing cell" not in body, body[-3000:]
    return check_outputs(page)
