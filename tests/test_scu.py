"""Our requestor's message assembly, over a socket pair (no PACS)."""

from __future__ import annotations

import socket
import struct

import pytest

from dicommove import _ul
from dicommove._scu import Aborted, Requestor

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


def requestor() -> tuple[Requestor, socket.socket]:
    ours, theirs = socket.socketpair()
    return Requestor(
        ours, contexts={MOVE: (1, "1.2.840.10008.1.2")}, peer_max_pdu=0, timeout=5
    ), theirs


def test_two_messages_in_one_pdu_are_both_read() -> None:
    req, peer = requestor()
    with peer:
        peer.sendall(pdu(pdv(1, 0x03, _command(0xFF00, 1)), pdv(1, 0x03, _command(0, 2))))
        first, second = req.receive(), req.receive()
    assert (first.status, first.us(0x1021)) == (0xFF00, 1)
    assert (second.status, second.us(0x1021)) == (0, 2)
    req.abort()


def test_fragments_across_pdus_and_a_dataset() -> None:
    req, peer = requestor()
    command = _command(0xB000, 3, dataset=True)
    with peer:
        peer.sendall(pdu(pdv(1, 0x01, command[:10])) + pdu(pdv(1, 0x03, command[10:])))
        peer.sendall(pdu(pdv(1, 0x00, b"abc")) + pdu(pdv(1, 0x02, b"def")))
        rsp = req.receive()
    assert rsp.status == 0xB000
    assert rsp.dataset == b"abcdef"
    req.abort()


@pytest.mark.parametrize(
    "raw",
    [
        struct.pack(">BBI", _ul.PDU_ABORT, 0, 4) + bytes(4),
        b"",  # the peer closes
        pdu(struct.pack(">IBB", 100, 1, 3)),  # a PDV that overruns its PDU
    ],
)
def test_abort_close_and_garbage_end_the_association(raw: bytes) -> None:
    req, peer = requestor()
    with peer:
        peer.sendall(raw)
        peer.shutdown(socket.SHUT_WR)
        with pytest.raises(Aborted):
            req.receive()
    assert not req.established
    req.abort()


def test_silence_is_a_timeout() -> None:
    req, peer = requestor()
    with peer, pytest.raises(Aborted, match="in time"):
        req.receive(timeout=0.2)
    req.abort()
