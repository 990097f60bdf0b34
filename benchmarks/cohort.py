#!/usr/bin/env python3
"""Cohort benchmark: one C-MOVE per study from Orthanc, for a CSV of StudyInstanceUIDs.

    python benchmarks/cohort.py [--quick] [--studies N] [--reps N] [--out DIR]
        [--best key=value,...] [--variant NAME:key=value,...] [--full-port-loop] [--json PATH]

What users run today to fetch a cohort is a shell loop of DCMTK ``movescu``, one C-MOVE per
study. This benchmark generates a cohort of ``--studies`` studies (default 500) of
``--instances`` small instances each (default 2, 64x64 CT) with
``dicommove.testing.make_cohort``, loads it into one Orthanc, writes it as a CSV of
StudyInstanceUIDs (what users hold), then times each receiver fetching every study,
``--reps`` times (default 3), interleaved:

* ``movescu_port_loop``: a bash loop of ``movescu --port P -od DIR`` (its own Storage SCP), one
  per study. It idles up to ~1 s per C-MOVE, so by default it is timed on the first 50 studies
  and extrapolated linearly (``--full-port-loop`` runs them all);
* ``storescp_loop``: the same loop without ``--port``, into a ``storescp`` started before and
  stopped after (only the loop is timed). **The reference of the ratios.**
* ``pynetdicom_loop``: ``benchmarks/pynetdicom_cohort.py``, one pynetdicom AE (Store SCP and
  Move SCU), one association, ``send_c_move`` per study;
* ``dicommove``: ``benchmarks/cohort_driver.py``, ``dicommove.move(pacs,
  pandas.read_csv(cohort_csv, dtype=str), ...)`` at the library defaults;
* ``dicommove_best``: the same with the ``--best`` Session options (default ``workers=4``);
* ``dicommove[NAME]``: extra variants, ``--variant NAME:key=value,...``.

Every run is timed as a whole (fork to exit, interpreter start included) into a fresh
directory and verified: every instance of every study exactly once (SOPInstanceUID set, count,
total dataset bytes, a sample of whole datasets, no leftovers in hidden directories); for
dicommove also the manifest (every row ``received``, every study and instance in it). A run
that lost anything, or whose command failed (an option dicommove does not know yet, say), is a
failure: reported with its reason, left out of the statistics, exit status 1.

Results: a Markdown table on stdout and in ``OUT/cohort.md``, every run in ``OUT/cohort.json``
(``--json PATH``: the Markdown goes beside it, as ``PATH`` with ``.md``), one log per run in
``OUT/logs/``. ``--quick``: 20 studies, 1 rep, the port loop on 5 studies (~15 s). See
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import json
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchkit import (
    DEFAULT_SAMPLE,
    Expected,
    ProcessResult,
    Receiver,
    fmt_stat,
    machine,
    parse_options,
    parse_variant,
    precompile,
    proc_cpu_seconds,
    proc_peak_rss_kib,
    reexec_in_netns,
    run_timed,
    tool_versions,
    verify_received,
)

from dicommove.testing.peers import (
    APT_INSTALL,
    LOOPBACK,
    Orthanc,
    PeerError,
    PeerMissing,
    StoreScp,
    binary,
    free_port,
    peer_env,
    require_binaries,
)

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "cohort_driver.py"
PYNETDICOM_SCRIPT = HERE / "pynetdicom_cohort.py"

#: make_cohort seed and PatientID prefix (the seed differs from bench.py's datasets).
SEED = 3
PREFIX = "COH"
DEFAULT_STUDIES = 500
QUICK_STUDIES = 20
DEFAULT_INSTANCES = 2
DEFAULT_ROWS = 64
#: movescu --port idles ~1 s per C-MOVE: timed on this many studies, extrapolated to all.
PORT_LOOP_STUDIES = 50
QUICK_PORT_LOOP_STUDIES = 5

RECEIVERS = (
    "movescu_port_loop",
    "storescp_loop",
    "pynetdicom_loop",
    "dicommove",
    "dicommove_best",
)
REFERENCE = "storescp_loop"
#: dicommove's run journal under its output root: metadata it keeps on purpose (for
#: ``resume=True``), moved beside the run before the check (``verify_received`` skips
#: ``.dicommove/`` as well); files in other hidden directories (``.dicommove-tmp/*.part``)
#: count as leftovers.
JOURNAL = Path(".dicommove", "journal.jsonl")
#: The "best settings" of dicommove for many small studies, as Session options (see --best).
BEST_OPTIONS = "workers=4"
EXIT_OK, EXIT_FAILED_RUNS, EXIT_SETUP = 0, 1, 2


def log(msg: str) -> None:
    """Progress on stderr (stdout gets the tables)."""
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# command line


def parse_receivers(text: str) -> list[str]:
    """Parse a comma-separated subset of :data:`RECEIVERS`."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in RECEIVERS]
    if bad or not items:
        raise argparse.ArgumentTypeError(f"choose from {','.join(RECEIVERS)}; got {text!r}")
    return items


def positive_int(text: str) -> int:
    """Parse an int >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"want a positive integer, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    ap = argparse.ArgumentParser(
        prog="python benchmarks/cohort.py",
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Receivers: " + ", ".join(RECEIVERS) + f". Ratios are against {REFERENCE}.",
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke test: {QUICK_STUDIES} studies, 1 rep, port loop on "
        f"{QUICK_PORT_LOOP_STUDIES} studies",
    )
    ap.add_argument(
        "--studies",
        type=positive_int,
        help=f"studies in the cohort (default {DEFAULT_STUDIES}; --quick {QUICK_STUDIES})",
    )
    ap.add_argument(
        "--instances",
        type=positive_int,
        default=DEFAULT_INSTANCES,
        help=f"instances per study (default {DEFAULT_INSTANCES})",
    )
    ap.add_argument(
        "--rows",
        type=positive_int,
        default=DEFAULT_ROWS,
        help=f"image rows = columns (default {DEFAULT_ROWS}: ~9.4 KB per instance)",
    )
    ap.add_argument(
        "--reps", type=positive_int, help="timed runs per receiver (default 3; --quick 1)"
    )
    ap.add_argument(
        "--receivers",
        type=parse_receivers,
        default=list(RECEIVERS),
        help="subset of the receivers (default: all)",
    )
    ap.add_argument(
        "--best",
        type=parse_options,
        default=parse_options(BEST_OPTIONS),
        help=f"Session options of dicommove_best (default {BEST_OPTIONS})",
    )
    ap.add_argument(
        "--variant",
        type=parse_variant,
        action="append",
        default=[],
        metavar="NAME:OPTS",
        help="extra dicommove receiver dicommove[NAME] with Session options OPTS "
        "(e.g. w8:workers=8 or b10:workers=4,batch=10); repeatable",
    )
    ap.add_argument(
        "--port-loop-studies",
        type=positive_int,
        help=f"studies the movescu_port_loop is timed on, extrapolated to all (default "
        f"{PORT_LOOP_STUDIES}; --quick {QUICK_PORT_LOOP_STUDIES})",
    )
    ap.add_argument(
        "--full-port-loop",
        action="store_true",
        help="time movescu_port_loop on every study (~1 s each) instead of extrapolating",
    )
    ap.add_argument(
        "--out",
        type=Path,
        help="working directory: the cohort and Orthanc's storage are kept there and reused by "
        "the next run with the same --out (default: a new temp dir, removed except the results)",
    )
    ap.add_argument(
        "--json",
        type=Path,
        help="results JSON (default OUT/cohort.json); the Markdown goes beside it (.md)",
    )
    ap.add_argument(
        "--timeout",
        type=float,
        help="seconds per timed command (default 60 + 3 s per study for the port loop, "
        "60 + 1 s per study for the others)",
    )
    ap.add_argument(
        "--sample",
        type=int,
        default=DEFAULT_SAMPLE,
        help=f"files per run whose whole dataset is compared (default {DEFAULT_SAMPLE}; 0 = all)",
    )
    ap.add_argument(
        "--netns",
        action="store_true",
        help="run inside a private network namespace (unshare --net; root): only loopback",
    )
    return ap


# --------------------------------------------------------------------------------------------
# the cohort


@dataclass
class Cohort:
    """The generated cohort: its files, its studies in CSV order, what a move must deliver."""

    folder: Path
    params: dict[str, Any]
    studies: list[str]
    study_of: dict[str, str]  # SOPInstanceUID -> StudyInstanceUID
    expected: Expected

    @property
    def files_dir(self) -> Path:
        """The generated files (``make_cohort`` layout)."""
        return self.folder / "files"

    @property
    def csv_path(self) -> Path:
        """The cohort as users hold it: one column, StudyInstanceUID."""
        return self.folder / "cohort.csv"

    def studies_file(self, n: int) -> Path:
        """Return a file of the first ``n`` StudyInstanceUIDs, one per line (for the loops)."""
        path = self.folder / f"studies-first{n}.txt"
        if not path.is_file():
            path.write_text("\n".join(self.studies[:n]) + "\n")
        return path

    def subset(self, n: int) -> Expected:
        """Return what a move of the first ``n`` studies must deliver."""
        wanted = set(self.studies[:n])
        return Expected(
            {
                uid: inst
                for uid, inst in self.expected.instances.items()
                if self.study_of[uid] in wanted
            },
            self.expected.transfer_syntax_uid,
        )

    def describe(self) -> dict[str, Any]:
        """For the JSON."""
        return {
            **self.params,
            "csv": str(self.csv_path),
            "instances_total": self.expected.count,
            "file_bytes": self.expected.file_bytes,
            "dataset_bytes": self.expected.dataset_bytes,
            "mean_file_bytes": self.expected.file_bytes // max(1, self.expected.count),
        }


def set_aside(path: Path, stale: Path) -> None:
    """Move ``path`` under ``stale`` (removed at the very end: deleting now would slow runs)."""
    stale.mkdir(parents=True, exist_ok=True)
    shutil.move(str(path), str(stale / f"{path.name}-{time.time_ns()}"))


def make_cohort_data(root: Path, studies: int, instances: int, rows: int, stale: Path) -> Cohort:
    """Generate (or reuse, when the parameters match) the cohort under ``root``."""
    import pandas as pd

    from dicommove.testing import make_cohort

    params: dict[str, Any] = {
        "studies": studies,
        "instances_per_study": instances,
        "rows": rows,
        "cols": rows,
        "seed": SEED,
        "prefix": PREFIX,
    }
    stamp = root / "params.json"
    index = root / "files" / "index.csv"
    if stamp.is_file() and json.loads(stamp.read_text()) == params and index.is_file():
        frame = pd.read_csv(index, dtype={"path": str, "SOPInstanceUID": str})
        log(f"cohort: reusing {len(frame)} instances in {root}")
    else:
        if root.exists():
            set_aside(root, stale)
        t0 = time.perf_counter()
        # One patient per study: the CSV of a cohort names studies of many patients.
        frame = make_cohort(
            root / "files",
            patients=studies,
            studies=1,
            series=1,
            instances=instances,
            rows=rows,
            cols=rows,
            seed=SEED,
            prefix=PREFIX,
        )
        stamp.write_text(json.dumps(params))
        log(f"cohort: generated {len(frame)} instances in {time.perf_counter() - t0:.1f} s")
    study_col = [str(s) for s in frame["StudyInstanceUID"]]
    order = list(dict.fromkeys(study_col))  # file order: patient 1, 2, ...
    cohort = Cohort(
        folder=root,
        params=params,
        studies=order,
        study_of=dict(zip((str(s) for s in frame["SOPInstanceUID"]), study_col, strict=True)),
        expected=Expected.from_paths(Path(str(p)) for p in frame["path"]),
    )
    with open(cohort.csv_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["StudyInstanceUID"])
        writer.writerows([s] for s in order)
    return cohort


# --------------------------------------------------------------------------------------------
# Orthanc


@contextlib.contextmanager
def running_orthanc(
    root: Path, modalities: dict[str, tuple[str, int]], cohort: Cohort, stale: Path
) -> Iterator[Orthanc]:
    """Start Orthanc with every receiver as a move destination; load the cohort unless it has it.

    ``root/orthanc.loaded.json`` records what the storage ``root/orthanc`` holds; storage
    holding anything else is set aside and Orthanc starts empty.
    """
    workdir = root / "orthanc"
    stamp = root / "orthanc.loaded.json"
    entry = {**cohort.params, "count": cohort.expected.count}
    try:
        loaded = json.loads(stamp.read_text())
    except (OSError, ValueError):
        loaded = None
    if workdir.exists() and loaded != entry:
        log("orthanc: storage holds other data; starting afresh")
        set_aside(workdir, stale)
        stamp.unlink(missing_ok=True)
        loaded = None
    t0 = time.perf_counter()
    with Orthanc(workdir, modalities=modalities) as server:
        log(f"orthanc: started as {server.address} in {time.perf_counter() - t0:.1f} s")
        have = server.count()
        if loaded == entry:
            if have != cohort.expected.count:
                raise PeerError(
                    f"orthanc holds {have} instances, not the {cohort.expected.count} "
                    f"{stamp.name} says: remove {workdir} and {stamp} and run again"
                )
            log(f"orthanc: reusing the cohort ({have} instances)")
        else:
            t0 = time.perf_counter()
            server.load([cohort.files_dir])
            have = server.count()
            if have != cohort.expected.count:
                raise PeerError(
                    f"orthanc holds {have} instances after loading, not {cohort.expected.count}"
                )
            stamp.write_text(json.dumps(entry))
            log(f"orthanc: loaded {have} instances in {time.perf_counter() - t0:.1f} s")
        # Untimed: bring Orthanc's files into the page cache, so that the first run pays no
        # more disk reads than the others.
        for path in (workdir / "storage").rglob("*"):
            if path.is_file():
                with open(path, "rb") as f:
                    while f.read(1 << 20):
                        pass
        yield server


# --------------------------------------------------------------------------------------------
# receivers


def make_receivers(args: argparse.Namespace) -> list[Receiver]:
    """Return the receivers asked for, each with its own AE title and a port free now."""
    titles = {
        "movescu_port_loop": "MOVESCU-LOOP",
        "storescp_loop": "STORESCP-LOOP",
        "pynetdicom_loop": "PYNETDICOM-LOOP",
        "dicommove": "DICOMMOVE",
        "dicommove_best": "DICOMMOVE-BEST",
    }
    receivers: list[Receiver] = []
    for name in args.receivers:
        if name == "dicommove_best":
            receivers.append(Receiver(name, "dicommove", titles[name], options=args.best))
        else:
            receivers.append(Receiver(name, name, titles[name]))
    for i, (variant, options) in enumerate(args.variant, start=1):
        receivers.append(Receiver(f"dicommove[{variant}]", "dicommove", f"DMV-V{i}", 0, options))
    for rec in receivers:
        rec.port = free_port()
    return receivers


def loop_script(movescu: list[str], studies_file: Path) -> str:
    """Return a bash loop running ``movescu ... -k StudyInstanceUID=<uid>`` once per line."""
    command = " ".join(shlex.quote(a) for a in movescu[:-2])
    host, port = movescu[-2:]
    return f"""#!/bin/bash
# One C-MOVE per study, as users run it today (generated by benchmarks/cohort.py).
fails=0
while IFS= read -r uid; do
    [ -n "$uid" ] || continue
    {command} -k "StudyInstanceUID=$uid" {host} {port} || fails=$((fails + 1))
done < {shlex.quote(str(studies_file))}
if [ "$fails" -ne 0 ]; then
    echo "$fails movescu runs failed" >&2
    exit 1
fi
"""


def movescu_argv(server: Orthanc, ae: str) -> list[str]:
    """DCMTK movescu, study root, without the StudyInstanceUID key (the loop adds it)."""
    return [
        str(binary("movescu")),
        "-S",
        "-aet",
        ae,
        "-aem",
        ae,
        "-aec",
        server.ae_title,
        "-k",
        "QueryRetrieveLevel=STUDY",
        LOOPBACK,
        str(server.port),
    ]


def check_manifest(path: Path, studies: Sequence[str], expected: Expected) -> dict[str, Any]:
    """Check dicommove's manifest: every row ``received``, every study and instance once."""
    if not path.is_file():
        return {"manifest_rows": 0, "manifest_problems": ["no manifest written"]}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    statuses = Counter(r.get("status", "") for r in rows)
    sops = [r.get("SOPInstanceUID", "") for r in rows if r.get("SOPInstanceUID")]
    problems: list[str] = []
    not_received = {k: v for k, v in statuses.items() if k != "received"}
    if not_received:
        problems.append(
            "manifest rows not received: "
            + ", ".join(f"{v} {k or '(empty)'}" for k, v in sorted(not_received.items()))
        )
    missing_studies = set(studies) - {r.get("StudyInstanceUID", "") for r in rows}
    if missing_studies:
        problems.append(f"manifest lacks {len(missing_studies)} of {len(studies)} studies")
    if len(sops) != len(set(sops)):
        problems.append(f"manifest lists {len(sops) - len(set(sops))} instances twice")
    if set(sops) != set(expected.instances):
        lost = len(set(expected.instances) - set(sops))
        extra = len(set(sops) - set(expected.instances))
        problems.append(f"manifest instances: {lost} missing, {extra} not requested")
    return {
        "manifest_rows": len(rows),
        "manifest_status_counts": dict(statuses),
        "manifest_problems": problems,
    }


def one_run(
    rec: Receiver,
    server: Orthanc,
    cohort: Cohort,
    *,
    rep: int,
    work: Path,
    logs: Path,
    timeout: float | None,
    sample: int,
    port_loop_studies: int,
) -> dict[str, Any]:
    """Time ``rec`` fetching the cohort from ``server``, one C-MOVE per study; verify it."""
    tag = f"r{rep}-{rec.name}".replace("[", "_").replace("]", "")
    run_dir = work / tag  # a new directory per run: nothing is deleted until the very end
    run_dir.mkdir(parents=True)
    out = run_dir / "recv"
    out.mkdir()
    n = (
        min(port_loop_studies, len(cohort.studies))
        if rec.kind == "movescu_port_loop"
        else len(cohort.studies)
    )
    expected = cohort.expected if n == len(cohort.studies) else cohort.subset(n)
    if timeout is None:
        timeout = 60.0 + (3.0 if rec.kind == "movescu_port_loop" else 1.0) * n
    env = peer_env()  # TCP_NODELAY=1: DCMTK keeps Nagle on without it
    extra: dict[str, Any] = {}
    scp: StoreScp | None = None
    error = ""
    result: ProcessResult | None = None
    log_path = logs / f"{tag}.log"
    with open(log_path, "wb") as logf:
        try:
            if rec.kind == "dicommove":
                report = run_dir / "driver.json"
                argv = [
                    sys.executable,
                    str(DRIVER),
                    server.address,
                    "--cohort",
                    str(cohort.csv_path),
                    "--out",
                    str(out),
                    "--port",
                    str(rec.port),
                    "--ae-title",
                    rec.ae,
                    "--manifest",
                    str(run_dir / "manifest.csv"),
                    "--report",
                    str(report),
                ]
                for key, value in rec.options.items():
                    argv += ["--option", f"{key}={value!r}"]
                result = run_timed(argv, timeout=timeout, env=env, cwd=run_dir, log=logf)
                if report.is_file():
                    driver = json.loads(report.read_text())
                    extra["startup_s"] = driver["start"] - result.started
                    for key in ("import_s", "move_s", "manifest_s", "status_counts", "error"):
                        if key in driver:
                            extra[key] = driver[key]
            elif rec.kind == "pynetdicom_loop":
                argv = [
                    sys.executable,
                    str(PYNETDICOM_SCRIPT),
                    LOOPBACK,
                    str(server.port),
                    "--pacs-ae",
                    server.ae_title,
                    "--cohort",
                    str(cohort.csv_path),
                    "--out",
                    str(out),
                    "--port",
                    str(rec.port),
                    "--ae-title",
                    rec.ae,
                ]
                result = run_timed(argv, timeout=timeout, env=env, cwd=run_dir, log=logf)
            elif rec.kind in ("movescu_port_loop", "storescp_loop"):
                movescu = movescu_argv(server, rec.ae)
                if rec.kind == "movescu_port_loop":
                    movescu[1:1] = ["--port", str(rec.port), "-od", str(out)]
                else:
                    scp = StoreScp(run_dir / "storescp", ae_title=rec.ae, port=rec.port).start()
                    out = scp.out_dir
                script = run_dir / "loop.sh"
                script.write_text(loop_script(movescu, cohort.studies_file(n)))
                result = run_timed(
                    ["/bin/bash", str(script)], timeout=timeout, env=env, cwd=run_dir, log=logf
                )
                pid = scp.pid if scp is not None else None
                if pid is not None:
                    extra["movescu_peak_rss_kib"] = result.peak_rss_kib
                    extra["movescu_cpu_s"] = result.cpu_seconds
                    result.peak_rss_kib = proc_peak_rss_kib(pid)  # storescp is the receiver
                    result.cpu_seconds += proc_cpu_seconds(pid)
            else:
                raise ValueError(f"unknown receiver kind {rec.kind}")
        except (PeerError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        finally:
            if scp is not None:
                scp.stop()
    journal = out / JOURNAL
    if rec.kind == "dicommove" and journal.is_file():
        # dicommove's run journal (documented metadata, not a leftover): keep it beside.
        kept = run_dir / journal.name
        journal.rename(kept)
        lines = kept.read_text(errors="replace").splitlines()
        extra["journal_lines"] = len(lines)
    check = verify_received(out, expected, sample=sample, seed=rep)
    problems = list(check.pop("problems"))
    if rec.kind == "dicommove":
        manifest = check_manifest(run_dir / "manifest.csv", cohort.studies[:n], expected)
        problems += manifest["manifest_problems"]
        extra.update(manifest)
    if error:
        problems.insert(0, error)
    elif result is None or result.timed_out:
        problems.insert(0, f"timed out after {timeout:g} s")
    elif result.returncode != 0:
        problems.insert(0, f"exit status {result.returncode}")
    if extra.get("error"):
        problems.insert(0, str(extra["error"]))
    seconds = result.seconds if result is not None else float("nan")
    scale = len(cohort.studies) / n
    row: dict[str, Any] = {
        "rep": rep,
        "receiver": rec.name,
        "ok": not problems,
        "problems": problems,
        "studies_measured": n,
        "instances_measured": expected.count,
        "scale": scale,
        "seconds_measured": seconds,
        "seconds": seconds * scale,  # for all studies (extrapolated when scale > 1)
        "studies_per_s": n / seconds if seconds else float("nan"),
        "instances_per_s": expected.count / seconds if seconds else float("nan"),
        "peak_rss_kib": result.peak_rss_kib if result is not None else 0,
        "cpu_s": (result.cpu_seconds if result is not None else float("nan")) * scale,
        "returncode": result.returncode if result is not None else None,
        "timeout_s": timeout,
        "log": str(log_path),
        **check,
        **extra,
    }
    return row


def run_line(row: dict[str, Any]) -> str:
    """Return one progress line about a run."""
    head = f"[rep {row['rep']}] {row['receiver']:20s} {row['seconds_measured']:7.2f} s"
    if row["scale"] != 1:
        head += f" ({row['studies_measured']} studies; x{row['scale']:g} = {row['seconds']:.1f} s)"
    if not row["ok"]:
        return head + "  FAILED: " + "; ".join(row["problems"])
    return head + (
        f" {row['studies_per_s']:6.1f} studies/s {row['instances_per_s']:7.1f} inst/s"
        f"  rss {row['peak_rss_kib'] / 1024:4.0f} MiB  ok"
    )


# --------------------------------------------------------------------------------------------
# reporting


def summarize(
    runs: list[dict[str, Any]], receivers: list[Receiver], cohort: Cohort
) -> list[dict[str, Any]]:
    """One row per receiver: medians, ranges and the ratio to the reference."""
    ref = [r["seconds"] for r in runs if r["receiver"] == REFERENCE and r["ok"]]
    ref_median = statistics.median(ref) if ref else None
    rows: list[dict[str, Any]] = []
    for rec in receivers:
        mine = [r for r in runs if r["receiver"] == rec.name]
        if not mine:
            continue
        good = [r for r in mine if r["ok"]]
        secs = [r["seconds"] for r in good]
        med = statistics.median(secs) if secs else None
        measured = mine[0]["studies_measured"]
        rows.append(
            {
                "receiver": rec.name,
                "runs": len(mine),
                "ok_runs": len(good),
                "studies_measured": measured,
                "extrapolated": measured != len(cohort.studies),
                "seconds": secs,
                "median_seconds": med,
                "studies_per_s": [r["studies_per_s"] for r in good],
                "instances_per_s": [r["instances_per_s"] for r in good],
                "cpu_s": [r["cpu_s"] for r in good],
                "peak_rss_MiB": [r["peak_rss_kib"] / 1024 for r in good],
                "speed_vs_" + REFERENCE: (ref_median / med) if (ref_median and med) else None,
                "dicommove_split": {
                    k: [r[k] for r in good if k in r]
                    for k in ("startup_s", "import_s", "move_s", "manifest_s")
                    if any(k in r for r in good)
                },
            }
        )
    return rows


def markdown(
    summary: list[dict[str, Any]],
    failures: list[dict[str, Any]],
    cohort: Cohort,
    receivers: list[Receiver],
    meta: dict[str, Any],
) -> str:
    """Return the results as Markdown."""
    d = cohort.describe()
    n = len(cohort.studies)
    lines = [
        f"# Cohort benchmark: one C-MOVE per study ({meta['reps']} rep(s), median (min-max))",
        "",
        f"Command: `{meta['command']}`  ",
        f"Machine: {meta['machine']['nproc']} CPUs, {meta['machine']['memory_GiB']:.1f} GiB, "
        f"{meta['machine']['kernel']}; "
        + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
        "",
        f"Cohort: {n} studies x {d['instances_per_study']} instances = {d['instances_total']} "
        f"instances of {d['rows']}x{d['cols']}, {d['file_bytes'] / 1e6:.1f} MB "
        f"({d['mean_file_bytes'] / 1e3:.1f} KB each), one patient per study, from Orthanc "
        f"{meta['versions'].get('Orthanc', '')}.",
        "",
        "| receiver | measured on | seconds | studies/s | inst/s | CPU s "
        f"| vs {REFERENCE} | ok runs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    options = {r.name: r.options for r in receivers}
    for s in summary:
        ratio = s["speed_vs_" + REFERENCE]
        measured = (
            f"{s['studies_measured']} of {n} studies (extrapolated)"
            if s["extrapolated"]
            else f"{n} studies"
        )
        name = s["receiver"]
        if options.get(name):
            name += " (" + ", ".join(f"{k}={v!r}" for k, v in options[name].items()) + ")"
        lines.append(
            f"| {name} | {measured} | {fmt_stat(s['seconds'], 2)} | "
            f"{fmt_stat(s['studies_per_s'], 1)} | {fmt_stat(s['instances_per_s'])} | "
            f"{fmt_stat(s['cpu_s'], 1)} | {'n/a' if ratio is None else f'{ratio:.2f}x'} | "
            f"{s['ok_runs']}/{s['runs']} |"
        )
    split = [s for s in summary if s["dicommove_split"]]
    if split:
        lines += [
            "",
            "dicommove: where the wall time goes (median, seconds)",
            "",
            "| receiver | interpreter start | imports | read CSV + move() | write manifest |",
            "|---|---|---|---|---|",
        ]
        for s in split:
            sp = s["dicommove_split"]
            lines.append(
                f"| {s['receiver']} | {fmt_stat(sp.get('startup_s', []), 2)} | "
                f"{fmt_stat(sp.get('import_s', []), 2)} | {fmt_stat(sp.get('move_s', []), 2)} | "
                f"{fmt_stat(sp.get('manifest_s', []), 2)} |"
            )
    lines += [
        "",
        f"`seconds`: wall time of the receiving command(s) for all {n} studies, fork to exit, "
        "interpreter start included; for a receiver measured on fewer studies, its time "
        f"scaled linearly to {n} (so are its `CPU s`). `studies/s`, `inst/s`: over the "
        f"studies measured. `CPU s`: user + system CPU of the receiving side (the loops: "
        "bash and every movescu; storescp_loop adds storescp). "
        f"`vs {REFERENCE}`: median time of {REFERENCE} / median time of the receiver "
        "(> 1 = faster). `ok runs`: runs that delivered every instance of every study "
        "exactly once, intact (and, for dicommove, a manifest with every row received); "
        "others are failures, left out of the statistics.",
    ]
    if failures:
        lines += ["", "## Failures", ""]
        lines += [
            f"- rep {r['rep']} {r['receiver']}: " + "; ".join(r["problems"]) + f" (log {r['log']})"
            for r in failures
        ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# main


def check_setup() -> None:
    """Fail early, saying how to install what is missing."""
    try:
        require_binaries("Orthanc", "storescp", "storescu", "echoscu", "movescu")
    except PeerMissing as exc:
        raise SystemExit(
            f"cohort: {exc}\n  Debian/Ubuntu: sudo apt-get update && sudo {APT_INSTALL}"
        ) from None
    for tool in ("/usr/bin/time", "/bin/bash"):
        if not os.access(tool, os.X_OK):
            raise SystemExit(f"cohort: {tool} is missing (Debian packages time, bash)")
    for module in ("pynetdicom", "pydicom", "pandas", "dicommove"):
        try:
            __import__(module)
        except ImportError:
            raise SystemExit(f"cohort: Python package {module} missing: pip install -e .") from None


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return the exit status."""
    args = build_parser().parse_args(argv)
    if args.netns:
        reexec_in_netns()
    check_setup()
    precompile()
    t_begin = time.time()
    host = machine()  # now, for the load average at the start
    reps = args.reps if args.reps is not None else (1 if args.quick else 3)
    studies = (
        args.studies
        if args.studies is not None
        else (QUICK_STUDIES if args.quick else DEFAULT_STUDIES)
    )
    port_loop = (
        args.port_loop_studies
        if args.port_loop_studies is not None
        else (QUICK_PORT_LOOP_STUDIES if args.quick else PORT_LOOP_STUDIES)
    )
    if args.full_port_loop:
        port_loop = studies
    port_loop = min(port_loop, studies)
    temp_out = args.out is None
    out = Path(tempfile.mkdtemp(prefix="dicommove-cohort-")) if temp_out else args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    json_path = args.json.resolve() if args.json else out / "cohort.json"
    logs = out / "logs" / time.strftime("%Y%m%d-%H%M%S")
    logs.mkdir(parents=True)
    received = out / "received" / time.strftime("%Y%m%d-%H%M%S")
    received.mkdir(parents=True)
    stale = out / "stale"
    log(f"cohort: working in {out}")

    runs: list[dict[str, Any]] = []
    status = EXIT_OK
    cohort: Cohort | None = None
    receivers = make_receivers(args)
    try:
        cohort = make_cohort_data(out / "data", studies, args.instances, args.rows, stale)
        modalities = {r.ae: (LOOPBACK, r.port) for r in receivers}
        with running_orthanc(out / "pacs", modalities, cohort, stale) as server:
            for rep in range(1, reps + 1):
                # Alternate the order against drift (page cache, writeback, CPU clock).
                order = receivers if rep % 2 else receivers[::-1]
                for rec in order:
                    row = one_run(
                        rec,
                        server,
                        cohort,
                        rep=rep,
                        work=received,
                        logs=logs,
                        timeout=args.timeout,
                        sample=args.sample,
                        port_loop_studies=port_loop,
                    )
                    runs.append(row)
                    log(run_line(row))
    except (PeerError, PeerMissing) as exc:
        log(f"cohort: setup failed: {exc}")
        status = EXIT_SETUP
    finally:
        t_clean = time.perf_counter()
        shutil.rmtree(out / "received", ignore_errors=True)  # once, at the end (see README)
        shutil.rmtree(stale, ignore_errors=True)
        if temp_out:
            shutil.rmtree(out / "data", ignore_errors=True)
            shutil.rmtree(out / "pacs", ignore_errors=True)
        log(f"cohort: removed received files in {time.perf_counter() - t_clean:.1f} s")
    if status == EXIT_SETUP or cohort is None:
        return EXIT_SETUP

    failures = [r for r in runs if not r["ok"]]
    if failures:
        status = EXIT_FAILED_RUNS
    argv_text = " ".join(
        ["python", "benchmarks/cohort.py", *(argv if argv is not None else sys.argv[1:])]
    )
    meta = {
        "command": argv_text,
        "started": datetime.datetime.fromtimestamp(t_begin).isoformat(timespec="seconds"),
        "duration_s": time.time() - t_begin,
        "reps": reps,
        "quick": args.quick,
        "port_loop_studies": port_loop,
        "netns": args.netns,
        "machine": host,
        "versions": tool_versions(("dicommove", "pydicom", "pynetdicom", "pandas")),
    }
    summary = summarize(runs, receivers, cohort)
    md = markdown(summary, failures, cohort, receivers, meta)
    results = {
        "meta": meta,
        "cohort": cohort.describe(),
        "receivers": {r.name: r.describe() for r in receivers},
        "reference": REFERENCE,
        "runs": runs,
        "summary": summary,
        "failures": len(failures),
        "exit_status": status,
    }
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=1, default=str))
    md_path = json_path.with_suffix(".md")  # beside the JSON: --json keeps runs apart
    md_path.write_text(md)
    print(md)
    log(
        f"cohort: {len(runs)} runs, {len(failures)} failed, {meta['duration_s']:.0f} s; "
        f"results in {json_path} and {md_path}"
    )
    return status


if __name__ == "__main__":
    sys.exit(main())
