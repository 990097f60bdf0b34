r"""Benchmark driver: one ``dicommove.move()`` of a list of studies, as its own process.

    python benchmarks/dicommove_driver.py AE@HOST:PORT --studies-file F --out DIR --port N
        [--ae-title AE] [--option KEY=VALUE ...] [--report JSON]

All StudyInstanceUIDs of ``F`` (one per line) go into one study-level C-MOVE
(``Query.study(*uids)``), as ``movescu -k StudyInstanceUID=uid1\uid2...`` does. ``--option``
passes a Session option (``fsync=False``, ``max_pdu=0``, ``layout='flat'``; values are Python
literals). Exit status 0 when every instance arrived (manifest status ``received`` only), 1
otherwise. ``--report`` writes timings (start, import, move) and the manifest's status counts.
"""

from __future__ import annotations

import time

T_START = time.time()  # before the heavy imports: how long did the interpreter take to get here

import argparse  # noqa: E402
import ast  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402


def parse_option(text: str) -> tuple[str, Any]:
    """Parse ``KEY=VALUE`` where VALUE is a Python literal (bare words stay strings)."""
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"--option wants KEY=VALUE, got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def status_counts(manifest: Any) -> tuple[dict[str, int], bool]:
    """Count the manifest's statuses; ok when every row is ``received``."""
    counts = {str(k): int(v) for k, v in manifest["status"].value_counts().items() if v}
    return counts, set(counts) == {"received"}


def finish(report: dict[str, Any], manifest: Any, path: Path | None) -> int:
    """Write and print the report, list the problem rows; return the exit status."""
    if path is not None:
        path.write_text(json.dumps(report))
    print(json.dumps(report))
    if not report["ok"]:
        problems = manifest[manifest["status"] != "received"]
        print(problems[["status", "reason"]].value_counts().to_string(), file=sys.stderr)
    return 0 if report["ok"] else 1


def main(argv: list[str] | None = None) -> int:
    """Run the move; return the exit status."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pacs", help="AE@host:port")
    ap.add_argument("--studies-file", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--ae-title", default="DICOMMOVE")
    ap.add_argument("--option", type=parse_option, action="append", default=[])
    ap.add_argument("--report", type=Path)
    args = ap.parse_args(argv)
    options = dict(args.option)

    t_import = time.time()
    import dicommove
    from dicommove import Query

    t_move = time.time()
    studies = [s.strip() for s in args.studies_file.read_text().split() if s.strip()]
    manifest = dicommove.move(
        args.pacs,
        Query.study(*studies),
        out=args.out,
        port=args.port,
        ae_title=args.ae_title,
        progress=False,
        errors="ignore",
        **options,
    )
    t_end = time.time()
    counts, ok = status_counts(manifest)
    report = {
        "dicommove": dicommove.__version__,
        "options": {k: repr(v) for k, v in options.items()},
        "start": T_START,
        "import_s": t_move - t_import,
        "move_s": t_end - t_move,
        "end": t_end,
        "status_counts": counts,
        "ok": ok,
    }
    return finish(report, manifest, args.report)


if __name__ == "__main__":
    sys.exit(main())
