"""Execute notebooks/quickstart.ipynb in a kernel of this very Python environment."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "quickstart.ipynb"
KERNEL_NAME = "python3"


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


def _read_notebook() -> Any:
    return nbformat.read(NOTEBOOK, as_version=4)  # type: ignore[no-untyped-call]


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


def test_notebook_is_stored_clean() -> None:
    nb = _read_notebook()
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"cell {cell.id} has stored outputs"
            assert cell.execution_count is None, f"cell {cell.id} has an execution count"


@pytest.mark.notebook
def test_quickstart_notebook_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from jupyter_client.kernelspec import KernelSpecManager
    from nbclient import NotebookClient

    jupyter_path = tmp_path / "jupyter"
    _install_kernelspec(jupyter_path)
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter_path))
    # The notebook's tempfile.mkdtemp() lands in tmp_path, which pytest cleans up.
    kernel_tmp = tmp_path / "tmp"
    kernel_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(kernel_tmp))
    spec = KernelSpecManager().get_kernel_spec(KERNEL_NAME)
    assert spec.argv[0] == sys.executable

    nb = _read_notebook()
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    client = NotebookClient(
        nb, timeout=120, kernel_name=KERNEL_NAME, resources={"metadata": {"path": str(workdir)}}
    )
    client.execute()  # raises CellExecutionError if a cell fails

    cells = {cell.id: cell for cell in nb.cells if cell.cell_type == "code"}
    for cell in cells.values():
        errors = [o for o in cell.outputs if o.get("output_type") == "error"]
        assert not errors, f"cell {cell.id} raised {errors[0].get('ename')}"
    assert "received" in _text(cells["move"])
    assert "received" in _text(cells["status-counts"])
    assert "not_found" in _text(cells["ignore"])
    assert "not_found" in _text(cells["raise"])
    assert "True" in _text(cells["csv"])
    assert list(workdir.iterdir()) == [], "the notebook wrote into its working directory"
