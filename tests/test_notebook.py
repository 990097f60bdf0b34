"""Execute the notebooks under notebooks/ in a kernel of this very Python environment."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
NAMES = ("quickstart", "cohort", "accession-numbers")
KERNEL_NAME = "python3"
#: Seconds one cell may take (nbclient raises a TimeoutError past it).
CELL_TIMEOUT = 60
#: Seconds a whole notebook may take, kernel start included; each takes well under.
NOTEBOOK_TIME_LIMIT = 60
#: What would send a notebook to a real PACS instead of the demo PACS.
ENVIRONMENT = ("DICOMMOVE_PACS", "DICOMMOVE_PORT", "DICOMMOVE_COHORT")


def _install_kernelspec(root: Path) -> None:
    """Write a ``python3`` kernelspec that runs ``sys.executable`` under ``root/kernels``.

    ``JUPYTER_PATH`` comes first in the kernelspec search, so the kernel runs in this
    environment even when the user's Jupyter data directory holds a ``python3`` kernelspec
    pointing at another Python.
    """
    spec_dir = root / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"Python {sys.version_info[0]} (dicommove tests)",
        "language": "python",
        "metadata": {"debugger": False},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")


def _read_notebook(name: str = "quickstart") -> Any:
    return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)  # type: ignore[no-untyped-call]


def _text(cell: Any) -> str:
    """The text of a code cell's outputs: streams, plain-text and HTML results."""
    parts: list[str] = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            parts.append(str(output.get("text", "")))
        data = output.get("data", {})
        for mime in ("text/plain", "text/html"):
            if mime in data:
                parts.append(str(data[mime]))
    return "\n".join(parts)


def _images(cell: Any) -> int:
    """How many PNG images a code cell displayed."""
    return sum("image/png" in output.get("data", {}) for output in cell.get("outputs", []))


def _number(text: str, label: str) -> int:
    """The integer printed after ``label`` (and optional spaces) in ``text``."""
    match = re.search(rf"{re.escape(label)}\s*(\d+)", text)
    assert match is not None, f"{label!r} not in {text!r}"
    return int(match.group(1))


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_stored_clean(name: str) -> None:
    nb = _read_notebook(name)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"cell {cell.id} has stored outputs"
            assert cell.execution_count is None, f"cell {cell.id} has an execution count"


def _check_quickstart(cells: dict[str, Any]) -> None:
    assert "received" in _text(cells["move"])
    assert "received" in _text(cells["status-counts"])
    assert "not_found" in _text(cells["ignore"])
    assert "not_found" in _text(cells["raise"])
    assert "True" in _text(cells["csv"])


def _check_cohort(cells: dict[str, Any]) -> None:
    assert "200 studies" in _text(cells["read-csv"])
    assert "cancelled after" in _text(cells["cancel"])
    assert "was cancelled" in _text(cells["result"])
    assert "MoveCancelled" in _text(cells["result"])  # the job's repr
    partial = _text(cells["partial-counts"])
    assert "received" in partial and "cancelled" in partial
    # The resumed run fetched exactly what the cancelled run lacked.
    check = _text(cells["resume-check"])
    kept = _number(check, "kept from the cancelled run:")
    fetched = _number(check, "fetched by the resumed run:")
    assert kept >= 200 and fetched > 0, check
    assert kept + fetched == 120 * 3 + 80 * 5, check
    assert _number(check, "fetched twice:") == 0, check
    assert "complete: True" in check
    assert "instances received" in _text(cells["manifest-summary"])
    assert "dicommove-manifest-summary" in _text(cells["manifest-summary"])  # its HTML
    assert "case-001" in _text(cells["summary"])
    assert _images(cells["plots"]) == 1
    assert _images(cells["thumbnails"]) == 1


def _check_accessions(cells: dict[str, Any]) -> None:
    assert "NO-SUCH-ACC" in _text(cells["read-csv"])
    assert "not_found" in _text(cells["resolve"])
    assert "C-FIND found no study for AccessionNumber=NO-SUCH-ACC" in _text(cells["resolve"])
    # verify=True names the instance that the PACS reported sent and never sent.
    assert "reported 6 sub-operations completed but 5 instances arrived" in _text(
        cells["unverified"]
    )
    assert "(verify=True), never arrived" in _text(cells["verified"])
    assert "0xA801" in _text(cells["c-move-refused"])
    assert "MoveDestinationUnknown" in _text(cells["c-move-refused"])
    got = _text(cells["c-get"])
    assert _number(got, "files received by C-GET:") == 4 * 6, got
    assert _number(_text(cells["auto"]), "files received:") == 4 * 6


CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "quickstart": _check_quickstart,
    "cohort": _check_cohort,
    "accession-numbers": _check_accessions,
}


@pytest.mark.notebook
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from jupyter_client.kernelspec import KernelSpecManager
    from nbclient import NotebookClient

    jupyter_path = tmp_path / "jupyter"
    _install_kernelspec(jupyter_path)
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter_path))
    # The notebook's tempfile.mkdtemp() lands in tmp_path, which pytest cleans up.
    kernel_tmp = tmp_path / "tmp"
    kernel_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(kernel_tmp))
    for variable in ENVIRONMENT:  # the demo PACS, even where a real one is configured
        monkeypatch.delenv(variable, raising=False)
    spec = KernelSpecManager().get_kernel_spec(KERNEL_NAME)
    assert spec.argv[0] == sys.executable

    nb = _read_notebook(name)
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name=KERNEL_NAME,
        allow_errors=False,
        resources={"metadata": {"path": str(workdir)}},
    )
    started = time.monotonic()
    client.execute()  # raises CellExecutionError if a cell fails
    elapsed = time.monotonic() - started
    assert elapsed < NOTEBOOK_TIME_LIMIT, f"{name}.ipynb took {elapsed:.1f} s"

    cells = {cell.id: cell for cell in nb.cells if cell.cell_type == "code"}
    for cell in cells.values():
        errors = [o for o in cell.outputs if o.get("output_type") == "error"]
        assert not errors, f"cell {cell.id} raised {errors[0].get('ename')}"
    CHECKS[name](cells)
    assert list(workdir.iterdir()) == [], "the notebook wrote into its working directory"
