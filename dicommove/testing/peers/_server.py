"""The base of every peer: a process we start in its own process group and stop by its ID.

:class:`Server` spawns the peer in its working directory, waits until it answers, retries on
new ports when another process took one ("address in use"), and stops the whole process
group; :class:`Pacs` adds what a Query/Retrieve peer has (AE title, move destinations, PDU).
An ``atexit`` hook stops any peer still running when the interpreter exits.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from ._common import (
    LOOPBACK,
    NO_MODALITIES,
    PeerError,
    check_modalities,
    peer_env,
    tail,
    wait_for,
)

_S = TypeVar("_S", bound="Server")

_IN_USE = re.compile(r"already in use|address in use|cannot (listen|bind|initiali[sz]e net)", re.I)

_live: set[Server] = set()
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


class Server:
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
        return tail(self.log_path, lines)

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


class Pacs(Server):
    """A Q/R peer: an AE title, the move destinations it knows, its maximum PDU."""

    default_ae_title = ""

    def __init__(
        self,
        workdir: Path,
        *,
        ae_title: str | None = None,
        modalities: Mapping[str, tuple[str, int]] = NO_MODALITIES,
        pdu: int = 16384,
    ) -> None:
        super().__init__(workdir)
        self._ae_title = ae_title or self.default_ae_title
        self._modalities = check_modalities(modalities)
        self._pdu = pdu
