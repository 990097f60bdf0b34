"""Senders for the Store SCP tests: datasets, a raw DICOM upper-layer client, a receiver process.

* :func:`make_dataset` / :func:`encode` build small instances; ``encode(raw=...)`` splices
  elements in exactly as given, so datasets can carry invalid UIDs or undecodable text.
* :class:`RawAssociation` speaks just enough of the DICOM upper layer (PS3.8) to send
  C-STOREs byte for byte as we choose, and to stop or cut them mid-dataset.
* :class:`Receiver` runs a :class:`~dicommove.scp.StoreSCP` in a child process
  (``python senders.py serve ROOT``), for tests that kill it or measure its memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import struct
import subprocess
import sys
import threading
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeVar

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element, write_file_meta_info
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian

from dicommove.testing.peers import wait_for

__all__ = [
    "RECEIVER_AE",
    "RawAssociation",
    "Receiver",
    "encode",
    "explicit_element",
    "is_failure",
    "make_dataset",
    "new_uid",
    "part10_header",
    "store_one",
    "wait_until",
    "write_part10",
]

_T = TypeVar("_T")

HERE = Path(__file__).resolve()
RECEIVER_AE = "RECEIVER"
TEST_IMPLEMENTATION_UID = "2.25.95229391417785307813455386536463536811"
APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
_LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT"})
#: Public fields of dicommove.scp.Received, reported by the receiver process.
RECEIVED_FIELDS = (
    "sop_instance_uid",
    "sop_class_uid",
    "transfer_syntax_uid",
    "status",
    "reason",
    "study_instance_uid",
    "series_instance_uid",
    "patient_id",
    "path",
    "size",
    "calling_ae",
    "originator_ae",
    "originator_message_id",
    "dimse_status",
    "tags",
)


def new_uid() -> str:
    """A fresh, valid UID (2.25 form)."""
    return f"2.25.{uuid.uuid4().int}"


def wait_until(predicate: Callable[[], _T], timeout: float, what: str) -> _T:
    """Poll ``predicate`` until it returns something truthy; TimeoutError after ``timeout`` s."""
    return wait_for(predicate, timeout, what=what)


def is_failure(status: int | None) -> bool:
    """Whether a C-STORE status is a failure (PS3.4 B.2.3, PS3.7 C): not success or warning."""
    if status is None:
        return False
    warning = status in (0x0001, 0x0107, 0x0116) or 0xB000 <= status <= 0xBFFF
    return status != 0x0000 and not warning


# -- datasets ---------------------------------------------------------------------------


def make_dataset(
    *,
    sop: str | None = None,
    study: str | None = None,
    series: str | None = None,
    sop_class: str = CTImageStorage,
    patient_id: str = "PAT1",
    pixel_bytes: int = 0,
    comment: str = "",
) -> Dataset:
    """A small instance with 8-bit pixel data of ``pixel_bytes`` bytes (a multiple of 1024)."""
    ds = Dataset()
    ds.SOPClassUID = UID(sop_class)
    ds.SOPInstanceUID = UID(sop or new_uid())
    ds.StudyInstanceUID = UID(study or new_uid())
    ds.SeriesInstanceUID = UID(series or new_uid())
    ds.PatientID = patient_id
    ds.PatientName = "Test^Patient"
    ds.Modality = "CT"
    if comment:
        ds.ImageComments = comment
    if pixel_bytes:
        if pixel_bytes % 1024:
            raise ValueError("pixel_bytes must be a multiple of 1024")
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = pixel_bytes // 1024
        ds.Columns = 1024
        ds.BitsAllocated = 8
        ds.BitsStored = 8
        ds.HighBit = 7
        ds.PixelRepresentation = 0
        ds.PixelData = os.urandom(pixel_bytes)
        ds["PixelData"].VR = "OB"
    return ds


def explicit_element(tag: int, vr: str, value: bytes) -> bytes:
    """One element in Explicit VR Little Endian, ``value`` padded to even length as given."""
    if len(value) % 2:
        value += b"\x00" if vr in ("UI", "OB") else b" "
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr.encode("ascii")
    if vr in _LONG_VRS:
        return head + b"\x00\x00" + struct.pack("<I", len(value)) + value
    return head + struct.pack("<H", len(value)) + value


def encode(ds: Dataset, raw: Mapping[int, tuple[str, bytes]] | None = None) -> bytes:
    """Encode ``ds`` in Explicit VR Little Endian (no file meta).

    ``raw`` maps tags to (VR, value bytes) written exactly as given (padded to even
    length), replacing the dataset's element of that tag: invalid UIDs, bad text.
    """
    raw = dict(raw or {})
    parts: list[tuple[int, bytes]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for elem in ds:
            if int(elem.tag) in raw:
                continue
            buf = DicomBytesIO()
            buf.is_little_endian, buf.is_implicit_VR = True, False
            write_data_element(buf, elem)
            parts.append((int(elem.tag), buf.getvalue()))
    for tag, (vr, value) in raw.items():
        parts.append((tag, explicit_element(tag, vr, value)))
    parts.sort(key=lambda p: p[0])
    return b"".join(p for _, p in parts)


def part10_header(
    *, sop_class: str, sop: str, ts: str = ExplicitVRLittleEndian, preamble: bytes = b""
) -> bytes:
    """Preamble, ``DICM`` and a file meta group, to be followed by the dataset bytes."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop)
    meta.TransferSyntaxUID = UID(ts)
    meta.ImplementationClassUID = UID(TEST_IMPLEMENTATION_UID)
    meta.ImplementationVersionName = "DMV_TESTS"
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, False
    buf.write((preamble or b"\x00" * 128)[:128].ljust(128, b"\x00") + b"DICM")
    write_file_meta_info(buf, meta, enforce_standard=True)
    return buf.getvalue()


def write_part10(
    path: Path,
    data: bytes,
    *,
    sop_class: str,
    sop: str,
    ts: str = ExplicitVRLittleEndian,
    preamble: bytes = b"",
) -> Path:
    """Write a DICOM Part 10 file holding the encoded dataset ``data``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(part10_header(sop_class=sop_class, sop=sop, ts=ts, preamble=preamble) + data)
    return path


# -- a raw upper-layer client ---------------------------------------------------------------


def _item(item_type: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", item_type, 0, len(payload)) + payload


def _pdu(pdu_type: int, payload: bytes) -> bytes:
    return struct.pack(">BBI", pdu_type, 0, len(payload)) + payload


def _ae(title: str) -> bytes:
    raw = title.encode("ascii")
    if len(raw) > 16:
        raise ValueError(f"AE title {title!r} is longer than 16 characters")
    return raw.ljust(16)


def _command_element(tag: int, value: bytes, pad: bytes = b"\x00") -> bytes:
    if len(value) % 2:
        value += pad
    return struct.pack("<HHI", 0, tag, len(value)) + value


def store_command(
    *,
    sop_class: bytes,
    sop_instance: bytes,
    message_id: int = 1,
    originator_ae: str | None = None,
    originator_message_id: int | None = None,
) -> bytes:
    """A C-STORE-RQ command set (Implicit VR Little Endian), with UIDs as raw bytes."""
    body = (
        _command_element(0x0002, sop_class)
        + _command_element(0x0100, struct.pack("<H", 0x0001))
        + _command_element(0x0110, struct.pack("<H", message_id))
        + _command_element(0x0700, struct.pack("<H", 0))
        + _command_element(0x0800, struct.pack("<H", 0x0001))
        + _command_element(0x1000, sop_instance)
    )
    if originator_ae is not None:
        body += _command_element(0x1030, originator_ae.encode("ascii"), b" ")
    if originator_message_id is not None:
        body += _command_element(0x1031, struct.pack("<H", originator_message_id))
    return _command_element(0x0000, struct.pack("<I", len(body))) + body


def _command_fields(raw: bytes) -> dict[int, bytes]:
    fields: dict[int, bytes] = {}
    offset = 0
    while offset + 8 <= len(raw):
        _group, elem, length = struct.unpack_from("<HHI", raw, offset)
        fields[elem] = raw[offset + 8 : offset + 8 + length]
        offset += 8 + length
    return fields


class AssociationRefused(Exception):
    """The peer answered A-ASSOCIATE-RJ, aborted, or closed the connection."""

    def __init__(self, message: str, *, rejected: tuple[int, int, int] | None = None) -> None:
        super().__init__(message)
        self.rejected = rejected  # (result, source, reason) of an A-ASSOCIATE-RJ


class RawAssociation:
    """A DICOM association we drive PDU by PDU (requestor side).

    Parameters
    ----------
    port : int
        The Store SCP's port on ``host``.
    contexts : sequence of (id, abstract syntax, transfer syntaxes)
        The presentation contexts to propose; ids are odd numbers.
    bind : str, optional
        The local address to connect from (``127.0.0.2`` for the disallowed-host test).

    Raises
    ------
    AssociationRefused
        If the association is rejected, aborted or closed.
    """

    def __init__(
        self,
        port: int,
        *,
        called: str = RECEIVER_AE,
        calling: str = "RAWSCU",
        contexts: Sequence[tuple[int, str, Sequence[str]]] = (
            (1, CTImageStorage, (ExplicitVRLittleEndian,)),
        ),
        host: str = "127.0.0.1",
        bind: str | None = None,
        max_pdu: int = 65536,
        timeout: float = 30.0,
    ) -> None:
        self.sock = socket.create_connection(
            (host, port), timeout=timeout, source_address=(bind, 0) if bind else None
        )
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.accepted: dict[int, str] = {}  # context id -> transfer syntax
        self.peer_max_pdu = 0
        try:
            self._associate(called, calling, contexts, max_pdu)
        except BaseException:
            self.sock.close()
            raise

    # -- PDUs
    def _recv_exact(self, n: int) -> bytes:
        chunks: list[bytes] = []
        while n:
            chunk = self.sock.recv(min(n, 1 << 20))
            if not chunk:
                raise ConnectionResetError("the peer closed the connection")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def read_pdu(self) -> tuple[int, bytes]:
        """Return (PDU type, payload) of the next PDU."""
        pdu_type, _, length = struct.unpack(">BBI", self._recv_exact(6))
        return pdu_type, self._recv_exact(length)

    def _associate(
        self,
        called: str,
        calling: str,
        contexts: Sequence[tuple[int, str, Sequence[str]]],
        max_pdu: int,
    ) -> None:
        body = struct.pack(">HH", 1, 0) + _ae(called) + _ae(calling) + b"\x00" * 32
        body += _item(0x10, APPLICATION_CONTEXT.encode())
        for cx_id, abstract, syntaxes in contexts:
            sub = _item(0x30, abstract.encode("latin-1"))
            for ts in syntaxes:
                sub += _item(0x40, ts.encode("ascii"))
            body += _item(0x20, bytes([cx_id, 0, 0, 0]) + sub)
        user = (
            _item(0x51, struct.pack(">I", max_pdu))
            + _item(0x52, TEST_IMPLEMENTATION_UID.encode())
            + _item(0x55, b"DMV_TESTS_RAW")
        )
        body += _item(0x50, user)
        self.sock.sendall(_pdu(0x01, body))
        try:
            pdu_type, payload = self.read_pdu()
        except OSError as exc:
            raise AssociationRefused(f"connection closed during association: {exc}") from exc
        if pdu_type == 0x03:
            result, source, reason = payload[1], payload[2], payload[3]
            raise AssociationRefused(
                f"A-ASSOCIATE-RJ result {result} source {source} reason {reason}",
                rejected=(result, source, reason),
            )
        if pdu_type != 0x02:
            raise AssociationRefused(f"unexpected PDU type 0x{pdu_type:02X} instead of AC")
        offset = 68
        while offset + 4 <= len(payload):
            item_type, _, length = struct.unpack_from(">BBH", payload, offset)
            item = payload[offset + 4 : offset + 4 + length]
            offset += 4 + length
            if item_type == 0x21 and item[2] == 0:  # accepted presentation context
                sub_type, _, sub_len = struct.unpack_from(">BBH", item, 4)
                if sub_type == 0x40:
                    self.accepted[item[0]] = item[8 : 8 + sub_len].decode().rstrip("\x00 ")
            elif item_type == 0x50:
                sub_offset = 0
                while sub_offset + 4 <= len(item):
                    sub_type, _, sub_len = struct.unpack_from(">BBH", item, sub_offset)
                    if sub_type == 0x51:
                        (self.peer_max_pdu,) = struct.unpack_from(">I", item, sub_offset + 4)
                    sub_offset += 4 + sub_len

    def _pdv_limit(self) -> int:
        return (self.peer_max_pdu or (1 << 20)) - 6

    def send_pdv(self, cx_id: int, data: bytes | memoryview, *, command: bool, last: bool) -> None:
        """Send ``data`` as P-DATA-TF PDUs, fragmented to the peer's maximum PDU length."""
        view = memoryview(data)
        limit = self._pdv_limit()
        while True:
            chunk, view = view[:limit], view[limit:]
            header = (1 if command else 0) | (2 if last and not view else 0)
            self.sock.sendall(
                struct.pack(">BBII", 0x04, 0, len(chunk) + 6, len(chunk) + 2)
                + bytes([cx_id, header])
            )
            self.sock.sendall(chunk)
            if not view:
                return

    def send_store_request(
        self,
        dataset: bytes | memoryview,
        *,
        sop_class: str | bytes = CTImageStorage,
        sop_instance: str | bytes,
        cx_id: int = 1,
        message_id: int = 1,
        originator_ae: str | None = None,
        originator_message_id: int | None = None,
        send_bytes: int | None = None,
    ) -> None:
        """Send a C-STORE-RQ; with ``send_bytes``, only that much of the dataset (not last)."""
        command = store_command(
            sop_class=sop_class.encode("latin-1") if isinstance(sop_class, str) else sop_class,
            sop_instance=(
                sop_instance.encode("latin-1") if isinstance(sop_instance, str) else sop_instance
            ),
            message_id=message_id,
            originator_ae=originator_ae,
            originator_message_id=originator_message_id,
        )
        self.send_pdv(cx_id, command, command=True, last=True)
        if send_bytes is None:
            self.send_pdv(cx_id, dataset, command=False, last=True)
        else:
            self.send_pdv(cx_id, memoryview(dataset)[:send_bytes], command=False, last=False)

    def read_status(self) -> int | None:
        """Read the next C-STORE-RSP; its Status, or None if the peer aborted or closed."""
        fragments: list[bytes] = []
        while True:
            try:
                pdu_type, payload = self.read_pdu()
            except OSError:
                return None
            if pdu_type != 0x04:
                return None
            offset = 0
            while offset + 6 <= len(payload):
                (length,) = struct.unpack_from(">I", payload, offset)
                header = payload[offset + 5]
                fragments.append(payload[offset + 6 : offset + 4 + length])
                offset += 4 + length
                if header & 0x03 == 0x03:  # last command fragment
                    status = _command_fields(b"".join(fragments)).get(0x0900)
                    return None if status is None else int.from_bytes(status[:2], "little")

    def store(
        self,
        dataset: bytes,
        *,
        sop_class: str | bytes = CTImageStorage,
        sop_instance: str | bytes,
        cx_id: int = 1,
        message_id: int = 1,
        originator_ae: str | None = None,
        originator_message_id: int | None = None,
    ) -> int | None:
        """Send one C-STORE and return the response status (None: aborted or closed)."""
        self.send_store_request(
            dataset,
            sop_class=sop_class,
            sop_instance=sop_instance,
            cx_id=cx_id,
            message_id=message_id,
            originator_ae=originator_ae,
            originator_message_id=originator_message_id,
        )
        return self.read_status()

    def wait_closed(self, timeout: float = 10.0) -> bool:
        """Read and discard until the peer closes the connection; whether it did in time."""
        self.sock.settimeout(timeout)
        try:
            while self.sock.recv(65536):
                pass
        except TimeoutError:
            return False
        except OSError:
            return True
        return True

    def release(self) -> None:
        """A-RELEASE-RQ, wait for the RP, close."""
        try:
            self.sock.sendall(_pdu(0x05, b"\x00" * 4))
            self.read_pdu()
        except OSError:
            pass
        finally:
            self.sock.close()

    def abort(self) -> None:
        """Send A-ABORT (without closing)."""
        self.sock.sendall(_pdu(0x07, b"\x00\x00\x00\x00"))

    def reset(self) -> None:
        """Close with a TCP RST (SO_LINGER 0)."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()

    def __enter__(self) -> RawAssociation:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# -- a Store SCP in a child process ----------------------------------------------------------


def _maxrss_bytes() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # KiB on Linux


def _peak_rss_bytes() -> int:
    """The peak RSS of this process image (VmHWM), or ``ru_maxrss`` where there is none.

    Linux carries ``ru_maxrss`` over fork and exec: a child started by a large test process
    reports the parent's RSS as its own peak until it outgrows it. VmHWM starts afresh.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    return _maxrss_bytes()


def _serve(root: str, ae_title: str, tags: Sequence[str] = ()) -> int:
    import logging

    from dicommove.scp import InstanceStore, Received, StoreSCP
    from dicommove.store.tags import header_tags

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    records: list[Received] = []
    lock = threading.Lock()

    def on_instance(rec: Received) -> None:
        with lock:
            records.append(rec)

    store = InstanceStore(root, tags=header_tags(list(tags)) if tags else None)
    store.prepare()
    store.begin()
    scp = StoreSCP(store, ae_title=ae_title, host="127.0.0.1", port=0, on_instance=on_instance)
    scp.start()
    hello = {"port": scp.port, "maxrss": _maxrss_bytes(), "hwm": _peak_rss_bytes()}
    print(json.dumps(hello), flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    scp.stop()
    with lock:
        done = [{k: getattr(r, k) for k in RECEIVED_FIELDS} for r in records]
    peaks = {"maxrss": _maxrss_bytes(), "hwm": _peak_rss_bytes()}
    print(json.dumps({**peaks, "records": done}, default=str), flush=True)
    return 0


class Receiver:
    """A Store SCP (AE ``RECEIVER`` on 127.0.0.1) in a child process, writing to ``root``.

    ``port`` and ``idle_maxrss`` (peak RSS in bytes once listening) are known after
    construction; :meth:`finish` stops it and returns its records and peak RSS.
    ``idle_hwm`` and the ``hwm`` of :meth:`finish` are the same peak as VmHWM, which
    (unlike ``ru_maxrss``) does not start at the RSS of the test process.
    ``tags`` are header columns (keywords) read into each record, as ``move(tags=...)``.
    """

    def __init__(
        self,
        root: Path,
        *,
        env: Mapping[str, str] | None = None,
        tags: Sequence[str] = (),
    ) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE), "serve", str(root), *(f"--tags={t}" for t in tags)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=30)
            raise RuntimeError(f"the receiver did not start: {self._stderr()}")
        hello = json.loads(line)
        self.port = int(hello["port"])
        self.idle_maxrss = int(hello["maxrss"])
        self.idle_hwm = int(hello["hwm"])
        self.pid = self.proc.pid

    def _stderr(self) -> str:
        stream: IO[str] | None = self.proc.stderr
        return stream.read()[-4000:] if stream is not None else ""

    def finish(self, timeout: float = 60.0) -> dict[str, Any]:
        """Stop the SCP; return ``{"maxrss": bytes, "hwm": bytes, "records": [dict, ...]}``."""
        out, err = self.proc.communicate(input="", timeout=timeout)
        lines = [line for line in out.splitlines() if line.strip()]
        if self.proc.returncode != 0 or not lines:
            raise RuntimeError(f"receiver exited {self.proc.returncode}: {err[-4000:]}")
        result: dict[str, Any] = json.loads(lines[-1])
        result["stderr"] = err
        return result

    def kill(self) -> None:
        """SIGKILL the receiver and reap it."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> Receiver:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.kill()


def store_one(port: int, *, called: str, calling: str = "RAWSCU") -> int | None:
    """C-STORE one small instance on a new raw association; its status."""
    ds = make_dataset()
    with RawAssociation(port, called=called, calling=calling) as raw:
        status = raw.store(encode(ds), sop_instance=ds.SOPInstanceUID)
        raw.release()
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """``python senders.py serve ROOT [--ae AE]``: run a Store SCP until stdin closes."""
    parser = argparse.ArgumentParser(prog="senders.py")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve")
    serve.add_argument("root")
    serve.add_argument("--ae", default=RECEIVER_AE)
    serve.add_argument("--tags", action="append", default=[])
    args = parser.parse_args(argv)
    return _serve(args.root, args.ae, args.tags)


if __name__ == "__main__":
    sys.exit(main())
