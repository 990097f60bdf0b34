"""JupyterLab in a real browser, for tests/test_browser.py: the server, the page, the panel.

:class:`JupyterLab` runs a private JupyterLab server on a free loopback port with a token,
every Jupyter, JupyterLab and IPython directory (and ``HOME``, ``TMPDIR``) under one
temporary folder, and a ``python3`` kernelspec running this very Python; :meth:`stop`
ends it with its kernels. :class:`LabPage` drives one Chromium page (Debian's
``/usr/bin/chromium``, through Playwright) in that JupyterLab: open a notebook, run cells
with JupyterLab's own commands (``window.jupyterapp``), wait with deadlines, read the
progress panels out of the DOM, take screenshots.

What the panel looks like in the DOM is in the selector constants below (:data:`SUMMARY`,
:data:`PANEL`... and the ipywidgets ones), read by one script, :data:`_READ_PANELS_JS`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from dicommove.testing.peers import LOOPBACK, free_port, require_peers, wait_for

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Error, Page

#: Debian's Chromium: Playwright drives it (no ``playwright install`` download needed).
CHROMIUM = Path("/usr/bin/chromium")
#: Set to 1 to make a missing browser prerequisite fail the tests instead of skipping them
#: (``DICOMMOVE_REQUIRE_PEERS=1``, which CI sets, does the same).
ENV_REQUIRE_BROWSER = "DICOMMOVE_REQUIRE_BROWSER"
#: A directory the screenshots are copied to, besides the test's own ``tmp_path``.
ENV_SCREENSHOTS = "DICOMMOVE_SCREENSHOTS"
INSTALL_HINT = (
    "install them with: apt-get install -y chromium chromium-driver (as root; or "
    "scripts/install-peers.sh chromium chromium-driver) and pip install -e '.[browser]' "
    "(jupyterlab, playwright; no `playwright install`: the tests drive Debian's Chromium)"
)

# -- what the progress panel looks like in the DOM -------------------------------------------
# The final static summary that replaces the live panel when a move ends (an HTML output):
SUMMARY = ".dicommove-summary"  # data-state: complete, cancelled... (and a PANEL_STATE)
SUMMARY_BAR = ".dicommove-bar"  # style="width: NN%"
# The live panel: an ipywidgets VBox with classes of its own.
PANEL = ".dicommove-panel"
PANEL_STATE = ".dicommove-state"
PANEL_COUNT = ".dicommove-count"
# Inside it, and the whole panel before it had classes (commit d51a762 and earlier), the
# ipywidgets 8 class names: a VBox whose first HTML child is the title
# "<b>C-MOVE</b> <span style='color:...'>state</span>".
WIDGET_BOX = ".widget-vbox"
WIDGET_TITLE = ".widget-html"
WIDGET_PROGRESS = ".widget-hprogress"  # an IntProgress (".widget-vprogress" if vertical)
WIDGET_BAR = ".widget-hprogress .progress-bar"  # style="width: NN%"; also .progress-bar-info
WIDGET_LABEL = "div.widget-label"  # a Label: "24 / 24 instances" (label.widget-label: hidden
# description labels of the other widgets)
#: The panel's Cancel button (an ipywidgets Button, ``button.jupyter-button`` "Cancel").
CANCEL_BUTTON = "button.jupyter-button"
CANCEL_TEXT = "Cancel"
#: What JupyterLab's widget renderer shows when a widget's model is gone (kernel restarted).
WIDGET_ERRORS = ("Error displaying widget", "model not found")

# -- JupyterLab's DOM (4.x) ------------------------------------------------------------------
CELL = ".jp-Notebook .jp-Cell"
CODE_CELL = ".jp-Notebook .jp-CodeCell"
INPUT_PROMPT = ".jp-InputPrompt"  # "[ ]:", "[*]:", "[3]:"
OUTPUT = ".jp-OutputArea-output"
KERNEL_STATUS = ".jp-Notebook-ExecutionIndicator"  # data-status: idle, busy...

#: Reads every progress panel of one cell: ``[{kind, state, count, percent, text}]``, kind
#: ``summary`` (the static summary), ``panel`` (the classed live panel) or ``widget``
#: (a live panel without classes). Argument: [cell index, selectors].
_READ_PANELS_JS = """
([index, s]) => {
  const cell = document.querySelectorAll(s.CELL)[index];
  if (!cell) return null;
  const text = (el) => (el ? el.textContent.replace(/\\s+/g, " ").trim() : null);
  const bar = (el, sel) => {
    const b = el.querySelector(sel);
    const m = b && /([\\d.]+)%/.exec(b.style.width || "");
    return m ? parseFloat(m[1]) : null;
  };
  const found = [];
  for (const el of cell.querySelectorAll(s.SUMMARY)) {
    // data-state is stripped by JupyterLab's sanitizer in an untrusted notebook
    found.push({kind: "summary", state: el.dataset.state || text(el.querySelector(s.PANEL_STATE)),
                count: text(el.querySelector(s.PANEL_COUNT)),
                percent: bar(el, s.SUMMARY_BAR), text: text(el)});
  }
  for (const el of cell.querySelectorAll(s.PANEL)) {
    found.push({kind: "panel", state: text(el.querySelector(s.PANEL_STATE)),
                count: text(el.querySelector(s.PANEL_COUNT)),
                percent: bar(el, s.WIDGET_BAR), text: text(el)});
  }
  for (const el of cell.querySelectorAll(s.WIDGET_BOX)) {
    if (el.closest(s.PANEL) || !el.querySelector(s.WIDGET_PROGRESS)) continue;
    const title = el.querySelector(s.WIDGET_TITLE);
    found.push({kind: "widget", state: text(title && title.querySelector("span")),
                count: text(el.querySelector(s.WIDGET_LABEL)),
                percent: bar(el, s.WIDGET_BAR), text: text(el)});
  }
  return found;
}
"""

_SELECTORS = {
    "CELL": CELL,
    "SUMMARY": SUMMARY,
    "SUMMARY_BAR": SUMMARY_BAR,
    "PANEL": PANEL,
    "PANEL_STATE": PANEL_STATE,
    "PANEL_COUNT": PANEL_COUNT,
    "WIDGET_BOX": WIDGET_BOX,
    "WIDGET_TITLE": WIDGET_TITLE,
    "WIDGET_PROGRESS": WIDGET_PROGRESS,
    "WIDGET_BAR": WIDGET_BAR,
    "WIDGET_LABEL": WIDGET_LABEL,
}


@dataclass(frozen=True)
class PanelReading:
    """One progress panel as the DOM shows it."""

    kind: str  # "summary", "panel" or "widget"
    state: str | None  # running, complete, incomplete, cancelled
    count: str | None  # "24 / 24 instances" (live panels)
    percent: float | None  # the bar's width (live panels)
    text: str

    @property
    def final(self) -> bool:
        """Whether it shows a move that ended (the summary, or a live panel not running)."""
        return self.kind == "summary" or (self.state not in (None, "running"))

    def instances(self) -> int | None:
        """The instances received so far, from ``count`` ("24 / 24 instances")."""
        m = re.match(r"\s*([\d,]+)", self.count or "")
        return int(m.group(1).replace(",", "")) if m else None


# -- prerequisites ---------------------------------------------------------------------------


def require_browser() -> bool:
    """Whether a missing browser prerequisite is a failure (DICOMMOVE_REQUIRE_BROWSER=1, or
    DICOMMOVE_REQUIRE_PEERS=1 as in CI) rather than a skip."""
    value = os.environ.get(ENV_REQUIRE_BROWSER, "").strip().lower()
    return value in {"1", "true", "yes"} or require_peers()


def missing_prerequisites() -> list[str]:
    """What the browser tests need and is not here: Chromium, jupyterlab, playwright."""
    import importlib.util

    missing = []
    if not os.access(CHROMIUM, os.X_OK):
        missing.append(str(CHROMIUM))
    for module in ("jupyterlab", "playwright", "ipykernel", "ipywidgets"):
        if importlib.util.find_spec(module) is None:
            missing.append(f"the Python package {module}")
    return missing


def ensure_browser_or_skip() -> None:
    """Skip the calling test when a prerequisite is missing, or fail it when required."""
    missing = missing_prerequisites()
    if not missing:
        return
    message = f"the browser tests need {', '.join(missing)}: {INSTALL_HINT}"
    if require_browser():
        pytest.fail(
            f"{message} ({ENV_REQUIRE_BROWSER}=1 or DICOMMOVE_REQUIRE_PEERS=1)", pytrace=False
        )
    pytest.skip(message)


# -- the JupyterLab server -------------------------------------------------------------------


def _write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")


@dataclass
class JupyterLab:
    """A private JupyterLab server on 127.0.0.1; use :meth:`start` and :meth:`stop`.

    ``base`` holds everything: ``base/root`` (the served notebooks), the isolated Jupyter,
    JupyterLab, IPython, home and temporary directories, and the server log
    (``base/jupyterlab.log``).
    """

    base: Path
    port: int = 0
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    process: subprocess.Popen[bytes] | None = None

    @property
    def root(self) -> Path:
        return self.base / "root"

    @property
    def log(self) -> Path:
        return self.base / "jupyterlab.log"

    @property
    def settings_dir(self) -> Path:
        return self.base / "lab-settings"

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def notebook_url(self, name: str, workspace: str) -> str:
        """The URL that opens ``name`` (relative to :attr:`root`) alone in a fresh workspace."""
        return f"{self.url}/lab/workspaces/{workspace}/tree/{name}?reset&token={self.token}"

    def environment(self) -> dict[str, str]:
        """The server's environment: ours, with every Jupyter/IPython directory under base."""
        b = self.base
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "IPYTHON"))}
        env.update(
            HOME=str(b / "home"),
            XDG_CONFIG_HOME=str(b / "home" / ".config"),
            XDG_DATA_HOME=str(b / "home" / ".local" / "share"),
            XDG_CACHE_HOME=str(b / "home" / ".cache"),
            TMPDIR=str(b / "tmp"),
            JUPYTER_PATH=str(b / "jupyter"),  # first in the kernelspec search: our python3
            JUPYTER_CONFIG_DIR=str(b / "config"),
            JUPYTER_DATA_DIR=str(b / "data"),
            JUPYTER_RUNTIME_DIR=str(b / "runtime"),
            JUPYTERLAB_SETTINGS_DIR=str(self.settings_dir),
            JUPYTERLAB_WORKSPACES_DIR=str(b / "lab-workspaces"),
            IPYTHONDIR=str(b / "ipython"),
            PYTHONUNBUFFERED="1",
        )
        env.pop("PYTHONSTARTUP", None)
        return env

    def _prepare(self, settings: dict[str, dict[str, object]]) -> None:
        b = self.base
        for sub in ("root", "home", "tmp", "config", "data", "runtime", "ipython"):
            (b / sub).mkdir(parents=True, exist_ok=True)
        (b / "home" / ".config").mkdir(exist_ok=True)
        _write_json(
            b / "jupyter" / "kernels" / "python3" / "kernel.json",
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": f"Python {sys.version_info[0]} (dicommove browser tests)",
                "language": "python",
                "metadata": {"debugger": False},
            },
        )
        # Loopback only: no news feed, no update check (neither reaches the internet).
        _write_json(
            b / "config" / "jupyter_server_config.json",
            {
                "LabApp": {
                    "news_url": None,
                    "check_for_updates_class": "jupyterlab.NeverCheckForUpdate",
                    "expose_app_in_browser": True,
                },
            },
        )
        defaults: dict[str, dict[str, object]] = {
            # No "receive news?" toast; no network.
            "@jupyterlab/apputils-extension/notification": {
                "fetchNews": "false",
                "checkForUpdates": False,
            },
            # Every cell in the DOM, rendered, whatever the scroll position.
            "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
        }
        for plugin, values in {**defaults, **settings}.items():
            _write_json(self.settings_dir / f"{plugin}.jupyterlab-settings", values)

    def start(
        self, *, timeout: float = 60.0, settings: dict[str, dict[str, object]] | None = None
    ) -> JupyterLab:
        """Start the server and wait until ``/api/status`` answers (``timeout`` seconds).

        ``settings`` are JupyterLab user settings, ``{"@scope/pkg-extension/plugin":
        {...}}``, written before it starts.
        """
        self._prepare(settings or {})
        self.port = free_port()
        argv = [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--allow-root",
            f"--ServerApp.ip={LOOPBACK}",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--ServerApp.root_dir={self.root}",
            f"--IdentityProvider.token={self.token}",
            "--ServerApp.terminals_enabled=False",
            "--LabApp.expose_app_in_browser=True",
        ]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                argv,
                cwd=self.root,
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, killed as one by stop()
            )
        try:
            wait_for(self._answers, timeout, interval=0.1, what="JupyterLab's /api/status")
        except BaseException:
            self.stop()
            raise
        return self

    def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(
                f"JupyterLab exited with status {self.process.returncode}:\n{self.log_tail()}"
            )
        try:
            self.api("GET", "/api/status", timeout=2)
        except (OSError, urllib.error.URLError):
            return False
        return True

    def api(self, method: str, path: str, body: object = None, *, timeout: float = 10) -> Any:
        """Call the server's REST API with the token; return the decoded JSON (or None)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def kernels(self) -> list[dict[str, Any]]:
        """The running kernels (``/api/kernels``)."""
        kernels: list[dict[str, Any]] = self.api("GET", "/api/kernels")
        return kernels

    def shutdown_kernels(self) -> None:
        """Shut every kernel down through the REST API (as the Kernel menu would)."""
        for kernel in self.kernels():
            with contextlib.suppress(urllib.error.HTTPError):
                self.api("DELETE", f"/api/kernels/{kernel['id']}", timeout=30)

    def notebook(self, name: str) -> dict[str, Any]:
        """The notebook as the server has it on disk (``/api/contents``)."""
        model: dict[str, Any] = self.api("GET", f"/api/contents/{name}?content=1")
        content: dict[str, Any] = model["content"]
        return content

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the server and its kernels: a clean shutdown first, then SIGTERM, SIGKILL.

        Kernels run in process sessions of their own: they are found as the server's
        descendants before it stops, and killed too if they outlive it.
        """
        process = self.process
        if process is None:
            return
        self.process = None
        import psutil  # type: ignore[import-untyped]

        try:
            descendants = psutil.Process(process.pid).children(recursive=True)
        except psutil.Error:
            descendants = []
        if process.poll() is None:
            with contextlib.suppress(OSError, urllib.error.URLError):
                self.api("POST", "/api/shutdown", timeout=5)  # also shuts the kernels down
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(process.pid, signal.SIGTERM)
                try:
                    process.wait(5)
                except subprocess.TimeoutExpired:
                    _signal_group(process.pid, signal.SIGKILL)
                    process.wait(5)
        _signal_group(process.pid, signal.SIGKILL)  # anything left in its group
        _gone, alive = psutil.wait_procs(descendants, timeout=5)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(alive, timeout=5)


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


# -- the browser -----------------------------------------------------------------------------


@dataclass
class LabPage:
    """One Chromium page showing one notebook in :class:`JupyterLab`, console recorded.

    ``screenshots`` is where :meth:`screenshot` writes (also copied to
    ``$DICOMMOVE_SCREENSHOTS`` when set).
    """

    lab: JupyterLab
    context: BrowserContext
    page: Page
    screenshots: Path
    console: list[str] = field(default_factory=list)  # "error: ..." / "pageerror: ..."

    @classmethod
    def open(
        cls,
        browser: Browser,
        lab: JupyterLab,
        name: str,
        *,
        workspace: str,
        screenshots: Path,
        timeout: float = 60.0,
    ) -> LabPage:
        """Open notebook ``name`` in a new browser context and wait until its kernel is idle."""
        context = browser.new_context(viewport={"width": 1280, "height": 1000})
        context.set_default_timeout(20_000)
        page = context.new_page()
        self = cls(lab, context, page, screenshots)
        page.on("console", self._on_console)
        page.on("pageerror", self._on_pageerror)
        page.goto(lab.notebook_url(name, workspace), wait_until="domcontentloaded")
        self.wait_js(
            """() => {
                const app = window.jupyterapp;
                const w = app && app.shell.currentWidget;
                const k = w && w.sessionContext && w.sessionContext.session
                    && w.sessionContext.session.kernel;
                return !!(k && k.status === "idle" && w.content.widgets.length);
            }""",
            timeout,
            what=f"{name} opened with an idle kernel",
        )
        # More room for the notebook in screenshots: fold the file browser away.
        page.evaluate("() => window.jupyterapp.shell.collapseLeft()")
        return self

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console.append(f"error: {message.text}")

    def _on_pageerror(self, error: Error) -> None:
        self.console.append(f"pageerror: {error}")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.context.close()

    # -- waiting ---------------------------------------------------------------------------

    def wait_js(self, script: str, timeout: float, *, arg: object = None, what: str) -> Any:
        """Poll ``script`` (a JS function of ``arg``) until truthy; fail after ``timeout`` s."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        try:
            handle = self.page.wait_for_function(
                script, arg=arg, timeout=timeout * 1000, polling=100
            )
        except PlaywrightTimeout:
            raise AssertionError(
                f"{what}: not reached within {timeout:g} s; console: {self.console}"
            ) from None
        return handle.json_value()

    def command(
        self, name: str, args: dict[str, object] | None = None, *, wait: bool = True
    ) -> None:
        """Run a JupyterLab command (``window.jupyterapp.commands``).

        With ``wait``, return when its promise settles (for ``notebook:run-*``: when the
        cells have run); else at once (a failure then shows in :attr:`console`).
        """
        script = (
            "([name, args]) => window.jupyterapp.commands.execute(name, args)"
            if wait
            else "([name, args]) => { window.jupyterapp.commands.execute(name, args)"
            ".catch((e) => console.error(`command ${name} failed: ${e}`)); }"
        )
        self.page.evaluate(script, [name, args or {}])

    def prompts(self) -> list[str]:
        """The input prompts of the code cells: "[ ]:", "[*]:", "[3]:"."""
        prompts: list[str] = self.page.evaluate(
            "([cell, prompt]) => Array.from(document.querySelectorAll(cell), "
            "(c) => (c.querySelector(prompt) || {}).textContent || '')",
            [CODE_CELL, INPUT_PROMPT],
        )
        return [p.strip() for p in prompts]

    def kernel_status(self) -> str | None:
        status: str | None = self.page.evaluate(
            "(sel) => { const e = document.querySelector(sel); "
            "return e ? e.getAttribute('data-status') : null; }",
            KERNEL_STATUS,
        )
        return status

    def run_cells(self, indices: Sequence[int] | None = None) -> None:
        """Run the cells at ``indices`` (notebook order, markdown included), or all cells."""
        if indices is None:
            self.command("notebook:run-all-cells", wait=False)
            return
        for index in indices:
            self.page.evaluate(
                "(i) => { window.jupyterapp.shell.currentWidget.content.activeCellIndex = i; }",
                index,
            )
            self.command("notebook:run-cell", wait=False)

    def wait_executed(
        self, indices: Sequence[int] | None, timeout: float, *, idle: bool = True
    ) -> None:
        """Wait until the cells (all code cells) show a count, and the kernel is idle."""
        self.wait_js(
            """([cellSel, promptSel, statusSel, indices, idle]) => {
                const cells = Array.from(document.querySelectorAll(cellSel));
                const picked = indices === null
                    ? cells.filter((c) => c.classList.contains("jp-CodeCell"))
                    : indices.map((i) => cells[i]);
                const done = picked.every((c) => c && /^\\[\\d+\\]:$/.test(
                    ((c.querySelector(promptSel) || {}).textContent || "").trim()));
                const status = document.querySelector(statusSel);
                return done && (!idle || (status && status.getAttribute("data-status") === "idle"));
            }""",
            timeout,
            arg=[
                CELL,
                INPUT_PROMPT,
                KERNEL_STATUS,
                None if indices is None else list(indices),
                idle,
            ],
            what="the cells run" + (" and the kernel idle" if idle else ""),
        )

    def wait_running(self, index: int, timeout: float) -> None:
        """Wait until cell ``index`` is running (its prompt reads ``[*]:``)."""
        self.wait_js(
            """([cellSel, promptSel, i]) => {
                const c = document.querySelectorAll(cellSel)[i];
                return !!c && ((c.querySelector(promptSel) || {}).textContent || "")
                    .trim() === "[*]:";
            }""",
            timeout,
            arg=[CELL, INPUT_PROMPT, index],
            what=f"cell {index} running",
        )

    # -- reading ---------------------------------------------------------------------------

    def panels(self, index: int) -> list[PanelReading]:
        """The progress panels in the outputs of cell ``index``."""
        found = self.page.evaluate(_READ_PANELS_JS, [index, _SELECTORS]) or []
        return [PanelReading(**p) for p in found]

    def wait_until(self, predicate: Callable[[], object], timeout: float, *, what: str) -> None:
        """Poll ``predicate`` (Python, reading the page) until truthy, for ``timeout`` s."""
        try:
            wait_for(predicate, timeout, interval=0.1, what=what)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}; console: {self.console}") from None

    def wait_panel(
        self, index: int, timeout: float, *, what: str, until: Callable[[PanelReading], bool]
    ) -> PanelReading:
        """Poll the panel of cell ``index`` until ``until(reading)`` holds; return it."""
        last: list[PanelReading] = []

        def check() -> PanelReading | None:
            last[:] = self.panels(index)
            return next((p for p in last if until(p)), None)

        try:
            found = wait_for(check, timeout, interval=0.1, what=what)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}; the cell shows {last}; console: {self.console}") from None
        assert found is not None
        return found

    def output_text(self, index: int) -> str:
        """The text of cell ``index``'s outputs."""
        text: str = self.page.evaluate(
            "([cellSel, outSel, i]) => Array.from("
            "document.querySelectorAll(cellSel)[i].querySelectorAll(outSel), "
            "(o) => o.textContent).join('\\n')",
            [CELL, OUTPUT, index],
        )
        return text

    def error_outputs(self) -> list[str]:
        """The ``ename: evalue`` of every error output in the notebook's model."""
        errors: list[str] = self.page.evaluate(
            """() => {
                const cells = window.jupyterapp.shell.currentWidget.content.model.cells;
                const found = [];
                for (let i = 0; i < cells.length; i++) {
                    for (const o of cells.get(i).toJSON().outputs || []) {
                        if (o.output_type === "error") found.push(`${o.ename}: ${o.evalue}`);
                    }
                }
                return found;
            }"""
        )
        return errors

    def save(self, timeout: float = 20.0) -> None:
        """Save the notebook (``docmanager:save``) and wait until it is no longer dirty."""
        self.command("docmanager:save")
        self.wait_js(
            "() => !window.jupyterapp.shell.currentWidget.context.model.dirty",
            timeout,
            what="the notebook saved",
        )

    def set_theme(self, theme: str, timeout: float = 20.0) -> None:
        """Switch JupyterLab's theme ("JupyterLab Dark", "JupyterLab Light") and wait for it."""
        self.command("apputils:change-theme", {"theme": theme})
        # applied, and JupyterLab's splash (shown while the theme loads) gone
        self.wait_js(
            "(theme) => document.body.dataset.jpThemeName === theme"
            " && !document.getElementById('jupyterlab-splash')",
            timeout,
            arg=theme,
            what=f"the theme {theme!r} applied",
        )

    def body_text(self) -> str:
        text: str = self.page.evaluate("() => document.body.textContent")
        return text

    def manifest_table(self, index: int) -> dict[str, Any]:
        """The first manifest table in cell ``index``'s outputs: its header cells, and the
        height of its tallest body row in lines (``rows_in_lines``), or ``{}`` if none."""
        table: dict[str, Any] = self.page.evaluate(
            """([cellSel, i]) => {
                const cell = document.querySelectorAll(cellSel)[i];
                const table = cell.querySelector(".dicommove-manifest table");
                if (!table) return {};
                const head = Array.from(
                    table.querySelectorAll("thead th"), (th) => th.textContent.trim());
                const td = table.querySelector("tbody td");
                const line = parseFloat(getComputedStyle(td).lineHeight) || 20;
                const tallest = Math.max(...Array.from(table.querySelectorAll("tbody tr"),
                    (tr) => tr.getBoundingClientRect().height));
                return {head: head, rows_in_lines: tallest / line};
            }""",
            [CELL, index],
        )
        return table

    def scroll_to(self, index: int) -> None:
        """Scroll cell ``index`` to the top of the notebook's viewport."""
        self.page.evaluate(
            "([sel, i]) => document.querySelectorAll(sel)[i].scrollIntoView({block: 'start'})",
            [CELL, index],
        )

    def click_cancel(self, index: int) -> None:
        """Click the Cancel button of the panel in cell ``index``."""
        cell = self.page.locator(CELL).nth(index)
        cell.locator(CANCEL_BUTTON, has_text=CANCEL_TEXT).first.click(timeout=10_000)

    def screenshot(self, name: str) -> Path:
        """Save a full-page screenshot as ``name`` (and in ``$DICOMMOVE_SCREENSHOTS``)."""
        self.screenshots.mkdir(parents=True, exist_ok=True)
        path = self.screenshots / name
        self.page.screenshot(path=str(path), full_page=True)
        stable = os.environ.get(ENV_SCREENSHOTS)
        if stable:
            Path(stable).mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, Path(stable) / name)
        return path


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's headless Chromium, through Playwright; closed at the end."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        try:
            yield browser
        finally:
            browser.close()
