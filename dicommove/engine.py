"""The move engine: associations, C-MOVE requests, statuses and routing.

A :class:`Session` owns the SCU application entity and, while a move runs, the
embedded :class:`~dicommove.scp.StoreSCP`. Each request gets its own Message
ID, unique within the session, so every instance that arrives can be routed
back to its request through MoveOriginatorMessageID; when a PACS leaves that
out, the request's unique keys decide.

The association with the PACS is our own (:mod:`dicommove._scu` on the
:mod:`dicommove._ul` codec): responses are read only as far as needed, the
status and sub-operation counts straight from the command set. Failures become
typed exceptions and manifest rows.
"""

from __future__ import annotations

import errno
import io
import itertools
import logging
import os
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Hashable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from . import _ul
from ._scu import Aborted, Rejected, Requestor
from .errors import (
    AssociationAborted,
    AssociationRejected,
    ConnectError,
    DicomMoveError,
    DiskFullError,
    InputError,
    MoveCancelled,
    MoveDestinationUnknown,
    MoveIncomplete,
    MoveInterrupted,
    MoveTimeout,
)
from .journal import Journal, JournalEntry, request_key
from .manifest import PROBLEM_STATUSES, build
from .node import DEFAULT_CALLED_AE, Node, validate_ae_title
from .progress import MoveStats, ProgressMode, ProgressSnapshot, Reporter, make_reporter
from .query import UNIQUE_KEYS, Model, Planned, Query, Request, plan, to_requests
from .scp import (
    DEFAULT_MAX_PDU,
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
    InstanceStore,
    Received,
    StoreSCP,
)
from .store import Layout, compile_layout

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DEFAULT_AE_TITLE",
    "DEFAULT_PORT",
    "DEFAULT_WORKERS",
    "STATUS_TEXT",
    "MoveJob",
    "Session",
    "describe_status",
]

logger = logging.getLogger("dicommove")

#: What ``progress=`` takes: a mode, or a callable receiving each ProgressSnapshot.
Progress = ProgressMode | Callable[[ProgressSnapshot], object]

#: Our default AE title and store port, as in dicom-movescu.
DEFAULT_AE_TITLE = "STORE-SCP"
DEFAULT_PORT = 11111
#: Parallel C-MOVE associations by default: enough to overlap one request's
#: set-up with another's transfer, few enough for any PACS's association limit.
DEFAULT_WORKERS = 2

STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
PATIENT_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.1.2"
_MOVE_MODELS: dict[str, str] = {"study": STUDY_ROOT_MOVE, "patient": PATIENT_ROOT_MOVE}
_FIND_MODELS: dict[str, str] = {
    "study": "1.2.840.10008.5.1.4.1.2.2.1",
    "patient": "1.2.840.10008.5.1.4.1.2.1.1",
}

PENDING = frozenset({0xFF00, 0xFF01})
SUCCESS = 0x0000
WARNING = 0xB000
CANCEL = 0xFE00
DESTINATION_UNKNOWN = 0xA801
OUT_OF_RESOURCES_SUBOPS = 0xA702  # transient: retried
#: How long a worker waits for a response before it looks at cancel and timeouts again.
_POLL = 0.25
#: Sub-operation counters are US: a PACS cannot count more (PS3.7 C.4.2.1.5...).
_MAX_SUBOPERATIONS = 0xFFFF
_QR_LEVEL, _PATIENT_ID, _STUDY_UID, _SERIES_UID = 0x00080052, 0x00100020, 0x0020000D, 0x0020000E
_SOP_UID = 0x00080018
#: What _attempt returns when a request must be split into series-level moves.
_SPLIT = "split into series"

#: C-MOVE status codes (PS3.4 C.4.2.1.5) and what they mean.
STATUS_TEXT: dict[int, str] = {
    0x0000: "success",
    0xB000: "warning: sub-operations complete, one or more failures or warnings",
    0xFE00: "cancelled: sub-operations terminated by a C-CANCEL",
    0xFF00: "pending: sub-operations are continuing",
    0xFF01: "pending: sub-operations are continuing (optional keys not supported)",
    0xA701: "refused: out of resources, unable to calculate the number of matches",
    0xA702: "refused: out of resources, unable to perform sub-operations",
    0xA801: "refused: move destination unknown",
    0xA900: "failed: identifier does not match the SOP class",
    0x0122: "refused: SOP class not supported",
    0x0124: "refused: not authorized",
    0x0210: "failed: duplicate invocation (Message ID already in use)",
    0x0211: "failed: unrecognized operation",
}


VERIFICATION = "1.2.840.10008.1.1"
_SOP_NAMES = {
    VERIFICATION: "Verification (C-ECHO)",
    STUDY_ROOT_MOVE: "Study Root C-MOVE",
    PATIENT_ROOT_MOVE: "Patient Root C-MOVE",
}
#: A-ASSOCIATE-RJ (source, reason) -> meaning (PS3.8 9.3.4).
_REJECT_REASONS = {
    (1, 1): "no reason given",
    (1, 2): "application context name not supported",
    (1, 3): "calling AE title not recognized",
    (1, 7): "called AE title not recognized",
    (2, 1): "no reason given",
    (2, 2): "protocol version not supported",
    (3, 1): "temporary congestion",
    (3, 2): "local limit exceeded",
}


def _encode_identifier(identifier: Any, transfer_syntax: str) -> bytes:
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = transfer_syntax == "1.2.840.10008.1.2"
    write_dataset(fp, identifier)
    return fp.getvalue()


def _decode_identifier(data: bytes, transfer_syntax: str) -> Any:
    from pydicom.filereader import read_dataset

    try:
        return read_dataset(io.BytesIO(data), transfer_syntax == "1.2.840.10008.1.2", True)
    except Exception:  # an undecodable identifier carries no failed-UID list
        from pydicom.dataset import Dataset

        return Dataset()


def describe_status(code: int | None) -> str:
    """Return a human description of a C-MOVE status code (``None``: no response)."""
    if code is None:
        return "no final response: the association was aborted or timed out"
    if code in STATUS_TEXT:
        return f"0x{code:04X} {STATUS_TEXT[code]}"
    if 0xC000 <= code <= 0xCFFF:
        return f"0x{code:04X} failed: unable to process"
    return f"0x{code:04X} unknown status"


#: Instance statuses that mean "it is on disk", for the journal and for retries.
_ARRIVED = frozenset({"received", "duplicate"})


def _label(query: Query) -> str:
    """Return a short name for a request in the progress display: level and UID(s)."""
    uids = query.retrieve_uids()
    first = uids[0] if uids else str(query)
    more = f" +{len(uids) - 1}" if len(uids) > 1 else ""
    return f"{query.level or '?'} {first[-24:]}{more}"


class _Arrival(NamedTuple):
    """One C-STORE outcome as the manifest needs it: a compact copy of a Received record.

    A move may bring hundreds of thousands of instances: the UIDs that repeat are
    shared strings (the store interns them), the time is a float, and the path
    is ``None`` when it is the layout's path for these UIDs (:meth:`Session._path_of`).
    """

    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    status: str
    reason: str
    study_instance_uid: str
    series_instance_uid: str
    patient_id: str
    path: str | None
    size: int
    received_at: float | None

    @classmethod
    def of(cls, rec: Received) -> _Arrival:
        """Copy a record; drop its path when the layout gives it back."""
        layout = rec.status in ("received", "duplicate", "unrequested") and bool(rec.path)
        return cls(
            rec.sop_instance_uid,
            rec.sop_class_uid,
            rec.transfer_syntax_uid,
            rec.status,
            rec.reason,
            rec.study_instance_uid,
            rec.series_instance_uid,
            rec.patient_id,
            None if layout else rec.path,
            rec.size,
            rec.received_at,
        )


def _on_disk(entry: JournalEntry, root: Path) -> Iterator[_Arrival]:
    """Yield the instances a journal entry records whose files are there with their sizes."""
    for rec in entry.instances.values():
        path = root / rec["path"]
        try:
            if path.stat().st_size != rec["size"]:
                continue
        except OSError:
            continue
        yield _Arrival(
            rec["sop"],
            rec.get("sop_class", ""),
            rec.get("ts", ""),
            "received",
            "on disk from an earlier run (resume=True): not asked for again",
            rec.get("study", ""),
            rec.get("series", ""),
            rec.get("patient", ""),
            str(path),
            rec["size"],
            rec.get("at"),
        )


class _SetupAborted(Exception):
    """The PACS closed or reset the connection while the association was being set up."""


class _Retire(Exception):
    """A worker cannot get an association while others have one: it hands back its request."""


def _is_failure(code: int | None) -> bool:
    return code is None or code not in PENDING | {SUCCESS, WARNING, CANCEL}


@dataclass
class _RequestState:
    """What one request asked for and what came back."""

    request: Request
    message_id: int
    key: str = ""  # the journal's key for this request
    resumed: JournalEntry | None = None  # complete on disk from an earlier run: skipped
    query: Query | None = None  # what the current attempt asks for (narrowed on retries)
    attempts: int = 0
    worker: int = -1
    last_activity: float = 0.0  # time.monotonic() of the last response or instance
    started_at: float = 0.0
    timed_out: str = ""  # why it timed out, if it did
    cancelled: bool = False
    split: bool = False  # too many sub-operations to count: being moved series by series
    finished: bool = False
    received: list[_Arrival] = field(default_factory=list)
    sources: dict[str, Hashable] = field(default_factory=dict)  # retrieve UID -> input row
    duplicates: tuple[tuple[Hashable, Hashable], ...] = ()  # folded identical input rows
    final_status: int | None = None
    error_comment: str = ""
    completed: int = 0
    failed: int = 0
    warning: int = 0
    remaining: int | None = None
    failed_uids: list[str] = field(default_factory=list)
    aborted: str = ""
    matched_nothing: bool = False

    @property
    def expected(self) -> int:
        """Sub-operations the PACS announced so far."""
        return self.completed + self.failed + self.warning + (self.remaining or 0)


def _value_list(value: Any) -> list[str]:
    """Return a value as a list of strings (pydicom's MultiValue included)."""
    if value is None or value == "":
        return []
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        return [str(value)]
    return [str(v) for v in value]


def _matches(query: Query, rec: Received) -> bool:
    """Whether a received instance falls under a query's unique keys."""
    checks = (
        ("PatientID", rec.patient_id),
        ("StudyInstanceUID", rec.study_instance_uid),
        ("SeriesInstanceUID", rec.series_instance_uid),
        ("SOPInstanceUID", rec.sop_instance_uid),
    )
    for keyword, actual in checks:
        wanted = _value_list(query.get(keyword))
        if wanted and actual not in wanted:
            return False
    return True


class Session:
    """A connection to one PACS, reused across moves.

    Parameters
    ----------
    pacs : str or Node
        The PACS as ``AE@host:port``.
    out : path-like
        Where received files are written (created if needed).
    ae_title : str
        Our AE title: the calling AE of our associations, and of the embedded
        Store SCP.
    port : int
        The port of the embedded Store SCP (0 picks a free one).
    move_destination : str, optional
        The C-MOVE destination AE title. Defaults to ``ae_title``, in which case
        the embedded Store SCP receives the instances; any other title is a
        *foreign* destination and no Store SCP is started.
    model : {"study", "patient"}
        The Query/Retrieve information model for inputs that don't say.
    layout : str
        File layout under ``out``: ``"hierarchical"``, ``"flat"`` or a template of
        UID fields such as ``"{StudyInstanceUID}/{SOPInstanceUID}.dcm"``.
    bind : str, optional
        The address the Store SCP listens on. By default ``127.0.0.1`` when the
        PACS is on loopback, else all interfaces (the PACS must be able to
        connect back to us; only its AE title is accepted).
    max_pdu : int
        Maximum PDU length we receive, on both our associations (default
        262144); 0 means unlimited.
    connect_timeout : float
        Seconds to wait for the TCP connection to the PACS.
    acse_timeout : float
        Seconds to wait for the PACS's association reply; also the time a store
        association has to complete its request.
    network_timeout : float
        Seconds of silence after which a store association is aborted.
    dimse_timeout : float
        Seconds to wait for a C-ECHO or C-FIND response, and for the rest of a
        response once it has started to arrive.
    inactivity_timeout : float
        Seconds a C-MOVE may go without any sign of life before it is
        cancelled: every pending response and every instance received for it
        counts as activity, so a slow PACS that sends no pending responses is
        not cut off while its instances keep arriving (default 600). Its rows
        then read ``timeout``.
    request_timeout : float, optional
        Longest time one C-MOVE may take, from its request to its final
        response (default: no limit). Its rows then read ``timeout``.
    deadline : float, optional
        Longest time a whole :meth:`move` may take (default: no limit). When it
        passes, the active moves are cancelled and :class:`MoveTimeout` is
        raised with the manifest.
    workers : int
        Parallel C-MOVE associations to the PACS (default 2), all delivering
        into the one embedded Store SCP. Each request runs on one of them.
    retries : int
        How often a request is tried again after a transient failure (default
        3): connection refused or reset, association aborted, association
        rejected as transient (busy), status 0xA702 (out of resources). Waits
        about ``retry_backoff`` s (with a random jitter of +-50 %) before the
        first retry and doubles it each time. A
        retry of an IMAGE-level request asks only for the instances that have
        not arrived.
    retry_backoff : float
        Seconds before the first retry (default 1).
    cancel_grace : float
        After a C-CANCEL (Ctrl-C, :meth:`cancel`, a timeout), seconds to wait
        for the PACS's final response before aborting the association (default 5).
    allowed_aes : collection of str, optional
        Extra calling AE titles our Store SCP accepts besides the PACS's own.
    allowed_hosts : collection of str, optional
        IP addresses our Store SCP accepts connections from (default: any).
    unrequested : {"keep", "refuse"}
        What to do with an instance that arrives during a move but matches no
        request: keep it (status ``unrequested``) or refuse the C-STORE.
    accept_unknown_sop_classes : bool
        Also accept private or unknown SOP classes (default: standard Storage only).
    fsync : bool
        Flush each file to stable storage before it gets its final name and the
        C-STORE is answered (default). ``False`` is faster on many small files,
        but a power loss can then leave a final name on an incomplete file.

    Examples
    --------
    >>> with Session("ORTHANC@127.0.0.1:4242", out="data") as s:  # doctest: +SKIP
    ...     df = s.move(["1.2.3", "1.2.4"])
    """

    def __init__(
        self,
        pacs: str | Node,
        *,
        out: str | os.PathLike[str] = ".",
        ae_title: str = DEFAULT_AE_TITLE,
        port: int = DEFAULT_PORT,
        move_destination: str | None = None,
        model: Model = "study",
        layout: Layout = "hierarchical",
        bind: str | None = None,
        max_pdu: int = DEFAULT_MAX_PDU,
        connect_timeout: float = 10.0,
        acse_timeout: float = 30.0,
        network_timeout: float = 60.0,
        dimse_timeout: float = 600.0,
        allowed_aes: Collection[str] = (),
        allowed_hosts: Collection[str] | None = None,
        unrequested: Literal["keep", "refuse"] = "keep",
        accept_unknown_sop_classes: bool = False,
        fsync: bool = True,
        inactivity_timeout: float = 600.0,
        request_timeout: float | None = None,
        deadline: float | None = None,
        workers: int = DEFAULT_WORKERS,
        retries: int = 3,
        retry_backoff: float = 1.0,
        cancel_grace: float = 5.0,
    ) -> None:
        self.pacs = Node.parse(pacs)
        self.ae_title = validate_ae_title(ae_title, what="calling AE title")
        self.move_destination = validate_ae_title(
            move_destination or self.ae_title, what="move destination AE title"
        )
        if model not in _MOVE_MODELS:
            raise InputError(f"unknown model {model!r}: use 'study' or 'patient'")
        if not (isinstance(port, int) and 0 <= port < 65536):
            raise InputError(f"invalid store port {port!r}: use 0 to 65535")
        self.model: Model = model
        self.out = Path(out)
        self.port = port
        self.layout: Layout = layout
        self.bind = bind if bind is not None else self._default_bind()
        self.max_pdu = max_pdu
        self.connect_timeout = connect_timeout
        self.acse_timeout = acse_timeout
        self.network_timeout = network_timeout
        self.dimse_timeout = dimse_timeout
        self.allowed_aes = frozenset(validate_ae_title(a) for a in allowed_aes)
        self.allowed_hosts = frozenset(allowed_hosts) if allowed_hosts is not None else None
        if unrequested not in ("keep", "refuse"):
            raise InputError(f"unrequested={unrequested!r}: use 'keep' or 'refuse'")
        self.unrequested = unrequested
        self.accept_unknown_sop_classes = accept_unknown_sop_classes
        self.fsync = fsync
        for name, value in (
            ("inactivity_timeout", inactivity_timeout),
            ("request_timeout", request_timeout),
            ("deadline", deadline),
            ("retry_backoff", retry_backoff),
            ("cancel_grace", cancel_grace),
        ):
            if value is not None and not (isinstance(value, (int, float)) and value >= 0):
                raise InputError(f"{name}={value!r}: use a number of seconds >= 0")
        if not (isinstance(workers, int) and not isinstance(workers, bool) and 1 <= workers <= 16):
            raise InputError(
                f"workers={workers!r}: use an integer from 1 to 16 (the store SCP takes 16 "
                "associations at once)"
            )
        if not (isinstance(retries, int) and retries >= 0):
            raise InputError(f"retries={retries!r}: use an integer >= 0")
        self.inactivity_timeout = float(inactivity_timeout)
        self.request_timeout = request_timeout
        self.deadline = deadline
        self.workers = workers
        self.retries = retries
        self.retry_backoff = float(retry_backoff)
        self.cancel_grace = float(cancel_grace)
        compile_layout(layout)  # an unsafe layout is refused before any traffic
        self._ids = itertools.count(1)
        self._ids_lock = threading.Lock()
        self._assocs: dict[int, Requestor] = {}
        self._assoc_lock = threading.Lock()
        self._closed = False
        self._running = threading.Lock()  # one move at a time per session
        self._cancel = threading.Event()  # C-CANCEL the active moves (Ctrl-C, cancel())
        self._stop = threading.Event()  # start no further request
        self._abort_now = threading.Event()  # a second Ctrl-C: abort at once
        self._deadline_passed = False
        self._why_stop = ""  # interrupt, cancel, deadline or fatal
        self._retired = 0  # workers that stopped for want of an association, this round
        self._live: set[int] = set()  # workers running now
        self._worker_exit = threading.Event()  # a worker ended
        self._states: list[_RequestState] = []
        self._journal: Journal | None = None
        self._route_lock = threading.Lock()
        self._active: dict[int, _RequestState] = {}
        self._unrequested: list[_Arrival] = []
        self._store: InstanceStore | None = None
        self._started: list[_RequestState] = []
        self._finished_total = 0
        self._routes: dict[int, _RequestState | None] = {}
        self._fatal: DicomMoveError | None = None
        self._stats = MoveStats()

    # -- lifecycle ---------------------------------------------------------
    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the associations. The session cannot be used afterwards."""
        self._closed = True
        with self._assoc_lock:
            assocs = list(self._assocs.values())
            self._assocs.clear()
        for assoc in assocs:
            assoc.release()

    @property
    def local_destination(self) -> bool:
        """Whether the move destination is our own embedded Store SCP."""
        return self.move_destination == self.ae_title

    def _default_bind(self) -> str:
        try:
            infos = socket.getaddrinfo(self.pacs.host, None)
        except OSError:
            return ""
        addresses = [str(info[4][0]) for info in infos]
        loopback = all(a.startswith("127.") or a == "::1" for a in addresses)
        return "127.0.0.1" if loopback and infos else ""

    def _next_message_id(self) -> int:
        with self._ids_lock:
            return (next(self._ids) - 1) % 0xFFFF + 1

    # -- associations ------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise DicomMoveError("this session is closed: open a new Session")

    def _associate(self, worker: int = 0) -> Requestor:
        """Return worker ``worker``'s established association, opening one if needed."""
        self._check_open()
        with self._assoc_lock:
            assoc = self._assocs.get(worker)
        if assoc is not None and assoc.established:
            return assoc
        pacs = self.pacs
        logger.debug("requesting association %s -> %s (worker %d)", self.ae_title, pacs, worker)
        try:
            assoc = Requestor.connect(
                pacs.host,
                pacs.port,
                calling_ae=self.ae_title,
                called_ae=pacs.ae_title,
                abstract_syntaxes=[VERIFICATION, *_MOVE_MODELS.values(), *_FIND_MODELS.values()],
                max_pdu=self.max_pdu,
                connect_timeout=self.connect_timeout,
                acse_timeout=self.acse_timeout,
                timeout=self.dimse_timeout,
                implementation_class_uid=IMPLEMENTATION_CLASS_UID,
                implementation_version_name=IMPLEMENTATION_VERSION_NAME,
            )
        except Rejected as rj:
            raise self._rejected(rj) from None
        except Aborted as exc:
            raise AssociationAborted(
                f"{pacs} accepted the TCP connection but did not establish an association "
                f"({exc}). Check that {pacs.host}:{pacs.port} is a DICOM port and that the "
                f"PACS accepts calling AE {self.ae_title!r}."
            ) from None
        except OSError as exc:
            why = f"[Errno {exc.errno}] {exc.strerror}" if exc.errno else str(exc) or "timed out"
            raise ConnectError(
                f"cannot connect to {pacs.host}:{pacs.port}: {why}. Check the address, "
                "that the PACS is running, and that no firewall blocks the port."
            ) from exc
        with self._assoc_lock:
            self._assocs[worker] = assoc
        return assoc

    def _rejected(self, rj: Rejected) -> AssociationRejected:
        pacs = self.pacs
        result, source, reason = rj.result, rj.source, rj.reason
        hint = "check the PACS configuration"
        if source == 1 and reason == 3:
            hint = f"register our calling AE title {self.ae_title!r} on the PACS"
        elif source == 1 and reason == 7:
            hint = (
                f"the called AE title {pacs.ae_title!r} is wrong: "
                "use the PACS's own AE title in AE@host:port"
            )
        elif result == 2:
            hint = "the PACS is busy (transient): try again later or with fewer workers"
        kind = "permanent" if result == 1 else "transient"
        why = _REJECT_REASONS.get((source, reason), f"source {source}, reason {reason}")
        return AssociationRejected(
            f"{pacs} rejected the association ({kind}: {why}): {hint}",
            result=result,
            source=source,
            reason=reason,
        )

    def _context(self, assoc: Requestor, sop_class: str) -> tuple[int, str]:
        found = assoc.contexts.get(sop_class)
        if found is None:
            raise AssociationAborted(
                f"{self.pacs} does not support {_SOP_NAMES.get(sop_class, sop_class)}: "
                "check the model (-S/-P) and the PACS's services"
            )
        return found

    def echo(self) -> None:
        """Send a C-ECHO to the PACS.

        Raises
        ------
        NetworkError
            If no association could be made or the C-ECHO got no success reply.
        """
        assoc = self._associate()
        cx_id, _ = self._context(assoc, VERIFICATION)
        message_id = self._next_message_id()
        try:
            assoc.send(cx_id, _ul.encode_request(_ul.C_ECHO_RQ, message_id, sop_class=VERIFICATION))
            code = assoc.receive().status
        except Aborted as exc:
            self._drop_association()
            raise AssociationAborted(f"C-ECHO to {self.pacs} failed: {exc}") from None
        if code != SUCCESS:
            self._drop_association()
            raise AssociationAborted(f"C-ECHO to {self.pacs} failed: {describe_status(code)}")

    def _drop_association(self, worker: int = 0) -> None:
        with self._assoc_lock:
            assoc = self._assocs.pop(worker, None)
        if assoc is not None:
            assoc.abort()

    def _drop_all(self) -> None:
        with self._assoc_lock:
            workers = list(self._assocs)
        for worker in workers:
            self._drop_association(worker)

    def _store_address(self) -> str:
        host = self.bind
        if not host:
            with self._assoc_lock:
                assocs = list(self._assocs.values())
            host = next((a.local_address for a in assocs if a.local_address), "")
        return f"{host or '<this machine>'}:{self.port}"

    # -- moving ------------------------------------------------------------
    def move(
        self,
        what: Any,
        *,
        strict: bool = True,
        progress: Progress = "auto",
        errors: Literal["raise", "ignore"] = "raise",
        resume: bool = False,
        batch: int = 1,
    ) -> pd.DataFrame:
        """Move the instances that ``what`` identifies, and return the manifest.

        The requests run on ``workers`` parallel associations. Ctrl-C (or
        "interrupt kernel") sends a C-CANCEL to every active move, waits up to
        ``cancel_grace`` s for the PACS to confirm, releases, and raises
        :class:`MoveInterrupted` with the partial manifest; a second Ctrl-C
        aborts at once. :meth:`cancel` (from another thread) does the same and
        raises :class:`MoveCancelled`.

        Parameters
        ----------
        what : Query, str, list, dict, DataFrame or Series
            What to move; see :func:`dicommove.query.to_requests`.
        strict : bool
            Refuse identifiers that are not valid C-MOVE identifiers (default).
            ``False`` sends them as given, with a :class:`QueryWarning`.
        progress : {"auto", "tqdm", "widget"} or bool
            How to show progress; ``False`` shows nothing.
        errors : {"raise", "ignore"}
            ``"raise"`` (default): raise :class:`MoveIncomplete`, carrying the
            manifest, if any request fell short. ``"ignore"``: return the
            manifest anyway; its ``status`` column tells.
        resume : bool
            Skip the requests that an earlier run into the same ``out``
            completed, as its journal (``out/.dicommove/journal.jsonl``) says,
            once their files are checked to exist with their recorded sizes;
            their rows are taken from the journal. Everything else is asked for
            again. Needs our own store SCP (no ``move_destination``).
        batch : int
            Group up to ``batch`` input rows of the same parent (studies, series
            of one study, instances of one series) into one C-MOVE listing their
            UIDs (default 1: one C-MOVE per row). Identical rows are always
            folded into one C-MOVE; each gets a ``duplicate`` row pointing at
            the first. Every manifest row's ``request`` is the input row that
            asked for its UID.

        Returns
        -------
        pandas.DataFrame
            The manifest (see :mod:`dicommove.manifest`).

        Raises
        ------
        InputError
            Bad input; nothing was sent.
        LocalSetupError
            The output directory or store port is unusable; nothing was sent.
        NetworkError, MoveDestinationUnknown
            The PACS could not be reached or refused the destination.
            ``.manifest`` holds every request, with what arrived.
        MoveIncomplete
            With ``errors="raise"``, when any request fell short.
        MoveCancelled, MoveInterrupted, MoveTimeout
            The move was cancelled, interrupted, or ran past ``deadline``.
        """
        if errors not in ("raise", "ignore"):
            raise InputError(f"errors={errors!r}: use 'raise' or 'ignore'")
        planned = plan(to_requests(what, model=self.model, strict=strict), batch=batch)
        return self._run_move(planned, progress=progress, errors=errors, resume=resume)

    def _run_move(
        self,
        requests: list[Planned],
        *,
        progress: Progress,
        errors: Literal["raise", "ignore"],
        resume: bool,
        stats: MoveStats | None = None,
        reporter: Reporter | None = None,
    ) -> pd.DataFrame:
        self._check_open()  # refuses a closed session before any work
        if resume and not self.local_destination:
            raise InputError(
                "resume=True needs our own store SCP, whose journal says what arrived; "
                f"with move_destination={self.move_destination!r} nothing is written here"
            )
        if not self._running.acquire(blocking=False):
            raise DicomMoveError(
                "this session is already running a move: wait for it or cancel it, "
                "or open another Session"
            )
        try:
            stats = stats or MoveStats(len(requests))
            if reporter is None:
                reporter = make_reporter(progress, stats, desc=f"C-MOVE from {self.pacs.ae_title}")
            return self._move(
                requests, stats=stats, reporter=reporter, errors=errors, resume=resume
            )
        finally:
            self._running.release()

    def start(
        self,
        what: Any,
        *,
        strict: bool = True,
        progress: Progress = "auto",
        errors: Literal["raise", "ignore"] = "raise",
        resume: bool = False,
        batch: int = 1,
    ) -> MoveJob:
        """Start :meth:`move` in the background and return its :class:`MoveJob` at once.

        In a notebook this keeps the kernel free while the move runs, so that
        ``job.cancel()`` (or the progress panel's Cancel button) can stop it.
        """
        if errors not in ("raise", "ignore"):
            raise InputError(f"errors={errors!r}: use 'raise' or 'ignore'")
        requests = plan(to_requests(what, model=self.model, strict=strict), batch=batch)
        self._check_open()
        # Made here, in the caller's thread: a notebook panel shows in the caller's cell,
        # and its Cancel button works because the kernel stays free.
        stats = MoveStats(len(requests))
        reporter = make_reporter(
            progress, stats, desc=f"C-MOVE from {self.pacs.ae_title}", on_cancel=self.cancel
        )
        return MoveJob(
            self,
            requests,
            stats=stats,
            reporter=reporter,
            errors=errors,
            resume=resume,
            close_session=False,
        )

    def cancel(self) -> None:
        """Cancel the running move (from any thread): C-CANCEL, grace period, release.

        The move then raises :class:`MoveCancelled` with the partial manifest.
        Nothing happens when no move is running.
        """
        if self._running.locked():
            logger.warning("cancelling the move from %s", self.pacs)
            self._request_stop("cancel")

    def _request_stop(self, why: str) -> None:
        """Start no further request and cancel the active ones; the first reason wins."""
        with self._route_lock:
            if not self._why_stop:
                self._why_stop = why
        self._stop.set()
        self._cancel.set()

    def _move(
        self,
        requests: list[Planned],
        *,
        stats: MoveStats,
        reporter: Reporter,
        errors: Literal["raise", "ignore"],
        resume: bool,
    ) -> pd.DataFrame:
        states = [
            _RequestState(
                p.request,
                0,
                key=request_key(p.request.query),
                query=p.request.query,
                sources=p.sources,
                duplicates=p.duplicates,
            )
            for p in requests
        ]
        journal = Journal(self.out) if self.local_destination else None
        if resume and journal is not None:
            earlier = journal.load()
            for state in states:
                entry = earlier.get(state.key)
                if entry is not None and entry.complete and entry.on_disk(journal.root):
                    state.resumed = entry
                    state.finished = True
                elif entry is not None:  # partly here: only the rest will be asked for
                    state.received.extend(_on_disk(entry, journal.root))
            skipped = sum(state.resumed is not None for state in states)
            logger.info(
                "resume: %d of %d requests are complete on disk and skipped",
                skipped,
                len(states),
            )
        self._stats = stats
        with self._route_lock:
            self._states = states
            self._unrequested = []
            self._started = []
            self._active = {}
            self._routes = {}
            self._finished_total = 0
            self._fatal = None
            self._why_stop = ""
        self._cancel.clear()
        self._stop.clear()
        self._abort_now.clear()
        self._deadline_passed = False
        todo = deque(state for state in states if state.resumed is None)
        failure: DicomMoveError | None = None
        interrupted = False
        scp: StoreSCP | None = None
        try:
            if todo:
                scp = self._start_store() if self.local_destination else None
                if journal is not None:
                    journal.open()
                    self._journal = journal
                for state in states:
                    if state.resumed is not None:
                        stats.request_finished(id(state), ok=True)
                reporter.start()
                interrupted = self._run_workers(todo)
            if self._fatal is not None:
                raise self._fatal
        except DicomMoveError as exc:
            failure = exc
        except BaseException:  # a bug of ours, or Ctrl-C outside the workers' wait
            stats.finish(complete=False, cancelled=True)
            reporter.stop()
            raise
        finally:
            if scp is not None:
                scp.stop()
            self._journal = None
            if journal is not None:
                journal.close()
        df = self._manifest(states, failure)
        problems = df["status"].isin(sorted(PROBLEM_STATUSES))
        stats.finish(
            complete=not problems.any() and failure is None and not self._why_stop,
            cancelled=interrupted or self._why_stop in ("interrupt", "cancel"),
        )
        reporter.stop()
        if failure is not None:
            failure.manifest = df
            raise failure
        stopped = self._why_stop
        if interrupted or stopped in ("interrupt", "cancel"):
            unfinished = int(df["status"].isin(["cancelled", "timeout"]).sum())
            message = (
                f"the move from {self.pacs} was cancelled; {unfinished} rows read 'cancelled' "
                "or 'timeout' (what arrived is kept). Run it again with resume=True "
                "(--resume) to fetch the rest."
            )
            kind = MoveInterrupted if interrupted else MoveCancelled
            raise kind(message, status=CANCEL, manifest=df)
        if self._deadline_passed:
            raise MoveTimeout(
                f"the move from {self.pacs} ran past its deadline of {self.deadline:g} s and "
                "was cancelled; what arrived is kept. Run it again with resume=True (and a "
                "longer deadline) to fetch the rest.",
                manifest=df,
            )
        if problems.any():
            bad = df.loc[problems, "status"].value_counts()
            summary = ", ".join(f"{n} {s}" for s, n in bad.items() if n)
            worst = next((s.final_status for s in states if _is_failure(s.final_status)), None)
            message = (
                f"the move from {self.pacs} fell short: {summary}. The manifest's "
                "'status' and 'reason' columns say which and why"
            )
            if errors == "raise":
                raise MoveIncomplete(
                    message + " (read exc.manifest, or pass errors='ignore').",
                    status=worst,
                    manifest=df,
                )
            logger.warning("%s.", message)
        return df

    def _run_workers(self, todo: deque[_RequestState]) -> bool:
        """Run the requests on the workers; return whether Ctrl-C interrupted them.

        A worker that cannot get an association while others have one hands its
        request back and stops; requests handed back after the last worker ended
        run in another round, with as many workers as had an association.
        """
        deadline = None if self.deadline is None else time.monotonic() + self.deadline
        workers = self.workers
        threads: list[threading.Thread] = []
        try:
            while todo and not self._stop.is_set():
                self._retired = 0
                with self._assoc_lock:  # workers that have an association go first
                    connected = [w for w, a in sorted(self._assocs.items()) if a.established]
                spare = [w for w in range(self.workers) if w not in connected]
                chosen = (connected + spare)[: min(workers, len(todo))]
                with self._route_lock:
                    self._live = set(chosen)
                threads = [
                    threading.Thread(
                        target=self._worker,
                        args=(i, todo),
                        name=f"dicommove-move-{i}",
                        daemon=True,
                    )
                    for i in chosen
                ]
                for thread in threads:
                    thread.start()
                self._join(threads, deadline)
                workers = max(1, len(threads) - self._retired)
            return False
        except KeyboardInterrupt:
            logger.warning(
                "interrupted: cancelling the active C-MOVEs (press Ctrl-C again to abort at once)"
            )
            self._request_stop("interrupt")
            try:
                self._join(threads, None)
            except KeyboardInterrupt:
                logger.warning("interrupted again: aborting the associations")
                self._abort_now.set()
                self._drop_all()
                for thread in threads:
                    thread.join()
            return True

    def _join(self, threads: list[threading.Thread], deadline: float | None) -> None:
        """Wait for the workers in short slices (Ctrl-C is seen at once); watch the deadline.

        Waits on the workers' own record of who is running, not ``Thread.join``: on
        Python 3.11 a join interrupted by Ctrl-C can mark a thread stopped while it
        still runs (it may be in its C-CANCEL grace period).
        """
        while True:
            with self._route_lock:
                if not self._live:
                    break
            self._worker_exit.wait(_POLL)
            self._worker_exit.clear()
            late = deadline is not None and time.monotonic() > deadline
            if late and not self._deadline_passed:
                self._deadline_passed = True
                logger.warning("the move's deadline of %g s passed: cancelling", self.deadline)
                self._request_stop("deadline")
        for thread in threads:
            thread.join()  # past their last step already

    def _worker(self, worker: int, todo: deque[_RequestState]) -> None:
        """Take requests off the shared queue until it is empty or the move stops."""
        try:
            self._work(worker, todo)
        finally:
            self._stats.worker(worker, "done")
            with self._route_lock:
                self._live.discard(worker)
            self._worker_exit.set()

    def _work(self, worker: int, todo: deque[_RequestState]) -> None:
        while not self._stop.is_set():
            try:
                state = todo.popleft()
            except IndexError:
                break
            try:
                self._run_with_retries(state, worker)
            except _Retire as retire:
                # The PACS takes fewer associations than we have workers: this worker
                # stops and hands its request back; the connected ones carry on.
                logger.warning(
                    "worker %d stops (%s); the other workers carry on", worker, retire.__cause__
                )
                if state.started_at == 0.0:
                    state.attempts = 0
                with self._route_lock:
                    self._retired += 1
                todo.appendleft(state)
                return  # (not finished: another worker, or the next round, runs it)
            except DicomMoveError as exc:
                with self._route_lock:
                    if self._fatal is None:
                        self._fatal = exc
                self._request_stop("fatal")
            except Exception as exc:  # a bug of ours: stop the move, keep what arrived
                logger.exception("worker %d failed on %s", worker, state.request.query)
                with self._route_lock:
                    if self._fatal is None:
                        self._fatal = DicomMoveError(
                            f"internal error while moving {state.request.query}: {exc!r}. "
                            "What arrived is kept; please report this."
                        )
                self._request_stop("fatal")
            self._finish(state)

    def _run_with_retries(self, state: _RequestState, worker: int) -> None:
        """Run one request; try again after transient failures, with exponential backoff.

        Whenever some of its instances are already here (from an earlier attempt,
        from before a split, or on disk from an earlier run), only the rest is
        asked for: see :meth:`_remaining_parts`.
        """
        delay = self.retry_backoff
        while True:
            state.attempts += 1
            error: DicomMoveError | None = None
            try:
                try:
                    self._associate(worker)
                except AssociationAborted as exc:  # reset or closed during set-up: transient
                    raise _SetupAborted(str(exc)) from exc
                parts = self._remaining_parts(state, worker) if state.received else None
                if parts is not None:
                    transient = self._run_parts(state, worker, parts)
                else:
                    transient = self._attempt(state, worker)
                    if transient == _SPLIT:
                        logger.warning(
                            "%s: the PACS announced %d or more sub-operations, more than a "
                            "C-MOVE response can count; moving it series by series (C-FIND)",
                            state.request.query,
                            _MAX_SUBOPERATIONS,
                        )
                        state.split = False
                        parts = self._remaining_parts(state, worker, whole=True)
                        transient = self._run_parts(state, worker, parts)
            except (ConnectError, _SetupAborted) as exc:
                if self._others_connected(worker):
                    raise _Retire from exc
                cause = exc.__cause__ if isinstance(exc, _SetupAborted) else exc
                assert isinstance(cause, DicomMoveError)
                transient, error = str(exc), cause
            except AssociationRejected as exc:
                if exc.result != 2:  # permanent: a configuration error, no retry
                    raise
                if self._others_connected(worker) or self._lower_worker_live(worker):
                    raise _Retire from exc  # let one worker find out what the PACS allows
                transient, error = str(exc), exc
            if not transient or self._stop.is_set():
                return
            if state.attempts > self.retries:
                if error is not None:
                    raise error  # the PACS cannot be reached at all: stop the move
                return  # the rows say what failed
            wait = delay * random.uniform(0.5, 1.5)  # jitter: workers do not retry in step
            logger.warning(
                "%s: %s; retry %d of %d in %.2g s",
                state.request.query,
                transient,
                state.attempts,
                self.retries,
                wait,
            )
            self._stats.worker(worker, f"retry in {wait:.1f}s")
            if self._cancel.wait(wait):
                return
            delay *= 2

    def _remaining_parts(
        self, state: _RequestState, worker: int, *, whole: bool = False
    ) -> list[Query] | None:
        """Return the C-MOVEs that ask only for what has not arrived; ``None``: ask again whole.

        IMAGE requests list their instances: the missing ones are asked for. For
        PATIENT, STUDY and SERIES requests the series are listed (C-FIND); a
        series of which nothing arrived is asked for whole, a series of which
        some instances arrived has its instances listed (C-FIND) and only the
        missing ones are asked for. ``whole=True`` (a request too big to count)
        always splits it into series. Without C-FIND, ``None``.
        """
        query = state.request.query
        level = query.level
        model = query.information_model
        arrived: dict[str, set[str]] = {}
        for arrival in state.received:
            if arrival.status in _ARRIVED:
                arrived.setdefault(arrival.series_instance_uid, set()).add(arrival.sop_instance_uid)
        done = {sop for sops in arrived.values() for sop in sops}
        if level == "IMAGE":
            wanted = [u for u in query.retrieve_uids() if u not in done]
            return [query.where(SOPInstanceUID=wanted)] if wanted else []
        if level == "SERIES":
            study = _value_list(query.get("StudyInstanceUID"))
            if len(study) != 1:
                return None
            keys: list[tuple[int, Any]] = [(_QR_LEVEL, "SERIES"), (_STUDY_UID, study[0])]
            if model == "patient":
                keys.append((_PATIENT_ID, query.get("PatientID")))
            series = [Query((*keys, (_SERIES_UID, uid)), model) for uid in query.retrieve_uids()]
        elif level in ("PATIENT", "STUDY"):
            if not done and not whole:
                return None  # nothing here yet: the request itself is the best ask
            found = self._series_of(query, worker)
            if found is None:
                return None
            series = found
        else:
            return None
        parts: list[Query] = []
        for part in series:
            got = arrived.get(str(part.get("SeriesInstanceUID")), set())
            if not got:
                parts.append(part)
                continue
            images = part.set(_QR_LEVEL, "IMAGE").set(_SOP_UID, "")
            found_images = self._find(images, worker)
            if found_images is None:
                parts.append(part)  # ask for the series again: copies are counted once
                continue
            expected = {str(ds.get("SOPInstanceUID", "")) for ds in found_images}
            missing = sorted(expected - got - {""})
            if missing:
                parts.append(images.set(_SOP_UID, missing if len(missing) > 1 else missing[0]))
        logger.info(
            "%s: %d instances already here; asking for the rest in %d C-MOVE(s)",
            query,
            len(done),
            len(parts),
        )
        return parts

    def _run_parts(self, state: _RequestState, worker: int, parts: list[Query] | None) -> str:
        """Run the C-MOVEs of :meth:`_remaining_parts` as one request; return why to retry."""
        query = state.request.query
        state.aborted, state.final_status = "", None
        if parts is None:
            state.aborted = (
                "the PACS announced 65,535 or more sub-operations, and its series could not "
                "be listed (C-FIND) to move them one by one"
            )
            return ""
        counts = [0, 0, 0]
        failed_uids: list[str] = []
        worst = SUCCESS
        transient = ""
        for part in parts:
            if self._stop.is_set():
                break
            state.query = part
            transient = self._attempt(state, worker, allow_split=False)
            counts = [
                counts[0] + state.completed,
                counts[1] + state.failed,
                counts[2] + state.warning,
            ]
            failed_uids += state.failed_uids
            code = state.final_status
            if transient or state.aborted or state.cancelled or state.timed_out:
                break
            if code != SUCCESS and worst in (SUCCESS, WARNING) and code is not None:
                worst = code
        state.query = query
        state.completed, state.failed, state.warning = counts
        state.remaining = 0
        state.failed_uids = failed_uids
        if not (state.aborted or state.cancelled or state.timed_out):
            state.final_status = worst
        return transient

    def _lower_worker_live(self, worker: int) -> bool:
        with self._route_lock:
            return any(w < worker for w in self._live)

    def _others_connected(self, worker: int) -> bool:
        """Whether another running worker holds an association (and can take our request)."""
        with self._route_lock:
            live = set(self._live)
        with self._assoc_lock:
            return any(a.established for w, a in self._assocs.items() if w != worker and w in live)

    def _attempt(self, state: _RequestState, worker: int, *, allow_split: bool = True) -> str:
        """Send one C-MOVE and record its responses; return why to retry, or ``""``.

        Returns :data:`_SPLIT` when the PACS announced more sub-operations than it
        can count (65,535) for a PATIENT or STUDY request: it was cancelled, to be
        moved series by series.
        """
        assoc = self._associate(worker)
        query = state.query or state.request.query
        sop_class = _MOVE_MODELS[query.information_model]
        cx_id, syntax = self._context(assoc, sop_class)
        identifier = _encode_identifier(query.to_dataset(), syntax)
        message_id = self._next_message_id()
        now = time.monotonic()
        with self._route_lock:
            state.message_id, state.worker, state.last_activity = message_id, worker, now
            state.final_status, state.aborted, state.error_comment = None, "", ""
            state.completed = state.failed = state.warning = 0
            state.remaining, state.failed_uids = None, []
            if state.attempts == 1:
                state.started_at = now
                self._started.append(state)
            self._active[message_id] = state
        label = _label(query)
        self._stats.request_started(id(state), label)
        self._stats.worker(worker, "moving")
        logger.info("C-MOVE %s (message %d) -> %s", query, message_id, self.move_destination)
        command = _ul.encode_request(
            _ul.C_MOVE_RQ,
            message_id,
            sop_class=sop_class,
            has_dataset=True,
            move_destination=self.move_destination,
        )
        cancel_sent: float | None = None
        try:
            assoc.send(cx_id, command, identifier)
            while True:
                if self._abort_now.is_set():
                    state.cancelled = True
                    state.aborted = "aborted at once (a second Ctrl-C)"
                    self._drop_association(worker)
                    break
                now = time.monotonic()
                if cancel_sent is None:
                    if state.split or self._should_cancel(state, now):
                        self._stats.worker(worker, "cancelling")
                        logger.warning("sending C-CANCEL for message %d", message_id)
                        cancel = _ul.encode_request(_ul.C_CANCEL_RQ, 0, responding_to=message_id)
                        assoc.send(cx_id, cancel)
                        cancel_sent = now
                elif now - cancel_sent > self.cancel_grace:
                    state.aborted = (
                        f"the PACS did not confirm the C-CANCEL within {self.cancel_grace:g} s: "
                        "association aborted"
                    )
                    self._drop_association(worker)
                    break
                if not assoc.wait(_POLL):
                    continue
                rsp = assoc.receive()
                state.last_activity = time.monotonic()
                code = rsp.status
                if code is None:
                    raise Aborted("a response without a status")
                state.completed = rsp.us(0x1021) or 0
                state.failed = rsp.us(0x1022) or 0
                state.warning = rsp.us(0x1023) or 0
                state.remaining = rsp.us(0x1020)
                if code in PENDING:
                    self._update_total()
                    done = state.completed + state.failed + state.warning
                    self._stats.request_progress(id(state), f"{label}  {done}/{state.expected}")
                    if (
                        allow_split
                        and state.expected >= _MAX_SUBOPERATIONS
                        and query.level in ("PATIENT", "STUDY")
                    ):
                        state.split = True  # the loop sends the C-CANCEL
                    continue
                state.final_status = code
                state.error_comment = rsp.text(0x0902)
                if rsp.dataset:
                    failed = _decode_identifier(rsp.dataset, syntax).get("FailedSOPInstanceUIDList")
                    state.failed_uids = [u for u in _value_list(failed) if u]
                break
        except Aborted as exc:
            state.aborted = f"the association was aborted or the PACS stopped answering ({exc})"
            self._drop_association(worker)
        finally:
            with self._route_lock:
                self._active.pop(message_id, None)
        if state.split and not (state.cancelled or state.timed_out):
            return _SPLIT
        if state.cancelled or state.timed_out:
            return ""  # we stopped it ourselves: no retry
        self._check_destination(state, worker)
        if state.aborted and not state.matched_nothing:
            return state.aborted
        if state.final_status == OUT_OF_RESOURCES_SUBOPS:
            return describe_status(state.final_status)
        return ""

    def _should_cancel(self, state: _RequestState, now: float) -> bool:
        """Whether to C-CANCEL this move now; records why on the state."""
        if self._cancel.is_set():
            if self._why_stop == "deadline":
                state.timed_out = f"the move's deadline of {self.deadline:g} s passed"
            else:
                state.cancelled = True
            return True
        if now - state.last_activity > self.inactivity_timeout:
            state.timed_out = (
                f"no response and no instance from the PACS for {self.inactivity_timeout:g} s "
                "(inactivity_timeout)"
            )
            return True
        if self.request_timeout is not None and now - state.started_at > self.request_timeout:
            state.timed_out = (
                f"the request took longer than request_timeout={self.request_timeout:g} s"
            )
            return True
        return False

    def _finish(self, state: _RequestState) -> None:
        """Account for a request that will not run again (progress total, journal)."""
        with self._route_lock:
            state.finished = True
            if state.attempts:
                self._finished_total += max(state.expected, len(state.received))
        self._update_total()
        if not state.attempts:
            return  # never sent (cancelled first): its row says so in the manifest
        rows = list(self._rows(state, None))
        complete = bool(rows) and all(r["status"] in _ARRIVED for r in rows)
        self._stats.missing(sum(r["status"] == "missing" for r in rows))
        self._stats.request_finished(id(state), ok=complete)
        journal = self._journal
        if journal is not None:
            journal.request(state.key, complete=complete, instances=len(rows))

    def manifest(self) -> pd.DataFrame:
        """Return the manifest so far of the running (or the last) move.

        Requests that have not finished yet have a request row with status
        ``pending`` besides the instances that already arrived.
        """
        with self._route_lock:
            states = list(self._states)
            unrequested = list(self._unrequested)
        rows: list[dict[str, Any]] = []
        for state in states:
            if state.resumed is not None or state.finished:
                rows.extend(self._state_rows(state, None))
                continue
            for arrival in list(state.received):
                row = self._instance_row(state.request.index, arrival, None)
                rows.append(self._labelled(state, row))
            rows.append(
                {
                    **self._request_base(state),
                    "status": "pending",
                    "reason": "running" if state.attempts else "waiting for a worker",
                }
            )
        rows.extend(self._instance_row(None, arrival, None) for arrival in unrequested)
        return build(rows)

    def _start_store(self) -> StoreSCP:
        store = InstanceStore(self.out, layout=self.layout, durability='instance' if self.fsync else 'request')
        store.prepare()
        store.begin()
        self._store = store
        allowed: frozenset[str] | None = None
        if self.pacs.ae_title != DEFAULT_CALLED_AE:
            allowed = frozenset({self.pacs.ae_title}) | self.allowed_aes
        else:
            logger.info("the PACS address names no AE title: the store SCP accepts any calling AE")
        scp = StoreSCP(
            store,
            ae_title=self.ae_title,
            host=self.bind,
            port=self.port,
            on_instance=self._on_instance,
            accept=self._accept,
            allowed_calling_aes=allowed,
            allowed_hosts=self.allowed_hosts,
            max_pdu=self.max_pdu,
            network_timeout=self.network_timeout,
            acse_timeout=self.acse_timeout,
            accept_unknown_sop_classes=self.accept_unknown_sop_classes,
        )
        scp.start()
        if self.port == 0:
            self.port = scp.port
        return scp

    def _route(self, rec: Received) -> _RequestState | None:
        """Return the request a received instance belongs to, or None (hold the lock).

        By MoveOriginatorMessageID when the PACS sends it for our AE title, else
        by the unique keys of the active requests; either way the keys must match.
        """
        state = None
        if rec.originator_message_id is not None and (
            not rec.originator_ae or rec.originator_ae == self.ae_title
        ):
            state = self._active.get(rec.originator_message_id)
        if state is None:
            candidates = [s for s in self._active.values() if _matches(s.request.query, rec)]
            state = candidates[0] if len(candidates) == 1 else None
        if state is not None and rec.study_instance_uid and not _matches(state.request.query, rec):
            state = None
        return state

    def _accept(self, rec: Received) -> bool:
        """Decide, before the file gets its final name, whether to keep an instance."""
        with self._route_lock:
            state = self._route(rec)
            self._routes[id(rec)] = state
        if state is None and self.unrequested == "refuse":
            rec.reason = "matches no request of this move (unrequested='refuse')"
            return False
        return True

    def _on_instance(self, rec: Received) -> None:
        """Record one C-STORE outcome against its request (store threads)."""
        with self._route_lock:
            # (no route yet: refused or failed before its header was known)
            state = self._routes.pop(id(rec)) if id(rec) in self._routes else self._route(rec)
            if state is None:
                if rec.status == "received":
                    rec.status = "unrequested"
                    rec.reason = "arrived during the move but matches no request"
                self._unrequested.append(_Arrival.of(rec))
            else:
                state.received.append(_Arrival.of(rec))
                state.last_activity = time.monotonic()
        journal = self._journal
        if state is not None and journal is not None and rec.status in _ARRIVED and rec.path:
            journal.instance(
                state.key,
                {
                    "sop": rec.sop_instance_uid,
                    "path": rec.path,
                    "size": rec.size,
                    "sop_class": rec.sop_class_uid,
                    "ts": rec.transfer_syntax_uid,
                    "study": rec.study_instance_uid,
                    "series": rec.series_instance_uid,
                    "patient": rec.patient_id,
                    "at": rec.received_at,
                },
            )
        if rec.status in ("received", "unrequested"):
            self._stats.instance(rec.size)
        elif rec.status in ("failed", "refused", "conflict"):
            self._stats.instance(0, ok=False)
        if rec.status == "failed" and rec.errno in (errno.ENOSPC, errno.EDQUOT):
            self._disk_full(rec)

    def _disk_full(self, rec: Received) -> None:
        """Cancel the active moves: nothing more can be written (store threads)."""
        with self._route_lock:
            if self._fatal is not None:
                return
            self._fatal = DiskFullError(
                f"the disk holding {self.out.absolute()} is full ({rec.reason}); the move was "
                "cancelled. Free some space or choose another output directory, then run "
                "the same move again with resume=True: what arrived is kept."
            )
        self._request_stop("fatal")

    def _update_total(self) -> None:
        # Instances announced by the requests sent so far (or arrived, if more): the
        # finished ones are summed once, in _finish, so a long cohort stays linear.
        with self._route_lock:
            active = sum(max(s.expected, len(s.received)) for s in self._active.values())
            total = self._finished_total + active
        self._stats.set_total(total)

    def _check_destination(self, state: _RequestState, worker: int = 0) -> None:
        """Raise MoveDestinationUnknown when the PACS evidently cannot use our destination.

        A request that fails (abort or 0xCxxx) before counting any sub-operation is
        checked with a C-FIND: Orthanc answers both "nothing matches" and "unknown
        destination" with 0xC000 (1.10), or an A-ABORT, never 0xA801. No match makes
        the request ``not_found``; matches, while no instance has arrived in this
        move, mean the destination is the problem.
        """
        code = state.final_status
        if code == DESTINATION_UNKNOWN:
            why = "it answered 0xA801, move destination unknown"
        elif state.expected == 0 and (code is None or 0xC000 <= code <= 0xCFFF):
            # Failed before counting anything: did the keys match at all?
            matches = self._count_matches(state.query or state.request.query, worker)
            if matches == 0:
                state.matched_nothing = True
                return
            with self._route_lock:
                started = list(self._started)
            delivered = any(s.received or s.completed for s in started if s is not state)
            if matches is None or delivered:
                return
            why = (
                f"it answered {describe_status(code)} before sending any of the {matches} "
                "matching items (C-FIND), which is how some PACS (Orthanc among them) "
                "report an unknown move destination"
            )
        else:
            return
        comment = f" ({state.error_comment})" if state.error_comment else ""
        where = (
            f"at {self._store_address()}"
            if self.local_destination
            else "with the host and port it listens on"
        )
        raise MoveDestinationUnknown(
            f"{self.pacs} cannot send to the move destination {self.move_destination!r}: "
            f"{why}{comment}. Register AE {self.move_destination} {where} on the PACS "
            "(Orthanc: DicomModalities; DCMTK dcmqrscp: HostTable), and check that it is "
            "reachable from the PACS.",
            status=code,
            error_comment=state.error_comment,
        )

    def _count_matches(self, query: Query, worker: int = 0) -> int | None:
        """Count C-FIND matches for a query's keys; ``None`` if C-FIND is not possible."""
        found = self._find(query, worker)
        return None if found is None else len(found)

    def _find(self, query: Query, worker: int = 0) -> list[Any] | None:
        """Run a C-FIND; return the matches (pydicom Datasets), ``None`` if it failed."""
        try:
            assoc = self._associate(worker)
        except DicomMoveError:
            return None
        sop_class = _FIND_MODELS[query.information_model]
        if sop_class not in assoc.contexts:
            return None
        cx_id, syntax = assoc.contexts[sop_class]
        command = _ul.encode_request(
            _ul.C_FIND_RQ, self._next_message_id(), sop_class=sop_class, has_dataset=True
        )
        matches: list[Any] = []
        try:
            assoc.send(cx_id, command, _encode_identifier(query.to_dataset(), syntax))
            while True:
                rsp = assoc.receive()
                if rsp.status in PENDING:
                    matches.append(_decode_identifier(rsp.dataset or b"", syntax))
                    continue
                if rsp.status != SUCCESS:
                    return None
                break
        except Aborted:
            self._drop_association(worker)
            return None
        logger.debug("C-FIND %s: %d matches", query, len(matches))
        return matches

    def _series_of(self, query: Query, worker: int) -> list[Query] | None:
        """List a PATIENT or STUDY request's series as series-level queries (C-FIND)."""
        model = query.information_model
        patients = _value_list(query.get("PatientID")) if model == "patient" else []
        patient = patients[0] if len(patients) == 1 else None
        if query.level == "PATIENT":
            studies: list[tuple[str | None, str]] = []
            for patient_id in query.retrieve_uids():
                found = self._find(
                    Query(
                        ((_QR_LEVEL, "STUDY"), (_PATIENT_ID, patient_id), (_STUDY_UID, "")),
                        model,
                    ),
                    worker,
                )
                if found is None:
                    return None
                studies += [(patient_id, str(ds.get("StudyInstanceUID", ""))) for ds in found]
        else:
            studies = [(patient, uid) for uid in query.retrieve_uids()]
        parts: list[Query] = []
        for pid, study in studies:
            keys: list[tuple[int, Any]] = [(_QR_LEVEL, "SERIES"), (_STUDY_UID, study)]
            if model == "patient":
                keys.append((_PATIENT_ID, pid))
            found = self._find(Query((*keys, (_SERIES_UID, "")), model), worker)
            if found is None:
                return None
            for ds in found:
                series = str(ds.get("SeriesInstanceUID", ""))
                if series:
                    parts.append(Query((*keys, (_SERIES_UID, series)), model))
        return parts

    # -- manifest ----------------------------------------------------------
    def _manifest(
        self, states: list[_RequestState], failure: DicomMoveError | None
    ) -> pd.DataFrame:
        rows: list[dict[str, Any]] = []
        for state in states:
            rows.extend(self._state_rows(state, failure))
        for arrival in self._unrequested:
            rows.append(self._instance_row(None, arrival, None))
        return build(rows)

    def _path_of(self, arrival: _Arrival) -> str | None:
        if arrival.path is not None:
            return arrival.path or None
        if self._store is None:
            return None
        uids = (arrival.study_instance_uid, arrival.series_instance_uid, arrival.sop_class_uid)
        return self._store.layout_path(arrival.sop_instance_uid, uids)

    def _instance_row(self, request: Any, rec: _Arrival, move_status: int | None) -> dict[str, Any]:
        path = self._path_of(rec)
        return {
            "request": request,
            "PatientID": rec.patient_id or None,
            "StudyInstanceUID": rec.study_instance_uid or None,
            "SeriesInstanceUID": rec.series_instance_uid or None,
            "SOPInstanceUID": rec.sop_instance_uid,
            "SOPClassUID": rec.sop_class_uid,
            "TransferSyntaxUID": rec.transfer_syntax_uid,
            "path": path,
            "size": rec.size if path else None,
            "status": rec.status,
            "reason": rec.reason or None,
            "received_at": rec.received_at,
            "move_status": move_status,
        }

    def _state_rows(
        self, state: _RequestState, failure: DicomMoveError | None
    ) -> Iterator[dict[str, Any]]:
        """Yield the rows of one request, each labelled with the input row it answers."""
        rows = self._rows(state, failure) if state.resumed is None else self._resumed_rows(state)
        for row in rows:
            yield self._labelled(state, row)
        base = self._request_base(state)
        level = state.request.query.level
        for label, first in state.duplicates:
            row = {
                **base,
                "request": label,
                "status": "duplicate",
                "reason": f"the same request as row {first!r}, moved once: see its rows",
            }
            uids = [uid for uid, owner in state.sources.items() if owner == first]
            if level is not None and len(uids) == 1:  # its own UID, not the whole batch's
                row[UNIQUE_KEYS[level]] = uids[0]
            yield row

    def _labelled(self, state: _RequestState, row: dict[str, Any]) -> dict[str, Any]:
        """Set a row's ``request`` to the input row that asked for its retrieve-level UID."""
        level = (state.query or state.request.query).level
        if len(state.sources) > 1 and level is not None:
            owner = state.sources.get(row.get(UNIQUE_KEYS[level]) or "")
            if owner is not None:
                row["request"] = owner
        return row

    def _resumed_rows(self, state: _RequestState) -> Iterator[dict[str, Any]]:
        assert state.resumed is not None
        root = self.out.absolute()
        for rec in state.resumed.instances.values():
            yield {
                "request": state.request.index,
                "PatientID": rec.get("patient") or None,
                "StudyInstanceUID": rec.get("study") or None,
                "SeriesInstanceUID": rec.get("series") or None,
                "SOPInstanceUID": rec["sop"],
                "SOPClassUID": rec.get("sop_class") or None,
                "TransferSyntaxUID": rec.get("ts") or None,
                "path": str(root / rec["path"]),
                "size": rec["size"],
                "status": "received",
                "reason": "on disk from an earlier run (resume=True): not asked for again",
                "received_at": rec.get("at"),
            }

    def _request_base(self, state: _RequestState) -> dict[str, Any]:
        query = state.request.query
        keys = {
            k: query.get(k)
            for k in ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
        }
        return {
            "request": state.request.index,
            **{k: "\\".join(_value_list(v)) or None for k, v in keys.items()},
            "move_status": state.final_status,
        }

    def _rows(
        self, state: _RequestState, failure: DicomMoveError | None
    ) -> Iterator[dict[str, Any]]:
        request, query = state.request, state.request.query
        base = self._request_base(state)
        counts = {"completed": state.completed, "failed": state.failed, "warning": state.warning}
        arrived = {r.sop_instance_uid for r in state.received if r.status != "failed"}
        shown: set[str] = set()
        for rec in state.received:
            if rec.status == "failed" and rec.sop_instance_uid in arrived:
                continue  # a failed attempt the PACS later repeated successfully
            if rec.status == "received":
                if rec.sop_instance_uid in shown:
                    continue  # on disk already, and sent again: one row
                shown.add(rec.sop_instance_uid)
            yield self._instance_row(request.index, rec, state.final_status)

        ran = state.final_status is not None or state.aborted
        if not ran:
            stopped = self._why_stop
            if state.timed_out:
                status, reason = "timeout", state.timed_out
            elif stopped == "deadline":
                status, reason = "timeout", "not attempted before the move's deadline"
            elif state.cancelled or stopped in ("interrupt", "cancel"):
                status, reason = "cancelled", "not attempted: the move was cancelled"
            else:
                fatal = failure or self._fatal
                status, reason = "failed", f"not attempted: {fatal}" if fatal else "not attempted"
            yield {**base, "status": status, "reason": reason}
            return
        code = state.final_status
        if state.matched_nothing:
            yield {
                **base,
                **counts,
                "status": "not_found",
                "reason": f"the PACS matched no instance for these keys (C-FIND finds none; "
                f"the C-MOVE answered {describe_status(code)})",
            }
            return
        if not self.local_destination:
            ok = code == SUCCESS and state.failed == 0
            status = "moved" if ok else ("cancelled" if code == CANCEL else "failed")
            reason = "" if ok else (state.aborted or describe_status(code))
            if state.timed_out:
                status, reason = "timeout", state.timed_out
            if ok and state.completed + state.warning == 0:
                status, reason = "not_found", "the PACS matched no instance for these keys"
            yield {**base, **counts, "status": status, "reason": _with_comment(reason, state)}
            return

        ok_recs = [r for r in state.received if r.status in ("received", "duplicate")]
        stored_ok = {r.sop_instance_uid for r in ok_recs}
        recorded = {r.sop_instance_uid for r in state.received}  # any status: one row each
        failed_at_pacs = [u for u in state.failed_uids if u not in recorded]
        for uid in failed_at_pacs:
            yield {
                **base,
                "SOPInstanceUID": uid,
                "status": "failed",
                "reason": f"the PACS reported this sub-operation failed ({describe_status(code)})",
            }
        # Every UID asked for at the retrieve level is accounted for, one row each.
        level = query.level
        key, attr = _LEVEL_KEYS.get(level or "", ("", ""))
        wanted = _value_list(query.get(key)) if key else []
        got = {getattr(r, attr) for r in ok_recs}
        if level == "IMAGE":
            got |= set(failed_at_pacs)
        not_arrived = [u for u in wanted if u not in got]

        def per_uid(status: str, reason: str) -> Iterator[dict[str, Any]]:
            # one row per UID that did not arrive; a request row if that is none
            if not not_arrived:
                yield {**base, **counts, "status": status, "reason": reason}
            for uid in not_arrived:
                yield {**base, key: uid, "status": status, "reason": reason}

        if _is_failure(code) or code == CANCEL:
            status = "cancelled" if code == CANCEL or state.cancelled else "failed"
            reason = state.aborted or describe_status(code)
            if state.timed_out:
                status, reason = "timeout", f"{state.timed_out} ({reason})"
            elif status == "cancelled" and self._fatal is not None:
                reason = f"cancelled because {self._fatal}"
            elif status == "cancelled" and self._why_stop in ("interrupt", "cancel"):
                by = "Ctrl-C" if self._why_stop == "interrupt" else "cancel()"
                reason = f"cancelled ({by}): {reason}"
            yield from per_uid(status, _with_comment(reason, state))
            return
        n_ok = len(stored_ok)
        if n_ok == 0 and state.completed == 0 and state.failed == 0 and state.warning == 0:
            yield from per_uid("not_found", "the PACS matched no instance for these keys")
            return
        short = state.completed + state.warning - n_ok
        reason = ""
        if short > 0:
            reason = (
                f"the PACS reported {state.completed + state.warning} sub-operations "
                f"completed but {n_ok} instances arrived"
            )
            if n_ok == 0 and self._unrequested:
                reason += (
                    f"; {len(self._unrequested)} instances arrived that do not match this "
                    "request's keys (see the 'unrequested' rows): the PACS may have ignored "
                    "a key"
                )
            elif n_ok == 0:
                reason += (
                    f"; the PACS could not reach our store SCP at {self._store_address()} "
                    "(check the address it has for us)"
                )
        if level == "IMAGE":
            for uid in not_arrived:
                yield {
                    **base,
                    key: uid,
                    "status": "missing",
                    "reason": "requested by UID but never arrived",
                }
        elif short > 0:
            if not_arrived:
                for uid in not_arrived:
                    yield {
                        **base,
                        key: uid,
                        "status": "missing",
                        "reason": f"no instance of this {key} arrived; {reason}",
                    }
            else:
                yield {**base, **counts, "status": "missing", "reason": reason}
        else:
            for uid in not_arrived:
                yield {
                    **base,
                    key: uid,
                    "status": "not_found",
                    "reason": f"no instance of this {key} arrived: the PACS matched none",
                }
        unlisted = state.failed - len(set(state.failed_uids))  # listed ones are accounted for
        if unlisted > 0:
            yield {
                **base,
                **counts,
                "status": "failed",
                "reason": f"{unlisted} sub-operations failed at the PACS ({describe_status(code)})",
            }


_LEVEL_KEYS = {
    "PATIENT": ("PatientID", "patient_id"),
    "STUDY": ("StudyInstanceUID", "study_instance_uid"),
    "SERIES": ("SeriesInstanceUID", "series_instance_uid"),
    "IMAGE": ("SOPInstanceUID", "sop_instance_uid"),
}


def _with_comment(reason: str, state: _RequestState) -> str:
    return f"{reason}: {state.error_comment}" if state.error_comment and reason else reason


class MoveJob:
    """A move running in the background, from :meth:`Session.start` or :func:`dicommove.start`.

    Like a :class:`concurrent.futures.Future`: :meth:`result` waits for the
    manifest (or raises what the move raised), :meth:`cancel` stops it the way
    Ctrl-C would, and :attr:`manifest` shows the rows so far while it runs.

    Examples
    --------
    >>> job = dicommove.start("PACS@10.0.0.5:104", cohort, out="data")  # doctest: +SKIP
    >>> job.manifest["status"].value_counts()  # doctest: +SKIP
    >>> job.cancel()  # doctest: +SKIP
    >>> df = job.result()  # doctest: +SKIP
    """

    def __init__(
        self,
        session: Session,
        requests: list[Planned],
        *,
        stats: MoveStats,
        reporter: Reporter,
        errors: Literal["raise", "ignore"],
        resume: bool,
        close_session: bool,
    ) -> None:
        self.session = session
        self._reporter = reporter  # the progress display (a notebook panel with Cancel)
        self._result: pd.DataFrame | None = None
        self._error: BaseException | None = None
        self._done = threading.Event()
        self._close_session = close_session
        self._thread = threading.Thread(
            target=self._run,
            args=(requests, stats, reporter, errors, resume),
            name="dicommove-job",
            daemon=True,
        )
        self._thread.start()

    def _run(
        self,
        requests: list[Planned],
        stats: MoveStats,
        reporter: Reporter,
        errors: Literal["raise", "ignore"],
        resume: bool,
    ) -> None:
        try:
            self._result = self.session._run_move(
                requests,
                progress=False,
                errors=errors,
                resume=resume,
                stats=stats,
                reporter=reporter,
            )
        except BaseException as exc:  # handed to the caller by result()
            self._error = exc
        finally:
            if self._close_session:
                self.session.close()
            self._done.set()

    def cancel(self) -> None:
        """Cancel the move: C-CANCEL, grace period, release; :meth:`result` then raises."""
        self.session.cancel()

    def done(self) -> bool:
        """Whether the move has ended (completed, failed or cancelled)."""
        return self._done.is_set()

    def result(self, timeout: float | None = None) -> pd.DataFrame:
        """Wait for the move and return its manifest.

        Raises
        ------
        TimeoutError
            If it is still running after ``timeout`` seconds.
        DicomMoveError
            Whatever the move raised (:class:`MoveCancelled` after :meth:`cancel`),
            with its ``.manifest``.
        """
        if not self._done.wait(timeout):
            raise TimeoutError(f"the move is still running after {timeout:g} s")
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """Wait for the move; return what it raised, or ``None``."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"the move is still running after {timeout:g} s")
        return self._error

    @property
    def manifest(self) -> pd.DataFrame:
        """The manifest so far: the result once done, else a live view (``pending`` rows)."""
        if self._done.is_set():
            if self._result is not None:
                return self._result
            manifest = getattr(self._error, "manifest", None)
            if manifest is not None:
                return manifest  # type: ignore[no-any-return]
        return self.session.manifest()
