"""One store connection: an incremental PS3.8 parser and the C-STORE handler.

:class:`Connection` is the :class:`asyncio.BufferedProtocol` that
:class:`~dicommove.scp.StoreSCP` creates for each accepted connection. asyncio
reads into its buffer; :meth:`Connection._parse` walks PDU and PDV headers as they
complete and never waits for a whole PDU: command fragments are collected (at most
64 KiB), dataset fragments go straight to the instance's
:class:`~dicommove.store.Incoming`. Every PDU is checked at its header: an
A-ASSOCIATE-RQ at most 1 MiB, P-DATA at most our maximum PDU, A-RELEASE-RQ and
A-ABORT exactly 4 bytes; anything else is aborted.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import TYPE_CHECKING, NamedTuple, cast

from . import _status as st
from . import _ul
from .store import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, Incoming, Received

if TYPE_CHECKING:
    from .scp import StoreSCP

__all__ = ["MAX_ASSOCIATE_RQ", "MAX_COMMAND", "Connection", "Refusal"]

logger = logging.getLogger("dicommove")

#: The largest A-ASSOCIATE-RQ we read (DCMTK uses the same 1 MiB cap).
MAX_ASSOCIATE_RQ = 1 << 20
#: The largest command set we accumulate.
MAX_COMMAND = 1 << 16

#: The first byte of a TLS record carrying a handshake (a ClientHello, here).
_TLS_HANDSHAKE = 0x16

# parser states
_PDU_HEADER, _PDU_BODY, _PDV_HEADER, _PDV_DATA = range(4)


class Refusal(NamedTuple):
    """An association the store SCP rejected: who called, from where, and why."""

    ip: str
    calling_ae: str
    called_ae: str
    why: str
    at: float  # loop time


class _Closed(Exception):
    """The connection must end: a violation we answer with an A-ABORT."""


class Connection(asyncio.BufferedProtocol):
    """One incoming connection: an incremental PS3.8 parser and the C-STORE handler."""

    def __init__(self, scp: StoreSCP) -> None:
        self.scp = scp
        self.transport: asyncio.Transport | None = None
        self.ip = ""
        self.calling_ae = ""
        self.buf = bytearray(1 << 18)
        self.view = memoryview(self.buf)
        self.start = self.end = 0
        self.state = _PDU_HEADER
        self.pdu_type = 0
        self.pdu_left = 0  # bytes of the current PDU not parsed yet
        self.body = bytearray()  # a non-P-DATA PDU's body
        self.pdv_left = 0
        self.pdv_command = False
        self.pdv_last = False
        self.command = bytearray()
        self.associated = False
        self.contexts: dict[int, _ul.PresentationContext] = {}
        self.incoming: Incoming | None = None
        self.message = (0, 0)  # (message ID, context ID) of the C-STORE in progress
        self.blocked = False  # waiting for a file to reach the disk
        self.closing = False
        loop = asyncio.get_running_loop()
        self.loop = loop
        self.connected_at = self.last_activity = loop.time()
        self.received = 0  # bytes read, for the minimum-rate check
        self.rate_mark: tuple[float, int] | None = None  # (time, received) a message began

    @property
    def mid_message(self) -> bool:
        """Whether part of a PDU or DIMSE message has arrived and the rest has not."""
        if self.blocked:  # waiting for our disk, not for the peer
            return False
        between = self.state == _PDU_HEADER or (self.state == _PDV_HEADER and not self.pdu_left)
        return (
            not between or self.start < self.end or self.incoming is not None or bool(self.command)
        )

    # -- asyncio ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        self.ip = str(peer[0]) if peer else ""
        if self.scp._server is None:
            self.transport.abort()
            return
        self.scp._connected(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.start and len(self.buf) - self.end < 1 << 16:  # a partial header, near the end
            left = self.end - self.start
            self.buf[:left] = self.buf[self.start : self.end]
            self.start, self.end = 0, left
        return self.view[self.end :]

    def buffer_updated(self, nbytes: int) -> None:
        self.end += nbytes
        self.received += nbytes
        self.last_activity = self.loop.time()
        self._process()

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.scp._gone(self)
        why = f"connection error: {exc}" if exc else "connection closed by the peer"
        self._end_incoming(f"the association ended mid-instance: {why}")
        logger.debug("store connection from %s ended: %s", self.ip, why)

    # -- closing ---------------------------------------------------------------
    def close(self, why: str, *, log: bool = False) -> None:
        """Close without an A-ABORT (before association, or when we stop)."""
        if log:
            logger.warning("store SCP drops the connection from %s: %s", self.ip, why)
        self._end_incoming(f"the association ended mid-instance: {why}")
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def abort(self, why: str) -> None:
        """Send an A-ABORT and close."""
        logger.warning(
            "store SCP aborts the association from %s (%s): %s",
            self.ip,
            self.calling_ae or "?",
            why,
        )
        self._end_incoming(f"the association was aborted mid-instance: {why}")
        if self.transport is not None and not self.closing:
            self.transport.write(_ul.encode_abort())
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def _end_incoming(self, reason: str) -> None:
        incoming, self.incoming = self.incoming, None
        if incoming is not None:
            rec = incoming.abort(reason)
            logger.warning("lost %s from %s: %s", rec.sop_instance_uid, self.ip, reason)
            self._report(rec)

    def _report(self, rec: Received) -> bool:
        try:
            self.scp.on_instance(rec)
        except Exception:  # the record is kept; answer a failure rather than die
            logger.exception("error while recording %s", rec.sop_instance_uid)
            return False
        return True

    # -- parsing ---------------------------------------------------------------
    def _process(self) -> None:
        try:
            self._parse()
        except _Closed as closed:
            self.abort(str(closed))
        except _ul.ProtocolError as exc:
            self.abort(f"protocol error: {exc}")

    def _parse(self) -> None:
        buf = self.buf
        while self.start < self.end and not self.blocked and not self.closing:
            state = self.state
            if state == _PDV_DATA:
                take = min(self.end - self.start, self.pdv_left)
                chunk = self.view[self.start : self.start + take]
                self.start += take
                self.pdv_left -= take
                if self.pdv_command:
                    if len(self.command) + take > MAX_COMMAND:
                        raise _ul.ProtocolError("command set too long")
                    self.command += chunk
                elif self.incoming is None:
                    raise _ul.ProtocolError("dataset fragment without a C-STORE command")
                else:
                    self.incoming.write(chunk)
                if self.pdv_left == 0:
                    self.state = _PDV_HEADER
                    if self.pdv_last:
                        self._message_part_done()
            elif state == _PDV_HEADER:
                if self.pdu_left == 0:
                    self.state = _PDU_HEADER
                    continue
                if self.pdu_left < 6:
                    raise _ul.ProtocolError("truncated PDV item")
                if self.end - self.start < 6:
                    break
                length, cx_id, control = struct.unpack_from(">IBB", buf, self.start)
                self.start += 6
                if length < 2 or length + 4 > self.pdu_left:
                    raise _ul.ProtocolError("PDV item overruns its PDU")
                if cx_id not in self.contexts:
                    raise _ul.ProtocolError(f"presentation context {cx_id} was not accepted")
                self.pdu_left -= length + 4
                self.pdv_left = length - 2
                self.pdv_command = bool(control & 0x01)
                self.pdv_last = bool(control & 0x02)
                if self.pdv_command:
                    self.message = (self.message[0], cx_id)
                self.state = _PDV_DATA
                if self.pdv_left == 0 and self.pdv_last:
                    self.state = _PDV_HEADER
                    self._message_part_done()
            elif state == _PDU_HEADER:
                if self.end - self.start < 6:
                    break
                pdu_type = buf[self.start]
                (length,) = struct.unpack_from(">I", buf, self.start + 2)
                self.start += 6
                self._pdu_header(pdu_type, length)
            else:  # _PDU_BODY: a whole non-P-DATA PDU, capped at its header
                take = min(self.end - self.start, self.pdu_left)
                self.body += self.view[self.start : self.start + take]
                self.start += take
                self.pdu_left -= take
                if self.pdu_left == 0:
                    self.state = _PDU_HEADER
                    self._pdu_body(self.pdu_type, bytes(self.body))
                    self.body = bytearray()
        if self.start == self.end:
            self.start = self.end = 0

    def _pdu_header(self, pdu_type: int, length: int) -> None:
        """Check a PDU's type and length at its header, before its body is read."""
        if not self.associated:
            if pdu_type == _TLS_HANDSHAKE:
                why = "a TLS handshake: this store SCP does not speak TLS"
                self.scp.refusals.append(Refusal(self.ip, "", "", why, self.loop.time()))
                raise _Closed(f"{why} (store_tls=..., CLI --tls-cert/--tls-key)")
            if pdu_type != _ul.PDU_ASSOCIATE_RQ:
                raise _Closed(f"expected A-ASSOCIATE-RQ, got PDU type 0x{pdu_type:02X}")
            if length > MAX_ASSOCIATE_RQ:
                raise _Closed(
                    f"A-ASSOCIATE-RQ of {length} bytes announced (limit {MAX_ASSOCIATE_RQ})"
                )
        elif pdu_type == _ul.PDU_P_DATA:
            if length > self.scp.read_limit:
                raise _Closed(f"P-DATA of {length} bytes over our maximum of {self.scp.read_limit}")
            self.pdu_left = length
            self.state = _PDV_HEADER
            return
        elif pdu_type in (_ul.PDU_RELEASE_RQ, _ul.PDU_ABORT):
            if length != 4:
                raise _Closed(f"PDU type 0x{pdu_type:02X} of {length} bytes (4 expected)")
        else:
            raise _ul.ProtocolError(f"unexpected PDU type 0x{pdu_type:02X}")
        self.pdu_type, self.pdu_left = pdu_type, length
        self.state = _PDU_BODY
        if length == 0:
            self.state = _PDU_HEADER
            self._pdu_body(pdu_type, b"")

    def _pdu_body(self, pdu_type: int, body: bytes) -> None:
        if pdu_type == _ul.PDU_ASSOCIATE_RQ:
            self._associate(_ul.decode_associate_rq(body))
        elif pdu_type == _ul.PDU_RELEASE_RQ:
            self._end_incoming("the peer released the association mid-instance")
            assert self.transport is not None
            self.transport.write(_ul.RELEASE_RP)
            self.closing = True
            self.transport.close()
        else:  # A-ABORT
            self._end_incoming("the peer aborted the association mid-instance")
            self.closing = True
            assert self.transport is not None
            self.transport.close()

    def _associate(self, rq: _ul.AssociateRequest) -> None:
        scp = self.scp
        self.calling_ae = rq.calling_ae
        reject = scp._admit(self, rq)
        assert self.transport is not None
        if reject is not None:
            result, source, reason, why = reject
            logger.warning(
                "store SCP rejected an association from %s, calling AE %r, called AE %r: %s",
                self.ip,
                rq.calling_ae,
                rq.called_ae,
                why,
            )
            scp.refusals.append(
                Refusal(self.ip, rq.calling_ae, rq.called_ae, why, self.loop.time())
            )
            self.transport.write(_ul.encode_associate_rj(result, source, reason))
            self.close(why)
            return
        for cx in rq.contexts:
            scp.negotiate(cx)
            if cx.result == _ul.ACCEPTED:
                self.contexts[cx.context_id] = cx
        self.associated = True
        self.transport.write(
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

    # -- DIMSE -------------------------------------------------------------------
    def _message_part_done(self) -> None:
        if self.pdv_command:
            raw = bytes(self.command)
            self.command.clear()
            self._on_command(raw, self.message[1])
        else:
            self._on_dataset_end()

    def _on_command(self, raw: bytes, cx_id: int) -> None:
        if self.incoming is not None:
            raise _ul.ProtocolError("a new command before the previous dataset ended")
        command = _ul.decode_command(raw)
        field_ = _ul.command_us(command, 0x0100)
        message_id = _ul.command_us(command, 0x0110) or 0
        has_dataset = _ul.command_us(command, 0x0800) != _ul.NO_DATASET
        sop_class = _ul.command_text(command, 0x0002)
        assert self.transport is not None
        if field_ == _ul.C_ECHO_RQ and not has_dataset:
            response = _ul.encode_response(_ul.C_ECHO_RSP, message_id, st.SUCCESS, sop_class)
            self.transport.write(_ul.encode_command_pdata(cx_id, response))
            return
        if field_ != _ul.C_STORE_RQ or not has_dataset:
            if has_dataset:
                raise _ul.ProtocolError(f"unsupported DIMSE command 0x{field_ or 0:04X}")
            response = _ul.encode_response(
                (field_ or 0) | 0x8000, message_id, st.UNRECOGNIZED_OPERATION, sop_class
            )
            self.transport.write(_ul.encode_command_pdata(cx_id, response))
            return
        cx = self.contexts[cx_id]
        incoming = self.scp.store.begin_instance(
            sop_class_uid=sop_class,
            sop_instance_uid=_ul.command_text(command, 0x1000),
            transfer_syntax_uid=cx.transfer_syntax,
            calling_ae=self.calling_ae,
            originator_ae=_ul.command_text(command, 0x1030),
            originator_message_id=_ul.command_us(command, 0x1031),
        )
        rec = incoming.rec
        if sop_class != cx.abstract_syntax and rec.status == "received":
            rec.status = "refused"
            rec.reason = "Affected SOP Class differs from the presentation context"
            rec.dimse_status = st.STORE_DATASET_MISMATCH
            incoming.abort(rec.reason)
        self.incoming = incoming
        self.message = (message_id, cx_id)

    def _on_dataset_end(self) -> None:
        incoming, self.incoming = self.incoming, None
        if incoming is None:
            raise _ul.ProtocolError("dataset fragment without a C-STORE command")
        if not incoming.seal(self.scp.accept):
            self._respond(incoming.rec)
        elif self.scp.fsync_each:  # the file must reach the disk before we answer
            self.blocked = True
            assert self.transport is not None
            self.transport.pause_reading()
            task = self.loop.run_in_executor(None, lambda: incoming.persist(fsync=True))
            task.add_done_callback(lambda done: self._persisted(done, incoming))
        else:
            self._respond(incoming.persist(keep_open=True), incoming)

    def _persisted(self, future: asyncio.Future[Received], incoming: Incoming) -> None:
        self.blocked = False
        try:
            rec = future.result()
        except Exception as exc:  # a bug of ours: fail this instance, keep the association
            logger.exception("storing %s failed", incoming.rec.sop_instance_uid)
            rec = incoming.abort(f"internal error while storing: {exc}")
        if self.closing:
            self._report(rec)
            return
        self._respond(rec)
        assert self.transport is not None
        self.transport.resume_reading()
        self._process()

    def _respond(self, rec: Received, incoming: Incoming | None = None) -> None:
        """Answer the C-STORE, then record it (the sender waits only for the answer).

        The status is final before the answer: the file has its final name, or nothing
        was written. Recording (routing, journal, progress) cannot change it.
        """
        message_id, cx_id = self.message
        response = _ul.encode_store_response(
            cx_id, message_id, rec.dimse_status, rec.sop_class_uid, rec.sop_instance_uid
        )
        if self.transport is not None and not self.closing:
            self.transport.write(response)
        if incoming is not None:
            incoming.release()  # its file was renamed before the answer; now close it
        self._report(rec)
