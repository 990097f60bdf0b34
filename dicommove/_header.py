"""Just enough DICOM encoding to name a received file, without pydicom on the receive path.

:func:`read_header` walks the top-level elements at the start of an encoded dataset
until it passes (0020,000E), and returns the raw text of the few elements the store
needs; :func:`read_tags` does the same for the header columns of a manifest, and
:func:`read_elements` for whole C-FIND identifiers. :func:`encode_file_meta` writes
the File Meta Information group.

The work is bounded whatever the bytes. Elements are skipped by their length without
being read; sequences of undefined length are walked by their delimiters, in a loop
(no recursion), at most :data:`MAX_DEPTH` deep; at most :data:`MAX_ELEMENTS` element
headers are looked at and :data:`MAX_READ` bytes read beyond the first ones given; a
value is read only when asked for, and only up to :data:`MAX_VALUE` bytes; a deflated
dataset is inflated at most 64 KiB. The readers return ``None`` when the bytes given
end before the header does (the caller may read on, from its file: ``fetch``), and
raise :class:`HeaderError` when the dataset is not a valid encoding (a length past its
end, an undefined length on an element that cannot have one, a truncated element) or
goes past a bound: the caller refuses it.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Collection, Mapping

__all__ = [
    "DEFLATED",
    "EXPLICIT_LE",
    "HEADER_TAGS",
    "MAX_DEPTH",
    "MAX_ELEMENTS",
    "MAX_READ",
    "MAX_VALUE",
    "Fetch",
    "HeaderError",
    "encode_file_meta",
    "inflated_prefix",
    "read_elements",
    "read_header",
    "read_tags",
]

#: The elements the store reads: SOPClassUID, SOPInstanceUID, PatientID,
#: StudyInstanceUID, SeriesInstanceUID.
HEADER_TAGS = (0x00080016, 0x00080018, 0x00100020, 0x0020000D, 0x0020000E)
_LAST = 0x0020000E
#: Sequences of undefined length nested deeper than this are refused.
MAX_DEPTH = 64
#: The most element headers (items and delimiters included) looked at for one header.
MAX_ELEMENTS = 1 << 15
#: The most bytes read through ``fetch`` for one header (skipped values are not read).
MAX_READ = 1 << 22
#: The longest value read (a header value is a UID or a short text).
MAX_VALUE = 1 << 16

_IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
_EXPLICIT_BE = "1.2.840.10008.1.2.2"
DEFLATED = ("1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.8.1")
_INFLATE_LIMIT = 1 << 16
_CHUNK = 1 << 14  # bytes read through fetch at a time, at least
_LONG_VRS = frozenset(
    (b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV")
)
#: Every VR of PS3.5 6.2: any other two bytes in an explicit-VR dataset are refused (pydicom
#: could not read the file, or would switch to implicit VR and misread it).
_VRS = frozenset(
    vr.encode()
    for vr in [
        "AE",
        "AS",
        "AT",
        "CS",
        "DA",
        "DS",
        "DT",
        "FL",
        "FD",
        "IS",
        "LO",
        "LT",
        "OB",
        "OD",
        "OF",
        "OL",
        "OV",
        "OW",
        "PN",
        "SH",
        "SL",
        "SQ",
        "SS",
        "ST",
        "SV",
        "TM",
        "UC",
        "UI",
        "UL",
        "UN",
        "UR",
        "US",
        "UT",
        "UV",
    ]
)
#: VRs that may have an undefined length: sequences, UN holding one, encapsulated pixel data.
_UNDEFINED_VRS = frozenset((b"SQ", b"UN", b"OB", b"OW"))
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD

#: ``fetch(offset, size)``: ``size`` bytes of the dataset from ``offset``.
Fetch = Callable[[int, int], bytes]


class HeaderError(ValueError):
    """The header cannot be read: the encoding is broken, or it goes past a bound.

    Its message says why, for the reason of a refused C-STORE.
    """


class _Short(Exception):
    """The bytes end before the parse does; its message says where, for a complete dataset."""


def _tag(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def inflated_prefix(data: bytes | bytearray, complete: bool) -> tuple[bytes, bool]:
    """Inflate at most 64 KiB of a deflated dataset (a deflate bomb never expands in memory).

    Returns the inflated bytes and whether they are the whole dataset.

    Raises
    ------
    HeaderError
        If the data does not inflate.
    """
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        inflated = inflater.decompress(data, _INFLATE_LIMIT)
    except zlib.error as exc:
        raise HeaderError(f"the deflated dataset does not inflate: {exc}") from None
    return inflated, complete and inflater.eof


# (implicit VR, big endian) of the elements being walked
_Mode = tuple[bool, bool]
_LE_EXPLICIT, _LE_IMPLICIT = struct.Struct("<HH2sH").unpack_from, struct.Struct("<HHI").unpack_from
_BE_EXPLICIT, _BE_IMPLICIT = struct.Struct(">HH2sH").unpack_from, struct.Struct(">HHI").unpack_from
_LE_LENGTH, _BE_LENGTH = struct.Struct("<I").unpack_from, struct.Struct(">I").unpack_from


def _mode(transfer_syntax: str) -> _Mode:
    return transfer_syntax == _IMPLICIT_LE, transfer_syntax == _EXPLICIT_BE


class _Walker:
    """Walks the elements of one dataset: from ``data`` in memory, then through ``fetch``.

    ``size`` is the dataset's size (``len(data)`` without ``fetch``); ``complete`` says
    whether those bytes are the whole dataset. Every element header looked at counts
    against :data:`MAX_ELEMENTS`, every byte fetched against :data:`MAX_READ`.
    """

    __slots__ = ("base", "buf", "complete", "elements", "fetch", "max_value", "read", "size")

    def __init__(
        self,
        data: bytes | bytearray,
        *,
        complete: bool,
        size: int | None = None,
        fetch: Fetch | None = None,
        max_value: int | None = MAX_VALUE,
    ) -> None:
        self.buf: bytes | bytearray = data
        self.base = 0  # the dataset offset of buf[0]
        self.fetch = fetch
        self.size = len(data) if fetch is None or size is None else size
        self.complete = complete or fetch is not None
        self.max_value = max_value
        self.elements = 0
        self.read = 0

    def window(self, pos: int, n: int) -> int:
        """Make the ``n`` bytes at ``pos`` available in ``buf``; return their offset in it."""
        if pos + n > self.size:
            raise _Short(f"the dataset ends at byte {self.size}, inside the element at {pos}")
        off = pos - self.base
        if off >= 0 and off + n <= len(self.buf):
            return off
        if self.fetch is None:
            raise _Short(f"the dataset ends at byte {self.size}, inside the element at {pos}")
        take = min(max(n, _CHUNK), self.size - pos)
        self.read += take
        if self.read > MAX_READ:
            raise HeaderError(f"the header goes on past the first {MAX_READ} bytes read")
        chunk = self.fetch(pos, take)
        if len(chunk) < n:
            raise HeaderError(f"the dataset's file ends before byte {pos + n}")
        self.buf, self.base = chunk, pos
        return 0

    def element(self, pos: int, mode: _Mode) -> tuple[int, bytes, int, int]:
        """Return (tag, VR or ``b""``, value offset, value length) of the element at ``pos``."""
        self.elements += 1
        if self.elements > MAX_ELEMENTS:
            raise HeaderError(f"the header goes on past {MAX_ELEMENTS} elements")
        off = self.window(pos, 8)
        implicit, big = mode
        if implicit:
            group, elem, length = (_BE_IMPLICIT if big else _LE_IMPLICIT)(self.buf, off)
            return group << 16 | elem, b"", pos + 8, length
        group, elem, vr, length = (_BE_EXPLICIT if big else _LE_EXPLICIT)(self.buf, off)
        if group == 0xFFFE:  # an item or a delimiter: a 4-byte length and no VR
            (length,) = (_BE_LENGTH if big else _LE_LENGTH)(self.buf, off + 4)
            return group << 16 | elem, b"", pos + 8, length
        if vr not in _VRS:
            raise HeaderError(f"{_tag(group << 16 | elem)} has an unknown VR {vr!r}")
        if vr in _LONG_VRS:
            off = self.window(pos, 12)
            (length,) = (_BE_LENGTH if big else _LE_LENGTH)(self.buf, off + 8)
            return group << 16 | elem, vr, pos + 12, length
        return group << 16 | elem, vr, pos + 8, length

    def end_of(self, tag: int, value: int, length: int) -> int:
        """Return the offset after a value of ``length`` at ``value`` (within the dataset)."""
        end = value + length
        if end > self.size:
            raise _Short(
                f"{_tag(tag)} of {length} bytes runs past the end of the dataset "
                f"({self.size} bytes)"
            )
        return end

    def value(self, tag: int, pos: int, length: int) -> bytes:
        """Return the ``length`` bytes of the value at ``pos`` (checked by :meth:`end_of`)."""
        if self.max_value is not None and length > self.max_value:
            raise HeaderError(f"{_tag(tag)} of {length} bytes is too long to be read")
        off = self.window(pos, length)
        return bytes(self.buf[off : off + length])

    def walk(self, mode: _Mode, wanted: Collection[int], last: int) -> dict[int, bytes]:
        """Return the values of the ``wanted`` tags at the top level, up to tag ``last``."""
        found: dict[int, bytes] = {}
        pos = 0
        while True:
            if pos >= self.size:
                if self.complete:
                    return found
                raise _Short("the dataset ends in its header")
            tag, vr, value, length = self.element(pos, mode)
            if tag > last:
                return found
            if length == _UNDEFINED:
                pos = self.skip_sequence(tag, vr, value, mode)
                continue
            end = self.end_of(tag, value, length)
            if tag in wanted:
                found[tag] = self.value(tag, value, length)
            pos = end

    def skip_sequence(self, tag: int, vr: bytes, pos: int, mode: _Mode) -> int:
        """Skip an element of undefined length whose value starts at ``pos``; return its end.

        Items and elements of a given length are skipped by it; those of undefined length
        are walked by their delimiters, in this loop, with the open sequences on a stack.
        """
        opened = [(tag, self.inner(tag, vr, mode))]  # the open sequences, innermost last
        in_item = False  # in an item of undefined length, or between items
        while True:
            tag, vr, value, length = self.element(pos, opened[-1][1])
            if not in_item:
                if tag == _SEQ_END:
                    opened.pop()
                    if not opened:
                        return value
                    in_item, pos = True, value
                elif tag != _ITEM:
                    raise HeaderError(
                        f"{_tag(tag)} at byte {pos}, in {_tag(opened[-1][0])} of undefined "
                        "length, where an item or the end of a sequence must be"
                    )
                elif length == _UNDEFINED:
                    in_item, pos = True, value
                else:
                    pos = self.end_of(tag, value, length)
            elif tag == _ITEM_END:
                in_item, pos = False, value
            elif tag >> 16 == 0xFFFE:
                raise HeaderError(f"{_tag(tag)} at byte {pos}, inside an item")
            elif length == _UNDEFINED:
                if len(opened) >= MAX_DEPTH:
                    raise HeaderError(f"sequences nested more than {MAX_DEPTH} deep")
                opened.append((tag, self.inner(tag, vr, opened[-1][1])))
                in_item, pos = False, value
            else:
                pos = self.end_of(tag, value, length)

    @staticmethod
    def inner(tag: int, vr: bytes, mode: _Mode) -> _Mode:
        """Return the mode of the items of an element of undefined length (UN: implicit LE)."""
        if mode[0]:
            return mode
        if vr not in _UNDEFINED_VRS:
            text = vr.decode("ascii", "replace")
            raise HeaderError(f"undefined length on {_tag(tag)}, a {text} element")
        return (True, False) if vr == b"UN" else mode


def _text(raw: bytes) -> str:
    return raw.decode("latin-1").rstrip("\x00 ").lstrip(" ")


def read_header(
    data: bytes | bytearray,
    transfer_syntax: str,
    *,
    complete: bool,
    size: int | None = None,
    fetch: Fetch | None = None,
) -> dict[int, str] | None:
    """Return the text of :data:`HEADER_TAGS` found at the top level of a dataset.

    Parameters
    ----------
    data : bytes
        The start of an encoded dataset (no file meta).
    transfer_syntax : str
        Its transfer syntax UID.
    complete : bool
        Whether ``data`` is the whole dataset (so elements missing from it are
        absent, not just not received yet).
    size, fetch : int, callable, optional
        The size of the whole dataset, and ``fetch(offset, n)`` to read on past ``data``
        (then the dataset is complete). A deflated dataset is never read past ``data``.

    Returns
    -------
    dict or None
        Tag -> text (``""`` when absent); ``None`` when ``data`` ends first.

    Raises
    ------
    HeaderError
        If the header is not a valid encoding, or goes past a bound.
    """
    if transfer_syntax in DEFLATED:
        inflated, whole = inflated_prefix(data, complete)
        return read_header(inflated, EXPLICIT_LE, complete=whole)
    if fetch is None and transfer_syntax == EXPLICIT_LE:
        return _read_explicit_le(data, complete)
    walker = _Walker(data, complete=complete, size=size, fetch=fetch)
    try:
        raw = walker.walk(_mode(transfer_syntax), HEADER_TAGS, _LAST)
    except _Short as short:
        if walker.complete:
            raise HeaderError(str(short)) from None
        return None
    return {tag: _text(raw[tag]) if tag in raw else "" for tag in HEADER_TAGS}


_ELEMENT = struct.Struct("<HH2sH").unpack_from
_LENGTH = struct.Struct("<I").unpack_from


def _read_explicit_le(data: bytes | bytearray, complete: bool) -> dict[int, str] | None:
    """:func:`read_header` for Explicit VR Little Endian, the common case, in one tight loop."""
    found = dict.fromkeys(HEADER_TAGS, "")
    pos, end = 0, len(data)
    long_vrs, vrs = _LONG_VRS, _VRS
    walker: _Walker | None = None  # for sequences of undefined length, when there are some
    try:
        while pos < end:
            if pos + 8 > end:
                raise _Short(f"the dataset ends at byte {end}, inside the element at {pos}")
            group, elem, vr, length = _ELEMENT(data, pos)
            tag = group << 16 | elem
            if tag > _LAST:
                return found
            if vr not in vrs:
                raise HeaderError(f"{_tag(tag)} has an unknown VR {vr!r}")
            if vr in long_vrs:
                if pos + 12 > end:
                    raise _Short(f"the dataset ends at byte {end}, inside the element at {pos}")
                (length,) = _LENGTH(data, pos + 8)
                value = pos + 12
            else:
                value = pos + 8
            if length == _UNDEFINED:  # a sequence: walked by its delimiters
                walker = walker or _Walker(data, complete=complete)
                pos = walker.skip_sequence(tag, vr, value, (False, False))
                continue
            pos = value + length
            if pos > end:
                raise _Short(
                    f"{_tag(tag)} of {length} bytes runs past the end of the dataset ({end} bytes)"
                )
            if tag in found:
                found[tag] = bytes(data[value:pos]).decode("latin-1").rstrip("\x00 ").lstrip(" ")
    except _Short as short:
        if complete:
            raise HeaderError(str(short)) from None
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
    walker = _Walker(data, complete=True, max_value=None)
    try:
        raw = walker.walk(_mode(transfer_syntax), tags, 0xFFFFFFFF)
    except (_Short, HeaderError):
        return None
    return {tag: _text(value) for tag, value in raw.items()}


_CHARSET = 0x00080005
#: Character sets decoded here (ASCII, Latin-1, UTF-8); pydicom's codecs decode the others.
_FAST_CHARSETS = frozenset({"", "ISO_IR 6", "ISO_IR 100", "ISO_IR 192"})


def read_tags(
    data: bytes | bytearray,
    transfer_syntax: str,
    vrs: Mapping[int, str],
    *,
    complete: bool,
    size: int | None = None,
    fetch: Fetch | None = None,
) -> dict[int, str] | None:
    """Return the text of ``tags`` at the top level of the start of a dataset.

    For the header columns of a manifest (``tags=``): the elements are walked until
    one past the largest tag (sequences skipped), with the bounds of :func:`read_header`.
    Multiple values are joined by backslashes; text is decoded in the dataset's
    Specific Character Set, and binary numbers (US, SS, UL, SL, FL, FD) are written
    out. A tag that is absent is left out.

    Parameters
    ----------
    data : bytes
        The start of an encoded dataset (no file meta).
    vrs : mapping
        The tags to read, each with its dictionary VR.
    complete : bool
        Whether ``data`` is the whole dataset.
    size, fetch : int, callable, optional
        As for :func:`read_header`.

    Returns
    -------
    dict or None
        ``None`` when ``data`` ends before the largest tag could be passed (and is not
        the whole dataset): read on, with ``fetch``.

    Raises
    ------
    HeaderError
        If the elements up to the largest tag are not a valid encoding, or go past a bound.
    """
    if transfer_syntax in DEFLATED:
        inflated, whole = inflated_prefix(data, complete)
        return read_tags(inflated, EXPLICIT_LE, vrs, complete=whole)
    tags = vrs.keys()
    walker = _Walker(data, complete=complete, size=size, fetch=fetch)
    try:
        raw = walker.walk(_mode(transfer_syntax), {*tags, _CHARSET}, max([*tags, _CHARSET]))
    except _Short as short:
        if walker.complete:
            raise HeaderError(str(short)) from None
        return None
    charset = raw.get(_CHARSET, b"").decode("latin-1").strip(" \x00")
    big = transfer_syntax == _EXPLICIT_BE
    return {
        tag: _tag_text(value, vrs[tag], charset, ">" if big else "<")
        for tag, value in raw.items()
        if tag in tags
    }


_BINARY = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d"}


def _tag_text(raw: bytes, vr: str, charset: str, endian: str) -> str:
    code = _BINARY.get(vr)
    if code is not None:
        size = struct.calcsize(code)
        count = len(raw) // size
        numbers = struct.unpack_from(f"{endian}{count}{code}", raw)
        return "\\".join(f"{n:g}" if isinstance(n, float) else str(n) for n in numbers)
    if charset in _FAST_CHARSETS:
        text = raw.decode("utf-8" if charset == "ISO_IR 192" else "latin-1", "replace")
    else:
        text = _decode_text(raw, vr, charset)
    return text.rstrip("\x00 ").lstrip(" ")


#: Where the character set of a value switches back (PS3.5 6.1.2.5.3): control
#: characters and backslash, and for person names ^ and = too.
_TEXT_DELIMITERS = frozenset({0x09, 0x0A, 0x0C, 0x0D, 0x5C})
_PN_DELIMITERS = _TEXT_DELIMITERS | {0x3D, 0x5E}


def _decode_text(raw: bytes, vr: str, charset: str) -> str:
    """Decode one value in another character set (ISO 2022, GB18030...) with pydicom's codecs.

    The value alone is decoded, never the dataset.
    """
    from pydicom.charset import convert_encodings, decode_bytes

    delimiters = set(_PN_DELIMITERS if vr == "PN" else _TEXT_DELIMITERS)
    try:  # pydicom warns about an unknown character set or bad bytes, and goes on
        encodings = convert_encodings([term.strip() for term in charset.split("\\")])
        return decode_bytes(raw, encodings, delimiters)
    except Exception:  # warnings made errors, say: a header column is best effort
        return raw.decode("latin-1")
