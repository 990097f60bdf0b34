"""Real DICOM peers on loopback: Orthanc and DCMTK servers, started and stopped by us.

This package starts and stops the peers that the test suite and the benchmark
(``benchmarks/bench.py``) talk to:

* :class:`Orthanc`: Orthanc 1.10 (Debian package ``orthanc``) as a PACS,
* :class:`DcmQrScp`: DCMTK 3.6.7 ``dcmqrscp`` as a second, stricter PACS,
* :class:`StoreScp`: DCMTK ``storescp`` as a foreign Storage SCP (a move destination).

Each server runs in its own working directory, on free ports, is addressed only through
127.0.0.1, and is stopped by its own process (group) ID. The package does not depend on
pytest, nor (at import time) on pydicom or pynetdicom: ``tests/peers.py`` re-exports it and
adds the pytest parts (skipping tests when a peer is missing, or failing them when
``DICOMMOVE_REQUIRE_PEERS=1``).

>>> from dicommove.testing.peers import Orthanc, require_binaries
>>> require_binaries("Orthanc", "storescu", "echoscu")  # doctest: +SKIP
>>> destinations = {"DICOMMOVE": ("127.0.0.1", 11112)}
>>> with Orthanc(workdir, modalities=destinations) as pacs:  # doctest: +SKIP
...     pacs.load([cohort_dir])
...     print(pacs.address)
ORTHANC@127.0.0.1:40123

Peer quirks the code relies on (measured on Debian bookworm):

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

Its parts, all re-exported here (import from :mod:`dicommove.testing.peers`):

* ``_common``: constants, :class:`PeerMissing` and :class:`PeerError`, finding binaries
  (:func:`binary`, :func:`require_binaries`), :func:`free_port`, :func:`wait_for`,
  :func:`peer_env`, :func:`require_peers`, :func:`dataset_bytes`;
* ``_server``: the process management all peers share (start, ready probe, stop by process
  group, restart on the same ports);
* ``_orthanc``: :class:`Orthanc`;
* ``_dcmtk``: :class:`DcmQrScp`, :class:`StoreScp` and the DCMTK clients :func:`echo`
  (echoscu) and :func:`storescu`; :class:`PeerTls`, the DICOM TLS settings that Orthanc,
  storescp, echo and storescu take (``tls=``; certificates from
  :func:`dicommove.testing.tls.make_pki`).
"""

from __future__ import annotations

from ._common import (
    ALL_BINARIES,
    APT_INSTALL,
    DESTINATION_AES,
    ENV_REQUIRE_PEERS,
    LOADER_AE,
    LOOPBACK,
    PeerError,
    PeerMissing,
    binary,
    dataset_bytes,
    free_port,
    peer_env,
    require_binaries,
    require_peers,
    wait_for,
)
from ._dcmtk import MAX_DCMTK_PDU, DcmQrScp, PeerTls, StoreScp, echo, storescu
from ._orthanc import Orthanc

__all__ = [
    "ALL_BINARIES",
    "APT_INSTALL",
    "DESTINATION_AES",
    "ENV_REQUIRE_PEERS",
    "LOADER_AE",
    "LOOPBACK",
    "MAX_DCMTK_PDU",
    "DcmQrScp",
    "Orthanc",
    "PeerError",
    "PeerMissing",
    "PeerTls",
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
