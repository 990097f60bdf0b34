"""Our requestor's message assembly, over a socket pair (no PACS)."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from dicommove import _ul
from dicommove.engine.association import Aborted, Association, Interrupted

MOVE = "1.2.840.10008.5.1.4.1.2.2.2"


def pdv(context_id: int, control: int, data: bytes) -> bytes:
    return struct.pack(">IBB", len(data) + 2, context_id, control) + data


def pdu(*pdvs: bytes) -> bytes:
    body = b"".join(pdvs)
    return struct.pack(">BBI", _ul.PDU_P_DATA, 0, len(body)) + body


def _command(status: int, completed: int, dataset: bool = False) -> bytes:
    body = b"".join(
        struct.pack("<HHI", 0, element, len(value)) + value
        for element, value in (
            (0x0100, struct.pack("<H", 0x8021)),
            (0x0120, struct.pack("<H", 1)),
            (0x0800, struct.pack("<H", 0x0001 if dataset else 0x0101)),
            (0x0900, struct.pack("<H", status)),
            (0x1021, struct.pack("<H", completed)),
        )
    )
    return struct.pack("<HHI", 0, 0, 4) + struct.pack("<I", len(body)) + body


async def requestor() -> tuple[Association, socket.socket]:
    """Our association on one end of a socket pair, established, and the peer's end."""
    ours, theirs = socket.socketpair()
    _transport, assoc = await asyncio.get_running_loop().create_connection(Association, sock=ours)
    assoc.contexts = {MOVE: (1, "1.2.840.10008.1.2")}
    assoc.established = True
    return assoc, theirs


def test_two_messages_in_one_pdu_are_both_read() -> None:
    async def check() -> None:
        req, peer = await requestor()
        with peer:
            peer.sendall(pdu(pdv(1, 0x03, _command(0xFF00, 1)), pdv(1, 0x03, _command(0, 2))))
            first, second = await req.receive(), await req.receive()
        assert (first.status, first.us(0x1021)) == (0xFF00, 1)
        assert (second.status, second.us(0x1021)) == (0, 2)
        req.abort()

    asyncio.run(check())


def test_fragments_across_pdus_and_a_dataset() -> None:
    async def check() -> None:
        req, peer = await requestor()
        command = _command(0xB000, 3, dataset=True)
        with peer:
            peer.sendall(pdu(pdv(1, 0x01, command[:10])) + pdu(pdv(1, 0x03, command[10:])))
            peer.sendall(pdu(pdv(1, 0x00, b"abc")) + pdu(pdv(1, 0x02, b"def")))
            rsp = await req.receive()
        assert rsp.status == 0xB000
        assert rsp.dataset == b"abcdef"
        req.abort()

    asyncio.run(check())


@pytest.mark.parametrize(
    "raw",
    [
        struct.pack(">BBI", _ul.PDU_ABORT, 0, 4) + bytes(4),
        b"",  # the peer closes
        pdu(struct.pack(">IBB", 100, 1, 3)),  # a PDV that overruns its PDU
    ],
)
def test_abort_close_and_garbage_end_the_association(raw: bytes) -> None:
    async def check() -> None:
        req, peer = await requestor()
        with peer:
            peer.sendall(raw)
            peer.shutdown(socket.SHUT_WR)
            with pytest.raises(Aborted):
                await req.receive()
        assert not req.established
        req.abort()

    asyncio.run(check())


def test_silence_is_a_timeout() -> None:
    async def check() -> None:
        req, peer = await requestor()
        with peer, pytest.raises(Aborted, match="no response within"):
            await req.receive(timeout=0.2)
        req.abort()

    asyncio.run(check())


def test_interrupt_wakes_a_waiting_receive_and_loses_nothing() -> None:
    async def check() -> None:
        req, peer = await requestor()
        with peer:
            waiting = asyncio.ensure_future(req.receive())
            await asyncio.sleep(0)
            req.interrupt()
            with pytest.raises(Interrupted):
                await waiting
            peer.sendall(pdu(pdv(1, 0x03, _command(0xFF00, 7))))
            rsp = await req.receive(timeout=5)
        assert rsp.us(0x1021) == 7
        req.abort()

    asyncio.run(check())
