"""The hot-path header reader and file-meta writer agree with pydicom."""

from __future__ import annotations

import struct
import warnings
import zlib
from typing import Any

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.sequence import Sequence
from pydicom.uid import UID

from dicommove._header import HEADER_TAGS, MAX_DEPTH, encode_file_meta, read_header

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


def test_deep_nesting_is_left_to_pydicom() -> None:
    raw = encode(dataset(nesting=MAX_DEPTH + 2), EXPLICIT)
    assert read_header(raw, EXPLICIT, complete=True) is None


def deflate(raw: bytes) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return packer.compress(raw) + packer.flush()


def test_deflated_header_is_read_from_a_bounded_prefix() -> None:
    raw = encode(dataset(), EXPLICIT)
    assert read_header(deflate(raw), DEFLATED_TS, complete=True) == read_header(
        raw, EXPLICIT, complete=True
    )
    assert read_header(b"not deflate", DEFLATED_TS, complete=True) is None


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


def test_garbage_never_raises_and_never_yields_uids() -> None:
    empty = dict.fromkeys(HEADER_TAGS, "")
    for garbage in (b"\xff" * 100, b"\x08\x00\x16\x00UI\xff\xff", b"\x08\x00\x18\x00UI"):
        assert read_header(garbage, EXPLICIT, complete=True) in (None, empty)


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
