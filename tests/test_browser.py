"""The notebook progress panel in a real browser: JupyterLab driven by Chromium (issue 12).

A private JupyterLab (see ``browser.JupyterLab``) serves a temporary folder; Debian's
Chromium, through Playwright, opens notebooks in it, runs their cells with JupyterLab's
own commands and reads the panels out of the DOM. Scenarios:

- the quickstart notebook runs, its move panel ends complete at 100 % with its counts,
  the browser console stays free of errors (screenshots in the light and dark themes);
- a background move (``dicommove.start``) is cancelled from the panel's Cancel button,
  once with the kernel idle and once while the next cell blocks in ``job.result()``;
- the saved quickstart, reopened after its kernel was shut down, shows the final
  panel and no "Error displaying widget".

Screenshots go to a ``screenshots`` folder under pytest's temporary directory, and to
``$DICOMMOVE_SCREENSHOTS`` when set. Without ``/usr/bin/chromium``, jupyterlab or
playwright the tests skip, or fail when ``DICOMMOVE_REQUIRE_BROWSER=1`` or
``DICOMMOVE_REQUIRE_PEERS=1`` (CI).
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import nbformat
import pytest
from browser import WIDGET_ERRORS, JupyterLab, LabPage, PanelReading, ensure_browser_or_skip

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = pytest.mark.browser

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
QUICKSTART = "quickstart.ipynb"

# Deadlines (seconds) of the waits; every wait polls and gives up at its deadline.
SERVER_DEADLINE = 60.0
OPEN_DEADLINE = 60.0
RUN_DEADLINE = 90.0
#: From the Cancel click to the panel reading "cancelled".
CANCEL_DEADLINE = 6.0
#: From the Cancel click to the end of the cell waiting in ``job.result()``.
RESULT_DEADLINE = 8.0

# The cancelled move: 200 studies of 2 instances, each C-STORE delayed by the demo PACS,
# on the default 4 associations: the whole move would take FULL_MOVE seconds at least.
CANCEL_STUDIES = 200
CANCEL_INSTANCES = 2 * CANCEL_STUDIES
STORE_DELAY = 0.15
FULL_MOVE = CANCEL_INSTANCES * STORE_DELAY / 4


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterLab]:
    """A private JupyterLab serving a temporary folder holding a copy of the quickstart."""
    ensure_browser_or_skip()
    server = JupyterLab(tmp_path_factory.mktemp("jupyterlab"))
    try:
        server.start(timeout=SERVER_DEADLINE)
        shutil.copy(NOTEBOOKS / QUICKSTART, server.root / QUICKSTART)
        yield server
    finally:
        server.stop()  # its kernels too, whatever happened


@pytest.fixture(scope="module")
def browser(lab: JupyterLab) -> Iterator[Browser]:
    """Debian's Chromium, headless, through Playwright."""
    from browser import chromium

    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screenshots go (also copied to ``$DICOMMOVE_SCREENSHOTS``)."""
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture
def open_page(
    lab: JupyterLab, browser: Browser, shots: Path
) -> Iterator[Callable[[str, str], LabPage]]:
    """``open_page(notebook, workspace)``: a page showing it; closed, kernels shut down, after."""
    opened: list[LabPage] = []

    def open_(name: str, workspace: str) -> LabPage:
        page = LabPage.open(
            browser, lab, name, workspace=workspace, screenshots=shots, timeout=OPEN_DEADLINE
        )
        opened.append(page)
        return page

    try:
        yield open_
    finally:
        for page in opened:
            page.close()
        lab.shutdown_kernels()


def _cell_index(name: str, cell_id: str) -> int:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)  # type: ignore[no-untyped-call]
    found = [i for i, cell in enumerate(nb.cells) if cell.get("id") == cell_id]
    if not found:
        raise LookupError(f"{name} has no cell with the id {cell_id!r}")
    return found[0]


@dataclasses.dataclass(frozen=True)
class QuickstartRun:
    """What the quickstart showed once all its cells had run."""

    seconds: float
    prompts: list[str]
    errors: list[str]
    panels: dict[int, list[PanelReading]]
    console: list[str]


@pytest.fixture(scope="module")
def quickstart(lab: JupyterLab, browser: Browser, shots: Path) -> QuickstartRun:
    """Run the quickstart in the browser, screenshot its move panel, save it, shut it down."""
    page = LabPage.open(
        browser, lab, QUICKSTART, workspace="quickstart", screenshots=shots, timeout=OPEN_DEADLINE
    )
    try:
        started = time.monotonic()
        page.run_cells(None)
        try:
            page.wait_executed(None, RUN_DEADLINE)
        except BaseException:
            page.screenshot("quickstart-failed.png")
            raise
        seconds = time.monotonic() - started
        cells = len(nbformat.read(NOTEBOOKS / QUICKSTART, as_version=4).cells)  # type: ignore[no-untyped-call]
        run = QuickstartRun(
            seconds=seconds,
            prompts=page.prompts(),
            errors=page.error_outputs(),
            panels={i: found for i in range(cells) if (found := page.panels(i))},
            console=list(page.console),
        )
        page.scroll_to(_cell_index(QUICKSTART, "move"))
        page.screenshot("quickstart-complete.png")
        page.set_theme("JupyterLab Dark")
        page.screenshot("quickstart-complete-dark.png")
        page.set_theme("JupyterLab Light")
        page.save()
        return dataclasses.replace(run, console=list(page.console))  # errors until saved
    finally:
        page.close()
        lab.shutdown_kernels()


# -- the quickstart ----------------------------------------------------------------------------


def _assert_complete(panel: PanelReading, instances: int) -> None:
    """The final summary, or a live panel, showing a complete move of ``instances``."""
    assert panel.state == "complete", panel
    if panel.kind != "summary":  # a live panel has its bar and its count
        assert panel.percent is not None, f"no progress bar found: {panel}"
        assert panel.count is not None, f"no count found: {panel}"
    if panel.percent is not None:
        assert panel.percent == pytest.approx(100.0), panel
    if panel.count is not None:
        assert panel.count.startswith(f"{instances} / {instances} instances"), panel
    assert f"received {instances} (" in panel.text, panel
    assert not re.search(r"failed [1-9]", panel.text), panel


def test_quickstart_panel_reaches_100_percent(quickstart: QuickstartRun) -> None:
    run = quickstart
    assert all(re.fullmatch(r"\[\d+\]:", p) for p in run.prompts), run.prompts
    assert run.errors == []
    move = _cell_index(QUICKSTART, "move")
    assert len(run.panels.get(move, [])) == 1, run.panels
    _assert_complete(run.panels[move][0], 24)
    # Every move of the notebook shows a panel that ended (complete, or incomplete where
    # the notebook asks for a study that does not exist).
    expected = {_cell_index(QUICKSTART, c) for c in ("move", "series", "ignore", "raise")}
    assert expected <= set(run.panels), run.panels
    for index, panels in run.panels.items():
        assert all(p.final for p in panels), (index, panels)
    assert run.console == [], "the browser console logged errors"
    assert run.seconds < RUN_DEADLINE


# -- Cancel ------------------------------------------------------------------------------------

_CANCEL_CELLS = [
    f"""\
import socket
import tempfile
import time
from pathlib import Path

import dicommove
from dicommove.testing import DemoPACS, make_cohort

work = Path(tempfile.mkdtemp(prefix="dicommove-cancel-"))
index = make_cohort(work / "pacs", patients=20, studies={CANCEL_STUDIES // 20}, series=1,
                    instances=2, rows=8, cols=8)
cohort = index.drop_duplicates("StudyInstanceUID")[["StudyInstanceUID"]]
pacs = DemoPACS(work / "pacs").start()
pacs.faults.delay_per_store = {STORE_DELAY}  # a slow PACS: time to click Cancel
with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
pacs.add_destination("STORE-SCP", "127.0.0.1", port)
len(index), len(cohort)""",
    """\
job = dicommove.start(
    pacs.node, cohort, out=work / "out", port=port, progress="widget", errors="ignore"
)
started = time.monotonic()""",
    """\
try:
    df = job.result()
except dicommove.MoveCancelled as exc:
    df = exc.manifest
print(f"result after {time.monotonic() - started:.1f} s")
counts = df["status"].value_counts()
print(counts[counts > 0].to_string())
df[df["status"] == "cancelled"].head(3)  # the manifest as a notebook shows it""",
    "pacs.stop()",
]
SETUP, START, RESULT, STOP = range(4)


def _write_cancel_notebook(lab: JupyterLab, name: str) -> str:
    nb = nbformat.v4.new_notebook()  # type: ignore[no-untyped-call]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nb.cells = [nbformat.v4.new_code_cell(src) for src in _CANCEL_CELLS]  # type: ignore[no-untyped-call]
    nbformat.write(nb, lab.root / name)  # type: ignore[no-untyped-call]
    return name


def _moving(page: LabPage) -> PanelReading:
    """Wait until the panel of the START cell counts a received instance."""
    return page.wait_panel(
        START,
        RUN_DEADLINE,
        what="the panel counting received instances",
        until=lambda p: p.state == "running" and (p.instances() or 0) > 0,
    )


def _cancelled(page: LabPage, clicked: float) -> PanelReading:
    remaining = max(clicked + CANCEL_DEADLINE - time.monotonic(), 0.1)
    return page.wait_panel(
        START,
        remaining,
        what=f"the panel reading 'cancelled' within {CANCEL_DEADLINE:g} s of the click",
        until=lambda p: p.state == "cancelled",
    )


def _assert_cancelled_rows(text: str) -> None:
    """The RESULT cell's status counts: cancelled rows, fewer instances than the cohort's."""
    cancelled = re.search(r"^cancelled\s+(\d+)$", text, re.M)
    received = re.search(r"^received\s+(\d+)$", text, re.M)
    assert cancelled and int(cancelled.group(1)) > 0, text
    assert received is None or int(received.group(1)) < CANCEL_INSTANCES, text


def test_cancel_while_kernel_idle(
    lab: JupyterLab, open_page: Callable[[str, str], LabPage]
) -> None:
    """Cancel clicked while no cell runs: the click reaches the kernel at once."""
    page = open_page(_write_cancel_notebook(lab, "cancel-idle.ipynb"), "idle")
    page.run_cells([SETUP, START])
    page.wait_executed([SETUP, START], RUN_DEADLINE)
    _moving(page)
    clicked = time.monotonic()
    page.click_cancel(START)
    try:
        panel = _cancelled(page, clicked)
        assert panel.final, panel
        page.run_cells([RESULT, STOP])
        page.wait_executed(None, RESULT_DEADLINE)
    finally:
        page.scroll_to(START)
        page.screenshot("cancel-idle.png")
    _assert_cancelled_rows(page.output_text(RESULT))
    assert page.error_outputs() == []
    assert page.console == [], "the browser console logged errors"


def test_cancel_while_result_blocks(
    lab: JupyterLab, open_page: Callable[[str, str], LabPage]
) -> None:
    """Cancel clicked while the next cell waits in ``job.result()``: the move stops."""
    page = open_page(_write_cancel_notebook(lab, "cancel-blocked.ipynb"), "blocked")
    page.run_cells(None)
    page.wait_executed([SETUP, START], RUN_DEADLINE, idle=False)
    page.wait_running(RESULT, RUN_DEADLINE)
    _moving(page)
    clicked = time.monotonic()
    page.click_cancel(START)
    prompts = page.prompts()
    assert prompts[RESULT] == "[*]:", f"the move ended before Cancel was clicked: {prompts}"
    try:
        panel = _cancelled(page, clicked)
        assert panel.final, panel
        page.wait_executed(None, max(clicked + RESULT_DEADLINE - time.monotonic(), 0.1))
        took = time.monotonic() - clicked
    finally:
        page.scroll_to(START)
        page.screenshot("cancel-while-blocked.png")
    assert took < FULL_MOVE / 2, f"job.result() returned {took:.1f} s after the click"
    _assert_cancelled_rows(page.output_text(RESULT))
    # the manifest: request, status and reason first, each row on one line (defect 8)
    table = page.manifest_table(RESULT)
    assert table.get("head", [])[1:4] == ["request", "status", "reason"], table
    assert table["rows_in_lines"] < 1.9, table
    assert page.error_outputs() == []
    assert page.console == [], "the browser console logged errors"


# -- reopened after the kernel is gone -----------------------------------------------------------


def test_reopened_notebook_shows_final_panel(
    quickstart: QuickstartRun, lab: JupyterLab, open_page: Callable[[str, str], LabPage]
) -> None:
    """Saved after the run, kernel shut down, reopened: the final panel, no widget error."""
    assert lab.kernels() == []
    move = _cell_index(QUICKSTART, "move")
    saved = lab.notebook(QUICKSTART)
    assert saved["cells"][move]["outputs"], "the saved notebook has no output for the move"

    page = open_page(QUICKSTART, "reopened")

    def shown() -> bool:
        """The move cell shows a panel that ended, or the widget renderer's error."""
        text = page.output_text(move)
        return any(p.final for p in page.panels(move)) or any(e in text for e in WIDGET_ERRORS)

    try:
        page.wait_until(shown, OPEN_DEADLINE, what="the move cell's saved output shown")
    finally:
        page.scroll_to(move)
        page.screenshot("reopened.png")
    body = page.body_text()
    for error in WIDGET_ERRORS:
        assert error not in body, f"the reopened notebook shows {error!r}"
    panels = page.panels(move)
    assert [p.kind for p in panels] == ["summary"], panels
    _assert_complete(panels[0], 24)
    assert page.console == [], "the browser console logged errors"
