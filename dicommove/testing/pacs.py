"""An in-process Query/Retrieve SCP serving a folder of DICOM files.

:class:`DemoPACS` is built on pynetdicom. It answers C-ECHO, C-FIND, C-MOVE and
C-GET in the Patient Root and Study Root models (C-MOVE and C-GET in Composite
Instance Root too), the way a small real PACS does: a C-MOVE opens one new
association to the registered destination and sends every matching instance
with C-STORE, carrying the Move Originator AE title and Message ID, with
pending responses and final counts.

It is meant for tests, notebooks and ``dicommove demo``; it is not a
production PACS (no persistence, no access control, no transcoding).

Threading: pynetdicom runs every association in its own threads and calls the
handlers there. The index is replaced as a whole by :meth:`DemoPACS.rescan`,
and the destinations, counters and request logs are guarded by a lock, so a
:class:`DemoPACS` can be read and configured from any thread while it serves.

This module holds :class:`DemoPACS` (lifecycle, configuration, state) and
:class:`PacsFaults`; the parts of the PACS live next to it:

* ``_index``: the folder scanned into instances and C-FIND records;
* ``_match``: identifier decoding, C-FIND matching, levels, C-MOVE/C-GET selection;
* ``_handlers``: the C-FIND/C-MOVE/C-GET handlers and the request logs and counters,
  bases of :class:`DemoPACS`;
* ``_hooks``: the per-association hooks into pynetdicom that inject faults, set the
  Move Originator and TCP_NODELAY.
"""

from __future__ import annotations

import logging
import os
import socketserver
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from pynetdicom import StoragePresentationContexts, evt
from pynetdicom._globals import ALL_TRANSFER_SYNTAXES
from pynetdicom.events import Event, EventHandlerType
from pynetdicom.transport import ThreadedAssociationServer

from .._sop import VERIFICATION
from ..errors import InputError, LocalSetupError
from ..node import Node, validate_ae_title
from ._handlers import QueryRetrieveHandlers
from ._hooks import NoDelayServer, PacsAE
from ._index import Index
from ._match import COMPOSITE_ROOT, PATIENT_ROOT, STUDY_ROOT

__all__ = ["DemoPACS", "PacsFaults"]

LOGGER = logging.getLogger("dicommove.testing")

_POLL_INTERVAL = 0.05  # seconds, how quickly stop() takes effect


@dataclass
class PacsFaults:
    """Faults a :class:`DemoPACS` injects, to test how a client copes.

    Change the fields of ``pacs.faults`` at any time; each C-MOVE or C-GET
    reads them as it goes. :meth:`clear` restores normal behaviour.

    Attributes
    ----------
    move_status : int or None
        Replace the final C-MOVE status with this code (the counts stay as they
        were). ``None``: the real status.
    error_comment : str
        The ErrorComment sent with a forced `move_status` (64 characters at most).
    skip_pending : bool
        Send no pending C-MOVE or C-GET responses, only the final one.
    pending_without_counts : bool
        Send the pending C-MOVE or C-GET responses without any Number of ...
        Suboperations element (the final response keeps its counts).
    delay_per_store : float
        Seconds to wait before each C-STORE sub-operation.
    drop_instances : set of str
        SOPInstanceUIDs that are silently not sent but counted as completed,
        like a PACS that reports success while fewer instances arrive.
    fail_instances : set of str
        SOPInstanceUIDs that are not sent and counted as failed (as if the
        destination had answered 0xA700); the final status is then 0xB000 with
        a FailedSOPInstanceUIDList, or 0xA702 when every sub-operation failed.
    abort_after : int or None
        Abort the C-MOVE or C-GET association (A-ABORT, no final response) once
        this many sub-operations have been sent.
    abort_count : int or None
        How many C-MOVEs or C-GETs `abort_after` applies to (each abort counts
        one down); ``None``: all of them.
    stall_after : int or None
        Go silent once this many sub-operations have been sent: no response,
        no C-STORE, for `stall_seconds` or until the request is cancelled.
    stall_seconds : float
        How long a stall lasts at most.
    ignore_cancel : bool
        Do not notice C-CANCEL requests (a stalled PACS stays silent).
    overflow_counts : bool
        In the pending responses of PATIENT- and STUDY-level C-MOVEs, report
        65,535 remaining sub-operations: what a PACS can say at most (US) when
        a request holds more instances than that.
    """

    move_status: int | None = None
    error_comment: str = ""
    skip_pending: bool = False
    pending_without_counts: bool = False
    delay_per_store: float = 0.0
    drop_instances: set[str] = field(default_factory=set)
    fail_instances: set[str] = field(default_factory=set)
    abort_after: int | None = None
    abort_count: int | None = None
    stall_after: int | None = None
    stall_seconds: float = 60.0
    ignore_cancel: bool = False
    overflow_counts: bool = False

    def clear(self) -> None:
        """Remove every fault."""
        self.move_status = None
        self.error_comment = ""
        self.skip_pending = False
        self.pending_without_counts = False
        self.delay_per_store = 0.0
        self.drop_instances = set()
        self.fail_instances = set()
        self.abort_after = None
        self.abort_count = None
        self.stall_after = None
        self.stall_seconds = 60.0
        self.ignore_cancel = False
        self.overflow_counts = False


class DemoPACS(QueryRetrieveHandlers):
    """An in-process DICOM Query/Retrieve SCP serving the files under a folder.

    Parameters
    ----------
    root : str or os.PathLike
        Folder scanned recursively for ``*.dcm`` files (Part 10, with file meta).
    ae_title : str
        The PACS's AE title.
    host : str
        The address to listen on; loopback by default.
    port : int
        The port to listen on; 0 picks a free port, readable from :attr:`port`
        after :meth:`start`.
    destinations : mapping of str to (str, int), optional
        Known move destinations, ``{AE title: (host, port)}``, like Orthanc's
        ``DicomModalities``. More can be added with :meth:`add_destination`.
    require_known_destination : bool
        If true (the default), a C-MOVE to an unregistered AE title fails with
        0xA801. If false and exactly one destination is registered, an unknown
        title is sent there anyway (with the requested title as Called AE), like
        a PACS that does not check titles.
    relational : bool
        Accept relational-retrieve and relational queries when a requestor asks for them
        by SOP Class Extended Negotiation (Patient and Study Root). Matching is relational
        either way, as in Orthanc; this only changes what the PACS answers.

    Attributes
    ----------
    faults : PacsFaults
        Fault injection; see :class:`PacsFaults`.

    Notes
    -----
    Supported: C-ECHO; C-FIND, C-MOVE and C-GET in Patient Root and Study Root; C-MOVE and
    C-GET in Composite Instance Root (SOPInstanceUIDs alone).

    C-FIND matching is relational at every level: single value, UID list,
    universal (empty), ``*``/``?`` wildcards (case-insensitive for PN) and
    DA/TM/DT ranges. Keys that do not belong to the level are returned empty and
    ignored. Responses carry the requested keys, QueryRetrieveLevel and
    RetrieveAETitle; the Number of ...Related... counts, ModalitiesInStudy,
    SOPClassesInStudy and InstanceAvailability are computed.

    C-MOVE and C-GET match on the unique keys only (PatientID,
    StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID), which may be lists.
    An invalid identifier (missing or wrong QueryRetrieveLevel, missing unique
    key for the level, a unique key below the level) fails with 0xA900 and an
    ErrorComment; an undecodable one with 0xC000. Files are sent as stored
    (re-encoded only between Explicit and Implicit VR Little Endian when the
    destination needs it; compressed files are never transcoded).

    pynetdicom 3.0.4 is patched per instance, never globally: the C-STORE
    sub-operations carry the C-MOVE requestor's AE title as Move Originator
    (pynetdicom would send the PACS's own), sockets use TCP_NODELAY (else about
    40 ms per C-STORE), the store sub-association's reactor cannot steal C-STORE
    responses (a race in pynetdicom), and the socket of a refused connection is
    closed (pynetdicom leaks it).

    Examples
    --------
    >>> destinations = {"STORE": ("127.0.0.1", 11113)}
    >>> with DemoPACS(folder, destinations=destinations) as pacs:  # doctest: +SKIP
    ...     print(pacs.node)
    DEMOPACS@127.0.0.1:40123
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        ae_title: str = "DEMOPACS",
        host: str = "127.0.0.1",
        port: int = 0,
        destinations: Mapping[str, tuple[str, int]] | None = None,
        require_known_destination: bool = True,
        relational: bool = False,
    ) -> None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port < 65536:
            raise InputError(f"invalid port {port!r}: use 0 (any free port) or 1 to 65535")
        self._root = Path(root)
        self._ae_title = validate_ae_title(ae_title, what="PACS AE title")
        self._host = host
        self._requested_port = port
        self.require_known_destination = require_known_destination
        self.relational = relational
        self.faults = PacsFaults()

        super().__init__()  # the request logs and counters, and self._lock
        self._stopping = threading.Event()  # wakes a stalled handler (faults.stall_after)
        self._max_associations = 64
        self._destinations: dict[str, tuple[str, int]] = {}
        self._index = Index()
        self._ae: PacsAE | None = None
        self._server: ThreadedAssociationServer | None = None
        self._thread: threading.Thread | None = None
        self._port = 0
        for title, (dest_host, dest_port) in (destinations or {}).items():
            self.add_destination(title, dest_host, dest_port)

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> DemoPACS:
        """Index the root folder and start serving in background threads.

        Returns
        -------
        DemoPACS
            ``self``, so that ``pacs = DemoPACS(root).start()`` works. Starting a
            running PACS does nothing.

        Raises
        ------
        LocalSetupError
            If the root is not a folder or the address cannot be bound.
        """
        if self._server is not None:
            return self
        if not self._root.is_dir():
            raise LocalSetupError(f"DemoPACS root {self._root} is not a folder")
        self.rescan()
        ae = PacsAE(ae_title=self._ae_title)
        ae.acse_timeout = 30
        ae.dimse_timeout = 30
        ae.network_timeout = 30
        ae.maximum_associations = self._max_associations
        self._stopping.clear()
        ae.add_supported_context(VERIFICATION)
        for model in sorted(PATIENT_ROOT | STUDY_ROOT | COMPOSITE_ROOT):
            ae.add_supported_context(model)
        # For C-GET: we act as Storage SCU on the requestor's association.
        for cx in StoragePresentationContexts:
            ae.add_supported_context(
                str(cx.abstract_syntax), ALL_TRANSFER_SYNTAXES, scp_role=True, scu_role=False
            )
        handlers: list[EventHandlerType] = [
            (evt.EVT_C_FIND, self._on_find),
            (evt.EVT_C_MOVE, self._on_move),
            (evt.EVT_C_GET, self._on_get),
            (evt.EVT_SOP_EXTENDED, self._on_extended),
        ]
        try:
            server = ae.make_server(
                (self._host, self._requested_port),
                evt_handlers=handlers,
                server_class=NoDelayServer,
            )
        except OSError as exc:
            raise LocalSetupError(
                f"DemoPACS cannot listen on {self._host}:{self._requested_port}: {exc}"
            ) from exc
        # Not ae.start_server(block=False): its serve_forever() polls every 0.5 s,
        # which is how long every stop() would then take.
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": _POLL_INTERVAL},
            name=f"DemoPACS-{self._ae_title}",
            daemon=True,
        )
        thread.start()
        with self._lock:
            self._ae, self._server, self._thread = ae, server, thread
            self._port = int(server.server_address[1])
        LOGGER.info(
            "DemoPACS %s serving %d instances from %s", self.node, self.instances, self._root
        )
        return self

    def _on_extended(self, event: Event) -> dict[str, bytes]:
        """Answer SOP Class Extended Negotiation: relational-retrieve/queries if enabled."""
        app_info: dict[str, bytes] = getattr(event, "app_info", {})  # set for this event
        return {
            uid: b"\x01"
            for uid, info in app_info.items()
            if self.relational and uid in (PATIENT_ROOT | STUDY_ROOT) and info[:1] == b"\x01"
        }

    def stop(self) -> None:
        """Stop listening and abort open associations. Stopping twice is harmless."""
        with self._lock:
            ae, server, thread = self._ae, self._server, self._thread
            self._ae, self._server, self._thread = None, None, None
        if server is None or ae is None:
            return
        self._stopping.set()
        # socketserver's own shutdown: pynetdicom's would also unregister the server
        # from ae.start_server's list, where it never was.
        socketserver.BaseServer.shutdown(server)
        server.server_close()
        for assoc in ae.active_associations:
            assoc.abort()
        if thread is not None:
            thread.join(timeout=5)
        LOGGER.info("DemoPACS %s@%s:%d stopped", self._ae_title, self._host, self._port)

    def __enter__(self) -> DemoPACS:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def rescan(self) -> int:
        """Re-read the root folder into the index; return the number of instances.

        Requests already running keep the index they started with.
        """
        index = Index.scan(self._root)
        with self._lock:
            self._index = index
        return len(index.entries)

    # -- configuration and state ---------------------------------------------------

    @property
    def active_associations(self) -> int:
        """Associations open on the PACS right now (pynetdicom still counts closing ones)."""
        with self._lock:
            ae = self._ae
        return len(ae.active_associations) if ae is not None else 0

    @property
    def maximum_associations(self) -> int:
        """Associations accepted at once; more are rejected as transient (2, 3, 2)."""
        return self._max_associations

    @maximum_associations.setter
    def maximum_associations(self, value: int) -> None:
        self._max_associations = value
        with self._lock:
            if self._ae is not None:
                self._ae.maximum_associations = value

    @property
    def node(self) -> Node:
        """The PACS's address, ``AE@host:port`` (only once started)."""
        if self._server is None:
            raise RuntimeError("DemoPACS is not running: call start() first")
        return Node(self._ae_title, self._host, self._port)

    @property
    def ae_title(self) -> str:
        """The PACS's AE title."""
        return self._ae_title

    @property
    def port(self) -> int:
        """The listening port (0 before :meth:`start`)."""
        return self._port

    @property
    def root(self) -> Path:
        """The folder served."""
        return self._root

    @property
    def is_running(self) -> bool:
        """Whether the PACS is serving."""
        return self._server is not None

    @property
    def instances(self) -> int:
        """The number of indexed instances."""
        return len(self._index.entries)

    @property
    def destinations(self) -> dict[str, tuple[str, int]]:
        """A copy of the known move destinations, ``{AE title: (host, port)}``."""
        with self._lock:
            return dict(self._destinations)

    def add_destination(self, ae_title: str, host: str, port: int) -> None:
        """Register (or replace) a C-MOVE destination; safe while serving.

        Parameters
        ----------
        ae_title : str
            The Move Destination AE title.
        host : str
            Its host.
        port : int
            Its port, 1 to 65535.

        Raises
        ------
        AddressError
            If the title, host or port is invalid.
        """
        node = Node(ae_title, host, port)
        with self._lock:
            self._destinations[node.ae_title] = (node.host, node.port)

    def remove_destination(self, ae_title: str) -> None:
        """Forget a C-MOVE destination (no error if unknown)."""
        with self._lock:
            self._destinations.pop(ae_title.strip(), None)

    def _resolve(self, ae_title: str) -> tuple[str, int] | None:
        with self._lock:
            address = self._destinations.get(ae_title)
            if (
                address is None
                and not self.require_known_destination
                and len(self._destinations) == 1
            ):
                address = next(iter(self._destinations.values()))
            return address
