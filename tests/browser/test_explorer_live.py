"""Notebook 06's explorer in a real front end: JupyterLab serves a copy of the notebook, headless
Chromium runs every cell, then a reader types one of XQuAD-R's questions into the widget's box,
picks system B and presses **Run**; the two ranked lists the page shows must be the ones the Python
API gives for that question. Not part of ``make unit-tests``: ``make browser-test`` runs it (the
``browser`` marker), and ``make explorer-screenshot`` runs it in the quick profile for the README's
``figures/06_explorer.png``.

Needs Debian's ``chromium`` and ``chromium-driver`` (``CHROMIUM`` and ``CHROMEDRIVER`` name other
binaries) and the ``xlir`` kernel of ``make setup``. ``XLIR_PROFILE`` picks the profile (smoke by
default); ``XLIR_SCREENSHOT`` where the screenshot of the live page goes (default
``build/browser/06_explorer_live_<profile>.png``; a failed run saves ``..._failed.png`` there).
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pytest

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "06_retrieval_explorer.ipynb"
KERNEL = "xlir"
PROFILE = os.environ.get("XLIR_PROFILE", "smoke")
APT_HINT = "apt-get install chromium chromium-driver fonts-noto-core fonts-noto-cjk"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--disable-dev-shm-usage")
WINDOW = (1280, 2000)  # the size of the old static screenshot: the widget and both lists in one screen
NOTEBOOK_TIMEOUT_S = float(os.environ.get("XLIR_BROWSER_TIMEOUT", "900"))
# JupyterLab settings for a quiet, deterministic page: every cell in the DOM, no autosave, no news
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false", "checkForUpdates": False, "doNotDisturbMode": True},
}


@dataclass(frozen=True)
class Expected:
    """What the page must show after Run: the typed question and each system's rows as cell texts."""

    question: str
    query_id: str
    systems: list[str]
    rows: dict[str, list[list[str]]]  # system -> [rank, lang, rel. mark, text, cos] per row


def _binary(variable: str, default: str) -> str:
    """The path of ``$variable`` (or ``default``) on PATH; fails naming the Debian packages."""
    name = os.environ.get(variable, "").strip() or default
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} not found: {APT_HINT} (or {variable}=/path/to/{default})")
    return found


def _free_port() -> int:
    """A TCP port on localhost that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what: str, condition: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def _stop(server: subprocess.Popen) -> None:
    """Stop the server (it shuts its kernels down), then anything left in its process group."""
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
    try:
        os.killpg(server.pid, signal.SIGKILL)  # a kernel the server did not take down
    except ProcessLookupError:
        pass


@pytest.fixture(scope="module")
def expected(shared_data) -> Expected:
    """The comparison notebook 06's widget must draw, from the API the notebook uses (``load_explorer``,
    ``compare``).

    The question is one of the set's (typed, it resolves to the stored question, so the embeddings
    are the stored ones and relevance is known), in Greek, and not the one the notebook's own check
    (§6) leaves in the widget, so the page changes only if Run works. Computed before JupyterLab
    starts: a missing embedding store is written by this process, not by two at a time."""
    from xlir_utils import config
    from xlir_utils.explorer import load_explorer
    from xlir_utils.explorer_view import ExplorerWidget, _short, compare

    cfg = config.load(PROFILE)
    # the zero-shot encoder and its LIR, as the notebook's explorer holds them (the other systems
    # change neither: each system and its LIR read only their own stored embeddings)
    explorer = load_explorer(cfg, dataset="xquad-r", families=("zero-shot",))
    zero_shot = explorer.label_of(family="zero-shot", post_hoc=None)
    systems = [zero_shot, f"{zero_shot} + LIR r=1"]
    left_by_notebook = ExplorerWidget(explorer, seed=cfg.seed).picker.options[1][1]  # notebook 06 §6
    q = explorer.rset.queries
    greek = [i for i in np.flatnonzero((q.lang == "el").to_numpy()) if i != left_by_notebook]
    i = int(greek[len(greek) // 2])
    text = q.text.iat[i]
    c = compare(explorer, text, systems, k=10)
    assert c.question.index == i and c.systems == systems
    rows: dict[str, list[list[str]]] = {}
    for label in systems:
        r = c.results[c.results.system == label]
        assert r["rank"].tolist() == list(range(1, 11))
        rows[label] = [[str(x.rank), x.lang, "✓" if x.relevant is not pd.NA and x.relevant else "",
                        _short(x.text), f"{x.score:.3f}"] for x in r.itertuples()]
        # the top row, independently of the explorer's ranking code: the best stored cosine
        s = explorer.systems[label]
        best = int(np.argmax(s.candidates @ s.queries[i]))
        assert rows[label][0][3] == _short(explorer.rset.candidates.sentence.iat[best])
    return Expected(text, str(q.query_id.iat[i]), systems, rows)


@pytest.fixture(scope="module")
def lab(expected) -> Iterator[tuple[str, str]]:
    """JupyterLab on a free localhost port with a token, serving a copy of notebook 06 (no autosave
    can touch the committed file); yields (base URL, token)."""
    jupyter = ROOT / ".venv" / "bin" / "jupyter"
    if not jupyter.exists():
        jupyter = Path(sys.executable).parent / "jupyter"
    with tempfile.TemporaryDirectory(prefix="xlir-lab-") as tmp:
        home = Path(tmp)
        (home / "work" / "notebooks").mkdir(parents=True)
        shutil.copy(NOTEBOOK, home / "work" / "notebooks" / NOTEBOOK.name)
        for name, values in LAB_SETTINGS.items():
            path = home / "settings" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        port, token = _free_port(), secrets.token_hex(16)
        env = {**os.environ, "XLIR_PROFILE": PROFILE, "JUPYTER_CONFIG_DIR": str(home / "config"),
               "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
               "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"), "JUPYTER_RUNTIME_DIR": str(home / "runtime")}
        log = open(home / "lab.log", "w")
        server = subprocess.Popen(
            [str(jupyter), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0",
             f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={home / 'work'}",
             "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
             "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
             *(["--allow-root"] if os.geteuid() == 0 else [])],  # CI runs as root
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=home / "work", start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        try:
            def kernelspecs() -> dict | None:
                if server.poll() is not None:
                    log_tail = (home / "lab.log").read_text()[-3000:]
                    pytest.fail(f"jupyter lab exited with {server.returncode}:\n{log_tail}")
                try:
                    with urllib.request.urlopen(f"{base}/api/kernelspecs?token={token}", timeout=5) as r:
                        return json.load(r)
                except OSError:
                    return None

            specs = _wait("JupyterLab to answer", kernelspecs, 120)
            assert KERNEL in specs["kernelspecs"], f"no '{KERNEL}' kernel in {sorted(specs['kernelspecs'])}: make setup"
            yield base, token
        except BaseException:
            print((home / "lab.log").read_text()[-5000:])
            raise
        finally:
            _stop(server)
            log.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory) -> Iterator[WebDriver]:
    """Headless Debian Chromium through chromedriver, with a fresh profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = _binary("CHROMIUM", "chromium")
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium')}")
    options.add_argument(f"--window-size={WINDOW[0]},{WINDOW[1]}")
    driver = webdriver.Chrome(service=Service(executable_path=_binary("CHROMEDRIVER", "chromedriver")),
                              options=options)
    try:
        yield driver
    finally:
        driver.quit()


# The notebook panel's state, read through the JupyterLab application the page exposes.
_NOTEBOOK_STATE = """
const app = window.jupyterapp;
const panel = app && app.shell.currentWidget;
if (!panel || !panel.sessionContext || !panel.context.path.endsWith(arguments[0])) return null;
const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
const code = panel.content.widgets.filter(c => c.model.type === 'code');
return {
  kernel: kernel ? kernel.name : null,
  status: kernel ? kernel.status : null,
  counts: code.map(c => c.model.executionCount),
  errors: code.flatMap(c => c.model.outputs.toJSON().filter(o => o.output_type === 'error')
                                    .map(o => o.ename + ': ' + o.evalue)),
};
"""

# What the explorer's output shows: the question line and, per system column, its rows' cell texts.
_SHOWN = """
const out = document.querySelector('.xlir-output');
if (!out) return null;
const head = out.querySelector('b');
return {
  question: head ? head.textContent : '',
  note: head && head.nextElementSibling ? head.nextElementSibling.textContent : '',
  columns: [...out.querySelectorAll('h4')].map(h => ({
    system: h.textContent,
    rows: [...h.parentElement.querySelectorAll('table tr')].slice(1)
            .map(tr => [...tr.cells].map(td => td.textContent)),
  })),
};
"""


def _run_notebook(driver: WebDriver, base: str, token: str) -> None:
    """Open the notebook in JupyterLab, run every cell, wait for the last one; fail on an error."""
    driver.get(f"{base}/lab/tree/notebooks/{NOTEBOOK.name}?token={token}")
    _wait("the notebook and its kernel", lambda: (s := driver.execute_script(_NOTEBOOK_STATE, NOTEBOOK.name))
          and s["kernel"] and s["status"] == "idle" and s, 180)
    state = driver.execute_script(_NOTEBOOK_STATE, NOTEBOOK.name)
    assert state["kernel"] == KERNEL and not any(state["counts"]), state
    # not awaited (WebDriver would wait for the promise, that is for the whole notebook, 30 s at most)
    driver.execute_script("window.jupyterapp.shell.collapseLeft();"
                          "window.jupyterapp.commands.execute('notebook:run-all-cells');")

    def finished() -> dict | None:
        s = driver.execute_script(_NOTEBOOK_STATE, NOTEBOOK.name)
        if not s:  # another panel in front (a dialog): keep waiting, the timeout says so
            return None
        if s["errors"]:
            pytest.fail(f"notebook 06 ({PROFILE}) failed in JupyterLab: {s['errors']}")
        return s if s["status"] == "idle" and all(s["counts"]) else None

    _wait(f"every cell of notebook 06 to run ({PROFILE})", finished, NOTEBOOK_TIMEOUT_S, interval=1)


def _shown_question(driver: WebDriver) -> str:
    """The question line of the explorer's output ('' while there is none)."""
    shown = driver.execute_script(_SHOWN)
    return shown["question"] if shown else ""


def test_explorer_widget_runs_in_jupyterlab(lab, browser, expected) -> None:
    """Run notebook 06 in JupyterLab, type a question, choose system B, press Run: the page shows
    both ranked lists, row for row as the API ranks them, and a screenshot of it is saved."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    base, token = lab
    driver = browser
    default = ROOT / "build" / "browser" / f"06_explorer_live_{PROFILE}.png"
    screenshot = Path(os.environ.get("XLIR_SCREENSHOT", "").strip() or default)
    for folder in {default.parent, screenshot.parent}:
        folder.mkdir(parents=True, exist_ok=True)
    try:
        _run_notebook(driver, base, token)
        view = _wait("the explorer widget", lambda: driver.find_elements(By.CSS_SELECTOR, ".xlir-view"), 60)[0]
        driver.execute_script("arguments[0].closest('.jp-Cell').scrollIntoView({block: 'start'});", view)
        # the notebook's own check (§6) ran the widget on another question: that is on the page now
        before = _wait("the output of notebook 06 §6", lambda: _shown_question(driver), 30)
        assert expected.question not in before

        Select(view.find_element(By.CSS_SELECTOR, ".xlir-picker select")).select_by_visible_text(
            "(type a question above)")
        box = view.find_element(By.CSS_SELECTOR, ".xlir-question input")
        box.clear()
        box.send_keys(expected.question)
        assert box.get_attribute("value") == expected.question
        Select(view.find_element(By.CSS_SELECTOR, ".xlir-system-b select")).select_by_visible_text(
            expected.systems[1])
        assert Select(view.find_element(By.CSS_SELECTOR, ".xlir-system-a select")
                      ).first_selected_option.text == expected.systems[0]
        time.sleep(1)  # nothing is computed until Run: the page still shows the old question
        assert expected.question not in _shown_question(driver)

        view.find_element(By.CSS_SELECTOR, "button.xlir-run-button").click()
        shown = _wait("Run to show the typed question's rankings",
                      lambda: expected.question in _shown_question(driver) and driver.execute_script(_SHOWN), 120)
        assert expected.query_id in shown["note"]  # resolved to the set's question: relevance is known
        assert [col["system"] for col in shown["columns"]] == expected.systems
        for col in shown["columns"]:
            want = expected.rows[col["system"]]
            assert col["rows"][0] == want[0], col["system"]  # the first row, cell for cell
            assert col["rows"] == want, col["system"]  # and the whole top 10
        output = view.find_element(By.CSS_SELECTOR, ".xlir-output")
        assert output.is_displayed() and output.size["height"] > 200
        assert all(h4.is_displayed() for h4 in output.find_elements(By.TAG_NAME, "h4"))

        driver.execute_script("arguments[0].closest('.jp-Cell').scrollIntoView({block: 'start'});", view)
        time.sleep(0.5)
        assert driver.save_screenshot(str(screenshot))
        print(f"screenshot of the live page: {screenshot}")
    except BaseException:
        driver.save_screenshot(str(default.with_name(default.stem + "_failed.png")))
        raise
