"""Just enough DICOM encoding to name a received file, without pydicom on the hot path.

:func:`read_header` walks the top-level elements at the start of an encoded
dataset, skipping sequences, until it passes (0020,000E), and returns the raw
text of the few elements the store needs. :func:`encode_file_meta` writes the
File Meta Information group. Both are pure; anything they cannot handle
(truncation, nesting deeper than :data:`MAX_DEPTH`) returns ``None`` so the
caller can fall back to pydicom. Deflated datasets are inflated only as far as
the header needs, so a deflate bomb costs at most 64 KiB.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping

__all__ = [
    "DEFLATED",
    "HEADER_TAGS",
    "MAX_DEPTH",
    "encode_file_meta",
    "read_elements",
    "read_header",
    "read_tags",
]

#: The elements the store reads: SOPClassUID, SOPInstanceUID, PatientID,
#: StudyInstanceUID, SeriesInstanceUID.
HEADER_TAGS = (0x00080016, 0x00080018, 0x00100020, 0x0020000D, 0x0020000E)
_LAST = 0x0020000E
#: Sequences nested deeper than this are left to pydicom (which refuses them).
MAX_DEPTH = 32

_IMPLICIT_LE = "1.2.840.10008.1.2"
_EXPLICIT_BE = "1.2.840.10008.1.2.2"
DEFLATED = ("1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.8.1")
_INFLATE_LIMIT = 1 << 16
_LONG_VRS = frozenset(
    (b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV")
)
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD


def _inflated_prefix(data: bytes | bytearray, complete: bool) -> tuple[bytes, bool] | None:
    """Inflate at most 64 KiB of a deflated dataset (a deflate bomb never expands in memory).

    Returns the inflated bytes and whether they are the whole dataset; ``None`` when
    the data does not inflate.
    """
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        inflated = inflater.decompress(bytes(data), _INFLATE_LIMIT)
    except zlib.error:
        return None
    return inflated, complete and inflater.eof


class _Short(Exception):
    """The buffer ends before the parse does (or the data is not parseable here)."""


class _Reader:
    def __init__(self, data: bytes | bytearray, transfer_syntax: str) -> None:
        self.data = data
        self.implicit = transfer_syntax == _IMPLICIT_LE
        self.endian = ">" if transfer_syntax == _EXPLICIT_BE else "<"

    def element(self, pos: int) -> tuple[int, int, int]:
        """Return (tag, value offset, value length) of the element at ``pos``."""
        data, end = self.data, self.endian
        if pos + 8 > len(data):
            raise _Short
        group, elem = struct.unpack_from(end + "HH", data, pos)
        tag = group << 16 | elem
        if self.implicit or group == 0xFFFE:
            (length,) = struct.unpack_from(end + "I", data, pos + 4)
            return tag, pos + 8, length
        vr = bytes(data[pos + 4 : pos + 6])
        if vr in _LONG_VRS:
            if pos + 12 > len(data):
                raise _Short
            (length,) = struct.unpack_from(end + "I", data, pos + 8)
            return tag, pos + 12, length
        (length,) = struct.unpack_from(end + "H", data, pos + 6)
        return tag, pos + 8, length

    def skip_sequence(self, pos: int, depth: int) -> int:
        """Skip the items of an undefined-length sequence; return the offset after it."""
        if depth > MAX_DEPTH:
            raise _Short
        while True:
            tag, value, length = self.element(pos)
            if tag == _SEQ_END:
                return value
            if tag != _ITEM:
                raise _Short
            if length != _UNDEFINED:
                pos = value + length
                continue
            pos = value
            while True:  # the elements of an undefined-length item
                tag, value, length = self.element(pos)
                if tag == _ITEM_END:
                    pos = value
                    break
                pos = (
                    self.skip_sequence(value, depth + 1)
                    if length == _UNDEFINED
                    else (value + length)
                )


def read_header(
    data: bytes | bytearray, transfer_syntax: str, *, complete: bool
) -> dict[int, str] | None:
    """Return the text of :data:`HEADER_TAGS` found at the top level of ``data``.

    Parameters
    ----------
    data : bytes
        The start of an encoded dataset (no file meta).
    transfer_syntax : str
        Its transfer syntax UID.
    complete : bool
        Whether ``data`` is the whole dataset (so elements missing from it are
        absent, not just not received yet).

    Returns
    -------
    dict or None
        Tag -> text (``""`` when absent); ``None`` when this parser cannot tell.
    """
    if transfer_syntax in DEFLATED:
        prefix = _inflated_prefix(data, complete)
        return None if prefix is None else read_header(prefix[0], _EXPLICIT_LE, complete=prefix[1])
    if transfer_syntax == _EXPLICIT_LE:
        return _read_explicit_le(data, complete)
    reader = _Reader(data, transfer_syntax)
    found = dict.fromkeys(HEADER_TAGS, "")
    pos = 0
    try:
        while pos < len(data):
            tag, value, length = reader.element(pos)
            if tag > _LAST:
                return found
            if length == _UNDEFINED:
                pos = reader.skip_sequence(value, 1)
                continue
            if value + length > len(data):
                raise _Short
            if tag in found:
                found[tag] = bytes(data[value : value + length]).decode("latin-1")
                found[tag] = found[tag].rstrip("\x00 ").lstrip(" ")
            pos = value + length
    except (_Short, struct.error):
        return None
    return found if complete else None


_EXPLICIT_LE = "1.2.840.10008.1.2.1"
_ELEMENT = struct.Struct("<HH2sH").unpack_from
_LENGTH = struct.Struct("<I").unpack_from


def _read_explicit_le(data: bytes | bytearray, complete: bool) -> dict[int, str] | None:
    """:func:`read_header` for Explicit VR Little Endian, the common case, in one tight loop."""
    found = dict.fromkeys(HEADER_TAGS, "")
    pos, end = 0, len(data)
    long_vrs = _LONG_VRS
    try:
        while pos < end:
            if pos + 8 > end:
                raise _Short
            group, elem, vr, length = _ELEMENT(data, pos)
            tag = group << 16 | elem
            if tag > _LAST:
                return found
            if group == 0xFFFE:
                raise _Short  # an item or delimiter at the top level: not parseable here
            if vr in long_vrs:
                if pos + 12 > end:
                    raise _Short
                (length,) = _LENGTH(data, pos + 8)
                value = pos + 12
            else:
                value = pos + 8
            if length == _UNDEFINED:
                pos = _Reader(data, _EXPLICIT_LE).skip_sequence(value, 1)
                continue
            pos = value + length
            if pos > end:
                raise _Short
            if tag in found:
                found[tag] = bytes(data[value:pos]).decode("latin-1").rstrip("\x00 ").lstrip(" ")
    except (_Short, struct.error):
        return None
    return found if complete else None


def _meta_element(element: int, vr: bytes, value: bytes) -> bytes:
    if vr == b"OB":
        return struct.pack("<HH2sHI", 2, element, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", 2, element, vr, len(value)) + value


def _even(raw: bytes, pad: bytes) -> bytes:
    return raw + pad if len(raw) % 2 else raw


def encode_file_meta(
    sop_class_uid: str,
    sop_instance_uid: str,
    transfer_syntax_uid: str,
    implementation_class_uid: str,
    implementation_version_name: str,
) -> bytes:
    """Return the 128-byte zero preamble, ``DICM`` and the File Meta Information group.

    The same bytes as pydicom's ``write_file_meta_info`` (PS3.10 7.1), with
    UIDs NUL-padded and the version name space-padded to even lengths.
    """
    body = b"".join(
        (
            _meta_element(0x0001, b"OB", b"\x00\x01"),
            _meta_element(0x0002, b"UI", _even(sop_class_uid.encode("ascii"), b"\x00")),
            _meta_element(0x0003, b"UI", _even(sop_instance_uid.encode("ascii"), b"\x00")),
            _meta_element(0x0010, b"UI", _even(transfer_syntax_uid.encode("ascii"), b"\x00")),
            _meta_element(0x0012, b"UI", _even(implementation_class_uid.encode("ascii"), b"\x00")),
            _meta_element(0x0013, b"SH", _even(implementation_version_name.encode("ascii"), b" ")),
        )
    )
    group_length = _meta_element(0x0000, b"UL", struct.pack("<I", len(body)))
    return b"\x00" * 128 + b"DICM" + group_length + body


def read_elements(data: bytes, transfer_syntax: str, tags: frozenset[int]) -> dict[int, str] | None:
    """Return the text of the ``tags`` found at the top level of a whole, small dataset.

    For C-FIND and C-MOVE response identifiers: every top-level element is walked
    (sequences skipped). Multiple values stay joined by backslashes. ``None`` when the
    bytes cannot be parsed here.
    """
    reader = _Reader(data, transfer_syntax)
    found: dict[int, str] = {}
    pos = 0
    try:
        while pos < len(data):
            tag, value, length = reader.element(pos)
            if length == _UNDEFINED:
                pos = reader.skip_sequence(value, 1)
                continue
            if value + length > len(data):
                raise _Short
            if tag in tags:
                text = bytes(data[value : value + length]).decode("latin-1")
                found[tag] = text.rstrip("\x00 ").lstrip(" ")
            pos = value + length
    except (_Short, struct.error):
        return None
    return found


_CHARSET = 0x00080005
#: Character sets decoded here (ASCII, Latin-1, UTF-8); others are left to pydicom.
_FAST_CHARSETS = frozenset({"", "ISO_IR 6", "ISO_IR 100", "ISO_IR 192"})


def read_tags(
    data: bytes | bytearray, transfer_syntax: str, vrs: Mapping[int, str], *, complete: bool
) -> dict[int, str] | None:
    """Return the text of ``tags`` at the top level of the start of a dataset.

    For the header columns of a manifest (``tags=``): the elements are walked until
    one past the largest tag (sequences skipped). Multiple values are joined by
    backslashes; text is decoded as UTF-8 when the dataset says ISO_IR 192, else as
    Latin-1, and binary numbers (US, SS, UL, SL, FL, FD) are written out. A tag that
    is absent is left out.

    Parameters
    ----------
    data : bytes
        The start of an encoded dataset (no file meta).
    vrs : mapping
        The tags to read, each with its dictionary VR.
    complete : bool
        Whether ``data`` is the whole dataset.

    Returns
    -------
    dict or None
        ``None`` when ``data`` ends before the largest tag could be passed (and is not
        the whole dataset), or cannot be parsed here: read the file instead.
    """
    if transfer_syntax in DEFLATED:
        prefix = _inflated_prefix(data, complete)
        return (
            None if prefix is None else read_tags(prefix[0], _EXPLICIT_LE, vrs, complete=prefix[1])
        )
    reader = _Reader(data, transfer_syntax)
    tags = vrs.keys()
    last = max([*tags, _CHARSET])
    raw: dict[int, bytes] = {}
    pos = 0
    try:
        while pos < len(data):
            tag, value, length = reader.element(pos)
            if tag > last:
                break
            if length == _UNDEFINED:
                pos = reader.skip_sequence(value, 1)
                continue
            if value + length > len(data):
                raise _Short
            if tag in tags or tag == _CHARSET:
                raw[tag] = bytes(data[value : value + length])
            pos = value + length
        else:
            if not complete:
                return None
    except (_Short, struct.error):
        return None
    charset = raw.get(_CHARSET, b"").decode("latin-1").strip(" \x00")
    if charset not in _FAST_CHARSETS:
        return None  # ISO 2022 and the other character sets: pydicom decodes them
    utf8 = charset == "ISO_IR 192"
    return {
        tag: _tag_text(value, vrs[tag], utf8, reader.endian)
        for tag, value in raw.items()
        if tag in tags
    }


_BINARY = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d"}


def _tag_text(raw: bytes, vr: str, utf8: bool, endian: str) -> str:
    code = _BINARY.get(vr)
    if code is not None:
        size = struct.calcsize(code)
        count = len(raw) // size
        numbers = struct.unpack_from(f"{endian}{count}{code}", raw)
        return "\\".join(f"{n:g}" if isinstance(n, float) else str(n) for n in numbers)
    return raw.decode("utf-8" if utf8 else "latin-1", "replace").rstrip("\x00 ").lstrip(" ")
