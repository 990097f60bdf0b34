"""Cohort benchmark driver: ``dicommove.move()`` of a CSV of StudyInstanceUIDs, as its own process.

    python benchmarks/cohort_driver.py AE@HOST:PORT --cohort CSV --out DIR --port N
        [--ae-title AE] [--option KEY=VALUE ...] [--manifest CSV] [--report JSON]

What a user with a cohort file does: ``df = pandas.read_csv(CSV, dtype=str)`` (one column,
StudyInstanceUID), then ``dicommove.move(pacs, df, out=DIR, port=N, ae_title=AE,
progress=False, errors="ignore", **options)``: one C-MOVE per row. ``--option`` passes a
move() option (``workers=4``, ``batch=10``, ``split=False``; values are Python literals).
``--manifest`` writes the manifest with ``dicommove.manifest.write_csv``; ``--report`` writes
timings (start, import, move, manifest), the status counts, and the error of a move that
raised (e.g. a TypeError for an option this dicommove does not know yet).

Exit status: 0 every row of the manifest is ``received``; 1 some are not; 2 ``move()`` raised.
"""

from __future__ import annotations

import time

T_START = time.time()  # before the heavy imports: how long did the interpreter take to get here

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from dicommove_driver import finish, parse_option, status_counts  # noqa: E402  (benchmarks/ is on sys.path)


def main(argv: list[str] | None = None) -> int:
    """Run the move; return the exit status."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("pacs", help="AE@host:port")
    ap.add_argument("--cohort", type=Path, required=True, help="CSV with a StudyInstanceUID column")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--ae-title", default="DICOMMOVE")
    ap.add_argument("--option", type=parse_option, action="append", default=[])
    ap.add_argument("--manifest", type=Path, help="write the manifest here (CSV)")
    ap.add_argument("--report", type=Path, help="write timings and status counts here (JSON)")
    args = ap.parse_args(argv)
    options = dict(args.option)

    t_import = time.time()
    import pandas as pd

    import dicommove
    from dicommove import manifest as manifest_io
    from dicommove import move

    t_move = time.time()
    report: dict[str, Any] = {
        "dicommove": dicommove.__version__,
        "options": {k: repr(v) for k, v in options.items()},
        "start": T_START,
        "import_s": t_move - t_import,
    }
    try:
        df = pd.read_csv(args.cohort, dtype=str)
        manifest = move(
            args.pacs,
            df,
            out=args.out,
            port=args.port,
            ae_title=args.ae_title,
            progress=False,
            errors="ignore",
            **options,
        )
    except Exception as exc:  # recorded, not hidden: the benchmark reports it as a failed run
        traceback.print_exc()
        report.update(
            move_s=time.time() - t_move,
            end=time.time(),
            error=f"{type(exc).__name__}: {exc}",
            ok=False,
        )
        if args.report is not None:
            args.report.write_text(json.dumps(report))
        print(json.dumps(report))
        return 2
    t_written = t_end = time.time()
    if args.manifest is not None:
        manifest_io.write_csv(manifest, args.manifest)
        t_written = time.time()
    counts, ok = status_counts(manifest)
    report.update(
        move_s=t_end - t_move,
        manifest_s=t_written - t_end,
        end=t_written,
        rows=len(manifest),
        status_counts=counts,
        ok=ok,
    )
    return finish(report, manifest, args.report)


if __name__ == "__main__":
    sys.exit(main())
