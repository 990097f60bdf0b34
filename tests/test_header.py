"""The hot-path header reader and file-meta writer agree with pydicom."""

from __future__ import annotations

import struct
import warnings
import zlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.sequence import Sequence
from pydicom.uid import UID

from dicommove._header import (
    HEADER_TAGS,
    MAX_DEPTH,
    MAX_ELEMENTS,
    MAX_READ,
    HeaderError,
    encode_file_meta,
    read_elements,
    read_header,
    read_tags,
)

#: The documented bound: a deflated dataset is inflated at most this far for its header.
INFLATE_LIMIT = 64 * 1024

IMPLICIT, EXPLICIT, BIG = "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"
DEFLATED_TS = "1.2.840.10008.1.2.1.99"


def dataset(nesting: int = 2, undefined: bool = True) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = "1.2.3.4.5"
    ds.StudyDate = "20200101"
    item: Dataset = Dataset()
    item.ReferencedSOPInstanceUID = "9.9.9"
    for _ in range(nesting):  # sequences (undefined length) before the keys we want
        outer = Dataset()
        outer.ReferencedImageSequence = Sequence([item, Dataset()])
        item = outer
    ds.ReferencedStudySequence = Sequence([item])
    ds.PatientName = "Ünïcode^Name"
    ds.PatientID = "PID 7"
    ds.StudyInstanceUID = "1.2.3"
    ds.SeriesInstanceUID = "1.2.3.4"
    ds.InstanceNumber = 3
    ds.BitsAllocated = 16
    ds.PixelData = b"\x00\x01" * 8
    if undefined:
        for elem in ds.iterall():
            if elem.VR == "SQ":
                elem.is_undefined_length = True
                for item_ds in elem.value:
                    item_ds.is_undefined_length_sequence_item = True
    return ds


def encode(ds: Dataset, ts: str) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian = ts != BIG
    fp.is_implicit_VR = ts == IMPLICIT
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # big endian is retired
        write_dataset(fp, ds)
    return fp.getvalue()


@pytest.mark.parametrize("ts", [IMPLICIT, EXPLICIT, BIG])
@pytest.mark.parametrize("undefined", [True, False])
def test_reads_the_header_like_pydicom(ts: str, undefined: bool) -> None:
    raw = encode(dataset(undefined=undefined), ts)
    header = read_header(raw, ts, complete=True)
    assert header == {
        0x00080016: "1.2.840.10008.5.1.4.1.1.2",
        0x00080018: "1.2.3.4.5",
        0x00100020: "PID 7",
        0x0020000D: "1.2.3",
        0x0020000E: "1.2.3.4",
    }
    # the header is known from a prefix alone, once it passes (0020,000E)
    cut = raw.index(b"1.2.3.4\x00") + 8
    assert read_header(raw[: cut + 12], ts, complete=False) == header


@pytest.mark.parametrize("ts", [IMPLICIT, EXPLICIT])
def test_truncated_prefix_is_undecided(ts: str) -> None:
    raw = encode(dataset(), ts)
    for cut in (0, 7, 40, len(raw) // 3):
        assert read_header(raw[:cut], ts, complete=False) is None


def test_missing_elements_in_a_complete_dataset_are_empty() -> None:
    ds = Dataset()
    ds.SOPInstanceUID = "1.2"
    assert read_header(encode(ds, EXPLICIT), EXPLICIT, complete=True) == {
        **dict.fromkeys(HEADER_TAGS, ""),
        0x00080018: "1.2",
    }


def nested(ts: str, depth: int, *, undefined: bool) -> bytes:
    """(0008,1140) sequences, each in the only item of the one around it, ``depth`` deep.

    Written here: pydicom's writer takes exponential time on deep defined-length nesting.
    """
    e = ">" if ts == BIG else "<"

    def sq(length: int) -> bytes:
        if ts == IMPLICIT:
            return struct.pack(e + "HHI", 0x0008, 0x1140, length)
        return struct.pack(e + "HH2sHI", 0x0008, 0x1140, b"SQ", 0, length)

    def delimiter(elem: int, length: int = 0) -> bytes:
        return struct.pack(e + "HHI", 0xFFFE, elem, length)

    if undefined:
        opening = sq(0xFFFFFFFF) + delimiter(0xE000, 0xFFFFFFFF)
        return opening * depth + (delimiter(0xE00D) + delimiter(0xE0DD)) * depth
    level = len(sq(0)) + 8  # the bytes each level adds
    return b"".join(
        sq(level * (j - 1) + 8) + delimiter(0xE000, level * (j - 1)) for j in range(depth, 0, -1)
    )


def with_nesting(ts: str, depth: int, *, undefined: bool) -> bytes:
    """:func:`dataset` without sequences, ``nested`` before (0010,0010)."""
    ds = dataset(nesting=0)
    del ds.ReferencedStudySequence
    flat = encode(ds, ts)
    at = flat.index(struct.pack(">HH" if ts == BIG else "<HH", 0x0010, 0x0010))
    return flat[:at] + nested(ts, depth, undefined=undefined) + flat[at:]


@pytest.mark.parametrize("ts", [IMPLICIT, EXPLICIT, BIG])
def test_nesting_is_walked_up_to_max_depth_then_refused(ts: str) -> None:
    """Undefined-length sequences are walked in a loop, MAX_DEPTH deep at most: never recursed
    into (100,000 levels would overflow the stack) and never handed to pydicom."""
    expected = read_header(encode(dataset(), ts), ts, complete=True)
    within = with_nesting(ts, MAX_DEPTH, undefined=True)
    assert read_header(within, ts, complete=True) == expected
    for depth in (MAX_DEPTH + 1, 100_000):
        deeper = with_nesting(ts, depth, undefined=True)
        for complete in (True, False):  # decided within the bytes given
            with pytest.raises(HeaderError, match=f"nested more than {MAX_DEPTH} deep"):
                read_header(deeper, ts, complete=complete)
    # sequences of a given length are skipped by it, however deep their insides
    assert read_header(with_nesting(ts, 100_000, undefined=False), ts, complete=True) == expected


def deflate(raw: bytes) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return packer.compress(raw) + packer.flush()


def test_deflated_header_is_read_from_a_bounded_prefix() -> None:
    raw = encode(dataset(), EXPLICIT)
    assert read_header(deflate(raw), DEFLATED_TS, complete=True) == read_header(
        raw, EXPLICIT, complete=True
    )
    with pytest.raises(HeaderError, match="does not inflate"):
        read_header(b"not deflate", DEFLATED_TS, complete=True)


def deflate_bomb(head: bytes, zeros_mib: int, tail: bytes = b"") -> bytes:
    """``head``, then ``zeros_mib`` MiB of zeros, then ``tail``, deflated (about 1 kB per MiB)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    parts = [packer.compress(head)]
    parts += [packer.compress(zeros) for _ in range(zeros_mib)]
    parts += [packer.compress(tail), packer.flush()]
    return b"".join(parts)


class InflateSpy:
    """Wraps ``zlib.decompressobj``: records the ``max_length`` asked and the bytes produced."""

    def __init__(self) -> None:
        self.max_lengths: list[int] = []
        self.produced = 0
        self._real = zlib.decompressobj

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        real = self._real(*args, **kwargs)
        spy = self

        class Inflater:
            @property
            def eof(self) -> bool:
                return bool(real.eof)

            def decompress(self, data: bytes, max_length: int = 0) -> bytes:
                spy.max_lengths.append(max_length)
                out = real.decompress(data, max_length)
                spy.produced += len(out)
                return out

        return Inflater()


def test_deflate_bomb_is_not_expanded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 128 MiB bomb behind the header: the header is read, and at most 64 KiB inflated."""
    spy = InflateSpy()
    monkeypatch.setattr(zlib, "decompressobj", spy)
    head = encode(dataset(), EXPLICIT)
    header = read_header(deflate_bomb(head, 128), DEFLATED_TS, complete=True)
    assert header == read_header(head, EXPLICIT, complete=True)
    assert spy.max_lengths and all(0 < n <= INFLATE_LIMIT for n in spy.max_lengths)
    assert 0 < spy.produced <= INFLATE_LIMIT


def test_deflate_bomb_before_the_header_is_undecided() -> None:
    """64 MiB of padding before SOPClassUID: inflated without a cap the header would be
    found; with the cap it is out of reach, so the reader must give up (``None``)."""
    ds = Dataset()
    ds.add_new(0x00070010, "LO", "PADDING")  # a private block ahead of (0008,0016)
    ds.add_new(0x00071000, "OB", b"")
    pad = encode(ds, EXPLICIT)
    assert pad.endswith(b"\x00\x00\x00\x00")  # (0007,1000) OB, length 0: patch it below
    mib = 64
    pad = pad[:-4] + struct.pack("<I", mib << 20)
    head = encode(dataset(), EXPLICIT)
    uncapped = pad + bytes(mib << 20) + head
    assert read_header(uncapped, EXPLICIT, complete=True) == read_header(
        head, EXPLICIT, complete=True
    )  # the header is there, for a reader that inflates everything
    assert read_header(deflate_bomb(pad, mib, head), DEFLATED_TS, complete=True) is None


def test_garbage_is_refused_and_never_yields_uids() -> None:
    empty = dict.fromkeys(HEADER_TAGS, "")
    assert read_header(b"\xff" * 100, EXPLICIT, complete=True) == empty  # past (0020,000E)
    for garbage in (b"\x08\x00\x16\x00UI\xff\xff", b"\x08\x00\x18\x00UI"):
        with pytest.raises(HeaderError, match=r"past the end|ends at byte"):
            read_header(garbage, EXPLICIT, complete=True)
        assert read_header(garbage, EXPLICIT, complete=False) is None  # more may come


def explicit(tag: int, vr: bytes, value: bytes = b"", length: int | None = None) -> bytes:
    """One Explicit VR Little Endian element, ``length`` overriding the true one."""
    size = len(value) if length is None else length
    if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT"):
        return struct.pack("<HH2sHI", tag >> 16, tag & 0xFFFF, vr, 0, size) + value
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr, size) + value


HEAD = explicit(0x00080016, b"UI", b"1.2.840.10008.5.1.4.1.1.2\x00") + explicit(
    0x00080018, b"UI", b"1.2.3.4.5\x00"
)
TAIL = (
    explicit(0x00100020, b"LO", b"PID 7 ")
    + explicit(0x0020000D, b"UI", b"1.2.3\x00")
    + explicit(0x0020000E, b"UI", b"1.2.3.4\x00")
)
UIDS = {
    0x00080016: "1.2.840.10008.5.1.4.1.1.2",
    0x00080018: "1.2.3.4.5",
    0x00100020: "PID 7",
    0x0020000D: "1.2.3",
    0x0020000E: "1.2.3.4",
}
ITEM = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
ITEM_END = struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
SEQ_END = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)


class Sparse:
    """A dataset of ``size`` bytes held as a few pieces, zeros between: ``fetch`` counts reads."""

    def __init__(self, pieces: dict[int, bytes], size: int) -> None:
        self.pieces, self.size, self.fetched = pieces, size, 0

    def fetch(self, offset: int, n: int) -> bytes:
        self.fetched += n
        out = bytearray(n)
        for at, piece in self.pieces.items():
            lo, hi = max(at, offset), min(at + len(piece), offset + n)
            if lo < hi:
                out[lo - offset : hi - offset] = piece[lo - at : hi - at]
        return bytes(out)


def test_the_header_past_a_huge_element_is_read_on_without_reading_it() -> None:
    """4 GiB of private OB before the Patient ID: skipped by its length, a few KiB fetched."""
    blob = 0xFFFFFFF0
    head = (
        HEAD + explicit(0x00090010, b"LO", b"HOSTILE ") + explicit(0x00091000, b"OB", length=blob)
    )
    size = len(head) + blob + len(TAIL)
    sparse = Sparse({0: head, len(head) + blob: TAIL}, size)
    assert read_header(head, EXPLICIT, complete=False) is None  # the head ends first
    header = read_header(head, EXPLICIT, complete=True, size=size, fetch=sparse.fetch)
    assert header == UIDS
    assert sparse.fetched <= 64 * 1024
    with pytest.raises(HeaderError, match="runs past the end"):  # one byte short of it
        read_header(head, EXPLICIT, complete=True, size=size - len(TAIL) - 1, fetch=sparse.fetch)


def test_the_walk_is_bounded_in_elements_and_in_bytes_read() -> None:
    flood = HEAD + explicit(0x00091001, b"LO") * MAX_ELEMENTS + TAIL  # 256 KiB of them
    fetch = Sparse({0: flood}, len(flood)).fetch
    with pytest.raises(HeaderError, match=f"past {MAX_ELEMENTS} elements"):  # read on from
        read_header(flood[: 1 << 16], EXPLICIT, complete=True, size=len(flood), fetch=fetch)
    # elements just longer than what one read brings: every one is a read of its own
    hops = explicit(0x00091002, b"OB", bytes(20_000)) * (MAX_READ // 16_384 + 8)
    data = HEAD + hops + TAIL
    sparse = Sparse({0: data}, len(data))
    with pytest.raises(HeaderError, match=f"past the first {MAX_READ} bytes read"):
        read_header(data[:1024], EXPLICIT, complete=True, size=len(data), fetch=sparse.fetch)
    assert sparse.fetched <= MAX_READ + 64 * 1024


ABSURD = [
    pytest.param(explicit(0x00091000, b"OB", length=0xFFFFFFF0), "runs past the end", id="4GiB-OB"),
    pytest.param(explicit(0x00091000, b"UT", length=0xFFFFFFFF), "a UT element", id="undefined-UT"),
    pytest.param(
        explicit(0x00100010, b"PN", b"x", length=0xFFFE), "past the end", id="PN-past-end"
    ),
    pytest.param(
        explicit(0x00081140, b"SQ", length=0xFFFFFFFF)
        + struct.pack("<HHI", 0xFFFE, 0xE000, 1 << 31),
        "runs past the end",
        id="item-past-end",
    ),
    pytest.param(
        explicit(0x00081140, b"SQ", length=0xFFFFFFFF) + explicit(0x00081150, b"UI", b"1.2\x00"),
        "where an item or the end of a sequence must be",
        id="element-for-an-item",
    ),
    pytest.param(
        explicit(0x00081140, b"SQ", length=0xFFFFFFFF) + ITEM + SEQ_END,
        "inside an item",
        id="sequence-end-in-an-item",
    ),
    pytest.param(
        explicit(0x00081140, b"SQ", length=0xFFFFFFFF) + ITEM,
        "ends at byte",
        id="unterminated-sequence",
    ),
]


@pytest.mark.parametrize(("hostile", "reason"), ABSURD)
def test_absurd_lengths_are_refused_with_a_reason(hostile: bytes, reason: str) -> None:
    data = HEAD + hostile + TAIL
    with pytest.raises(HeaderError, match=reason):
        read_header(data, EXPLICIT, complete=True)
    with pytest.raises(HeaderError, match=reason):
        read_tags(data, EXPLICIT, {0x00280010: "US"}, complete=True)
    assert read_elements(data, EXPLICIT, frozenset(UIDS)) is None


def test_implicit_undefined_length_on_a_value_is_refused() -> None:
    implicit = struct.pack("<HHI", 0x0008, 0x0020, 0xFFFFFFFF) + b"20240101"
    ds = dataset(nesting=0)
    del ds.StudyDate
    data = encode(ds, IMPLICIT)
    at = data.index(struct.pack("<HH", 0x0008, 0x1110))  # where (0008,0020) was
    with pytest.raises(HeaderError, match=r"in \(0008,0020\) of undefined length"):
        read_header(data[:at] + implicit + data[at:], IMPLICIT, complete=True)


def test_an_undefined_length_un_holds_implicit_vr_items() -> None:
    """PS3.5 6.2.2: a sequence sent as UN of undefined length is Implicit VR Little Endian."""
    inner = struct.pack("<HHI", 0x0008, 0x1150, 4) + b"1.2\x00"  # no VR: implicit
    un = explicit(0x00091000, b"UN", length=0xFFFFFFFF) + ITEM + inner + ITEM_END + SEQ_END
    assert read_header(HEAD + un + TAIL, EXPLICIT, complete=True) == UIDS


def test_a_long_value_is_read_only_where_it_may_be() -> None:
    failed = "\\".join(f"1.2.826.0.1.3680043.9.7433.1.{n}" for n in range(4000)).encode()
    assert len(failed) > 64 * 1024  # FailedSOPInstanceUIDList of a large C-MOVE
    listing = explicit(0x00080058, b"UT", failed)  # UI in real life, but with a 2-byte length
    assert read_elements(listing, EXPLICIT, frozenset({0x00080058})) == {
        0x00080058: failed.decode()
    }
    huge_uid = explicit(0x00080018, b"UN", b"1" * (128 * 1024))
    with pytest.raises(HeaderError, match="too long"):
        read_header(
            huge_uid,
            EXPLICIT,
            complete=True,
            size=len(huge_uid),
            fetch=lambda o, n: huge_uid[o : o + n],
        )


def test_other_character_sets_are_decoded_value_by_value() -> None:
    """ISO 2022 (Japanese): pydicom's codecs for the value, never a pydicom dataset read."""
    name = b"Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B"
    data = (
        HEAD + explicit(0x00080005, b"CS", b"\\ISO 2022 IR 87") + explicit(0x00100010, b"PN", name)
    )
    found = read_tags(data + TAIL, EXPLICIT, {0x00100010: "PN"}, complete=True)
    assert found == {0x00100010: "Yamada^Tarou=山田^太郎"}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ts=st.sampled_from([IMPLICIT, EXPLICIT, BIG]),
    cut=st.integers(min_value=0, max_value=1 << 16),
    flips=st.lists(
        st.tuples(st.integers(min_value=0, max_value=1 << 16), st.integers(0, 255)), max_size=8
    ),
)
def test_any_damage_is_refused_or_undecided_never_a_crash(
    ts: str, cut: int, flips: list[tuple[int, int]]
) -> None:
    data = bytearray(encode(dataset(nesting=3), ts))
    for at, byte in flips:
        data[at % len(data)] = byte
    data = data[: cut % (len(data) + 1)]
    for complete in (True, False):
        try:
            header = read_header(data, ts, complete=complete)
        except HeaderError:
            continue
        assert header is None or set(header) == set(HEADER_TAGS)
        assert header is not None or not complete


def test_file_meta_matches_pydicom() -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.2")
    meta.MediaStorageSOPInstanceUID = UID("1.2.3.45")
    meta.TransferSyntaxUID = UID(EXPLICIT)
    meta.ImplementationClassUID = UID("2.25.1")
    meta.ImplementationVersionName = "DICOMMOVE_0.1.0"
    fp = DicomBytesIO()
    write_file_meta_info(fp, meta, enforce_standard=True)
    ours = encode_file_meta(
        "1.2.840.10008.5.1.4.1.1.2", "1.2.3.45", EXPLICIT, "2.25.1", "DICOMMOVE_0.1.0"
    )
    assert ours == b"\x00" * 128 + b"DICM" + fp.getvalue()
