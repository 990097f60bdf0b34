"""Our own DICOM upper layer and tables, cross-checked against pynetdicom and pydicom.

dicommove speaks PS3.8 itself (:mod:`dicommove._ul`, :meth:`StoreSCP.negotiate`) and
keeps its own tables (:mod:`dicommove._sop`, :mod:`dicommove._status`,
:mod:`dicommove._tags`) so that its network paths never import pynetdicom. Here every
encoder of ours is read back by pynetdicom's pure modules and every pynetdicom
encoding by ours; where pynetdicom's bytes are canonical they must be ours byte for
byte, and every place where we differ on purpose is asserted as exactly that
difference. ``tests/test_ul.py`` holds the plain codec tests, and
``tests/test_identifier.py`` the Q/R key table against pydicom.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import RawDataElement
from pydicom.filereader import read_dataset
from pydicom.uid import (
    AllTransferSyntaxes,
    ComprehensiveSRStorage,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    MRImageStorage,
    RLELossless,
)
from pynetdicom import dimse_messages, dimse_primitives, pdu, pdu_primitives, sop_class
from pynetdicom import status as pn_status
from pynetdicom.dsutils import encode as pn_encode
from pynetdicom.presentation import PresentationContext as PnContext
from pynetdicom.presentation import negotiate_as_acceptor

from dicommove import _sop, _status, _tags, _ul
from dicommove.scp import StoreSCP
from dicommove.store import InstanceStore

IMPLICIT, EXPLICIT = str(ImplicitVRLittleEndian), str(ExplicitVRLittleEndian)
DEFLATED, BIG_ENDIAN = str(DeflatedExplicitVRLittleEndian), str(ExplicitVRBigEndian)
JPEG, J2K, RLE = str(JPEGBaseline8Bit), str(JPEG2000Lossless), str(RLELossless)
CT, MR, SR = str(CTImageStorage), str(MRImageStorage), str(ComprehensiveSRStorage)
NOT_A_SOP_CLASS = "2.25.1001"  # a valid UID, but no SOP class
NOT_A_SYNTAX = "2.25.1002"  # a valid UID, but no transfer syntax
LONG_UID = "2.25.250386193394932478186766406962347125713.1234567890123456789"  # 64 characters


# -- A-ASSOCIATE-RQ ------------------------------------------------------------------------


@dataclass(frozen=True)
class Association:
    """What both sides read from an A-ASSOCIATE-RQ."""

    called_ae: str
    calling_ae: str
    contexts: tuple[tuple[int, str, tuple[str, ...]], ...]  # (id, abstract, syntaxes)
    max_pdu: int
    implementation_class_uid: str
    implementation_version_name: str
    application_context: str = _ul.APPLICATION_CONTEXT


RQ_CASES = [
    Association(
        "PACS", "DICOMMOVE", ((1, _sop.STUDY_ROOT_MOVE, (EXPLICIT, IMPLICIT)),), 262144, "1.2", "A"
    ),
    Association(
        "STORE-SCP",
        "ORTHANC",
        (
            (1, CT, (J2K, JPEG, EXPLICIT, IMPLICIT)),
            (3, _sop.VERIFICATION, (IMPLICIT,)),
            (5, MR, (RLE, NOT_A_SYNTAX)),
            (7, NOT_A_SOP_CLASS, (EXPLICIT,)),
            (255, SR, (DEFLATED, BIG_ENDIAN)),
        ),
        0,  # no limit
        LONG_UID,
        "PYNETDICOM_304",
    ),
    Association(
        "SIXTEEN-CHARS-AE",
        "X",
        ((129, _sop.PATIENT_ROOT_FIND, (IMPLICIT,)),),
        0xFFFFFFFF,
        "2.25.1003",
        "VERSION-16-CHARS",
    ),
]


def ours_rq(case: Association) -> bytes:
    contexts = [_ul.PresentationContext(i, a, list(ts)) for i, a, ts in case.contexts]
    return _ul.encode_associate_rq(
        called_ae=case.called_ae,
        calling_ae=case.calling_ae,
        contexts=contexts,
        max_pdu=case.max_pdu,
        implementation_class_uid=case.implementation_class_uid,
        implementation_version_name=case.implementation_version_name,
    )


def pn_context(context_id: int, abstract: str, syntaxes: Sequence[str]) -> PnContext:
    cx = PnContext()
    cx.context_id = context_id
    cx.abstract_syntax = abstract
    cx.transfer_syntax = list(syntaxes)
    return cx


def user_items(case: Association) -> list[Any]:
    max_length = pdu_primitives.MaximumLengthNotification()
    max_length.maximum_length_received = case.max_pdu
    class_uid = pdu_primitives.ImplementationClassUIDNotification()
    class_uid.implementation_class_uid = case.implementation_class_uid
    version = pdu_primitives.ImplementationVersionNameNotification()
    version.implementation_version_name = case.implementation_version_name
    return [max_length, class_uid, version]


def extra_rq_items() -> dict[str, Any]:
    """User information items that pynetdicom can send and our store SCP ignores."""
    identity = pdu_primitives.UserIdentityNegotiation()
    identity.user_identity_type = 2
    identity.primary_field = b"radiologist"
    identity.secondary_field = b"secret"
    identity.positive_response_requested = True
    extended = pdu_primitives.SOPClassExtendedNegotiation()
    extended.sop_class_uid = _sop.STUDY_ROOT_MOVE
    extended.service_class_application_information = b"\x01"  # relational retrieval
    role = pdu_primitives.SCP_SCU_RoleSelectionNegotiation()
    role.sop_class_uid = CT
    role.scu_role, role.scp_role = False, True
    window = pdu_primitives.AsynchronousOperationsWindowNegotiation()
    window.maximum_number_operations_invoked = 1
    window.maximum_number_operations_performed = 1
    common = pdu_primitives.SOPClassCommonExtendedNegotiation()
    common.sop_class_uid = CT
    common.service_class_uid = "1.2.840.10008.4.2"
    common.related_general_sop_class_identification = ["1.2.840.10008.5.1.4.1.1.2.1"]
    return {
        "identity": identity,
        "extended": extended,
        "role": role,
        "window": window,
        "common": common,
    }


def pn_rq(case: Association, extras: Sequence[str] = ()) -> bytes:
    primitive = pdu_primitives.A_ASSOCIATE()
    primitive.application_context_name = case.application_context
    primitive.called_ae_title = case.called_ae
    primitive.calling_ae_title = case.calling_ae
    primitive.presentation_context_definition_list = [pn_context(*cx) for cx in case.contexts]
    available = extra_rq_items()
    primitive.user_information = user_items(case) + [available[name] for name in extras]
    rq = pdu.A_ASSOCIATE_RQ()
    rq.from_primitive(primitive)
    return bytes(rq.encode())


def pn_version_name(primitive: Any) -> str:
    for item in primitive.user_information:
        if isinstance(item, pdu_primitives.ImplementationVersionNameNotification):
            return str(item.implementation_version_name)
    return ""


def as_read_by_pynetdicom(raw: bytes) -> Association:
    rq = pdu.A_ASSOCIATE_RQ()
    rq.decode(raw)
    primitive: Any = rq.to_primitive()
    return Association(
        called_ae=primitive.called_ae_title,
        calling_ae=primitive.calling_ae_title,
        contexts=tuple(
            (cx.context_id, str(cx.abstract_syntax), tuple(str(ts) for ts in cx.transfer_syntax))
            for cx in primitive.presentation_context_definition_list
        ),
        max_pdu=primitive.maximum_length_received,
        implementation_class_uid=str(primitive.implementation_class_uid),
        implementation_version_name=pn_version_name(primitive),
        application_context=str(primitive.application_context_name),
    )


def as_read_by_us(raw: bytes) -> Association:
    assert raw[0] == _ul.PDU_ASSOCIATE_RQ
    rq = _ul.decode_associate_rq(raw[6:])
    return Association(
        called_ae=rq.called_ae,
        calling_ae=rq.calling_ae,
        contexts=tuple(
            (cx.context_id, cx.abstract_syntax, tuple(cx.transfer_syntaxes)) for cx in rq.contexts
        ),
        max_pdu=rq.max_pdu,
        implementation_class_uid=rq.implementation_class_uid,
        implementation_version_name=rq.implementation_version_name,
        application_context=rq.application_context,
    )


@pytest.mark.parametrize("case", RQ_CASES, ids=lambda c: c.called_ae)
def test_our_associate_rq_reads_the_same_in_pynetdicom(case: Association) -> None:
    assert as_read_by_pynetdicom(ours_rq(case)) == case


@pytest.mark.parametrize("case", RQ_CASES, ids=lambda c: c.called_ae)
def test_our_associate_rq_is_pynetdicoms_byte_for_byte(case: Association) -> None:
    assert ours_rq(case) == pn_rq(case)


EXTRAS = [(), ("identity",), ("extended", "role", "window", "common"), tuple(extra_rq_items())]


@pytest.mark.parametrize("extras", EXTRAS, ids=lambda e: "+".join(e) or "plain")
@pytest.mark.parametrize("case", RQ_CASES, ids=lambda c: c.called_ae)
def test_pynetdicoms_associate_rq_reads_the_same_in_ours(
    case: Association, extras: tuple[str, ...]
) -> None:
    raw = pn_rq(case, extras)
    assert as_read_by_pynetdicom(raw) == case  # the items are really there...
    assert as_read_by_us(raw) == case  # ...and we skip the ones we do not use


# -- A-ASSOCIATE-AC ------------------------------------------------------------------------


@dataclass(frozen=True)
class Acceptance:
    """What both sides read from an A-ASSOCIATE-AC."""

    results: dict[int, tuple[int, str]]  # context id -> (result, syntax if accepted)
    max_pdu: int
    implementation_class_uid: str = ""
    implementation_version_name: str = ""
    called_ae: str = ""
    calling_ae: str = ""
    application_context: str = _ul.APPLICATION_CONTEXT
    extras: tuple[str, ...] = field(default=(), compare=False)
    extended: dict[str, bytes] = field(default_factory=dict, compare=False)


def pn_results(primitive: Any) -> dict[int, tuple[int, str]]:
    return {
        cx.context_id: (cx.result, str(cx.transfer_syntax[0]) if cx.result == 0 else "")
        for cx in primitive.presentation_context_definition_results_list
    }


def test_our_associate_ac_reads_the_same_in_pynetdicom() -> None:
    rq = _ul.AssociateRequest("STORE-SCP", "ORTHANC", _ul.APPLICATION_CONTEXT)
    rq.contexts = [
        _ul.PresentationContext(1, CT, [IMPLICIT, EXPLICIT], _ul.ACCEPTED, EXPLICIT),
        _ul.PresentationContext(3, CT, [J2K, IMPLICIT], _ul.ACCEPTED, J2K),
        _ul.PresentationContext(5, _sop.VERIFICATION, [IMPLICIT], _ul.ACCEPTED),  # no choice set
        _ul.PresentationContext(7, NOT_A_SOP_CLASS, [EXPLICIT]),  # default: not supported
        _ul.PresentationContext(
            9, MR, [NOT_A_SYNTAX], _ul.TRANSFER_SYNTAXES_NOT_SUPPORTED, NOT_A_SYNTAX
        ),
    ]
    raw = _ul.encode_associate_ac(
        rq, max_pdu=16384, implementation_class_uid=LONG_UID, implementation_version_name="DM_1"
    )
    ac = pdu.A_ASSOCIATE_AC()
    ac.decode(raw)
    primitive: Any = ac.to_primitive()
    assert primitive.result == 0
    assert Acceptance(
        results=pn_results(primitive),
        max_pdu=primitive.maximum_length_received,
        implementation_class_uid=str(primitive.implementation_class_uid),
        implementation_version_name=pn_version_name(primitive),
        called_ae=primitive.called_ae_title,
        calling_ae=primitive.calling_ae_title,
        application_context=str(primitive.application_context_name),
    ) == Acceptance(
        results={
            1: (_ul.ACCEPTED, EXPLICIT),
            3: (_ul.ACCEPTED, J2K),
            5: (_ul.ACCEPTED, IMPLICIT),  # an accepted context without a choice: the first
            7: (_ul.ABSTRACT_SYNTAX_NOT_SUPPORTED, ""),
            9: (_ul.TRANSFER_SYNTAXES_NOT_SUPPORTED, ""),
        },
        max_pdu=16384,
        implementation_class_uid=LONG_UID,
        implementation_version_name="DM_1",
        called_ae="STORE-SCP",
        calling_ae="ORTHANC",
    )


def pn_ac(acceptance: Acceptance) -> bytes:
    primitive = pdu_primitives.A_ASSOCIATE()
    primitive.application_context_name = acceptance.application_context
    primitive.called_ae_title = acceptance.called_ae
    primitive.calling_ae_title = acceptance.calling_ae
    primitive.result = 0
    results = []
    for context_id, (result, syntax) in acceptance.results.items():
        cx = PnContext()  # an AC's context has no abstract syntax
        cx.context_id, cx.result, cx.transfer_syntax = context_id, result, [syntax or EXPLICIT]
        results.append(cx)
    primitive.presentation_context_definition_results_list = results
    case = Association(
        "",
        "",
        (),
        acceptance.max_pdu,
        acceptance.implementation_class_uid,
        acceptance.implementation_version_name,
    )
    items = user_items(case)
    if "identity" in acceptance.extras:
        identity = pdu_primitives.UserIdentityNegotiation()
        identity.server_response = b"kerberos-ticket"
        items.append(identity)
    if "role" in acceptance.extras:
        role = pdu_primitives.SCP_SCU_RoleSelectionNegotiation()
        role.sop_class_uid = CT
        role.scu_role, role.scp_role = False, True
        items.append(role)
    if "window" in acceptance.extras:
        window = pdu_primitives.AsynchronousOperationsWindowNegotiation()
        window.maximum_number_operations_invoked = 1
        window.maximum_number_operations_performed = 1
        items.append(window)
    for uid, info in acceptance.extended.items():
        extended = pdu_primitives.SOPClassExtendedNegotiation()
        extended.sop_class_uid = uid
        extended.service_class_application_information = info
        items.append(extended)
    primitive.user_information = items
    ac = pdu.A_ASSOCIATE_AC()
    ac.from_primitive(primitive)
    return bytes(ac.encode())


AC_CASES = [
    Acceptance({1: (0, EXPLICIT)}, 16384, "1.2", "A", "ORTHANC", "DICOMMOVE"),
    Acceptance(
        {
            1: (0, IMPLICIT),
            3: (1, ""),  # user rejection
            5: (2, ""),  # provider rejection (no reason)
            7: (3, ""),  # abstract syntax not supported
            9: (4, ""),  # transfer syntaxes not supported
            255: (0, J2K),
        },
        0,
        LONG_UID,
        "PYNETDICOM_304",
        "DCM4CHEE",
        "SIXTEEN-CHARS-AE",
        extras=("identity", "role", "window"),
    ),
]


@pytest.mark.parametrize("acceptance", AC_CASES, ids=lambda a: a.called_ae)
def test_pynetdicoms_associate_ac_reads_the_same_in_ours(acceptance: Acceptance) -> None:
    raw = pn_ac(acceptance)
    assert raw[0] == _ul.PDU_ASSOCIATE_AC
    max_pdu, results = _ul.decode_associate_ac(raw[6:])
    accepted = {cid: (r, ts if r == _ul.ACCEPTED else "") for cid, (r, ts) in results.items()}
    assert (accepted, max_pdu) == (acceptance.results, acceptance.max_pdu)


def test_extended_negotiation_answers_read_by_us_as_pynetdicom_wrote_them() -> None:
    answers = {_sop.STUDY_ROOT_MOVE: b"\x01", _sop.STUDY_ROOT_FIND: b"\x01\x00\x01"}
    acceptance = Acceptance({1: (0, EXPLICIT)}, 16384, "1.2", "A", "PACS", "DM", extras=("role",))
    acceptance.extended.update(answers)
    raw = pn_ac(acceptance)
    assert _ul.decode_extended_negotiation(raw[6:]) == answers
    acceptance.extended.clear()
    assert _ul.decode_extended_negotiation(pn_ac(acceptance)[6:]) == {}  # declined: no item


def test_our_extended_negotiation_items_read_by_pynetdicom() -> None:
    asked = {_sop.STUDY_ROOT_MOVE: b"\x01", _sop.PATIENT_ROOT_GET: b"\x01"}
    raw = _ul.encode_associate_rq(
        called_ae="PACS",
        calling_ae="DM",
        contexts=[_ul.PresentationContext(1, _sop.STUDY_ROOT_MOVE, [EXPLICIT])],
        max_pdu=16384,
        implementation_class_uid="1.2",
        implementation_version_name="DM",
        scp_roles=[CT],
        extended=asked,
    )
    rq = pdu.A_ASSOCIATE_RQ()
    rq.decode(raw)
    items = rq.to_primitive().user_information
    read = {
        str(item.sop_class_uid): bytes(item.service_class_application_information or b"")
        for item in items
        if isinstance(item, pdu_primitives.SOPClassExtendedNegotiation)
    }
    assert read == asked
    roles = [i for i in items if isinstance(i, pdu_primitives.SCP_SCU_RoleSelectionNegotiation)]
    assert [str(r.sop_class_uid) for r in roles] == [CT]  # the other items are untouched


def test_our_associate_ac_is_pynetdicoms_byte_for_byte_when_all_are_accepted() -> None:
    acceptance = Acceptance({1: (0, EXPLICIT), 3: (0, JPEG)}, 65536, LONG_UID, "DM_1", "S", "P")
    rq = _ul.AssociateRequest("S", "P", _ul.APPLICATION_CONTEXT)
    rq.contexts = [
        _ul.PresentationContext(1, CT, [IMPLICIT, EXPLICIT], _ul.ACCEPTED, EXPLICIT),
        _ul.PresentationContext(3, MR, [JPEG], _ul.ACCEPTED, JPEG),
    ]
    ours = _ul.encode_associate_ac(
        rq, max_pdu=65536, implementation_class_uid=LONG_UID, implementation_version_name="DM_1"
    )
    assert ours == pn_ac(acceptance)


# -- A-ASSOCIATE-RJ, A-RELEASE, A-ABORT ------------------------------------------------------

#: Every (source, reason) of PS3.8 9.3.4, each with a permanent (1) and a transient (2) result.
RJ_REASONS = [(1, 1), (1, 2), (1, 3), (1, 7), (2, 1), (2, 2), (3, 1), (3, 2)]


@pytest.mark.parametrize(
    ("result", "source", "reason"), [(r, *sr) for r in (1, 2) for sr in RJ_REASONS]
)
def test_associate_rj_is_pynetdicoms(result: int, source: int, reason: int) -> None:
    primitive = pdu_primitives.A_ASSOCIATE()
    primitive.result, primitive.result_source, primitive.diagnostic = result, source, reason
    rj = pdu.A_ASSOCIATE_RJ()
    rj.from_primitive(primitive)
    ours = _ul.encode_associate_rj(result, source, reason)
    assert ours == bytes(rj.encode())
    back = pdu.A_ASSOCIATE_RJ()
    back.decode(ours)
    assert (back.result, back.source, back.reason_diagnostic) == (result, source, reason)


def test_release_rq_and_rp_are_pynetdicoms() -> None:
    rq = pdu.A_RELEASE_RQ()
    rq.from_primitive(pdu_primitives.A_RELEASE())
    assert _ul.encode_release_rq() == bytes(rq.encode())
    reply = pdu_primitives.A_RELEASE()
    reply.result = "affirmative"
    rp = pdu.A_RELEASE_RP()
    rp.from_primitive(reply)
    assert bytes(rp.encode()) == _ul.RELEASE_RP


@pytest.mark.parametrize(
    ("source", "reason"), [(0, 0), (2, 0), (2, 1), (2, 2), (2, 4), (2, 5), (2, 6)]
)
def test_abort_is_pynetdicoms(source: int, reason: int) -> None:
    primitive: Any
    if source == 0:  # the service user: what our SCU sends
        primitive = pdu_primitives.A_ABORT()
        primitive.abort_source = source
    else:  # the service provider: what our store SCP sends
        primitive = pdu_primitives.A_P_ABORT()
        primitive.provider_reason = reason
    abort = pdu.A_ABORT_RQ()
    abort.from_primitive(primitive)
    ours = _ul.encode_abort(source, reason)
    assert ours == bytes(abort.encode())
    back = pdu.A_ABORT_RQ()
    back.decode(ours)
    assert (back.source, back.reason_diagnostic) == (source, reason)


# -- P-DATA-TF -----------------------------------------------------------------------------


def c_store_rq(payload: bytes) -> Any:
    primitive = dimse_primitives.C_STORE()
    primitive.MessageID = 7
    primitive.AffectedSOPClassUID = CT
    primitive.AffectedSOPInstanceUID = "2.25.1004"
    primitive.Priority = 0
    primitive.MoveOriginatorApplicationEntityTitle = "DICOMMOVE"
    primitive.MoveOriginatorMessageID = 3
    primitive.DataSet = io.BytesIO(payload)
    message = dimse_messages.C_STORE_RQ()
    message.primitive_to_message(primitive)
    return message


def pn_command(message: Any) -> bytes:
    """pynetdicom's encoding of a message's command set (Implicit VR Little Endian)."""
    raw = pn_encode(message.command_set, True, True)
    assert raw is not None
    return raw


def pn_pdata(message: Any, context_id: int, max_pdu: int) -> list[bytes]:
    out = []
    for primitive in message.encode_msg(context_id, max_pdu):
        pdata = pdu.P_DATA_TF()
        pdata.from_primitive(primitive)
        out.append(bytes(pdata.encode()))
    return out


@pytest.mark.parametrize("size", [1, 93, 94, 95, 5000])
@pytest.mark.parametrize("max_pdu", [0, 7, 100, 4096, 16384])
def test_pdata_fragments_are_pynetdicoms(size: int, max_pdu: int) -> None:
    payload = bytes(itertools.islice(itertools.cycle(range(256)), size))
    message = c_store_rq(payload)
    command = pn_command(message)
    ours = _ul.encode_pdata(11, command, command=True, max_pdu=max_pdu)
    ours += _ul.encode_pdata(11, payload, command=False, max_pdu=max_pdu)
    assert ours == pn_pdata(message, 11, max_pdu)

    # and what pynetdicom reads from ours: one PDV per PDU, its id, control bits, payload
    fragments: list[tuple[int, int, bytes]] = []
    for raw in ours:
        pdata = pdu.P_DATA_TF()
        pdata.decode(raw)
        assert max_pdu == 0 or pdata.pdu_length <= max_pdu
        item: Any
        (item,) = pdata.presentation_data_value_items
        fragments.append((item.context_id, item.data[0], bytes(item.data[1:])))
    assert {cx for cx, _, _ in fragments} == {11}
    commands = [(bits, data) for _, bits, data in fragments if bits & 0x01]
    datasets = [(bits, data) for _, bits, data in fragments if not bits & 0x01]
    assert fragments[: len(commands)] == [(11, *c) for c in commands]  # command first
    assert [bits for bits, _ in commands] == [0x01] * (len(commands) - 1) + [0x03]
    assert [bits for bits, _ in datasets] == [0x00] * (len(datasets) - 1) + [0x02]
    assert b"".join(data for _, data in commands) == command
    assert b"".join(data for _, data in datasets) == payload


@pytest.mark.parametrize("context_id", [1, 255])
def test_command_pdata_is_pynetdicoms(context_id: int) -> None:
    primitive = dimse_primitives.C_STORE()
    primitive.MessageIDBeingRespondedTo = 7
    primitive.AffectedSOPClassUID = CT
    primitive.AffectedSOPInstanceUID = "1.2.3.4"
    primitive.Status = 0
    message = dimse_messages.C_STORE_RSP()
    message.primitive_to_message(primitive)
    command = pn_command(message)
    (expected,) = pn_pdata(message, context_id, 0)
    assert _ul.encode_command_pdata(context_id, command) == expected
    pdata = pdu.P_DATA_TF()
    pdata.decode(expected)
    assert pdata.to_primitive().presentation_data_value_list == [(context_id, b"\x03" + command)]


# -- command sets --------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """One DIMSE message both ways: our encoder's arguments and pynetdicom's primitive."""

    name: str
    ours: bytes
    message: str  # the pynetdicom message class
    primitive: str  # the pynetdicom primitive class
    values: dict[str, Any]


def rq(field_: int, message_id: int, **kwargs: Any) -> bytes:
    return _ul.encode_request(field_, message_id, **kwargs)


IDENTIFIER = io.BytesIO(b"\x08\x00\x52\x00\x06\x00\x00\x00STUDY ")
COMMANDS = [
    Command(
        "echo-rq",
        rq(_ul.C_ECHO_RQ, 1, sop_class=_sop.VERIFICATION),
        "C_ECHO_RQ",
        "C_ECHO",
        {"MessageID": 1, "AffectedSOPClassUID": _sop.VERIFICATION},
    ),
    Command(
        "find-rq",
        rq(_ul.C_FIND_RQ, 65535, sop_class=_sop.PATIENT_ROOT_FIND, has_dataset=True),
        "C_FIND_RQ",
        "C_FIND",
        {
            "MessageID": 65535,
            "AffectedSOPClassUID": _sop.PATIENT_ROOT_FIND,
            "Priority": 0,
            "Identifier": IDENTIFIER,
        },
    ),
    *(
        Command(
            f"move-rq-{destination}",
            rq(
                _ul.C_MOVE_RQ,
                9,
                sop_class=_sop.STUDY_ROOT_MOVE,
                has_dataset=True,
                move_destination=destination,
            ),
            "C_MOVE_RQ",
            "C_MOVE",
            {
                "MessageID": 9,
                "AffectedSOPClassUID": _sop.STUDY_ROOT_MOVE,
                "MoveDestination": destination,
                "Priority": 0,
                "Identifier": IDENTIFIER,
            },
        )
        for destination in ("STORE-SCP", "AB", "SIXTEEN-CHARS-AE")
    ),
    Command(
        "cancel-rq",
        rq(_ul.C_CANCEL_RQ, 0, responding_to=9),
        "C_CANCEL_RQ",
        "C_CANCEL",
        {"MessageIDBeingRespondedTo": 9},
    ),
    *(
        Command(
            f"store-rsp-{status:04X}-{len(instance)}",
            _ul.encode_response(_ul.C_STORE_RSP, 7, status, sop, instance),
            "C_STORE_RSP",
            "C_STORE",
            {
                "MessageIDBeingRespondedTo": 7,
                "AffectedSOPClassUID": sop,
                "AffectedSOPInstanceUID": instance,
                "Status": status,
            },
        )
        for status, sop, instance in [
            (_status.SUCCESS, CT, "1.2.3.4"),  # odd lengths: a NUL pads the UIDs
            (_status.STORE_OUT_OF_RESOURCES, MR, "1.2.3.45"),
            (_status.NOT_AUTHORIZED, SR, LONG_UID),
            (_status.WARNING, NOT_A_SOP_CLASS, "1.2"),
        ]
    ),
    *(
        Command(
            f"echo-rsp-{status:04X}",
            _ul.encode_response(_ul.C_ECHO_RSP, 65535, status, _sop.VERIFICATION),
            "C_ECHO_RSP",
            "C_ECHO",
            {
                "MessageIDBeingRespondedTo": 65535,
                "AffectedSOPClassUID": _sop.VERIFICATION,
                "Status": status,
            },
        )
        for status in (_status.SUCCESS, _status.UNRECOGNIZED_OPERATION)
    ),
]


def pynetdicom_command(command: Command) -> bytes:
    primitive = getattr(dimse_primitives, command.primitive)()
    for name, value in command.values.items():
        setattr(primitive, name, value)
    message = getattr(dimse_messages, command.message)()
    message.primitive_to_message(primitive)
    return pn_command(message)


def elements(raw: bytes) -> dict[int, tuple[str, object, bytes]]:
    """Read a command set with pydicom: tag -> (keyword, value, raw value)."""
    ds = read_dataset(io.BytesIO(raw), is_implicit_VR=True, is_little_endian=True)
    out: dict[int, tuple[str, object, bytes]] = {}
    for tag in list(ds.keys()):
        item = ds.get_item(tag)
        assert isinstance(item, RawDataElement)
        assert tag >> 16 == 0x0000
        out[int(tag)] = (ds[tag].keyword, ds[tag].value, bytes(item.value or b""))
    return out


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.name)
def test_command_set_reads_the_same_as_pynetdicoms(command: Command) -> None:
    theirs = pynetdicom_command(command)
    ours, expected = elements(command.ours), elements(theirs)
    assert list(ours) == list(expected)  # the same elements, in the same order
    assert ours[_tags.COMMAND_GROUP_LENGTH][1] == len(command.ours) - 12
    destination = command.values.get("MoveDestination")
    if destination is None:  # pynetdicom's encoding is canonical: byte for byte
        assert ours == expected
        assert command.ours == theirs
        return
    # Deliberate difference: we pad Move Destination with spaces to 16 bytes, pynetdicom to
    # an even length. Spaces are insignificant in an AE (PS3.5 6.2), so every value reads
    # the same; only the raw bytes of that element and the group length differ.
    _, our_value, our_raw = ours.pop(_tags.MOVE_DESTINATION)
    _, their_value, their_raw = expected.pop(_tags.MOVE_DESTINATION)
    assert our_value == their_value == destination
    assert our_raw == destination.encode().ljust(16)
    assert their_raw == destination.encode().ljust(len(destination) + len(destination) % 2)
    length, their_length = ours.pop(0)[1], expected.pop(0)[1]  # CommandGroupLength
    assert isinstance(length, int) and isinstance(their_length, int)
    assert length == their_length + len(our_raw) - len(their_raw)
    assert ours == expected


RESPONSES = [
    (
        "C_MOVE_RSP",
        "C_MOVE",
        {
            "MessageIDBeingRespondedTo": 9,
            "AffectedSOPClassUID": _sop.STUDY_ROOT_MOVE,
            "Status": _status.PENDING,
            "NumberOfRemainingSuboperations": 65535,
            "NumberOfCompletedSuboperations": 12,
            "NumberOfFailedSuboperations": 1,
            "NumberOfWarningSuboperations": 0,
        },
    ),
    (
        "C_MOVE_RSP",
        "C_MOVE",
        {
            "MessageIDBeingRespondedTo": 9,
            "AffectedSOPClassUID": _sop.PATIENT_ROOT_MOVE,
            "Status": _status.MOVE_DESTINATION_UNKNOWN,
            "ErrorComment": "unknown move destination 'STORE-SCP'",
        },
    ),
    (
        "C_FIND_RSP",
        "C_FIND",
        {
            "MessageIDBeingRespondedTo": 65535,
            "AffectedSOPClassUID": _sop.STUDY_ROOT_FIND,
            "Status": _status.PENDING_WARNING,
            "Identifier": IDENTIFIER,
        },
    ),
    (
        "C_STORE_RQ",
        "C_STORE",
        {
            "MessageID": 3,
            "AffectedSOPClassUID": CT,
            "AffectedSOPInstanceUID": "1.2.3.4",
            "Priority": 2,
            "MoveOriginatorApplicationEntityTitle": "DICOMMOVE",
            "MoveOriginatorMessageID": 9,
            "DataSet": IDENTIFIER,
        },
    ),
]
#: Our _tags constant for each pynetdicom primitive parameter that we read.
READ_AS = {
    "MessageID": (_tags.MESSAGE_ID, "us"),
    "MessageIDBeingRespondedTo": (_tags.MESSAGE_ID_BEING_RESPONDED_TO, "us"),
    "AffectedSOPClassUID": (_tags.AFFECTED_SOP_CLASS_UID, "text"),
    "AffectedSOPInstanceUID": (_tags.AFFECTED_SOP_INSTANCE_UID, "text"),
    "Priority": (_tags.PRIORITY, "us"),
    "Status": (_tags.STATUS, "us"),
    "ErrorComment": (_tags.ERROR_COMMENT, "text"),
    "NumberOfRemainingSuboperations": (_tags.REMAINING_SUBOPERATIONS, "us"),
    "NumberOfCompletedSuboperations": (_tags.COMPLETED_SUBOPERATIONS, "us"),
    "NumberOfFailedSuboperations": (_tags.FAILED_SUBOPERATIONS, "us"),
    "NumberOfWarningSuboperations": (_tags.WARNING_SUBOPERATIONS, "us"),
    "MoveOriginatorApplicationEntityTitle": (_tags.MOVE_ORIGINATOR_AE_TITLE, "text"),
    "MoveOriginatorMessageID": (_tags.MOVE_ORIGINATOR_MESSAGE_ID, "us"),
}


@pytest.mark.parametrize(("message", "primitive", "values"), RESPONSES)
def test_we_read_what_pynetdicom_sends(
    message: str, primitive: str, values: dict[str, Any]
) -> None:
    raw = pynetdicom_command(Command("", b"", message, primitive, values))
    decoded = _ul.decode_command(raw)
    has_dataset = "Identifier" in values or "DataSet" in values
    assert (_ul.command_us(decoded, _tags.COMMAND_DATA_SET_TYPE) != _ul.NO_DATASET) == has_dataset
    for name, value in values.items():
        if name in ("Identifier", "DataSet"):
            continue
        element, kind = READ_AS[name]
        read = _ul.command_us if kind == "us" else _ul.command_text
        assert read(decoded, element) == value, name


def test_command_fields_are_pynetdicoms() -> None:
    names = {code: name for code, (name, _) in dimse_messages._MESSAGE_TYPES.items()}
    ours = {
        _ul.C_STORE_RQ: "C-STORE-RQ",
        _ul.C_STORE_RSP: "C-STORE-RSP",
        _ul.C_ECHO_RQ: "C-ECHO-RQ",
        _ul.C_ECHO_RSP: "C-ECHO-RSP",
        _ul.C_FIND_RQ: "C-FIND-RQ",
        _ul.C_MOVE_RQ: "C-MOVE-RQ",
        _ul.C_CANCEL_RQ: "C-CANCEL-RQ",
    }
    assert {code: names[code] for code in ours} == ours


# -- presentation context negotiation ------------------------------------------------------

#: Proposals of a Storage SCU to our store SCP: (abstract syntax, transfer syntaxes).
PROPOSALS: list[tuple[str, list[str]]] = [
    (CT, [IMPLICIT, EXPLICIT]),  # both: we take explicit, pynetdicom implicit
    (CT, [EXPLICIT, IMPLICIT]),
    (CT, [IMPLICIT]),
    (CT, [J2K, JPEG]),  # we take the requestor's first, pynetdicom its own table's first
    (CT, [JPEG, EXPLICIT]),
    (CT, [BIG_ENDIAN, DEFLATED]),
    (CT, [NOT_A_SYNTAX]),  # transfer syntaxes not supported
    (CT, [NOT_A_SYNTAX, RLE, NOT_A_SYNTAX]),
    (CT, [EXPLICIT]),  # the same abstract syntax again, in another context
    (MR, [IMPLICIT, IMPLICIT, EXPLICIT]),  # a repeated transfer syntax
    (SR, [DEFLATED, J2K, IMPLICIT]),
    (_sop.VERIFICATION, [IMPLICIT]),
    (_sop.VERIFICATION, [DEFLATED, EXPLICIT, IMPLICIT]),
    (_sop.VERIFICATION, [JPEG]),  # verification is accepted in native syntaxes only
    (_sop.STUDY_ROOT_MOVE, [EXPLICIT]),  # not a store SCP's business
    (NOT_A_SOP_CLASS, [EXPLICIT, IMPLICIT]),
    (NOT_A_SOP_CLASS, [NOT_A_SYNTAX]),
]


def our_supported_contexts(extra_classes: Sequence[str] = ()) -> list[PnContext]:
    """Our tables, as pynetdicom acceptor contexts: what StoreSCP.negotiate should accept."""
    contexts = [pn_context(1, _sop.VERIFICATION, [IMPLICIT, EXPLICIT])]
    for uid in sorted(_sop.STORAGE_CLASSES) + list(extra_classes):
        contexts.append(pn_context(1, uid, _sop.TRANSFER_SYNTAXES))
    return contexts


def negotiate_ours(scp: StoreSCP) -> dict[int, tuple[int, str]]:
    out = {}
    for n, (abstract, syntaxes) in enumerate(PROPOSALS):
        cx = _ul.PresentationContext(2 * n + 1, abstract, list(syntaxes))
        scp.negotiate(cx)
        out[cx.context_id] = (cx.result, cx.transfer_syntax if cx.result == _ul.ACCEPTED else "")
    return out


def negotiate_pynetdicom(acceptor: list[PnContext]) -> dict[int, tuple[int, str]]:
    proposed = [pn_context(2 * n + 1, a, ts) for n, (a, ts) in enumerate(PROPOSALS)]
    accepted: list[Any] = negotiate_as_acceptor(proposed, acceptor)[0]
    return {
        cx.context_id: (cx.result, str(cx.transfer_syntax[0]) if cx.result == 0 else "")
        for cx in accepted
    }


def store_scp(tmp_path: Path, *, accept_unknown: bool = False) -> StoreSCP:
    return StoreSCP(
        InstanceStore(tmp_path),
        ae_title="STORE-SCP",
        host="127.0.0.1",
        port=0,
        on_instance=lambda _received: None,
        accept_unknown_sop_classes=accept_unknown,
    )


@pytest.mark.parametrize("accept_unknown", [False, True])
def test_negotiation_agrees_with_pynetdicom_but_for_explicit_vr(
    tmp_path: Path, accept_unknown: bool
) -> None:
    ours = negotiate_ours(store_scp(tmp_path, accept_unknown=accept_unknown))
    extra = [NOT_A_SOP_CLASS, _sop.STUDY_ROOT_MOVE] if accept_unknown else []
    theirs = negotiate_pynetdicom(our_supported_contexts(extra))
    # the same result for every context: accepted, abstract or transfer syntax not supported
    assert {cid: r for cid, (r, _) in ours.items()} == {cid: r for cid, (r, _) in theirs.items()}
    ok, no_abstract, no_syntax = (
        _ul.ACCEPTED,
        _ul.ABSTRACT_SYNTAX_NOT_SUPPORTED,
        _ul.TRANSFER_SYNTAXES_NOT_SUPPORTED,
    )
    assert {r for r, _ in ours.values()} == (
        {ok, no_syntax} if accept_unknown else {ok, no_abstract, no_syntax}
    )
    assert (ours[1], theirs[1]) == ((ok, EXPLICIT), (ok, IMPLICIT))  # CT: implicit, explicit
    assert (ours[7], theirs[7]) == ((ok, J2K), (ok, JPEG))  # CT: JPEG 2000, JPEG baseline
    # The one difference, on purpose: pynetdicom takes the acceptor's first transfer syntax
    # that was offered (its table order), we take Explicit VR Little Endian when offered,
    # else the requestor's first choice that we support.
    for n, (abstract, syntaxes) in enumerate(PROPOSALS):
        result, syntax = ours[2 * n + 1]
        if result != _ul.ACCEPTED:
            continue
        table = (IMPLICIT, EXPLICIT) if abstract == _sop.VERIFICATION else _sop.TRANSFER_SYNTAXES
        usable = [ts for ts in syntaxes if ts in table]
        assert syntax == (EXPLICIT if EXPLICIT in usable else usable[0])
        assert theirs[2 * n + 1][1] == next(ts for ts in table if ts in syntaxes)


def test_negotiation_is_pynetdicoms_with_our_preference_order(tmp_path: Path) -> None:
    """Give pynetdicom our order (explicit VR first, then the requestor's): all equal."""
    ours = negotiate_ours(store_scp(tmp_path))
    supported = {str(cx.abstract_syntax): cx.transfer_syntax for cx in our_supported_contexts()}
    for n, (abstract, syntaxes) in enumerate(PROPOSALS):
        acceptor = []
        table = supported.get(abstract)
        if table is not None:
            order = dict.fromkeys([EXPLICIT, *syntaxes, *table])
            acceptor = [pn_context(1, abstract, [ts for ts in order if ts in table])]
        proposed = pn_context(2 * n + 1, abstract, syntaxes)
        (result,), _roles = negotiate_as_acceptor([proposed], acceptor)
        theirs = (result.result, str(result.transfer_syntax[0]) if result.result == 0 else "")
        assert ours[2 * n + 1] == theirs, (abstract, syntaxes)


# -- tables --------------------------------------------------------------------------------


def test_storage_classes_are_pynetdicoms() -> None:
    assert set(sop_class._STORAGE_CLASSES.values()) == _sop.STORAGE_CLASSES


def test_transfer_syntaxes_are_pydicoms() -> None:
    assert tuple(AllTransferSyntaxes) == _sop.TRANSFER_SYNTAXES
    assert (_sop.IMPLICIT_VR_LE, _sop.EXPLICIT_VR_LE) == (IMPLICIT, EXPLICIT)


def test_service_classes_are_pynetdicoms() -> None:
    assert sop_class._VERIFICATION_CLASSES["Verification"] == _sop.VERIFICATION
    models = {"study": "StudyRoot", "patient": "PatientRoot"}
    for service, table in (("Find", _sop.FIND), ("Move", _sop.MOVE), ("Get", _sop.GET)):
        expected = {
            model: sop_class._QR_CLASSES[f"{prefix}QueryRetrieveInformationModel{service}"]
            for model, prefix in models.items()
        }
        if service != "Find":  # Composite Instance Root retrieves; it has no C-FIND
            expected["composite"] = sop_class._QR_CLASSES[f"CompositeInstanceRootRetrieve{service}"]
        assert table == expected
    assert set(_sop.NAMES) == {_sop.VERIFICATION, *_sop.FIND.values(), *_sop.MOVE.values()} | set(
        _sop.GET.values()
    )


PN_KIND = {
    pn_status.STATUS_SUCCESS: _status.Kind.SUCCESS,
    pn_status.STATUS_PENDING: _status.Kind.PENDING,
    pn_status.STATUS_WARNING: _status.Kind.WARNING,
    pn_status.STATUS_CANCEL: _status.Kind.CANCEL,
    pn_status.STATUS_FAILURE: _status.Kind.FAILURE,
}
#: Where our kind differs from pynetdicom's category on purpose, and why.
DELIBERATE = {
    # pynetdicom calls a code outside its tables "Unknown"; a status we cannot classify
    # must never pass for success, so it is a failure to us (a retry or a report).
    code: (_status.Kind.FAILURE, "unknown: a status we cannot classify is a failure")
    for code in (0x0002, 0x0108, 0x010F, 0x0125, 0x0214, 0xD000, 0xFE01, 0xFF02, 0xFFFF)
}


def pn_kind(code: int) -> _status.Kind | None:
    return PN_KIND.get(pn_status.code_to_category(code))


def test_status_kinds_of_our_table_are_pynetdicoms() -> None:
    for code, (kind, _meaning) in _status.STATUS_TEXT.items():
        assert pn_kind(code) is kind, f"0x{code:04X}"
        assert _status.kind_of(code) is kind


@pytest.mark.parametrize(
    "table",
    [
        "QR_MOVE_SERVICE_CLASS_STATUS",
        "QR_FIND_SERVICE_CLASS_STATUS",
        "QR_GET_SERVICE_CLASS_STATUS",
        "STORAGE_SERVICE_CLASS_STATUS",
        "VERIFICATION_SERVICE_CLASS_STATUS",
    ],
)
def test_status_kinds_agree_with_pynetdicoms_service_tables(table: str) -> None:
    codes: dict[int, tuple[str, str]] = getattr(pn_status, table)
    wrong = {
        f"0x{code:04X}": (_status.kind_of(code).value, category)
        for code, (category, _text) in codes.items()
        if code not in DELIBERATE and _status.kind_of(code) is not PN_KIND[category]
    }
    assert wrong == {}
    assert all(pn_kind(code) is PN_KIND[category] for code, (category, _) in codes.items())


def test_status_kinds_differ_from_pynetdicom_only_on_purpose() -> None:
    for code, (kind, why) in DELIBERATE.items():
        assert pn_status.code_to_category(code) == pn_status.STATUS_UNKNOWN, why
        assert _status.kind_of(code) is kind, f"0x{code:04X}"
    assert _status.kind_of(None) is _status.Kind.FAILURE  # no final response at all
    # and every 16-bit code, not only those of pynetdicom's tables: the same kind, or a
    # failure where pynetdicom does not know the code
    wrong = {
        f"0x{code:04X}": _status.kind_of(code)
        for code in range(0x10000)
        if _status.kind_of(code) is not (pn_kind(code) or _status.Kind.FAILURE)
    }
    assert wrong == {}


#: The pydicom keyword of each command element constant of _tags.
COMMAND_KEYWORDS = {
    "COMMAND_GROUP_LENGTH": "CommandGroupLength",
    "AFFECTED_SOP_CLASS_UID": "AffectedSOPClassUID",
    "COMMAND_FIELD": "CommandField",
    "MESSAGE_ID": "MessageID",
    "MESSAGE_ID_BEING_RESPONDED_TO": "MessageIDBeingRespondedTo",
    "MOVE_DESTINATION": "MoveDestination",
    "PRIORITY": "Priority",
    "COMMAND_DATA_SET_TYPE": "CommandDataSetType",
    "STATUS": "Status",
    "ERROR_COMMENT": "ErrorComment",
    "AFFECTED_SOP_INSTANCE_UID": "AffectedSOPInstanceUID",
    "REMAINING_SUBOPERATIONS": "NumberOfRemainingSuboperations",
    "COMPLETED_SUBOPERATIONS": "NumberOfCompletedSuboperations",
    "FAILED_SUBOPERATIONS": "NumberOfFailedSuboperations",
    "WARNING_SUBOPERATIONS": "NumberOfWarningSuboperations",
    "MOVE_ORIGINATOR_AE_TITLE": "MoveOriginatorApplicationEntityTitle",
    "MOVE_ORIGINATOR_MESSAGE_ID": "MoveOriginatorMessageID",
}


def test_command_element_tags_are_pydicoms() -> None:
    constants = {
        name: value
        for name, value in vars(_tags).items()
        if name.isupper() and isinstance(value, int) and value >> 16 == 0x0000
    }
    assert set(constants) == set(COMMAND_KEYWORDS)  # a new constant needs its keyword here
    assert {name: keyword_for_tag(value) for name, value in constants.items()} == COMMAND_KEYWORDS
