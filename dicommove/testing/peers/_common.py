"""Common helpers for the peers: constants, errors, binaries, ports, waiting, checks.

Everything here is plain standard library: the peer classes and the DCMTK client wrappers build
on it, and :mod:`dicommove.testing.peers` re-exports the public names.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TypeVar

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
#: The default of ``modalities``: no C-MOVE destinations.
NO_MODALITIES: Mapping[str, tuple[str, int]] = MappingProxyType({})


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


def check_loopback(host: str) -> str:
    """Return ``host`` if it is a 127.0.0.0/8 address; raise ValueError otherwise."""
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"peer host must be a 127.0.0.0/8 address, not {host!r}") from None
    if addr not in _LOOPBACK_NET:
        raise ValueError(f"peer host must be a 127.0.0.0/8 address, not {host!r}")
    return host


def check_modalities(modalities: Mapping[str, tuple[str, int]]) -> dict[str, tuple[str, int]]:
    """Return ``modalities`` with stripped AE titles, checked: valid titles, loopback hosts."""
    checked: dict[str, tuple[str, int]] = {}
    for ae, (host, port) in modalities.items():
        if not 1 <= len(ae.strip()) <= 16 or "\\" in ae:
            raise ValueError(f"invalid AE title {ae!r}")
        checked[ae.strip()] = (check_loopback(host), int(port))
    return checked


def tail(path: Path, lines: int = 30) -> str:
    """Return the last ``lines`` lines of a log file, or ``(no log)``."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])
