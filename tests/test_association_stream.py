"""The requestor's PDU parser reads P-DATA in place: any split of the stream, any PDU size.

The bytes come from :mod:`dicommove._ul`'s encoders and are fed through the
:class:`asyncio.BufferedProtocol` calls (``get_buffer`` / ``buffer_updated``) the way the
event loop does, in chunks of random sizes; the parsed messages must be exactly what was
sent, and a violation must end the association.
"""

from __future__ import annotations

import random
import struct

import pytest

from dicommove import _ul
from dicommove.engine.association import (
    _READ_BUFFER,
    MAX_INCOMING_PDU,
    Aborted,
    Association,
    Response,
)


class _Transport:
    """Enough of a transport for an association that only receives."""

    def __init__(self) -> None:
        self.closed = False
        self.sent: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.sent.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> None:
        return None


def _feed(assoc: Association, stream: bytes, rng: random.Random, largest: int) -> None:
    pos = 0
    while pos < len(stream):
        room = assoc.get_buffer(-1)
        n = min(len(room), rng.randint(1, largest), len(stream) - pos)
        room[:n] = stream[pos : pos + n]
        assoc.buffer_updated(n)
        pos += n


def _message(cx: int, message_id: int, dataset: bytes, max_pdu: int) -> bytes:
    command = _ul.encode_request(
        _ul.C_FIND_RQ, message_id, sop_class="1.2.3", has_dataset=bool(dataset)
    )
    pdus = _ul.encode_pdata(cx, command, command=True, max_pdu=max_pdu)
    if dataset:
        pdus += _ul.encode_pdata(cx, dataset, command=False, max_pdu=max_pdu)
    return b"".join(pdus)


def _messages(assoc: Association) -> list[Response | BaseException]:
    return list(assoc._messages)


@pytest.mark.parametrize("seed", range(6))
def test_messages_survive_any_split_of_the_stream(seed: int) -> None:
    rng = random.Random(seed)
    assoc = Association()
    assoc.connection_made(_Transport())  # type: ignore[arg-type]
    sent = []
    stream = b""
    for message_id in range(1, 40):
        size = rng.choice([0, 1, 100, 5_000, 70_000, 300_000])
        dataset = rng.randbytes(size)
        max_pdu = rng.choice([0, 16_384, 131_072, 2 * _READ_BUFFER])  # 0: one PDU, any size
        sent.append((message_id, dataset))
        stream += _message(1 + 2 * (message_id % 3), message_id, dataset, max_pdu)
    _feed(assoc, stream, rng, largest=rng.choice([7, 4_096, 65_536, 1 << 20]))
    got = _messages(assoc)
    assert all(isinstance(item, Response) for item in got)
    assert [(r.us(0x0110), r.dataset or b"") for r in got if isinstance(r, Response)] == sent


def test_a_pdu_larger_than_the_buffer_grows_it_and_keeps_the_bytes() -> None:
    assoc = Association()
    assoc.connection_made(_Transport())  # type: ignore[arg-type]
    dataset = random.Random(1).randbytes(3 * _READ_BUFFER)
    _feed(assoc, _message(1, 7, dataset, 0), random.Random(2), largest=1 << 16)
    (response,) = _messages(assoc)
    assert isinstance(response, Response) and response.dataset == dataset


def test_an_announced_pdu_over_the_cap_aborts_without_allocating_it() -> None:
    assoc = Association()
    transport = _Transport()
    assoc.connection_made(transport)  # type: ignore[arg-type]
    header = struct.pack(">BBI", _ul.PDU_P_DATA, 0, MAX_INCOMING_PDU + 1)
    _feed(assoc, header + b"\0" * 100, random.Random(3), largest=50)
    (item,) = _messages(assoc)
    assert isinstance(item, Aborted) and "bytes announced" in str(item)
    assert transport.closed
    assert len(assoc.get_buffer(-1)) < 2 * _READ_BUFFER  # nothing sized by the header


def test_a_pdv_overrunning_its_pdu_aborts() -> None:
    assoc = Association()
    transport = _Transport()
    assoc.connection_made(transport)  # type: ignore[arg-type]
    pdv = struct.pack(">IBB", 1_000, 1, 0x03) + b"\0" * 10
    _feed(assoc, struct.pack(">BBI", _ul.PDU_P_DATA, 0, len(pdv)) + pdv, random.Random(4), 9)
    (item,) = _messages(assoc)
    assert isinstance(item, Aborted) and "overruns" in str(item)
    assert transport.closed
