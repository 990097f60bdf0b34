"""The embedded Store SCP: where moved instances land on disk.

Two layers, kept apart so that each can change without the other:

* :class:`InstanceStore` holds the store logic and no sockets. It validates the
  UIDs, names the file from validated UIDs only, receives into a temp file under
  the output root, fsyncs and renames it, detects duplicates and conflicts, and
  returns one :class:`Received` record per instance.
* :class:`StoreSCP` is the network side: a small DICOM upper-layer acceptor
  (PS3.8) that negotiates Storage and Verification, streams each C-STORE's
  P-DATA fragments straight into an :class:`Incoming` file (memory stays flat
  whatever the instance size), and answers only after the file has its final
  name. It enforces our maximum PDU length, a deadline for association set-up,
  the allowed calling AE titles and peer addresses, and never decodes the
  dataset beyond the few header elements it needs.
"""

from __future__ import annotations

import contextlib
import errno
import filecmp
import logging
import os
import re
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.uid import AllTransferSyntaxes, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from . import _ul
from ._header import DEFLATED, HEADER_TAGS, encode_file_meta, read_header
from ._version import __version__
from .errors import InputError, LocalSetupError

__all__ = [
    "DEFAULT_MAX_PDU",
    "IMPLEMENTATION_CLASS_UID",
    "IMPLEMENTATION_VERSION_NAME",
    "Incoming",
    "InstanceStore",
    "Received",
    "StoreSCP",
    "is_valid_uid",
]

logger = logging.getLogger("dicommove")

#: Our implementation class UID (a 2.25 UUID-derived root, PS3.5 B.2).
IMPLEMENTATION_CLASS_UID = "2.25.250386193394932478186766406962347125713"
#: Our implementation version name (at most 16 characters).
IMPLEMENTATION_VERSION_NAME = f"DICOMMOVE_{__version__}"[:16]

#: The largest P-DATA PDU we accept unless told otherwise (bytes).
DEFAULT_MAX_PDU = 262144
#: The largest A-ASSOCIATE-RQ we read (DCMTK uses the same 1 MiB cap).
MAX_ASSOCIATE_RQ = 1 << 20
#: The largest command set we accumulate.
MAX_COMMAND = 1 << 16

TEMP_DIR_NAME = ".dicommove-tmp"
CONFLICT_DIR_NAME = ".dicommove-conflicts"

#: C-STORE statuses we answer (PS3.4 B.2.3, PS3.7 C).
STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_DATASET_MISMATCH = 0xA900
STATUS_CANNOT_UNDERSTAND = 0xC000
STATUS_NOT_AUTHORIZED = 0x0124
STATUS_UNRECOGNIZED_OPERATION = 0x0211

VERIFICATION = "1.2.840.10008.1.1"

_UID_CHARS = "0123456789."
#: How much of each dataset is kept in memory to read its header.
HEAD_BYTES = 1 << 16

#: Named layouts, as templates.
LAYOUTS = {
    "hierarchical": "{StudyInstanceUID}/{SeriesInstanceUID}/{SOPInstanceUID}.dcm",
    "flat": "{SOPInstanceUID}.dcm",
}
_FIELDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")
_TEMPLATE_PART = re.compile(r"\{([A-Za-z]+)\}|([A-Za-z0-9._/-]+)|(.)", re.DOTALL)

#: A layout: "hierarchical", "flat", or a template of UID fields (see compile_layout).
Layout = str


def is_valid_uid(value: object) -> bool:
    """Return whether ``value`` is a UID that is safe to use in a file name.

    Digits and dots only, at most 64 characters, no empty component; so never
    ``.``, ``..``, a separator or a drive letter.
    """
    # String methods, not a regex: this runs several times per received instance.
    return (
        isinstance(value, str)
        and 0 < len(value) <= 64
        and not value.strip(_UID_CHARS)  # digits and dots only
        and value[0] != "."
        and value[-1] != "."
        and ".." not in value
    )


def compile_layout(layout: str) -> str:
    """Return the template of a layout, or raise :class:`InputError` if it is unsafe.

    A template may use only ``{StudyInstanceUID}``, ``{SeriesInstanceUID}``,
    ``{SOPInstanceUID}`` and ``{SOPClassUID}``, literal ``[A-Za-z0-9._-]`` and
    ``/``; it must contain ``{SOPInstanceUID}`` so that names are unique, and no
    path component may be empty, ``.`` or ``..``.
    """
    template = LAYOUTS.get(layout, layout)
    for match in _TEMPLATE_PART.finditer(template):
        name, _literal, bad = match.groups()
        if bad is not None:
            raise InputError(
                f"layout {layout!r}: character {bad!r} is not allowed; use UID fields "
                f"{', '.join('{' + f + '}' for f in _FIELDS)}, letters, digits, '._-' and '/'"
            )
        if name is not None and name not in _FIELDS:
            raise InputError(f"layout {layout!r}: unknown field {{{name}}}; use one of {_FIELDS}")
    if "{SOPInstanceUID}" not in template:
        raise InputError(f"layout {layout!r} must contain {{SOPInstanceUID}} so names are unique")
    parts = template.split("/")
    if template.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise InputError(f"layout {layout!r}: no empty, '.' or '..' path components")
    return template


#: Temp files being written by this process, across all stores (guarded by _IN_FLIGHT_LOCK).
_IN_FLIGHT: set[str] = set()
_IN_FLIGHT_LOCK = threading.Lock()


def _writer_alive(part: Path) -> bool:
    """Whether the process that named this temp file (``<pid>-<hex>.part``) still writes it."""
    pid_text = part.name.partition("-")[0]
    if not pid_text.isdigit():
        return False
    if int(pid_text) == os.getpid():
        with _IN_FLIGHT_LOCK:
            return str(part) in _IN_FLIGHT  # else left by an earlier, interrupted move of ours
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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


@dataclass(slots=True)
class Received:
    """What happened to one C-STORE that reached our Store SCP.

    ``status`` is one of the manifest statuses: ``received``, ``duplicate``,
    ``conflict``, ``refused`` or ``failed``.
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
    received_at: float = field(default_factory=time.time)  # epoch seconds
    calling_ae: str = ""
    originator_ae: str = ""
    originator_message_id: int | None = None
    dimse_status: int = STATUS_SUCCESS
    errno: int | None = None


AcceptCallback = Callable[[Received], bool]


class Incoming:
    """One instance being received: a temp file under the output root.

    Create it with :meth:`InstanceStore.begin_instance`, :meth:`write` the
    dataset fragments as they arrive, then :meth:`finish` (or :meth:`abort`).
    Writes after a refusal or a write error are discarded, so the sender can be
    drained and answered.
    """

    def __init__(self, store: InstanceStore, rec: Received) -> None:
        self.store = store
        self.rec = rec
        self._fd: int | None = None
        self._tmp: str | None = None
        self._meta_length = 0
        self._head = bytearray()  # the first HEAD_BYTES of the dataset, for its header
        self.written = 0
        if rec.status == "refused":
            return
        head = encode_file_meta(
            rec.sop_class_uid,
            rec.sop_instance_uid,
            rec.transfer_syntax_uid,
            IMPLEMENTATION_CLASS_UID,
            IMPLEMENTATION_VERSION_NAME,
        )  # a clean zero preamble, never a copied one
        self._tmp = f"{store.temp_prefix}{os.getpid()}-{os.urandom(8).hex()}.part"
        with _IN_FLIGHT_LOCK:
            _IN_FLIGHT.add(self._tmp)
        try:
            self._fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as exc:
            self._fail(exc)
            return
        self._meta_length = len(head)
        self.write(head)

    @property
    def temp_path(self) -> Path | None:
        """The temp file, while the instance is being received."""
        return Path(self._tmp) if self._fd is not None and self._tmp is not None else None

    def write(self, data: bytes | memoryview) -> None:
        """Append dataset bytes (never raises; a write error fails the instance)."""
        if self._fd is None:
            return
        view = memoryview(data)
        if self.written >= self._meta_length and len(self._head) < HEAD_BYTES:
            self._head += view[: HEAD_BYTES - len(self._head)]
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            self._fail(exc)
            return
        self.written += len(data)

    def _fail(self, exc: OSError) -> None:
        self._discard()
        rec = self.rec
        rec.status, rec.path, rec.size, rec.errno = "failed", "", 0, exc.errno
        rec.reason = f"write failed: {exc.strerror or exc}"
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        rec.dimse_status = STATUS_OUT_OF_RESOURCES if full else STATUS_CANNOT_UNDERSTAND
        logger.error("cannot write %s to %s: %s", rec.sop_instance_uid, self.store.root, exc)

    def _discard(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
        if self._tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmp)
            self._done()

    def _done(self) -> None:
        if self._tmp is not None:
            with _IN_FLIGHT_LOCK:
                _IN_FLIGHT.discard(self._tmp)

    def abort(self, reason: str) -> Received:
        """Give up on this instance: delete the temp file, return a ``failed`` record."""
        if self.rec.status == "received":
            self.rec.status, self.rec.reason = "failed", reason
            self.rec.dimse_status = STATUS_CANNOT_UNDERSTAND
        self._discard()
        return self.rec

    def finish(self, accept: AcceptCallback | None = None) -> Received:
        """Validate the received instance and give it its final name.

        Parameters
        ----------
        accept : callable, optional
            Called with the record once its header is known; ``False`` refuses
            the instance (its ``reason`` may be set by the callback).

        Returns
        -------
        Received
        """
        rec = self.rec
        if self._fd is None or self._tmp is None:
            return rec
        fd, self._fd = self._fd, None
        try:
            if self.store.fsync:
                os.fsync(fd)
        except OSError as exc:
            self._fd = fd
            self._fail(exc)
            return rec
        finally:
            if self._fd is None:
                os.close(fd)
        tmp = self._tmp
        whole = self.written - self._meta_length == len(self._head)
        header = read_header(self._head, rec.transfer_syntax_uid, complete=whole)
        if header is None and rec.transfer_syntax_uid in DEFLATED:
            return self._refuse("deflated dataset whose header is not in its first 64 KiB")
        if header is None:  # a long or deeply nested header: let pydicom read the file
            try:
                ds = dcmread(tmp, stop_before_pixels=True, specific_tags=list(HEADER_TAGS))
                header = {tag: _raw_text(ds, tag) for tag in HEADER_TAGS}
            except Exception as exc:  # untrusted bytes: any parse error is a refusal
                return self._refuse(f"dataset cannot be parsed: {exc}")
        if header[0x00080018] != rec.sop_instance_uid:
            return self._refuse(
                "SOPInstanceUID in the dataset differs from the C-STORE request",
                STATUS_DATASET_MISMATCH,
            )
        if header[0x00080016] != rec.sop_class_uid:
            return self._refuse(
                "SOPClassUID in the dataset differs from the C-STORE request",
                STATUS_DATASET_MISMATCH,
            )
        store = self.store
        rec.study_instance_uid = store.intern(header[0x0020000D])
        rec.series_instance_uid = store.intern(header[0x0020000E])
        rec.patient_id = store.intern(header[0x00100020])
        try:
            final = self.store.path_for(rec)
        except ValueError as exc:
            return self._refuse(str(exc))
        if accept is not None:
            try:
                accepted = accept(rec)
            except Exception as exc:  # a failing callback must not lose the association
                logger.exception("accept callback failed for %s", rec.sop_instance_uid)
                return self._refuse(f"internal error while routing: {exc}")
            if not accepted:
                return self._refuse(rec.reason or "refused", STATUS_NOT_AUTHORIZED)
        rec.size = self.written
        try:
            self.store.commit(rec, tmp, final)
        except OSError as exc:
            self._fail(exc)  # removes the temp file
        finally:
            self._done()
        return rec

    def _refuse(self, reason: str, code: int = STATUS_CANNOT_UNDERSTAND) -> Received:
        self._discard()
        rec = self.rec
        rec.status, rec.reason, rec.dimse_status, rec.path, rec.size = (
            "refused",
            reason,
            code,
            "",
            0,
        )
        logger.warning(
            "refused C-STORE of %r from %s: %s", rec.sop_instance_uid, rec.calling_ae, reason
        )
        return rec


class InstanceStore:
    """Validates, names and atomically writes received instances.

    Parameters
    ----------
    root : path-like
        The output directory. Temp files go to ``root/.dicommove-tmp``, so the
        final rename never crosses a filesystem; conflicting copies go to
        ``root/.dicommove-conflicts``.
    layout : str
        ``"hierarchical"`` (``<Study>/<Series>/<SOPInstance>.dcm``), ``"flat"``
        (``<SOPInstance>.dcm``, as dicom-movescu) or a template of UID fields,
        see :func:`compile_layout`.
    fsync : bool
        Flush each file to stable storage before renaming it (default True).
    """

    def __init__(
        self, root: str | os.PathLike[str], *, layout: Layout = "hierarchical", fsync: bool = True
    ) -> None:
        self.root = Path(root).absolute()
        #: ``root/.dicommove-tmp/`` as a string: temp names are built per instance.
        self.temp_prefix = os.path.join(self.root, TEMP_DIR_NAME, "")
        self.layout = layout
        self.template = compile_layout(layout)
        self._fields = [name for name in _FIELDS if "{" + name + "}" in self.template]
        self.fsync = fsync
        self._lock = threading.Lock()
        # SOPInstanceUID -> (Study, Series, SOP Class UID) of its file, in this move: its
        # path follows from the layout (kept small: one move may hold 100,000s of them)
        self._seen: dict[str, tuple[str, str, str]] = {}
        self._strings: dict[str, str] = {}  # one copy of each Study/Series/class UID
        self._dirs: set[str] = set()  # directories known to exist

    @property
    def temp_dir(self) -> Path:
        """The directory holding files that are being received."""
        return self.root / TEMP_DIR_NAME

    @property
    def conflict_dir(self) -> Path:
        """Where second copies with different bytes are kept."""
        return self.root / CONFLICT_DIR_NAME

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
                if _writer_alive(stale):
                    continue  # another live process is receiving into this directory
                stale.unlink(missing_ok=True)
                logger.info("removed stale temp file %s", stale)
            probe = self.temp_dir / f"{os.getpid()}-probe-{uuid.uuid4().hex}.part"
            probe.write_bytes(b"")
            probe.unlink(missing_ok=True)  # a concurrent prepare() may have removed it
        except OSError as exc:
            raise LocalSetupError(
                f"cannot write to the output directory {self.root}: {exc.strerror or exc}. "
                "Choose a directory you can write to (out=... or -o DIR)."
            ) from exc

    def begin(self) -> None:
        """Start a new move: forget which instances and directories were seen."""
        with self._lock:
            self._seen.clear()
            self._dirs.clear()

    def intern(self, text: str) -> str:
        """Return one shared copy of a string that many instances repeat (a Series UID)."""
        return self._strings.setdefault(text, text)

    def path_for(self, rec: Received) -> str:
        """Return the final path of an instance, built from its validated UIDs only.

        Raises
        ------
        ValueError
            If a UID the layout uses is not a valid UID, or the path would leave
            the output root.
        """
        values = {
            "StudyInstanceUID": rec.study_instance_uid,
            "SeriesInstanceUID": rec.series_instance_uid,
            "SOPInstanceUID": rec.sop_instance_uid,
            "SOPClassUID": rec.sop_class_uid,
        }
        for name in self._fields:
            if not is_valid_uid(values[name]):
                raise ValueError(f"unsafe {name} {values[name]!r} for a file name")
        relative = os.path.normpath(self.template.format(**values))
        if os.path.isabs(relative) or relative.split(os.sep)[0] in ("..", "."):
            raise ValueError(f"path {relative} leaves the output directory")
        return os.path.join(self.root, relative)

    def begin_instance(
        self,
        *,
        sop_class_uid: str,
        sop_instance_uid: str,
        transfer_syntax_uid: str,
        calling_ae: str = "",
        originator_ae: str = "",
        originator_message_id: int | None = None,
    ) -> Incoming:
        """Start receiving one instance; see :class:`Incoming`."""
        rec = Received(
            sop_instance_uid=sop_instance_uid,
            sop_class_uid=self.intern(sop_class_uid),
            transfer_syntax_uid=self.intern(transfer_syntax_uid),
            status="received",
            calling_ae=calling_ae,
            originator_ae=originator_ae,
            originator_message_id=originator_message_id,
        )
        if not is_valid_uid(sop_instance_uid) or not is_valid_uid(sop_class_uid):
            rec.status, rec.dimse_status = "refused", STATUS_CANNOT_UNDERSTAND
            rec.reason = "invalid Affected SOP Class/Instance UID"
            logger.warning(
                "refused C-STORE of %r from %s: %s", sop_instance_uid, calling_ae, rec.reason
            )
        return Incoming(self, rec)

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
        accept: AcceptCallback | None = None,
    ) -> Received:
        """Store one whole encoded dataset (no file meta): begin, write, finish."""
        incoming = self.begin_instance(
            sop_class_uid=sop_class_uid,
            sop_instance_uid=sop_instance_uid,
            transfer_syntax_uid=transfer_syntax_uid,
            calling_ae=calling_ae,
            originator_ae=originator_ae,
            originator_message_id=originator_message_id,
        )
        incoming.write(dataset)
        return incoming.finish(accept)

    def commit(self, rec: Received, tmp: str, final: str) -> None:
        """Rename ``tmp`` to ``final``, or record a duplicate or a quarantined conflict."""
        with self._lock:
            fields = self._seen.get(rec.sop_instance_uid)
            existing = None if fields is None else self.layout_path(rec.sop_instance_uid, fields)
            if existing is None and os.path.exists(final):
                existing = final  # from an earlier run: never overwritten silently
                earlier_run = True
            else:
                earlier_run = False
            if existing is not None:
                if filecmp.cmp(tmp, existing, shallow=False):
                    os.unlink(tmp)
                    rec.path = existing
                    if not earlier_run:
                        rec.status, rec.reason = "duplicate", "received again with identical bytes"
                    else:
                        self._seen[rec.sop_instance_uid] = self._uids_of(rec)
                    return
                self.conflict_dir.mkdir(exist_ok=True)
                keep = self.conflict_dir / f"{rec.sop_instance_uid}.{uuid.uuid4().hex[:8]}.dcm"
                os.replace(tmp, keep)
                rec.status, rec.path = "conflict", str(keep)
                rec.reason = (
                    f"same SOPInstanceUID as {existing} with different bytes; the first copy "
                    "was kept and this one quarantined"
                )
                logger.warning("conflicting copy of %s kept at %s", rec.sop_instance_uid, keep)
                return
            parent = os.path.dirname(final)
            if parent not in self._dirs:
                os.makedirs(parent, exist_ok=True)
                self._dirs.add(parent)
            try:
                os.replace(tmp, final)
            except FileNotFoundError:  # its directory was removed during the move
                os.makedirs(parent, exist_ok=True)
                os.replace(tmp, final)
            self._seen[rec.sop_instance_uid] = self._uids_of(rec)
            rec.path = final
            rec.received_at = time.time()

    @staticmethod
    def _uids_of(rec: Received) -> tuple[str, str, str]:
        return (rec.study_instance_uid, rec.series_instance_uid, rec.sop_class_uid)

    def layout_path(self, sop_instance_uid: str, fields: tuple[str, str, str]) -> str:
        """Return the final path of an instance whose UIDs were validated when it arrived."""
        study, series, sop_class = fields
        relative = self.template.format(
            StudyInstanceUID=study,
            SeriesInstanceUID=series,
            SOPInstanceUID=sop_instance_uid,
            SOPClassUID=sop_class,
        )
        return os.path.join(self.root, os.path.normpath(relative))


InstanceCallback = Callable[[Received], None]


class _Closed(Exception):
    """The connection ended (EOF, reset, timeout or a protocol violation we aborted)."""


class StoreSCP:
    """Our DICOM Storage SCP: negotiates, streams C-STOREs to disk, answers after rename.

    Parameters
    ----------
    store : InstanceStore
        Where instances are written.
    ae_title : str
        Our AE title; associations calling another title are rejected.
    host, port : str, int
        The address to listen on (``""`` = all interfaces, port 0 = any free one).
    on_instance : callable
        Called with each :class:`Received` record, from the association's thread,
        before the C-STORE response is sent. It must not block for long.
    allowed_calling_aes : collection of str, optional
        Calling AE titles accepted; ``None`` accepts any.
    allowed_hosts : collection of str, optional
        Peer IP addresses accepted; ``None`` accepts any.
    accept : callable, optional
        Called with a record before its file gets its final name; ``False``
        refuses it (status 0x0124) and nothing is written.
    max_pdu : int
        The largest P-DATA PDU we accept (and announce); 0 = no limit.
    network_timeout : float
        Seconds of silence after which a store association is aborted.
    acse_timeout : float
        Seconds a peer has, from connecting, to complete its A-ASSOCIATE-RQ.
    accept_unknown_sop_classes : bool
        Also accept SOP classes that are not standard Storage classes.
    max_associations : int
        Concurrent store associations; more are rejected as transient.
    """

    def __init__(
        self,
        store: InstanceStore,
        *,
        ae_title: str,
        host: str,
        port: int,
        on_instance: InstanceCallback,
        allowed_calling_aes: Collection[str] | None = None,
        allowed_hosts: Collection[str] | None = None,
        accept: AcceptCallback | None = None,
        max_pdu: int = DEFAULT_MAX_PDU,
        network_timeout: float = 60.0,
        acse_timeout: float = 10.0,
        accept_unknown_sop_classes: bool = False,
        max_associations: int = 16,
    ) -> None:
        self.store = store
        self.ae_title = ae_title
        self.host = host
        self.port = port
        self.on_instance = on_instance
        self.allowed_calling_aes = (
            frozenset(allowed_calling_aes) if allowed_calling_aes is not None else None
        )
        self.allowed_hosts = frozenset(allowed_hosts) if allowed_hosts is not None else None
        self.accept = accept
        self.max_pdu = max_pdu
        self.network_timeout = network_timeout
        self.acse_timeout = acse_timeout
        self.accept_unknown_sop_classes = accept_unknown_sop_classes
        self._slots = threading.BoundedSemaphore(max_associations)
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._storage_classes: frozenset[str] | None = None

    @property
    def running(self) -> bool:
        """Whether the listener is up."""
        return self._listener is not None

    def start(self) -> None:
        """Start listening.

        Raises
        ------
        LocalSetupError
            If the port cannot be bound (in use, or not permitted).
        """
        if self._listener is not None:
            return
        from pynetdicom.sop_class import _STORAGE_CLASSES

        self._storage_classes = frozenset(str(uid) for uid in _STORAGE_CLASSES.values())
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((self.host, self.port))
            listener.listen(64)
        except OSError as exc:
            listener.close()
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
        self.port = int(listener.getsockname()[1])
        self._listener = listener
        self._thread = threading.Thread(
            target=self._accept_loop, name=f"dicommove-scp-{self.port}", daemon=True
        )
        self._thread.start()
        logger.debug("store SCP %s listening on %s:%s", self.ae_title, self.host, self.port)

    def stop(self) -> None:
        """Stop listening and abort the store associations still open."""
        listener, self._listener = self._listener, None
        if listener is None:
            return
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes accept() on Linux
        listener.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            connections = list(self._connections.items())
        for conn, _ in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for _, thread in connections:
            thread.join(timeout=5)
        logger.debug("store SCP %s stopped", self.ae_title)

    def _accept_loop(self) -> None:
        listener = self._listener
        while listener is not None and self._listener is listener:
            try:
                conn, address = listener.accept()
            except OSError:
                return
            thread = threading.Thread(
                target=self._serve, args=(conn, address), name="dicommove-store", daemon=True
            )
            with self._lock:
                self._connections[conn] = thread
            thread.start()

    # -- one association ---------------------------------------------------
    def _serve(self, conn: socket.socket, address: tuple[str, int]) -> None:
        acquired = self._slots.acquire(blocking=False)
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _Association(self, conn, address[0], over_limit=not acquired).run()
        except Exception:  # a bug must not kill the listener or leak the socket
            logger.exception("store association from %s failed", address[0])
        finally:
            if acquired:
                self._slots.release()
            with self._lock:
                self._connections.pop(conn, None)
            conn.close()


class _Association:
    """The state of one incoming association (one thread)."""

    def __init__(self, scp: StoreSCP, conn: socket.socket, ip: str, *, over_limit: bool) -> None:
        self.scp = scp
        self.conn = conn
        self.ip = ip
        self.over_limit = over_limit
        self.calling_ae = ""
        self.contexts: dict[int, _ul.PresentationContext] = {}
        self.buffer = bytearray(1 << 18)
        self.incoming: Incoming | None = None
        self.message = (0, 0)  # (message ID, presentation context) of the C-STORE in progress
        self.current_timeout: float | None = None

    # -- reading -------------------------------------------------------------
    def recv_into(self, view: memoryview, deadline: float | None = None) -> None:
        """Fill ``view`` completely from the socket."""
        while view:
            timeout = self.scp.network_timeout
            if deadline is not None:
                timeout = min(timeout, deadline - time.monotonic())
                if timeout <= 0:
                    raise _Closed("association set-up took too long")
            self.timeout(timeout)
            try:
                n = self.conn.recv_into(view)
            except TimeoutError:
                raise _Closed("network timeout") from None
            except OSError as exc:
                raise _Closed(f"connection error: {exc}") from None
            if n == 0:
                raise _Closed("connection closed by the peer")
            view = view[n:]

    def recv(self, n: int, deadline: float | None = None) -> bytes:
        data = bytearray(n)
        self.recv_into(memoryview(data), deadline)
        return bytes(data)

    def timeout(self, seconds: float) -> None:
        """Set the socket timeout (a system call, so only when it changes)."""
        if seconds != self.current_timeout:
            self.conn.settimeout(seconds)
            self.current_timeout = seconds

    def send(self, data: bytes) -> None:
        self.timeout(self.scp.network_timeout)
        try:
            self.conn.sendall(data)
        except OSError as exc:
            raise _Closed(f"send failed: {exc}") from None

    def abort(self, why: str) -> None:
        logger.warning(
            "store SCP aborts the association from %s (%s): %s",
            self.ip,
            self.calling_ae or "?",
            why,
        )
        with contextlib.suppress(_Closed):
            self.send(_ul.encode_abort())

    # -- the association -----------------------------------------------------
    def run(self) -> None:
        try:
            if not self.associate():
                return
            self.serve_requests()
        except _Closed as closed:
            self.end_incoming(f"the association ended mid-instance: {closed}")
            logger.debug("store association from %s ended: %s", self.ip, closed)
        except _ul.ProtocolError as exc:
            self.end_incoming(f"protocol error: {exc}")
            self.abort(f"protocol error: {exc}")

    def end_incoming(self, reason: str) -> None:
        incoming, self.incoming = self.incoming, None
        if incoming is not None:
            rec = incoming.abort(reason)
            logger.warning("lost %s from %s: %s", rec.sop_instance_uid, self.ip, reason)
            self.scp.on_instance(rec)

    def associate(self) -> bool:
        scp = self.scp
        deadline = time.monotonic() + scp.acse_timeout
        header = self.recv(6, deadline)
        pdu_type, length = header[0], struct.unpack(">I", header[2:6])[0]
        if pdu_type != _ul.PDU_ASSOCIATE_RQ:
            self.abort(f"expected A-ASSOCIATE-RQ, got PDU type 0x{pdu_type:02X}")
            return False
        if length > MAX_ASSOCIATE_RQ:
            self.abort(f"A-ASSOCIATE-RQ of {length} bytes announced (limit {MAX_ASSOCIATE_RQ})")
            return False
        rq = _ul.decode_associate_rq(self.recv(length, deadline))
        self.calling_ae = rq.calling_ae
        reject: tuple[int, int, int, str] | None = None
        if rq.application_context != _ul.APPLICATION_CONTEXT:
            reject = (1, 1, 2, f"application context {rq.application_context!r} not supported")
        elif rq.called_ae != scp.ae_title:
            reject = (1, 1, 7, f"called AE {rq.called_ae!r} is not ours ({scp.ae_title!r})")
        elif scp.allowed_calling_aes is not None and rq.calling_ae not in scp.allowed_calling_aes:
            reject = (1, 1, 3, f"calling AE {rq.calling_ae!r} is not allowed")
        elif scp.allowed_hosts is not None and self.ip not in scp.allowed_hosts:
            reject = (1, 1, 1, f"address {self.ip} is not allowed")
        elif self.over_limit:
            reject = (2, 3, 2, "too many store associations at once")
        if reject is not None:
            result, source, reason, why = reject
            logger.warning(
                "store SCP rejected an association from %s, calling AE %r, called AE %r: %s",
                self.ip,
                rq.calling_ae,
                rq.called_ae,
                why,
            )
            self.send(_ul.encode_associate_rj(result, source, reason))
            return False
        for cx in rq.contexts:
            self.negotiate(cx)
            if cx.result == _ul.ACCEPTED:
                self.contexts[cx.context_id] = cx
        self.send(
            _ul.encode_associate_ac(
                rq,
                max_pdu=scp.max_pdu,
                implementation_class_uid=IMPLEMENTATION_CLASS_UID,
                implementation_version_name=IMPLEMENTATION_VERSION_NAME,
            )
        )
        logger.debug(
            "store association from %s (%s): %d contexts accepted",
            self.ip,
            rq.calling_ae,
            len(self.contexts),
        )
        return True

    def negotiate(self, cx: _ul.PresentationContext) -> None:
        scp = self.scp
        storage = scp._storage_classes or frozenset()
        if cx.abstract_syntax == VERIFICATION:
            ours: list[str] = [ImplicitVRLittleEndian, ExplicitVRLittleEndian]
        elif cx.abstract_syntax in storage or (
            scp.accept_unknown_sop_classes and is_valid_uid(cx.abstract_syntax)
        ):
            ours = list(AllTransferSyntaxes)
        else:
            cx.result = _ul.ABSTRACT_SYNTAX_NOT_SUPPORTED
            return
        usable = [ts for ts in cx.transfer_syntaxes if ts in ours]
        if not usable:
            cx.result = _ul.TRANSFER_SYNTAXES_NOT_SUPPORTED
            return
        # Uncompressed explicit VR when offered, else the sender's first choice.
        cx.transfer_syntax = (
            ExplicitVRLittleEndian if ExplicitVRLittleEndian in usable else usable[0]
        )
        cx.result = _ul.ACCEPTED

    def serve_requests(self) -> None:
        scp = self.scp
        command = bytearray()
        command_cx = 0
        while True:
            header = self.recv(6)
            pdu_type, length = header[0], struct.unpack(">I", header[2:6])[0]
            if pdu_type == _ul.PDU_P_DATA:
                if scp.max_pdu and length > scp.max_pdu:
                    self.end_incoming("PDU over the negotiated maximum")
                    self.abort(f"P-DATA of {length} bytes over our maximum of {scp.max_pdu}")
                    return
                remaining = length
                while remaining:
                    if remaining < 6:
                        raise _ul.ProtocolError("truncated PDV item")
                    item = self.recv(6)
                    pdv_length, cx_id, control = struct.unpack(">IBB", item)
                    if pdv_length < 2 or pdv_length + 4 > remaining:
                        raise _ul.ProtocolError("PDV item overruns its PDU")
                    if cx_id not in self.contexts:
                        raise _ul.ProtocolError(f"presentation context {cx_id} was not accepted")
                    remaining -= pdv_length + 4
                    size = pdv_length - 2
                    if control & 0x01:  # command fragment
                        if len(command) + size > MAX_COMMAND:
                            raise _ul.ProtocolError("command set too long")
                        command += self.recv(size)
                        command_cx = cx_id
                        if control & 0x02:
                            self.on_command(bytes(command), command_cx)
                            command.clear()
                    else:
                        self.on_data(size, last=bool(control & 0x02))
            elif pdu_type == _ul.PDU_RELEASE_RQ:
                self.recv(length)
                self.end_incoming("the peer released the association mid-instance")
                self.send(_ul.RELEASE_RP)
                return
            elif pdu_type == _ul.PDU_ABORT:
                self.recv(min(length, 4))
                raise _Closed("the peer aborted the association")
            else:
                raise _ul.ProtocolError(f"unexpected PDU type 0x{pdu_type:02X}")

    def on_data(self, size: int, *, last: bool) -> None:
        incoming = self.incoming
        if incoming is None:
            raise _ul.ProtocolError("dataset fragment without a C-STORE command")
        view = memoryview(self.buffer)
        while size:
            chunk = view[: min(size, len(view))]
            self.recv_into(chunk)
            incoming.write(chunk)
            size -= len(chunk)
        if last:
            self.incoming = None
            rec = incoming.finish(self.scp.accept)
            self.respond_store(rec)

    def on_command(self, raw: bytes, cx_id: int) -> None:
        if self.incoming is not None:
            raise _ul.ProtocolError("a new command before the previous dataset ended")
        command = _ul.decode_command(raw)
        field_ = _ul.command_us(command, 0x0100)
        message_id = _ul.command_us(command, 0x0110) or 0
        has_dataset = _ul.command_us(command, 0x0800) != _ul.NO_DATASET
        sop_class = _ul.command_text(command, 0x0002)
        if field_ == _ul.C_ECHO_RQ and not has_dataset:
            self.send(
                _ul.encode_command_pdata(
                    cx_id, _ul.encode_response(_ul.C_ECHO_RSP, message_id, 0, sop_class)
                )
            )
            return
        if field_ != _ul.C_STORE_RQ or not has_dataset:
            if has_dataset:
                raise _ul.ProtocolError(f"unsupported DIMSE command 0x{field_ or 0:04X}")
            response = _ul.encode_response(
                (field_ or 0) | 0x8000, message_id, STATUS_UNRECOGNIZED_OPERATION, sop_class
            )
            self.send(_ul.encode_command_pdata(cx_id, response))
            return
        cx = self.contexts[cx_id]
        originator = _ul.command_us(command, 0x1031)
        incoming = self.scp.store.begin_instance(
            sop_class_uid=sop_class,
            sop_instance_uid=_ul.command_text(command, 0x1000),
            transfer_syntax_uid=cx.transfer_syntax,
            calling_ae=self.calling_ae,
            originator_ae=_ul.command_text(command, 0x1030),
            originator_message_id=originator,
        )
        if sop_class != cx.abstract_syntax and incoming.rec.status == "received":
            incoming.rec.status = "refused"
            incoming.rec.reason = "Affected SOP Class differs from the presentation context"
            incoming.rec.dimse_status = STATUS_DATASET_MISMATCH
            incoming.abort(incoming.rec.reason)
        self.incoming = incoming
        self.message = (message_id, cx_id)

    def respond_store(self, rec: Received) -> None:
        message_id, cx_id = self.message
        try:
            self.scp.on_instance(rec)
        except Exception:  # the record is kept; answer a failure rather than die
            logger.exception("error while recording %s", rec.sop_instance_uid)
            rec.dimse_status = STATUS_CANNOT_UNDERSTAND
        response = _ul.encode_response(
            _ul.C_STORE_RSP, message_id, rec.dimse_status, rec.sop_class_uid, rec.sop_instance_uid
        )
        self.send(_ul.encode_command_pdata(cx_id, response))
