"""DCMTK peers and clients: dcmqrscp as a PACS, storescp as a move destination, echoscu, storescu.

DCMTK tools are always called by absolute path (``/usr/bin/...``, see :func:`binary`): ``pip
install pynetdicom`` puts same-named console scripts on ``PATH``. All of them run with
``TCP_NODELAY=1`` (:func:`peer_env`), without which DCMTK 3.6.7 stalls ~40 ms per C-STORE.

DICOM TLS (:class:`PeerTls`): echoscu, storescu and storescp take ``tls=``. DCMTK 3.6.7's
movescu, getscu and dcmqrscp have no TLS at all. Its default profile (BCP 195,
non-downgrading) offers TLS 1.2 only with RSA certificates (DHE/ECDHE-RSA with AES-GCM);
ECDSA certificates work with TLS 1.3 only ("no shared cipher" on TLS 1.2).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ._common import (
    LOADER_AE,
    LOOPBACK,
    PeerError,
    binary,
    check_modalities,
    free_port,
    peer_env,
)
from ._server import Pacs, Server

if TYPE_CHECKING:
    from ..tls import TlsFiles

#: The largest PDU DCMTK's tools accept to receive (``-pdu``): what we give them, as the
#: fastest setting (their default, 16,384, is ~20 % slower on large images).
MAX_DCMTK_PDU = 131072

# --------------------------------------------------------------------------------------------
# TLS settings


@dataclass(frozen=True)
class PeerTls:
    """The DICOM TLS settings of one peer or DCMTK tool: its certificate, whom it trusts.

    Parameters
    ----------
    ca : Path, optional
        PEM file of the certificates trusted to sign the other side's certificate (DCMTK
        ``+cf``, Orthanc ``DicomTlsTrustedCertificates``). It must hold the issuing CA: a
        CA-signed leaf alone does not verify (OpenSSL wants a chain to a self-signed root).
        None: the other side is not verified (``-ic``; needs ``peer_cert="ignore"``).
    cert, key : Path, optional
        Our PEM certificate and its unencrypted private key (``+tls key cert``). Both or
        neither; neither means anonymous TLS (``+tla``), for clients only.
    peer_cert : {"require", "verify", "ignore"}
        What a server does with the client's certificate: demand and verify it
        (``-rc``, default), verify it if one is presented (``-vc``), or ignore it
        (``-ic``). Clients always verify the server's certificate unless ``"ignore"``.

    Raises
    ------
    ValueError
        If only one of ``cert`` and ``key`` is given, or ``ca`` is missing and
        ``peer_cert`` is not ``"ignore"``.
    """

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    peer_cert: Literal["require", "verify", "ignore"] = "require"

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ValueError("PeerTls: give both cert and key, or neither (anonymous TLS)")
        if self.peer_cert not in ("require", "verify", "ignore"):
            raise ValueError(f"PeerTls: peer_cert={self.peer_cert!r}")
        if self.ca is None and self.peer_cert != "ignore":
            raise ValueError('PeerTls: without ca, the peer cannot be verified: peer_cert="ignore"')

    @classmethod
    def from_pki(
        cls,
        pki: TlsFiles,
        role: Literal["server", "client", "untrusted", "anonymous"] = "client",
        *,
        peer_cert: Literal["require", "verify", "ignore"] = "require",
    ) -> PeerTls:
        """Return the settings of one identity of a :func:`~dicommove.testing.tls.make_pki` PKI.

        Every role trusts the PKI's CA (``ca_cert``); ``"untrusted"`` presents the leaf
        signed by the other CA, ``"anonymous"`` presents no certificate.
        """
        if role == "anonymous":
            return cls(ca=pki.ca_cert, peer_cert=peer_cert)
        cert, key = {
            "server": (pki.server_cert, pki.server_key),
            "client": (pki.client_cert, pki.client_key),
            "untrusted": (pki.untrusted_cert, pki.untrusted_key),
        }[role]
        return cls(ca=pki.ca_cert, cert=cert, key=key, peer_cert=peer_cert)

    def dcmtk_args(self, *, server: bool = False) -> list[str]:
        """Return the DCMTK options for these settings (as a client, or ``server=True``).

        Raises
        ------
        ValueError
            If a server has no certificate (DCMTK servers have no anonymous TLS).
        """
        if self.cert is not None and self.key is not None:
            args = ["+tls", str(self.key), str(self.cert)]
        elif server:
            raise ValueError("a DCMTK TLS server needs a certificate and key")
        else:
            args = ["+tla"]
        if self.ca is not None:
            args += ["+cf", str(self.ca)]
        if self.peer_cert == "ignore":
            args.append("-ic")
        elif server and self.peer_cert == "verify":
            args.append("-vc")
        else:
            args.append("-rc")
        return args


# --------------------------------------------------------------------------------------------
# clients: echoscu, storescu


def echo(
    ae_title: str,
    port: int,
    *,
    calling: str = LOADER_AE,
    timeout: float = 2.0,
    tls: PeerTls | None = None,
) -> bool:
    """Return whether ``ae_title`` at 127.0.0.1:``port`` answers a C-ECHO (DCMTK echoscu).

    With ``tls``, over DICOM TLS; a refused handshake returns False.
    """
    secs = str(max(1, round(timeout)))
    argv = [
        str(binary("echoscu")),
        *(tls.dcmtk_args() if tls is not None else []),
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
    tls: PeerTls | None = None,
) -> int:
    """Send DICOM files to 127.0.0.1:``port`` with DCMTK storescu; return how many were sent.

    ``files`` may contain directories: they are scanned recursively for ``*.dcm``. Files go
    ``batch`` per association (one association for small sets). With ``tls``, over DICOM
    TLS.

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
        str(MAX_DCMTK_PDU),
        *(tls.dcmtk_args() if tls is not None else []),
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


# --------------------------------------------------------------------------------------------
# dcmqrscp


class DcmQrScp(Pacs):
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
        ((ae, (host, port)),) = check_modalities({ae: (host, port)}).items()
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


class StoreScp(Server):
    """DCMTK's storescp receiving into ``workdir/received``: a foreign move destination.

    Give ``port`` when the PACS must already know it (dcmqrscp reads destinations at start);
    otherwise a free port is picked. It accepts any calling and called AE title. With
    ``ignore=True`` it receives every instance, answers success and writes nothing
    (``storescp --ignore``): a do-nothing receiver, the ceiling a PACS sets. It then logs each
    C-STORE request (``-v``), so that :meth:`stores_logged` can count them. ``pdu`` is the
    largest PDU it receives (``-pdu``; default storescp's maximum, 131,072: its own default,
    16,384, is ~20 % slower on large images).

    With ``tls`` (a certificate and key are required) it accepts DICOM TLS only; its
    readiness probe then presents the same certificate, so that certificate must verify
    against its own ``tls.ca``, as the leaves of :func:`~dicommove.testing.tls.make_pki` do.
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
        pdu: int = MAX_DCMTK_PDU,
        tls: PeerTls | None = None,
    ):
        super().__init__(workdir)
        if tls is not None and tls.cert is None:
            raise ValueError("storescp over TLS needs a certificate and key (tls.cert, tls.key)")
        self._ae_title = ae_title
        self._fixed_port = port
        self._port = port or 0
        self.ignore = ignore
        self.pdu = pdu
        self.tls = tls

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
            "-pdu",
            str(self.pdu),
            *(self.tls.dcmtk_args(server=True) if self.tls is not None else []),
            "-od",
            str(self.out_dir),
            str(self._port),
        ]

    def _ready(self) -> bool:
        return echo(self._ae_title, self._port, tls=self.tls)

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
