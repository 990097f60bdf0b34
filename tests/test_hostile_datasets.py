"""Reliability case 33: hostile datasets are never fully decoded on the receive path.

Deep sequence nesting, deflate bombs, absurd element lengths and truncated headers are
sent as C-STOREs, byte for byte, to a running Store SCP. Each one is received (stored
byte-exact) or refused on its own (a failed C-STORE with a reason); the association
goes on and a normal instance after it is stored. The store reads only the header it
needs with bounded work: pydicom's readers are never called (they raise here), at most
64 KiB of a deflated dataset is inflated, each C-STORE is answered quickly, and the
peak RSS of a receiver process that takes them all grows by a few MiB at most.
"""

from __future__ import annotations

import struct
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
import pydicom.filereader
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from senders import (
    RawAssociation,
    Receiver,
    encode,
    explicit_element,
    is_failure,
    make_dataset,
    wait_until,
)

from dicommove.scp import InstanceStore, Received, StoreSCP
from dicommove.store.tags import header_tags

AE_TITLE = "DICOMMOVE"
MiB = 1 << 20
GiB = 1 << 30
UNDEFINED = 0xFFFFFFFF
CANNOT_UNDERSTAND = 0xC000
#: The most a deflated dataset may be inflated for its header (documented in _header).
INFLATE_LIMIT = 64 * 1024
#: Every hostile C-STORE is answered within this (a 16 MiB one included, on loopback).
ANSWER_WITHIN = 2.0
#: How much the peak RSS of the receiver process may grow while it takes them all.
RSS_GROWTH_LIMIT = 4 * MiB
#: Context ids per transfer syntax (the receiver accepts each on its own context).
CONTEXTS: dict[str, int] = {
    ExplicitVRLittleEndian: 1,
    ImplicitVRLittleEndian: 3,
    DeflatedExplicitVRLittleEndian: 5,
}
TAGS = ["Rows"]  # a header column read after the UIDs (past a deflate bomb in one case)

REFERENCED_IMAGES = 0x00081140  # (0008,1140) SQ, between the SOP UIDs and the Patient ID


# -- hostile encodings -----------------------------------------------------------------------


def sq(tag: int, length: int) -> bytes:
    return struct.pack("<HH2sHI", tag >> 16, tag & 0xFFFF, b"SQ", 0, length)


def long_element(tag: int, vr: bytes, length: int) -> bytes:
    """The header of an Explicit VR element with a 4-byte length (OB, UT, ...), as given."""
    return struct.pack("<HH2sHI", tag >> 16, tag & 0xFFFF, vr, 0, length)


def item(length: int) -> bytes:
    return struct.pack("<HHI", 0xFFFE, 0xE000, length)


ITEM_END = struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
SEQ_END = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)


def implicit(tag: int, value: bytes, length: int | None = None) -> bytes:
    """One Implicit VR Little Endian element; ``length`` overrides the true one."""
    if len(value) % 2:
        value += b"\x00"
    size = len(value) if length is None else length
    return struct.pack("<HHI", tag >> 16, tag & 0xFFFF, size) + value


def spliced(ds: Dataset, at: int, middle: bytes, tail: bytes = b"") -> bytes:
    """``ds`` encoded with ``middle`` before its first element at or after tag ``at``."""
    before, after = Dataset(), Dataset()
    for elem in ds:
        (before if elem.tag < at else after).add(elem)
    return encode(before) + middle + encode(after) + tail


def only(ds: Dataset, *, below: int = 1 << 32, above: int = 0) -> Dataset:
    """The elements of ``ds`` from tag ``above`` up to, not including, ``below``."""
    out = Dataset()
    for elem in ds:
        if above <= elem.tag < below:
            out.add(elem)
    return out


def nest_undefined(depth: int) -> bytes:
    """Sequences of undefined length, each in the only item of the one around it."""
    return (sq(REFERENCED_IMAGES, UNDEFINED) + item(UNDEFINED)) * depth + (
        ITEM_END + SEQ_END
    ) * depth


def nest_defined(depth: int) -> bytes:
    """The same nesting with every length given: level j (1 innermost) holds 20(j-1) bytes."""
    return b"".join(
        sq(REFERENCED_IMAGES, 20 * (j - 1) + 8) + item(20 * (j - 1)) for j in range(depth, 0, -1)
    )


def private_block(group: int, vr: bytes, length: int) -> bytes:
    """A private creator and the header of one private element of ``length`` (its value not)."""
    creator = explicit_element(group << 16 | 0x0010, "LO", b"DICOMMOVE HOSTILE")
    return creator + long_element(group << 16 | 0x1000, vr, length)


def deflate_bomb(head: bytes, zeros: int, tail: bytes) -> bytes:
    """``head``, ``zeros`` bytes of zeros, ``tail``, deflated: 1 GiB of zeros is about 1 MB.

    Built in milliseconds: after a full flush the compressor starts afresh, so every MiB of
    zeros deflates to the same block, which is repeated.
    """
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    out = packer.compress(head) + packer.flush(zlib.Z_FULL_FLUSH)
    block = packer.compress(bytes(MiB)) + packer.flush(zlib.Z_FULL_FLUSH)
    return out + block * (zeros // MiB) + packer.compress(tail) + packer.flush()


def implicit_dataset(ds: Dataset, *replace: tuple[int, bytes]) -> bytes:
    """The header of ``ds`` in Implicit VR Little Endian, with raw elements spliced in."""
    parts = {
        0x00080016: implicit(0x00080016, str(ds.SOPClassUID).encode()),
        0x00080018: implicit(0x00080018, str(ds.SOPInstanceUID).encode()),
        0x00100020: implicit(0x00100020, str(ds.PatientID).encode()),
        0x0020000D: implicit(0x0020000D, str(ds.StudyInstanceUID).encode()),
        0x0020000E: implicit(0x0020000E, str(ds.SeriesInstanceUID).encode()),
    }
    parts.update(replace)
    return b"".join(parts[tag] for tag in sorted(parts))


@dataclass
class Hostile:
    """One hostile C-STORE: its dataset bytes, and whether it is to be stored or refused."""

    name: str
    ds: Dataset
    data: bytes
    received: bool
    syntax: str = ExplicitVRLittleEndian
    tags: dict[str, str] | None = field(default=None)  # expected header columns, if checked


def truncated_in_a_uid(ds: Dataset) -> bytes:
    data = encode(ds)
    return data[: len(data) - 10]  # inside the value of (0020,000E), the last element


def truncated_in_an_element_header(ds: Dataset) -> bytes:
    data = encode(ds)
    return data[: data.index(struct.pack("<HH", 0x0020, 0x000D)) + 5]  # (0020,000D)'s header


def referenced_images(count: int) -> bytes:
    """``count`` items of undefined length, each with a referenced SOP class and instance."""
    return b"".join(
        item(UNDEFINED)
        + explicit_element(0x00081150, "UI", CTImageStorage.encode())
        + explicit_element(0x00081155, "UI", f"1.2.826.0.1.3680043.9.7433.1.{n}".encode())
        + ITEM_END
        for n in range(count)
    )


def bomb_after_the_header(ds: Dataset) -> bytes:
    rows = explicit_element(0x00280010, "US", struct.pack("<H", 2))
    return deflate_bomb(encode(ds) + private_block(0x0021, b"OB", GiB), GiB, rows)


def bomb_before_the_header(ds: Dataset) -> bytes:
    head = encode(only(ds, below=0x00090000)) + private_block(0x0009, b"OB", GiB)
    return deflate_bomb(head, GiB, encode(only(ds, above=0x00090000)))


#: name -> (dataset bytes from a new instance, stored?, transfer syntax, header columns)
BUILDERS: dict[str, tuple[Callable[[Dataset], bytes], bool, str, dict[str, str] | None]] = {
    # deep nesting
    "nest-10000-undefined": (
        lambda ds: spliced(ds, REFERENCED_IMAGES, nest_undefined(10_000)),
        False,
        ExplicitVRLittleEndian,
        None,
    ),
    "nest-10000-defined": (
        lambda ds: spliced(ds, REFERENCED_IMAGES, nest_defined(10_000)),
        True,
        ExplicitVRLittleEndian,
        None,
    ),
    # deflate bombs, 1 GiB of zeros: after the header (before the Rows column), or before it
    "deflate-bomb-after-the-header": (
        bomb_after_the_header,
        True,
        DeflatedExplicitVRLittleEndian,
        {"Rows": ""},  # past what is inflated: left empty, and the file is kept
    ),
    "deflate-bomb-before-the-header": (
        bomb_before_the_header,
        False,
        DeflatedExplicitVRLittleEndian,
        None,
    ),
    # absurd lengths
    "length-0xFFFFFFF0": (
        lambda ds: spliced(ds, 0x00090000, private_block(0x0009, b"OB", 0xFFFFFFF0)),
        False,
        ExplicitVRLittleEndian,
        None,
    ),
    "undefined-length-on-UT": (
        lambda ds: spliced(ds, 0x00090000, private_block(0x0009, b"UT", UNDEFINED)),
        False,
        ExplicitVRLittleEndian,
        None,
    ),
    "undefined-length-on-a-date-implicit": (
        lambda ds: implicit_dataset(ds, (0x00080020, implicit(0x00080020, b"20240101", UNDEFINED))),
        False,
        ImplicitVRLittleEndian,
        None,
    ),
    "uid-length-0xFFFFFFF0-implicit": (
        lambda ds: implicit_dataset(ds, (0x00080018, implicit(0x00080018, b"1.2.3", 0xFFFFFFF0))),
        False,
        ImplicitVRLittleEndian,
        None,
    ),
    "length-past-the-end": (
        lambda ds: spliced(ds, 0x00100010, struct.pack("<HH2sH", 0x0010, 0x0010, b"PN", 0xFFFE)),
        False,
        ExplicitVRLittleEndian,
        None,
    ),
    "item-past-the-end": (
        lambda ds: spliced(
            ds, REFERENCED_IMAGES, sq(REFERENCED_IMAGES, UNDEFINED) + item(0x7FFFFFF0)
        ),
        False,
        ExplicitVRLittleEndian,
        None,
    ),
    "element-flood": (  # 1 MiB of empty elements before the Patient ID
        lambda ds: spliced(
            ds, 0x00090000, struct.pack("<HH2sH", 0x0009, 0x1001, b"LO", 0) * (MiB // 8)
        ),
        False,
        ExplicitVRLittleEndian,
        None,
    ),
    # truncated headers
    "truncated-in-a-uid": (truncated_in_a_uid, False, ExplicitVRLittleEndian, None),
    "truncated-in-an-element-header": (
        truncated_in_an_element_header,
        False,
        ExplicitVRLittleEndian,
        None,
    ),
    "truncated-in-a-sequence": (
        lambda ds: (
            encode(only(ds, below=REFERENCED_IMAGES))
            + sq(REFERENCED_IMAGES, UNDEFINED)
            + referenced_images(4000)[: 200 * 1024]
        ),
        False,
        ExplicitVRLittleEndian,
        None,
    ),
    # the UIDs far from the start
    "uids-after-a-16-MiB-private-element": (
        lambda ds: spliced(
            ds, 0x00090000, private_block(0x0009, b"OB", 16 * MiB) + bytes(16 * MiB)
        ),
        True,
        ExplicitVRLittleEndian,
        None,
    ),
    "uids-after-a-long-sequence": (  # 4,000 items (16,000 elements, 360 KB) walked
        lambda ds: spliced(
            ds,
            REFERENCED_IMAGES,
            sq(REFERENCED_IMAGES, UNDEFINED) + referenced_images(4000) + SEQ_END,
        ),
        True,
        ExplicitVRLittleEndian,
        None,
    ),
}


def hostile_cases() -> list[Hostile]:
    """Every hostile C-STORE, each of its own instance (its own UIDs)."""
    cases = []
    for name, (build, received, syntax, tags) in BUILDERS.items():
        ds = make_dataset()
        cases.append(Hostile(name, ds, build(ds), received, syntax, tags))
    return cases


CASE_NAMES = list(BUILDERS)


@pytest.fixture(scope="module")
def cases() -> dict[str, Hostile]:
    # the bomb builder, checked on 8 MiB (a GiB would take seconds to inflate here)
    bomb = deflate_bomb(b"head", 8 * MiB, b"tail")
    assert zlib.decompress(bomb, -zlib.MAX_WBITS) == b"head" + bytes(8 * MiB) + b"tail"
    built = {case.name: case for case in hostile_cases()}
    for name in ("deflate-bomb-after-the-header", "deflate-bomb-before-the-header"):
        # deflate inflates at most 1032 bytes per byte: this many bytes can hold a GiB
        assert GiB // 1032 < len(built[name].data) < 1_100_000
    return built


def all_contexts() -> list[tuple[int, str, tuple[str]]]:
    return [(cx_id, CTImageStorage, (syntax,)) for syntax, cx_id in CONTEXTS.items()]


def dataset_of(stored: bytes) -> bytes:
    """The dataset bytes of a stored file: what follows its preamble and file meta group."""
    assert stored[:128] == bytes(128) and stored[128:132] == b"DICM"
    (group_length,) = struct.unpack_from("<I", stored, 140)
    return stored[144 + group_length :]


# -- the receive path never decodes them ------------------------------------------------------


@dataclass
class Guard:
    """What the receive path asked of pydicom's readers and of zlib."""

    decodes: list[str] = field(default_factory=list)
    inflated: int = 0


class _Inflater:
    def __init__(self, real: Any, guard: Guard) -> None:
        self._real, self._guard = real, guard

    def decompress(self, data: bytes, max_length: int = 0) -> bytes:
        out: bytes = self._real.decompress(data, max_length)
        self._guard.inflated += len(out)
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@pytest.fixture
def guard(monkeypatch: pytest.MonkeyPatch) -> Guard:
    """pydicom's dataset readers raise (and are recorded); inflated bytes are counted."""
    seen = Guard()
    for module, name in (
        (pydicom, "dcmread"),
        (pydicom.filereader, "dcmread"),
        (pydicom.filereader, "read_partial"),
        (pydicom.filereader, "read_dataset"),
        (pydicom.filereader, "data_element_generator"),
    ):
        where = f"{module.__name__}.{name}"

        def forbidden(*args: Any, _where: str = where, **kwargs: Any) -> Any:
            seen.decodes.append(_where)
            raise AssertionError(f"{_where} was called on the receive path")

        monkeypatch.setattr(module, name, forbidden)
    real_decompressobj, real_decompress = zlib.decompressobj, zlib.decompress

    def decompressobj(*args: Any, **kwargs: Any) -> Any:
        return _Inflater(real_decompressobj(*args, **kwargs), seen)

    def decompress(*args: Any, **kwargs: Any) -> bytes:
        out = real_decompress(*args, **kwargs)
        seen.inflated += len(out)
        return out

    monkeypatch.setattr(zlib, "decompressobj", decompressobj)
    monkeypatch.setattr(zlib, "decompress", decompress)
    return seen


@dataclass
class Running:
    scp: StoreSCP
    store: InstanceStore
    records: list[Received]

    def wait_records(self, n: int) -> list[Received]:
        wait_until(lambda: len(self.records) >= n, 10.0, f"{n} on_instance calls")
        return list(self.records)


@pytest.fixture
def scp(tmp_path: Path) -> Iterator[Running]:
    """A StoreSCP in this process on 127.0.0.1 (AE ``DICOMMOVE``) reading the ``Rows`` column."""
    store = InstanceStore(tmp_path / "out", tags=header_tags(TAGS))
    store.prepare()
    store.begin()
    records: list[Received] = []
    server = StoreSCP(
        store, ae_title=AE_TITLE, host="127.0.0.1", port=0, on_instance=records.append
    )
    server.start()
    try:
        yield Running(server, store, records)
    finally:
        server.stop()


@pytest.mark.parametrize("name", CASE_NAMES)
def test_hostile_dataset_is_stored_or_refused_without_a_full_decode(
    name: str, cases: dict[str, Hostile], guard: Guard, scp: Running
) -> None:
    case = cases[name]
    normal = make_dataset()
    with RawAssociation(int(scp.scp.port), called=AE_TITLE, contexts=all_contexts()) as raw:
        assert raw.accepted == {cx_id: syntax for syntax, cx_id in CONTEXTS.items()}
        started = time.perf_counter()
        status = raw.store(
            case.data, sop_instance=case.ds.SOPInstanceUID, cx_id=CONTEXTS[case.syntax]
        )
        elapsed = time.perf_counter() - started
        # the association goes on: a normal instance after it is stored
        assert raw.store(encode(normal), sop_instance=normal.SOPInstanceUID, message_id=2) == 0
        raw.release()
    hostile, after = scp.wait_records(2)
    assert guard.decodes == [], "pydicom decoded a dataset on the receive path"
    assert guard.inflated <= INFLATE_LIMIT
    assert elapsed < ANSWER_WITHIN
    assert after.status == "received", after.reason
    root = Path(scp.store.root)
    kept = sorted(p for p in root.rglob("*") if p.is_file())
    if case.received:
        assert (status, hostile.status) == (0, "received"), hostile.reason
        stored = Path(hostile.path).read_bytes()
        assert dataset_of(stored) == case.data  # byte-exact, as it came
        assert len(stored) == hostile.size
        assert kept == sorted([Path(hostile.path), Path(after.path)])
        if case.tags is not None:
            assert hostile.tags == case.tags
    else:
        assert is_failure(status)
        assert (status, hostile.status) == (CANNOT_UNDERSTAND, "refused")
        assert hostile.reason and hostile.path == ""
        assert kept == [Path(after.path)]  # nothing of it on disk, no temp file left


def test_a_receiver_takes_them_all_in_flat_memory(
    tmp_path: Path, cases: dict[str, Hostile]
) -> None:
    """One association, every hostile dataset, then a normal one, to a receiver process."""
    normal = make_dataset()
    statuses: dict[str, int | None] = {}
    elapsed: dict[str, float] = {}
    with Receiver(tmp_path / "out", tags=TAGS) as rx:
        with RawAssociation(rx.port, contexts=all_contexts()) as raw:
            for message_id, case in enumerate(cases.values(), 1):
                started = time.perf_counter()
                statuses[case.name] = raw.store(
                    case.data,
                    sop_instance=case.ds.SOPInstanceUID,
                    cx_id=CONTEXTS[case.syntax],
                    message_id=message_id,
                )
                elapsed[case.name] = time.perf_counter() - started
            assert raw.store(encode(normal), sop_instance=normal.SOPInstanceUID) == 0
            raw.release()
        result = rx.finish()
    growth = result["hwm"] - rx.idle_hwm  # VmHWM: not the test process's RSS inherited
    assert growth <= RSS_GROWTH_LIMIT, f"peak RSS grew by {growth / MiB:.1f} MiB"
    assert {name: t for name, t in elapsed.items() if t >= ANSWER_WITHIN} == {}
    assert statuses == {
        case.name: 0 if case.received else CANNOT_UNDERSTAND for case in cases.values()
    }
    assert [r["status"] for r in result["records"]] == [
        "received" if case.received else "refused" for case in cases.values()
    ] + ["received"]
