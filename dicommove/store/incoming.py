"""One instance on its way to disk: memory first, a temp file if it is large, then its name."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from .. import _status as st
from .._header import DEFLATED, EXPLICIT_LE, HeaderError, inflated_prefix, read_header, read_tags
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
            # read and write: a header longer than the head is read on from this file
            self._fd = os.open(self._tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
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
        head: bytes | bytearray = self._head
        whole = self._fd is None
        syntax = rec.transfer_syntax_uid
        deflated = syntax in DEFLATED
        try:
            if deflated:  # its first 64 KiB inflated, at most, and never more
                head, whole = inflated_prefix(head, whole)
                syntax = EXPLICIT_LE
            header = read_header(head, syntax, complete=whole)
            if header is None and deflated:
                return self._refuse("deflated dataset whose header is not in its first 64 KiB")
            if header is None:  # it goes on past the head: read on from the temp file
                header = read_header(
                    head, syntax, complete=True, size=self.written, fetch=self._fetch
                )
        except HeaderError as exc:
            return self._refuse(f"dataset cannot be parsed: {exc}")
        except OSError as exc:
            self._fail(exc)
            return False
        if header is None:  # not for a whole dataset: it is decided, one way or the other
            return self._refuse("dataset header cannot be read")
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
            self._read_tags(head, syntax, complete=whole, more=not (whole or deflated))
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

    def _read_tags(
        self, head: bytes | bytearray, syntax: str, *, complete: bool, more: bool
    ) -> None:
        """Read the header elements asked for (``tags=``) into the record, by keyword.

        From ``head`` (a deflated dataset's inflated prefix), then from the temp file if
        there is ``more``. Best effort: the file is kept whatever they are.
        """
        store, rec = self.store, self.rec
        vrs = store.tag_vrs
        try:
            found = read_tags(head, syntax, vrs, complete=complete)
            if found is None and more:  # past the head: read on from the temp file
                found = read_tags(
                    head, syntax, vrs, complete=True, size=self.written, fetch=self._fetch
                )
        except (HeaderError, OSError) as exc:
            logger.warning("cannot read the header of %s: %s", rec.sop_instance_uid, exc)
            found = None
        found = found or {}
        rec.tags = {keyword: found.get(tag, "") for tag, (keyword, _vr) in store.tags.items()}

    def _fetch(self, offset: int, size: int) -> bytes:
        """Read ``size`` dataset bytes from ``offset`` back from the temp file."""
        assert self._fd is not None
        return os.pread(self._fd, size, self._meta_length + offset)

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
