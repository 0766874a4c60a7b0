"""Helpers for tests/test_browser.py: a JupyterLab server started as `make lab` starts it, and
Debian's chromium driven through chromium-driver, both cleaned up by process id.

Everything a reader would click is reached through JupyterLab's own command registry and
the widgets' DOM; `--LabApp.expose_app_in_browser` gives the test `window.jupyterapp`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "build" / "browser"
INSTALL_HINT = ("chromium and chromium-driver are not installed: "
                "apt-get install chromium chromium-driver (Debian/Ubuntu)")
# Known to work headless as root; without the background-networking flags, Chromium's own
# connections to the outside get refused in bulk on machines without internet.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1400,1000"]


def browser_paths() -> tuple[str, str] | None:
    """(chromium, chromedriver) when both Debian packages are installed, else None."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (chromium, driver) if chromium and driver else None


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kill_tree(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM `pid`, its process group and every descendant; SIGKILL what is left."""
    import psutil

    try:
        parent = psutil.Process(pid)
        procs = [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(alive, timeout=timeout)


class LabServer:
    """JupyterLab from scripts/lab.py (what `make lab` runs), smoke profile, offline."""

    def __init__(self, tmp: Path):
        self.port, self.token = free_port(), secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "BIGMODEL_LAB_PROFILE": "smoke", "HF_HUB_OFFLINE": "1",
               "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"), "PYTHONUNBUFFERED": "1"}
        args = ["--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
                f"--IdentityProvider.token={self.token}",
                # The test's own, empty settings and workspaces: the repo defaults are tested,
                # and nothing is written to the user's ~/.jupyter.
                f"--LabApp.user_settings_dir={tmp / 'user-settings'}",
                f"--LabApp.workspaces_dir={tmp / 'workspaces'}",
                "--LabApp.expose_app_in_browser=True", "--ServerApp.terminals_enabled=False"]
        self.log_path = tmp / "jupyter.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "lab.py"), *args],
                                     cwd=ROOT, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited: {self.log()[-3000:]}")
            try:
                req = urllib.request.Request(f"{self.url}/api/status",
                                             headers={"Authorization": f"token {self.token}"})
                with urllib.request.urlopen(req, timeout=2):
                    return
            except OSError:
                time.sleep(0.5)
        raise TimeoutError(f"JupyterLab did not answer in {timeout} s: {self.log()[-3000:]}")

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def kernel_pids(self) -> list[int]:
        import psutil

        with contextlib.suppress(psutil.NoSuchProcess):
            return [p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)]
        return []

    def stop(self) -> None:
        # Kernels run in sessions of their own: collect them before the server goes.
        pids = self.kernel_pids()
        kill_tree(self.proc.pid)
        for pid in pids:
            kill_tree(pid)
        self._log.close()


def start_chromium(paths: tuple[str, str], profile_dir: Path):
    """A Selenium driver for Debian's chromium; the caller quits it with `stop_chromium`."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = paths
    profile_dir.mkdir(parents=True, exist_ok=True)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}"]:
        options.add_argument(flag)
    options.set_capability("unhandledPromptBehavior", "accept")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=driver_path, log_output=str(profile_dir / "driver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_script_timeout(900)  # run_cells awaits the cells
    return driver


def stop_chromium(driver) -> None:
    pid = driver.service.process.pid if driver.service.process else None
    with contextlib.suppress(Exception):
        driver.quit()
    if pid:
        kill_tree(pid)


def screenshot(driver, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


# ------------------------------------------------------------------ JupyterLab, from the page
# Each snippet runs in the page with `w` = the notebook panel of `path` (arguments[0]).
_PANEL = """
const app = window.jupyterapp;
const w = app.shell.widgets ? [...app.shell.widgets('main')].find(
    p => p.context && p.context.path === arguments[0]) : null;
"""


def js(driver, body: str, *args, asynchronous: bool = False):
    """Run `body` (which may use `app` and `w`) in the page and return its value."""
    if asynchronous:
        script = (_PANEL + "const done = arguments[arguments.length - 1];\n(async () => {"
                  + body + "})().then(done, e => done({error: String(e)}));")
        return driver.execute_async_script(script, *args)
    return driver.execute_script(_PANEL + body, *args)


def wait_for(predicate, timeout: float, what: str, poll: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:.0f} s for {what}")
        time.sleep(poll)


def open_lab(driver, server: LabServer, timeout: float = 90) -> str:
    """Open the server's address (as printed by `make lab`); return the URL it lands on."""
    driver.get(f"{server.url}/?token={server.token}")
    wait_for(lambda: driver.execute_script(
        "return !!(window.jupyterapp && document.querySelector('#jp-main-dock-panel'));"),
        timeout, "JupyterLab to load")
    return driver.current_url


def open_notebook(driver, path: str, timeout: float = 90) -> dict:
    """Open `path` in the running JupyterLab (as a double-click in the file browser does),
    wait for its kernel to be idle; return {kernel, kernelspec, dirty}."""
    js(driver, "await app.commands.execute('docmanager:open', {path: arguments[0]});",
       path, asynchronous=True)

    def ready():
        return js(driver, """
            if (!w || !w.context.isReady || !w.sessionContext.session) return null;
            const k = w.sessionContext.session.kernel;
            if (!k || k.status !== 'idle') return null;
            return {kernel: k.name, kernelspec: w.context.model.getMetadata('kernelspec'),
                    dirty: w.context.model.dirty};""", path)

    info = wait_for(ready, timeout, f"{path} to open with an idle kernel")
    time.sleep(1.0)  # let the panel apply kernel info to the metadata, if it is going to
    info["dirty"] = js(driver, "return w.context.model.dirty;", path)
    info["kernelspec_now"] = js(driver, "return w.context.model.getMetadata('kernelspec');", path)
    return info


def kernel_eval(driver, path: str, code: str) -> str:
    """Run `code` in the notebook's kernel (outside its cells); return what it printed."""
    out = js(driver, """
        const future = w.sessionContext.session.kernel.requestExecute({code: arguments[1]});
        let text = '';
        future.onIOPub = msg => { if (msg.header.msg_type === 'stream') text += msg.content.text;
                                  if (msg.header.msg_type === 'error') text += msg.content.ename; };
        await future.done;
        return text;""", path, code, asynchronous=True)
    return out


def activate(driver, path: str) -> None:
    """Bring the notebook's tab to the front: notebook commands act on the current one."""
    js(driver, "app.shell.activateById(w.id);", path)
    wait_for(lambda: js(driver, "return app.shell.currentWidget === w;", path), 15,
             f"{path} to be the current tab", poll=0.2)


def run_all(driver, path: str, timeout: float) -> dict:
    """Run > Run All Cells, then wait until every code cell ran again or one failed.

    Returns {errors: [[code cell index, "ename: evalue"]], cells, ran, seconds}."""
    start = time.monotonic()
    activate(driver, path)
    # Saved execution counts look like a finished run: count the cells this run executes.
    js(driver, """
        w.__ran = new Set();
        for (let i = 0; i < w.model.cells.length; i++) {
            const c = w.model.cells.get(i);
            if (c.type === 'code') c.stateChanged.connect((_, a) => {
                if (a.name === 'executionCount' && a.newValue !== null) w.__ran.add(c.id); });
        }""", path)
    # Not awaited: the command's promise settles only when the last cell has run.
    js(driver, "app.commands.execute('notebook:run-all-cells'); return true;", path)

    def state():
        s = js(driver, """
            const k = w.sessionContext.session && w.sessionContext.session.kernel;
            const cells = [...Array(w.model.cells.length).keys()].map(i => w.model.cells.get(i))
                .filter(c => c.type === 'code');
            const errors = [];
            cells.forEach((c, i) => { for (const o of c.outputs.toJSON())
                if (o.output_type === 'error') errors.push([i, o.ename + ': ' + o.evalue]); });
            const pending = [...w.content.node.querySelectorAll('.jp-InputPrompt')]
                .some(p => p.textContent.includes('*'));
            return {status: k ? k.status : 'dead', errors, cells: cells.length,
                    ran: w.__ran.size, pending};""", path)
        finished = s["errors"] or (s["status"] == "idle" and not s["pending"]
                                   and s["ran"] == s["cells"])
        return s if finished else None

    try:
        s = wait_for(state, timeout, f"{path}: Run All to finish", poll=1.0)
    except TimeoutError as err:
        screenshot(driver, f"{Path(path).stem[:2]}_run_all_timed_out")
        raise TimeoutError(f"{err}; cells run {js(driver, 'return w.__ran.size;', path)}") from None
    s["seconds"] = round(time.monotonic() - start, 1)
    return s


def run_cells(driver, path: str, needles: list[str], timeout: float,
              above: bool = False) -> list:
    """Run, in order, the code cells whose source contains each needle (a reader selecting
    them and pressing Shift+Enter); with `above`, first Run > Run All Above Selected Cell for
    the first needle. Returns the error outputs, [[needle, "ename: evalue"], ...]."""
    activate(driver, path)
    errors = js(driver, """
        const find = needle => [...Array(w.model.cells.length).keys()].find(i => w.model.cells
            .get(i).type === 'code' && w.model.cells.get(i).sharedModel.getSource().includes(needle));
        const errors = [];
        for (const [k, needle] of arguments[1].entries()) {
            const i = find(needle);
            if (i === undefined) { errors.push([needle, 'no such cell']); break; }
            w.content.deselectAll();
            w.content.activeCellIndex = i;
            if (k === 0 && arguments[2]) await app.commands.execute('notebook:run-all-above');
            await app.commands.execute('notebook:run-cell');
            for (let j = 0; j <= i; j++) for (const o of (w.model.cells.get(j).outputs
                ? w.model.cells.get(j).outputs.toJSON() : []))
                if (o.output_type === 'error') errors.push([needle, o.ename + ': ' + o.evalue]);
            if (errors.length) break;
        }
        return errors;""", path, needles, above, asynchronous=True)
    screenshot(driver, f"{Path(path).stem[:2]}_after_running_cells")
    return errors


def cell_node(driver, path: str, needle: str):
    """The DOM node of the first code cell whose source contains `needle`, scrolled into view."""
    return js(driver, """
        const i = [...Array(w.model.cells.length).keys()].find(i => w.model.cells.get(i).type
            === 'code' && w.model.cells.get(i).sharedModel.getSource().includes(arguments[1]));
        if (i === undefined) return null;
        await w.content.scrollToItem(i, 'start');
        w.content.activeCellIndex = i;
        return w.content.widgets[i].node;""", path, needle, asynchronous=True)


def close_notebook(driver, path: str) -> None:
    """Shut the kernel down and close the tab without saving (a reader who closes the tab
    and answers "Discard"): the file on disk stays as it was."""
    js(driver, """
        if (!w) return;
        await w.sessionContext.shutdown();
        w.context.model.dirty = false;
        w.close();""", path, asynchronous=True)
