"""An in-process Query/Retrieve SCP serving a folder of DICOM files.

:class:`DemoPACS` is built on pynetdicom. It answers C-ECHO, C-FIND, C-MOVE and
C-GET in the Patient Root and Study Root models, the way a small real PACS
does: a C-MOVE opens one new association to the registered destination and
sends every matching instance with C-STORE, carrying the Move Originator AE
title and Message ID, with pending responses and final counts.

It is meant for tests, notebooks and ``dicommove demo``; it is not a
production PACS (no persistence, no access control, no transcoding).

Threading: pynetdicom runs every association in its own threads and calls the
handlers there. The index is replaced as a whole by :meth:`DemoPACS.rescan`,
and the destinations, counters and request logs are guarded by a lock, so a
:class:`DemoPACS` can be read and configured from any thread while it serves.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from pydicom import dcmread
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, StoragePresentationContexts, build_context, evt
from pynetdicom._globals import ALL_TRANSFER_SYNTAXES
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_GET, C_MOVE
from pynetdicom.events import Event, EventHandlerType
from pynetdicom.presentation import PresentationContext
from pynetdicom.transport import AddressInformation, AssociationSocket, ThreadedAssociationServer

from .._pynetdicom import reactor_reads_nothing
from ..errors import InputError, LocalSetupError
from ..node import Node, validate_ae_title

__all__ = ["DemoPACS", "PacsFaults"]

LOGGER = logging.getLogger("dicommove.testing")

VERIFICATION = "1.2.840.10008.1.1"
PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
PATIENT_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.1.2"
PATIENT_ROOT_GET = "1.2.840.10008.5.1.4.1.2.1.3"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"

_PATIENT_ROOT = frozenset({PATIENT_ROOT_FIND, PATIENT_ROOT_MOVE, PATIENT_ROOT_GET})
_STUDY_ROOT = frozenset({STUDY_ROOT_FIND, STUDY_ROOT_MOVE, STUDY_ROOT_GET})
_CHAIN = ("PATIENT", "STUDY", "SERIES", "IMAGE")

#: Status codes used here (PS3.4 C.4).
_PENDING = 0xFF00
_CANCEL = 0xFE00
_DESTINATION_UNKNOWN = 0xA801
_IDENTIFIER_MISMATCH = 0xA900
_UNABLE_TO_PROCESS = 0xC000
_POLL_INTERVAL = 0.05  # seconds, how quickly stop() takes effect
_STORE_REFUSED = 0xA700  # C-STORE "Refused: Out of resources", for PacsFaults.fail_instances


def _tags(*keywords: str) -> frozenset[int]:
    tags = set()
    for keyword in keywords:
        tag = tag_for_keyword(keyword)
        if tag is None:  # pragma: no cover - a typo in the tables below
            raise ValueError(f"unknown DICOM keyword {keyword!r}")
        tags.add(tag)
    return frozenset(tags)


# The attributes a PATIENT, STUDY or SERIES record carries (copied from its first
# instance), after PS3.4 C.6. An IMAGE record is the whole instance header.
_LEVEL_KEYS = {
    "PATIENT": _tags(
        "PatientName",
        "PatientID",
        "IssuerOfPatientID",
        "PatientBirthDate",
        "PatientBirthTime",
        "PatientSex",
        "OtherPatientIDs",
        "OtherPatientNames",
        "EthnicGroup",
        "PatientComments",
    ),
    "STUDY": _tags(
        "StudyInstanceUID",
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "StudyID",
        "StudyDescription",
        "ReferringPhysicianName",
        "NameOfPhysiciansReadingStudy",
        "AdmittingDiagnosesDescription",
        "PatientAge",
        "PatientSize",
        "PatientWeight",
        "Occupation",
        "AdditionalPatientHistory",
    ),
    "SERIES": _tags(
        "SeriesInstanceUID",
        "Modality",
        "SeriesNumber",
        "SeriesDescription",
        "SeriesDate",
        "SeriesTime",
        "BodyPartExamined",
        "ProtocolName",
        "Laterality",
        "PerformedProcedureStepStartDate",
        "PerformedProcedureStepStartTime",
        "Manufacturer",
        "InstitutionName",
        "StationName",
        "FrameOfReferenceUID",
    ),
}
# Attributes computed from the index, per level.
_COMPUTED_KEYS = {
    "PATIENT": _tags(
        "NumberOfPatientRelatedStudies",
        "NumberOfPatientRelatedSeries",
        "NumberOfPatientRelatedInstances",
    ),
    "STUDY": _tags(
        "ModalitiesInStudy",
        "SOPClassesInStudy",
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
    ),
    "SERIES": _tags("NumberOfSeriesRelatedInstances"),
}
_AVAILABILITY = _tags("InstanceAvailability")
# Keys a C-FIND at a level may match on: its own, those of the levels above, computed.
_ALLOWED: dict[str, frozenset[int]] = {
    "PATIENT": _LEVEL_KEYS["PATIENT"] | _COMPUTED_KEYS["PATIENT"] | _AVAILABILITY,
    "STUDY": _LEVEL_KEYS["PATIENT"]
    | _LEVEL_KEYS["STUDY"]
    | _COMPUTED_KEYS["STUDY"]
    | _AVAILABILITY,
    "SERIES": _LEVEL_KEYS["PATIENT"]
    | _LEVEL_KEYS["STUDY"]
    | _LEVEL_KEYS["SERIES"]
    | _COMPUTED_KEYS["SERIES"]
    | _AVAILABILITY,
}
_UNIQUE_KEYWORD = {
    "PATIENT": "PatientID",
    "STUDY": "StudyInstanceUID",
    "SERIES": "SeriesInstanceUID",
    "IMAGE": "SOPInstanceUID",
}
_UNIQUE_TAG = {level: int(tag_for_keyword(kw) or 0) for level, kw in _UNIQUE_KEYWORD.items()}
_QUERY_LEVEL = 0x00080052
_RETRIEVE_AE_TITLE = 0x00080054
_CHARSET = 0x00080005
_SET_BY_PACS = frozenset({_QUERY_LEVEL, _RETRIEVE_AE_TITLE, _CHARSET})
_NOT_MATCHED = _SET_BY_PACS | {0x00080056}  # and InstanceAvailability
_NATIVE = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)


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
        self.delay_per_store = 0.0
        self.drop_instances = set()
        self.fail_instances = set()
        self.abort_after = None
        self.abort_count = None
        self.stall_after = None
        self.stall_seconds = 60.0
        self.ignore_cancel = False
        self.overflow_counts = False


class _Refused(Exception):
    """A request the PACS refuses with a failure status and an ErrorComment."""

    def __init__(self, status: int, comment: str) -> None:
        super().__init__(comment)
        self.status = status
        self.comment = _comment(comment)


def _comment(text: str) -> str:
    """ErrorComment is LO: 64 characters at most."""
    return text if len(text) <= 64 else text[:61] + "..."


@dataclass(frozen=True)
class _Entry:
    """One indexed instance."""

    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    patient_id: str
    study_uid: str
    series_uid: str

    def key(self, level: str) -> str:
        """Return the unique key of this instance's entity at `level`."""
        if level == "PATIENT":
            return self.patient_id
        if level == "STUDY":
            return self.study_uid
        if level == "SERIES":
            return self.series_uid
        return self.sop_instance_uid


@dataclass(frozen=True)
class _Index:
    """The instances under the root, and a C-FIND record per entity and level."""

    entries: tuple[_Entry, ...] = ()
    records: Mapping[str, tuple[Dataset, ...]] = field(
        default_factory=lambda: {level: () for level in _CHAIN}
    )

    @classmethod
    def scan(cls, root: Path) -> _Index:
        """Read the headers of every ``*.dcm`` under `root`."""
        entries: list[_Entry] = []
        headers: list[Dataset] = []
        seen: set[str] = set()
        for path in sorted(root.rglob("*.dcm")):
            try:
                ds = dcmread(path, stop_before_pixels=True)
                ts = str(ds.file_meta.TransferSyntaxUID)
                entry = _Entry(
                    path=path.resolve(),
                    sop_class_uid=str(ds.SOPClassUID),
                    sop_instance_uid=str(ds.SOPInstanceUID),
                    transfer_syntax=ts,
                    patient_id=str(ds.get("PatientID", "") or ""),
                    study_uid=str(ds.StudyInstanceUID),
                    series_uid=str(ds.SeriesInstanceUID),
                )
            except Exception as exc:  # any unreadable file is skipped
                LOGGER.warning("DemoPACS skips %s: %s", path, exc)
                continue
            if entry.sop_instance_uid in seen:
                LOGGER.warning(
                    "DemoPACS skips %s: SOPInstanceUID %s is already indexed",
                    path,
                    entry.sop_instance_uid,
                )
                continue
            seen.add(entry.sop_instance_uid)
            entries.append(entry)
            headers.append(ds)
        return cls(tuple(entries), _build_records(entries, headers))


def _build_records(entries: list[_Entry], headers: list[Dataset]) -> dict[str, tuple[Dataset, ...]]:
    """Group instances into PATIENT, STUDY and SERIES records, with computed attributes."""
    groups: dict[str, dict[str, list[int]]] = {level: {} for level in _CHAIN[:3]}
    for n, entry in enumerate(entries):
        for level in _CHAIN[:3]:
            groups[level].setdefault(entry.key(level), []).append(n)

    records: dict[str, tuple[Dataset, ...]] = {}
    for depth, level in enumerate(_CHAIN[:3]):
        keys = frozenset().union(*(_LEVEL_KEYS[lvl] for lvl in _CHAIN[: depth + 1]))
        level_records = []
        for members in groups[level].values():
            first = headers[members[0]]
            record = Dataset()
            for elem in first:
                if elem.tag in keys:
                    record.add(elem)
            if "SpecificCharacterSet" in first:
                record.SpecificCharacterSet = first.SpecificCharacterSet
            record.InstanceAvailability = "ONLINE"
            member_entries = [entries[n] for n in members]
            series = {e.series_uid for e in member_entries}
            if level == "PATIENT":
                record.NumberOfPatientRelatedStudies = len({e.study_uid for e in member_entries})
                record.NumberOfPatientRelatedSeries = len(series)
                record.NumberOfPatientRelatedInstances = len(members)
            elif level == "STUDY":
                modalities = {str(headers[n].get("Modality", "") or "") for n in members}
                record.ModalitiesInStudy = sorted(m for m in modalities if m)
                record.SOPClassesInStudy = sorted({e.sop_class_uid for e in member_entries})
                record.NumberOfStudyRelatedSeries = len(series)
                record.NumberOfStudyRelatedInstances = len(members)
            else:
                record.NumberOfSeriesRelatedInstances = len(members)
            level_records.append(record)
        records[level] = tuple(level_records)
    for header in headers:
        header.InstanceAvailability = "ONLINE"
        for _ in header:  # convert every raw element now, not in concurrent handlers
            pass
    records["IMAGE"] = tuple(headers)
    return records


@dataclass(frozen=True)
class _Key:
    """One key of a request identifier, decoded without pydicom's value validation.

    Identifiers legitimately hold values that pydicom would warn about (``*`` and
    ``?`` in a CS, ranges in a TM), and a warning raised in a handler thread
    would turn into an exception where warnings are errors.
    """

    tag: int
    vr: str
    values: tuple[str, ...]


_TEXT_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI"}
    | {"UR", "UT"}
)
_UNSPLIT_VRS = frozenset({"LT", "ST", "UT", "UR"})


def _parse_identifier(identifier: Dataset) -> dict[int, _Key]:
    """Return the keys of `identifier`, in order, with their non-empty values."""
    charset = identifier.get_item(_CHARSET) if _CHARSET in identifier else None
    charset_text = str(charset.value) if charset is not None else ""
    codec = "utf-8" if "192" in charset_text else "latin-1"
    keys: dict[int, _Key] = {}
    for tag in list(identifier.keys()):  # iterating the Dataset would convert the values
        elem = identifier.get_item(tag)
        if isinstance(elem, RawDataElement):
            vr = str(elem.VR or _dictionary_vr(int(tag)))
            raw = elem.value
            values: list[str]
            if vr == "SQ" or not raw:
                values = []
            elif vr in _TEXT_VRS:
                text = raw.decode(codec, errors="replace")
                parts = [text] if vr in _UNSPLIT_VRS else text.split("\\")
                values = [v for v in (part.strip(" \x00") for part in parts) if v]
            else:  # binary numbers: nothing to warn about
                values = _values(identifier[tag])
        else:
            vr, values = str(elem.VR), _values(elem)
        keys[int(tag)] = _Key(int(tag), vr.split(" or ")[0], tuple(values))
    return keys


def _dictionary_vr(tag: int) -> str:
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return "UN"


def _values(elem: DataElement) -> list[str]:
    """Return the non-empty values of `elem` as stripped strings ([]: universal match)."""
    value = elem.value
    if value is None or isinstance(value, bytes | bytearray | Sequence):
        return []
    items = list(value) if isinstance(value, MultiValue | list | tuple) else [value]
    texts = (str(item).strip(" \x00") for item in items)
    return [text for text in texts if text]


def _wildcard(pattern: str, *, ignore_case: bool) -> re.Pattern[str]:
    regex = "".join(
        ".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern
    )
    return re.compile(regex, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def _match_one(vr: str, wanted: str, have: str) -> bool:
    """Single value, range (DA, TM, DT) and wildcard matching (PS3.4 C.2.2.2)."""
    if vr in ("DA", "TM", "DT") and "-" in wanted:
        low, _, high = wanted.partition("-")
        return (not low or have >= low) and (not high or have[: len(high)] <= high)
    if vr != "UI" and ("*" in wanted or "?" in wanted):
        return _wildcard(wanted, ignore_case=vr == "PN").fullmatch(have) is not None
    if vr == "PN":
        return wanted.casefold() == have.casefold()
    return wanted == have


def _matches(record: Dataset, query: Mapping[int, _Key], allowed: frozenset[int] | None) -> bool:
    """Return whether `record` matches every key of `query`.

    Keys outside `allowed` (``None``: everything is allowed) are returned empty
    and ignored for matching, like a lenient PACS. Sequences match universally.
    """
    for tag, key in query.items():
        if not key.values or key.vr == "SQ" or tag in _NOT_MATCHED:
            continue
        if tag >> 16 in (0x0000, 0x0002) or (tag >> 16) % 2:
            continue  # command, file meta and private elements
        if allowed is not None and tag not in allowed:
            continue
        if tag not in record:
            return False
        have = _values(record[tag]) or [""]
        if not any(_match_one(key.vr, w, h) for w in key.values for h in have):
            return False
    return True


def _response(record: Dataset, query: Mapping[int, _Key], level: str, ae_title: str) -> Dataset:
    """Return the requested keys of `record`, QueryRetrieveLevel and RetrieveAETitle."""
    rsp = Dataset()
    if _CHARSET in record:
        rsp.SpecificCharacterSet = record.SpecificCharacterSet
    for tag, key in query.items():
        if tag in _SET_BY_PACS or tag >> 16 in (0x0000, 0x0002):
            continue
        if tag in record:
            rsp.add(record[tag])
        elif key.vr == "SQ":
            rsp.add(DataElement(tag, "SQ", Sequence()))
        else:
            rsp.add(DataElement(tag, key.vr, None))
    rsp.QueryRetrieveLevel = level
    rsp.RetrieveAETitle = ae_title
    return rsp


def _query_level(query: Mapping[int, _Key], model: str) -> str:
    """Return the QueryRetrieveLevel of `query`, checked against the information `model`."""
    levels: tuple[str, ...]
    if model in _PATIENT_ROOT:
        levels, name = _CHAIN, "Patient Root"
    elif model in _STUDY_ROOT:
        levels, name = _CHAIN[1:], "Study Root"
    else:
        raise _Refused(_IDENTIFIER_MISMATCH, f"unsupported information model {model}")
    key = query.get(_QUERY_LEVEL)
    level = key.values[0] if key is not None and key.values else ""
    if not level:
        raise _Refused(_IDENTIFIER_MISMATCH, "QueryRetrieveLevel is missing")
    if level not in levels:
        raise _Refused(_IDENTIFIER_MISMATCH, f"QueryRetrieveLevel {level!r} invalid in {name}")
    return level


def _store_contexts(entries: Iterable[_Entry]) -> list[PresentationContext]:
    """Return the contexts to propose for a C-STORE sub-association.

    Each SOP class with its stored transfer syntax first, then Explicit and
    Implicit VR Little Endian.
    """
    by_class: dict[str, list[str]] = {}
    for entry in entries:
        syntaxes = by_class.setdefault(entry.sop_class_uid, [])
        if entry.transfer_syntax not in syntaxes:
            syntaxes.append(entry.transfer_syntax)
    contexts = []
    for sop_class, syntaxes in by_class.items():
        native = [ts for ts in syntaxes if ts in _NATIVE]
        encoded = [ts for ts in syntaxes if ts not in _NATIVE]
        if native or not encoded:
            contexts.append(build_context(sop_class, list(dict.fromkeys([*native, *_NATIVE]))))
        for ts in encoded:
            contexts.append(build_context(sop_class, [ts, *_NATIVE]))
    if len(contexts) > 128:
        LOGGER.warning(
            "DemoPACS: %d presentation contexts needed, only the first 128 are proposed",
            len(contexts),
        )
    return contexts[:128]


class _ResponseHook:
    """Wraps an association's DIMSE ``send_msg`` to rewrite C-MOVE/C-GET responses.

    pynetdicom's Q/R SCP decides every response itself. This hook lets the handler
    attach a status and ErrorComment to the final response, drop it (after an
    abort) and drop pending responses (:attr:`PacsFaults.skip_pending`).
    """

    def __init__(self, pacs: DemoPACS, send: Callable[[Any, int], None]) -> None:
        self._pacs = pacs
        self._send = send
        self._final: dict[int, tuple[int | None, str, bool]] = {}
        self.overflow: set[int] = set()  # message IDs whose counts say 65,535 remaining

    def override(self, msg_id: int, status: int | None, comment: str = "") -> None:
        """Send the final response to `msg_id` with `status` and `comment`."""
        self._final[msg_id] = (status, _comment(comment), False)

    def suppress(self, msg_id: int) -> None:
        """Send no final response to `msg_id` (the association is being aborted)."""
        self._final[msg_id] = (None, "", True)

    def __call__(self, primitive: Any, context_id: int) -> None:
        if (
            isinstance(primitive, C_MOVE | C_GET)
            and primitive.MessageIDBeingRespondedTo is not None
        ):
            msg_id = int(primitive.MessageIDBeingRespondedTo)
            status = primitive.Status
            if status in (_PENDING, 0xFF01):
                if self._pacs.faults.skip_pending or self._final.get(msg_id, (0, "", False))[2]:
                    return
                if msg_id in self.overflow:
                    primitive.NumberOfRemainingSuboperations = 0xFFFF
            else:
                status_override, comment, suppress = self._final.pop(msg_id, (None, "", False))
                if suppress:
                    return
                if status_override is not None:
                    primitive.Status = status_override
                if not comment and isinstance(primitive, C_MOVE) and status == _DESTINATION_UNKNOWN:
                    comment = "could not associate with the move destination"
                if comment:
                    setattr(primitive, "ErrorComment", comment)  # noqa: B010 - typed as None
        self._send(primitive, context_id)


class _StoreHook:
    """Wraps an association's ``send_c_store`` for C-MOVE and C-GET sub-operations.

    It sets the Move Originator fields to the C-MOVE requestor (pynetdicom would
    send the PACS's own AE title), applies the store faults and counts.
    """

    def __init__(self, pacs: DemoPACS, originator: tuple[str, int] | None) -> None:
        self._pacs = pacs
        self._originator = originator

    def install(self, assoc: Association) -> None:
        """Replace ``assoc.send_c_store`` by the hooked version."""
        if self._originator is not None:
            self._pacs._count_store_association()
        send = assoc.send_c_store
        pacs = self._pacs
        originator = self._originator

        def send_c_store(
            dataset: Any,
            msg_id: int = 1,
            priority: int = 2,
            originator_aet: str | None = None,
            originator_id: int | None = None,
        ) -> Dataset:
            faults = pacs.faults
            uid = str(dataset.get("SOPInstanceUID", "")) if isinstance(dataset, Dataset) else ""
            if faults.delay_per_store > 0:
                time.sleep(faults.delay_per_store)
            status = Dataset()
            if uid and uid in faults.fail_instances:
                status.Status = _STORE_REFUSED
                return status
            if uid and uid in faults.drop_instances:
                status.Status = 0x0000
                return status
            if originator is not None:
                originator_aet, originator_id = originator
            result: Dataset = send(
                dataset,
                msg_id=msg_id,
                priority=priority,
                originator_aet=originator_aet,
                originator_id=originator_id,
            )
            pacs._sent(uid)
            return result

        setattr(assoc, "send_c_store", send_c_store)  # noqa: B010 - instance override


class _PacsAE(AE):
    """An AE whose ``associate`` accepts a ``store_hook``, and does not leak sockets.

    pynetdicom's C-MOVE SCP opens the store sub-association with
    ``ae.associate(addr, port, **kwargs)``, the kwargs coming from the handler's
    first yield: that is the one place to reach the sub-association.

    When the TCP connection is refused, pynetdicom 3.0.4 drops its socket without
    closing it (``AssociationSocket._shutdown_socket`` calls ``shutdown()`` first,
    which raises on an unconnected socket, so ``close()`` never runs), and the
    ResourceWarning at garbage collection fails test suites that turn warnings
    into errors. ``_create_socket`` remembers the socket so it can be closed.
    """

    _created = threading.local()

    def _create_socket(
        self,
        assoc: Association,
        address: AddressInformation,
        tls_args: tuple[ssl.SSLContext, str] | None,
    ) -> AssociationSocket:
        transport = super()._create_socket(assoc, address, tls_args)
        self._created.socket = transport.socket
        return transport

    def associate(
        self, *args: Any, store_hook: _StoreHook | None = None, **kwargs: Any
    ) -> Association:
        self._created.socket = None
        try:
            assoc = super().associate(*args, **kwargs)
        finally:
            created: socket.socket | None = self._created.socket
            self._created.socket = None
        if not assoc.is_established:
            if created is not None:
                created.close()
            return assoc
        transport = assoc.dul.socket
        if transport is not None and transport.socket is not None:
            _no_delay(transport.socket)
        reactor_reads_nothing(assoc)
        if store_hook is not None:
            store_hook.install(assoc)
        return assoc


class _NoDelayServer(ThreadedAssociationServer):
    """The association server, with Nagle's algorithm off on accepted connections."""

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        """Accept a connection and set TCP_NODELAY on it."""
        sock, address = super().get_request()
        _no_delay(sock)
        return sock, address


def _no_delay(sock: socket.socket) -> None:
    """Send small PDUs at once.

    pynetdicom leaves Nagle's algorithm on; with delayed ACKs every C-STORE
    sub-operation then waits about 40 ms for the last segment of its request
    (50 ms instead of 8 ms per instance on loopback).
    """
    with contextlib.suppress(OSError):  # not TCP, or already closed
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class DemoPACS:
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

    Attributes
    ----------
    faults : PacsFaults
        Fault injection; see :class:`PacsFaults`.

    Notes
    -----
    Supported: C-ECHO; C-FIND, C-MOVE and C-GET in Patient Root and Study Root.

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
    ) -> None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port < 65536:
            raise InputError(f"invalid port {port!r}: use 0 (any free port) or 1 to 65535")
        self._root = Path(root)
        self._ae_title = validate_ae_title(ae_title, what="PACS AE title")
        self._host = host
        self._requested_port = port
        self.require_known_destination = require_known_destination
        self.faults = PacsFaults()

        self._lock = threading.Lock()
        self._stopping = threading.Event()  # wakes a stalled handler (faults.stall_after)
        self._max_associations = 64
        self._destinations: dict[str, tuple[str, int]] = {}
        self._index = _Index()
        self._ae: _PacsAE | None = None
        self._server: ThreadedAssociationServer | None = None
        self._thread: threading.Thread | None = None
        self._port = 0
        self._move_requests: list[Dataset] = []
        self._move_message_ids: list[int] = []
        self._get_requests: list[Dataset] = []
        self._find_requests: list[Dataset] = []
        self._sent_instances: list[str] = []
        self._store_associations = 0
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
        ae = _PacsAE(ae_title=self._ae_title)
        ae.acse_timeout = 30
        ae.dimse_timeout = 30
        ae.network_timeout = 30
        ae.maximum_associations = self._max_associations
        self._stopping.clear()
        ae.add_supported_context(VERIFICATION)
        for model in sorted(_PATIENT_ROOT | _STUDY_ROOT):
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
        ]
        try:
            server = ae.make_server(
                (self._host, self._requested_port),
                evt_handlers=handlers,
                server_class=_NoDelayServer,
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
        index = _Index.scan(self._root)
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

    @property
    def move_requests(self) -> list[Dataset]:
        """The identifiers of the C-MOVE requests received, oldest first (a copy).

        Only decodable identifiers are logged; :attr:`move_message_ids` is parallel.
        """
        with self._lock:
            return list(self._move_requests)

    @property
    def move_message_ids(self) -> list[int]:
        """The Message IDs of the requests in :attr:`move_requests`, in the same order."""
        with self._lock:
            return list(self._move_message_ids)

    @property
    def get_requests(self) -> list[Dataset]:
        """The identifiers of the C-GET requests received, oldest first (a copy)."""
        with self._lock:
            return list(self._get_requests)

    @property
    def find_requests(self) -> list[Dataset]:
        """The identifiers of the C-FIND requests received, oldest first (a copy)."""
        with self._lock:
            return list(self._find_requests)

    @property
    def sent_instances(self) -> list[str]:
        """SOPInstanceUIDs sent by C-STORE sub-operations, in order (a copy).

        Instances dropped or failed by :attr:`faults` are not included.
        """
        with self._lock:
            return list(self._sent_instances)

    @property
    def store_associations(self) -> int:
        """How many C-STORE sub-associations C-MOVEs have opened."""
        with self._lock:
            return self._store_associations

    def reset_counters(self) -> None:
        """Clear the request logs, :attr:`sent_instances` and :attr:`store_associations`."""
        with self._lock:
            self._move_requests.clear()
            self._move_message_ids.clear()
            self._get_requests.clear()
            self._find_requests.clear()
            self._sent_instances.clear()
            self._store_associations = 0

    # -- internals -----------------------------------------------------------------

    def _count_store_association(self) -> None:
        with self._lock:
            self._store_associations += 1

    def _sent(self, uid: str) -> None:
        with self._lock:
            self._sent_instances.append(uid)

    def _log_request(self, log: list[Dataset], identifier: Dataset, msg_id: int) -> None:
        with self._lock:
            log.append(identifier)
            if log is self._move_requests:
                self._move_message_ids.append(msg_id)

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

    def _response_hook(self, assoc: Association) -> _ResponseHook:
        dimse = assoc.dimse
        hook = getattr(dimse, "_dicommove_hook", None)
        if not isinstance(hook, _ResponseHook):
            hook = _ResponseHook(self, dimse.send_msg)
            setattr(dimse, "send_msg", hook)  # noqa: B010 - instance override
            setattr(dimse, "_dicommove_hook", hook)  # noqa: B010
        return hook

    @staticmethod
    def _select(index: _Index, model: str, query: Mapping[int, _Key]) -> list[_Entry]:
        """Return the instances a C-MOVE/C-GET identifier asks for (unique keys only)."""
        level = _query_level(query, model)
        depth = _CHAIN.index(level)
        wanted: dict[str, set[str]] = {}
        for n, lvl in enumerate(_CHAIN):
            keyword = _UNIQUE_KEYWORD[lvl]
            key = query.get(_UNIQUE_TAG[lvl])
            values = key.values if key is not None else ()
            if n > depth and values:
                raise _Refused(_IDENTIFIER_MISMATCH, f"{keyword} is not allowed at {level} level")
            if n == depth and not values:
                raise _Refused(_IDENTIFIER_MISMATCH, f"{level} level needs a {keyword}")
            if values:
                wanted[lvl] = set(values)
        return [
            entry
            for entry in index.entries
            if all(entry.key(lvl) in values for lvl, values in wanted.items())
        ]

    def _identifier(self, event: Event, log: list[Dataset]) -> dict[int, _Key]:
        """Decode and log the request's identifier."""
        try:
            identifier = event.identifier
            query = _parse_identifier(identifier)
        except Exception as exc:  # a broken identifier from the peer
            LOGGER.warning("DemoPACS cannot decode an identifier: %s", exc)
            raise _Refused(_UNABLE_TO_PROCESS, "cannot decode the identifier") from exc
        self._log_request(log, identifier, int(event.request.MessageID or 0))
        return query

    def _on_find(self, event: Event) -> Iterator[tuple[int | Dataset, Dataset | None]]:
        index = self._index
        try:
            query = self._identifier(event, self._find_requests)
            level = _query_level(query, str(event.request.AffectedSOPClassUID))
        except _Refused as exc:
            status = Dataset()
            status.Status = exc.status
            status.ErrorComment = exc.comment
            LOGGER.info("DemoPACS refuses a C-FIND: %s", exc.comment)
            yield status, None
            return
        allowed = None if level == "IMAGE" else _ALLOWED[level]
        for record in index.records[level]:
            if event.is_cancelled:
                yield _CANCEL, None
                return
            if _matches(record, query, allowed):
                yield _PENDING, _response(record, query, level, self._ae_title)

    def _on_move(self, event: Event) -> Iterator[Any]:
        index = self._index
        assoc = event.assoc
        msg_id = int(event.request.MessageID or 0)
        hook = self._response_hook(assoc)
        destination = (event.move_destination or "").strip()
        try:
            query = self._identifier(event, self._move_requests)
            entries = self._select(index, str(event.request.AffectedSOPClassUID), query)
        except _Refused as exc:
            LOGGER.info("DemoPACS refuses a C-MOVE: %s", exc.comment)
            hook.override(msg_id, exc.status, exc.comment)
            yield None, None  # pynetdicom sends a final response, which the hook rewrites
            return
        address = self._resolve(destination)
        if address is None:
            LOGGER.info("DemoPACS: unknown move destination %r", destination)
            hook.override(msg_id, _DESTINATION_UNKNOWN, f"unknown move destination {destination!r}")
            yield None, None
            return
        faults = self.faults
        if faults.move_status is not None:
            hook.override(msg_id, faults.move_status, faults.error_comment)
        model = str(event.request.AffectedSOPClassUID)
        if faults.overflow_counts and _query_level(query, model) in ("PATIENT", "STUDY"):
            hook.overflow.add(msg_id)
        LOGGER.info(
            "DemoPACS: C-MOVE %d from %s: %d instances to %s at %s:%d",
            msg_id,
            assoc.requestor.ae_title,
            len(entries),
            destination,
            *address,
        )
        store_hook = _StoreHook(self, originator=(assoc.requestor.ae_title, msg_id))
        yield (
            address[0],
            address[1],
            {"contexts": _store_contexts(entries), "store_hook": store_hook},
        )
        yield len(entries)
        yield from self._sub_operations(event, entries, hook, msg_id)

    def _on_get(self, event: Event) -> Iterator[Any]:
        index = self._index
        assoc = event.assoc
        msg_id = int(event.request.MessageID or 0)
        hook = self._response_hook(assoc)
        if not getattr(assoc, "_dicommove_store_hook", False):
            _StoreHook(self, originator=None).install(assoc)
            setattr(assoc, "_dicommove_store_hook", True)  # noqa: B010
        try:
            query = self._identifier(event, self._get_requests)
            entries = self._select(index, str(event.request.AffectedSOPClassUID), query)
        except _Refused as exc:
            LOGGER.info("DemoPACS refuses a C-GET: %s", exc.comment)
            hook.override(msg_id, exc.status, exc.comment)
            yield 0  # pynetdicom sends a final response, which the hook rewrites
            return
        yield len(entries)
        yield from self._sub_operations(event, entries, hook, msg_id)

    def _sub_operations(
        self, event: Event, entries: list[_Entry], hook: _ResponseHook, msg_id: int
    ) -> Iterator[tuple[int, Dataset | None]]:
        faults = self.faults
        for n, entry in enumerate(entries):
            cancelled = False
            if faults.stall_after is not None and n == faults.stall_after:
                cancelled = self._stall(event)
            # (pynetdicom's is_cancelled is true once: it consumes the C-CANCEL)
            if (cancelled or event.is_cancelled) and not faults.ignore_cancel:
                yield _CANCEL, None
                return
            abort_after = faults.abort_after
            if abort_after is not None and n >= abort_after and faults.abort_count != 0:
                if faults.abort_count is not None:
                    faults.abort_count -= 1
                LOGGER.info("DemoPACS: aborting after %d sub-operations (fault)", n)
                hook.suppress(msg_id)
                event.assoc.abort(block=False)
                return
            yield _PENDING, _load(entry)

    def _stall(self, event: Event) -> bool:
        """Stay silent for ``faults.stall_seconds``, or until cancelled or stopped.

        Returns whether a C-CANCEL ended it.
        """
        faults = self.faults
        LOGGER.info("DemoPACS: going silent for up to %g s (fault)", faults.stall_seconds)
        deadline = time.monotonic() + faults.stall_seconds
        while time.monotonic() < deadline and not self._stopping.is_set():
            if not faults.ignore_cancel and event.is_cancelled:
                return True
            if not event.assoc.is_established:
                return False
            self._stopping.wait(0.02)
        return False


def _load(entry: _Entry) -> Dataset:
    """Read an instance to send; on failure a stub that makes the C-STORE fail."""
    try:
        return dcmread(entry.path)
    except Exception as exc:  # the file changed since it was indexed
        LOGGER.warning("DemoPACS cannot read %s: %s", entry.path, exc)
        stub = Dataset()
        stub.SOPInstanceUID = entry.sop_instance_uid
        return stub
