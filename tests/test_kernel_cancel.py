"""The panel's Cancel button, clicked while a cell waits (issue 12, defect 1).

A real ipykernel runs a background job on the demo PACS and then blocks in
``job.result()`` (or blocks in ``dicommove.move()``); the test sends the click as a
browser does (a ``comm_msg`` on the shell channel, which the main shell reads only between
cells) and checks that it was handled at once: the move ends cancelled long before the
slow move would have finished. With neither a subshell nor jupyter-ui-poll the click
waits for the cell, and the panel said so meanwhile.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.notebook

SETUP = """
import json, socket, tempfile
from pathlib import Path
import dicommove
from dicommove.testing import DemoPACS, make_cohort

work = Path(tempfile.mkdtemp())
index = make_cohort(work / "pacs", patients=40, studies=1, series=1, instances=5)
with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
pacs = DemoPACS(work / "pacs", destinations={"STORE-SCP": ("127.0.0.1", port)}).start()
pacs.faults.delay_per_store = 0.05  # 200 instances: 10 s on one worker
cohort = index.drop_duplicates("StudyInstanceUID")[["StudyInstanceUID"]]
print("{}")
"""

START = """
job = dicommove.start(pacs.node, cohort, out=work / "out", port=port, workers=1,
                      progress="widget", errors="ignore")
print(json.dumps({"button": job._reporter.cancel_button.model_id}))
"""

WAIT = """
import time
t0 = time.monotonic()
try:
    job.result()
    outcome = "complete"
except dicommove.MoveCancelled:
    outcome = "cancelled"
print(json.dumps({"outcome": outcome, "waited": time.monotonic() - t0,
                  "received": int((job.manifest["status"] == "received").sum())}))
"""


@pytest.fixture
def kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from jupyter_client.manager import KernelManager

    # a kernelspec of this very Python, first in the search path
    spec = tmp_path / "jupyter" / "kernels" / "dicommove-test"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    km = KernelManager(kernel_name="dicommove-test")
    km.start_kernel(cwd=str(tmp_path))
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        yield kc
    finally:
        kc.execute("pacs.stop()")
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def run_cell(kc: Any, code: str, timeout: float = 60) -> dict[str, Any]:
    """Execute ``code`` and return the JSON its last printed line holds."""
    msg_id = kc.execute(code)
    return collect(kc, msg_id, timeout)


def collect(
    kc: Any, msg_id: str, timeout: float, widgets: list[str] | None = None
) -> dict[str, Any]:
    """Wait for the cell ``msg_id``; return its JSON, and put widget updates in ``widgets``."""
    deadline = time.monotonic() + timeout
    out: list[str] = []
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"the cell did not finish in {timeout} s: {''.join(out)}"
        msg = kc.get_iopub_msg(timeout=left)
        kind, content = msg["msg_type"], msg["content"]
        if kind == "comm_msg" and widgets is not None:
            widgets.append(json.dumps(content["data"].get("state", {})))
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if kind == "stream":
            out.append(content["text"])
        elif kind == "error":
            raise AssertionError("\n".join(content["traceback"]))
        elif kind == "status" and content["execution_state"] == "idle":
            lines = "".join(out).strip().splitlines()
            assert lines, "the cell printed nothing"
            result: dict[str, Any] = json.loads(lines[-1])
            return result


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def click(kc: Any, model_id: str) -> None:
    """Send the comm message a browser sends when the button is clicked."""
    data = {"method": "custom", "content": {"event": "click"}}
    kc.shell_channel.send(kc.session.msg("comm_msg", {"comm_id": model_id, "data": data}))


def render(kc: Any, model_id: str) -> None:
    """Ask for the button's state, as a front end does when it renders the panel.

    The kernel answers on the comm, from the shell that handled the request: ipykernel
    7.4 would then route the comm's next messages (the click) there.
    """
    data = {"method": "request_state"}
    kc.shell_channel.send(kc.session.msg("comm_msg", {"comm_id": model_id, "data": data}))


def test_cancel_is_handled_while_a_cell_waits_on_the_job(kernel: Any) -> None:
    run_cell(kernel, SETUP, timeout=120)
    button = run_cell(kernel, START)["button"]
    render(kernel, button)
    msg_id = kernel.execute(WAIT)  # queued first: the click follows it on the same channel
    click(kernel, button)
    result = collect(kernel, msg_id, timeout=60)
    assert result["outcome"] == "cancelled"
    assert result["waited"] < 5.0  # the whole move takes about 10 s
    assert result["received"] < 200


BLOCKING = """
import time
t0 = time.monotonic()
received = -1
try:
    dicommove.move(pacs.node, cohort, out=work / "blocking", port=port, workers=1,
                   progress="widget")
    outcome = "complete"
except dicommove.MoveCancelled as exc:
    outcome = "cancelled"
    received = int((exc.manifest["status"] == "received").sum())
print(json.dumps({"outcome": outcome, "waited": time.monotonic() - t0, "received": received}))
"""


def test_cancel_stops_a_blocking_move(kernel: Any) -> None:
    run_cell(kernel, SETUP, timeout=120)
    msg_id = kernel.execute(BLOCKING)
    # the panel's Cancel button: the comm the cell opens with that description; clicked
    # once the panel is displayed, as a user can
    deadline = time.monotonic() + 30
    button = None
    displayed = False
    while button is None or not displayed:
        assert time.monotonic() < deadline, "no Cancel button was displayed"
        msg = kernel.get_iopub_msg(timeout=30)
        if msg["msg_type"] == "comm_open":
            state = msg["content"]["data"].get("state", {})
            if state.get("description") == "Cancel":
                button = msg["content"]["comm_id"]
        elif msg["msg_type"] == "display_data":
            displayed = WIDGET_VIEW in msg["content"]["data"]
    click(kernel, button)
    result = collect(kernel, msg_id, timeout=60)
    assert result["outcome"] == "cancelled" and result["waited"] < 5.0
    assert result["received"] < 200


def test_with_no_way_through_the_click_waits_for_the_cell(kernel: Any) -> None:
    # no subshell, no jupyter-ui-poll: the click is read only after the move completed
    run_cell(
        kernel,
        "import sys, dicommove.progress.events as events\n"
        "events._subshell_manager = lambda: None\n"
        "sys.modules['jupyter_ui_poll'] = None\n"
        "print('{}')",
    )
    run_cell(kernel, SETUP.replace("patients=40", "patients=8"), timeout=120)
    button = run_cell(kernel, START)["button"]
    msg_id = kernel.execute(WAIT)
    click(kernel, button)
    updates: list[str] = []
    result = collect(kernel, msg_id, timeout=60, widgets=updates)
    assert result["outcome"] == "complete" and result["received"] == 40
    # while the cell waited, the panel said how to cancel instead
    assert any("interrupt the kernel" in update for update in updates)
