"""The embedded Store SCP: where moved instances land on disk.

Two layers, kept apart so the transport can change without touching the rules:

* :class:`InstanceStore` holds the store logic and no sockets: it validates the
  UIDs, builds the file name, writes the file atomically (temp file under the
  output root, fsync, rename) and returns one :class:`Received` record per
  instance.
* :class:`StoreSCP` is the network side, a pynetdicom Storage SCP whose C-STORE
  handler hands the encoded dataset to the store and answers with the status the
  store decided. It never raises into pynetdicom.
"""

from __future__ import annotations

import errno
import hashlib
import io
import logging
import os
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydicom import dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID

from ._version import __version__
from .errors import LocalSetupError

__all__ = [
    "IMPLEMENTATION_CLASS_UID",
    "IMPLEMENTATION_VERSION_NAME",
    "InstanceStore",
    "Layout",
    "Received",
    "StoreSCP",
    "is_valid_uid",
]

logger = logging.getLogger("dicommove")

#: Our implementation class UID (a 2.25 UUID-derived root, PS3.5 B.2).
IMPLEMENTATION_CLASS_UID = "2.25.250386193394932478186766406962347125713"
#: Our implementation version name (at most 16 characters).
IMPLEMENTATION_VERSION_NAME = f"DICOMMOVE_{__version__}"[:16]

Layout = Literal["hierarchical", "flat"]

_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
TEMP_DIR_NAME = ".dicommove-tmp"

#: C-STORE statuses we answer (PS3.4 B.2.3).
STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_DATASET_MISMATCH = 0xA900
STATUS_CANNOT_UNDERSTAND = 0xC000

_HEADER_TAGS = [
    0x00080016,  # SOPClassUID
    0x00080018,  # SOPInstanceUID
    0x00100020,  # PatientID
    0x0020000D,  # StudyInstanceUID
    0x0020000E,  # SeriesInstanceUID
]


def _raw_text(ds: Any, tag: int) -> str:
    """Return the text of a header element, without value conversion or validation.

    Values from the network are not trusted: this never warns or raises, and
    undecodable bytes come back as replacement characters (refused later).
    """
    elem = ds.get_item(tag) if tag in ds else None
    value = getattr(elem, "value", None)
    if isinstance(value, bytes):
        return value.decode("latin-1").rstrip("\x00 ").lstrip(" ")
    return "" if value is None else str(value).strip()


def is_valid_uid(value: object) -> bool:
    """Return whether ``value`` is a UID that is safe to use in a file name.

    Digits and dots only, at most 64 characters, no empty component; so never
    ``.``, ``..``, a separator or a drive letter.
    """
    return isinstance(value, str) and len(value) <= 64 and bool(_UID_RE.match(value))


@dataclass
class Received:
    """What happened to one C-STORE that reached our Store SCP.

    ``status`` is one of the manifest statuses: ``received``, ``duplicate``,
    ``conflict`` or ``refused``.
    """

    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    status: str
    reason: str = ""
    study_instance_uid: str = ""
    series_instance_uid: str = ""
    patient_id: str = ""
    path: str = ""
    size: int = 0
    received_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    calling_ae: str = ""
    originator_ae: str = ""
    originator_message_id: int | None = None
    dimse_status: int = STATUS_SUCCESS


class InstanceStore:
    """Validates, names and atomically writes received instances.

    Parameters
    ----------
    root : path-like
        The output directory. Temp files go to ``root/.dicommove-tmp`` so that
        the final rename never crosses a filesystem.
    layout : {"hierarchical", "flat"}
        ``hierarchical`` writes ``<Study>/<Series>/<SOPInstance>.dcm``;
        ``flat`` writes ``<SOPInstance>.dcm`` as dicom-movescu does.
    fsync : bool
        Flush each file to stable storage before renaming it (default True).
    """

    def __init__(
        self, root: str | os.PathLike[str], *, layout: Layout = "hierarchical", fsync: bool = True
    ) -> None:
        if layout not in ("hierarchical", "flat"):
            raise ValueError(f"unknown layout {layout!r}: use 'hierarchical' or 'flat'")
        self.root = Path(root).absolute()
        self.layout: Layout = layout
        self.fsync = fsync
        self._lock = threading.Lock()
        self._seen: dict[str, str] = {}  # SOPInstanceUID -> sha256 of the bytes written

    @property
    def temp_dir(self) -> Path:
        """The directory holding files that are being received."""
        return self.root / TEMP_DIR_NAME

    def prepare(self) -> None:
        """Create the output directory, check it is writable, remove stale temp files.

        Raises
        ------
        LocalSetupError
            If the directory cannot be created or written.
        """
        try:
            self.temp_dir.mkdir(parents=True, exist_ok=True)
            for stale in self.temp_dir.glob("*.part"):
                stale.unlink()
                logger.info("removed stale temp file %s", stale)
            probe = self.temp_dir / f"probe-{uuid.uuid4().hex}.part"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise LocalSetupError(
                f"cannot write to the output directory {self.root}: {exc.strerror or exc}. "
                "Choose a directory you can write to (out=... or -o DIR)."
            ) from exc

    def begin(self) -> None:
        """Start a new move: forget which instances were seen."""
        with self._lock:
            self._seen.clear()

    def path_for(self, study_uid: str, series_uid: str, sop_uid: str) -> Path:
        """Return the final path of an instance, from validated UIDs only.

        Raises
        ------
        ValueError
            If a UID needed by the layout is not a valid UID, or the path would
            leave the output root.
        """
        parts = [sop_uid] if self.layout == "flat" else [study_uid, series_uid, sop_uid]
        for part in parts:
            if not is_valid_uid(part):
                raise ValueError(f"unsafe UID {part!r} for a file name")
        path = self.root.joinpath(*parts[:-1], parts[-1] + ".dcm")
        if not path.resolve().is_relative_to(self.root.resolve()):
            raise ValueError(f"path {path} leaves the output directory")
        return path

    def store(
        self,
        dataset: bytes,
        *,
        sop_class_uid: str,
        sop_instance_uid: str,
        transfer_syntax_uid: str,
        calling_ae: str = "",
        originator_ae: str = "",
        originator_message_id: int | None = None,
    ) -> Received:
        """Validate and write one instance, atomically.

        Parameters
        ----------
        dataset : bytes
            The encoded dataset exactly as received (no file meta).
        sop_class_uid, sop_instance_uid : str
            The C-STORE request's Affected SOP Class and Instance UIDs.
        transfer_syntax_uid : str
            The transfer syntax of the presentation context used.
        calling_ae, originator_ae, originator_message_id
            Where it came from, recorded as given.

        Returns
        -------
        Received
            Never raises for bad data: a refusal is a record with status
            ``refused`` and the DIMSE status to answer.
        """
        rec = Received(
            sop_instance_uid=sop_instance_uid,
            sop_class_uid=sop_class_uid,
            transfer_syntax_uid=transfer_syntax_uid,
            status="received",
            calling_ae=calling_ae,
            originator_ae=originator_ae,
            originator_message_id=originator_message_id,
        )

        def refuse(reason: str, code: int = STATUS_CANNOT_UNDERSTAND) -> Received:
            logger.warning(
                "refused C-STORE of %r from %s: %s", sop_instance_uid, calling_ae, reason
            )
            rec.status, rec.reason, rec.dimse_status = "refused", reason, code
            return rec

        if not is_valid_uid(sop_instance_uid) or not is_valid_uid(sop_class_uid):
            return refuse("invalid Affected SOP Class/Instance UID")
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = UID(sop_class_uid)
        meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
        meta.TransferSyntaxUID = UID(transfer_syntax_uid)
        meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
        meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
        head = DicomBytesIO()
        head.write(b"\x00" * 128 + b"DICM")
        write_file_meta_info(head, meta, enforce_standard=True)
        header_bytes = head.getvalue()
        try:
            ds = dcmread(
                io.BytesIO(header_bytes + dataset),
                stop_before_pixels=True,
                specific_tags=list(_HEADER_TAGS),
            )
        except Exception as exc:  # a C-STORE handler must never raise
            return refuse(f"dataset cannot be parsed: {exc}")
        header = {tag: _raw_text(ds, tag) for tag in _HEADER_TAGS}
        if header[0x00080018] != sop_instance_uid:
            return refuse(
                "SOPInstanceUID in the dataset differs from the C-STORE request",
                STATUS_DATASET_MISMATCH,
            )
        if header[0x00080016] != sop_class_uid:
            return refuse(
                "SOPClassUID in the dataset differs from the C-STORE request",
                STATUS_DATASET_MISMATCH,
            )
        rec.study_instance_uid = header[0x0020000D]
        rec.series_instance_uid = header[0x0020000E]
        rec.patient_id = header[0x00100020]
        try:
            final = self.path_for(rec.study_instance_uid, rec.series_instance_uid, sop_instance_uid)
        except ValueError as exc:
            return refuse(str(exc))

        digest = hashlib.sha256(dataset).hexdigest()
        rec.path, rec.size = str(final), len(header_bytes) + len(dataset)
        with self._lock:
            previous = self._seen.get(sop_instance_uid)
            if previous is None:
                self._seen[sop_instance_uid] = digest
        if previous is not None:
            if previous == digest:
                rec.status, rec.reason = "duplicate", "received again with identical bytes"
            else:
                rec.status = "conflict"
                rec.reason = "received again with different bytes; the first copy was kept"
                rec.path = ""
            return rec
        try:
            self._write_atomically(final, header_bytes, dataset)
        except OSError as exc:
            with self._lock:
                self._seen.pop(sop_instance_uid, None)
            rec.status, rec.path, rec.size = "failed", "", 0
            rec.reason = f"write failed: {exc.strerror or exc}"
            rec.dimse_status = STATUS_OUT_OF_RESOURCES
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                rec.dimse_status = STATUS_CANNOT_UNDERSTAND
            logger.error("cannot write %s: %s", final, exc)
        return rec

    def _write_atomically(self, final: Path, header: bytes, dataset: bytes) -> None:
        tmp = self.temp_dir / f"{uuid.uuid4().hex}.part"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                for chunk in (header, dataset):
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view) :]
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


InstanceCallback = Callable[[Received], None]


class StoreSCP:
    """A pynetdicom Storage SCP that writes through an :class:`InstanceStore`.

    Parameters
    ----------
    store : InstanceStore
        Where instances are written.
    ae_title : str
        Our AE title; associations calling another title are rejected.
    host, port : str, int
        The address to listen on.
    on_instance : callable
        Called with each :class:`Received` record from the association thread,
        before the C-STORE response is sent. It must not block for long.
    allowed_calling_aes : collection of str, optional
        Calling AE titles accepted; ``None`` accepts any.
    max_pdu : int
        Maximum PDU length we receive (0 = unlimited).
    """

    def __init__(
        self,
        store: InstanceStore,
        *,
        ae_title: str,
        host: str,
        port: int,
        on_instance: InstanceCallback,
        allowed_calling_aes: frozenset[str] | None = None,
        max_pdu: int = 0,
        network_timeout: float = 60.0,
    ) -> None:
        self.store = store
        self.ae_title = ae_title
        self.host = host
        self.port = port
        self.on_instance = on_instance
        self.allowed_calling_aes = allowed_calling_aes
        self.max_pdu = max_pdu
        self.network_timeout = network_timeout
        self._server: Any = None

    @property
    def running(self) -> bool:
        """Whether the listener is up."""
        return self._server is not None

    def start(self) -> None:
        """Start listening.

        Raises
        ------
        LocalSetupError
            If the port cannot be bound (in use, or not permitted).
        """
        from pydicom.uid import (
            DeflatedExplicitVRLittleEndian,
            ExplicitVRBigEndian,
            ExplicitVRLittleEndian,
            ImplicitVRLittleEndian,
        )
        from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt

        if self._server is not None:
            return
        # pynetdicom's acceptor picks the first of *our* syntaxes that the peer
        # proposed: uncompressed explicit VR first avoids a transcode at the PACS.
        preferred = [
            ExplicitVRLittleEndian,
            ImplicitVRLittleEndian,
            DeflatedExplicitVRLittleEndian,
            ExplicitVRBigEndian,
        ]
        syntaxes = preferred + [ts for ts in ALL_TRANSFER_SYNTAXES if ts not in preferred]
        ae = AE(ae_title=self.ae_title)
        ae.implementation_class_uid = IMPLEMENTATION_CLASS_UID
        ae.implementation_version_name = IMPLEMENTATION_VERSION_NAME
        ae.maximum_pdu_size = self.max_pdu
        ae.network_timeout = self.network_timeout
        ae.acse_timeout = self.network_timeout
        ae.dimse_timeout = self.network_timeout
        ae.maximum_associations = 16
        ae.require_called_aet = True
        if self.allowed_calling_aes is not None:
            ae.require_calling_aet = sorted(self.allowed_calling_aes)
        for cx in AllStoragePresentationContexts:
            if cx.abstract_syntax:
                ae.add_supported_context(cx.abstract_syntax, syntaxes)
        try:
            self._server = ae.start_server(
                (self.host, self.port),
                block=False,
                evt_handlers=[(evt.EVT_C_STORE, self._handle_store)],
            )
        except OSError as exc:
            hint = (
                "another program (or another dicommove session) is using it: "
                "stop it or choose another port (port=... or -p PORT)"
                if exc.errno == errno.EADDRINUSE
                else "choose another port or bind address"
            )
            raise LocalSetupError(
                f"cannot listen on {self.host or '*'}:{self.port} for the store SCP: "
                f"{exc.strerror or exc}; {hint}"
            ) from exc
        self.port = int(self._server.server_address[1])
        logger.debug("store SCP %s listening on %s:%s", self.ae_title, self.host, self.port)

    def stop(self) -> None:
        """Stop listening and close the store associations."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            logger.debug("store SCP %s stopped", self.ae_title)

    def _handle_store(self, event: Any) -> int:
        try:
            req = event.request
            originator_id = req.MoveOriginatorMessageID
            rec = self.store.store(
                event.encoded_dataset(include_meta=False),
                sop_class_uid=str(req.AffectedSOPClassUID),
                sop_instance_uid=str(req.AffectedSOPInstanceUID),
                transfer_syntax_uid=str(event.context.transfer_syntax),
                calling_ae=str(event.assoc.requestor.ae_title),
                originator_ae=str(req.MoveOriginatorApplicationEntityTitle or ""),
                originator_message_id=int(originator_id) if originator_id is not None else None,
            )
            self.on_instance(rec)
            return rec.dimse_status
        except Exception:  # never raise into pynetdicom: answer a failure instead
            logger.exception("unexpected error while storing an instance")
            return STATUS_CANNOT_UNDERSTAND
