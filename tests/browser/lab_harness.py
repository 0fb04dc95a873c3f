"""JupyterLab and headless Chromium for the end-to-end notebook tests (issue 7).

Why a harness: the notebooks' widget panels only prove themselves in a real front end (the
widget manager, plotly's renderer, the comm channel to the kernel). This module starts a
JupyterLab that is private to one test session (loopback only, a random token, its own
config/data/runtime/settings directories, autosave off so the repository's notebooks are never
rewritten), stops it with everything it spawned, and wraps the few Lab gestures a reader uses:
open a notebook, pick a cell, use the Run and Edit menus, wait for a cell to finish.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psutil

CELLS = ".jp-NotebookPanel .jp-Notebook .jp-Notebook-cell"
# An output with a Python traceback (Lab renders errors with the stderr mime type).
ERROR_OUTPUT = (
    ".jp-NotebookPanel .jp-OutputArea-child"
    ":has(> [data-mime-type='application/vnd.jupyter.stderr']):has-text('Traceback')"
)
LOOPBACK = {"127.0.0.1", "::1"}
WIDGET_MANAGER = "@jupyter-widgets/jupyterlab-manager"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # plotly's 3-D scenes need WebGL; without a GPU Chromium only offers it in software:
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
]
# Lab settings that keep the run hermetic and the DOM predictable.
LAB_SETTINGS = {
    # Never write the notebook back to the repository.
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    # Every cell attached to the DOM, so cell i of the file is cell i on the page.
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    # No news or update toasts (no network, nothing covering the page).
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
}


def chromium_executable() -> str:
    """Debian's Chromium (or $COBOT_CHROMIUM); a clear error when it is not installed."""
    path = os.environ.get("COBOT_CHROMIUM", "/usr/bin/chromium")
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"Chromium not found at {path!r}: the browser tests drive Debian's 'chromium' package "
            "(`python3 workbook.py test` installs it as root; or `apt-get install chromium`, "
            "or set COBOT_CHROMIUM to another Chromium binary)."
        )
    return path


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Lab:
    """A running JupyterLab: its base URL, token, process and log file."""

    url: str
    token: str
    root: Path
    process: subprocess.Popen
    log: Path

    def notebook_url(self, relpath: str) -> str:
        return f"{self.url}/lab/tree/{quote(relpath)}?reset&token={self.token}"

    def processes(self) -> list[psutil.Process]:
        """The server and everything it started (kernels run in sessions of their own)."""
        root = psutil.Process(self.process.pid)
        return [root, *root.children(recursive=True)]

    def listening(self) -> list[tuple[int, str, str, int]]:
        """(pid, name, address, port) of every listening TCP socket of the server and kernels."""
        found = []
        for proc in self.processes():
            try:
                conns = proc.net_connections(kind="inet")
                name = proc.name()
            except psutil.NoSuchProcess:
                continue
            for conn in conns:
                if conn.status == psutil.CONN_LISTEN:
                    found.append((proc.pid, name, conn.laddr.ip, conn.laddr.port))
        return found


def assert_loopback_only(lab: Lab) -> list[tuple[int, str, str, int]]:
    """The server and its kernels listen (at least Lab's own port), and only on loopback."""
    sockets = lab.listening()
    port = int(lab.url.rsplit(":", 1)[1])
    assert any(entry[3] == port for entry in sockets), f"Lab's port {port} not among {sockets}"
    exposed = [entry for entry in sockets if entry[2] not in LOOPBACK]
    assert not exposed, f"listening on a non-loopback address: {exposed}"
    return sockets


def _write_settings(settings_dir: Path) -> None:
    for plugin, values in LAB_SETTINGS.items():
        package, name = plugin.rsplit("/", 1)
        target = settings_dir / package / f"{name}.jupyterlab-settings"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(values))


def _wait_ready(lab: Lab, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    status = f"{lab.url}/api/status?token={lab.token}"
    while time.monotonic() < deadline:
        if lab.process.poll() is not None:
            raise RuntimeError(
                f"JupyterLab exited with code {lab.process.returncode}; log:\n{lab.log.read_text()}"
            )
        try:
            with urllib.request.urlopen(status, timeout=2) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.3)
    raise TimeoutError(f"JupyterLab did not answer {lab.url} within {timeout:.0f} s; see {lab.log}")


def stop_lab(lab: Lab, grace: float = 10.0) -> None:
    """SIGTERM the server's process group (it shuts its kernels down), then SIGKILL leftovers."""
    try:
        family = lab.processes()
    except psutil.NoSuchProcess:
        family = []
    try:
        os.killpg(lab.process.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    _, alive = psutil.wait_procs(family, timeout=grace)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    try:
        os.killpg(lab.process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    lab.process.wait(timeout=grace)


@contextmanager
def running_lab(root: Path, workdir: Path, *, disable_widgets: bool = False) -> Iterator[Lab]:
    """Start JupyterLab on 127.0.0.1 serving `root`; always stop it (and its kernels) on exit.

    `disable_widgets` turns the ipywidgets front end off through the page config: the negative
    control showing the browser tests notice when widgets do not render.
    """
    home = Path(tempfile.mkdtemp(prefix="lab-", dir=workdir))
    dirs = {
        name: home / name
        for name in ("config", "data", "runtime", "settings", "workspaces", "ipython")
    }
    for path in dirs.values():
        path.mkdir()
    _write_settings(dirs["settings"])
    if disable_widgets:
        (dirs["config"] / "labconfig").mkdir()
        page_config = {"disabledExtensions": {WIDGET_MANAGER: True}}
        (dirs["config"] / "labconfig" / "page_config.json").write_text(json.dumps(page_config))
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(dirs["config"]),
        "JUPYTER_DATA_DIR": str(dirs["data"]),
        "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]),
        "JUPYTERLAB_SETTINGS_DIR": str(dirs["settings"]),
        "JUPYTERLAB_WORKSPACES_DIR": str(dirs["workspaces"]),
        "IPYTHONDIR": str(dirs["ipython"]),
        "JUPYTER_PLATFORM_DIRS": "1",
    }
    port, token = free_port(), os.urandom(24).hex()
    command = [
        sys.executable, "-m", "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.terminals_enabled=False",
        "--LabApp.extension_manager=readonly",
    ]  # fmt: skip
    if os.geteuid() == 0:  # CI containers run as root
        command.append("--allow-root")
    log = home / "jupyterlab.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command,
            cwd=root,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    lab = Lab(f"http://127.0.0.1:{port}", token, root, process, log)
    try:
        _wait_ready(lab, timeout=90)
        yield lab
    finally:
        stop_lab(lab)


class NotebookUI:
    """The reader's gestures on one open notebook in a Playwright page."""

    def __init__(self, page, timeout_ms: float = 60_000) -> None:
        self.page = page
        self.timeout_ms = timeout_ms

    def open(self, lab: Lab, relpath: str) -> None:
        """Load Lab on the notebook; wait for all its cells and a connected, idle kernel."""
        cells = len(json.loads((lab.root / relpath).read_text(encoding="utf-8"))["cells"])
        self.page.goto(lab.notebook_url(relpath), timeout=self.timeout_ms)
        self.page.locator(CELLS).nth(cells - 1).wait_for(timeout=self.timeout_ms)
        self.wait_kernel_idle()

    def wait_kernel_idle(self, timeout_ms: float | None = None) -> None:
        """The status bar reads '<kernel name> | Idle' (the toolbar's indicator starts 'idle')."""
        status = self.page.locator("#jp-main-statusbar").get_by_text(re.compile(r"\S \| Idle$"))
        status.first.wait_for(timeout=timeout_ms or self.timeout_ms)
        assert "No Kernel" not in status.first.inner_text()

    def cell(self, index: int):
        """Cell `index` of the file (all cells are attached: windowingMode is 'none')."""
        return self.page.locator(CELLS).nth(index)

    def select_cell(self, index: int) -> None:
        """Click the cell's prompt: selects it in command mode, as a reader does."""
        cell = self.cell(index)
        cell.scroll_into_view_if_needed(timeout=self.timeout_ms)
        cell.locator(".jp-InputPrompt").first.click()

    def menu(self, menu: str, item: str | re.Pattern) -> None:
        """Click a main-menu entry, e.g. menu("Run", "Run All Above Selected Cell")."""
        self.page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{menu}$")).click()
        label = item if isinstance(item, re.Pattern) else re.compile(f"^{re.escape(item)}$")
        entry = self.page.locator(".lm-Menu-itemLabel").filter(has_text=label).first
        entry.click(timeout=10_000)

    def wait_cell_done(self, index: int, timeout_ms: float | None = None) -> None:
        """Wait until the cell's prompt shows an execution count ([n], not [*] or [ ]).

        A traceback anywhere in the notebook ends the wait at once with its text.
        """
        prompt = self.cell(index).locator(".jp-InputPrompt").first
        deadline = time.monotonic() + (timeout_ms or self.timeout_ms) / 1000
        while time.monotonic() < deadline:
            if re.fullmatch(r"\[\d+\]:", prompt.inner_text().strip()):
                return
            if self.page.locator(ERROR_OUTPUT).count():
                text = self.page.locator(ERROR_OUTPUT).first.inner_text()
                raise AssertionError(f"a cell raised while waiting for cell {index}:\n{text}")
            time.sleep(0.25)
        raise TimeoutError(f"cell {index} did not finish: prompt {prompt.inner_text()!r}")

    def assert_no_errors(self) -> None:
        errors = self.page.locator(ERROR_OUTPUT)
        if errors.count():
            raise AssertionError(f"a notebook cell raised:\n{errors.first.inner_text()}")

    def run_through(self, code_cells: list[int], timeout_ms: float | None = None) -> None:
        """Clear the stored outputs, run the code cells above the last one, then the last one.

        `code_cells` are the file's code-cell indexes up to and including the target cell;
        clearing first guarantees that every output checked later came from this session.
        """
        *above, target = code_cells
        self.menu("Edit", "Clear Outputs of All Cells")
        self.select_cell(target)
        if above:
            self.menu("Run", "Run All Above Selected Cell")
            for index in above:
                self.wait_cell_done(index, timeout_ms)
        self.select_cell(target)
        self.menu("Run", re.compile(r"^Run Selected Cells? and Do not Advance$", re.I))
        self.wait_cell_done(target, timeout_ms)
        self.assert_no_errors()

    def run_all(self, code_cells: list[int], timeout_ms: float | None = None) -> None:
        """Clear the stored outputs and run every cell (Run > Run All Cells)."""
        self.menu("Edit", "Clear Outputs of All Cells")
        self.menu("Run", "Run All Cells")
        for index in code_cells:
            self.wait_cell_done(index, timeout_ms)
        self.assert_no_errors()

    def output(self, index: int):
        """The output area of cell `index` (not the nested areas of Output widgets)."""
        return self.cell(index).locator(".jp-Cell-outputArea").first


# JSON of what each plotly trace draws; typed arrays (plotly's base64 'bdata') become lists.
_PLOT_SIGNATURE_JS = """
el => JSON.stringify((el.data || []).map(t => [t.type, t.name, t.x, t.y, t.z, t.u, t.v, t.w,
  t.i, t.j, t.k, t.cells && t.cells.values]), (k, v) => ArrayBuffer.isView(v) ? Array.from(v) : v)
"""


def code_cells(path: Path, until: str | None = None) -> list[int]:
    """Indexes of the notebook's code cells, up to the first whose source contains `until`."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    found = []
    for index, cell in enumerate(cells):
        if cell["cell_type"] != "code":
            continue
        found.append(index)
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if until is not None and until in source:
            return found
    if until is not None:
        raise AssertionError(f"no code cell of {path} contains {until!r}")
    return found


def plot_signatures(scope) -> list[str]:
    """What every plotly figure under `scope` draws (one string per figure, page order)."""
    plots = scope.locator(".js-plotly-plot")
    return [plots.nth(i).evaluate(_PLOT_SIGNATURE_JS) for i in range(plots.count())]


def plot_trace_types(scope) -> set[str]:
    plots = scope.locator(".js-plotly-plot")
    types: set[str] = set()
    for i in range(plots.count()):
        types.update(plots.nth(i).evaluate("el => (el._fullData || []).map(t => t.type)"))
    return types


def labelled(scope, description: str):
    """The ipywidget whose description is `description` (label text or checkbox caption)."""
    label = re.compile(f"^\\s*{re.escape(description)}\\s*$")
    page = getattr(scope, "page", scope)  # a Locator, or the Page itself
    caption = page.locator(".widget-label, .widget-label-basic > span").filter(has_text=label)
    return scope.locator(".widget-inline-hbox").filter(has=caption).first


def button(scope, text: str):
    """An ipywidgets Button or ToggleButton showing `text`."""
    pattern = re.compile(f"^\\s*{re.escape(text)}\\s*$")
    return scope.locator("button.jupyter-button").filter(has_text=pattern).first


def wait_changed(read, before, what: str, timeout_s: float = 60.0, accept=bool):
    """Poll `read()` until it differs from `before` and passes `accept` (not a half-redrawn
    state); a clear AssertionError otherwise."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        now = read()
        if now != before and accept(now):
            return now
        time.sleep(0.25)
    raise AssertionError(f"{what} did not change within {timeout_s:.0f} s")


def flip(scope, description: str) -> None:
    """Toggle the switch described `description`: a Checkbox or a ToggleButton."""
    box = labelled(scope, description).locator("input[type=checkbox]")
    if box.count():
        box.click()
        return
    toggle = scope.locator("button.widget-toggle-button").filter(
        has_text=re.compile(f"^\\s*{re.escape(description)}\\s*$")
    )
    assert toggle.count(), f"no checkbox or toggle button described {description!r}"
    toggle.first.click()


def choose(scope, description: str, value: str | None = None) -> str:
    """Pick `value` (default: the first other option) in the Dropdown or ToggleButtons described
    `description`; returns the option's text."""
    widget = labelled(scope, description)
    select = widget.locator("select")
    if select.count():
        options = select.locator("option").all_inner_texts()
        current = select.evaluate("s => s.options[s.selectedIndex].text")
        value = value or next(o for o in options if o != current)
        select.select_option(label=value)
        return value
    buttons = widget.locator("button")
    assert buttons.count(), f"no dropdown or toggle buttons described {description!r}"
    texts = buttons.all_inner_texts()
    pressed = widget.locator("button.mod-active").all_inner_texts()
    value = value or next(t for t in texts if t not in pressed)
    buttons.filter(has_text=re.compile(f"^\\s*{re.escape(value)}\\s*$")).first.click()
    return value


def table_text(scope) -> str:
    """The text of every HTML table under `scope` (pandas' to_html, ipywidgets HTML...)."""
    return "\n".join(scope.locator("table").all_inner_texts())
