"""The PS3.8 codec, checked against pynetdicom's own PDU classes (no sockets)."""

from __future__ import annotations

import struct

import pytest
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import A_ASSOCIATE, MaximumLengthNotification
from pynetdicom.presentation import build_context

from dicommove import _ul

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT, IMPLICIT = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2"


def pynetdicom_rq() -> bytes:
    primitive = A_ASSOCIATE()
    primitive.application_context_name = _ul.APPLICATION_CONTEXT
    primitive.calling_ae_title = "ORTHANC"
    primitive.called_ae_title = "STORE-SCP"
    contexts = [build_context(CT, [IMPLICIT, EXPLICIT]), build_context("1.2.840.10008.1.1")]
    for i, cx in enumerate(contexts):
        cx.context_id = 2 * i + 1
    primitive.presentation_context_definition_list = contexts
    max_length = MaximumLengthNotification()
    max_length.maximum_length_received = 32768
    primitive.user_information = [max_length]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(primitive)
    return bytes(pdu.encode())


def test_decode_associate_rq() -> None:
    raw = pynetdicom_rq()
    assert raw[0] == _ul.PDU_ASSOCIATE_RQ
    rq = _ul.decode_associate_rq(raw[6:])
    assert (rq.called_ae, rq.calling_ae) == ("STORE-SCP", "ORTHANC")
    assert rq.application_context == _ul.APPLICATION_CONTEXT
    assert [(c.context_id, c.abstract_syntax) for c in rq.contexts] == [
        (1, CT),
        (3, "1.2.840.10008.1.1"),
    ]
    assert rq.contexts[0].transfer_syntaxes == [IMPLICIT, EXPLICIT]
    assert rq.max_pdu == 32768


def test_encoded_associate_ac_is_what_pynetdicom_reads() -> None:
    rq = _ul.decode_associate_rq(pynetdicom_rq()[6:])
    rq.contexts[0].result, rq.contexts[0].transfer_syntax = _ul.ACCEPTED, EXPLICIT
    raw = _ul.encode_associate_ac(
        rq, max_pdu=65536, implementation_class_uid="1.2.3", implementation_version_name="TEST"
    )
    pdu = A_ASSOCIATE_AC()
    pdu.decode(raw)
    primitive = pdu.to_primitive()
    assert primitive.called_ae_title == "STORE-SCP"
    results = {
        cx.context_id: (cx.result, cx.transfer_syntax)
        for cx in primitive.presentation_context_definition_results_list
    }
    assert results[1] == (0, [EXPLICIT])
    assert results[3][0] == _ul.ABSTRACT_SYNTAX_NOT_SUPPORTED
    assert primitive.maximum_length_received == 65536
    assert primitive.implementation_class_uid == "1.2.3"


@pytest.mark.parametrize("cut", [0, 10, 67, 80])
def test_truncated_rq_is_a_protocol_error(cut: int) -> None:
    body = pynetdicom_rq()[6:]
    with pytest.raises(_ul.ProtocolError):
        _ul.decode_associate_rq(body[:cut] if cut < 68 else body[:68] + b"\x20\x00\xff\xff")


def test_command_round_trip() -> None:
    raw = _ul.encode_response(_ul.C_STORE_RSP, 7, 0xA700, CT, "1.2.3.4")
    command = _ul.decode_command(raw)
    assert _ul.command_us(command, 0x0100) == _ul.C_STORE_RSP
    assert _ul.command_us(command, 0x0120) == 7
    assert _ul.command_us(command, 0x0900) == 0xA700
    assert _ul.command_text(command, 0x1000) == "1.2.3.4"
    assert struct.unpack("<I", command[0x0000])[0] == len(raw) - 12


def test_command_outside_group_0_is_refused() -> None:
    with pytest.raises(_ul.ProtocolError, match="group"):
        _ul.decode_command(struct.pack("<HHI", 8, 0x18, 2) + b"12")


def test_command_overrun_is_refused() -> None:
    with pytest.raises(_ul.ProtocolError, match="overruns"):
        _ul.decode_command(struct.pack("<HHI", 0, 0x100, 200) + b"12")


def test_pdata_wraps_one_last_command_fragment() -> None:
    pdu = _ul.encode_command_pdata(5, b"abcd")
    assert pdu[0] == _ul.PDU_P_DATA
    length, pdv_length, cx, control = struct.unpack(">xxIIBB", pdu[:12])
    assert (length, pdv_length, cx, control) == (10, 6, 5, 0x03)


def test_associate_rq_we_send_is_what_pynetdicom_reads() -> None:
    cx = _ul.PresentationContext(1, CT, [EXPLICIT, IMPLICIT])
    raw = _ul.encode_associate_rq(
        called_ae="ORTHANC",
        calling_ae="STORE-SCP",
        contexts=[cx],
        max_pdu=65536,
        implementation_class_uid="1.2.3",
        implementation_version_name="TEST",
    )
    pdu = A_ASSOCIATE_RQ()
    pdu.decode(raw)
    primitive = pdu.to_primitive()
    assert (primitive.called_ae_title, primitive.calling_ae_title) == ("ORTHANC", "STORE-SCP")
    (context,) = primitive.presentation_context_definition_list
    assert (context.context_id, context.abstract_syntax) == (1, CT)
    assert context.transfer_syntax == [EXPLICIT, IMPLICIT]
    assert primitive.maximum_length_received == 65536


def test_associate_ac_round_trip() -> None:
    rq = _ul.decode_associate_rq(pynetdicom_rq()[6:])
    rq.contexts[0].result, rq.contexts[0].transfer_syntax = _ul.ACCEPTED, IMPLICIT
    raw = _ul.encode_associate_ac(
        rq, max_pdu=4096, implementation_class_uid="1.2", implementation_version_name="X"
    )
    max_pdu, results = _ul.decode_associate_ac(raw[6:])
    assert max_pdu == 4096
    assert results[1] == (_ul.ACCEPTED, IMPLICIT)
    assert results[3][0] == _ul.ABSTRACT_SYNTAX_NOT_SUPPORTED


def test_move_request_command_decodes_as_pynetdicom_would() -> None:
    from pynetdicom.dsutils import decode

    raw = _ul.encode_request(
        _ul.C_MOVE_RQ,
        9,
        sop_class="1.2.840.10008.5.1.4.1.2.2.2",
        has_dataset=True,
        move_destination="STORE-SCP",
    )
    ds = decode(__import__("io").BytesIO(raw), True, True)
    assert ds.CommandField == 0x0021
    assert ds.MessageID == 9
    assert ds.MoveDestination == "STORE-SCP"
    assert ds.CommandDataSetType != 0x0101
    assert ds.CommandGroupLength == len(raw) - 12
    cancel = _ul.decode_command(_ul.encode_request(_ul.C_CANCEL_RQ, 0, responding_to=9))
    assert _ul.command_us(cancel, 0x0120) == 9
    assert _ul.command_us(cancel, 0x0800) == _ul.NO_DATASET


@pytest.mark.parametrize(
    ("size", "max_pdu", "pdus"),
    [(0, 100, 1), (94, 100, 1), (95, 100, 2), (1000, 0, 1), (1000, 106, 10)],
)
def test_pdata_fragments_respect_the_peer_maximum(size: int, max_pdu: int, pdus: int) -> None:
    data = bytes(range(256)) * (size // 256 + 1)
    out = _ul.encode_pdata(3, data[:size], command=False, max_pdu=max_pdu)
    assert len(out) == pdus
    assert all(max_pdu == 0 or len(p) - 6 <= max_pdu for p in out)
    assert b"".join(p[12:] for p in out) == data[:size]
    assert [p[11] & 0x02 for p in out] == [0] * (pdus - 1) + [0x02]


@pytest.mark.parametrize("sop", ["1.2.3.4", "1.2.3.45", "2.25." + "9" * 59])
@pytest.mark.parametrize("status", [0x0000, 0xA700, 0xC000])
def test_store_response_in_one_go_equals_the_general_encoder(sop: str, status: int) -> None:
    cls = "1.2.840.10008.5.1.4.1.1.2"
    general = _ul.encode_command_pdata(
        7, _ul.encode_response(_ul.C_STORE_RSP, 513, status, cls, sop)
    )
    assert _ul.encode_store_response(7, 513, status, cls, sop) == general
