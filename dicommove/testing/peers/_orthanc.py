"""Orthanc as a PACS: a private instance on free ports, configured and driven over REST.

Orthanc 1.10 (Debian package ``orthanc``) learns C-MOVE destinations from its
``DicomModalities``, which :meth:`Orthanc.add_modality` also edits at run time over REST.

DICOM TLS (``Orthanc(tls=PeerTls(...))``), as measured on Orthanc 1.10.1:

* ``DicomTlsEnabled`` switches the SCP to TLS *only* (one port; plain associations fail with
  "TLS error: wrong version number" in its log). The SCU uses TLS per destination
  (``"UseDicomTls": true``, also accepted over REST), whatever ``DicomTlsEnabled`` says.
* ``DicomTlsTrustedCertificates`` must hold the CA that signed the peers' certificates; the
  peers' CA-signed leaves alone fail ("TLS error: certificate verify failed"). With the SCP
  on, Orthanc exits at start without it ("Inexistent file: Cannot read file with trusted
  certificates for DICOM TLS"); SCU-only, it starts, and each TLS C-MOVE fails ("Bad sequence
  of calls: DICOM TLS - No path to the trusted remote certificates was provided").
* ``DicomTlsRemoteCertificateRequired: false`` admits clients without a certificate (and
  still refuses one that does not verify, "certificate verify failed").
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

from ._common import (
    LOADER_AE,
    LOOPBACK,
    NO_MODALITIES,
    PeerError,
    binary,
    check_modalities,
    free_port,
    tail,
)
from ._dcmtk import PeerTls, echo, storescu
from ._server import Pacs


class Orthanc(Pacs):
    """A private Orthanc on free ports, storage in ``workdir``.

    C-MOVE destinations must be known to Orthanc: pass them as ``modalities``
    (AE title -> (host, port)) or add them later with :meth:`add_modality`, which works at
    run time over REST (no restart). Calling AEs need not be listed (``DicomAlwaysAllow*``).

    Orthanc listens on all interfaces (1.10 has no bind option); HTTP answers only localhost.
    ``config`` is merged over the generated configuration, e.g. ``{"LimitFindResults": 10}``.

    ``tls`` gives Orthanc a DICOM TLS identity: ``tls.cert`` and ``tls.key``
    (``DicomTlsCertificate``, ``DicomTlsPrivateKey``, used by its SCP and its SCU), ``tls.ca``
    (``DicomTlsTrustedCertificates``: the CA of its peers, for both directions) and
    ``tls.peer_cert`` (``"require"`` or ``"verify"``: ``DicomTlsRemoteCertificateRequired``
    true or false). With ``tls_scp=True`` (default) its SCP accepts TLS only, and its own
    probe and :meth:`load` present ``tls.cert``, which must thus verify against ``tls.ca``;
    with ``tls_scp=False`` its SCP stays plain and only the SCU uses TLS. Destinations named
    in ``tls_modalities`` (or added with ``add_modality(..., tls=True)``) are reached over
    TLS (``"UseDicomTls": true``).
    """

    name = "orthanc"

    default_ae_title = "ORTHANC"

    def __init__(
        self,
        workdir: Path,
        *,
        ae_title: str | None = None,
        modalities: Mapping[str, tuple[str, int]] = NO_MODALITIES,
        pdu: int = 16384,
        config: Mapping[str, Any] | None = None,
        tls: PeerTls | None = None,
        tls_scp: bool = True,
        tls_modalities: Collection[str] = (),
    ) -> None:
        super().__init__(workdir, ae_title=ae_title, modalities=modalities, pdu=pdu)
        if tls is not None and (tls.cert is None or tls.ca is None):
            raise ValueError("Orthanc's DICOM TLS needs tls.cert, tls.key and tls.ca")
        if tls is not None and tls.peer_cert == "ignore":
            raise ValueError('Orthanc always verifies client certificates: peer_cert="ignore"')
        if tls_modalities and tls is None:
            raise ValueError("tls_modalities need a TLS identity for Orthanc (tls=)")
        unknown = set(tls_modalities) - set(self._modalities)
        if unknown:
            raise ValueError(f"tls_modalities not in modalities: {sorted(unknown)}")
        self._tls = tls
        self._tls_scp = tls is not None and tls_scp
        self._tls_modalities = set(tls_modalities)
        self._extra_config = dict(config or {})
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

    @property
    def tls(self) -> PeerTls | None:
        """Orthanc's DICOM TLS identity, or None."""
        return self._tls

    @property
    def client_tls(self) -> PeerTls | None:
        """What a DCMTK client needs to reach Orthanc's SCP (None: plain DICOM)."""
        return self._tls if self._tls_scp else None

    # -- lifecycle -------------------------------------------------------------------------

    def _choose_ports(self) -> None:
        if not (self._keep_ports and self._port):
            self._port, self._http_port = free_port(), free_port()
        self._system_name = f"dicommove-test-{os.getpid()}-{self._port}"
        self._write_config()

    def _modality_json(self, ae: str, host: str, port: int) -> dict[str, Any]:
        # No transcoding: the destination receives the stored bytes as they are.
        return {
            "AET": ae,
            "Host": host,
            "Port": port,
            "AllowTranscoding": False,
            "UseDicomTls": ae in self._tls_modalities,
        }

    def _tls_config(self) -> dict[str, Any]:
        tls = self._tls
        if tls is None:
            return {"DicomTlsEnabled": False}
        return {
            "DicomTlsEnabled": self._tls_scp,
            "DicomTlsCertificate": str(tls.cert),
            "DicomTlsPrivateKey": str(tls.key),
            "DicomTlsTrustedCertificates": str(tls.ca),
            "DicomTlsRemoteCertificateRequired": tls.peer_cert == "require",
        }

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
            **self._tls_config(),
            **self._extra_config,
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
        main = tail(self.workdir / "orthanc-main.log", lines)
        return f"{main}\n{tail(self.log_path, lines)}"

    def _ready(self) -> bool:
        try:
            system = self.get("/system", timeout=1.0)
        except (OSError, ValueError):
            return False
        if system.get("Name") != self._system_name:
            raise PeerError(f"another Orthanc answers on HTTP port {self._http_port} (in use)")
        return echo(self._ae_title, self._port, tls=self.client_tls)

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

    def add_modality(self, ae: str, host: str, port: int, *, tls: bool = False) -> None:
        """Register a C-MOVE destination; at run time via ``PUT /modalities/{ae}``.

        Orthanc 1.10.1 uses it at once, without a restart. It is also kept for later starts.
        With ``tls=True`` Orthanc reaches it over DICOM TLS (``"UseDicomTls": true``), which
        needs Orthanc's own ``tls``.
        """
        ((ae, (host, port)),) = check_modalities({ae: (host, port)}).items()
        if tls and self._tls is None:
            raise ValueError("a TLS destination needs a TLS identity for Orthanc (tls=)")
        self._modalities[ae] = (host, port)
        if tls:
            self._tls_modalities.add(ae)
        else:
            self._tls_modalities.discard(ae)
        if self.running:
            self.request(
                "PUT",
                f"/modalities/{urllib.parse.quote(ae, safe='')}",
                self._modality_json(ae, host, port),
            )

    def remove_modality(self, ae: str) -> None:
        """Forget a destination registered by :meth:`add_modality` (``DELETE /modalities``)."""
        self._modalities.pop(ae, None)
        self._tls_modalities.discard(ae)
        if self.running:
            self.request("DELETE", f"/modalities/{urllib.parse.quote(ae, safe='')}")

    def modalities(self) -> dict[str, tuple[str, int]]:
        """Return the destinations Orthanc knows now, as AE title -> (host, port)."""
        known = self.get("/modalities?expand")
        return {m["AET"]: (m["Host"], int(m["Port"])) for m in known.values()}

    # -- content ---------------------------------------------------------------------------

    def load(self, files: Iterable[Path]) -> int:
        """C-STORE ``files`` (or directories of ``*.dcm``) into Orthanc; return how many."""
        return storescu(self._ae_title, self._port, files, tls=self.client_tls)

    def count(self) -> int:
        """Return the number of instances stored."""
        return int(self.get("/statistics")["CountInstances"])

    def instances(self) -> set[str]:
        """Return the SOPInstanceUIDs stored."""
        found = self.get("/instances?expand")
        return {str(i["MainDicomTags"]["SOPInstanceUID"]) for i in found}
