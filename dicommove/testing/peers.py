"""Real DICOM peers on loopback: Orthanc and DCMTK servers, started and stopped by us.

This module starts and stops the peers that the test suite and the benchmark
(``benchmarks/bench.py``) talk to:

* :class:`Orthanc`: Orthanc 1.10 (Debian package ``orthanc``) as a PACS,
* :class:`DcmQrScp`: DCMTK 3.6.7 ``dcmqrscp`` as a second, stricter PACS,
* :class:`StoreScp`: DCMTK ``storescp`` as a foreign Storage SCP (a move destination).

Each server runs in its own working directory, on free ports, is addressed only through
127.0.0.1, and is stopped by its own process (group) ID. The module does not depend on
pytest: ``tests/peers.py`` re-exports it and adds the pytest parts (skipping tests when a peer
is missing, or failing them when ``DICOMMOVE_REQUIRE_PEERS=1``).

>>> from dicommove.testing.peers import Orthanc, require_binaries
>>> require_binaries("Orthanc", "storescu", "echoscu")  # doctest: +SKIP
>>> destinations = {"DICOMMOVE": ("127.0.0.1", 11112)}
>>> with Orthanc(workdir, modalities=destinations) as pacs:  # doctest: +SKIP
...     pacs.load([cohort_dir])
...     print(pacs.address)
ORTHANC@127.0.0.1:40123

Peer quirks the code below relies on (measured on Debian bookworm):

* DCMTK 3.6.7, also the copy inside Orthanc, leaves Nagle's algorithm on unless the environment
  has ``TCP_NODELAY=1``; without it every C-STORE stalls for ~40 ms. All peers and DCMTK
  clients get it through :func:`peer_env`.
* ``pip install pynetdicom`` installs console scripts named ``storescu``, ``storescp``,
  ``echoscu``... so DCMTK tools are always called by absolute path (``/usr/bin/...``).
* A PACS resolves a C-MOVE destination AE title to host and port only through its own table:
  Orthanc's ``DicomModalities`` (also editable at run time over REST) and dcmqrscp's
  ``HostTable`` (read once at start: :meth:`DcmQrScp.add_modality` restarts it).
* Orthanc 1.10 and dcmqrscp 3.6.7 have no bind-address option: they listen on all interfaces.
  Orthanc's HTTP API is limited to localhost by ``RemoteAccessAllowed: false``.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any, TypeVar

__all__ = [
    "ALL_BINARIES",
    "APT_INSTALL",
    "DESTINATION_AES",
    "ENV_REQUIRE_PEERS",
    "LOADER_AE",
    "LOOPBACK",
    "DcmQrScp",
    "Orthanc",
    "PeerError",
    "PeerMissing",
    "StoreScp",
    "binary",
    "dataset_bytes",
    "echo",
    "free_port",
    "peer_env",
    "require_binaries",
    "require_peers",
    "storescu",
    "wait_for",
]

#: The only address any peer is reached at.
LOOPBACK = "127.0.0.1"
_LOOPBACK_NET = ipaddress.ip_network("127.0.0.0/8")

#: Calling AE title of the DCMTK tools that load, probe and feed the peers.
LOADER_AE = "STORESCU"

#: AE titles the tests use as C-MOVE destinations; their ports are reserved up front because
#: dcmqrscp learns destinations only when it starts.
DESTINATION_AES = ("STORE-SCP", "MOVESCU", "DICOMMOVE", "STORAGE")

#: With this set to ``1``, a missing peer fails the test run instead of skipping.
ENV_REQUIRE_PEERS = "DICOMMOVE_REQUIRE_PEERS"

#: Every binary the peers need, by the name :func:`require_binaries` takes.
ALL_BINARIES = ("Orthanc", "dcmqrscp", "storescp", "storescu", "echoscu")

_DCMTK_DIR = Path("/usr/bin")
#: The command that installs every peer on Debian/Ubuntu (as root).
APT_INSTALL = "apt-get install -y --no-install-recommends dcmtk orthanc"
_INSTALL_HINT = (
    "install them with scripts/install-peers.sh, or as root: "
    f"apt-get update && {APT_INSTALL} (Debian packages dcmtk, orthanc)"
)
_NO_MODALITIES: Mapping[str, tuple[str, int]] = MappingProxyType({})

_S = TypeVar("_S", bound="_Server")
_T = TypeVar("_T")


class PeerMissing(Exception):
    """A binary a peer needs is not installed."""


class PeerError(RuntimeError):
    """A peer did not start, died, or did not do what was asked."""


# --------------------------------------------------------------------------------------------
# small helpers


def require_peers() -> bool:
    """Return whether ``DICOMMOVE_REQUIRE_PEERS=1`` (missing peers fail instead of skipping)."""
    return os.environ.get(ENV_REQUIRE_PEERS, "").strip().lower() in {"1", "true", "yes"}


def peer_env() -> dict[str, str]:
    """Return the environment for peers and DCMTK tools: ours plus ``TCP_NODELAY=1``."""
    env = dict(os.environ)
    env["TCP_NODELAY"] = "1"
    return env


_ports_lock = threading.Lock()
_ports_given: set[int] = set()


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free now.

    The kernel picks the port (bind to port 0), so parallel test processes get different
    ones; a port is never handed out twice by this process. Another process can still grab
    it before the caller binds it: servers started here retry with new ports on
    "address in use".
    """
    with _ports_lock:
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((LOOPBACK, 0))
                port = int(sock.getsockname()[1])
            if port not in _ports_given:
                _ports_given.add(port)
                return port
    raise PeerError("no free TCP port on 127.0.0.1")


def wait_for(
    predicate: Callable[[], _T],
    timeout: float,
    *,
    interval: float = 0.05,
    what: str | None = None,
) -> _T:
    """Poll ``predicate`` until it returns something truthy, and return that.

    Exceptions from ``predicate`` propagate (use them to give up early, e.g. when the
    process being waited on died).

    Raises
    ------
    TimeoutError
        If ``predicate`` stays falsy for ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"{what or getattr(predicate, '__name__', 'condition')} "
                f"not reached within {timeout:g} s"
            )
        time.sleep(interval)


def dataset_bytes(path: str | os.PathLike[str]) -> bytes:
    """Return the encoded dataset of a DICOM Part 10 file: the bytes after its file meta group.

    Two files hold the same dataset, byte for byte, when this is equal for both, whatever
    their preambles and file meta groups (which each writer fills in its own way).

    Raises
    ------
    ValueError
        If the file has no ``DICM`` prefix, or its meta group does not begin with the
        group length (0002,0000) UL in Explicit VR Little Endian.
    """
    raw = Path(path).read_bytes()
    if raw[128:132] != b"DICM":
        raise ValueError(f"{path}: not a DICOM Part 10 file (no DICM prefix)")
    if raw[132:138] != b"\x02\x00\x00\x00UL":
        raise ValueError(f"{path}: the file meta group does not begin with (0002,0000) UL")
    group_length = int.from_bytes(raw[140:144], "little")
    return raw[144 + group_length :]


def _binary_path(name: str) -> Path | None:
    if name == "Orthanc":
        for candidate in (Path("/usr/sbin/Orthanc"), Path("/usr/bin/Orthanc")):
            if os.access(candidate, os.X_OK):
                return candidate
        found = shutil.which("Orthanc")
        return Path(found) if found else None
    # DCMTK: only the real thing, never pynetdicom's same-named console scripts on PATH.
    path = _DCMTK_DIR / name
    return path if os.access(path, os.X_OK) else None


def binary(name: str) -> Path:
    """Return the path of a peer binary (``Orthanc`` or a DCMTK tool name).

    Raises
    ------
    PeerMissing
        If it is not installed.
    """
    path = _binary_path(name)
    if path is None:
        raise PeerMissing(f"{name} is not installed; {_INSTALL_HINT}")
    return path


def require_binaries(*names: str) -> None:
    """Raise :class:`PeerMissing` naming every binary in ``names`` that is not installed.

    With no names, check all of :data:`ALL_BINARIES`.
    """
    missing = [n for n in (names or ALL_BINARIES) if _binary_path(n) is None]
    if missing:
        where = ", ".join(n if n == "Orthanc" else f"{_DCMTK_DIR / n}" for n in missing)
        raise PeerMissing(f"DICOM peers missing: {where}; {_INSTALL_HINT}")


def _check_loopback(host: str) -> str:
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"peer host must be a 127.0.0.0/8 address, not {host!r}") from None
    if addr not in _LOOPBACK_NET:
        raise ValueError(f"peer host must be a 127.0.0.0/8 address, not {host!r}")
    return host


def _check_modalities(modalities: Mapping[str, tuple[str, int]]) -> dict[str, tuple[str, int]]:
    checked: dict[str, tuple[str, int]] = {}
    for ae, (host, port) in modalities.items():
        if not 1 <= len(ae.strip()) <= 16 or "\\" in ae:
            raise ValueError(f"invalid AE title {ae!r}")
        checked[ae.strip()] = (_check_loopback(host), int(port))
    return checked


def echo(ae_title: str, port: int, *, calling: str = LOADER_AE, timeout: float = 2.0) -> bool:
    """Return whether ``ae_title`` at 127.0.0.1:``port`` answers a C-ECHO (DCMTK echoscu)."""
    secs = str(max(1, round(timeout)))
    argv = [
        str(binary("echoscu")),
        "-to",
        secs,
        "-ta",
        secs,
        "-td",
        secs,
        "-aet",
        calling,
        "-aec",
        ae_title,
        LOOPBACK,
        str(port),
    ]
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=peer_env(),
            timeout=timeout + 5,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def storescu(
    ae_title: str,
    port: int,
    files: Iterable[Path],
    *,
    calling: str = LOADER_AE,
    timeout: float = 600.0,
    batch: int = 1000,
) -> int:
    """Send DICOM files to 127.0.0.1:``port`` with DCMTK storescu; return how many were sent.

    ``files`` may contain directories: they are scanned recursively for ``*.dcm``. Files go
    ``batch`` per association (one association for small sets).

    Raises
    ------
    PeerError
        If storescu fails (it halts at the first failed C-STORE).
    """
    paths = [Path(f) for f in files]
    dirs = [p for p in paths if p.is_dir()]
    plain = [p for p in paths if not p.is_dir()]
    base = [
        str(binary("storescu")),
        "-q",
        "-aet",
        calling,
        "-aec",
        ae_title,
        "-ta",
        "30",
        "-pdu",
        "131072",
    ]
    runs: list[list[str]] = []
    if dirs:
        runs.append([*base, "+sd", "+r", "+sp", "*.dcm", LOOPBACK, str(port), *map(str, dirs)])
    for i in range(0, len(plain), batch):
        runs.append([*base, LOOPBACK, str(port), *map(str, plain[i : i + batch])])
    for argv in runs:
        try:
            done = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                env=peer_env(),
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise PeerError(f"storescu to {ae_title}@{LOOPBACK}:{port} timed out") from exc
        if done.returncode != 0:
            out = (done.stdout + done.stderr).decode(errors="replace").strip()
            raise PeerError(
                f"storescu to {ae_title}@{LOOPBACK}:{port} exited {done.returncode}: {out[-2000:]}"
            )
    return len(plain) + sum(1 for d in dirs for _ in d.rglob("*.dcm"))


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


_IN_USE = re.compile(r"already in use|address in use|cannot (listen|bind|initiali[sz]e net)", re.I)


# --------------------------------------------------------------------------------------------
# process management

_live: set[_Server] = set()
_live_lock = threading.Lock()


@atexit.register
def _stop_all() -> None:
    # Backstop for finalizers that never ran (e.g. an error between start() and `with`).
    with _live_lock:
        servers = list(_live)
    for server in servers:
        with contextlib.suppress(Exception):
            server.stop()


def _exited(pid: int) -> bool:
    """Return whether child ``pid`` has exited, without reaping it (its PID stays ours)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


class _Server:
    """A peer process started by us, in its own process group, stopped by that group ID."""

    name = "peer"
    startup_timeout = 60.0

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self._proc: subprocess.Popen[bytes] | None = None
        self._ae_title = ""
        self._port = 0

    @property
    def ae_title(self) -> str:
        """The peer's DICOM AE title."""
        return self._ae_title

    @property
    def port(self) -> int:
        """The DICOM port (0 until started)."""
        return self._port

    @property
    def address(self) -> str:
        """``AE@127.0.0.1:port``, as dicommove takes it."""
        return f"{self._ae_title}@{LOOPBACK}:{self._port}"

    # -- lifecycle -------------------------------------------------------------------------

    def start(self: _S) -> _S:
        """Start the peer and wait until it answers; return self."""
        if self.running:
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        attempts = 3 if self._ports_are_ours() else 1
        for attempt in range(1, attempts + 1):
            self._choose_ports()
            self._spawn(self._argv())
            try:
                self._wait_ready()
            except PeerError as exc:
                self.stop()
                if attempt < attempts and _IN_USE.search(str(exc)):
                    continue  # another process took our port meanwhile: new ports, again
                raise
            except BaseException:
                self.stop()
                raise
            return self
        raise AssertionError("unreachable")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the peer: SIGTERM, then SIGKILL after ``timeout`` s, to its own process group.

        Forked children (dcmqrscp forks one per association) are in that group too. The
        leader is not reaped until the group was swept, so the group ID cannot be reused.
        Orthanc's clean shutdown takes ~2.5 s; ``timeout=0`` kills at once (fine when its
        storage is thrown away).
        """
        proc = self._proc
        if proc is None:
            return
        pid = proc.pid  # == its process group ID (start_new_session)
        if proc.returncode is None:  # not reaped yet (only here), so the group ID is still ours
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                wait_for(lambda: _exited(pid), timeout, interval=0.02, what=f"{self.name} exit")
            with contextlib.suppress(ProcessLookupError, PermissionError):
                # The leader, if it ignored SIGTERM, and leftovers of its group.
                os.killpg(pid, signal.SIGKILL)
        proc.wait()
        self._proc = None
        with _live_lock:
            _live.discard(self)

    def restart(self: _S) -> _S:
        """Stop and start again, on the same ports, with the same storage."""
        self.stop()
        self._keep_ports = True
        try:
            return self.start()
        finally:
            self._keep_ports = False

    def __enter__(self: _S) -> _S:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the peer process is alive."""
        # Not poll(): only stop() reaps the process, so its PID stays ours until then.
        return self._proc is not None and not _exited(self._proc.pid)

    @property
    def pid(self) -> int | None:
        """The peer's process ID, or None when it is not running."""
        return self._proc.pid if self._proc is not None else None

    @property
    def host(self) -> str:
        """The address the peer is reached at: always 127.0.0.1."""
        return LOOPBACK

    @property
    def log_path(self) -> Path:
        """The file the peer logs to."""
        return self.workdir / f"{self.name}.log"

    def log_tail(self, lines: int = 30) -> str:
        """Return the last ``lines`` lines of the peer's log."""
        return _tail(self.log_path, lines)

    # -- for subclasses --------------------------------------------------------------------

    _keep_ports = False

    def _ports_are_ours(self) -> bool:
        return True

    def _choose_ports(self) -> None:
        raise NotImplementedError

    def _argv(self) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    def _spawn(self, argv: list[str]) -> None:
        with open(self.log_path, "ab") as log:
            log.write(f"--- {time.strftime('%H:%M:%S')} {' '.join(argv)}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=peer_env(),
                cwd=self.workdir,
                start_new_session=True,  # own process group: stop() kills exactly ours
            )
        with _live_lock:
            _live.add(self)

    def _wait_ready(self) -> None:
        def probe() -> bool:
            proc = self._proc
            if proc is None or _exited(proc.pid):
                self.stop()
                code = None if proc is None else proc.returncode
                raise PeerError(f"{self.name} exited ({code}) while starting:\n{self.log_tail()}")
            return self._ready()

        try:
            wait_for(probe, self.startup_timeout, interval=0.05, what=f"{self.name} ready")
        except TimeoutError as exc:
            raise PeerError(f"{exc}; log:\n{self.log_tail()}") from None


# --------------------------------------------------------------------------------------------
# Orthanc


class _Pacs(_Server):
    """A Q/R peer: an AE title, the move destinations it knows, its maximum PDU."""

    default_ae_title = ""

    def __init__(
        self,
        workdir: Path,
        *,
        ae_title: str | None = None,
        modalities: Mapping[str, tuple[str, int]] = _NO_MODALITIES,
        pdu: int = 16384,
    ) -> None:
        super().__init__(workdir)
        self._ae_title = ae_title or self.default_ae_title
        self._modalities = _check_modalities(modalities)
        self._pdu = pdu


class Orthanc(_Pacs):
    """A private Orthanc on free ports, storage in ``workdir``.

    C-MOVE destinations must be known to Orthanc: pass them as ``modalities``
    (AE title -> (host, port)) or add them later with :meth:`add_modality`, which works at
    run time over REST (no restart). Calling AEs need not be listed (``DicomAlwaysAllow*``).

    Orthanc listens on all interfaces (1.10 has no bind option); HTTP answers only localhost.
    """

    name = "orthanc"

    default_ae_title = "ORTHANC"

    def __init__(
        self,
        workdir: Path,
        *,
        ae_title: str | None = None,
        modalities: Mapping[str, tuple[str, int]] = _NO_MODALITIES,
        pdu: int = 16384,
    ) -> None:
        super().__init__(workdir, ae_title=ae_title, modalities=modalities, pdu=pdu)
        self._http_port = 0
        self._system_name = ""
        # Talk to 127.0.0.1 directly, whatever http_proxy says.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    # -- properties ------------------------------------------------------------------------

    @property
    def http_port(self) -> int:
        """The REST API port."""
        return self._http_port

    @property
    def url(self) -> str:
        """Base URL of the REST API."""
        return f"http://{LOOPBACK}:{self._http_port}"

    @property
    def config_path(self) -> Path:
        """The generated JSON configuration."""
        return self.workdir / "orthanc.json"

    # -- lifecycle -------------------------------------------------------------------------

    def _choose_ports(self) -> None:
        if not (self._keep_ports and self._port):
            self._port, self._http_port = free_port(), free_port()
        self._system_name = f"dicommove-test-{os.getpid()}-{self._port}"
        self._write_config()

    def _modality_json(self, ae: str, host: str, port: int) -> dict[str, Any]:
        # No transcoding: the destination receives the stored bytes as they are.
        return {"AET": ae, "Host": host, "Port": port, "AllowTranscoding": False}

    def _write_config(self) -> None:
        storage = self.workdir / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        modalities = {LOADER_AE: (LOOPBACK, 104), **self._modalities}
        config: dict[str, Any] = {
            "Name": self._system_name,
            "StorageDirectory": str(storage),
            "IndexDirectory": str(storage),
            "StorageCompression": False,
            "SyncStorageArea": False,  # no fsync per instance
            "SaveJobs": False,
            "Plugins": [],
            "HttpServerEnabled": True,
            "HttpPort": self._http_port,
            "RemoteAccessAllowed": False,  # REST only from localhost
            "AuthenticationEnabled": False,
            "WebDavEnabled": False,
            "HttpCompressionEnabled": False,
            "DicomServerEnabled": True,
            "DicomAet": self._ae_title,
            "DicomPort": self._port,
            "DicomCheckCalledAet": False,
            "DicomCheckModalityHost": True,
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowFind": True,
            "DicomAlwaysAllowMove": True,  # calling AE need not be listed; destination must
            "DicomAlwaysAllowGet": True,
            "DicomModalities": {
                ae: self._modality_json(ae, host, port) for ae, (host, port) in modalities.items()
            },
            "DicomScuTimeout": 30,
            "DicomScpTimeout": 60,
            "SynchronousCMove": True,
            "MaximumPduLength": self._pdu,
            "DicomThreadsCount": 4,
            "DeidentifyLogs": False,
            "LogExportedResources": False,
        }
        self.config_path.write_text(json.dumps(config, indent=2))

    def _argv(self) -> list[str]:
        return [
            str(binary("Orthanc")),
            str(self.config_path),
            f"--logfile={self.workdir / 'orthanc-main.log'}",
            "--no-jobs",
        ]

    def log_tail(self, lines: int = 30) -> str:
        """Return the last lines of Orthanc's log (and of its stdout/stderr)."""
        main = _tail(self.workdir / "orthanc-main.log", lines)
        return f"{main}\n{_tail(self.log_path, lines)}"

    def _ready(self) -> bool:
        try:
            system = self.get("/system", timeout=1.0)
        except (OSError, ValueError):
            return False
        if system.get("Name") != self._system_name:
            raise PeerError(f"another Orthanc answers on HTTP port {self._http_port} (in use)")
        return echo(self._ae_title, self._port)

    # -- REST ------------------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None, *, timeout: float = 30.0) -> Any:
        """Call the REST API; return the decoded JSON answer (None if empty)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with self._opener.open(req, timeout=timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise PeerError(f"Orthanc {method} {path}: HTTP {exc.code}: {detail}") from None
        return json.loads(raw) if raw.strip() else None

    def get(self, path: str, *, timeout: float = 30.0) -> Any:
        """``GET path`` from the REST API, decoded from JSON."""
        return self.request("GET", path, timeout=timeout)

    def add_modality(self, ae: str, host: str, port: int) -> None:
        """Register a C-MOVE destination; at run time via ``PUT /modalities/{ae}``.

        Orthanc 1.10.1 uses it at once, without a restart. It is also kept for later starts.
        """
        ((ae, (host, port)),) = _check_modalities({ae: (host, port)}).items()
        self._modalities[ae] = (host, port)
        if self.running:
            self.request(
                "PUT",
                f"/modalities/{urllib.parse.quote(ae, safe='')}",
                self._modality_json(ae, host, port),
            )

    def remove_modality(self, ae: str) -> None:
        """Forget a destination registered by :meth:`add_modality` (``DELETE /modalities``)."""
        self._modalities.pop(ae, None)
        if self.running:
            self.request("DELETE", f"/modalities/{urllib.parse.quote(ae, safe='')}")

    def modalities(self) -> dict[str, tuple[str, int]]:
        """Return the destinations Orthanc knows now, as AE title -> (host, port)."""
        known = self.get("/modalities?expand")
        return {m["AET"]: (m["Host"], int(m["Port"])) for m in known.values()}

    # -- content ---------------------------------------------------------------------------

    def load(self, files: Iterable[Path]) -> int:
        """C-STORE ``files`` (or directories of ``*.dcm``) into Orthanc; return how many."""
        return storescu(self._ae_title, self._port, files)

    def count(self) -> int:
        """Return the number of instances stored."""
        return int(self.get("/statistics")["CountInstances"])

    def instances(self) -> set[str]:
        """Return the SOPInstanceUIDs stored."""
        found = self.get("/instances?expand")
        return {str(i["MainDicomTags"]["SOPInstanceUID"]) for i in found}


# --------------------------------------------------------------------------------------------
# dcmqrscp


class DcmQrScp(_Pacs):
    """DCMTK's dcmqrscp as a PACS on a free port, storage in ``workdir/db``.

    C-MOVE destinations come from its ``HostTable``, read only at start: pass them as
    ``modalities``. :meth:`add_modality` rewrites the configuration and restarts it on the
    same port (stored data is kept). One storage area holds at most 500 studies of 1 GB;
    beyond that dcmqrscp silently deletes the oldest study.
    """

    name = "dcmqrscp"
    startup_timeout = 30.0

    default_ae_title = "DCMQRSCP"

    @property
    def config_path(self) -> Path:
        """The generated configuration file."""
        return self.workdir / "dcmqrscp.cfg"

    @property
    def db_dir(self) -> Path:
        """The storage area (files and index.dat)."""
        return self.workdir / "db"

    def _choose_ports(self) -> None:
        if not (self._keep_ports and self._port):
            self._port = free_port()
        self._write_config()

    def _write_config(self) -> None:
        self.db_dir.mkdir(parents=True, exist_ok=True)
        modalities = {LOADER_AE: (LOOPBACK, 104), **self._modalities}
        hosts = "\n".join(
            f"peer{i} = ({ae}, {host}, {port})"
            for i, (ae, (host, port)) in enumerate(modalities.items())
        )
        self.config_path.write_text(
            f"""# generated by dicommove.testing.peers
NetworkTCPPort  = {self._port}
MaxPDUSize      = {self._pdu}
MaxAssociations = 16

HostTable BEGIN
# symbolic = (AETitle, host, port): C-MOVE destinations are looked up here by AE title
{hosts}
HostTable END

VendorTable BEGIN
VendorTable END

AETable BEGIN
# AETitle  StorageArea  Access  (maxStudies, maxBytesPerStudy)  Peers
{self._ae_title}  {self.db_dir}  RW  (500, 1024mb)  ANY
AETable END
"""
        )

    def _argv(self) -> list[str]:
        # -dhl: no reverse DNS lookup per association.
        return [str(binary("dcmqrscp")), "-dhl", "-c", str(self.config_path), str(self._port)]

    def _ready(self) -> bool:
        return echo(self._ae_title, self._port)

    def add_modality(self, ae: str, host: str, port: int) -> None:
        """Add a C-MOVE destination: rewrites the HostTable and restarts dcmqrscp if running."""
        ((ae, (host, port)),) = _check_modalities({ae: (host, port)}).items()
        self._modalities[ae] = (host, port)
        if self.running:
            self.restart()

    def modalities(self) -> dict[str, tuple[str, int]]:
        """Return the destinations in the HostTable (without the loader)."""
        return dict(self._modalities)

    def load(self, files: Iterable[Path]) -> int:
        """C-STORE ``files`` (or directories of ``*.dcm``) into dcmqrscp; return how many."""
        return storescu(self._ae_title, self._port, files)

    def stored_files(self) -> list[Path]:
        """Return the files the index lists (each live record starts with its file path)."""
        index = self.db_dir / "index.dat"
        try:
            data = index.read_bytes()
        except FileNotFoundError:
            return []
        prefix = re.escape(os.fsencode(self.db_dir) + b"/")
        names = {m.decode() for m in re.findall(prefix + rb"[^\x00]+", data)}
        return sorted(Path(n) for n in names)

    def count(self) -> int:
        """Return the number of instances in the index."""
        return len(self.stored_files())

    def instances(self) -> set[str]:
        """Return the SOPInstanceUIDs stored (reads each file's header)."""
        from pydicom import dcmread

        tags = ["SOPInstanceUID"]
        return {
            str(dcmread(p, stop_before_pixels=True, specific_tags=tags).SOPInstanceUID)
            for p in self.stored_files()
        }


# --------------------------------------------------------------------------------------------
# storescp


class StoreScp(_Server):
    """DCMTK's storescp receiving into ``workdir/received``: a foreign move destination.

    Give ``port`` when the PACS must already know it (dcmqrscp reads destinations at start);
    otherwise a free port is picked. It accepts any calling and called AE title. With
    ``ignore=True`` it receives every instance, answers success and writes nothing
    (``storescp --ignore``): a do-nothing receiver, the ceiling a PACS sets. It then logs each
    C-STORE request (``-v``), so that :meth:`stores_logged` can count them.
    """

    name = "storescp"
    startup_timeout = 30.0

    def __init__(
        self,
        workdir: Path,
        *,
        ae_title: str = "STORE-SCP",
        port: int | None = None,
        ignore: bool = False,
    ):
        super().__init__(workdir)
        self._ae_title = ae_title
        self._fixed_port = port
        self._port = port or 0
        self.ignore = ignore

    @property
    def out_dir(self) -> Path:
        """Where received files are written."""
        return self.workdir / "received"

    def _ports_are_ours(self) -> bool:
        return self._fixed_port is None

    def _choose_ports(self) -> None:
        if self._fixed_port is not None:
            self._port = self._fixed_port
        elif not (self._keep_ports and self._port):
            self._port = free_port()
        self.out_dir.mkdir(parents=True, exist_ok=True)

    def _argv(self) -> list[str]:
        return [
            str(binary("storescp")),
            "-dhl",
            *(["--ignore", "-v"] if self.ignore else []),
            "--aetitle",
            self._ae_title,
            "-od",
            str(self.out_dir),
            str(self._port),
        ]

    def _ready(self) -> bool:
        return echo(self._ae_title, self._port)

    def stores_logged(self) -> list[int]:
        """Return the Message IDs of the C-STORE requests logged so far (``ignore=True`` only)."""
        if not self.ignore:
            raise PeerError("storescp logs its C-STORE requests only when started with ignore=True")
        text = self.log_path.read_text(errors="replace") if self.log_path.is_file() else ""
        return [int(m) for m in re.findall(r"Received Store Request \(MsgID (\d+)", text)]

    def files(self) -> list[Path]:
        """Return the files received so far, sorted."""
        if not self.out_dir.is_dir():
            return []
        return sorted(p for p in self.out_dir.rglob("*") if p.is_file())
