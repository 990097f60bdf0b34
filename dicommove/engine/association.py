"""Our association with the PACS: an asyncio requestor on the :mod:`dicommove._ul` codec.

One :class:`Association` per worker. Its protocol parses PDUs as bytes arrive and
assembles whole DIMSE messages (command set, then dataset if any) into a queue;
:meth:`Association.receive` takes the next one. Responses are decoded only as far as
needed: status and counts straight from the command set, an identifier only when
the caller asks. Nothing here blocks: a C-CANCEL can be sent while a response is
awaited, and :meth:`Association.interrupt` wakes the waiter so that it can look at
cancels and timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from .. import _sop, _ul

if TYPE_CHECKING:
    from ..store import Incoming
    from .getstore import GetStore

__all__ = ["Aborted", "Association", "Interrupted", "Rejected", "Response"]

#: A response PDU longer than 16 MiB is not a Query/Retrieve response.
MAX_INCOMING_PDU = 1 << 24
#: The receive buffer: a few of the PDUs a PACS sends, read straight into it.
_READ_BUFFER = 1 << 19
#: Free room asked for each read.
_READ_ROOM = 1 << 16


class Rejected(Exception):
    """The peer answered A-ASSOCIATE-RJ."""

    def __init__(self, result: int, source: int, reason: int) -> None:
        super().__init__(f"rejected: result {result}, source {source}, reason {reason}")
        self.result, self.source, self.reason = result, source, reason


class Aborted(Exception):
    """The association ended: A-ABORT, a closed or reset connection, or a timeout."""


class Interrupted(Exception):
    """:meth:`Association.interrupt` woke a waiting :meth:`Association.receive`."""


@dataclass
class Response:
    """One DIMSE message: its decoded command set and, if any, its dataset bytes."""

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


class Association(asyncio.BufferedProtocol):
    """An association we requested; create it with :meth:`connect`."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.contexts: dict[str, tuple[int, str]] = {}  # abstract syntax -> (id, syntax)
        self.peer_max_pdu = 0
        self.extended: dict[str, bytes] = {}  # SOP class -> the PACS's extended negotiation
        self.established = False
        self.local_address = ""
        self.peer_address = ""
        self._rbuf = bytearray(_READ_BUFFER)  # received bytes: PDUs are parsed in place
        self._view = memoryview(self._rbuf)
        self._start = self._end = 0  # the unparsed bytes are _rbuf[_start:_end]
        self._need = 0  # free bytes the next read needs: the rest of a large PDU
        self._reply: asyncio.Future[tuple[int, bytes]] | None = None  # A-ASSOCIATE-AC/RJ
        self._released: asyncio.Future[None] | None = None
        self._messages: deque[Response | BaseException] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._command = bytearray()
        self._dataset = bytearray()
        self._decoded: dict[int, bytes] | None = None
        self._closed: str = ""
        self._resting: asyncio.TimerHandle | None = None
        # C-GET: storage contexts we accepted the SCP role for, and where C-STOREs go
        self.storage_contexts: dict[int, tuple[str, str]] = {}  # id -> (class, syntax)
        self.store: GetStore | None = None
        self.get_message_id: int | None = None  # the C-GET in progress
        self._incoming: Incoming | None = None
        self._store_message = (0, 0)  # (message ID, context ID) of the C-STORE in progress

    # -- set-up ------------------------------------------------------------------
    @classmethod
    async def connect(
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
        implementation_class_uid: str,
        implementation_version_name: str,
        storage_classes: Sequence[str] = (),
        extended: Mapping[str, bytes] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> Association:
        """Connect and negotiate.

        ``storage_classes`` (for C-GET) are proposed with the Storage SCP role: the
        PACS may then send their instances to us on this association. ``extended`` asks
        for SOP Class Extended Negotiation; the answers are in :attr:`extended`. With
        ``tls``, the TLS handshake is part of the connection (``connect_timeout``).

        Raises
        ------
        OSError
            If the TCP connection cannot be made (``TimeoutError`` after ``connect_timeout``);
            :class:`ssl.SSLError` if the TLS handshake fails.
        Rejected
            If the peer rejects the association.
        Aborted
            If the peer aborts, closes, or does not answer within ``acse_timeout``.
        """
        loop = asyncio.get_running_loop()
        _transport, assoc = await asyncio.wait_for(
            loop.create_connection(
                cls, host, port, ssl=tls, ssl_handshake_timeout=connect_timeout if tls else None
            ),
            connect_timeout,
        )
        uncompressed = [_sop.EXPLICIT_VR_LE, _sop.IMPLICIT_VR_LE]
        proposed = [
            _ul.PresentationContext(2 * i + 1, uid, list(uncompressed))
            for i, uid in enumerate([*abstract_syntaxes, *storage_classes])
        ]
        if len(proposed) > 128:
            raise ValueError(f"{len(proposed)} presentation contexts: 128 at most")
        try:
            assoc._reply = loop.create_future()
            assoc._write(
                _ul.encode_associate_rq(
                    called_ae=called_ae,
                    calling_ae=calling_ae,
                    contexts=proposed,
                    max_pdu=max_pdu,
                    implementation_class_uid=implementation_class_uid,
                    implementation_version_name=implementation_version_name,
                    scp_roles=storage_classes,
                    extended=extended,
                )
            )
            try:
                pdu_type, body = await asyncio.wait_for(assoc._reply, acse_timeout)
            except asyncio.TimeoutError:
                raise Aborted(f"no association reply within {acse_timeout:g} s") from None
            if pdu_type == _ul.PDU_ASSOCIATE_RJ and len(body) >= 4:
                raise Rejected(body[1], body[2], body[3])
            if pdu_type != _ul.PDU_ASSOCIATE_AC:
                raise Aborted(f"the peer answered PDU type 0x{pdu_type:02X}, not an A-ASSOCIATE-AC")
            try:
                peer_max_pdu, results = _ul.decode_associate_ac(body)
            except _ul.ProtocolError as exc:
                raise Aborted(f"association set-up failed: {exc}") from None
        except BaseException:
            assoc.close()
            raise
        assoc.peer_max_pdu = peer_max_pdu
        assoc.extended = _ul.decode_extended_negotiation(body) if extended else {}
        accepted = [cx for cx in proposed if results.get(cx.context_id, (1, ""))[0] == _ul.ACCEPTED]
        storage = set(storage_classes)
        assoc.contexts = {
            cx.abstract_syntax: (cx.context_id, results[cx.context_id][1])
            for cx in accepted
            if cx.abstract_syntax not in storage
        }
        assoc.storage_contexts = {
            cx.context_id: (cx.abstract_syntax, results[cx.context_id][1])
            for cx in accepted
            if cx.abstract_syntax in storage
        }
        assoc.established = True
        return assoc

    # -- asyncio -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport; no Nagle delay on our small requests."""
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        name = transport.get_extra_info("sockname")
        self.local_address = str(name[0]) if name else ""
        peer = transport.get_extra_info("peername")
        self.peer_address = str(peer[0]) if peer else ""

    def get_buffer(self, sizehint: int) -> memoryview:
        """Where the next bytes go: the free end of the receive buffer, never a copy."""
        need = max(self._need, _READ_ROOM)
        if len(self._rbuf) - self._end < need:
            left = self._end - self._start
            if len(self._rbuf) < left + need:  # a PDU larger than the buffer: grow it
                grown = bytearray(left + need)
                grown[:left] = self._view[self._start : self._end]
                self._rbuf, self._view = grown, memoryview(grown)
            elif self._start:  # move the partial PDU to the front
                self._rbuf[:left] = self._rbuf[self._start : self._end]
            self._start, self._end = 0, left
        return self._view[self._end :]

    def buffer_updated(self, nbytes: int) -> None:
        """Parse the whole PDUs received so far; P-DATA is read in place, not copied."""
        self._end += nbytes
        buf, view = self._rbuf, self._view
        start, end = self._start, self._end
        try:
            while end - start >= 6:
                pdu_type = buf[start]
                (length,) = struct.unpack_from(">I", buf, start + 2)
                if length > MAX_INCOMING_PDU:
                    raise _ul.ProtocolError(f"PDU of {length} bytes announced")
                if end - start - 6 < length:
                    self._need = length + 6 - (end - start)
                    break
                body = view[start + 6 : start + 6 + length]
                start += 6 + length
                self._pdu(pdu_type, body)
            else:
                self._need = 0
        except (_ul.ProtocolError, Aborted) as exc:
            self._fail(str(exc))
            self.abort()
            start = end
        if start == end:
            start = end = 0
        self._start, self._end = start, end

    def connection_lost(self, exc: Exception | None) -> None:
        """Fail whatever waits: the association is gone."""
        self._fail(f"connection error: {exc}" if exc else "the PACS closed the connection")
        self._lose_incoming()
        if self._released is not None and not self._released.done():
            self._released.set_result(None)

    # -- PDUs --------------------------------------------------------------------
    def _pdu(self, pdu_type: int, body: memoryview) -> None:
        if self._reply is not None and not self._reply.done():
            self._reply.set_result((pdu_type, bytes(body)))
            return
        if pdu_type == _ul.PDU_P_DATA:
            self._pdata(body)
        elif pdu_type == _ul.PDU_ABORT:
            self._fail("the PACS aborted the association")
            self.close()
        elif pdu_type == _ul.PDU_RELEASE_RQ:
            self._write(_ul.RELEASE_RP)
            self._fail("the PACS released the association during a request")
            self.close()
        elif pdu_type == _ul.PDU_RELEASE_RP:
            if self._released is not None and not self._released.done():
                self._released.set_result(None)
        else:
            raise _ul.ProtocolError(f"unexpected PDU type 0x{pdu_type:02X}")

    def _pdata(self, body: memoryview) -> None:
        pos, end = 0, len(body)
        while pos < end:
            if pos + 6 > end:
                raise _ul.ProtocolError("truncated PDV item")
            length, context_id, control = struct.unpack_from(">IBB", body, pos)
            if length < 2 or pos + 4 + length > end:
                raise _ul.ProtocolError("PDV item overruns its PDU")
            data = body[pos + 6 : pos + 4 + length]
            pos += 4 + length
            if control & 0x01:
                self._command += data
                if control & 0x02:
                    decoded = _ul.decode_command(bytes(self._command), strict=False)
                    self._command.clear()
                    if _ul.command_us(decoded, 0x0100) == _ul.C_STORE_RQ:
                        self._begin_store(decoded, context_id)
                    elif _ul.command_us(decoded, 0x0800) == _ul.NO_DATASET:
                        self._deliver(Response(context_id, decoded, None))
                    else:
                        self._decoded = decoded
            elif self._incoming is not None:  # a C-GET's instance: straight to its file
                self._incoming.write(data)
                if control & 0x02:
                    incoming, self._incoming = self._incoming, None
                    assert self.store is not None
                    self.store.end(self, incoming, *self._store_message)
            else:
                self._dataset += data
                if control & 0x02:
                    if self._decoded is None:
                        raise _ul.ProtocolError("a dataset without its command set")
                    dataset, self._dataset = bytes(self._dataset), bytearray()
                    decoded, self._decoded = self._decoded, None
                    self._deliver(Response(context_id, decoded, dataset))

    def _begin_store(self, command: dict[int, bytes], context_id: int) -> None:
        if self.store is None or self._incoming is not None:
            raise _ul.ProtocolError("a C-STORE where no C-GET asked for one")
        if _ul.command_us(command, 0x0800) == _ul.NO_DATASET:
            raise _ul.ProtocolError("a C-STORE request without a dataset")
        self._store_message = (_ul.command_us(command, 0x0110) or 0, context_id)
        self._incoming = self.store.begin(self, command, context_id)

    def _lose_incoming(self) -> None:
        incoming, self._incoming = self._incoming, None
        if incoming is not None and self.store is not None:
            self.store.lost(incoming, f"the association ended mid-instance: {self._closed}")

    def _deliver(self, item: Response | BaseException) -> None:
        self._messages.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, why: str) -> None:
        if self._closed:
            return
        self._closed = why
        self.established = False
        if self._reply is not None and not self._reply.done():
            self._reply.set_exception(Aborted(f"association set-up failed: {why}"))
        self._deliver(Aborted(why))

    def _write(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            raise Aborted(self._closed or "the connection is closed")
        self.transport.write(data)

    # -- use ---------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        """Send encoded PDUs (a C-STORE response).

        Raises
        ------
        Aborted
            If the connection is gone.
        """
        self._write(data)

    def send(self, context_id: int, command: bytes, dataset: bytes | None = None) -> None:
        """Send one message.

        Raises
        ------
        Aborted
            If the connection is gone.
        """
        max_pdu = self.peer_max_pdu
        pdus = _ul.encode_pdata(context_id, command, command=True, max_pdu=max_pdu)
        if dataset is not None:
            pdus += _ul.encode_pdata(context_id, dataset, command=False, max_pdu=max_pdu)
        self._write(b"".join(pdus))

    async def receive(self, timeout: float | None = None) -> Response:
        """Return the next whole DIMSE message.

        Raises
        ------
        Aborted
            On A-ABORT, a closed connection, a protocol error, or after ``timeout`` s.
        Interrupted
            When :meth:`interrupt` was called while waiting (nothing is lost).
        """
        while not self._messages:
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                if timeout is None:
                    await waiter
                else:
                    await asyncio.wait_for(waiter, timeout)
            except asyncio.TimeoutError:
                self._fail(f"no response within {timeout:g} s")
                self.abort()
            finally:
                self._waiter = None
        item = self._messages.popleft()
        if isinstance(item, Response):
            return item
        if isinstance(item, Aborted):
            self._messages.appendleft(item)  # every later receive() says so too
        raise item

    @property
    def has_messages(self) -> bool:
        """Whether a message is waiting to be received."""
        return bool(self._messages)

    def rest(self, seconds: float) -> None:
        """Read nothing for ``seconds``: let messages gather, then read them in one go.

        A PACS sends a pending C-MOVE response per instance; while many instances are to
        come, reading those in bursts saves a system call and a wake-up per instance on
        the path that answers the C-STOREs. Nothing is lost: the kernel keeps them.
        """
        transport = self.transport
        if transport is None or transport.is_closing() or self._resting is not None:
            return
        transport.pause_reading()
        loop = asyncio.get_running_loop()
        self._resting = loop.call_later(seconds, self._wake_up)

    def _wake_up(self) -> None:
        self._resting = None
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def interrupt(self) -> None:
        """Wake a pending :meth:`receive` with :class:`Interrupted`."""
        if self._resting is not None:
            self._resting.cancel()
            self._wake_up()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            self._messages.appendleft(Interrupted())
            waiter.set_result(None)

    async def release(self, timeout: float = 10.0) -> None:
        """Release the association politely (bounded by ``timeout``), then close."""
        if self.established and self.transport is not None:
            self.established = False
            self._released = asyncio.get_running_loop().create_future()
            with contextlib.suppress(Aborted, asyncio.TimeoutError):
                self._write(_ul.encode_release_rq())
                await asyncio.wait_for(self._released, timeout)
        self.close()

    def abort(self) -> None:
        """Abort the association at once and close."""
        if self.transport is not None and not self.transport.is_closing():
            with contextlib.suppress(Aborted):
                self._write(_ul.encode_abort(source=0))
        self.established = False
        self._fail("aborted")
        self._lose_incoming()
        self.close()

    def close(self) -> None:
        """Close the connection."""
        self.established = False
        if self.transport is not None:
            self.transport.close()
