"""Helpers of the C-MOVE benchmark: timed processes, checks of what arrived, ceilings, stats.

Nothing here knows about particular receivers or PACS; ``bench.py`` wires them together.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import csv
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import IO, Any

from dicommove.testing.peers import PeerMissing, binary

__all__ = [
    "Expected",
    "Instance",
    "ProcessResult",
    "Receiver",
    "disk_write_mbps",
    "fmt_stat",
    "loopback_tcp_mbps",
    "machine",
    "parse_options",
    "parse_variant",
    "proc_cpu_seconds",
    "proc_peak_rss_kib",
    "read_meta",
    "reexec_in_netns",
    "run_timed",
    "small_files_per_s",
    "tool_versions",
    "verify_received",
]

EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
#: How many received files per run get their whole dataset compared with the source.
DEFAULT_SAMPLE = 20
#: Bytes of pixel data compared at the end of a transcoded file (values survive transcoding).
TAIL_BYTES = 4096


# --------------------------------------------------------------------------------------------
# DICOM Part 10 file meta, read without pydicom (fast enough for thousands of files per run)


@dataclass(frozen=True)
class Meta:
    """What the file meta group of a Part 10 file says, and where its dataset starts."""

    sop_instance_uid: str
    transfer_syntax_uid: str
    dataset_offset: int
    size: int


def read_meta(path: Path) -> Meta:
    """Read the file meta group of a DICOM Part 10 file.

    Raises
    ------
    ValueError
        If the file is not Part 10 (no ``DICM``), or its meta group is not the usual
        Explicit VR Little Endian group 0002 starting with its group length.
    """
    with open(path, "rb") as f:
        head = f.read(4096)
        size = os.fstat(f.fileno()).st_size
        if head[128:132] != b"DICM" or head[132:138] != b"\x02\x00\x00\x00UL":
            raise ValueError(f"{path}: not a DICOM Part 10 file")
        group_length = int.from_bytes(head[140:144], "little")
        end = 144 + group_length
        if end > len(head):
            f.seek(0)
            head = f.read(end)
    values: dict[int, str] = {}
    pos = 144
    while pos + 8 <= end:
        tag = int.from_bytes(head[pos : pos + 2], "little") << 16 | int.from_bytes(
            head[pos + 2 : pos + 4], "little"
        )
        vr = head[pos + 4 : pos + 6]
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN", b"UC", b"UR", b"OD", b"OL", b"OV"):
            length = int.from_bytes(head[pos + 8 : pos + 12], "little")
            value_at = pos + 12
        else:
            length = int.from_bytes(head[pos + 6 : pos + 8], "little")
            value_at = pos + 8
        if tag in (0x00020003, 0x00020010):
            values[tag] = head[value_at : value_at + length].rstrip(b"\x00 ").decode("ascii")
        pos = value_at + length
    return Meta(
        sop_instance_uid=values.get(0x00020003, ""),
        transfer_syntax_uid=values.get(0x00020010, ""),
        dataset_offset=end,
        size=size,
    )


@dataclass(frozen=True)
class Instance:
    """One source instance, as loaded into the PACS."""

    path: Path
    dataset_offset: int
    size: int

    @property
    def dataset_size(self) -> int:
        """Bytes after the file meta group."""
        return self.size - self.dataset_offset


@dataclass
class Expected:
    """The instances a run must deliver: SOPInstanceUID -> source file."""

    instances: dict[str, Instance]
    transfer_syntax_uid: str = EXPLICIT_VR_LE

    @classmethod
    def from_paths(cls, paths: Iterable[Path]) -> Expected:
        """Read the meta group of every source file."""
        instances: dict[str, Instance] = {}
        ts = set()
        for path in paths:
            meta = read_meta(path)
            instances[meta.sop_instance_uid] = Instance(path, meta.dataset_offset, meta.size)
            ts.add(meta.transfer_syntax_uid)
        if len(ts) > 1:
            raise ValueError(f"source files have several transfer syntaxes: {sorted(ts)}")
        return cls(instances, ts.pop() if ts else EXPLICIT_VR_LE)

    @property
    def count(self) -> int:
        """Number of instances."""
        return len(self.instances)

    @property
    def file_bytes(self) -> int:
        """Total size of the source files."""
        return sum(i.size for i in self.instances.values())

    @property
    def dataset_bytes(self) -> int:
        """Total size of the source datasets (without preamble and file meta)."""
        return sum(i.dataset_size for i in self.instances.values())


def _dataset(path: Path, offset: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read()


def _tail(path: Path, n: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - n))
        return f.read()


def verify_received(
    out: Path, expected: Expected, *, sample: int = DEFAULT_SAMPLE, seed: int = 0
) -> dict[str, Any]:
    """Check what a receiver wrote under ``out`` against the source instances.

    Every regular file outside hidden directories must be a Part 10 file of an expected
    SOPInstanceUID, each exactly once; together they must hold every expected instance. The
    total dataset bytes (after the file meta) of the files in the source transfer syntax must
    equal the source's; a file that arrived in another transfer syntax (the PACS transcoded
    it for a receiver that preferred, say, Implicit VR) must be within 1 % of its source's
    size and end with the same pixel bytes. ``sample`` files (all when 0 or more than there
    are) get their whole dataset compared with the source. Files left in hidden directories
    (such as a receiver's temp directory) are counted as leftovers.

    Returns
    -------
    dict
        ``ok`` plus the details: ``files``, ``missing``, ``unexpected``, ``duplicates``,
        ``unreadable``, ``dataset_bytes``, ``expected_dataset_bytes``, ``transcoded``,
        ``content_mismatch``, ``leftovers`` and ``problems`` (a list of sentences).
    """
    import random

    files: list[Path] = []
    leftovers = 0
    for root, dirs, names in os.walk(out):
        parts = Path(root).relative_to(out).parts
        if parts[:1] == (".dicommove",):
            continue  # dicommove's run journal: metadata, not a received file
        hidden = any(part.startswith(".") for part in parts)
        for name in names:
            if hidden:
                leftovers += 1
            else:
                files.append(Path(root) / name)
        dirs.sort()
    got: dict[str, tuple[Path, Meta]] = {}
    duplicates = unexpected = unreadable = 0
    for path in files:
        try:
            meta = read_meta(path)
        except (OSError, ValueError, UnicodeDecodeError):
            unreadable += 1
            continue
        uid = meta.sop_instance_uid
        if uid not in expected.instances:
            unexpected += 1
        elif uid in got:
            duplicates += 1
        else:
            got[uid] = (path, meta)
    missing = expected.count - len(got)
    same_ts_bytes = same_ts_expected = 0
    transcoded = 0
    bad_content: list[str] = []
    for uid, (path, meta) in got.items():
        src = expected.instances[uid]
        size = meta.size - meta.dataset_offset
        if meta.transfer_syntax_uid == expected.transfer_syntax_uid:
            same_ts_bytes += size
            same_ts_expected += src.dataset_size
        else:
            transcoded += 1
            if abs(size - src.dataset_size) > 0.01 * src.dataset_size or _tail(
                path, TAIL_BYTES
            ) != _tail(src.path, TAIL_BYTES):
                bad_content.append(uid)
    same_ts = [
        u for u, (_, m) in got.items() if m.transfer_syntax_uid == expected.transfer_syntax_uid
    ]
    chosen = (
        same_ts
        if sample <= 0 or sample >= len(same_ts)
        else random.Random(seed).sample(sorted(same_ts), sample)
    )
    for uid in chosen:
        path, meta = got[uid]
        src = expected.instances[uid]
        if _dataset(path, meta.dataset_offset) != _dataset(src.path, src.dataset_offset):
            bad_content.append(uid)
    received_bytes = sum(m.size - m.dataset_offset for _, m in got.values())
    problems: list[str] = []
    if missing:
        problems.append(f"{missing} of {expected.count} instances missing")
    if duplicates:
        problems.append(f"{duplicates} duplicate files")
    if unexpected:
        problems.append(f"{unexpected} files of instances not requested")
    if unreadable:
        problems.append(f"{unreadable} files that are not DICOM Part 10")
    if same_ts_bytes != same_ts_expected:
        problems.append(
            f"dataset bytes {same_ts_bytes} != {same_ts_expected} expected (same transfer syntax)"
        )
    if bad_content:
        problems.append(f"{len(bad_content)} files whose content differs from the source")
    if leftovers:
        problems.append(f"{leftovers} files left in hidden (temp) directories")
    return {
        "ok": not problems,
        "files": len(files),
        "missing": missing,
        "unexpected": unexpected,
        "duplicates": duplicates,
        "unreadable": unreadable,
        "dataset_bytes": received_bytes,
        "expected_dataset_bytes": expected.dataset_bytes,
        "transcoded": transcoded,
        "content_checked": len(chosen) + transcoded,
        "content_mismatch": len(bad_content),
        "leftovers": leftovers,
        "problems": problems,
    }


# --------------------------------------------------------------------------------------------
# processes


@dataclass
class ProcessResult:
    """How a timed process ended."""

    returncode: int | None  # None: killed after the timeout
    seconds: float
    peak_rss_kib: int
    cpu_seconds: float
    timed_out: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    started: float = 0.0  # time.time() just before the fork


#: GNU time: it reports its child's own rusage. Our wait4() could not: a child forked from
#: this (large) Python process is charged our resident set at its exec (Linux keeps the
#: pre-exec high-water mark in the process's maxrss).
TIME_BINARY = Path("/usr/bin/time")


def manifest_status_counts(path: Path) -> dict[str, int]:
    """Count the statuses of a dicommove manifest CSV (empty when there is none)."""
    counts: dict[str, int] = {}
    if path.is_file():
        with open(path, newline="", encoding="utf-8") as stream:
            for row in csv.DictReader(stream):
                counts[row["status"]] = counts.get(row["status"], 0) + 1
    return counts


def settle() -> None:
    """Flush what earlier runs left in the page cache (``sync``), before a clock starts.

    Most receivers leave their files dirty in memory (``storescp`` never syncs); the kernel
    writes them back later, during whichever run comes next, and a receiver that makes its
    own files durable (dicommove's group commit: one ``syncfs``) would wait for theirs too.
    Every timed run starts from a clean page cache instead.
    """
    os.sync()


def run_timed(
    argv: Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    log: IO[bytes] | None = None,
) -> ProcessResult:
    """Run ``argv`` in its own process group; return wall time, peak RSS and CPU time.

    :func:`settle` runs first, untimed. Wall time runs from just before the fork to the
    moment the exit is seen. Peak RSS
    (``%M``) and user + system CPU come from ``/usr/bin/time``, which runs ``argv`` as its
    child (that adds one small fork and exec, ~1 ms, to every tool alike). After ``timeout``
    seconds the process group gets SIGKILL; only our own, still unreaped child's group is
    ever signalled.
    """
    if log is not None:
        log.write(("$ " + " ".join(argv) + "\n").encode())
        log.flush()
    fd, usage_name = tempfile.mkstemp(prefix="usage-", suffix=".txt")
    os.close(fd)
    usage_file = Path(usage_name)
    wrapped = [str(TIME_BINARY), "-f", "%M %U %S", "-o", str(usage_file), "--", *argv]
    lock = threading.Lock()
    exited = False
    timed_out = False
    settle()
    started = time.time()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        wrapped,
        stdin=subprocess.DEVNULL,
        stdout=log if log is not None else subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        start_new_session=True,
    )

    def kill() -> None:
        nonlocal timed_out
        with lock:
            if not exited:  # still unreaped: its process group ID is ours
                timed_out = True
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)

    timer = threading.Timer(timeout, kill)
    timer.daemon = True
    timer.start()
    try:
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped yet
        seconds = time.perf_counter() - t0
        with lock:
            exited = True
        timer.cancel()
        # Leftovers of the group (none expected) go now, while the leader still holds the ID.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        code = proc.wait()
    except BaseException:
        with lock:
            exited = True
        timer.cancel()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        usage_file.unlink(missing_ok=True)
        raise
    rss, cpu = 0, float("nan")
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = usage_file.read_text().split("\n")
        last = [line for line in fields if line.strip()][-1].split()
        rss, cpu = int(last[0]), float(last[1]) + float(last[2])
    usage_file.unlink(missing_ok=True)
    return ProcessResult(
        returncode=None if timed_out else code,
        seconds=seconds,
        peak_rss_kib=rss,
        cpu_seconds=cpu,
        timed_out=timed_out,
        started=started,
    )


def proc_peak_rss_kib(pid: int) -> int:
    """Return VmHWM (peak resident set, KiB) of a running process, or 0 if unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def proc_cpu_seconds(pid: int) -> float:
    """Return user + system CPU seconds of a running process, or NaN if unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    except (OSError, ValueError, IndexError):
        return float("nan")
    return ticks / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------------------------
# ceilings

_TCP_SINK = """
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
b = bytearray(1 << 20)
while s.recv_into(b):
    pass
s.sendall(b"k")
"""


def loopback_tcp_mbps(nbytes: int, chunk: int) -> float:
    """Send ``nbytes`` over loopback TCP to a child Python process in ``chunk``-sized sends.

    Returns MB/s (10^6 bytes) until the receiver acknowledged the last byte.
    """
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        port = srv.getsockname()[1]
        child = subprocess.Popen([sys.executable, "-c", _TCP_SINK, str(port)])
        try:
            srv.settimeout(30)
            conn, _ = srv.accept()
            with conn:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                buf = b"\0" * chunk
                sent = 0
                t0 = time.perf_counter()
                while sent < nbytes:
                    conn.sendall(buf)
                    sent += chunk
                conn.shutdown(socket.SHUT_WR)
                conn.recv(1)
                seconds = time.perf_counter() - t0
        finally:
            child.wait(30)
    return sent / seconds / 1e6


def disk_write_mbps(path: Path, nbytes: int, *, chunk: int = 1 << 20) -> float:
    """Write ``nbytes`` to one new file in ``chunk``-sized writes, then fsync; return MB/s."""
    buf = os.urandom(chunk)
    t0 = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        written = 0
        while written < nbytes:
            written += os.write(fd, buf)
        os.fsync(fd)
    finally:
        os.close(fd)
    return written / (time.perf_counter() - t0) / 1e6


def small_files_per_s(folder: Path, count: int, size: int, *, fsync: bool) -> float:
    """Create ``count`` files of ``size`` bytes (250 per directory), as a receiver would.

    Each file is written to a temp name, optionally fsynced, and renamed; returns files/s.
    This is the file-system ceiling of a receiver that writes one file per instance.
    """
    data = os.urandom(size)
    t0 = time.perf_counter()
    sub = folder
    for i in range(count):
        if i % 250 == 0:
            sub = folder / f"d{i // 250:04d}"
            sub.mkdir(parents=True)
        tmp = sub / f"{i}.part"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, data)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, sub / f"{i}.dcm")
    return count / (time.perf_counter() - t0)


# --------------------------------------------------------------------------------------------
# statistics


def fmt_stat(values: Sequence[float], digits: int = 0) -> str:
    """Format ``median (min-max)``; ``n/a`` without values; just the value for one."""
    vals = [v for v in values if v == v]
    if not vals:
        return "n/a"
    med = statistics.median(vals)
    if len(vals) == 1:
        return f"{med:.{digits}f}"
    return f"{med:.{digits}f} ({min(vals):.{digits}f}-{max(vals):.{digits}f})"


# --------------------------------------------------------------------------------------------
# command line and reporting helpers shared by bench.py and cohort.py


def parse_options(text: str) -> dict[str, Any]:
    """Parse ``key=value,key=value`` Session options (values are Python literals)."""
    options: dict[str, Any] = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise argparse.ArgumentTypeError(f"want key=value[,key=value], got {text!r}")
        try:
            options[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            options[key] = value
    return options


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    """Parse ``NAME:key=value,...`` into an extra dicommove receiver ``dicommove[NAME]``."""
    name, sep, opts = text.partition(":")
    if not sep or not name.replace("_", "").replace("-", "").isalnum():
        raise argparse.ArgumentTypeError(f"want NAME:key=value[,key=value], got {text!r}")
    return name, parse_options(opts)


def tool_versions(
    dists: Sequence[str] = ("dicommove", "pydicom", "pynetdicom", "numpy", "pandas"),
) -> dict[str, str]:
    """Versions of everything measured: Python, ``dists``, Orthanc and DCMTK."""
    versions = {"Python": platform.python_version()}
    for dist in dists:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    with contextlib.suppress(OSError, PeerMissing, subprocess.SubprocessError, IndexError):
        text = subprocess.run(
            [str(binary("Orthanc")), "--version"], capture_output=True, text=True, timeout=10
        ).stdout
        versions["Orthanc"] = text.split()[1]
    with contextlib.suppress(OSError, PeerMissing, subprocess.SubprocessError, IndexError):
        text = subprocess.run(
            [str(binary("movescu")), "--version"], capture_output=True, text=True, timeout=10
        ).stdout
        versions["DCMTK"] = text.split()[2].lstrip("v")
    return versions


def machine() -> dict[str, Any]:
    """CPU count, CPU model, memory, kernel."""
    mem = 0.0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) / (1 << 20)
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = ""
    with contextlib.suppress(OSError):
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_GiB": mem,
        "kernel": f"{platform.system()} {platform.release()}",
        "platform": platform.platform(),
        "loadavg_at_start": load,
    }


def reexec_in_netns() -> None:
    """Re-run this command inside ``unshare --net`` with loopback up (root only)."""
    if os.environ.get("DICOMMOVE_BENCH_NETNS") == "1":
        return
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        raise SystemExit("--netns needs root, unshare and ip (util-linux, iproute2)")
    env = dict(os.environ, DICOMMOVE_BENCH_NETNS="1")
    script = 'ip link set lo up && exec "$@"'
    argv = ["unshare", "--net", "--", "sh", "-c", script, "sh", sys.executable, *sys.argv]
    os.execvpe("unshare", argv, env)


@dataclass
class Receiver:
    """One way of receiving C-MOVEs in a benchmark: its own destination AE title and port.

    ``kind`` says how it is run (bench.py: dicommove, dcmtk_movescu, dcmtk_storescp,
    pynetdicom_movescu, null_storescp; cohort.py: movescu_port_loop, storescp_loop,
    pynetdicom_loop, dicommove); ``options`` are dicommove Session options.
    """

    name: str
    kind: str
    ae: str
    port: int = 0
    options: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """For the JSON."""
        return {
            "kind": self.kind,
            "ae_title": self.ae,
            "port": self.port,
            "options": {k: repr(v) for k, v in self.options.items()},
        }


def precompile() -> None:
    """Compile dicommove's modules to bytecode, as ``pip install .`` does.

    An editable install (``pip install -e .``) writes its ``__pycache__`` on first import,
    unless PYTHONDONTWRITEBYTECODE is set (it is on some machines): every timed run would
    then compile the package from source, which is not what a user's install pays.
    """
    import dicommove

    package = Path(dicommove.__file__).parent
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True)
