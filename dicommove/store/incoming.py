"""One instance on its way to disk: memory first, a temp file if it is large, then its name."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from .. import _status as st
from .._header import DEFLATED, HEADER_TAGS, read_header, read_tags
from ._fs import IN_FLIGHT
from .record import HEAD_BYTES, AcceptCallback, Received

if TYPE_CHECKING:
    from .instances import InstanceStore

__all__ = ["Incoming"]

logger = logging.getLogger("dicommove")


class Incoming:
    """One instance being received; see the module docstring for its three steps.

    Writes after a refusal or a write error are discarded, so that the sender can
    be drained and answered.
    """

    __slots__ = ("_fd", "_final", "_head", "_meta_length", "_tmp", "rec", "store", "written")

    def __init__(self, store: InstanceStore, rec: Received) -> None:
        self.store = store
        self.rec = rec
        self._head = bytearray()  # the first HEAD_BYTES of the dataset
        self._fd: int | None = None  # the temp file, once the dataset outgrew the head
        self._tmp: str | None = None
        self._final = ""
        self._meta_length = 0
        self.written = 0  # dataset bytes received

    @property
    def temp_path(self) -> Path | None:
        """The temp file, while a large instance is being received into it."""
        return Path(self._tmp) if self._fd is not None and self._tmp is not None else None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append dataset bytes (never raises; a write error fails the instance)."""
        if self.rec.status != "received":
            return
        self.written += len(data)
        if self._fd is None:
            if len(self._head) + len(data) <= HEAD_BYTES:
                self._head += data
                return
            if not self._open():
                return
            keep = HEAD_BYTES - len(self._head)
            self._head += data[:keep]
            if not self._write_meta_and_head():
                return
            data = memoryview(data)[keep:]
        self._write_all(data)

    def _open(self) -> bool:
        self._tmp = self.store.temp_name()
        IN_FLIGHT.add(self._tmp)
        try:
            self._fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as exc:
            self._fail(exc)
            return False
        return True

    def _write_all(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view) :]  # type: ignore[arg-type]
        except OSError as exc:
            self._fail(exc)

    def _fail(self, exc: OSError) -> None:
        self._discard()
        rec = self.rec
        rec.status, rec.path, rec.size, rec.errno = "failed", "", 0, exc.errno
        rec.reason = f"write failed: {exc.strerror or exc}"
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        rec.dimse_status = st.STORE_OUT_OF_RESOURCES if full else st.STORE_CANNOT_UNDERSTAND
        logger.error("cannot write %s to %s: %s", rec.sop_instance_uid, self.store.root, exc)

    def _discard(self) -> None:
        """Close and remove the temp file, if any; each descriptor is closed exactly once."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
        tmp, self._tmp = self._tmp, None
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            IN_FLIGHT.discard(tmp)
        self._head = bytearray()

    def abort(self, reason: str) -> Received:
        """Give up on this instance: delete the temp file, return a ``failed`` record."""
        if self.rec.status == "received":
            self.rec.status, self.rec.reason = "failed", reason
            self.rec.dimse_status = st.STORE_CANNOT_UNDERSTAND
        self._discard()
        return self.rec

    def seal(self, accept: AcceptCallback | None = None) -> bool:
        """Read the header, check the UIDs, name the file, ask ``accept``.

        Returns whether the instance is to be kept (then call :meth:`persist`);
        otherwise its record says why not and nothing is left on disk.
        """
        rec = self.rec
        if rec.status != "received":
            self._discard()
            return False
        whole = self._fd is None
        header = read_header(self._head, rec.transfer_syntax_uid, complete=whole)
        if header is None and rec.transfer_syntax_uid in DEFLATED:
            return self._refuse("deflated dataset whose header is not in its first 64 KiB")
        if header is None:
            header = self._parse_with_pydicom()
            if header is None:
                return False
        if header[0x00080018] != rec.sop_instance_uid:
            return self._refuse(
                "SOPInstanceUID in the dataset differs from the C-STORE request",
                st.STORE_DATASET_MISMATCH,
            )
        if header[0x00080016] != rec.sop_class_uid:
            return self._refuse(
                "SOPClassUID in the dataset differs from the C-STORE request",
                st.STORE_DATASET_MISMATCH,
            )
        store = self.store
        rec.study_instance_uid = store.intern(header[0x0020000D])
        rec.series_instance_uid = store.intern(header[0x0020000E])
        rec.patient_id = store.intern(header[0x00100020])
        if store.tags:
            self._read_tags(whole)
        try:
            self._final = store.path_for(rec)
        except ValueError as exc:
            return self._refuse(str(exc))
        if accept is not None:
            try:
                accepted = accept(rec)
            except Exception as exc:  # a failing callback must not lose the association
                logger.exception("accept callback failed for %s", rec.sop_instance_uid)
                return self._refuse(f"internal error while routing: {exc}")
            if not accepted:
                return self._refuse(rec.reason or "refused", st.NOT_AUTHORIZED)
        return True

    def _read_tags(self, whole: bool) -> None:
        """Read the header elements asked for (``tags=``) into the record, by keyword."""
        store, rec = self.store, self.rec
        found = read_tags(self._head, rec.transfer_syntax_uid, store.tag_vrs, complete=whole)
        if found is None:  # past the first HEAD_BYTES, or not parseable here: the file
            found = self._tags_with_pydicom()
        rec.tags = {keyword: found.get(tag, "") for tag, (keyword, _vr) in store.tags.items()}

    def _tags_with_pydicom(self) -> dict[int, str]:
        if self._fd is None and (not self._open() or self._write_meta_and_head() is None):
            return {}
        try:
            from pydicom import dcmread

            assert self._tmp is not None
            tags = list(self.store.tags)
            ds = dcmread(self._tmp, stop_before_pixels=True, specific_tags=tags)
            return {tag: _value_text(ds[tag].value) for tag in tags if tag in ds}
        except Exception as exc:  # the header columns are best effort: the file is kept
            logger.warning("cannot read the header of %s: %s", self.rec.sop_instance_uid, exc)
            return {}

    def _parse_with_pydicom(self) -> dict[int, str] | None:
        """Read a long or deeply nested header with pydicom, from the temp file (rare, slow)."""
        if self._fd is None and (not self._open() or self._write_meta_and_head() is None):
            return None
        try:
            from pydicom import dcmread

            assert self._tmp is not None
            ds = dcmread(self._tmp, stop_before_pixels=True, specific_tags=list(HEADER_TAGS))
            return {tag: _raw_text(ds, tag) for tag in HEADER_TAGS}
        except Exception as exc:  # untrusted bytes: any parse error is a refusal
            self._refuse(f"dataset cannot be parsed: {exc}")
            return None

    def _write_meta_and_head(self) -> bool | None:
        rec = self.rec
        meta = self.store.file_meta(
            rec.sop_class_uid, rec.sop_instance_uid, rec.transfer_syntax_uid
        )
        self._meta_length = len(meta)
        assert self._fd is not None
        try:  # one system call, no copy
            written = os.writev(self._fd, (meta, self._head))
        except OSError as exc:
            self._fail(exc)
            return None
        if written < len(meta) + len(self._head):  # short write: the rest, the slow way
            self._write_all(memoryview(meta + self._head)[written:])
        return None if self._fd is None else True

    def persist(self, *, fsync: bool = False, keep_open: bool = False) -> Received:
        """Write the file under its final name (after :meth:`seal` returned true).

        Parameters
        ----------
        fsync : bool
            Flush the file to stable storage before the rename (blocking: call it off
            the event loop).
        keep_open : bool
            Leave the file descriptor open after the rename, for :meth:`release` to close
            once the C-STORE is answered (one system call less before the answer).
        """
        rec = self.rec
        if rec.status != "received":
            return rec
        if self._fd is None and not (self._open() and self._write_meta_and_head()):
            return rec
        fd, tmp = self._fd, self._tmp
        assert fd is not None and tmp is not None
        try:
            if fsync:
                os.fsync(fd)
        except OSError as exc:
            self._fail(exc)  # closes fd once and removes the temp file
            return rec
        if not keep_open:
            self._fd = None
            os.close(fd)
        rec.size = self._meta_length + self.written  # the file's size
        try:
            self.store.commit(rec, tmp, self._final)
        except OSError as exc:
            self._fail(exc)  # closes the descriptor if still open
        finally:
            IN_FLIGHT.discard(tmp)
            self._tmp = None
            self._head = bytearray()
        return rec

    def release(self) -> None:
        """Close the descriptor :meth:`persist` left open (``keep_open=True``)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def finish(self, accept: AcceptCallback | None = None, *, fsync: bool = False) -> Received:
        """:meth:`seal` then :meth:`persist`: the whole end of an instance, in one call."""
        if self.seal(accept):
            self.persist(fsync=fsync)
        return self.rec

    def _refuse(self, reason: str, code: int = st.STORE_CANNOT_UNDERSTAND) -> bool:
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
        return False


def _raw_text(ds: object, tag: int) -> str:
    """Return the text of a header element read by pydicom, without value conversion."""
    elem = ds.get_item(tag) if tag in ds else None  # type: ignore[attr-defined,operator]
    value = getattr(elem, "value", None)
    if isinstance(value, bytes):
        return value.decode("latin-1").rstrip("\x00 ").lstrip(" ")
    return "" if value is None else str(value).strip()


def _value_text(value: object) -> str:
    """Return a value pydicom converted as DICOM text (several joined by backslashes)."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(_value_text(v) for v in value)  # type: ignore[attr-defined]
    if isinstance(value, bytes):
        return value.decode("latin-1").rstrip("\x00 ").lstrip(" ")
    return str(value).strip()
