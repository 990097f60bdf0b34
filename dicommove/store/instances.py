"""The store itself: output root, temp files, names, duplicates and conflicts, group sync."""

from __future__ import annotations

import filecmp
import itertools
import logging
import os
import struct
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

from .. import _status as st
from .._header import encode_file_meta
from ..errors import InputError, LocalSetupError
from ._fs import rename_noreplace, syncfs, writer_alive
from .incoming import Incoming
from .layout import FIELDS, Layout, compile_layout, is_valid_uid
from .record import (
    CONFLICT_DIR_NAME,
    DURABILITIES,
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
    TEMP_DIR_NAME,
    AcceptCallback,
    Durability,
    Received,
)

__all__ = ["InstanceStore"]

logger = logging.getLogger("dicommove")


def _meta_parts(sop_class: str, transfer_syntax: str) -> tuple[bytes, bytes, bytes, int]:
    """File meta of a SOP class and transfer syntax, cut around the SOP Instance UID value.

    Returns (up to the group length value, from there to the UID's length field, after
    the UID, the group length without the UID value).
    """
    marker = "9" * 64
    full = encode_file_meta(
        sop_class, marker, transfer_syntax, IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
    )
    # 128-byte preamble, "DICM", then (0002,0000) UL whose 4-byte value is at 140
    (group_length,) = struct.unpack_from("<I", full, 140)
    at = full.index(b"\x02\x00\x03\x00UI", 144) + 8  # the (0002,0003) value
    assert full[at : at + 64] == marker.encode()
    return full[:140], full[144 : at - 2], full[at + 64 :], group_length - 64


def _truncated_copy(short: str, whole: str) -> bool:
    """Whether file ``short`` holds a strict prefix of file ``whole`` (empty included)."""
    size = os.path.getsize(short)
    if size >= os.path.getsize(whole):
        return False
    with open(short, "rb") as a, open(whole, "rb") as b:
        while True:
            chunk = a.read(1 << 16)
            if not chunk:
                return True
            if b.read(len(chunk)) != chunk:
                return False


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
    durability : {"request", "instance", "none"}
        When files reach stable storage; see the module docstring.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        layout: Layout = "hierarchical",
        durability: Durability = "request",
        tags: Mapping[int, tuple[str, str]] | None = None,
    ) -> None:
        if durability not in DURABILITIES:
            raise InputError(f"durability={durability!r}: use 'request', 'instance' or 'none'")
        self.root = Path(root).absolute()
        #: ``root/.dicommove-tmp/`` as a string: temp names are built per instance.
        self.temp_prefix = os.path.join(self.root, TEMP_DIR_NAME, f"{os.getpid()}-")
        self.layout = layout
        self.template = compile_layout(layout)
        self._root_prefix = os.path.join(self.root, "")
        self._fields = [name for name in FIELDS if "{" + name + "}" in self.template]
        self.durability: Durability = durability
        #: Header elements read into each record (``tags=``): tag -> (keyword, VR).
        self.tags: dict[int, tuple[str, str]] = dict(tags or {})
        self.tag_vrs: dict[int, str] = {tag: vr for tag, (_kw, vr) in self.tags.items()}
        self._lock = threading.Lock()
        # files named from this time on are this move's (a copy of one is a duplicate)
        self._begun_ns = time.time_ns()
        #: Files named so far (:meth:`sync` says up to which one it made durable).
        self.generation = 0
        self.bytes_named = 0
        self.synced = 0
        self._strings: dict[str, str] = {}  # one copy of each Study/Series/class UID
        self._dirs: set[str] = set()  # directories known to exist
        self._meta: dict[tuple[str, str], tuple[bytes, bytes, bytes, int]] = {}
        self._counter = itertools.count(1)

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
                if writer_alive(stale):
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
            self._begun_ns = self._fs_now()
            self._dirs.clear()

    def _fs_now(self) -> int:
        """Return the output filesystem's clock, as file ctimes see it (it may be coarse)."""
        marker = f"{self.temp_prefix}begin-{id(self):x}.part"
        try:
            os.close(os.open(marker, os.O_WRONLY | os.O_CREAT, 0o644))
            try:
                return os.stat(marker).st_ctime_ns
            finally:
                os.unlink(marker)
        except OSError:
            return time.time_ns() - 100_000_000  # a coarse clock lags by some milliseconds

    def intern(self, text: str) -> str:
        """Return one shared copy of a string that many instances repeat (a Series UID)."""
        return self._strings.setdefault(text, text)

    def temp_name(self) -> str:
        """Return a new temp file name: ``<root>/.dicommove-tmp/<pid>-<n>-<x>.part``."""
        return f"{self.temp_prefix}{next(self._counter)}-{id(self) & 0xFFFF:x}.part"

    def file_meta(self, sop_class: str, sop_instance: str, transfer_syntax: str) -> bytes:
        """Return the preamble and File Meta Information of an instance (cached per class)."""
        parts = self._meta.get((sop_class, transfer_syntax))
        if parts is None:
            parts = self._meta[(sop_class, transfer_syntax)] = _meta_parts(
                sop_class, transfer_syntax
            )
        head, between, tail, base = parts
        uid = sop_instance.encode("ascii", "replace")
        if len(uid) % 2:
            uid += b"\x00"
        length = struct.pack("<I", base + len(uid))
        return b"".join((head, length, between, struct.pack("<H", len(uid)), uid, tail))

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
        # Validated UIDs hold digits and single dots, never a separator, "." or "..", and
        # the template's own parts were checked by compile_layout: nothing to normalise.
        relative = self.template.format(**values)
        if relative.startswith("/") or (os.sep != "/" and os.path.isabs(relative)):
            raise ValueError(f"path {relative} leaves the output directory")
        return self._root_prefix + relative

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
            rec.status, rec.dimse_status = "refused", st.STORE_CANNOT_UNDERSTAND
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
        return incoming.finish(accept, fsync=self.durability == "instance")

    def commit(self, rec: Received, tmp: str, final: str) -> None:
        """Rename ``tmp`` to ``final``, or record a duplicate or a quarantined conflict.

        The rename never replaces a file: if ``final`` exists, the new copy is compared
        with it. A file named before this move began (an earlier run's) makes an
        identical copy ``received``; one named during this move, a ``duplicate``.
        """
        parent = os.path.dirname(final)
        if parent not in self._dirs:
            os.makedirs(parent, exist_ok=True)
            self._dirs.add(parent)
        try:
            rename_noreplace(tmp, final)
        except FileNotFoundError:  # its directory was removed during the move
            os.makedirs(parent, exist_ok=True)
            rename_noreplace(tmp, final)
        except FileExistsError:
            earlier_run = os.stat(final).st_ctime_ns < self._begun_ns
            with self._lock:
                self._same_again(rec, tmp, final, earlier_run=earlier_run)
            return
        rec.path = final
        rec.received_at = time.time()
        self.generation += 1
        self.bytes_named += rec.size

    def _same_again(self, rec: Received, tmp: str, existing: str, *, earlier_run: bool) -> None:
        """Keep one file of an identical second copy; quarantine a different one."""
        if filecmp.cmp(tmp, existing, shallow=False):
            os.unlink(tmp)
            rec.path = existing
            if not earlier_run:
                rec.status, rec.reason = "duplicate", "received again with identical bytes"
            return
        if earlier_run and _truncated_copy(existing, tmp):
            # an earlier run's file cut short by a crash before its data reached the disk
            logger.warning(
                "%s was cut short (a crash?): replaced by the copy received now", existing
            )
            os.replace(tmp, existing)
            rec.path = existing
            rec.received_at = time.time()
            self.generation += 1
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

    def sync(self) -> None:
        """Make every file written so far, and its directory entry, durable (blocking).

        One ``syncfs`` of the output filesystem on Linux (``os.sync`` elsewhere):
        call it off the event loop. Does nothing with ``durability="none"``.

        Raises
        ------
        OSError
            If the filesystem reports a write error.
        """
        if self.durability == "none":
            return
        generation = self.generation
        fd = os.open(self.root, os.O_RDONLY)
        try:
            syncfs(fd)
        finally:
            os.close(fd)
        self.synced = max(self.synced, generation)
