r"""Benchmark driver: one ``dicommove move`` of a list of studies, as its own process.

    python benchmarks/dicommove_driver.py AE@HOST:PORT --studies-file F --out DIR --port N
        [--ae-title AE] [--option KEY=VALUE ...] [--report JSON]

Runs the command line a user would type, in this process:
``dicommove move ADDR -q QueryRetrieveLevel=STUDY -q StudyInstanceUID=uid1\uid2... -o DIR
-p N --calling-ae-title AE --no-progress``: all StudyInstanceUIDs of ``F`` (one per line) go
into one study-level C-MOVE, as ``movescu -k StudyInstanceUID=uid1\uid2...`` does.
``--option KEY=VALUE`` adds the CLI flag ``--KEY VALUE`` (underscores become dashes:
``workers=1``, ``split=never``, ``durability=none``, ``max_pdu_length=16384``,
``layout=flat``). The manifest goes to ``manifest.csv`` beside ``DIR``. Exit status: the
command's (0 when every instance arrived). ``--report`` writes timings (start, import,
move). Nothing else runs after the command, so that the process's wall time is the
command's: the harness reads the manifest afterwards (:func:`benchkit.manifest_status_counts`).
"""

from __future__ import annotations

import time

T_START = time.time()  # before the heavy imports: how long did the interpreter take to get here

import argparse  # noqa: E402
import ast  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from collections import Counter  # noqa: E402
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
    """Count a manifest DataFrame's statuses; ok when every row is ``received``."""
    counts = {str(k): int(v) for k, v in manifest["status"].value_counts().items() if v}
    return counts, set(counts) == {"received"}


def finish(report: dict[str, Any], manifest: Any, path: Path | None) -> int:
    """Write and print the report, list the problem rows; return the exit status.

    ``manifest`` is a DataFrame, or a list of (status, reason) problem rows.
    """
    if path is not None:
        path.write_text(json.dumps(report))
    print(json.dumps(report))
    if not report["ok"]:
        if isinstance(manifest, list):
            for (status, reason), n in Counter(manifest).most_common(20):
                print(f"{n} x {status}: {reason}", file=sys.stderr)
        else:
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
    from dicommove import __version__, cli

    t_move = time.time()
    studies = [s.strip() for s in args.studies_file.read_text().split() if s.strip()]
    cli_argv = [
        "move",
        args.pacs,
        "-q",
        "QueryRetrieveLevel=STUDY",
        "-q",
        "StudyInstanceUID=" + "\\".join(studies),
        "-o",
        str(args.out),
        "-p",
        str(args.port),
        "--calling-ae-title",
        args.ae_title,
        "--no-progress",
        "--manifest",
        str(args.out.parent / "manifest.csv"),  # beside the received files, not among them
    ]
    for key, value in options.items():
        cli_argv += [f"--{key.replace('_', '-')}", str(value)]
    code = cli.run(cli_argv)  # as the dicommove script: main(), then a quick exit
    t_end = time.time()
    report = {
        "dicommove": __version__,
        "options": {k: repr(v) for k, v in options.items()},
        "exit_code": code,
        "start": T_START,
        "import_s": t_move - t_import,
        "move_s": t_end - t_move,
        "end": t_end,
        "ok": code == 0,
        "modules": sorted(m for m in ("pandas", "pydicom", "pynetdicom") if m in sys.modules),
    }
    return finish(report, [], args.report)


if __name__ == "__main__":
    sys.exit(main())
