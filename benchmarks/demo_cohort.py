#!/usr/bin/env python3
"""A cohort of N studies from the embedded demo PACS, moved with different worker counts.

    python benchmarks/demo_cohort.py [--studies 1000] [--instances 2] [--workers 1,4]
        [--batch 1] [--reps 1] [--out DIR]

The demo PACS (``dicommove.testing.DemoPACS``, pynetdicom) runs in a child process of its
own, so that it does not share the interpreter (and its lock) with the receiver. Each run is
one ``dicommove.move()`` of a DataFrame of N StudyInstanceUIDs (one C-MOVE per row, or
``--batch`` rows per C-MOVE) into a fresh directory, at the library defaults otherwise
(fsync on). Prints wall time, instances/s and studies/s per worker count, and checks that
every instance arrived. The demo PACS is slow by design (pynetdicom, ~1-2 ms of CPU per
C-STORE): these numbers describe the engine's overlap of requests, not a PACS's speed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

AE = "DEMO-BENCH"


def serve(root: str, port: int, conn: Connection) -> None:
    """Child process: run the demo PACS until the parent closes the pipe."""
    from dicommove.testing import DemoPACS

    with DemoPACS(Path(root), destinations={AE: ("127.0.0.1", port)}) as pacs:
        conn.send(str(pacs.node))
        with contextlib.suppress(EOFError):
            conn.recv()  # blocks until the parent says stop


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return the exit status (1 if an instance was lost)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=1000)
    ap.add_argument("--instances", type=int, default=2, help="instances per study")
    ap.add_argument("--workers", default="1,4", help="comma-separated worker counts")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--out", type=Path, help="working directory (default: a temp dir)")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args(argv)

    import pandas as pd

    import dicommove
    from dicommove.testing import make_cohort
    from dicommove.testing.peers import free_port

    work = args.out or Path(tempfile.mkdtemp(prefix="dicommove-demo-cohort-"))
    source = work / "source"
    cohort = make_cohort(
        source,
        patients=args.studies,
        studies=1,
        series=1,
        instances=args.instances,
        rows=64,
        cols=64,
        seed=5,
    )
    frame = pd.DataFrame({"StudyInstanceUID": sorted(cohort["StudyInstanceUID"].unique())})
    port = free_port()
    parent, child = multiprocessing.Pipe()
    proc = multiprocessing.Process(target=serve, args=(str(source), port, child), daemon=True)
    proc.start()
    child.close()  # the child's end: closing ours lets the child see EOF
    results: list[dict[str, Any]] = []
    lost = False
    try:
        node = parent.recv()
        for rep in range(args.reps):
            for workers in [int(w) for w in args.workers.split(",")]:
                out = work / f"r{rep}-w{workers}"
                t0 = time.perf_counter()
                df = dicommove.move(
                    node,
                    frame,
                    out=out,
                    port=port,
                    ae_title=AE,
                    workers=workers,
                    batch=args.batch,
                    progress=False,
                    errors="ignore",
                )
                seconds = time.perf_counter() - t0
                ok = int((df["status"] == "received").sum())
                lost |= ok != len(cohort)
                row = {
                    "rep": rep,
                    "workers": workers,
                    "batch": args.batch,
                    "seconds": seconds,
                    "instances": ok,
                    "expected": len(cohort),
                    "instances_per_s": ok / seconds,
                    "studies_per_s": len(frame) / seconds,
                }
                results.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    finally:
        with contextlib.suppress(OSError):
            parent.send("stop")  # (not EOF: the forked child holds a copy of our end)
        parent.close()
        proc.join(timeout=30)
    print(
        f"{len(frame)} studies x {args.instances} instances from the demo PACS "
        f"(batch={args.batch}, fsync on)\n"
    )
    print("| workers | seconds | instances/s | studies/s | received |")
    print("|---|---|---|---|---|")
    for workers in sorted({r["workers"] for r in results}):
        mine = [r for r in results if r["workers"] == workers]
        secs = statistics.median(r["seconds"] for r in mine)
        got = min(r["instances"] for r in mine)
        print(
            f"| {workers} | {secs:.2f} | {got / secs:.0f} | {len(frame) / secs:.1f} | "
            f"{got}/{len(cohort)} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
