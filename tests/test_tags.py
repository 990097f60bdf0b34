"""move(..., tags=[...]): header elements as manifest columns, read on receipt."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pydicom import dcmread
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian

import dicommove
from dicommove import InputError
from dicommove.cli import EXIT_OK, MANIFEST_NAME, main
from dicommove.manifest import read_csv, write_csv
from dicommove.scp import InstanceStore
from dicommove.store.tags import header_tags
from dicommove.testing import DemoPACS

DEMO_COHORT: dict[str, int] = {}

TAGS = ["Modality", "SeriesDescription", "InstanceNumber", "Rows", "PixelSpacing", "StudyDate"]


def move(demo_pacs: DemoPACS, store_port: int, out: Path, **kw: Any) -> pd.DataFrame:
    kw.setdefault("progress", False)
    studies = demo_pacs_studies(demo_pacs)
    df: pd.DataFrame = dicommove.move(demo_pacs.node, studies, out=out, port=store_port, **kw)
    return df


def demo_pacs_studies(demo_pacs: DemoPACS) -> list[str]:
    found = dicommove.find(demo_pacs.node, {"PatientID": "*"}, return_keys=[])
    return sorted(found["StudyInstanceUID"])[:2]


def test_header_columns_hold_what_the_files_hold(
    demo_pacs: DemoPACS, store_port: int, tmp_path: Path
) -> None:
    df = move(demo_pacs, store_port, tmp_path, tags=TAGS)
    assert list(df.columns[-len(TAGS) :]) == TAGS
    assert df["InstanceNumber"].dtype == "Int64" and df["Rows"].dtype == "Int64"
    assert df["Modality"].dtype == "string" and df["StudyDate"].dtype == "string"
    assert df["PixelSpacing"].dtype == "string"  # two values: kept as DICOM text
    assert len(df) == 12
    for row in df.itertuples():
        ds = dcmread(str(row.path), stop_before_pixels=True)
        assert row.Modality == ds.Modality
        assert row.SeriesDescription == ds.SeriesDescription
        assert row.InstanceNumber == ds.InstanceNumber
        assert row.Rows == ds.Rows
        assert row.PixelSpacing == "\\".join(str(v) for v in ds.PixelSpacing)
        assert row.StudyDate == ds.StudyDate


def test_without_tags_the_manifest_has_its_usual_columns(
    demo_pacs: DemoPACS, store_port: int, tmp_path: Path
) -> None:
    from dicommove.manifest import COLUMNS

    df = move(demo_pacs, store_port, tmp_path)
    assert list(df.columns) == list(COLUMNS)


def test_an_absent_element_is_an_empty_column(
    demo_pacs: DemoPACS, store_port: int, tmp_path: Path
) -> None:
    df = move(demo_pacs, store_port, tmp_path, tags=["EchoNumbers", "ContrastBolusAgent"])
    assert df["ContrastBolusAgent"].isna().all() and df["EchoNumbers"].isna().all()
    assert df["EchoNumbers"].dtype == "Int64"


def test_csv_from_the_cli_and_from_python_read_back_alike(
    demo_pacs: DemoPACS, store_port: int, tmp_path: Path
) -> None:
    df = move(demo_pacs, store_port, tmp_path / "py", tags=TAGS)
    again = read_csv(write_csv(df, tmp_path / "py.csv"))
    for name in TAGS:
        assert again[name].dtype == df[name].dtype
        assert again[name].equals(df[name]), name
    studies = demo_pacs_studies(demo_pacs)
    argv = ["move", str(demo_pacs.node), "-p", str(store_port), "--no-progress"]
    argv += ["-q", "QueryRetrieveLevel=STUDY", "-q", f"StudyInstanceUID={studies[0]}"]
    argv += ["-o", str(tmp_path / "cli"), "--tag", "Modality", "--tag", "InstanceNumber"]
    assert main(argv) == EXIT_OK
    cli = read_csv(tmp_path / "cli" / MANIFEST_NAME)
    assert list(cli.columns[-2:]) == ["Modality", "InstanceNumber"]
    assert cli["InstanceNumber"].dtype == "Int64"
    assert sorted(cli["InstanceNumber"]) == sorted(
        df.loc[df["StudyInstanceUID"] == studies[0], "InstanceNumber"]
    )


def test_resume_keeps_the_header_columns(
    demo_pacs: DemoPACS, store_port: int, tmp_path: Path
) -> None:
    first = move(demo_pacs, store_port, tmp_path, tags=["Modality", "InstanceNumber"])
    again = move(demo_pacs, store_port, tmp_path, tags=["Modality", "InstanceNumber"], resume=True)
    assert again["reason"].str.contains("earlier run").all()
    assert sorted(again["InstanceNumber"]) == sorted(first["InstanceNumber"])
    assert set(again["Modality"]) == {"CT"}


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_a_header_longer_than_what_is_kept_in_memory_is_read_from_the_file(
    tmp_path: Path, syntax: str
) -> None:
    from pydicom import config
    from pydicom.dataset import Dataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, "1.2.3.4"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.3", "1.2.3.5"
    with config.disable_value_validation():  # LT: 10,240 characters, 65,534 bytes at most
        ds.AdditionalPatientHistory = "x" * 40_000  # (0010,21B0)
        ds.ImageComments = "y" * 40_000  # (0020,4000): together past the first 64 KiB
    ds.Rows, ds.Columns = 2, 3  # (0028,0010), after it
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, syntax == ImplicitVRLittleEndian
    write_dataset(buf, ds)
    store = InstanceStore(tmp_path, tags=header_tags(["Rows", "Columns", "Modality"]))
    store.prepare()
    store.begin()
    rec = store.store(
        buf.getvalue(),
        sop_class_uid=CTImageStorage,
        sop_instance_uid="1.2.3.4",
        transfer_syntax_uid=syntax,
    )
    assert rec.status == "received"
    assert rec.tags == {"Rows": "2", "Columns": "3", "Modality": ""}


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        ("Modality", "a list of keywords"),
        (["NoSuchKeyword"], "unknown attribute"),
        (["ReferencedImageSequence"], "cannot be a manifest column"),
        (["PixelData"], "cannot be a manifest column"),
        (["(0009,0010)"], "no keyword"),
        (["StudyInstanceUID"], "already a manifest column"),
    ],
)
def test_bad_tags_are_refused_before_anything_is_sent(tags: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        dicommove.Session("PACS@127.0.0.1:1", tags=tags)  # type: ignore[arg-type]


def test_the_columns_are_there_when_nothing_arrived(
    demo_pacs: DemoPACS, store_port: int, tmp_path: Path
) -> None:
    df = dicommove.move(
        demo_pacs.node,
        ["1.2.826.0.1.3680043.2.1125.424242.1"],
        out=tmp_path,
        port=store_port,
        progress=False,
        errors="ignore",
        tags=["Modality"],
    )
    assert df["status"].tolist() == ["not_found"] and df["Modality"].isna().all()


def test_a_resume_shows_the_header_columns_asked_for_now(
    demo_pacs: DemoPACS, store_port: int, tmp_path: Path
) -> None:
    move(demo_pacs, store_port, tmp_path, tags=["Modality"])
    plain = move(demo_pacs, store_port, tmp_path, resume=True)
    assert "Modality" not in plain.columns
    other = move(demo_pacs, store_port, tmp_path, resume=True, tags=["InstanceNumber"])
    assert "Modality" not in other.columns and "InstanceNumber" in other.columns


def test_other_character_sets_are_decoded_by_pydicom(tmp_path: Path) -> None:
    from pydicom.dataset import Dataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 144"  # Cyrillic
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, "1.2.3.4"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.3", "1.2.3.5"
    ds.SeriesDescription = "Грудная клетка"
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, False
    write_dataset(buf, ds)
    store = InstanceStore(tmp_path, tags=header_tags(["SeriesDescription"]))
    store.prepare()
    store.begin()
    rec = store.store(
        buf.getvalue(),
        sop_class_uid=CTImageStorage,
        sop_instance_uid="1.2.3.4",
        transfer_syntax_uid=ExplicitVRLittleEndian,
    )
    assert rec.tags == {"SeriesDescription": "Грудная клетка"}
