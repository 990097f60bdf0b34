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

import contextlib
import errno
import io
import itertools
import logging
import os
import socket
import threading
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from . import _ul
from ._scu import Aborted, Rejected, Requestor
from .errors import (
    AssociationAborted,
    AssociationRejected,
    ConnectError,
    DicomMoveError,
    DiskFullError,
    InputError,
    MoveDestinationUnknown,
    MoveIncomplete,
)
from .manifest import PROBLEM_STATUSES, build
from .node import DEFAULT_CALLED_AE, Node, validate_ae_title
from .progress import NullProgress, Progress, ProgressMode, make_progress
from .query import Model, Query, Request, to_requests
from .scp import (
    DEFAULT_MAX_PDU,
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
    InstanceStore,
    Layout,
    Received,
    StoreSCP,
    compile_layout,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DEFAULT_AE_TITLE", "DEFAULT_PORT", "STATUS_TEXT", "Session", "describe_status"]

logger = logging.getLogger("dicommove")

#: Our default AE title and store port, as in dicom-movescu.
DEFAULT_AE_TITLE = "STORE-SCP"
DEFAULT_PORT = 11111

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


def _is_failure(code: int | None) -> bool:
    return code is None or code not in PENDING | {SUCCESS, WARNING, CANCEL}


@dataclass
class _RequestState:
    """What one request asked for and what came back."""

    request: Request
    message_id: int
    received: list[Received] = field(default_factory=list)
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
        Seconds to wait for each response from the PACS (C-MOVE pending or
        final, C-FIND, C-ECHO).
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
        compile_layout(layout)  # an unsafe layout is refused before any traffic
        self._ids = itertools.count(1)
        self._ids_lock = threading.Lock()
        self._assoc: Requestor | None = None
        self._closed = False
        self._route_lock = threading.Lock()
        self._active: dict[int, _RequestState] = {}
        self._unrequested: list[Received] = []
        self._started: list[_RequestState] = []
        self._finished_total = 0
        self._routes: dict[int, _RequestState | None] = {}
        self._fatal: DicomMoveError | None = None
        self._progress: Progress = NullProgress()

    # -- lifecycle ---------------------------------------------------------
    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the association. The session cannot be used afterwards."""
        self._closed = True
        assoc, self._assoc = self._assoc, None
        if assoc is not None:
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

    def _associate(self) -> Requestor:
        """Return an established association, opening one if needed."""
        self._check_open()
        if self._assoc is not None and self._assoc.established:
            return self._assoc
        self._assoc = None
        pacs = self.pacs
        logger.debug("requesting association %s -> %s", self.ae_title, pacs)
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
        self._assoc = assoc
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

    def _drop_association(self) -> None:
        assoc, self._assoc = self._assoc, None
        if assoc is not None:
            assoc.abort()

    def _store_address(self) -> str:
        host = self.bind
        if not host and self._assoc is not None:
            host = self._assoc.local_address
        return f"{host or '<this machine>'}:{self.port}"

    # -- moving ------------------------------------------------------------
    def move(
        self,
        what: Any,
        *,
        strict: bool = True,
        progress: ProgressMode = "auto",
        errors: Literal["raise", "ignore"] = "raise",
    ) -> pd.DataFrame:
        """Move the instances that ``what`` identifies, and return the manifest.

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
        """
        if errors not in ("raise", "ignore"):
            raise InputError(f"errors={errors!r}: use 'raise' or 'ignore'")
        requests = to_requests(what, model=self.model, strict=strict)
        self._check_open()  # refuses a closed session before any work
        states = [_RequestState(r, self._next_message_id()) for r in requests]
        scp = self._start_store() if self.local_destination else None
        self._unrequested = []
        self._started = []
        self._finished_total = 0
        self._fatal = None
        failure: DicomMoveError | None = None
        try:
            self._associate()
            self._progress = make_progress(progress, desc=f"C-MOVE from {self.pacs.ae_title}")
            for state in states:
                self._run(state)
                if self._fatal is not None:
                    raise self._fatal
        except DicomMoveError as exc:
            failure = exc
        except BaseException:  # Ctrl-C: stop the PACS sending, free the port, re-raise
            self._drop_association()
            raise
        finally:
            if scp is not None:
                scp.stop()
        df = self._manifest(states, failure)
        problems = df["status"].isin(sorted(PROBLEM_STATUSES))
        self._progress.close(complete=not problems.any() and failure is None)
        self._progress = NullProgress()
        if failure is not None:
            failure.manifest = df
            raise failure
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

    def _start_store(self) -> StoreSCP:
        store = InstanceStore(self.out, layout=self.layout, fsync=self.fsync)
        store.prepare()
        store.begin()
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
                self._unrequested.append(rec)
            else:
                state.received.append(rec)
        if rec.status in ("received", "unrequested"):
            self._progress.advance(1, rec.size)
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
                "the same move again: what arrived is kept."
            )
            active = list(self._active.values())
        for state in active:
            self._cancel(state)

    def _cancel(self, state: _RequestState) -> None:
        """Send a C-CANCEL for one active C-MOVE (from any thread)."""
        assoc = self._assoc
        sop_class = _MOVE_MODELS[state.request.query.information_model]
        if assoc is None or not assoc.established or sop_class not in assoc.contexts:
            return
        logger.warning("sending C-CANCEL for message %d", state.message_id)
        cancel = _ul.encode_request(_ul.C_CANCEL_RQ, 0, responding_to=state.message_id)
        with contextlib.suppress(Aborted):
            assoc.send(assoc.contexts[sop_class][0], cancel)

    def _run(self, state: _RequestState) -> None:
        """Send one C-MOVE and record its responses."""
        assoc = self._associate()
        query = state.request.query
        sop_class = _MOVE_MODELS[query.information_model]
        cx_id, syntax = self._context(assoc, sop_class)
        identifier = _encode_identifier(query.to_dataset(), syntax)
        logger.info("C-MOVE %s (message %d) -> %s", query, state.message_id, self.move_destination)
        with self._route_lock:
            self._active[state.message_id] = state
            self._started.append(state)
        command = _ul.encode_request(
            _ul.C_MOVE_RQ,
            state.message_id,
            sop_class=sop_class,
            has_dataset=True,
            move_destination=self.move_destination,
        )
        try:
            assoc.send(cx_id, command, identifier)
            while True:
                rsp = assoc.receive()
                code = rsp.status
                if code is None:
                    raise Aborted("a response without a status")
                state.completed = rsp.us(0x1021) or 0
                state.failed = rsp.us(0x1022) or 0
                state.warning = rsp.us(0x1023) or 0
                state.remaining = rsp.us(0x1020)
                if code in PENDING:
                    self._update_total()
                    continue
                state.final_status = code
                state.error_comment = rsp.text(0x0902)
                if rsp.dataset:
                    failed = _decode_identifier(rsp.dataset, syntax).get("FailedSOPInstanceUIDList")
                    state.failed_uids = [u for u in _value_list(failed) if u]
                break
        except Aborted as exc:
            state.aborted = (
                f"the association was aborted or the PACS sent no response within "
                f"{self.dimse_timeout:g} s ({exc})"
            )
            self._drop_association()
        finally:
            with self._route_lock:
                self._active.pop(state.message_id, None)
                self._finished_total += max(state.expected, len(state.received))
        self._update_total()
        self._check_destination(state)

    def _update_total(self) -> None:
        # Instances announced by the requests sent so far (or arrived, if more): the
        # finished ones are summed once, in _run, so a long cohort stays linear.
        with self._route_lock:
            active = sum(max(s.expected, len(s.received)) for s in self._active.values())
            total = self._finished_total + active
        self._progress.set_total(total)

    def _check_destination(self, state: _RequestState) -> None:
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
            matches = self._count_matches(state.request.query)
            if matches == 0:
                state.matched_nothing = True
                return
            delivered = any(s.received or s.completed for s in self._started if s is not state)
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

    def _count_matches(self, query: Query) -> int | None:
        """Count C-FIND matches for a query's keys; ``None`` if C-FIND is not possible."""
        try:
            assoc = self._associate()
        except DicomMoveError:
            return None
        sop_class = _FIND_MODELS[query.information_model]
        if sop_class not in assoc.contexts:
            return None
        cx_id, syntax = assoc.contexts[sop_class]
        command = _ul.encode_request(
            _ul.C_FIND_RQ, self._next_message_id(), sop_class=sop_class, has_dataset=True
        )
        matches = 0
        try:
            assoc.send(cx_id, command, _encode_identifier(query.to_dataset(), syntax))
            while True:
                code = assoc.receive().status
                if code in PENDING:
                    matches += 1
                    continue
                if code != SUCCESS:
                    return None
                break
        except Aborted:
            self._drop_association()
            return None
        logger.debug("C-FIND %s: %d matches", query, matches)
        return matches

    # -- manifest ----------------------------------------------------------
    def _manifest(
        self, states: list[_RequestState], failure: DicomMoveError | None
    ) -> pd.DataFrame:
        rows: list[dict[str, Any]] = []
        for state in states:
            rows.extend(self._rows(state, failure))
        for rec in self._unrequested:
            rows.append(_instance_row(None, rec, None))
        return build(rows)

    def _rows(
        self, state: _RequestState, failure: DicomMoveError | None
    ) -> Iterator[dict[str, Any]]:
        request, query = state.request, state.request.query
        keys = {
            k: query.get(k)
            for k in ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
        }
        base: dict[str, Any] = {
            "request": request.index,
            **{k: "\\".join(_value_list(v)) or None for k, v in keys.items()},
            "move_status": state.final_status,
        }
        counts = {"completed": state.completed, "failed": state.failed, "warning": state.warning}
        arrived = {r.sop_instance_uid for r in state.received if r.status != "failed"}
        for rec in state.received:
            if rec.status == "failed" and rec.sop_instance_uid in arrived:
                continue  # a failed attempt the PACS later repeated successfully
            yield _instance_row(request.index, rec, state.final_status)

        ran = state.final_status is not None or state.aborted
        if not ran:
            reason = f"not attempted: {failure}" if failure else "not attempted"
            yield {**base, "status": "failed", "reason": reason}
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
            reason = "" if ok else describe_status(code)
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
            status = "cancelled" if code == CANCEL else "failed"
            reason = state.aborted or describe_status(code)
            if code == CANCEL and self._fatal is not None:
                reason = f"cancelled because {self._fatal}"
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
        unlisted = state.failed - len(failed_at_pacs)
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


def _instance_row(request: Any, rec: Received, move_status: int | None) -> dict[str, Any]:
    return {
        "request": request,
        "PatientID": rec.patient_id or None,
        "StudyInstanceUID": rec.study_instance_uid or None,
        "SeriesInstanceUID": rec.series_instance_uid or None,
        "SOPInstanceUID": rec.sop_instance_uid,
        "SOPClassUID": rec.sop_class_uid,
        "TransferSyntaxUID": rec.transfer_syntax_uid,
        "path": rec.path or None,
        "size": rec.size if rec.path else None,
        "status": rec.status,
        "reason": rec.reason or None,
        "received_at": rec.received_at,
        "move_status": move_status,
    }
