"""End to end in a real browser: the live demo in JupyterLab and Voila, and notebook 03's explorer.

Starts JupyterLab and Voila on 127.0.0.1 (free ports, random tokens, every
Jupyter directory in a temporary folder) on a *copy* of ``notebooks/``, and
drives Debian's headless Chromium with Playwright: clear outputs, run all,
move sliders with the keyboard, click every preset, and after each action
wait until the plot has changed *and* stayed the same for a moment, then check
the readouts and that no error output appeared. Element screenshots of each
step go to ``artifacts/browser/`` (git-ignored); the key-press-to-picture
latency is printed (run with ``-s`` to see it).

Needs ``/usr/bin/chromium`` (``sudo apt-get install chromium``; ``make
browser-deps`` installs it as root). Without it the test skips, except in CI
(``CI=true``), where it fails.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from optional import require

from fl_helpers.widgets import dashboard as db

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts" / "browser"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
BIN = Path(sys.executable).parent
DEMO = "05-live-demo.ipynb"
EXPLORER_NB = "03-fedavg-and-client-drift.ipynb"

STABLE_MS = 400          # the picture counts as final when its src did not change for this long
ACTION_TIMEOUT_S = 30    # one slider move or click, until the final picture
LATENCY_MOVES = 12

ERRORS = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"


def _require(ok: bool, message: str) -> None:
    require(ok, message, what="the browser test")


# ----------------------------------------------------------------------------- servers

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer in {timeout} s:\n{log.read_text()[-3000:]}")


def _wait_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"port {port} did not open in {timeout} s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM lets the server shut its kernels down; SIGKILL if it hangs."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A copy of notebooks/ and isolated Jupyter directories (config, runtime, settings, workspaces)."""
    base = tmp_path_factory.mktemp("browser")
    shutil.copytree(ROOT / "notebooks", base / "notebooks",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    env = dict(os.environ)
    for name in ("config", "runtime", "settings", "workspaces", "ipython"):
        (base / name).mkdir()
    env.update(JUPYTER_CONFIG_DIR=str(base / "config"), JUPYTER_RUNTIME_DIR=str(base / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(base / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(base / "workspaces"), IPYTHONDIR=str(base / "ipython"),
               PYTHONUNBUFFERED="1")
    env.pop("VOILA_BASE_URL", None)
    news = base / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False, "doNotDisturbMode": True}))
    return base, env


@pytest.fixture(scope="module")
def lab(workspace):
    """A JupyterLab server on the copy: (base url, token)."""
    base, env = workspace
    port, token = _free_port(), secrets.token_hex(16)
    log = base / "lab.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [str(BIN / "jupyter"), "lab", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
             f"--port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
             f"--ServerApp.root_dir={base}"],
            cwd=base, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_http(f"http://127.0.0.1:{port}/api/status?token={token}", proc, log)
        yield f"http://127.0.0.1:{port}", token
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def voila(workspace):
    """A Voila server for the live demo: (base url, token)."""
    base, env = workspace
    port, token = _free_port(), secrets.token_hex(16)
    log = base / "voila.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [str(BIN / "voila"), "--no-browser", "--Voila.ip=127.0.0.1", f"--port={port}",
             f"--token={token}", str(base / "notebooks" / DEMO)],
            cwd=base / "notebooks", env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_port(port, proc, log)
        yield f"http://127.0.0.1:{port}", token
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def browser():
    _require(CHROMIUM.exists(),
             f"{CHROMIUM} not found: the browser test needs Chromium (sudo apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - playwright is a dev dependency
        _require(False, "playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1600, "height": 1300})
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    try:
        yield pg
    finally:
        context.close()


# ----------------------------------------------------------------------------- page helpers

class Shots:
    """Element screenshots of each step, numbered, in artifacts/browser/."""

    def __init__(self, prefix: str):
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for old in ARTIFACTS.glob(f"{prefix}-*.png"):
            old.unlink()
        self.prefix, self.n = prefix, 0

    def __call__(self, locator, name: str) -> Path:
        self.n += 1
        path = ARTIFACTS / f"{self.prefix}-{self.n:02d}-{name}.png"
        locator.screenshot(path=str(path))
        return path


def plot_src(page, root: str) -> str:
    return page.locator(f"{root} img.fl-plot").first.get_attribute("src") or ""


def wait_new_stable_plot(page, root: str, old_src: str, *, what: str) -> str:
    """Wait until the plot's src differs from ``old_src`` and then holds still for STABLE_MS."""
    deadline = time.monotonic() + ACTION_TIMEOUT_S
    src = plot_src(page, root)
    while src in ("", old_src):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: the plot did not change within {ACTION_TIMEOUT_S} s")
        page.wait_for_timeout(50)
        src = plot_src(page, root)
    stable_since = time.monotonic()
    while time.monotonic() - stable_since < STABLE_MS / 1000:
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: the plot kept changing for {ACTION_TIMEOUT_S} s")
        page.wait_for_timeout(50)
        new = plot_src(page, root)
        if new != src:
            src, stable_since = new, time.monotonic()
    return src


def first_plot(page, root: str, *, timeout_s: float = 90) -> str:
    page.locator(f"{root} img.fl-plot[src^='blob:']").first.wait_for(state="visible", timeout=timeout_s * 1000)
    return wait_new_stable_plot(page, root, "", what="first picture")


def assert_no_errors(page, where: str) -> None:
    errors = page.locator(ERRORS)
    texts = [errors.nth(i).inner_text()[:500] for i in range(errors.count())]
    assert not texts, f"{where}: error output appeared:\n" + "\n---\n".join(texts)


def readout(page, key: str) -> str:
    """A readout's text: the status line, the settings line, or a card's value."""
    box = page.locator(f".fl-dashboard [data-key='{key}']").first
    value = box.locator(".fl-value")
    return (value.first if value.count() else box).inner_text().strip()


def slider_readout(page, root: str, knob_class: str) -> str:
    return page.locator(f"{root} .{knob_class} .widget-readout").first.inner_text().strip()


def press_slider(page, root: str, knob_class: str, key: str, *, what: str) -> str:
    old = plot_src(page, root)
    handle = page.locator(f"{root} .{knob_class} .noUi-handle").first
    handle.focus()
    handle.press(key)
    return wait_new_stable_plot(page, root, old, what=what)


def menu(page, top: str, item: str) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text=top).first.click()
    page.locator(".lm-Menu-itemLabel", has_text=item).first.click()


def open_and_run_all(page, lab_url: str, token: str, notebook: str) -> None:
    page.goto(f"{lab_url}/lab/tree/notebooks/{notebook}?token={token}&reset")
    page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for(timeout=90_000)
    menu(page, "Edit", "Clear Outputs of All Cells")
    page.wait_for_function("document.querySelectorAll('.jp-OutputArea-output').length === 0", timeout=30_000)
    menu(page, "Run", "Run All Cells")


LATENCY_JS = """
(root) => {
  const img = document.querySelector(root + ' img.fl-plot');
  const log = {keys: [], loads: []};
  window.__flLatency = log;
  document.addEventListener('keydown', () => log.keys.push(performance.now()), true);
  img.addEventListener('load', () => log.loads.push(performance.now()));
}
"""


def measure_latency(page, root: str, knob_class: str, moves: int) -> list[float]:
    """Milliseconds from each key press to the *loaded* new picture (the img's load event)."""
    page.evaluate(LATENCY_JS, root)
    for i in range(moves):
        press_slider(page, root, knob_class, "ArrowRight", what=f"latency move {i + 1}")
    log = page.evaluate("window.__flLatency")
    latencies = []
    for k in log["keys"]:
        after = [t for t in log["loads"] if t > k]
        if after:
            latencies.append(after[0] - k)
    assert len(latencies) == moves, log
    return latencies


def expected_readout(settings) -> str:
    return db.describe(settings)


# ----------------------------------------------------------------------------- tests

def test_dashboard_in_jupyterlab(page, lab):
    lab_url, token = lab
    shots = Shots("lab")
    root = ".fl-dashboard"
    open_and_run_all(page, lab_url, token, DEMO)
    src = first_plot(page, root)
    page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for(timeout=90_000)
    assert readout(page, "settings") == expected_readout(db.DEFAULT)
    assert_no_errors(page, "run all")
    print(f"\nscreenshots: {ARTIFACTS}")
    dash = page.locator(root).first
    shots(dash, "start")

    # the N slider, one step with the keyboard
    src2 = press_slider(page, root, "fl-knob-n_parties", "ArrowRight", what="N slider")
    assert src2 != src
    assert slider_readout(page, root, "fl-knob-n_parties") == "11"
    assert readout(page, "settings") == expected_readout(db.DEFAULT.replace(n_parties=11))
    assert readout(page, "rounds") == "100 of 100"
    assert_no_errors(page, "N slider")
    shots(dash, "n-11")

    # the learning-rate slider (log scale): PageUp = five steps of 0.05 decades
    src3 = press_slider(page, root, "fl-knob-lr", "PageUp", what="lr slider")
    assert src3 != src2
    assert slider_readout(page, root, "fl-knob-lr") == "0.178"
    assert readout(page, "settings") == expected_readout(db.DEFAULT.replace(n_parties=11, lr=0.178))
    assert_no_errors(page, "lr slider")
    shots(dash, "lr-0.178")

    # every preset: all its knobs, its caption, one new picture
    for p in db.PRESETS:
        old = plot_src(page, root)
        page.locator(f"{root} button", has_text=p.label).first.click()
        wait_new_stable_plot(page, root, old, what=f"preset {p.key}")
        assert readout(page, "settings") == expected_readout(p.settings)
        assert page.locator(f"{root} .fl-caption").first.inner_text().strip() == p.caption
        assert slider_readout(page, root, "fl-knob-n_parties") == str(p.settings.n_parties)
        assert slider_readout(page, root, "fl-knob-rounds") == str(p.settings.rounds)
        status = readout(page, "status")
        if p.key == "diverge":
            assert status.startswith("diverged at round")
        else:
            assert status.startswith(f"after {p.settings.rounds} rounds")
        assert_no_errors(page, f"preset {p.key}")
        shots(dash, f"preset-{p.key}")

    # latency: from the unweighted preset (N = 10, 200 rounds), N 10 -> 22 one key press at a time
    old = plot_src(page, root)
    page.locator(f"{root} button", has_text=db.preset("unweighted").label).first.click()
    wait_new_stable_plot(page, root, old, what="preset unweighted again")
    latencies = measure_latency(page, root, "fl-knob-n_parties", LATENCY_MOVES)
    assert slider_readout(page, root, "fl-knob-n_parties") == str(10 + LATENCY_MOVES)
    assert readout(page, "settings") == expected_readout(
        db.preset("unweighted").settings.replace(n_parties=10 + LATENCY_MOVES))
    summary = (f"key press -> new picture (JupyterLab, N 11..{10 + LATENCY_MOVES}, 200 rounds): "
               f"median {statistics.median(latencies):.0f} ms, min {min(latencies):.0f}, "
               f"max {max(latencies):.0f} over {len(latencies)} moves")
    print(summary)
    (ARTIFACTS / "latency.json").write_text(json.dumps(
        {"summary": summary, "median_ms": statistics.median(latencies), "latencies_ms": latencies}, indent=1))

    # reset
    old = plot_src(page, root)
    page.locator(f"{root} button", has_text="reset").first.click()
    wait_new_stable_plot(page, root, old, what="reset")
    assert readout(page, "settings") == expected_readout(db.DEFAULT)
    assert_no_errors(page, "reset")
    print(f"last JupyterLab screenshot: {shots(dash, 'reset')}")


def test_dashboard_in_voila(page, voila):
    url, token = voila
    shots = Shots("voila")
    root = ".fl-dashboard"
    for attempt in (1, 2):              # about one load in twelve stalls on a loaded machine
        page.goto(f"{url}/?token={token}", wait_until="commit")
        try:
            src = first_plot(page, root, timeout_s=60)
            break
        except Exception:
            if attempt == 2:
                raise
    assert readout(page, "settings") == expected_readout(db.DEFAULT)
    assert page.locator("img:not(.fl-plot)").count() == 0          # no static picture next to the live one
    shown = page.locator("#rendered_cells").inner_text()            # the app view: title and dashboard only
    assert "Live demo" in shown
    assert not any(t in shown for t in ("Why this matters", "Summary", "Exercises", "FAIL"))
    assert_no_errors(page, "voila load")
    dash = page.locator(root).first
    shots(dash, "start")

    src2 = press_slider(page, root, "fl-knob-n_parties", "ArrowRight", what="voila N slider")
    assert src2 != src
    assert readout(page, "settings") == expected_readout(db.DEFAULT.replace(n_parties=11))
    shots(dash, "n-11")

    src3 = press_slider(page, root, "fl-knob-lr", "PageUp", what="voila lr slider")
    assert src3 != src2 and slider_readout(page, root, "fl-knob-lr") == "0.178"

    p = db.preset("drift")
    page.locator(f"{root} button", has_text=p.label).first.click()
    wait_new_stable_plot(page, root, src3, what="voila preset")
    assert readout(page, "settings") == expected_readout(p.settings)
    assert page.locator(f"{root} .fl-caption").first.inner_text().strip() == p.caption
    assert_no_errors(page, "voila")
    print(f"\nlast Voila screenshot: {shots(dash, 'preset-drift')}")


def test_explorer_in_notebook_03(page, lab):
    assert (ROOT / "notebooks" / EXPLORER_NB).exists(), f"notebooks/{EXPLORER_NB} is missing"
    lab_url, token = lab
    shots = Shots("lab03")
    root = ".fl-explorer"
    open_and_run_all(page, lab_url, token, EXPLORER_NB)
    src = first_plot(page, root, timeout_s=120)
    page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for(timeout=120_000)
    assert_no_errors(page, "notebook 03, run all")
    box = page.locator(root).first
    box.scroll_into_view_if_needed()
    shots(box, "start")
    handle = page.locator(f"{root} .widget-hslider .noUi-handle").first          # parties N
    readout_ = page.locator(f"{root} .widget-hslider .widget-readout").first
    before = int(readout_.inner_text())
    handle.focus()
    handle.press("ArrowRight")
    wait_new_stable_plot(page, root, src, what="explorer N slider")
    assert int(readout_.inner_text()) == before + 1
    status = page.locator(f"{root} .widget-html").first.inner_text()
    assert "rounds" in status or "diverged" in status
    assert_no_errors(page, "notebook 03, slider")
    print(f"\nnotebook 03 screenshot: {shots(box, 'n-plus-one')}")
