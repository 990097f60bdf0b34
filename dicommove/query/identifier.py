"""The identifier on the wire: a :class:`Query` as a pydicom dataset or as bytes.

:func:`encode_identifier` writes the identifier of a C-MOVE or C-FIND request
in Little Endian (implicit or explicit VR) itself for the Query/Retrieve keys
and for the other text and number VRs, so that a move of ``-q`` selectors never
imports pydicom. Whatever it does not write itself (a Specific Character Set
with a value, a value that is not ASCII, a person name with ``=`` component
groups, a DS that needs pydicom's 16-character formatting, a multi-valued
``US or SS`` element written as SS, a value too long for its length field)
goes through pydicom's ``write_dataset``, so the bytes are always those
pydicom writes.
"""

from __future__ import annotations

import logging
import struct
from typing import TYPE_CHECKING, Any

from ._model import _SPECIFIC_CHARACTER_SET, Value, _items
from .selectors import _INT_RANGES, _tag_info

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from .core import Query

__all__ = ["encode_identifier"]

logger = logging.getLogger("dicommove")

#: VRs written as text: padded with a space to even length (UI: with a NUL).
_STRING_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DT", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
)
#: Binary number VRs and their :mod:`struct` format.
_NUMBER_FORMATS: dict[str, str] = {
    "US": "H",
    "UL": "L",
    "UV": "Q",
    "SS": "h",
    "SL": "l",
    "SV": "q",
    "FL": "f",
    "FD": "d",
}
#: VRs with a 2-byte reserved field and a 4-byte length in explicit VR (PS3.5 7.1.2).
_LONG_LENGTH_VRS = frozenset(
    {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
)
#: The longest decimal string pydicom writes as Python's own repr of the float.
_DS_LENGTH = 16


def _written_vr(vr: str, items: list[str | int | float]) -> str:
    """Return the VR an element is written with: ``US or SS`` by the sign of the values."""
    if " or " not in vr:
        return vr
    options = vr.split(" or ")
    signed = [o for o in options if _INT_RANGES[o][0] < 0]
    negative = any(isinstance(item, int) and item < 0 for item in items)
    return signed[0] if negative and signed else options[0]


def _to_dataset(query: Query) -> Dataset:
    """Return ``query`` as a pydicom dataset (see :meth:`Query.to_dataset`)."""
    from pydicom import config
    from pydicom.dataelem import DataElement
    from pydicom.dataset import Dataset
    from pydicom.valuerep import DSfloat

    dataset = Dataset()
    for tag, value in query.elements:
        items = _items(value)
        vr = _written_vr(_tag_info(tag).vr, items)
        converted: Any
        if vr == "DS" and items:
            decimals = [DSfloat(float(item), auto_format=True) for item in items]
            converted = decimals if isinstance(value, list) else decimals[0]
        else:
            converted = list(value) if isinstance(value, list) else value
        dataset.add(DataElement(tag, vr, converted, validation_mode=config.IGNORE))
    return dataset


def _text_item(vr: str, item: str | int | float) -> str | None:
    """Return one value as DICOM text, or ``None`` when pydicom must format it."""
    if vr == "IS":
        return str(item) if type(item) is int else None
    if vr == "DS":
        if type(item) is not float:
            return None
        text = repr(item)
        return text if len(text) <= _DS_LENGTH else None
    return item if isinstance(item, str) else None


def _value_bytes(tag: int, vr: str, value: Value) -> bytes | None:
    """Return the encoded value of one element, or ``None`` when pydicom must write it."""
    items = _items(value)
    if not items:
        return b""
    number_format = _NUMBER_FORMATS.get(vr)
    if number_format is not None:
        wanted = float if number_format in "fd" else int
        if any(type(item) is not wanted for item in items):
            return None
        if vr == "SS" and len(items) > 1 and " or " in _tag_info(tag).vr:
            return None  # pydicom writes the first value of a LUT Descriptor as US
        try:
            return struct.pack(f"<{len(items)}{number_format}", *items)
        except (struct.error, OverflowError):
            return None  # out of range: let pydicom raise its own error
    if vr not in _STRING_VRS and vr not in ("IS", "DS"):
        return None
    texts = [_text_item(vr, item) for item in items]
    if any(text is None for text in texts):
        return None
    text = "\\".join(t for t in texts if t is not None)
    if not text.isascii() or (vr == "PN" and "=" in text):
        return None  # character sets and person name groups: pydicom's business
    encoded = text.encode("ascii")
    if len(encoded) % 2:
        encoded += b"\0" if vr == "UI" else b" "
    return encoded


def _encode_plain(query: Query, implicit: bool) -> bytes | None:
    """Encode the identifier without pydicom, or return ``None`` if it cannot."""
    out = bytearray()
    for tag, value in query.elements:
        if tag == _SPECIFIC_CHARACTER_SET and value is not None:
            return None
        vr = _written_vr(_tag_info(tag).vr, _items(value))
        encoded = _value_bytes(tag, vr, value)
        if encoded is None:
            return None
        out += struct.pack("<HH", tag >> 16, tag & 0xFFFF)
        if implicit:
            out += struct.pack("<L", len(encoded))
        elif vr in _LONG_LENGTH_VRS:
            out += vr.encode("ascii") + struct.pack("<HL", 0, len(encoded))
        elif len(encoded) > 0xFFFF:
            return None  # pydicom writes it as UN, with a warning
        else:
            out += vr.encode("ascii") + struct.pack("<H", len(encoded))
        out += encoded
    return bytes(out)


def _encode_with_pydicom(query: Query, implicit: bool) -> bytes:
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = implicit
    write_dataset(fp, query.to_dataset())
    return fp.getvalue()


def encode_identifier(query: Query, *, implicit: bool) -> bytes:
    r"""Encode the identifier of a C-MOVE or C-FIND request in Little Endian.

    The elements are written in tag order, each value padded to even length
    (UI with a NUL byte, text with a space), multiple values joined by
    backslashes, and an empty element with length 0. The bytes are those that
    pydicom's ``write_dataset`` writes for :meth:`Query.to_dataset`. pydicom is
    imported only for an identifier this function does not write itself (see
    :mod:`dicommove.query.identifier`), never for the ASCII values of the usual
    Query/Retrieve keys.

    Parameters
    ----------
    query : Query
        The identifier. It is encoded as it is: validate it first.
    implicit : bool
        Implicit VR Little Endian if true, Explicit VR Little Endian if false.

    Returns
    -------
    bytes
        The encoded data set.

    Examples
    --------
    >>> from dicommove.query import Query
    >>> data = encode_identifier(Query.study("1.2"), implicit=True)
    >>> data[:8].hex(" "), data[8:14]  # (0008,0052), length 6, padded with a space
    ('08 00 52 00 06 00 00 00', b'STUDY ')
    >>> data[14:22].hex(" "), data[22:]  # (0020,000D), length 4, padded with a NUL
    ('20 00 0d 00 04 00 00 00', b'1.2\x00')
    """
    encoded = _encode_plain(query, implicit)
    if encoded is not None:
        return encoded
    logger.debug("encoding the identifier [%s] with pydicom", query)
    return _encode_with_pydicom(query, implicit)
