"""Our side of the C-MOVE association: a requestor on the :mod:`dicommove._ul` codec.

One blocking socket, read by the thread that sends requests; C-CANCEL may be
sent from another thread (sends are serialised). Responses are decoded only as
far as needed: the status and the sub-operation counts come from the command
set; an identifier (a final response's FailedSOPInstanceUIDList) is decoded with
pydicom only when present.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
from dataclasses import dataclass

from . import _ul

__all__ = ["Aborted", "Rejected", "Requestor", "Response"]

EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
MAX_INCOMING_PDU = 1 << 24  # a response PDU longer than 16 MiB is not a Q/R response


class Rejected(Exception):
    """The peer answered A-ASSOCIATE-RJ."""

    def __init__(self, result: int, source: int, reason: int) -> None:
        super().__init__(f"rejected: result {result}, source {source}, reason {reason}")
        self.result, self.source, self.reason = result, source, reason


class Aborted(Exception):
    """The association ended: A-ABORT, a closed or reset connection, or a timeout."""


@dataclass
class Response:
    """One DIMSE response: its decoded command set and, if any, its dataset bytes."""

    context_id: int
    command: dict[int, bytes]
    dataset: bytes | None

    @property
    def status(self) -> int | None:
        """The Status (0000,0900)."""
        return _ul.command_us(self.command, 0x0900)

    def us(self, element: int) -> int | None:
        """Return a US element of the command set, e.g. 0x1021 (completed sub-operations)."""
        return _ul.command_us(self.command, element)

    def text(self, element: int) -> str:
        """Return a text element of the command set, e.g. 0x0902 ErrorComment."""
        return _ul.command_text(self.command, element)


class Requestor:
    """An established association that we requested."""

    def __init__(
        self,
        sock: socket.socket,
        *,
        contexts: dict[str, tuple[int, str]],
        peer_max_pdu: int,
        timeout: float,
    ) -> None:
        self.sock = sock
        self.contexts = contexts  # abstract syntax -> (context id, transfer syntax)
        self.peer_max_pdu = peer_max_pdu
        self.timeout = timeout
        self._send_lock = threading.Lock()
        self._pending: list[tuple[int, int, bytes]] = []  # PDVs read but not yet consumed
        self.established = True

    @classmethod
    def connect(
        cls,
        host: str,
        port: int,
        *,
        calling_ae: str,
        called_ae: str,
        abstract_syntaxes: list[str],
        max_pdu: int,
        connect_timeout: float,
        acse_timeout: float,
        timeout: float,
        implementation_class_uid: str,
        implementation_version_name: str,
    ) -> Requestor:
        """Connect and negotiate.

        Raises
        ------
        OSError
            If the TCP connection cannot be made.
        Rejected
            If the peer rejects the association.
        Aborted
            If the peer aborts, closes, or does not answer within ``acse_timeout``.
        """
        sock = socket.create_connection((host, port), timeout=connect_timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            proposed = [
                _ul.PresentationContext(2 * i + 1, uid, [EXPLICIT_VR_LE, IMPLICIT_VR_LE])
                for i, uid in enumerate(abstract_syntaxes)
            ]
            sock.settimeout(acse_timeout)
            sock.sendall(
                _ul.encode_associate_rq(
                    called_ae=called_ae,
                    calling_ae=calling_ae,
                    contexts=proposed,
                    max_pdu=max_pdu,
                    implementation_class_uid=implementation_class_uid,
                    implementation_version_name=implementation_version_name,
                )
            )
            pdu_type, body = _read_pdu(sock)
            if pdu_type == _ul.PDU_ASSOCIATE_RJ and len(body) >= 4:
                raise Rejected(body[1], body[2], body[3])
            if pdu_type != _ul.PDU_ASSOCIATE_AC:
                raise Aborted(f"the peer answered PDU type 0x{pdu_type:02X}, not an A-ASSOCIATE-AC")
            peer_max_pdu, results = _ul.decode_associate_ac(body)
        except (OSError, _ul.ProtocolError) as exc:
            sock.close()
            if isinstance(exc, TimeoutError):
                raise Aborted(f"no association reply within {acse_timeout:g} s") from None
            raise Aborted(f"association set-up failed: {exc}") from None
        except BaseException:
            sock.close()
            raise
        accepted = {
            cx.abstract_syntax: (cx.context_id, results[cx.context_id][1])
            for cx in proposed
            if results.get(cx.context_id, (1, ""))[0] == _ul.ACCEPTED
        }
        return cls(sock, contexts=accepted, peer_max_pdu=peer_max_pdu, timeout=timeout)

    @property
    def local_address(self) -> str:
        """Our IP address on this connection (what the PACS sees)."""
        try:
            return str(self.sock.getsockname()[0])
        except OSError:
            return ""

    def send(self, context_id: int, command: bytes, dataset: bytes | None = None) -> None:
        """Send one message (from any thread).

        Raises
        ------
        Aborted
            If the connection is gone.
        """
        pdus = _ul.encode_pdata(context_id, command, command=True, max_pdu=self.peer_max_pdu)
        if dataset is not None:
            pdus += _ul.encode_pdata(context_id, dataset, command=False, max_pdu=self.peer_max_pdu)
        with self._send_lock:
            try:
                self.sock.sendall(b"".join(pdus))
            except OSError as exc:
                self.established = False
                raise Aborted(f"send failed: {exc}") from None

    def wait(self, timeout: float) -> bool:
        """Return whether a message has started to arrive, waiting at most ``timeout`` s.

        Lets a caller wait for the next response in short slices (to notice a
        cancel or an inactivity timeout) without ever timing out mid-message.
        """
        if self._pending:
            return True
        try:
            ready, _, _ = select.select([self.sock], [], [], max(timeout, 0.0))
        except (OSError, ValueError):  # closed meanwhile: receive() will say so
            return True
        return bool(ready)

    def receive(self, timeout: float | None = None) -> Response:
        """Read the next whole DIMSE message.

        Raises
        ------
        Aborted
            On A-ABORT, a closed connection, a protocol error or a timeout.
        """
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        command = bytearray()
        dataset = bytearray()
        decoded: dict[int, bytes] | None = None
        context_id = 0
        try:
            while True:
                if not self._pending:
                    pdu_type, body = _read_pdu(self.sock)
                    if pdu_type == _ul.PDU_ABORT:
                        raise Aborted("the PACS aborted the association")
                    if pdu_type == _ul.PDU_RELEASE_RQ:
                        self._send_raw(_ul.RELEASE_RP)
                        raise Aborted("the PACS released the association during a request")
                    if pdu_type != _ul.PDU_P_DATA:
                        raise Aborted(f"unexpected PDU type 0x{pdu_type:02X}")
                    self._pending = _pdvs(body)
                while self._pending:
                    # PDVs after a complete message stay pending for the next call
                    context_id, control, data = self._pending.pop(0)
                    if control & 0x01:
                        command += data
                        if control & 0x02:
                            decoded = _ul.decode_command(bytes(command))
                            if _ul.command_us(decoded, 0x0800) == _ul.NO_DATASET:
                                return Response(context_id, decoded, None)
                    else:
                        dataset += data
                        if control & 0x02 and decoded is not None:
                            return Response(context_id, decoded, bytes(dataset))
        except TimeoutError:
            self.established = False
            raise Aborted("no response in time") from None
        except (OSError, _ul.ProtocolError) as exc:
            self.established = False
            raise Aborted(str(exc)) from None
        except Aborted:
            self.established = False
            raise

    def _send_raw(self, data: bytes) -> None:
        with self._send_lock, contextlib.suppress(OSError):
            self.sock.sendall(data)

    def release(self) -> None:
        """Release the association politely (bounded by the timeout), then close."""
        if self.established:
            self.established = False
            try:
                self.sock.settimeout(min(self.timeout, 10.0))
                self._send_raw(_ul.encode_release_rq())
                while True:
                    pdu_type, _ = _read_pdu(self.sock)
                    if pdu_type in (_ul.PDU_RELEASE_RP, _ul.PDU_ABORT):
                        break
            except (OSError, _ul.ProtocolError):
                pass
        self.sock.close()

    def abort(self) -> None:
        """Abort the association at once and close."""
        if self.established:
            self.established = False
            self._send_raw(_ul.encode_abort(source=0))
        self.sock.close()


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = bytearray(n)
    view = memoryview(data)
    while view:
        got = sock.recv_into(view)
        if got == 0:
            raise ConnectionResetError("connection closed by the peer")
        view = view[got:]
    return bytes(data)


def _read_pdu(sock: socket.socket) -> tuple[int, bytes]:
    header = _recv_exact(sock, 6)
    pdu_type, length = header[0], struct.unpack(">I", header[2:6])[0]
    if length > MAX_INCOMING_PDU:
        raise _ul.ProtocolError(f"PDU of {length} bytes announced")
    return pdu_type, _recv_exact(sock, length)


def _pdvs(body: bytes) -> list[tuple[int, int, bytes]]:
    out = []
    pos = 0
    while pos < len(body):
        if pos + 6 > len(body):
            raise _ul.ProtocolError("truncated PDV item")
        length, context_id, control = struct.unpack_from(">IBB", body, pos)
        if length < 2 or pos + 4 + length > len(body):
            raise _ul.ProtocolError("PDV item overruns its PDU")
        out.append((context_id, control, body[pos + 6 : pos + 4 + length]))
        pos += 4 + length
    return out
