"""The store logic (no network): validation, naming, atomic writes, duplicates."""

import warnings
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from dicommove import LocalSetupError
from dicommove.scp import IMPLEMENTATION_CLASS_UID, InstanceStore, is_valid_uid

STUDY, SERIES, SOP = "1.2.826.0.1.1", "1.2.826.0.1.1.2", "1.2.826.0.1.1.2.3"


def encode_quietly(
    sop: str = SOP, study: str = STUDY, series: str = SERIES, extra: bytes = b""
) -> bytes:
    warnings.simplefilter("ignore", UserWarning)  # pydicom warns about the invalid UIDs we want
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop
    ds.PatientID = "../../etc/passwd"
    ds.PatientName = "Evil^Name/../x"
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.ImageComments = "x" + extra.decode()
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, False
    write_dataset(buf, ds)
    return buf.getvalue()


def encode(sop: str = SOP, study: str = STUDY, series: str = SERIES, extra: bytes = b"") -> bytes:
    with warnings.catch_warnings():
        return encode_quietly(sop, study, series, extra)


def put(store: InstanceStore, data: bytes, sop: str = SOP, cls: str = CTImageStorage) -> object:
    return store.store(
        data, sop_class_uid=cls, sop_instance_uid=sop, transfer_syntax_uid=ExplicitVRLittleEndian
    )


@pytest.fixture
def store(tmp_path: Path) -> InstanceStore:
    s = InstanceStore(tmp_path / "out")
    s.prepare()
    s.begin()
    return s


def test_writes_hierarchical_file_with_clean_meta(store: InstanceStore) -> None:
    data = encode()
    rec = store.store(
        data,
        sop_class_uid=CTImageStorage,
        sop_instance_uid=SOP,
        transfer_syntax_uid=ExplicitVRLittleEndian,
    )
    assert rec.status == "received", rec.reason
    path = Path(rec.path)
    assert path == store.root / STUDY / SERIES / f"{SOP}.dcm"
    raw = path.read_bytes()
    assert raw[:128] == b"\x00" * 128 and raw[128:132] == b"DICM"
    assert raw.endswith(data)
    assert rec.size == len(raw)
    ds = dcmread(path)
    assert ds.file_meta.MediaStorageSOPInstanceUID == SOP
    assert ds.file_meta.MediaStorageSOPClassUID == CTImageStorage
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.file_meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    assert rec.study_instance_uid == STUDY and rec.series_instance_uid == SERIES
    assert not path.stat().st_mode & 0o111
    assert list(store.temp_dir.iterdir()) == []


def test_flat_layout(tmp_path: Path) -> None:
    s = InstanceStore(tmp_path, layout="flat")
    s.prepare()
    rec = put(s, encode())
    assert Path(rec.path) == tmp_path.absolute() / f"{SOP}.dcm"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "bad", ["..", ".", "../x", "/etc/x", "a\\b", "C:x", "1.2\x00", "1." + "2" * 70, "", "1..2"]
)
def test_unsafe_sop_uid_refused_nothing_written(store: InstanceStore, bad: str) -> None:
    rec = put(store, encode(sop=bad), sop=bad)
    assert rec.status == "refused"  # type: ignore[attr-defined]
    assert rec.dimse_status != 0  # type: ignore[attr-defined]
    assert [p for p in store.root.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize("bad", ["..", "../../x", "/tmp/x"])
def test_unsafe_study_uid_in_dataset_refused(store: InstanceStore, bad: str) -> None:
    rec = put(store, encode(study=bad))
    assert rec.status == "refused"  # type: ignore[attr-defined]
    assert [p for p in store.root.rglob("*") if p.is_file()] == []


def test_affected_uid_mismatch_refused(store: InstanceStore) -> None:
    rec = put(store, encode(sop="1.2.3.4"), sop=SOP)
    assert rec.status == "refused"  # type: ignore[attr-defined]
    assert "differs" in rec.reason  # type: ignore[attr-defined]
    rec = put(store, encode(), cls="1.2.840.10008.5.1.4.1.1.4")
    assert rec.status == "refused"  # type: ignore[attr-defined]


def test_garbage_refused(store: InstanceStore) -> None:
    rec = put(store, b"\xff" * 17)
    assert rec.status == "refused"  # type: ignore[attr-defined]


def test_duplicate_and_conflict(store: InstanceStore) -> None:
    first = put(store, encode())
    again = put(store, encode())
    other = put(store, encode(extra=b"different"))
    assert first.status == "received"  # type: ignore[attr-defined]
    assert again.status == "duplicate"  # type: ignore[attr-defined]
    assert other.status == "conflict"  # type: ignore[attr-defined]
    assert Path(first.path).read_bytes().endswith(encode())  # type: ignore[attr-defined]


def test_stale_temp_files_cleaned(tmp_path: Path) -> None:
    tmp = tmp_path / ".dicommove-tmp"
    tmp.mkdir()
    (tmp / "dead.part").write_bytes(b"partial")
    InstanceStore(tmp_path).prepare()
    assert not (tmp / "dead.part").exists()


def test_unwritable_output_is_a_typed_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(LocalSetupError, match="cannot write to the output directory"):
        InstanceStore(blocker / "out").prepare()


@pytest.mark.parametrize(
    ("uid", "ok"),
    [("1.2.3", True), ("0", True), ("1.", False), (".1", False), ("1.a", False), ("1" * 65, False)],
)
def test_is_valid_uid(uid: str, ok: bool) -> None:
    assert is_valid_uid(uid) is ok


def test_an_earlier_runs_file_cut_short_is_replaced_not_a_conflict(tmp_path: Path) -> None:
    """A crash before the group commit can leave a final name on an empty or short file."""
    first = InstanceStore(tmp_path / "out")
    first.prepare()
    first.begin()
    data = encode()
    rec = put(first, data)
    whole = Path(rec.path).read_bytes()  # type: ignore[attr-defined]
    for cut in (0, len(whole) // 2):
        Path(rec.path).write_bytes(whole[:cut])  # type: ignore[attr-defined]
        again = InstanceStore(tmp_path / "out")  # a later run
        again.prepare()
        again.begin()
        rec2 = put(again, data)
        assert rec2.status == "received"  # type: ignore[attr-defined]
        assert Path(rec2.path).read_bytes() == whole  # type: ignore[attr-defined]
        assert not (tmp_path / "out" / ".dicommove-conflicts").exists()


def test_an_earlier_runs_different_file_is_still_a_conflict(tmp_path: Path) -> None:
    first = InstanceStore(tmp_path / "out")
    first.prepare()
    first.begin()
    rec = put(first, encode(extra=b"first"))
    later = InstanceStore(tmp_path / "out")
    later.prepare()
    later.begin()
    rec2 = put(later, encode(extra=b"second, longer"))
    assert rec2.status == "conflict"  # type: ignore[attr-defined]
    assert Path(rec.path).read_bytes().endswith(encode(extra=b"first"))  # type: ignore[attr-defined]
