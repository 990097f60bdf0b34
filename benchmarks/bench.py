#!/usr/bin/env python3
"""Benchmark: C-MOVE whole datasets from real PACS (Orthanc, dcmqrscp) into local receivers.

    python benchmarks/bench.py [--quick] [--reps N] [--datasets big,small]
        [--pacs orthanc,dcmqrscp] [--out DIR] [--json PATH]

Generates two synthetic CT datasets with ``dicommove.testing.make_cohort`` (big: 2,000 x
512x512, ~0.5 MB each; small: 5,000 x 64x64, ~9 KB each), loads each into each PACS once with
DCMTK ``storescu``, then times one study-level C-MOVE of the whole dataset (all
StudyInstanceUIDs in one identifier) into each receiver, ``--reps`` times, interleaved:

* ``dicommove``: ``dicommove move ADDR -q ... -o DIR`` (the command line, run in a fresh Python
  process by ``dicommove_driver.py``) at its defaults;
* ``dicommove_one``: the same on one association (``--one`` options, default
  ``--workers 1 --split never``);
* ``dcmtk_movescu``: DCMTK ``movescu --port N -od DIR`` (its own Storage SCP);
* ``dcmtk_storescp``: DCMTK ``movescu`` to a separately running ``storescp`` (only movescu is
  timed; it is the reference the ratios are given against);
* ``pynetdicom_movescu``: ``python -m pynetdicom movescu --store``;
* ``null_storescp``: the ceiling, DCMTK ``movescu`` to ``storescp --ignore``, a receiver that
  answers every C-STORE and writes nothing: how fast the PACS can send at all;
* ``dicommove_get``: dicommove at its defaults with ``--method get`` (C-GET: the instances come
  back on its own association);
* ``dcmtk_getscu``: DCMTK ``getscu -od DIR`` (C-GET), the reference for ``dicommove_get``.

Every run is verified (file count, SOPInstanceUID set, total dataset bytes, a sample of whole
datasets); a run that lost anything is a failure, reported and left out of the statistics, and
the exit status is 1. Results: a table per dataset x PACS on stdout, ``summary.md`` and
``results.json`` in ``--out``. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchkit import (
    DEFAULT_SAMPLE,
    Expected,
    ProcessResult,
    Receiver,
    disk_write_mbps,
    fmt_stat,
    loopback_tcp_mbps,
    machine,
    manifest_status_counts,
    parse_options,
    parse_variant,
    precompile,
    proc_cpu_seconds,
    proc_peak_rss_kib,
    reexec_in_netns,
    run_timed,
    small_files_per_s,
    tool_versions,
    verify_received,
)

from dicommove.testing.peers import (
    APT_INSTALL,
    LOOPBACK,
    MAX_DCMTK_PDU,
    DcmQrScp,
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
DRIVER = HERE / "dicommove_driver.py"

#: Dataset specs: patients, studies/patient, series/study, instances/series, rows, cols.
DATASETS = {
    "big": (4, 2, 2, 125, 512, 512),
    "small": (5, 2, 2, 250, 64, 64),
}
QUICK_DATASETS = {
    "big": (1, 2, 2, 2, 512, 512),  # 8 instances
    "small": (1, 2, 2, 15, 64, 64),  # 60 instances
}
#: make_cohort seeds: different per dataset, so that their UIDs never meet in one PACS.
SEEDS = {"big": 1, "small": 2}
PREFIXES = {"big": "BIG", "small": "SML"}

RECEIVERS = (
    "dicommove",
    "dicommove_one",
    "dcmtk_movescu",
    "dcmtk_storescp",
    "pynetdicom_movescu",
    "null_storescp",
    "dicommove_get",
    "dcmtk_getscu",
)
#: Not a receiver but a ceiling: stores nothing, so it is checked by the count of C-STOREs.
CEILING = "null_storescp"
REFERENCE = "dcmtk_storescp"
#: dicommove on a single association (CLI flags as key=value; see --one).
ONE_OPTIONS = "workers=1,split=never"
PACS_KINDS = ("orthanc", "dcmqrscp")
EXIT_OK, EXIT_FAILED_RUNS, EXIT_SETUP = 0, 1, 2


def log(msg: str) -> None:
    """Progress on stderr (stdout gets the tables)."""
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# configuration


def parse_spec(text: str) -> tuple[int, int, int, int, int, int]:
    """Parse ``P,S,R,I,ROWS,COLS`` (``ROWS`` alone for square images)."""
    parts = [int(p) for p in text.replace("x", ",").split(",") if p.strip()]
    if len(parts) == 5:
        parts.append(parts[4])
    if len(parts) != 6 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"want P,S,R,I,ROWS[,COLS] (positive ints), got {text!r}")
    p, s, r, i, rows, cols = parts
    return p, s, r, i, rows, cols


def csv_list(allowed: Sequence[str]) -> Any:
    """Return an argparse type that parses a comma-separated subset of ``allowed``."""

    def parse(text: str) -> list[str]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        bad = [t for t in items if t not in allowed]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"choose from {','.join(allowed)}; got {text!r}")
        return items

    return parse


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    ap = argparse.ArgumentParser(
        prog="python benchmarks/bench.py",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Receivers: " + ", ".join(RECEIVERS) + f". Ratios are against {REFERENCE}.",
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 8 big + 60 small instances, 1 rep, small ceilings (< 60 s)",
    )
    ap.add_argument("--reps", type=int, help="timed runs per receiver (default 3; --quick: 1)")
    ap.add_argument(
        "--datasets", type=csv_list(tuple(DATASETS)), default=list(DATASETS), help="big,small"
    )
    ap.add_argument(
        "--pacs", type=csv_list(PACS_KINDS), default=list(PACS_KINDS), help="orthanc,dcmqrscp"
    )
    ap.add_argument(
        "--receivers",
        type=csv_list(RECEIVERS),
        default=list(RECEIVERS),
        help="subset of the receivers (default: all)",
    )
    ap.add_argument("--big", type=parse_spec, help="big dataset as P,S,R,I,ROWS,COLS")
    ap.add_argument("--small", type=parse_spec, help="small dataset as P,S,R,I,ROWS,COLS")
    ap.add_argument(
        "--one",
        type=parse_options,
        default=parse_options(ONE_OPTIONS),
        help=f"CLI options of dicommove_one, as key=value (default {ONE_OPTIONS})",
    )
    ap.add_argument(
        "--variant",
        type=parse_variant,
        action="append",
        default=[],
        metavar="NAME:OPTS",
        help="extra dicommove receiver dicommove[NAME] with options OPTS "
        "(CLI options as key=value, e.g. flat:layout=flat,durability=none); repeatable",
    )
    ap.add_argument(
        "--out",
        type=Path,
        help="working directory: datasets and PACS storage are kept there and reused by the "
        "next run with the same --out (default: a new temp dir, removed except the results)",
    )
    ap.add_argument("--json", type=Path, help="results JSON (default OUT/results.json)")
    ap.add_argument("--timeout", type=float, help="seconds per timed command (default 600)")
    ap.add_argument("--no-refs", action="store_true", help="skip the ceiling measurements")
    ap.add_argument(
        "--sample",
        type=int,
        default=DEFAULT_SAMPLE,
        help=f"files per run whose whole dataset is compared (default {DEFAULT_SAMPLE}; 0 = all)",
    )
    ap.add_argument(
        "--pdu", type=int, default=16384, help="maximum PDU the PACS receive (default 16384)"
    )
    ap.add_argument(
        "--netns",
        action="store_true",
        help="run inside a private network namespace (unshare --net; root): only loopback",
    )
    return ap


# --------------------------------------------------------------------------------------------
# datasets


@dataclass
class Dataset:
    """A generated dataset: its files, its studies and what a move of it must deliver."""

    name: str
    spec: tuple[int, int, int, int, int, int]
    folder: Path
    studies: list[str]
    expected: Expected

    @property
    def files_dir(self) -> Path:
        """The generated files (``make_cohort`` layout)."""
        return self.folder / "files"

    @property
    def studies_file(self) -> Path:
        """One StudyInstanceUID per line."""
        return self.folder / "studies.txt"

    def describe(self) -> dict[str, Any]:
        """For the JSON."""
        p, s, r, i, rows, cols = self.spec
        return {
            "spec": {"patients": p, "studies": s, "series": r, "instances": i},
            "rows": rows,
            "cols": cols,
            "seed": SEEDS[self.name],
            "instances": self.expected.count,
            "studies": len(self.studies),
            "file_bytes": self.expected.file_bytes,
            "dataset_bytes": self.expected.dataset_bytes,
            "mean_file_bytes": self.expected.file_bytes // max(1, self.expected.count),
        }


def make_dataset(name: str, spec: tuple[int, int, int, int, int, int], root: Path) -> Dataset:
    """Generate (or reuse, when the parameters match) one dataset under ``root/name``."""
    import pandas as pd

    from dicommove.testing import make_cohort

    folder = root / name
    stamp = folder / "params.json"
    p, s, r, i, rows, cols = spec
    params = {"spec": list(spec), "seed": SEEDS[name], "prefix": PREFIXES[name]}
    index = folder / "files" / "index.csv"
    if stamp.is_file() and json.loads(stamp.read_text()) == params and index.is_file():
        frame = pd.read_csv(index)
        log(f"dataset {name}: reusing {len(frame)} instances in {folder}")
    else:
        if folder.exists():
            shutil.rmtree(folder)
        t0 = time.perf_counter()
        frame = make_cohort(
            folder / "files",
            patients=p,
            studies=s,
            series=r,
            instances=i,
            rows=rows,
            cols=cols,
            seed=SEEDS[name],
            prefix=PREFIXES[name],
        )
        stamp.write_text(json.dumps(params))
        log(f"dataset {name}: generated {len(frame)} instances in {time.perf_counter() - t0:.1f} s")
    studies = sorted(set(frame["StudyInstanceUID"].astype(str)))
    ds = Dataset(name, spec, folder, studies, Expected.from_paths(Path(x) for x in frame["path"]))
    ds.studies_file.write_text("\n".join(studies) + "\n")
    return ds


# --------------------------------------------------------------------------------------------
# receivers


def make_receivers(args: argparse.Namespace) -> list[Receiver]:
    """Return the receivers asked for, each with its own AE title and a port free now."""
    receivers: list[Receiver] = []
    for name in args.receivers:
        if name == "dicommove":
            receivers.append(Receiver(name, "dicommove", "DICOMMOVE"))
        elif name == "dicommove_one":
            receivers.append(Receiver(name, "dicommove", "DICOMMOVE-ONE", options=args.one))
        elif name == "dcmtk_movescu":
            receivers.append(Receiver(name, name, "MOVESCU"))
        elif name == "dcmtk_storescp":
            receivers.append(Receiver(name, name, "STORESCP"))
        elif name == "pynetdicom_movescu":
            receivers.append(Receiver(name, name, "PYNETDICOM"))
        elif name == "null_storescp":
            receivers.append(Receiver(name, name, "NULLSCP"))
        elif name == "dicommove_get":
            get = {"method": "get"}
            receivers.append(Receiver(name, "dicommove", "DICOMMOVE-GET", options=get))
        elif name == "dcmtk_getscu":
            receivers.append(Receiver(name, name, "GETSCU"))
    for i, (variant, options) in enumerate(args.variant, start=1):
        receivers.append(Receiver(f"dicommove[{variant}]", "dicommove", f"DMV-V{i}", 0, options))
    for rec in receivers:
        rec.port = free_port()
    return receivers


@dataclass
class Pacs:
    """A running PACS, by name."""

    name: str
    server: Orthanc | DcmQrScp


def movescu_argv(pacs: Pacs, ae: str, ds: Dataset) -> list[str]:
    """DCMTK movescu: study root, one C-MOVE with every StudyInstanceUID of the dataset."""
    server = pacs.server
    return [
        str(binary("movescu")),
        "-S",
        "-pdu",
        str(MAX_DCMTK_PDU),  # its largest: as fast as DCMTK goes (its store SCP's too)
        "-aet",
        ae,
        "-aem",
        ae,
        "-aec",
        server.ae_title,
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        "StudyInstanceUID=" + "\\".join(ds.studies),
        LOOPBACK,
        str(server.port),
    ]


def one_run(
    rec: Receiver,
    pacs: Pacs,
    ds: Dataset,
    *,
    rep: int,
    work: Path,
    logs: Path,
    timeout: float,
    sample: int,
) -> dict[str, Any]:
    """Time one C-MOVE of ``ds`` from ``pacs`` into ``rec``; verify what arrived."""
    tag = f"r{rep}-{ds.name}-{pacs.name}-{rec.name}".replace("[", "_").replace("]", "")
    run_dir = work / tag  # a new directory per run: nothing is deleted until the very end
    run_dir.mkdir(parents=True)
    out = run_dir / "recv"
    out.mkdir()
    env = peer_env()  # TCP_NODELAY=1: DCMTK keeps Nagle on without it
    extra: dict[str, Any] = {}
    scp: StoreScp | None = None
    error = ""
    result: ProcessResult | None = None
    with open(logs / f"{tag}.log", "wb") as logf:
        try:
            if rec.kind == "dicommove":
                report = run_dir / "driver.json"
                argv = [
                    sys.executable,
                    str(DRIVER),
                    pacs.server.address,
                    "--studies-file",
                    str(ds.studies_file),
                    "--out",
                    str(out),
                    "--port",
                    str(rec.port),
                    "--ae-title",
                    rec.ae,
                    "--report",
                    str(report),
                ]
                for key, value in rec.options.items():
                    argv += ["--option", f"{key}={value!r}"]
                result = run_timed(argv, timeout=timeout, env=env, cwd=run_dir, log=logf)
                if report.is_file():
                    driver = json.loads(report.read_text())
                    extra["startup_s"] = driver["start"] - result.started
                    extra["import_s"] = driver["import_s"]
                    extra["move_s"] = driver["move_s"]
                extra["status_counts"] = manifest_status_counts(out.parent / "manifest.csv")
            elif rec.kind == "dcmtk_movescu":
                argv = movescu_argv(pacs, rec.ae, ds)
                argv[1:1] = ["--port", str(rec.port), "-od", str(out)]
                result = run_timed(argv, timeout=timeout, env=env, cwd=run_dir, log=logf)
            elif rec.kind == "dcmtk_getscu":
                argv = movescu_argv(pacs, rec.ae, ds)
                argv[0] = str(binary("getscu"))
                del argv[argv.index("-aem") : argv.index("-aem") + 2]  # C-GET: no destination
                argv[1:1] = ["-od", str(out)]
                result = run_timed(argv, timeout=timeout, env=env, cwd=run_dir, log=logf)
            elif rec.kind in ("dcmtk_storescp", "null_storescp"):
                scp = StoreScp(
                    run_dir / "storescp",
                    ae_title=rec.ae,
                    port=rec.port,
                    ignore=rec.kind == "null_storescp",
                ).start()
                out = scp.out_dir
                result = run_timed(
                    movescu_argv(pacs, rec.ae, ds), timeout=timeout, env=env, cwd=run_dir, log=logf
                )
                pid = scp.pid
                if pid is not None:
                    extra["movescu_peak_rss_kib"] = result.peak_rss_kib
                    extra["movescu_cpu_s"] = result.cpu_seconds
                    result.peak_rss_kib = proc_peak_rss_kib(pid)  # storescp is the receiver
                    result.cpu_seconds += proc_cpu_seconds(pid)
            elif rec.kind == "pynetdicom_movescu":
                argv = [
                    sys.executable,
                    "-m",
                    "pynetdicom",
                    "movescu",
                    LOOPBACK,
                    str(pacs.server.port),
                    "-aet",
                    rec.ae,
                    "-aec",
                    pacs.server.ae_title,
                    "-aem",
                    rec.ae,
                    "-S",
                    "--store",
                    "--store-port",
                    str(rec.port),
                    "--store-aet",
                    rec.ae,
                    "-od",
                    str(out),
                    "-k",
                    "QueryRetrieveLevel=STUDY",
                    "-k",
                    "StudyInstanceUID=" + "\\".join(ds.studies),
                ]
                result = run_timed(argv, timeout=timeout, env=env, cwd=run_dir, log=logf)
            else:
                raise ValueError(f"unknown receiver kind {rec.kind}")
        except (PeerError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        finally:
            if scp is not None:
                scp.stop()
    if rec.kind == "null_storescp" and scp is not None:
        check = verify_count(scp.stores_logged(), ds.expected.count)
    else:
        check = verify_received(out, ds.expected, sample=sample, seed=rep)
    problems = list(check.pop("problems"))
    if error:
        problems.insert(0, error)
    elif result is None or result.timed_out:
        problems.insert(0, f"timed out after {timeout:g} s")
    elif result.returncode != 0:
        problems.insert(0, f"exit status {result.returncode}")
    seconds = result.seconds if result is not None else float("nan")
    row: dict[str, Any] = {
        "rep": rep,
        "dataset": ds.name,
        "pacs": pacs.name,
        "receiver": rec.name,
        "ok": not problems,
        "problems": problems,
        "seconds": seconds,
        "instances_per_s": ds.expected.count / seconds if seconds else float("nan"),
        "MB_per_s": ds.expected.file_bytes / 1e6 / seconds if seconds else float("nan"),
        "peak_rss_kib": result.peak_rss_kib if result is not None else 0,
        "cpu_s": result.cpu_seconds if result is not None else float("nan"),
        "returncode": result.returncode if result is not None else None,
        "log": str(logs / f"{tag}.log"),
        **check,
        **extra,
    }
    return row


def verify_count(message_ids: list[int], expected: int) -> dict[str, Any]:
    """Check the ceiling receiver, which writes nothing: one C-STORE per expected instance."""
    problems = []
    if len(message_ids) != expected:
        problems.append(f"{len(message_ids)} C-STORE requests logged, {expected} expected")
    if len(set(message_ids)) != len(message_ids):
        problems.append("a C-STORE Message ID was logged twice")
    return {"ok": not problems, "files": 0, "stores": len(message_ids), "problems": problems}


# --------------------------------------------------------------------------------------------
# ceilings


def one_file_bytes(datasets: list[Dataset], quick: bool) -> int:
    """Return the bytes of the ceilings' TCP transfer and one-file write.

    The size of the biggest dataset, within 256 MiB to 1 GiB (32 MiB with ``--quick``).
    """
    biggest = max(d.expected.file_bytes for d in datasets)
    return (32 << 20) if quick else min(max(biggest, 256 << 20), 1 << 30)


def refs_bytes(datasets: list[Dataset], quick: bool) -> int:
    """Return how many bytes :func:`measure_refs` writes in one rep."""
    return one_file_bytes(datasets, quick) + 2 * sum(d.expected.file_bytes for d in datasets)


class SetupError(Exception):
    """The benchmark cannot run here (e.g. not enough disk space)."""


def check_disk(
    out: Path,
    datasets: list[Dataset],
    *,
    reps: int,
    pacs: list[str],
    receivers: int,
    refs: bool,
    quick: bool,
) -> int:
    """Raise :class:`SetupError` unless ``out`` has room for every received copy.

    Received files are kept until the end (deleting them between runs would slow the next
    run's file creation), so a run needs reps x PACS x receivers copies of the datasets, plus
    the ceilings' files and the PACS storage. Returns the estimate in bytes.
    """
    data = sum(d.expected.file_bytes for d in datasets)
    per_rep = data * len(pacs) * receivers + (refs_bytes(datasets, quick) if refs else 0)
    loading = sum(
        d.expected.file_bytes
        for p in pacs
        for d in datasets
        if loaded_datasets(out / "pacs", p).get(d.name) != _stamp_entry(d)
    )
    need = int(reps * per_rep * 1.05) + loading + (256 << 20)
    free = shutil.disk_usage(out).free
    if need > free:
        raise SetupError(
            f"{out} has {free / 1e9:.1f} GB free; this run needs about {need / 1e9:.1f} GB "
            f"(received files are kept until the end). Use fewer --reps, --receivers, "
            f"--pacs or smaller datasets, or an --out with more room."
        )
    return need


def measure_refs(
    rep: int, datasets: list[Dataset], scratch: Path, quick: bool
) -> list[dict[str, Any]]:
    """Loopback TCP, one-file disk write, and per-file creation rates (ceilings of a receiver)."""
    refs: list[dict[str, Any]] = []
    nbytes = one_file_bytes(datasets, quick)

    def add(name: str, unit: str, value: float) -> None:
        refs.append({"rep": rep, "ref": name, "unit": unit, "value": value})
        log(f"[rep {rep}] ceiling {name}: {value:,.0f} {unit}")

    add("loopback TCP, Python, 1 MiB sends", "MB/s", loopback_tcp_mbps(nbytes, 1 << 20))
    add("loopback TCP, Python, 16 KiB sends", "MB/s", loopback_tcp_mbps(nbytes, 16 << 10))
    folder = scratch / f"refs-r{rep}"
    folder.mkdir(parents=True)
    add(
        f"disk, one {nbytes >> 20} MiB file + fsync",
        "MB/s",
        disk_write_mbps(folder / "one.bin", nbytes),
    )
    for ds in datasets:
        size = ds.expected.file_bytes // ds.expected.count
        for fsync in (False, True):
            rate = small_files_per_s(
                folder / f"{ds.name}-{'fsync' if fsync else 'nofsync'}",
                ds.expected.count,
                size,
                fsync=fsync,
            )
            how = "write+fsync+rename" if fsync else "write+rename"
            add(f"disk, {ds.expected.count} x {size / 1e3:.1f} KB files, {how}", "files/s", rate)
            add(
                f"disk, {ds.expected.count} x {size / 1e3:.1f} KB files, {how} (MB/s)",
                "MB/s",
                rate * size / 1e6,
            )
    return refs


# --------------------------------------------------------------------------------------------
# PACS


def _stamp_entry(ds: Dataset) -> dict[str, Any]:
    return {"spec": list(ds.spec), "seed": SEEDS[ds.name], "count": ds.expected.count}


def loaded_datasets(root: Path, name: str) -> dict[str, Any]:
    """Return what the PACS storage ``root/name`` was loaded with: dataset name -> entry."""
    stamp = root / f"{name}.loaded.json"
    try:
        loaded = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


@contextlib.contextmanager
def running_pacs(
    names: list[str], receivers: list[Receiver], datasets: list[Dataset], root: Path, pdu: int
) -> Iterator[list[Pacs]]:
    """Start the PACS with every receiver registered as a move destination; load the datasets.

    A PACS storage under ``root`` is reused: datasets it already holds (same name, size and
    seed, per its ``NAME.loaded.json``) are not loaded again. Storage holding a dataset of the
    same name but other parameters, or of unknown content, is wiped first.
    """
    modalities = {r.ae: (LOOPBACK, r.port) for r in receivers}
    with contextlib.ExitStack() as stack:
        started: list[Pacs] = []
        for name in names:
            workdir = root / name
            stamp = root / f"{name}.loaded.json"
            loaded = loaded_datasets(root, name)
            stale = any(d.name in loaded and loaded[d.name] != _stamp_entry(d) for d in datasets)
            if workdir.exists() and (stale or not loaded):
                log(f"{name}: storage holds other data; starting afresh")
                stamp.unlink(missing_ok=True)
                shutil.rmtree(workdir)
                loaded = {}
            server: Orthanc | DcmQrScp
            if name == "orthanc":
                server = Orthanc(workdir, modalities=modalities, pdu=pdu)
            else:
                server = DcmQrScp(workdir, modalities=modalities, pdu=pdu)
            t0 = time.perf_counter()
            stack.enter_context(server)
            log(f"{name}: started as {server.address} in {time.perf_counter() - t0:.1f} s")
            have = server.count()
            if have != sum(int(v["count"]) for v in loaded.values()):
                raise PeerError(
                    f"{name} holds {have} instances, not what {stamp.name} says: "
                    f"remove {workdir} and {stamp} and run again"
                )
            for ds in datasets:
                if ds.name in loaded:
                    log(f"{name}: reusing {ds.name} ({ds.expected.count} instances)")
                    continue
                t0 = time.perf_counter()
                server.load([ds.files_dir])
                log(
                    f"{name}: loaded {ds.name} ({ds.expected.count} instances) "
                    f"in {time.perf_counter() - t0:.1f} s"
                )
                loaded[ds.name] = _stamp_entry(ds)
                expected = sum(int(v["count"]) for v in loaded.values())
                have = server.count()
                if have != expected:
                    raise PeerError(f"{name} holds {have} instances after loading, not {expected}")
                stamp.write_text(json.dumps(loaded))
            started.append(Pacs(name, server))
        yield started


# --------------------------------------------------------------------------------------------
# reporting


def summarize(
    runs: list[dict[str, Any]], datasets: list[Dataset], pacs: list[str], receivers: list[Receiver]
) -> list[dict[str, Any]]:
    """One row per dataset x PACS x receiver: medians, ranges and the ratio to the reference."""
    rows: list[dict[str, Any]] = []
    for ds in datasets:
        for p in pacs:
            ref = [
                r["seconds"]
                for r in runs
                if (r["dataset"], r["pacs"], r["receiver"], r["ok"])
                == (ds.name, p, REFERENCE, True)
            ]
            ref_median = statistics.median(ref) if ref else None
            ceiling = [
                r["seconds"]
                for r in runs
                if (r["dataset"], r["pacs"], r["receiver"], r["ok"]) == (ds.name, p, CEILING, True)
            ]
            ceiling_median = statistics.median(ceiling) if ceiling else None
            for rec in receivers:
                mine = [
                    r
                    for r in runs
                    if (r["dataset"], r["pacs"], r["receiver"]) == (ds.name, p, rec.name)
                ]
                if not mine:
                    continue
                good = [r for r in mine if r["ok"]]
                secs = [r["seconds"] for r in good]
                med = statistics.median(secs) if secs else None
                rows.append(
                    {
                        "dataset": ds.name,
                        "pacs": p,
                        "receiver": rec.name,
                        "runs": len(mine),
                        "ok_runs": len(good),
                        "seconds": secs,
                        "median_seconds": med,
                        "instances_per_s": [ds.expected.count / s for s in secs],
                        "MB_per_s": [ds.expected.file_bytes / 1e6 / s for s in secs],
                        "peak_rss_MiB": [r["peak_rss_kib"] / 1024 for r in good],
                        "cpu_s": [r["cpu_s"] for r in good],
                        "speed_vs_" + REFERENCE: (ref_median / med)
                        if (ref_median and med)
                        else None,
                        "speed_vs_" + CEILING: (ceiling_median / med)
                        if (ceiling_median and med)
                        else None,
                        "dicommove_split": {
                            k: [r[k] for r in good if k in r]
                            for k in ("startup_s", "import_s", "move_s")
                            if any(k in r for r in good)
                        },
                    }
                )
    return rows


def markdown(
    summary: list[dict[str, Any]],
    refs: list[dict[str, Any]],
    datasets: list[Dataset],
    pacs: list[str],
    meta: dict[str, Any],
) -> str:
    """Return the results as Markdown tables."""
    lines = [
        f"# C-MOVE benchmark ({meta['reps']} rep(s), median (min-max))",
        "",
        f"Command: `{meta['command']}`  ",
        f"Machine: {meta['machine']['nproc']} CPUs, {meta['machine']['memory_GiB']:.1f} GiB, "
        f"{meta['machine']['kernel']}; "
        + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
        "",
    ]
    for ds in datasets:
        d = ds.describe()
        lines.append(
            f"- **{ds.name}**: {d['instances']} instances of {d['rows']}x{d['cols']}, "
            f"{d['file_bytes'] / 1e6:.1f} MB ({d['mean_file_bytes'] / 1e3:.1f} KB each), "
            f"{d['studies']} studies"
        )
    if refs:
        lines += ["", "## Ceilings (same session)", "", "| ceiling | value |", "|---|---|"]
        for name in dict.fromkeys(r["ref"] for r in refs):
            vals = [r["value"] for r in refs if r["ref"] == name]
            unit = next(r["unit"] for r in refs if r["ref"] == name)
            label = name if name.endswith(")") else f"{name} ({unit})"
            lines.append(f"| {label} | {fmt_stat(vals)} |")
    for ds in datasets:
        for p in pacs:
            rows = [s for s in summary if (s["dataset"], s["pacs"]) == (ds.name, p)]
            if not rows:
                continue
            lines += [
                "",
                f"## {ds.name} from {p}: {ds.expected.count} instances, "
                f"{ds.expected.file_bytes / 1e6:.0f} MB",
                "",
                "| receiver | inst/s | MB/s | seconds | peak RSS MiB | CPU s "
                f"| vs {REFERENCE} | vs ceiling | ok |",
                "|---|---|---|---|---|---|---|---|---|",
            ]
            for s in rows:
                ratios = [s["speed_vs_" + REFERENCE], s["speed_vs_" + CEILING]]
                shown = ["n/a" if r is None else f"{r:.2f}x" for r in ratios]
                lines.append(
                    f"| {s['receiver']} | {fmt_stat(s['instances_per_s'])} | "
                    f"{fmt_stat(s['MB_per_s'], 1)} | {fmt_stat(s['seconds'], 2)} | "
                    f"{fmt_stat(s['peak_rss_MiB'])} | {fmt_stat(s['cpu_s'], 1)} | "
                    f"{shown[0]} | {shown[1]} | {s['ok_runs']}/{s['runs']} |"
                )
    split = [s for s in summary if s["dicommove_split"]]
    if split:
        lines += [
            "",
            "## dicommove: where the wall time goes (median, seconds)",
            "",
            "| dataset | PACS | receiver | interpreter start | import dicommove | move() |",
            "|---|---|---|---|---|---|",
        ]
        for s in split:
            sp = s["dicommove_split"]
            lines.append(
                f"| {s['dataset']} | {s['pacs']} | {s['receiver']} | "
                f"{fmt_stat(sp.get('startup_s', []), 2)} | {fmt_stat(sp.get('import_s', []), 2)} | "
                f"{fmt_stat(sp.get('move_s', []), 2)} |"
            )
    lines += [
        "",
        f"`vs {REFERENCE}`: median speed relative to DCMTK movescu -> storescp on the same "
        f"dataset and PACS (> 1 = faster). `vs ceiling`: the same relative to {CEILING}, "
        "DCMTK movescu -> `storescp --ignore`, which answers every C-STORE and writes nothing "
        "(the PACS's own limit; checked by its count of C-STOREs, not by files). `seconds`: "
        "wall time of the receiving command, process start to exit (interpreter start "
        "included). `peak RSS`: largest resident set of the receiving process (storescp for "
        "dcmtk_storescp). `CPU s`: user + system CPU of the receiving side. `ok`: runs that "
        "delivered every instance intact; others are failures, "
        "left out of the statistics.",
    ]
    return "\n".join(lines) + "\n"


def run_line(row: dict[str, Any]) -> str:
    """Return one progress line about a run."""
    head = f"[rep {row['rep']}] {row['dataset']:5s} {row['pacs']:8s} {row['receiver']:20s} "
    if not row["ok"]:
        return head + f"{row['seconds']:7.2f} s  FAILED: " + "; ".join(row["problems"])
    return head + (
        f"{row['seconds']:7.2f} s {row['instances_per_s']:7.0f} inst/s "
        f"{row['MB_per_s']:6.1f} MB/s  rss {row['peak_rss_kib'] / 1024:4.0f} MiB  ok"
    )


# --------------------------------------------------------------------------------------------
# main


def check_setup() -> None:
    """Fail early, saying how to install what is missing."""
    try:
        require_binaries("Orthanc", "dcmqrscp", "storescp", "storescu", "echoscu", "movescu")
    except PeerMissing as exc:
        raise SystemExit(
            f"bench: {exc}\n  Debian/Ubuntu: sudo apt-get update && sudo {APT_INSTALL}"
        ) from None
    if not os.access("/usr/bin/time", os.X_OK):
        raise SystemExit(
            "bench: /usr/bin/time (GNU time, for peak RSS) is missing.\n"
            "  Debian/Ubuntu: sudo apt-get install -y time"
        )
    for module in ("pynetdicom", "pydicom", "dicommove"):
        try:
            __import__(module)
        except ImportError:
            raise SystemExit(f"bench: Python package {module} missing: pip install -e .") from None


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return the exit status."""
    args = build_parser().parse_args(argv)
    if args.netns:
        reexec_in_netns()
    check_setup()
    precompile()
    t_begin = time.time()
    reps = args.reps if args.reps is not None else (1 if args.quick else 3)
    if reps < 1:
        raise SystemExit("bench: --reps must be at least 1")
    timeout = args.timeout if args.timeout is not None else (60.0 if args.quick else 600.0)
    specs = dict(QUICK_DATASETS if args.quick else DATASETS)
    if args.big:
        specs["big"] = args.big
    if args.small:
        specs["small"] = args.small
    temp_out = args.out is None
    out = Path(tempfile.mkdtemp(prefix="dicommove-bench-")) if temp_out else args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    json_path = args.json.resolve() if args.json else out / "results.json"
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    received = out / "received" / time.strftime("%Y%m%d-%H%M%S")
    received.mkdir(parents=True)
    log(f"bench: working in {out}")

    runs: list[dict[str, Any]] = []
    refs: list[dict[str, Any]] = []
    status = EXIT_OK
    datasets: list[Dataset] = []
    receivers = make_receivers(args)
    try:
        datasets = [make_dataset(name, specs[name], out / "data") for name in args.datasets]
        need = check_disk(
            out,
            datasets,
            reps=reps,
            pacs=args.pacs,
            receivers=len(receivers),
            refs=not args.no_refs,
            quick=args.quick,
        )
        log(f"bench: needs about {need / 1e9:.1f} GB of disk until the end")
        with running_pacs(args.pacs, receivers, datasets, out / "pacs", args.pdu) as pacs_list:
            for rep in range(1, reps + 1):
                if not args.no_refs:
                    refs += measure_refs(rep, datasets, received, args.quick)
                for ds in datasets:
                    for pacs in pacs_list:
                        # Alternate the order against drift (page cache, writeback, CPU clock).
                        order = receivers if rep % 2 else receivers[::-1]
                        for rec in order:
                            row = one_run(
                                rec,
                                pacs,
                                ds,
                                rep=rep,
                                work=received,
                                logs=logs,
                                timeout=timeout,
                                sample=args.sample,
                            )
                            runs.append(row)
                            log(run_line(row))
    except (PeerError, PeerMissing, SetupError) as exc:
        log(f"bench: setup failed: {exc}")
        status = EXIT_SETUP
    finally:
        t_clean = time.perf_counter()
        shutil.rmtree(out / "received", ignore_errors=True)  # once, at the end (see README)
        if temp_out:
            shutil.rmtree(out / "data", ignore_errors=True)
            shutil.rmtree(out / "pacs", ignore_errors=True)
        log(f"bench: removed received files in {time.perf_counter() - t_clean:.1f} s")
    if status == EXIT_SETUP:
        if temp_out:
            shutil.rmtree(out, ignore_errors=True)
        return status

    failures = [r for r in runs if not r["ok"]]
    if failures and status == EXIT_OK:
        status = EXIT_FAILED_RUNS
    argv_text = " ".join(
        ["python", "benchmarks/bench.py", *(argv if argv is not None else sys.argv[1:])]
    )
    meta = {
        "command": argv_text,
        "started": datetime.datetime.fromtimestamp(t_begin).isoformat(timespec="seconds"),
        "duration_s": time.time() - t_begin,
        "reps": reps,
        "quick": args.quick,
        "pdu": args.pdu,
        "netns": args.netns,
        "machine": machine(),
        "versions": tool_versions(),
    }
    summary = summarize(runs, datasets, args.pacs, receivers)
    md = markdown(summary, refs, datasets, args.pacs, meta)
    if failures:
        md += (
            "\n## Failures\n\n"
            + "\n".join(
                f"- rep {r['rep']} {r['dataset']} {r['pacs']} {r['receiver']}: "
                + "; ".join(r["problems"])
                + f" (log {r['log']})"
                for r in failures
            )
            + "\n"
        )
    results = {
        "meta": meta,
        "datasets": {d.name: d.describe() for d in datasets},
        "receivers": {r.name: r.describe() for r in receivers},
        "reference": REFERENCE,
        "ceiling": CEILING,
        "refs": refs,
        "runs": runs,
        "summary": summary,
        "failures": len(failures),
        "exit_status": status,
    }
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=1, default=str))
    (out / "summary.md").write_text(md)
    print(md)
    log(
        f"bench: {len(runs)} runs, {len(failures)} failed, {meta['duration_s']:.0f} s; "
        f"results in {json_path} and {out / 'summary.md'}"
    )
    return status


if __name__ == "__main__":
    sys.exit(main())
