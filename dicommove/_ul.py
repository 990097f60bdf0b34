"""The DICOM upper layer (PS3.8) as far as a Storage SCP needs it: pure encode/decode.

No sockets here: :mod:`dicommove.scp` reads the bytes and calls these functions,
so every PDU and command-set rule can be tested with plain bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "APPLICATION_CONTEXT",
    "AssociateRequest",
    "PresentationContext",
    "ProtocolError",
    "decode_associate_rq",
    "decode_command",
    "encode_abort",
    "encode_associate_ac",
    "encode_associate_rj",
    "encode_command_pdata",
    "encode_response",
    "encode_store_response",
]

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"

PDU_ASSOCIATE_RQ = 0x01
PDU_ASSOCIATE_AC = 0x02
PDU_ASSOCIATE_RJ = 0x03
PDU_P_DATA = 0x04
PDU_RELEASE_RQ = 0x05
PDU_RELEASE_RP = 0x06
PDU_ABORT = 0x07

# Presentation context results (PS3.8 9.3.3.2)
ACCEPTED = 0
ABSTRACT_SYNTAX_NOT_SUPPORTED = 3
TRANSFER_SYNTAXES_NOT_SUPPORTED = 4

C_STORE_RQ = 0x0001
C_STORE_RSP = 0x8001
C_ECHO_RQ = 0x0030
C_ECHO_RSP = 0x8030
NO_DATASET = 0x0101


class ProtocolError(ValueError):
    """The peer sent bytes that break PS3.8 or PS3.7; the association must be aborted."""


@dataclass
class PresentationContext:
    """A proposed presentation context and, once negotiated, its result."""

    context_id: int
    abstract_syntax: str
    transfer_syntaxes: list[str]
    result: int = ABSTRACT_SYNTAX_NOT_SUPPORTED
    transfer_syntax: str = ""


@dataclass
class AssociateRequest:
    """The fields of an A-ASSOCIATE-RQ that a Storage SCP acts on."""

    called_ae: str
    calling_ae: str
    application_context: str = ""
    contexts: list[PresentationContext] = field(default_factory=list)
    max_pdu: int = 0  # the peer's maximum receive length; 0 = unlimited
    implementation_class_uid: str = ""
    implementation_version_name: str = ""


def _uid(raw: bytes) -> str:
    return raw.rstrip(b"\x00 ").decode("ascii", errors="replace").strip()


def _items(data: bytes, offset: int, end: int) -> list[tuple[int, bytes]]:
    """Split variable items: type (1), reserved (1), length (2, big endian), value."""
    items: list[tuple[int, bytes]] = []
    while offset < end:
        if offset + 4 > end:
            raise ProtocolError("truncated item header")
        item_type = data[offset]
        (length,) = struct.unpack_from(">H", data, offset + 2)
        value_end = offset + 4 + length
        if value_end > end:
            raise ProtocolError(f"item 0x{item_type:02X} overruns its PDU")
        items.append((item_type, data[offset + 4 : value_end]))
        offset = value_end
    return items


def decode_associate_rq(body: bytes) -> AssociateRequest:
    """Decode the body of an A-ASSOCIATE-RQ (the bytes after its 6-byte PDU header).

    Raises
    ------
    ProtocolError
        If the PDU is malformed.
    """
    if len(body) < 68:
        raise ProtocolError("A-ASSOCIATE-RQ shorter than its fixed fields")
    called = body[4:20].decode("ascii", errors="replace").strip()
    calling = body[20:36].decode("ascii", errors="replace").strip()
    rq = AssociateRequest(called_ae=called, calling_ae=calling)
    for item_type, value in _items(body, 68, len(body)):
        if item_type == 0x10:
            rq.application_context = _uid(value)
        elif item_type == 0x20:
            if len(value) < 4:
                raise ProtocolError("truncated presentation context item")
            abstract = ""
            syntaxes: list[str] = []
            for sub_type, sub in _items(value, 4, len(value)):
                if sub_type == 0x30:
                    abstract = _uid(sub)
                elif sub_type == 0x40:
                    syntaxes.append(_uid(sub))
            rq.contexts.append(PresentationContext(value[0], abstract, syntaxes))
        elif item_type == 0x50:
            for sub_type, sub in _items(value, 0, len(value)):
                if sub_type == 0x51 and len(sub) == 4:
                    (rq.max_pdu,) = struct.unpack(">I", sub)
                elif sub_type == 0x52:
                    rq.implementation_class_uid = _uid(sub)
                elif sub_type == 0x55:
                    rq.implementation_version_name = sub.decode("ascii", "replace").strip()
    return rq


def _item(item_type: int, value: bytes) -> bytes:
    return struct.pack(">BBH", item_type, 0, len(value)) + value


def _pdu(pdu_type: int, body: bytes) -> bytes:
    return struct.pack(">BBI", pdu_type, 0, len(body)) + body


def _ae(title: str) -> bytes:
    return title.encode("ascii", errors="replace")[:16].ljust(16, b" ")


def encode_associate_ac(
    rq: AssociateRequest,
    *,
    max_pdu: int,
    implementation_class_uid: str,
    implementation_version_name: str,
) -> bytes:
    """Encode the A-ASSOCIATE-AC for ``rq`` with its negotiated contexts."""
    items = [_item(0x10, APPLICATION_CONTEXT.encode())]
    for cx in rq.contexts:
        syntax = cx.transfer_syntax or (cx.transfer_syntaxes[0] if cx.transfer_syntaxes else "")
        sub = _item(0x40, syntax.encode()) if cx.result == ACCEPTED else _item(0x40, b"")
        items.append(_item(0x21, struct.pack(">BBBB", cx.context_id, 0, cx.result, 0) + sub))
    user = (
        _item(0x51, struct.pack(">I", max_pdu))
        + _item(0x52, implementation_class_uid.encode())
        + _item(0x55, implementation_version_name.encode())
    )
    items.append(_item(0x50, user))
    fixed = struct.pack(">HH", 1, 0) + _ae(rq.called_ae) + _ae(rq.calling_ae) + bytes(32)
    return _pdu(PDU_ASSOCIATE_AC, fixed + b"".join(items))


def encode_associate_rj(result: int, source: int, reason: int) -> bytes:
    """Encode an A-ASSOCIATE-RJ (PS3.8 9.3.4)."""
    return _pdu(PDU_ASSOCIATE_RJ, struct.pack(">BBBB", 0, result, source, reason))


def encode_abort(source: int = 2, reason: int = 0) -> bytes:
    """Encode an A-ABORT (source 2 = service provider, PS3.8 9.3.8)."""
    return _pdu(PDU_ABORT, struct.pack(">BBBB", 0, 0, source, reason))


RELEASE_RP = _pdu(PDU_RELEASE_RP, bytes(4))


def decode_command(data: bytes, *, strict: bool = True) -> dict[int, bytes]:
    """Decode a command set (Implicit VR Little Endian, group 0000) into raw values by tag.

    ``strict=False`` (responses to our requests) keeps elements of other groups under
    their whole tag: Orthanc 1.10 puts a failed C-GET's Failed SOP Instance UID List
    (0008,0058) in the command set of its final response.

    Raises
    ------
    ProtocolError
        If an element overruns the data, or (``strict``) is not in group 0000.
    """
    out: dict[int, bytes] = {}
    offset, end = 0, len(data)
    while offset < end:
        if offset + 8 > end:
            raise ProtocolError("truncated command element")
        group, element, length = struct.unpack_from("<HHI", data, offset)
        if group != 0x0000:
            if strict:
                raise ProtocolError(
                    f"command set element ({group:04X},{element:04X}) not in group 0"
                )
            element |= group << 16
        offset += 8
        if offset + length > end:
            raise ProtocolError(f"command element (0000,{element:04X}) overruns the command")
        out[element] = data[offset : offset + length]
        offset += length
    return out


def command_us(command: dict[int, bytes], element: int) -> int | None:
    """Return a US value of a decoded command, or None."""
    raw = command.get(element)
    if raw is None or len(raw) != 2:
        return None
    return int.from_bytes(raw, "little")


def command_text(command: dict[int, bytes], element: int) -> str:
    """Return a UI or AE value of a decoded command, without padding."""
    raw = command.get(element, b"")
    return raw.rstrip(b"\x00 ").decode("latin-1").strip()


def _element(element: int, value: bytes) -> bytes:
    return struct.pack("<HHI", 0, element, len(value)) + value


def _ui(uid: str) -> bytes:
    raw = uid.encode("ascii", errors="replace")
    return raw + b"\x00" if len(raw) % 2 else raw


def encode_response(
    command_field: int, message_id: int, status: int, sop_class: str, sop_instance: str = ""
) -> bytes:
    """Encode a C-STORE-RSP or C-ECHO-RSP command set with its group length."""
    body = _element(0x0002, _ui(sop_class)) + _element(0x0100, struct.pack("<H", command_field))
    body += _element(0x0120, struct.pack("<H", message_id))
    body += _element(0x0800, struct.pack("<H", NO_DATASET))
    body += _element(0x0900, struct.pack("<H", status))
    if sop_instance:
        body += _element(0x1000, _ui(sop_instance))
    return _element(0x0000, struct.pack("<I", len(body))) + body


_US4 = struct.Struct("<HHIHHHIH").pack  # two US elements of a command set


def encode_store_response(
    context_id: int, message_id: int, status: int, sop_class: str, sop_instance: str
) -> bytes:
    """Encode the P-DATA-TF of a C-STORE-RSP in one go (it is sent once per instance).

    The same bytes as :func:`encode_command_pdata` of :func:`encode_response`.
    """
    cls = _ui(sop_class)
    sop = _ui(sop_instance)
    # elements after the group length: (0000,0002) UI, then 4 US, then (0000,1000) UI
    body_length = 8 + len(cls) + 4 * 10 + 8 + len(sop)
    us = _US4(0, 0x0100, 2, C_STORE_RSP, 0, 0x0120, 2, message_id)
    us += _US4(0, 0x0800, 2, NO_DATASET, 0, 0x0900, 2, status)
    command = b"".join(
        (
            struct.pack("<HHII", 0, 0x0000, 4, body_length),
            struct.pack("<HHI", 0, 0x0002, len(cls)),
            cls,
            us,
            struct.pack("<HHI", 0, 0x1000, len(sop)),
            sop,
        )
    )
    length = len(command) + 2
    return struct.pack(">BBIIBB", PDU_P_DATA, 0, length + 4, length, context_id, 0x03) + command


def encode_command_pdata(context_id: int, command: bytes) -> bytes:
    """Wrap a whole command set in one P-DATA-TF PDU (last command fragment)."""
    pdv = struct.pack(">IBB", len(command) + 2, context_id, 0x03) + command
    return _pdu(PDU_P_DATA, pdv)


# -- the requestor side --------------------------------------------------------------------

C_FIND_RQ = 0x0020
C_GET_RQ = 0x0010
C_MOVE_RQ = 0x0021
C_CANCEL_RQ = 0x0FFF
DATASET_PRESENT = 0x0001


def encode_associate_rq(
    *,
    called_ae: str,
    calling_ae: str,
    contexts: list[PresentationContext],
    max_pdu: int,
    implementation_class_uid: str,
    implementation_version_name: str,
    scp_roles: Sequence[str] = (),
    extended: Mapping[str, bytes] | None = None,
) -> bytes:
    """Encode an A-ASSOCIATE-RQ proposing ``contexts`` (PS3.8 9.3.2).

    ``scp_roles`` are the SOP classes for which we propose the SCP role only (an SCP/SCU
    Role Selection item each, PS3.7 D.3.3.4): the storage classes of a C-GET, whose
    C-STOREs come to us on this association. ``extended`` maps SOP classes to their
    Service-class-application-information (a SOP Class Extended Negotiation item each,
    PS3.7 D.3.3.5), e.g. a first byte of 1 to ask a C-MOVE class for relational-retrieval.
    """
    items = [_item(0x10, APPLICATION_CONTEXT.encode())]
    for cx in contexts:
        sub = _item(0x30, cx.abstract_syntax.encode())
        sub += b"".join(_item(0x40, ts.encode()) for ts in cx.transfer_syntaxes)
        items.append(_item(0x20, struct.pack(">BBBB", cx.context_id, 0, 0, 0) + sub))
    roles = b"".join(
        _item(0x54, struct.pack(">H", len(uid)) + uid.encode() + b"\x00\x01") for uid in scp_roles
    )
    asked = b"".join(
        _item(0x56, struct.pack(">H", len(uid)) + uid.encode() + info)
        for uid, info in (extended or {}).items()
    )
    user = (
        _item(0x51, struct.pack(">I", max_pdu))
        + _item(0x52, implementation_class_uid.encode())
        + roles
        + _item(0x55, implementation_version_name.encode())
        + asked
    )
    items.append(_item(0x50, user))
    fixed = struct.pack(">HH", 1, 0) + _ae(called_ae) + _ae(calling_ae) + bytes(32)
    return _pdu(PDU_ASSOCIATE_RQ, fixed + b"".join(items))


def decode_associate_ac(body: bytes) -> tuple[int, dict[int, tuple[int, str]]]:
    """Decode an A-ASSOCIATE-AC body: the peer's max PDU and ``{context id: (result, syntax)}``.

    Raises
    ------
    ProtocolError
        If the PDU is malformed.
    """
    if len(body) < 68:
        raise ProtocolError("A-ASSOCIATE-AC shorter than its fixed fields")
    max_pdu = 0
    results: dict[int, tuple[int, str]] = {}
    for item_type, value in _items(body, 68, len(body)):
        if item_type == 0x21:
            if len(value) < 4:
                raise ProtocolError("truncated presentation context item")
            syntax = ""
            for sub_type, sub in _items(value, 4, len(value)):
                if sub_type == 0x40:
                    syntax = _uid(sub)
            results[value[0]] = (value[2], syntax)
        elif item_type == 0x50:
            for sub_type, sub in _items(value, 0, len(value)):
                if sub_type == 0x51 and len(sub) == 4:
                    (max_pdu,) = struct.unpack(">I", sub)
    return max_pdu, results


def decode_extended_negotiation(body: bytes) -> dict[str, bytes]:
    """Return the SOP Class Extended Negotiation answers of an A-ASSOCIATE-AC body.

    ``{SOP class UID: Service-class-application-information}``; a class the acceptor did
    not answer is absent (PS3.7 D.3.3.5: it declined). Malformed items are skipped.
    """
    answers: dict[str, bytes] = {}
    try:
        items = _items(body, 68, len(body)) if len(body) >= 68 else []
        for value in (value for item_type, value in items if item_type == 0x50):
            for sub_type, sub in _items(value, 0, len(value)):
                if sub_type == 0x56 and len(sub) >= 2:
                    (n,) = struct.unpack_from(">H", sub)
                    if 2 + n <= len(sub):
                        answers[_uid(sub[2 : 2 + n])] = bytes(sub[2 + n :])
    except ProtocolError:
        pass  # what was read before the malformed item stands
    return answers


def encode_release_rq() -> bytes:
    """Encode an A-RELEASE-RQ."""
    return _pdu(PDU_RELEASE_RQ, bytes(4))


def encode_request(
    command_field: int,
    message_id: int,
    *,
    sop_class: str = "",
    has_dataset: bool = False,
    move_destination: str = "",
    responding_to: int | None = None,
) -> bytes:
    """Encode a C-ECHO, C-FIND, C-GET, C-MOVE or C-CANCEL request command set."""
    body = _element(0x0002, _ui(sop_class)) if sop_class else b""
    body += _element(0x0100, struct.pack("<H", command_field))
    if responding_to is None:
        body += _element(0x0110, struct.pack("<H", message_id))
    else:
        body += _element(0x0120, struct.pack("<H", responding_to))
    if move_destination:
        body += _element(0x0600, _ae(move_destination).rstrip(b" ").ljust(16, b" "))
    if command_field in (C_FIND_RQ, C_GET_RQ, C_MOVE_RQ):
        body += _element(0x0700, struct.pack("<H", 0))  # priority: medium
    dataset_type = DATASET_PRESENT if has_dataset else NO_DATASET
    body += _element(0x0800, struct.pack("<H", dataset_type))
    return _element(0x0000, struct.pack("<I", len(body))) + body


def encode_pdata(context_id: int, data: bytes, *, command: bool, max_pdu: int) -> list[bytes]:
    """Split a command set or dataset into P-DATA-TF PDUs no longer than ``max_pdu``."""
    room = max(max_pdu - 6, 1) if max_pdu else len(data) or 1
    pdus = []
    for start in range(0, max(len(data), 1), room):
        chunk = data[start : start + room]
        last = start + room >= len(data)
        control = (0x01 if command else 0x00) | (0x02 if last else 0x00)
        pdus.append(
            _pdu(PDU_P_DATA, struct.pack(">IBB", len(chunk) + 2, context_id, control) + chunk)
        )
    return pdus
