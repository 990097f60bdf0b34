"""The embedded Store SCP over real loopback associations, from real senders.

Senders: pynetdicom SCUs, DCMTK ``storescu``, and a raw upper-layer client
(``senders.RawAssociation``) for what a well-behaved SCU would never send (unsafe UIDs,
cut or killed transfers). Only the public behaviour of ``InstanceStore``, ``StoreSCP``
and ``dicommove.move`` is relied upon, so these tests hold whatever the transport.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from peers import dataset_bytes, ensure_peers_or_skip, free_port, storescu
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    UID,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    MRImageStorage,
    RLELossless,
)
from pynetdicom import AE
from senders import (
    RECEIVER_AE,
    AssociationRefused,
    RawAssociation,
    Receiver,
    encode,
    is_failure,
    make_dataset,
    new_uid,
    part10_header,
    wait_until,
    write_part10,
)

import dicommove
from dicommove import (
    DicomMoveError,
    InputError,
    LocalSetupError,
    Session,
    StoreAssociationRefused,
    StoreOptions,
)
from dicommove.scp import InstanceStore, Received, StoreSCP
from dicommove.testing import DemoPACS, make_cohort

AE_TITLE = "DICOMMOVE"
PACS_AE = "PACS"
TEMP_DIR = ".dicommove-tmp"
CONFLICT_DIR = ".dicommove-conflicts"
PRIVATE_SOP_CLASS = "1.2.826.0.1.3680043.9.7433.99.1"
UID_NAME = re.compile(r"^[0-9]+(\.[0-9]+)*$")
MiB = 1 << 20

SOP_INSTANCE_UID = 0x00080018
STUDY_INSTANCE_UID = 0x0020000D
SERIES_INSTANCE_UID = 0x0020000E


# -- helpers ---------------------------------------------------------------------------------


@dataclass
class Running:
    """A started StoreSCP with its store and what ``on_instance`` received."""

    scp: StoreSCP
    store: InstanceStore
    records: list[Received] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.scp.port)

    @property
    def root(self) -> Path:
        return Path(self.store.root)

    def wait_records(self, n: int, timeout: float = 10.0) -> list[Received]:
        wait_until(lambda: len(self.records) >= n, timeout, f"{n} on_instance calls")
        return list(self.records)

    def expected_path(self, ds: Dataset) -> Path:
        """Where the default (hierarchical) layout puts an instance."""
        study, series, sop = str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), ds.SOPInstanceUID
        return self.root / study / series / f"{sop}.dcm"


Start = Callable[..., Running]


@pytest.fixture
def start_scp(tmp_path: Path) -> Iterator[Start]:
    """Start StoreSCPs on 127.0.0.1 (port 0, AE ``DICOMMOVE``); all stopped at the end."""
    started: list[StoreSCP] = []

    def start(root: Path | None = None, *, layout: str = "hierarchical", **options: Any) -> Running:
        store = InstanceStore(root if root is not None else tmp_path / "out", layout=layout)
        store.prepare()
        store.begin()
        records: list[Received] = []
        options.setdefault("ae_title", AE_TITLE)
        options.setdefault("host", "127.0.0.1")
        options.setdefault("port", 0)
        scp = StoreSCP(store, on_instance=records.append, **options)
        started.append(scp)
        scp.start()
        return Running(scp, store, records)

    try:
        yield start
    finally:
        for scp in started:
            scp.stop()


@contextlib.contextmanager
def scu(
    port: int,
    *,
    calling: str = PACS_AE,
    called: str = AE_TITLE,
    contexts: Sequence[tuple[str, Sequence[str]]] = ((CTImageStorage, (ExplicitVRLittleEndian,)),),
    bind: str | None = None,
) -> Iterator[Any]:
    """A pynetdicom association to 127.0.0.1:port (check ``is_established``)."""
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 20
    for abstract, syntaxes in contexts:
        ae.add_requested_context(abstract, list(syntaxes))
    kwargs: dict[str, Any] = {"ae_title": called}
    if bind is not None:
        kwargs["bind_address"] = (bind, 0)
    assoc = ae.associate("127.0.0.1", port, **kwargs)
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()
        ae.shutdown()


def send(assoc: Any, path: Path) -> int | None:
    """C-STORE a Part 10 file with pynetdicom; the status, None if there was no response."""
    rsp = assoc.send_c_store(path)
    return int(rsp.Status) if rsp is not None and "Status" in rsp else None


def instance_file(
    directory: Path, *, preamble: bytes = b"", **kwargs: Any
) -> tuple[Path, Dataset, bytes]:
    """Write a Part 10 file of ``make_dataset(**kwargs)``; return (path, dataset, dataset bytes)."""
    ds = make_dataset(**kwargs)
    data = encode(ds)
    path = write_part10(
        directory / f"{ds.SOPInstanceUID}.dcm",
        data,
        sop_class=ds.SOPClassUID,
        sop=ds.SOPInstanceUID,
        preamble=preamble,
    )
    return path, ds, data


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def part_files(temp_dir: Path) -> list[Path]:
    """The non-empty ``*.part`` files in ``temp_dir`` (tolerates files vanishing)."""
    found = []
    for p in temp_dir.glob("*.part"):
        with contextlib.suppress(FileNotFoundError):
            if p.stat().st_size > 0:
                found.append(p)
    return found


def final_files(root: Path) -> list[Path]:
    """Files under the root outside the temp and conflict directories."""
    return [
        p
        for p in files_under(root)
        if not {TEMP_DIR, CONFLICT_DIR} & set(p.relative_to(root).parts)
    ]


def assert_connection_refused(port: int, host: str = "127.0.0.1") -> None:
    sock = socket.socket()
    try:
        with pytest.raises(ConnectionRefusedError):
            sock.connect((host, port))
    finally:
        sock.close()


def warning_mentions(caplog: pytest.LogCaptureFixture, *needles: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("dicommove")
        and r.levelno >= logging.WARNING
        and all(n in r.getMessage() for n in needles)
    ]


def file_dataset_sha256(path: Path) -> str:
    """SHA-256 of a Part 10 file's dataset bytes (after the meta group), read in chunks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        head = f.read(144)
        assert head[128:132] == b"DICM" and head[132:138] == b"\x02\x00\x00\x00UL"
        f.seek(144 + int.from_bytes(head[140:144], "little"))
        while chunk := f.read(8 * MiB):
            h.update(chunk)
    return h.hexdigest()


# -- listening ------------------------------------------------------------------------------


def test_port_zero_picks_a_free_port_and_stop_closes_it(start_scp: Start) -> None:
    srv = start_scp()
    assert srv.scp.running
    assert srv.port > 0
    RawAssociation(srv.port, called=AE_TITLE).release()
    srv.scp.stop()
    assert not srv.scp.running
    assert_connection_refused(srv.port)


def test_port_in_use_is_a_local_setup_error(tmp_path: Path, start_scp: Start) -> None:
    """Reliability case 7, at the StoreSCP level: another program, or another session."""
    store = InstanceStore(tmp_path / "out")
    store.prepare()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = int(busy.getsockname()[1])
        scp = StoreSCP(
            store, ae_title=AE_TITLE, host="127.0.0.1", port=taken, on_instance=lambda r: None
        )
        with pytest.raises(LocalSetupError, match="in use") as info:
            scp.start()
        assert type(info.value) is LocalSetupError
        assert not scp.running
    first = start_scp()
    second = StoreSCP(
        store, ae_title=AE_TITLE, host="127.0.0.1", port=first.port, on_instance=lambda r: None
    )
    with pytest.raises(LocalSetupError, match="in use") as info:
        second.start()
    assert type(info.value) is LocalSetupError
    assert not second.running
    assert first.scp.running


# -- happy paths ------------------------------------------------------------------------------


def test_answered_only_after_the_final_rename(tmp_path: Path, start_scp: Start) -> None:
    srv = start_scp()
    path, ds, data = instance_file(tmp_path / "src", pixel_bytes=64 * 1024)
    with scu(srv.port) as assoc:
        assert assoc.is_established
        assert send(assoc, path) == 0x0000
        final = srv.expected_path(ds)
        assert final.is_file()  # already there when the response arrived
        assert dataset_bytes(final) == data
    (rec,) = srv.wait_records(1)
    assert rec.status == "received", rec.reason
    assert Path(rec.path) == final
    assert rec.size == final.stat().st_size
    assert rec.sop_instance_uid == ds.SOPInstanceUID
    assert rec.sop_class_uid == CTImageStorage
    assert rec.transfer_syntax_uid == ExplicitVRLittleEndian
    assert (rec.study_instance_uid, rec.series_instance_uid) == (
        ds.StudyInstanceUID,
        ds.SeriesInstanceUID,
    )
    assert rec.patient_id == "PAT1"
    assert rec.calling_ae == PACS_AE
    assert rec.dimse_status == 0
    meta = dcmread(final).file_meta
    assert meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert meta.MediaStorageSOPClassUID == CTImageStorage
    assert meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert part_files(srv.store.temp_dir) == []


def test_two_simultaneous_associations_deliver_a_whole_study(
    tmp_path: Path, start_scp: Start
) -> None:
    srv = start_scp()
    study = new_uid()
    series = [new_uid(), new_uid()]
    files = [
        instance_file(tmp_path / "src", study=study, series=series[i % 2], pixel_bytes=32 * 1024)
        for i in range(20)
    ]
    barrier = threading.Barrier(2, timeout=20)

    def send_half(half: Sequence[tuple[Path, Dataset, bytes]]) -> list[int | None]:
        with scu(srv.port) as assoc:
            assert assoc.is_established
            barrier.wait()
            return [send(assoc, p) for p, _, _ in half]

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(send_half, [files[0::2], files[1::2]]))
    assert results == [[0] * 10, [0] * 10]
    records = srv.wait_records(20)
    assert sorted(r.status for r in records) == ["received"] * 20
    for _path, ds, data in files:
        assert dataset_bytes(srv.expected_path(ds)) == data
    assert len(final_files(srv.root)) == 20


def test_dcmtk_storescu_files_arrive_byte_identical(tmp_path: Path, start_scp: Start) -> None:
    ensure_peers_or_skip("storescu")
    srv = start_scp()
    files = [instance_file(tmp_path / "src", pixel_bytes=16 * 1024) for _ in range(4)]
    storescu(AE_TITLE, srv.port, [p for p, _, _ in files], calling=PACS_AE)
    records = srv.wait_records(4)
    assert [r.status for r in records] == ["received"] * 4
    for path, ds, _ in files:
        assert dataset_bytes(srv.expected_path(ds)) == dataset_bytes(path)
    assert {r.calling_ae for r in records} == {PACS_AE}


def test_saved_files_have_a_zero_preamble_and_are_not_executable(
    tmp_path: Path, start_scp: Start
) -> None:
    """Reliability case 34: whatever the sender's file had as preamble."""
    ensure_peers_or_skip("storescu")
    srv = start_scp()
    path, ds, data = instance_file(tmp_path / "src", preamble=b"\xff" * 128)
    assert path.read_bytes()[:4] == b"\xff" * 4
    storescu(AE_TITLE, srv.port, [path], calling=PACS_AE)
    srv.wait_records(1)
    raw = srv.expected_path(ds).read_bytes()
    assert raw[:128] == b"\x00" * 128
    assert raw[128:132] == b"DICM"
    assert raw.endswith(data)
    for p in final_files(srv.root):
        assert not stat.S_IMODE(p.stat().st_mode) & 0o111, f"{p} is executable"


def test_explicit_vr_preferred_when_both_proposed(tmp_path: Path, start_scp: Start) -> None:
    srv = start_scp()
    path, ds, data = instance_file(tmp_path / "src")
    contexts = [(CTImageStorage, (ImplicitVRLittleEndian, ExplicitVRLittleEndian))]
    with scu(srv.port, contexts=contexts) as assoc:
        assert assoc.is_established
        (cx,) = assoc.accepted_contexts
        assert cx.transfer_syntax[0] == ExplicitVRLittleEndian
        assert send(assoc, path) == 0
    (rec,) = srv.wait_records(1)
    assert rec.transfer_syntax_uid == ExplicitVRLittleEndian
    final = srv.expected_path(ds)
    assert dcmread(final).file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert dataset_bytes(final) == data
    # and the raw client sees the same choice, whatever the order proposed
    with RawAssociation(
        srv.port,
        called=AE_TITLE,
        contexts=[(1, CTImageStorage, (ImplicitVRLittleEndian, ExplicitVRLittleEndian))],
    ) as raw:
        assert raw.accepted == {1: ExplicitVRLittleEndian}


def _rle_file(directory: Path) -> Path:
    ds = make_dataset()
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = 64
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = (np.arange(64 * 64, dtype=np.uint16) % 4096).tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.compress(RLELossless)
    path = directory / "rle.dcm"
    directory.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def _jpeg_baseline_file(directory: Path) -> Path:
    """Encapsulated 'JPEG Baseline' pixel data: an SCP stores it without decoding."""
    ds = make_dataset()
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xdb" + bytes(range(60)) + b"\xff\xd9"])
    ds["PixelData"].VR = "OB"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    path = directory / "jpeg.dcm"
    directory.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize(
    ("syntax", "make"), [(RLELossless, _rle_file), (JPEGBaseline8Bit, _jpeg_baseline_file)]
)
def test_compressed_transfer_syntax_is_stored_as_sent(
    tmp_path: Path, start_scp: Start, syntax: UID, make: Callable[[Path], Path]
) -> None:
    srv = start_scp()
    path = make(tmp_path / "src")
    source = dcmread(path)
    with scu(srv.port, contexts=[(CTImageStorage, (syntax,))]) as assoc:
        assert assoc.is_established
        (cx,) = assoc.accepted_contexts
        assert cx.transfer_syntax[0] == syntax
        assert send(assoc, path) == 0
    (rec,) = srv.wait_records(1)
    assert rec.status == "received", rec.reason
    assert rec.transfer_syntax_uid == syntax
    final = srv.expected_path(source)
    assert dcmread(final).file_meta.TransferSyntaxUID == syntax
    assert dataset_bytes(final) == dataset_bytes(path)


def test_deflated_transfer_syntax_is_stored_as_sent(start_scp: Start) -> None:
    srv = start_scp()
    ds = make_dataset(pixel_bytes=64 * 1024)
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    deflated = packer.compress(encode(ds)) + packer.flush()
    contexts = [(1, CTImageStorage, (DeflatedExplicitVRLittleEndian,))]
    with RawAssociation(srv.port, called=AE_TITLE, contexts=contexts) as raw:
        assert raw.accepted == {1: DeflatedExplicitVRLittleEndian}
        assert raw.store(deflated, sop_instance=ds.SOPInstanceUID) == 0
    (rec,) = srv.wait_records(1)
    assert rec.status == "received", rec.reason
    assert rec.transfer_syntax_uid == DeflatedExplicitVRLittleEndian
    final = srv.expected_path(ds)
    assert dataset_bytes(final) == deflated
    stored = dcmread(final)
    assert stored.file_meta.TransferSyntaxUID == DeflatedExplicitVRLittleEndian
    assert stored.SOPInstanceUID == ds.SOPInstanceUID


def test_unknown_sop_class_refused_by_default(tmp_path: Path, start_scp: Start) -> None:
    srv = start_scp()
    path, _, _ = instance_file(tmp_path / "src", sop_class=PRIVATE_SOP_CLASS)
    contexts = [
        (PRIVATE_SOP_CLASS, (ExplicitVRLittleEndian,)),
        (CTImageStorage, (ExplicitVRLittleEndian,)),
    ]
    with scu(srv.port, contexts=contexts) as assoc:
        assert assoc.is_established
        accepted = {str(cx.abstract_syntax) for cx in assoc.accepted_contexts}
        assert accepted == {CTImageStorage}
        with pytest.raises(ValueError, match="presentation context"):
            assoc.send_c_store(path)
    assert files_under(srv.root) == []
    assert srv.records == []


def test_unknown_sop_class_accepted_when_allowed(tmp_path: Path, start_scp: Start) -> None:
    srv = start_scp(accept_unknown_sop_classes=True)
    path, ds, data = instance_file(tmp_path / "src", sop_class=PRIVATE_SOP_CLASS)
    with scu(srv.port, contexts=[(PRIVATE_SOP_CLASS, (ExplicitVRLittleEndian,))]) as assoc:
        assert assoc.is_established
        assert send(assoc, path) == 0
    (rec,) = srv.wait_records(1)
    assert rec.status == "received", rec.reason
    assert rec.sop_class_uid == PRIVATE_SOP_CLASS
    assert dataset_bytes(srv.expected_path(ds)) == data


def test_template_layout(tmp_path: Path, start_scp: Start) -> None:
    template = (
        "by-class/{SOPClassUID}/{StudyInstanceUID}/s_{SeriesInstanceUID}/{SOPInstanceUID}.dcm"
    )
    srv = start_scp(layout=template)
    path, ds, data = instance_file(tmp_path / "src")
    with scu(srv.port) as assoc:
        assert send(assoc, path) == 0
    (rec,) = srv.wait_records(1)
    expected = (
        srv.root
        / "by-class"
        / CTImageStorage
        / ds.StudyInstanceUID
        / f"s_{ds.SeriesInstanceUID}"
        / f"{ds.SOPInstanceUID}.dcm"
    )
    assert Path(rec.path) == expected
    assert dataset_bytes(expected) == data


@pytest.mark.parametrize(
    "template",
    [
        "{PatientID}/{SOPInstanceUID}.dcm",
        "{PatientName}.dcm",
        "{SOPInstanceUID!r}.dcm",
        "{SOPInstanceUID:>80}.dcm",
        "{}.dcm",
        "{0}.dcm",
        "{SOPInstanceUID.real}.dcm",
        "{{SOPInstanceUID}}.dcm",
        "x/{SOPInstanceUID",
        "a b/{SOPInstanceUID}.dcm",
        "C:{SOPInstanceUID}.dcm",
        "a\\{SOPInstanceUID}.dcm",
        "{SOPInstanceUID}.dcm\x00",
        "{SOPInstanceUID}~.dcm",
        "hierarchicall",
    ],
)
def test_invalid_template_is_an_input_error(tmp_path: Path, template: str) -> None:
    with pytest.raises(InputError, match="layout") as info:
        InstanceStore(tmp_path, layout=template)
    assert type(info.value) is InputError


@pytest.mark.parametrize(
    "template", ["../{SOPInstanceUID}.dcm", "/{SOPInstanceUID}.dcm", "a/../../{SOPInstanceUID}.dcm"]
)
def test_template_that_leaves_the_root_is_an_input_error(tmp_path: Path, template: str) -> None:
    """Only [A-Za-z0-9._-] and '/' are allowed, but '..' and a leading '/' would escape."""
    with pytest.raises(InputError, match="layout") as info:
        InstanceStore(tmp_path, layout=template)
    assert type(info.value) is InputError


# -- association rules ------------------------------------------------------------------------


def test_unknown_calling_ae_rejected_and_logged(
    tmp_path: Path, start_scp: Start, caplog: pytest.LogCaptureFixture
) -> None:
    """Reliability case 20."""
    caplog.set_level(logging.WARNING, logger="dicommove")
    srv = start_scp(allowed_calling_aes=frozenset({PACS_AE}))
    path, _, _ = instance_file(tmp_path / "src")
    with scu(srv.port, calling="STRANGER") as assoc:
        assert not assoc.is_established
    with pytest.raises(AssociationRefused) as info:
        RawAssociation(srv.port, called=AE_TITLE, calling="STRANGER").close()
    assert info.value.rejected == (1, 1, 3)  # permanent, service user, calling AE not recognized
    wait_until(
        lambda: warning_mentions(caplog, "STRANGER", "127.0.0.1"), 5, "a warning naming AE and IP"
    )
    # the allowed AE still gets in
    with scu(srv.port, calling=PACS_AE) as assoc:
        assert assoc.is_established
        assert send(assoc, path) == 0
    assert [r.calling_ae for r in srv.wait_records(1)] == [PACS_AE]
    assert len(final_files(srv.root)) == 1


def test_wrong_called_ae_rejected_and_logged(
    start_scp: Start, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="dicommove")
    srv = start_scp()
    with scu(srv.port, called="NOT-US") as assoc:
        assert not assoc.is_established
    with pytest.raises(AssociationRefused) as info:
        RawAssociation(srv.port, called="NOT-US").close()
    assert info.value.rejected == (1, 1, 7)  # permanent, service user, called AE not recognized
    wait_until(
        lambda: warning_mentions(caplog, "NOT-US", "127.0.0.1"), 5, "a warning naming AE and IP"
    )
    assert files_under(srv.root) == []


def test_disallowed_host_rejected_and_logged(
    tmp_path: Path, start_scp: Start, caplog: pytest.LogCaptureFixture
) -> None:
    """Reliability case 21: the right AE title from the wrong address."""
    caplog.set_level(logging.WARNING, logger="dicommove")
    srv = start_scp(
        allowed_calling_aes=frozenset({PACS_AE}), allowed_hosts=frozenset({"127.0.0.1"})
    )
    path, _, _ = instance_file(tmp_path / "src")
    with scu(srv.port, bind="127.0.0.2") as assoc:
        assert not assoc.is_established
    with pytest.raises(AssociationRefused) as info:
        RawAssociation(srv.port, called=AE_TITLE, calling=PACS_AE, bind="127.0.0.2").close()
    assert info.value.rejected == (1, 1, 1)  # permanent, service user, no reason given
    wait_until(lambda: warning_mentions(caplog, "127.0.0.2"), 5, "a warning naming the IP")
    assert files_under(srv.root) == []
    assert srv.records == []
    with scu(srv.port, bind="127.0.0.1") as assoc:
        assert assoc.is_established
        assert send(assoc, path) == 0


def test_accept_false_refuses_and_writes_nothing(tmp_path: Path, start_scp: Start) -> None:
    """The store-side half of 'unrequested: refuse': accept() decides before the rename."""
    seen: list[Received] = []
    path_no, ds_no, _ = instance_file(tmp_path / "src")
    path_yes, ds_yes, _ = instance_file(tmp_path / "src")

    def accept(rec: Received) -> bool:
        seen.append(rec)
        return rec.sop_instance_uid != str(ds_no.SOPInstanceUID)

    srv = start_scp(accept=accept)
    with scu(srv.port) as assoc:
        assert is_failure(send(assoc, path_no))
        assert send(assoc, path_yes) == 0
    records = srv.wait_records(2)
    assert [r.status for r in records] == ["refused", "received"]
    assert is_failure(records[0].dimse_status)
    assert [r.study_instance_uid for r in seen] == [ds_no.StudyInstanceUID, ds_yes.StudyInstanceUID]
    assert final_files(srv.root) == [srv.expected_path(ds_yes)]
    assert part_files(srv.store.temp_dir) == []


# -- duplicates and conflicts ------------------------------------------------------------------


def test_duplicate_counted_once_and_conflict_quarantined(tmp_path: Path, start_scp: Start) -> None:
    """Reliability case 22."""
    srv = start_scp()
    first, ds, data = instance_file(tmp_path / "a", comment="first")
    other_ds = make_dataset(
        sop=ds.SOPInstanceUID,
        study=ds.StudyInstanceUID,
        series=ds.SeriesInstanceUID,
        comment="second, different",
    )
    other_data = encode(other_ds)
    other = write_part10(
        tmp_path / "b" / "x.dcm", other_data, sop_class=CTImageStorage, sop=ds.SOPInstanceUID
    )
    with scu(srv.port) as assoc:
        assert send(assoc, first) == 0
        assert send(assoc, first) == 0
        assert send(assoc, other) is not None
    records = srv.wait_records(3)
    assert [r.status for r in records] == ["received", "duplicate", "conflict"]
    final = srv.expected_path(ds)
    assert final_files(srv.root) == [final]
    assert dataset_bytes(final) == data  # the first copy is kept
    quarantined = files_under(srv.root / CONFLICT_DIR)
    assert quarantined, "the conflicting copy is not under .dicommove-conflicts"
    assert any(p.read_bytes().endswith(other_data) for p in quarantined)
    if records[2].path:
        assert Path(records[2].path).is_relative_to(srv.root / CONFLICT_DIR)


# -- hostile or broken data ------------------------------------------------------------------


UNSAFE_UIDS = [
    pytest.param("..", id="dotdot"),
    pytest.param(".", id="dot"),
    pytest.param("../x", id="dotdot-x"),
    pytest.param("<absolute>", id="absolute"),
    pytest.param("a\\b", id="backslash"),
    pytest.param("C:x", id="drive"),
    pytest.param("1.2\x003.4", id="nul"),
    pytest.param("1." + "2" * 70, id="too-long"),
    pytest.param("1..2", id="empty-component"),
    pytest.param("1.2/3", id="slash"),
    pytest.param("", id="empty"),
]


@pytest.mark.parametrize("bad", UNSAFE_UIDS)
@pytest.mark.parametrize("tag", [SOP_INSTANCE_UID, STUDY_INSTANCE_UID, SERIES_INSTANCE_UID])
def test_unsafe_uid_refused_and_nothing_written(
    tmp_path: Path, start_scp: Start, tag: int, bad: str
) -> None:
    """Reliability case 27: path traversal through any UID that names a file or folder."""
    if bad == "<absolute>":
        bad = str(tmp_path / "escape" / "x")
    srv = start_scp()
    ds = make_dataset()
    data = encode(ds, raw={tag: ("UI", bad.encode("latin-1"))})
    sop = bad if tag == SOP_INSTANCE_UID else ds.SOPInstanceUID
    with RawAssociation(srv.port, called=AE_TITLE) as raw:
        status = raw.store(data, sop_instance=sop.encode("latin-1"))
    assert is_failure(status), f"C-STORE answered {status!r}, not a failure status"
    (rec,) = srv.wait_records(1)
    assert rec.status == "refused"
    assert files_under(tmp_path) == []  # neither inside the root nor anywhere beside it


@pytest.mark.parametrize("bad", ["..", "../x", "<absolute>", "1.2/3"])
def test_unsafe_sop_class_in_a_template_layout(tmp_path: Path, start_scp: Start, bad: str) -> None:
    """A template that names a folder after the SOP class: its UID must be safe too.

    Proposed as an abstract syntax, the unsafe UID gets no presentation context. Sent as
    the C-STORE's SOP class on an accepted context (CT), it must be refused, and written
    nowhere: neither under the root (where the layout would put it) nor beside it.
    """
    if bad == "<absolute>":
        bad = str(tmp_path / "escape" / "x")
    srv = start_scp(layout="{SOPClassUID}/{SOPInstanceUID}.dcm", accept_unknown_sop_classes=True)
    ds = make_dataset()
    data = encode(ds, raw={0x00080016: ("UI", bad.encode())})
    with RawAssociation(
        srv.port, called=AE_TITLE, contexts=[(1, bad, (ExplicitVRLittleEndian,))]
    ) as raw:
        assert raw.accepted == {}  # no context for it, so nothing can be sent on one
    with RawAssociation(srv.port, called=AE_TITLE) as raw:  # context 1: CT Image Storage
        assert raw.accepted == {1: ExplicitVRLittleEndian}
        status = raw.store(data, sop_class=bad, sop_instance=ds.SOPInstanceUID)
    assert is_failure(status), f"C-STORE answered {status!r}, not a failure status"
    (rec,) = srv.wait_records(1)
    assert (rec.status, rec.sop_instance_uid) == ("refused", ds.SOPInstanceUID)
    assert files_under(tmp_path) == []


def test_affected_uids_must_match_the_dataset(start_scp: Start) -> None:
    """Reliability case 28."""
    srv = start_scp()
    ds = make_dataset()
    data = encode(ds)
    with RawAssociation(srv.port, called=AE_TITLE) as raw:
        assert is_failure(raw.store(data, sop_instance=new_uid(), message_id=1))
        mr = make_dataset(sop_class=MRImageStorage)
        assert is_failure(raw.store(encode(mr), sop_instance=mr.SOPInstanceUID, message_id=2))
    records = srv.wait_records(2)
    assert [r.status for r in records] == ["refused", "refused"]
    assert files_under(srv.root) == []


PATIENT_NAMES = [
    pytest.param(
        b"\\ISO 2022 IR 87",
        b"Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B=\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B",
        id="iso2022-japanese",
    ),
    pytest.param(b"GB18030", "王^小东".encode("gb18030"), id="gb18030"),
    pytest.param(b"ISO_IR 192", b"Bad\xff\xfe\xc3(^Utf8", id="invalid-utf8"),
    pytest.param(b"ISO_IR 192", b"Nul\x00In^Name", id="nul"),
    pytest.param(b"ISO_IR 192", "😀^Ünïcode/../..".encode(), id="emoji"),
    pytest.param(b"ISO_IR 100", b"..\\..^/etc/passwd", id="traversal-text"),
]


@pytest.mark.parametrize(("charset", "name"), PATIENT_NAMES)
def test_patient_name_in_any_charset_received_and_never_in_file_names(
    start_scp: Start, charset: bytes, name: bytes
) -> None:
    """Reliability case 29: text is carried byte for byte and never names a file."""
    srv = start_scp()
    ds = make_dataset(patient_id="../../etc/passwd")
    data = encode(ds, raw={0x00080005: ("CS", charset), 0x00100010: ("PN", name)})
    with RawAssociation(srv.port, called=AE_TITLE) as raw:
        assert raw.store(data, sop_instance=ds.SOPInstanceUID) == 0
    (rec,) = srv.wait_records(1)
    assert rec.status == "received", rec.reason
    assert rec.patient_id == "../../etc/passwd"
    final = srv.expected_path(ds)
    assert Path(rec.path) == final
    assert dataset_bytes(final) == data
    for p in files_under(srv.root):
        parts = p.relative_to(srv.root).parts
        assert all(UID_NAME.match(part.removesuffix(".dcm")) for part in parts), parts


# -- interrupted transfers -------------------------------------------------------------------


@pytest.mark.parametrize("how", ["eof", "abort", "reset"])
def test_association_cut_mid_instance_leaves_nothing(start_scp: Start, how: str) -> None:
    """Reliability case 12: no file under its final name, no temp file, nothing received."""
    srv = start_scp()
    ds = make_dataset(pixel_bytes=4 * MiB)
    data = encode(ds)
    raw = RawAssociation(srv.port, called=AE_TITLE)
    try:
        raw.send_store_request(data, sop_instance=ds.SOPInstanceUID, send_bytes=MiB)
        wait_until(lambda: part_files(srv.store.temp_dir), 10, "a .part file being written")
        if how == "eof":
            raw.sock.shutdown(socket.SHUT_WR)
            assert raw.wait_closed(), "the SCP did not close the connection after EOF"
        elif how == "abort":
            raw.abort()
            assert raw.wait_closed(), "the SCP did not close the connection after A-ABORT"
        else:
            raw.reset()
    finally:
        raw.close()
    wait_until(lambda: not part_files(srv.store.temp_dir), 10, "the temp file removed")
    # the SCP is still serving, and the cut instance never got a final name
    fine = make_dataset()
    with RawAssociation(srv.port, called=AE_TITLE) as again:
        assert again.store(encode(fine), sop_instance=fine.SOPInstanceUID) == 0
    wait_until(
        lambda: any(r.sop_instance_uid == fine.SOPInstanceUID for r in srv.records), 10, "record"
    )
    assert not srv.expected_path(ds).exists()
    assert final_files(srv.root) == [srv.expected_path(fine)]
    assert list(srv.store.temp_dir.glob("*")) == []
    # the cut instance is recorded (so its row can say so), as failed
    cut = wait_until(
        lambda: [r for r in srv.records if r.sop_instance_uid == ds.SOPInstanceUID],
        10,
        "the record of the cut instance",
    )
    assert cut and all(r.status == "failed" for r in cut), [(r.status, r.reason) for r in cut]
    assert all("mid-instance" in r.reason for r in cut), [r.reason for r in cut]


def test_killed_receiver_leaves_only_part_files_then_prepare_cleans_and_rerun_is_idempotent(
    tmp_path: Path,
) -> None:
    """Reliability case 18: SIGKILL mid-write."""
    root = tmp_path / "out"
    temp = root / TEMP_DIR
    ds = make_dataset(pixel_bytes=8 * MiB)
    data = encode(ds)
    with Receiver(root) as rx:
        raw = RawAssociation(rx.port)
        try:
            raw.send_store_request(data, sop_instance=ds.SOPInstanceUID, send_bytes=len(data) // 2)
            wait_until(lambda: part_files(temp), 10, "a .part file being written")
            rx.kill()
        finally:
            raw.close()
    leftovers = files_under(root)
    assert leftovers, "nothing left on disk at all"
    assert all(p.parent == temp and p.suffix == ".part" for p in leftovers), leftovers
    InstanceStore(root).prepare()
    assert list(temp.glob("*.part")) == []
    final = root / ds.StudyInstanceUID / ds.SeriesInstanceUID / f"{ds.SOPInstanceUID}.dcm"
    statuses = []
    for _ in range(2):
        with Receiver(root) as rx:
            with RawAssociation(rx.port) as raw:
                assert raw.store(data, sop_instance=ds.SOPInstanceUID) == 0
            result = rx.finish()
        statuses += [r["status"] for r in result["records"]]
        assert files_under(root) == [final]
        assert dataset_bytes(final) == data
    assert statuses[0] == "received"
    assert statuses[1] in ("received", "duplicate")


def test_temp_files_live_under_the_output_root_not_in_tmp(tmp_path: Path) -> None:
    """Reliability case 26: observed mid-transfer, with TMPDIR pointing at an empty folder."""
    root = tmp_path / "out"
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    ds = make_dataset(pixel_bytes=4 * MiB)
    data = encode(ds)
    half = len(data) // 2
    with Receiver(root, env={"TMPDIR": str(system_tmp)}) as rx:
        with RawAssociation(rx.port) as raw:
            raw.send_store_request(data, sop_instance=ds.SOPInstanceUID, send_bytes=half)
            (part,) = wait_until(lambda: part_files(root / TEMP_DIR), 10, "a .part file")
            assert part.parent == root / TEMP_DIR
            assert list(system_tmp.iterdir()) == []
            raw.send_pdv(1, memoryview(data)[half:], command=False, last=True)
            assert raw.read_status() == 0
            raw.release()
        result = rx.finish()
    assert [r["status"] for r in result["records"]] == ["received"]
    assert list(system_tmp.iterdir()) == []
    assert list((root / TEMP_DIR).iterdir()) == []
    assert dataset_bytes(result["records"][0]["path"]) == data


@pytest.mark.parametrize("writer", ["this process", "another process"])
def test_prepare_keeps_the_temp_file_of_a_transfer_in_progress(
    tmp_path: Path, start_scp: Start, writer: str
) -> None:
    """A second move into the same output directory must not delete live temp files."""
    root = tmp_path / "out"
    ds = make_dataset(pixel_bytes=2 * MiB)
    data = encode(ds)
    half = len(data) // 2
    with contextlib.ExitStack() as stack:
        if writer == "this process":
            srv = start_scp(root)
            port, called = srv.port, AE_TITLE
        else:
            rx = stack.enter_context(Receiver(root))
            port, called = rx.port, RECEIVER_AE
        raw = stack.enter_context(RawAssociation(port, called=called))
        raw.send_store_request(data, sop_instance=ds.SOPInstanceUID, send_bytes=half)
        (part,) = wait_until(lambda: part_files(root / TEMP_DIR), 10, "a .part file")
        InstanceStore(root).prepare()  # what the next move into this directory does first
        assert part.exists(), "prepare() deleted the temp file of a transfer in progress"
        raw.send_pdv(1, memoryview(data)[half:], command=False, last=True)
        assert raw.read_status() == 0
    final = root / ds.StudyInstanceUID / ds.SeriesInstanceUID / f"{ds.SOPInstanceUID}.dcm"
    assert dataset_bytes(final) == data


def test_stop_mid_transfer_removes_the_temp_file(start_scp: Start) -> None:
    srv = start_scp()
    ds = make_dataset(pixel_bytes=2 * MiB)
    data = encode(ds)
    with RawAssociation(srv.port, called=AE_TITLE) as raw:
        raw.send_store_request(data, sop_instance=ds.SOPInstanceUID, send_bytes=MiB)
        wait_until(lambda: part_files(srv.store.temp_dir), 10, "a .part file")
        srv.scp.stop()
        assert raw.wait_closed(), "stop() left the association open"
    assert not srv.scp.running
    assert list(srv.store.temp_dir.iterdir()) == []
    assert final_files(srv.root) == []
    assert [r.status for r in srv.wait_records(1)] == ["failed"]


def test_a_raising_accept_callback_fails_the_store_cleanly(start_scp: Start) -> None:
    """Like a raising on_instance: answer a failure, write nothing, leave no temp file."""

    def accept(rec: Received) -> bool:
        raise RuntimeError("a bug in the callback")

    srv = start_scp(accept=accept)
    ds = make_dataset()
    with RawAssociation(srv.port, called=AE_TITLE) as raw:
        status = raw.store(encode(ds), sop_instance=ds.SOPInstanceUID)
    assert is_failure(status), f"C-STORE answered {status!r} (None: no response at all)"
    assert final_files(srv.root) == []
    assert list(srv.store.temp_dir.iterdir()) == []


def test_c_echo(start_scp: Start) -> None:
    srv = start_scp()
    with scu(srv.port, contexts=[("1.2.840.10008.1.1", (ImplicitVRLittleEndian,))]) as assoc:
        assert assoc.is_established
        rsp = assoc.send_c_echo()
        assert int(rsp.Status) == 0


# -- a large instance ------------------------------------------------------------------------


def _write_big_instance(path: Path, frames: int) -> tuple[Dataset, str]:
    """A CT of ``frames`` 10240 x 10240 8-bit frames (100 MiB each), written in chunks.

    Returns the dataset header and the SHA-256 of the encoded dataset bytes.
    """
    ds = make_dataset()
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = 10240
    ds.NumberOfFrames = frames
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    size = 10240 * 10240 * frames
    head = encode(ds) + struct.pack("<HH", 0x7FE0, 0x0010) + b"OB\x00\x00" + struct.pack("<I", size)
    digest = hashlib.sha256(head)
    block = bytearray(os.urandom(MiB))
    with path.open("wb") as f:
        f.write(part10_header(sop_class=CTImageStorage, sop=ds.SOPInstanceUID))
        f.write(head)
        for i in range(size // MiB):
            block[:8] = struct.pack("<Q", i)
            f.write(block)
            digest.update(block)
    return ds, digest.hexdigest()


def _peak_rss(pid: int) -> int:
    """The peak RSS (VmHWM) of a running process, in bytes.

    Not ``ru_maxrss``: Linux carries it over fork and exec, so a child of the (large) test
    process reports the parent's RSS as its own peak until it outgrows it.
    """
    status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    (line,) = [line for line in status.splitlines() if line.startswith("VmHWM:")]
    return int(line.split()[1]) * 1024  # kB


def test_300_mb_instance_streams_with_bounded_memory(tmp_path: Path) -> None:
    """DCMTK storescu sends 300 MiB; the receiver's peak RSS grows by less than 32 MiB.

    Case 35. Measured (VmHWM): about 0.2 MiB of growth, for 100 MiB as for 300 MiB.
    """
    ensure_peers_or_skip("storescu")
    src = tmp_path / "big.dcm"
    ds, digest = _write_big_instance(src, frames=3)
    root = tmp_path / "out"
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    with Receiver(root, env={"TMPDIR": str(system_tmp)}) as rx:
        idle = _peak_rss(rx.pid)
        done = subprocess.run(
            [
                "/usr/bin/storescu",
                "-aet",
                "BIGSENDER",
                "-aec",
                RECEIVER_AE,
                "-to",
                "60",
                "127.0.0.1",
                str(rx.port),
                str(src),
            ],
            env={**os.environ, "TCP_NODELAY": "1"},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        peak = _peak_rss(rx.pid)  # answered: received, renamed, the peak is behind us
        result = rx.finish()
    (rec,) = result["records"]
    assert rec["status"] == "received", rec["reason"]
    final = root / ds.StudyInstanceUID / ds.SeriesInstanceUID / f"{ds.SOPInstanceUID}.dcm"
    assert Path(rec["path"]) == final
    assert file_dataset_sha256(final) == digest
    assert list(system_tmp.iterdir()) == []
    growth = peak - idle
    assert growth < 32 * MiB, (
        f"peak RSS grew by {growth / MiB:.1f} MiB while receiving 300 MiB "
        f"(idle {idle / MiB:.0f} MiB, peak {peak / MiB:.0f} MiB)"
    )


# -- disks and permissions -------------------------------------------------------------------


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB filesystem (tmpfs, else an ext2 loop device); needs root."""
    if os.geteuid() != 0:
        pytest.skip("mounting a 2 MiB filesystem needs root")
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    tmpfs = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0755", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if tmpfs.returncode != 0:
        image = tmp_path / "small.img"
        with image.open("wb") as f:
            f.truncate(2 * MiB)
        mkfs = shutil.which("mkfs.ext2")
        loop = (
            subprocess.run(
                f"{mkfs} -q -F {image} && mount -o loop {image} {mount_point}",
                shell=True,
                capture_output=True,
                text=True,
                check=False,
            )
            if mkfs
            else None
        )
        if loop is None or loop.returncode != 0:
            pytest.fail(
                f"cannot mount a small filesystem as root: tmpfs: {tmpfs.stderr.strip()}; "
                f"loop: {loop.stderr.strip() if loop else 'no mkfs.ext2'}"
            )
    try:
        yield mount_point
    finally:
        if subprocess.run(["umount", str(mount_point)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_disk_full_fails_the_store_and_leaves_no_partial_file(
    tmp_path: Path, small_fs: Path, start_scp: Start
) -> None:
    """Reliability case 24, at the StoreSCP: 0xA7xx, nothing partial, and it recovers."""
    srv = start_scp(small_fs / "out")
    study, series = new_uid(), new_uid()
    fits, ds_fits, data_fits = instance_file(
        tmp_path / "src", study=study, series=series, pixel_bytes=1280 * 1024
    )
    too_big, ds_big, _ = instance_file(
        tmp_path / "src", study=study, series=series, pixel_bytes=1280 * 1024
    )
    small, ds_small, _ = instance_file(tmp_path / "src", study=study, series=series)
    with scu(srv.port) as assoc:
        assert send(assoc, fits) == 0
        status = send(assoc, too_big)
        assert status is not None and status & 0xFF00 == 0xA700, f"status {status!r}"
        assert part_files(srv.store.temp_dir) == []
        assert send(assoc, small) == 0
    records = srv.wait_records(3)
    assert [r.status for r in records] == ["received", "failed", "received"]
    assert records[1].dimse_status & 0xFF00 == 0xA700
    assert records[1].reason
    assert not srv.expected_path(ds_big).exists()
    assert final_files(srv.root) == sorted(
        [srv.expected_path(ds_fits), srv.expected_path(ds_small)]
    )
    assert dataset_bytes(srv.expected_path(ds_fits)) == data_fits
    assert list(srv.store.temp_dir.iterdir()) == []


def test_unwritable_output_as_a_non_root_user(tmp_path: Path) -> None:
    """Reliability case 25: a root-owned 0755 directory, as user nobody."""
    base = Path(tempfile.mkdtemp(prefix="dicommove-ro-"))
    try:
        base.chmod(0o755)
        targets = [base, base / "new" / "out"]
        if os.geteuid() != 0:
            base.chmod(0o555)
            for target in targets:
                with pytest.raises(LocalSetupError, match=re.escape(str(base))) as info:
                    InstanceStore(target).prepare()
                assert type(info.value) is LocalSetupError
            return
        # /root is not readable by nobody, so the interpreter starts as root, imports
        # everything, and only then drops to nobody (like setpriv --reuid=65534).
        code = textwrap.dedent(
            """
            import json, os, sys, errno, shutil, tempfile, uuid, logging, traceback
            from dicommove import LocalSetupError
            from dicommove.scp import InstanceStore
            stores = [InstanceStore(p) for p in sys.argv[1:]]
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            results = []
            for store in stores:
                try:
                    store.prepare()
                    results.append("prepared without error")
                except LocalSetupError as exc:
                    results.append("LocalSetupError: " + str(exc))
                except BaseException as exc:
                    results.append(type(exc).__name__ + ": " + str(exc))
            print(json.dumps([os.geteuid(), results]))
            """
        )
        done = subprocess.run(
            [sys.executable, "-c", code, *map(str, targets)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        euid, results = json.loads(done.stdout.strip().splitlines()[-1])
        assert euid == 65534
        for target, message in zip(targets, results, strict=True):
            assert message.startswith("LocalSetupError: "), message
            assert str(target) in message or str(base) in message, message
        assert list(base.iterdir()) == []
    finally:
        shutil.rmtree(base, ignore_errors=True)


# -- through dicommove.move() ------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_cohort(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    return make_cohort(
        tmp_path_factory.mktemp("scp-cohort"),
        patients=1,
        studies=1,
        series=1,
        instances=6,
        seed=7,
    )


@pytest.fixture
def demo(small_cohort: pd.DataFrame) -> Iterator[tuple[DemoPACS, int]]:
    root = Path(str(small_cohort["path"].iloc[0])).parents[3]
    port = free_port()
    with DemoPACS(root, destinations={AE_TITLE: ("127.0.0.1", port)}) as pacs:
        yield pacs, port


def _move(pacs: DemoPACS, what: Any, out: Path, port: int, **kw: Any) -> pd.DataFrame:
    kw.setdefault("progress", False)
    return dicommove.move(pacs.node, what, out=out, port=port, ae_title=AE_TITLE, **kw)


@pytest.mark.parametrize("unrequested", ["keep", "refuse"])
def test_move_keeps_or_refuses_an_unrequested_instance(
    tmp_path: Path, demo: tuple[DemoPACS, int], small_cohort: pd.DataFrame, unrequested: str
) -> None:
    """Reliability case 19: the PACS's AE sends one more instance during the move."""
    pacs, port = demo
    pacs.faults.delay_per_store = 0.2  # the move lasts about 1.2 s
    extra, extra_ds, extra_data = instance_file(tmp_path / "src")
    study = str(small_cohort["StudyInstanceUID"].iloc[0])

    def intrude() -> int | None:
        wait_until(lambda: pacs.sent_instances, 10, "the first C-STORE sub-operation")
        with scu(port, calling=pacs.ae_title) as assoc:
            assert assoc.is_established
            return send(assoc, extra)

    with ThreadPoolExecutor(1) as pool:
        intruder = pool.submit(intrude)
        df = _move(
            pacs,
            study,
            tmp_path / "out",
            port,
            store=StoreOptions(unrequested=unrequested),  # type: ignore[arg-type]
            errors="ignore",
        )
        status = intruder.result(timeout=30)
    mine = df[df["SOPInstanceUID"] == extra_ds.SOPInstanceUID]
    assert len(mine) == 1, df[["SOPInstanceUID", "status"]]
    row = mine.iloc[0]
    requested = df[df["StudyInstanceUID"] == study]
    assert sorted(requested["SOPInstanceUID"]) == sorted(small_cohort["SOPInstanceUID"])
    assert (requested["status"] == "received").all()
    kept = tmp_path / "out" / extra_ds.StudyInstanceUID / extra_ds.SeriesInstanceUID
    if unrequested == "keep":
        assert status == 0
        assert row["status"] == "unrequested"
        assert dataset_bytes(str(row["path"])) == extra_data
        assert Path(str(row["path"])).parent == kept
    else:
        assert is_failure(status), f"status {status!r}"
        assert row["status"] == "refused"
        assert not kept.exists()
    assert_connection_refused(port)  # the listener is down once move() returned


def test_store_scp_listens_only_while_a_move_runs(
    tmp_path: Path, demo: tuple[DemoPACS, int], small_cohort: pd.DataFrame
) -> None:
    pacs, port = demo
    with Session(pacs.node, out=tmp_path, port=port, ae_title=AE_TITLE) as session:
        assert_connection_refused(port)
        df = session.move(str(small_cohort["StudyInstanceUID"].iloc[0]), progress=False)
        assert (df["status"] == "received").all()
        assert_connection_refused(port)


def test_move_from_a_disallowed_host_writes_nothing(
    tmp_path: Path,
    demo: tuple[DemoPACS, int],
    small_cohort: pd.DataFrame,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="dicommove")
    pacs, port = demo
    study = str(small_cohort["StudyInstanceUID"].iloc[0])
    # our Store SCP rejects the PACS's store association (the PACS reports 0xA801): the
    # error says it was us, and which option lets the PACS in
    with pytest.raises(StoreAssociationRefused, match=r"--allow-host 127\.0\.0\.1") as info:
        _move(pacs, study, tmp_path, port, store=StoreOptions(allowed_hosts=("127.0.0.2",)))
    assert "address 127.0.0.1 is not allowed" in str(info.value)
    assert info.value.status == 0xA801
    assert info.value.manifest is not None
    assert info.value.manifest["status"].tolist() == ["failed"]
    assert list(tmp_path.rglob("*.dcm")) == []
    assert warning_mentions(caplog, "127.0.0.1", pacs.ae_title)


def test_move_with_a_template_layout(
    tmp_path: Path, demo: tuple[DemoPACS, int], small_cohort: pd.DataFrame
) -> None:
    pacs, port = demo
    study = str(small_cohort["StudyInstanceUID"].iloc[0])
    df = _move(pacs, study, tmp_path, port, layout="{SeriesInstanceUID}/{SOPInstanceUID}.dcm")
    assert (df["status"] == "received").all()
    for row in df.itertuples():
        assert Path(str(row.path)) == (
            tmp_path.absolute() / str(row.SeriesInstanceUID) / f"{row.SOPInstanceUID}.dcm"
        )


@dataclass
class DiskFullMove:
    error: DicomMoveError
    manifest: pd.DataFrame
    cohort: pd.DataFrame
    studies: list[str]
    sent: list[str]
    moves: int
    out: Path


def _disk_full_move(tmp_path_factory: pytest.TempPathFactory, small_fs: Path) -> DiskFullMove:
    """Move two studies of 6 x 512 KiB into 2 MiB: the first one fills the disk."""
    from dicommove.errors import DiskFullError

    big = make_cohort(
        tmp_path_factory.mktemp("big-cohort"),
        patients=1,
        studies=2,
        series=1,
        instances=6,
        rows=512,
        cols=512,
        seed=8,
    )
    studies = sorted(big["StudyInstanceUID"].unique())
    port = free_port()
    out = small_fs / "out"
    with DemoPACS(
        Path(str(big["path"].iloc[0])).parents[3], destinations={AE_TITLE: ("127.0.0.1", port)}
    ) as pacs:
        pacs.faults.delay_per_store = 0.05  # room for the C-CANCEL to arrive
        with pytest.raises(DiskFullError) as info:
            _move(pacs, studies, out, port, workers=1)  # one at a time: the 2nd never starts
        sent = pacs.sent_instances
        moves = len(pacs.move_requests)
    assert info.value.manifest is not None
    return DiskFullMove(info.value, info.value.manifest, big, studies, sent, moves, out)


def test_move_disk_full_raises_with_the_manifest_and_cancels(
    tmp_path_factory: pytest.TempPathFactory, small_fs: Path
) -> None:
    """Reliability case 24 through move(): DiskFullError, kept files whole, move cancelled.

    The first study fills the disk: its C-MOVE is cancelled and the second is never sent.
    """
    run = _disk_full_move(tmp_path_factory, small_fs)
    df = run.manifest
    assert isinstance(run.error, LocalSetupError)
    source = run.cohort.set_index("SOPInstanceUID")["path"]
    first = run.cohort[run.cohort["StudyInstanceUID"] == run.studies[0]]
    shown = df[["request", "SOPInstanceUID", "status", "reason"]]
    received = df[df["status"] == "received"]
    assert 1 <= len(received) < len(first), shown
    assert set(received["StudyInstanceUID"]) == {run.studies[0]}
    full = df[(df["status"] == "failed") & df["SOPInstanceUID"].notna()]
    assert len(full) >= 1, shown
    for row in received.itertuples():
        assert dataset_bytes(str(row.path)) == dataset_bytes(str(source[str(row.SOPInstanceUID)]))
    assert {str(p) for p in run.out.rglob("*.dcm")} == {str(p) for p in received["path"]}
    assert part_files(run.out / TEMP_DIR) == []
    assert len(run.sent) < len(first), "the PACS sent the whole study: the move was not cancelled"
    assert run.moves == 1, "a C-MOVE was sent after the disk filled up"
    second = df[df["request"] == 1]
    assert len(second) >= 1 and not second["status"].isin(["received"]).any(), shown


def test_move_disk_full_lists_each_instance_once(
    tmp_path_factory: pytest.TempPathFactory, small_fs: Path
) -> None:
    """The instance that hit the full disk is one row, not also a 'PACS reported' row."""
    df = _disk_full_move(tmp_path_factory, small_fs).manifest
    uids = df["SOPInstanceUID"].dropna()
    shown = df[["SOPInstanceUID", "status", "reason"]].to_string()
    assert all(UID_NAME.match(str(u)) for u in uids), shown
    assert uids.is_unique, shown


def test_move_lists_each_failed_uid_the_pacs_reports(
    tmp_path: Path, demo: tuple[DemoPACS, int], small_cohort: pd.DataFrame
) -> None:
    """FailedSOPInstanceUIDList with several UIDs: one row per UID (seen after a full disk)."""
    pacs, port = demo
    failing = sorted(small_cohort["SOPInstanceUID"])[:2]
    pacs.faults.fail_instances = set(failing)
    study = str(small_cohort["StudyInstanceUID"].iloc[0])
    df = _move(pacs, study, tmp_path, port, errors="ignore")
    failed = df[df["status"] == "failed"]
    shown = df[["SOPInstanceUID", "status", "reason"]].to_string()
    assert sorted(failed["SOPInstanceUID"].dropna()) == failing, shown
    assert (df["status"] == "received").sum() == len(small_cohort) - 2, shown
