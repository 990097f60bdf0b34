"""Tests of dicommove.query: selectors, values, sources, validation and requests."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom import datadict
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian

from dicommove.errors import InputError, QueryError, QueryWarning
from dicommove.query import (
    LEVELS,
    UNIQUE_KEYS,
    Query,
    Request,
    Value,
    parse_assignment,
    parse_selector,
    read_query_dataset,
    read_query_file,
    to_requests,
)

STUDY_UID = "1.3.46.670589.5.2.10.2156913941.892665384.993397"
SERIES_UID = "1.3.46.670589.5.2.10.2156913941.892665339.860724"
SOP_UID = "1.2.840.113619.2.55.3.1"
QR_LEVEL = 0x00080052
STUDY_TAG = 0x0020000D
SERIES_TAG = 0x0020000E
SOP_TAG = 0x00080018
PATIENT_ID_TAG = 0x00100020


# --------------------------------------------------------------------------- constants


def test_constants() -> None:
    assert LEVELS == ("PATIENT", "STUDY", "SERIES", "IMAGE")
    assert UNIQUE_KEYS == {
        "PATIENT": "PatientID",
        "STUDY": "StudyInstanceUID",
        "SERIES": "SeriesInstanceUID",
        "IMAGE": "SOPInstanceUID",
    }


# --------------------------------------------------------------------------- selectors


@pytest.mark.parametrize(
    ("text", "tag"),
    [
        ("StudyInstanceUID", STUDY_TAG),
        ("(0020,000D)", STUDY_TAG),
        ("(0020,000d)", STUDY_TAG),
        ("0020,000D", STUDY_TAG),
        ("0020,000d", STUDY_TAG),
        ("0020000D", STUDY_TAG),
        ("0020000d", STUDY_TAG),
        ("  0020000D  ", STUDY_TAG),
        ("( 0020 , 000D )", STUDY_TAG),
        ("QueryRetrieveLevel", QR_LEVEL),
        ("(0008,0052)", QR_LEVEL),
        ("00080052", QR_LEVEL),
        ("PatientID", PATIENT_ID_TAG),
        ("(0010,0020)", PATIENT_ID_TAG),
        ("SOPInstanceUID", SOP_TAG),
        ("SeriesInstanceUID", SERIES_TAG),
        ("AccessionNumber", 0x00080050),
        ("(6000,0010)", 0x60000010),  # repeating group, in the dictionary
    ],
)
def test_parse_selector_forms(text: str, tag: int) -> None:
    assert parse_selector(text) == tag


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty selector"),
        ("   ", "empty selector"),
        ("(0020,000D", "cannot read selector"),
        ("0020:000D", "cannot read selector"),
        ("0020000", "cannot read selector"),
        ("0020000DD", "cannot read selector"),
        ("(gggg,eeee)", "cannot read selector"),
        ("NoSuchKeywordAtAll", "unknown attribute"),
        ("ReferencedSeriesSequence.SeriesInstanceUID", "path into a sequence"),
        ("(0008,1115)[0].(0020,000E)", "path into a sequence"),
        ("(0009,1010)", "private tag"),
        ("00291010", "private tag"),
        ("(0008,0000)", "group length"),
        ("(0000,0100)", "command element"),
        ("(0002,0010)", "file meta element"),
        ("(0008,0002)", "unknown tag (0008,0002)"),
        ("OverlayRows", "repeating-group"),
    ],
)
def test_parse_selector_rejects(text: str, fragment: str) -> None:
    with pytest.raises(QueryError) as info:
        parse_selector(text)
    assert fragment in str(info.value)
    assert isinstance(info.value, InputError)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("text", "suggestion"),
    [
        ("StudyInstanceUd", "StudyInstanceUID"),
        ("studyinstanceuid", "StudyInstanceUID"),
        ("SeriesInstanceUId", "SeriesInstanceUID"),
        ("PatientId", "PatientID"),
        ("QueryRetreiveLevel", "QueryRetrieveLevel"),
        ("AccessionNumbr", "AccessionNumber"),
    ],
)
def test_did_you_mean(text: str, suggestion: str) -> None:
    with pytest.raises(QueryError, match="did you mean") as info:
        parse_selector(text)
    assert suggestion in str(info.value)


@pytest.mark.parametrize(
    ("selector", "vr"),
    [
        ("ReferencedSeriesSequence", "SQ"),
        ("(0008,1115)", "SQ"),
        ("PixelData", "OB or OW"),
        ("EncapsulatedDocument", "OB"),
        ("(7FE0,0010)", "OB or OW"),
        ("RedPaletteColorLookupTableData", "OW"),
        ("(6000,3000)", "OB or OW"),
        ("FloatPixelData", "OF"),
        ("DoubleFloatPixelData", "OD"),
        ("LongPrimitivePointIndexList", "OL"),
        ("ExtendedOffsetTable", "OV"),
        ("(0020,5000)", "AT"),
        ("SelectorATValue", "AT"),
        ("SelectorUNValue", "UN"),
        ("(FFFE,E000)", "NONE"),
    ],
)
def test_refused_vrs(selector: str, vr: str) -> None:
    with pytest.raises(QueryError, match="cannot be used as a query key") as info:
        parse_selector(selector)
    assert f"VR {vr}" in str(info.value)


@pytest.mark.parametrize("selector", ["ReferencedSeriesSequence", "PixelData", "(0020,5000)"])
def test_refused_vrs_everywhere(selector: str) -> None:
    with pytest.raises(QueryError):
        parse_assignment(f"{selector}=1")
    with pytest.raises(QueryError):
        Query().set(selector, "1")
    with pytest.raises(QueryError):
        Query.from_keys({selector: "1"})


@pytest.mark.parametrize("tag", [-1, 0x1_0000_0000])
def test_set_rejects_out_of_range_tag(tag: int) -> None:
    with pytest.raises(QueryError, match="out of range"):
        Query().set(tag, "x")


# --------------------------------------------------------------------------- values


@pytest.mark.parametrize(
    ("text", "vr", "expected"),
    [
        ("QueryRetrieveLevel=STUDY", "CS", "STUDY"),
        ("QueryRetrieveLevel=study", "CS", "STUDY"),
        (f"StudyInstanceUID={STUDY_UID}", "UI", STUDY_UID),
        (f"(0020,000D)={STUDY_UID}", "UI", STUDY_UID),
        (f"0020,000D={STUDY_UID}", "UI", STUDY_UID),
        (f"0020000D={STUDY_UID}", "UI", STUDY_UID),
        ("StudyInstanceUID=1.2\\1.3", "UI", ["1.2", "1.3"]),
        ("StudyInstanceUID= 1.2 \\ 1.3 ", "UI", ["1.2", "1.3"]),
        # integer VRs
        ("Rows=512", "US", 512),
        ("InstanceNumber=5", "IS", 5),
        ("InstanceNumber=-5", "IS", -5),
        ("InstanceNumber=+5", "IS", 5),
        ("InstanceNumber= 5 ", "IS", 5),
        ("InstanceNumber=1\\2\\3", "IS", [1, 2, 3]),
        ("TagAngleSecondAxis=-3", "SS", -3),
        ("ReferencePixelX0=-7", "SL", -7),
        ("SimpleFrameList=1\\4294967295", "UL", [1, 4294967295]),
        ("SelectorSVValue=-9000000000", "SV", -9000000000),
        ("SelectorUVValue=18446744073709551615", "UV", 2**64 - 1),
        ("SmallestImagePixelValue=-1", "US or SS", -1),
        ("SmallestImagePixelValue=65535", "US or SS", 65535),
        # float VRs
        ("WindowCenter=40", "DS", 40.0),
        ("WindowCenter=1.5\\-2e3", "DS", [1.5, -2000.0]),
        ("WindowCenter=.5", "DS", 0.5),
        ("RecommendedDisplayFrameRateInFloat=25.5", "FL", 25.5),
        ("TableSpeed=2.25", "FD", 2.25),
        # strings
        ("PatientName=Doe^John", "PN", "Doe^John"),
        ("StudyDate=20240101-20241231", "DA", "20240101-20241231"),
        ("ModalitiesInStudy=CT\\MR", "CS", ["CT", "MR"]),
        # text VRs keep their backslash
        ("StudyComments=a\\b", "LT", "a\\b"),
    ],
)
def test_parse_assignment_types(text: str, vr: str, expected: Value) -> None:
    tag, value = parse_assignment(text)
    assert tag == parse_selector(text.partition("=")[0])
    assert datadict.dictionary_VR(tag) == vr
    assert value == expected
    assert type(value) is type(expected)
    if isinstance(value, list) and isinstance(expected, list):
        assert [type(v) for v in value] == [type(v) for v in expected]


@pytest.mark.parametrize(
    "text",
    ["PatientName", "PatientName=", "PatientName=  ", "  PatientName  ", "(0010,0010)", "Rows="],
)
def test_empty_value_and_missing_equals(text: str) -> None:
    _tag, value = parse_assignment(text)
    assert value is None


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("PatientName=Yamada^Tarou=山田^太郎", "Yamada^Tarou=山田^太郎"),
        ("PatientID=a=b=c", "a=b=c"),
        ("StudyDescription==", "="),
    ],
)
def test_value_keeps_everything_after_first_equals(text: str, value: str) -> None:
    assert parse_assignment(text)[1] == value


@pytest.mark.parametrize(
    ("text", "vr", "wants"),
    [
        ("Rows=abc", "US", "integer"),
        ("Rows=1.5", "US", "integer"),
        ("Rows=-1", "US", "from 0 to 65535"),
        ("Rows=65536", "US", "from 0 to 65535"),
        ("InstanceNumber=1_000", "IS", "integer"),
        ("InstanceNumber=2147483648", "IS", "integer"),
        ("TagAngleSecondAxis=40000", "SS", "integer"),
        ("InstanceNumber=1\\x", "IS", "integer"),
        ("InstanceNumber=1\\", "IS", "integer"),
        ("WindowCenter=abc", "DS", "decimal number"),
        ("WindowCenter=nan", "DS", "decimal number"),
        ("WindowCenter=inf", "DS", "decimal number"),
        ("WindowCenter=1e999", "DS", "finite"),
        ("TableSpeed=1,5", "FD", "decimal number"),
    ],
)
def test_value_parse_errors_name_selector_and_vr(text: str, vr: str, wants: str) -> None:
    with pytest.raises(QueryError) as info:
        parse_assignment(text)
    message = str(info.value)
    selector = text.partition("=")[0]
    assert selector in message
    assert f"VR {vr} wants" in message
    assert wants in message


# --------------------------------------------------------------------------- query file


def test_read_query_file(tmp_path: Path) -> None:
    path = tmp_path / "query.txt"
    path.write_text(
        "# comments are supported\n"
        "\n"
        "QueryRetrieveLevel=SERIES\n"
        "   # an indented comment\n"
        f"StudyInstanceUID={STUDY_UID}\r\n"
        "   \t\n"
        f"  SeriesInstanceUID = {SERIES_UID}  \n"
        "PatientName\n"
        "(0008,0050)=\n",
        encoding="utf-8",
    )
    assert read_query_file(path) == [
        (QR_LEVEL, "SERIES"),
        (STUDY_TAG, STUDY_UID),
        (SERIES_TAG, SERIES_UID),
        (0x00100010, None),
        (0x00080050, None),
    ]
    assert read_query_file(str(path)) == read_query_file(path)


def test_read_query_file_with_bom(tmp_path: Path) -> None:
    path = tmp_path / "q.txt"
    path.write_bytes(b"\xef\xbb\xbfQueryRetrieveLevel=STUDY\n")
    assert read_query_file(path) == [(QR_LEVEL, "STUDY")]


@pytest.mark.parametrize(
    ("lines", "line_number", "fragment"),
    [
        (["QueryRetrieveLevel=STUDY", "StudyInstanceUd=1.2"], 2, "did you mean"),
        (["# c", "", "QueryRetrieveLevel=STUDY", "Rows=x"], 4, "VR US"),
        (["PixelData=1"], 1, "VR OB or OW"),
        (["", "", "", "ReferencedSeriesSequence="], 4, "VR SQ"),
    ],
)
def test_read_query_file_errors_name_file_and_line(
    tmp_path: Path, lines: list[str], line_number: int, fragment: str
) -> None:
    path = tmp_path / "bad.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(QueryError) as info:
        read_query_file(path)
    assert str(info.value).startswith(f"{path}:{line_number}: ")
    assert fragment in str(info.value)


def test_read_query_file_missing(tmp_path: Path) -> None:
    with pytest.raises(QueryError, match="cannot read query file"):
        read_query_file(tmp_path / "nope.txt")


def test_read_query_file_not_text(tmp_path: Path) -> None:
    path = tmp_path / "binary.txt"
    path.write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(QueryError, match="not UTF-8"):
        read_query_file(path)


# --------------------------------------------------------------------------- DICOM query file


def _write_dataset(path: Path, dataset: Dataset, *, with_meta: bool = False) -> Path:
    if with_meta:
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.2.2.2")
        meta.MediaStorageSOPInstanceUID = UID("1.2.3.4")
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        dataset.file_meta = meta
        dataset.preamble = b"\0" * 128
        dataset.save_as(path, enforce_file_format=True)
    else:
        dataset.save_as(path, implicit_vr=True, little_endian=True)
    return path


@pytest.mark.parametrize("with_meta", [False, True])
def test_read_query_dataset(tmp_path: Path, with_meta: bool) -> None:
    dataset = Dataset()
    dataset.QueryRetrieveLevel = "SERIES"
    dataset.StudyInstanceUID = STUDY_UID
    dataset.SeriesInstanceUID = [SERIES_UID, "1.2.3"]
    dataset.PatientName = "Doe^John"
    dataset.PatientID = ""
    dataset.InstanceNumber = "7"
    dataset.WindowCenter = ["40", "1.5"]
    path = _write_dataset(tmp_path / "query.dcm", dataset, with_meta=with_meta)
    assert dict(read_query_dataset(path)) == {
        QR_LEVEL: "SERIES",
        STUDY_TAG: STUDY_UID,
        SERIES_TAG: [SERIES_UID, "1.2.3"],
        0x00100010: "Doe^John",
        PATIENT_ID_TAG: None,
        0x00200013: 7,
        0x00281050: [40.0, 1.5],
    }


def test_read_query_dataset_refuses_sequences(tmp_path: Path) -> None:
    dataset = Dataset()
    dataset.QueryRetrieveLevel = "STUDY"
    item = Dataset()
    item.SeriesInstanceUID = SERIES_UID
    dataset.ReferencedSeriesSequence = Sequence([item])
    path = _write_dataset(tmp_path / "seq.dcm", dataset)
    with pytest.raises(QueryError, match="VR SQ") as info:
        read_query_dataset(path)
    assert str(path) in str(info.value)


def test_read_query_dataset_refuses_private(tmp_path: Path) -> None:
    dataset = Dataset()
    dataset.QueryRetrieveLevel = "STUDY"
    dataset.add_new(0x00091010, "LO", "secret")
    path = _write_dataset(tmp_path / "private.dcm", dataset)
    with pytest.raises(QueryError, match="private tag"):
        read_query_dataset(path)


def test_read_query_dataset_missing(tmp_path: Path) -> None:
    with pytest.raises(QueryError, match="cannot read DICOM query file"):
        read_query_dataset(tmp_path / "nope.dcm")


def test_read_query_dataset_text_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "query.txt"
    path.write_text(f"QueryRetrieveLevel=STUDY\nStudyInstanceUID={STUDY_UID}\n", encoding="utf-8")
    with pytest.raises(QueryError, match="DICOM"):
        read_query_dataset(path)


def test_read_query_dataset_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.dcm"
    path.write_bytes(b"")
    with pytest.raises(QueryError, match="no data elements"):
        read_query_dataset(path)


# --------------------------------------------------------------------------- sources


def test_from_sources_override_order(tmp_path: Path) -> None:
    dataset = Dataset()
    dataset.QueryRetrieveLevel = "STUDY"
    dataset.StudyInstanceUID = "1.1"
    dataset.SeriesInstanceUID = "2.1"
    dataset.SOPInstanceUID = "3.1"
    dcm = _write_dataset(tmp_path / "query.dcm", dataset)
    text = tmp_path / "query.txt"
    text.write_text(
        "# override the level and the study; add a patient id\n"
        "QueryRetrieveLevel=SERIES\n"
        "StudyInstanceUID=1.2\n"
        "SeriesInstanceUID=2.2\n",
        encoding="utf-8",
    )
    query = Query.from_sources(
        dataset_file=dcm,
        query_file=text,
        selectors=["SeriesInstanceUID=2.3", "(0008,0018)=3.3"],
    )
    assert query.level == "SERIES"
    assert query.keys == {
        "StudyInstanceUID": "1.2",  # file beats dataset
        "SeriesInstanceUID": "2.3",  # -q beats file
        "SOPInstanceUID": "3.3",  # -q beats dataset
    }
    only_dataset = Query.from_sources(dataset_file=dcm)
    assert only_dataset.keys["StudyInstanceUID"] == "1.1"
    only_file = Query.from_sources(query_file=text)
    assert only_file.level == "SERIES"
    assert "SOPInstanceUID" not in only_file.keys


def test_from_sources_later_selector_wins() -> None:
    query = Query.from_sources(selectors=["StudyInstanceUID=1.1", "0020000D=1.2"])
    assert query.get("StudyInstanceUID") == "1.2"


def test_from_sources_does_not_infer_level() -> None:
    query = Query.from_sources(selectors=[f"StudyInstanceUID={STUDY_UID}"])
    assert query.level is None
    with pytest.raises(QueryError, match="add QueryRetrieveLevel=STUDY"):
        query.validate()


def test_from_sources_single_string() -> None:
    query = Query.from_sources(selectors="QueryRetrieveLevel=STUDY")
    assert query.level == "STUDY"


def test_from_sources_model() -> None:
    query = Query.from_sources(
        selectors=["QueryRetrieveLevel=PATIENT", "PatientID=X"], model="patient"
    )
    assert query.information_model == "patient"
    assert query.problems() == []


def test_from_sources_bad_selector_names_it() -> None:
    with pytest.raises(QueryError, match="StudyInstanceUd=1"):
        Query.from_sources(selectors=["StudyInstanceUd=1"])


# The examples of the dicom-movescu README (and of ours, whose SERIES example reuses the
# study UID as the series UID).
README_EXAMPLES = [
    [
        "QueryRetrieveLevel=SERIES",
        f"StudyInstanceUID={STUDY_UID}",
        f"SeriesInstanceUID={STUDY_UID}",
    ],
    ["QueryRetrieveLevel=STUDY", f"StudyInstanceUID={STUDY_UID}"],
    [
        "QueryRetrieveLevel=SERIES",
        f"StudyInstanceUID={STUDY_UID}",
        f"SeriesInstanceUID={SERIES_UID}",
    ],
    ["QueryRetrieveLevel=STUDY", f"StudyInstanceUID={STUDY_UID}"],
]


@pytest.mark.parametrize("selectors", README_EXAMPLES)
def test_readme_examples_validate(selectors: list[str]) -> None:
    query = Query.from_sources(selectors=selectors)
    assert query.problems() == []
    assert query.validate() is query


def test_readme_query_file_validates(tmp_path: Path) -> None:
    path = tmp_path / "query.txt"
    path.write_text(
        "# comments are supported\n"
        "QueryRetrieveLevel=SERIES\n"
        f"StudyInstanceUID={STUDY_UID}\n"
        f"SeriesInstanceUID={SERIES_UID}\n",
        encoding="utf-8",
    )
    query = Query.from_sources(query_file=path).validate()
    assert str(query) == f"SERIES StudyInstanceUID={STUDY_UID} SeriesInstanceUID={SERIES_UID}"
    assert query.retrieve_uids() == [SERIES_UID]


# --------------------------------------------------------------------------- construction


def test_study_constructor() -> None:
    one = Query.study(STUDY_UID)
    assert one.level == "STUDY"
    assert one.information_model == "study"
    assert one.get("StudyInstanceUID") == STUDY_UID
    assert str(one) == f"STUDY StudyInstanceUID={STUDY_UID}"
    two = Query.study("1.2", "1.3")
    assert two.get("StudyInstanceUID") == ["1.2", "1.3"]
    assert two.retrieve_uids() == ["1.2", "1.3"]
    assert two.problems() == []
    assert Query.study().retrieve_uids() == []


def test_series_and_image_constructors() -> None:
    series = Query.series(STUDY_UID, SERIES_UID)
    assert series.level == "SERIES"
    assert series.keys == {"StudyInstanceUID": STUDY_UID, "SeriesInstanceUID": SERIES_UID}
    assert series.problems() == []
    image = Query.image(STUDY_UID, SERIES_UID, "1.2.3", "1.2.4")
    assert image.level == "IMAGE"
    assert image.retrieve_uids() == ["1.2.3", "1.2.4"]
    assert image.problems() == []
    assert str(image) == (
        f"IMAGE StudyInstanceUID={STUDY_UID} SeriesInstanceUID={SERIES_UID} "
        "SOPInstanceUID=1.2.3\\1.2.4"
    )


def test_patient_constructor() -> None:
    query = Query.patient("PAT-1")
    assert query.information_model == "patient"
    assert query.level == "PATIENT"
    assert query.retrieve_uids() == ["PAT-1"]
    assert query.problems() == []
    many = Query.patient("A", "B")
    assert many.get("PatientID") == ["A", "B"]
    assert any("exactly one PatientID" in p for p in many.problems())


@pytest.mark.parametrize(
    ("keys", "model", "level"),
    [
        ({"StudyInstanceUID": "1.2"}, "study", "STUDY"),
        ({"StudyInstanceUID": "1.2", "SeriesInstanceUID": "1.3"}, "study", "SERIES"),
        ({"0020000D": "1.2", "(0020,000E)": "1.3", "0008,0018": "1.4"}, "study", "IMAGE"),
        ({"PatientID": "P"}, "patient", "PATIENT"),
        ({"PatientID": "P", "StudyInstanceUID": "1.2"}, "patient", "STUDY"),
        ({"PatientID": "P"}, "study", None),  # PatientID does not count in Study Root
        ({"StudyInstanceUID": "1.2", "QueryRetrieveLevel": "SERIES"}, "study", "SERIES"),
        ({"AccessionNumber": "A1"}, "study", None),
    ],
)
def test_from_keys_infers_level(keys: dict[str, Any], model: Any, level: str | None) -> None:
    query = Query.from_keys(keys, model=model)
    assert query.level == level
    assert query.information_model == model


def test_from_keys_values() -> None:
    query = Query.from_keys(
        {
            "StudyInstanceUID": ("1.2", "1.3"),
            "InstanceNumber": np.int64(4),
            "WindowCenter": 40,
            "PatientID": 12345,
            "PatientName": None,
            "Rows": "3\\4",
            "SeriesNumber": 2.0,
        }
    )
    assert query.keys == {
        "StudyInstanceUID": ["1.2", "1.3"],
        "InstanceNumber": 4,
        "WindowCenter": 40.0,
        "PatientID": "12345",
        "PatientName": None,
        "Rows": [3, 4],
        "SeriesNumber": 2,
    }
    assert type(query.get("WindowCenter")) is float
    assert type(query.get("InstanceNumber")) is int


@pytest.mark.parametrize(
    ("keys", "fragment"),
    [
        ({"Rows": True}, "boolean"),
        ({"Rows": 2.5}, "integer"),
        ({"Rows": -1}, "from 0 to 65535"),
        ({"StudyInstanceUID": float("nan")}, "NaN"),
        ({"StudyInstanceUID": ["1.2", None]}, "None"),
        ({"StudyInstanceUID": ["1.2\\1.3"]}, "no backslash"),
        ({"StudyInstanceUID": object()}, "a string, a number"),
        ({"StudyInstanceUd": "1"}, "did you mean StudyInstanceUID"),
    ],
)
def test_from_keys_rejects(keys: dict[str, Any], fragment: str) -> None:
    with pytest.raises(QueryError) as info:
        Query.from_keys(keys)
    assert fragment in str(info.value)


def test_from_keys_rejects_non_mapping() -> None:
    with pytest.raises(QueryError, match="mapping"):
        Query.from_keys([("StudyInstanceUID", "1.2")])  # type: ignore[arg-type]


def test_constructor_normalizes_elements() -> None:
    query = Query(
        ((SERIES_TAG, "1.3"), (QR_LEVEL, "series"), (STUDY_TAG, "1.1"), (STUDY_TAG, "1.2"))
    )
    assert query.elements == ((QR_LEVEL, "SERIES"), (STUDY_TAG, "1.2"), (SERIES_TAG, "1.3"))
    assert Query(((STUDY_TAG, ["1.2"]),)).elements == ((STUDY_TAG, "1.2"),)
    assert Query(((STUDY_TAG, []),)).elements == ((STUDY_TAG, None),)


def test_constructor_rejects_bad_elements() -> None:
    with pytest.raises(QueryError, match="pairs"):
        Query((STUDY_TAG,))  # type: ignore[arg-type]
    with pytest.raises(QueryError, match="VR SQ"):
        Query(((0x00081115, None),))


@pytest.mark.parametrize("model", ["Study", "PATIENT", "worklist", "", None])
def test_unknown_model(model: Any) -> None:
    with pytest.raises(QueryError, match="information model"):
        Query.study("1.2").model(model)
    with pytest.raises(QueryError, match="information model"):
        Query(information_model=model)
    with pytest.raises(QueryError, match="information model"):
        to_requests("1.2", model=model)


# --------------------------------------------------------------------------- fluent and immutable


def test_where_returns_new_query() -> None:
    original = Query.study("1.2")
    changed = original.where(StudyInstanceUID="1.3", QueryRetrieveLevel="SERIES")
    assert changed is not original
    assert original.get("StudyInstanceUID") == "1.2"
    assert original.level == "STUDY"
    assert changed.get("StudyInstanceUID") == "1.3"
    assert changed.level == "SERIES"


def test_set_without_and_model() -> None:
    query = Query.study("1.2").set("(0020,000E)", "1.3").set(0x00080050, "A1")
    assert query.keys == {
        "StudyInstanceUID": "1.2",
        "SeriesInstanceUID": "1.3",
        "AccessionNumber": "A1",
    }
    smaller = query.without("AccessionNumber", SERIES_TAG, "SOPInstanceUID")
    assert smaller.keys == {"StudyInstanceUID": "1.2"}
    assert len(query.keys) == 3
    patient = smaller.model("patient")
    assert patient.information_model == "patient"
    assert smaller.information_model == "study"


def test_where_rejects_unknown_keyword() -> None:
    with pytest.raises(QueryError, match="did you mean StudyInstanceUID"):
        Query().where(StudyInstanceUd="1.2")


def test_frozen() -> None:
    query = Query.study("1.2")
    with pytest.raises(dataclasses.FrozenInstanceError):
        query.elements = ()  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        query.information_model = "patient"  # type: ignore[misc]
    request = Request(0, query)
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.index = 1  # type: ignore[misc]


def test_returned_lists_are_copies() -> None:
    query = Query.study("1.2", "1.3")
    uids = query.get("StudyInstanceUID")
    assert isinstance(uids, list)
    uids.append("9.9")  # type: ignore[arg-type]
    keys = query.keys
    keys["StudyInstanceUID"] = None
    assert query.get("StudyInstanceUID") == ["1.2", "1.3"]


def test_hashable_and_equal() -> None:
    a = Query.study("1.2", "1.3")
    b = Query.from_keys({"StudyInstanceUID": "1.2\\1.3"})
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b, Query.study("1.2")}) == 2
    assert a != a.model("patient")
    assert hash(Request("x", a)) == hash(Request("x", b))


def test_get_and_keys() -> None:
    query = Query.series("1.2", "1.3")
    assert query.get("QueryRetrieveLevel") == "SERIES"
    assert query.get("(0020,000D)") == "1.2"
    assert query.get("AccessionNumber") is None
    assert "QueryRetrieveLevel" not in query.keys


def test_level_property() -> None:
    assert Query().level is None
    assert Query().set("QueryRetrieveLevel", "FOO").level is None
    assert Query().set("QueryRetrieveLevel", "image").level == "IMAGE"


def test_str() -> None:
    assert str(Query()) == "<no level>"
    query = Query.from_keys(
        {
            "SOPInstanceUID": "1.4",
            "AccessionNumber": "A",
            "StudyInstanceUID": "1.2",
            "PatientName": None,
        }
    )
    assert (
        str(query) == "IMAGE StudyInstanceUID=1.2 SOPInstanceUID=1.4 AccessionNumber=A PatientName="
    )


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "query",
    [
        Query.study(STUDY_UID),
        Query.study("1.2", "1.3", "0.1"),
        Query.series(STUDY_UID, SERIES_UID),
        Query.series(STUDY_UID, "1.2", "1.3"),
        Query.image(STUDY_UID, SERIES_UID, "1.2"),
        Query.image(STUDY_UID, SERIES_UID, "1.2", "1.3"),
        Query.study("1." + "1" * 62),  # 64 characters
        Query.study("1.2").set("SpecificCharacterSet", "ISO_IR 192"),
        Query.patient("PAT-1"),
        Query.patient("Müller-1").set("SpecificCharacterSet", "ISO_IR 192"),
        Query.from_keys({"PatientID": "P", "StudyInstanceUID": "1.2"}, model="patient"),
        Query.from_keys(
            {"PatientID": "P", "StudyInstanceUID": "1.2", "SeriesInstanceUID": ["1.3", "1.4"]},
            model="patient",
        ),
        Query.from_keys(
            {
                "PatientID": "P",
                "StudyInstanceUID": "1.2",
                "SeriesInstanceUID": "1.3",
                "SOPInstanceUID": "1.4",
            },
            model="patient",
        ),
    ],
    ids=str,
)
def test_valid(query: Query) -> None:
    assert query.problems() == []
    assert query.validate() is query
    assert query.validate(strict=False) is query


@pytest.mark.parametrize(
    ("query", "fragments"),
    [
        # missing level, with a hint of what to add
        (
            Query.from_keys({"StudyInstanceUID": "1.2"}).without("QueryRetrieveLevel"),
            ["QueryRetrieveLevel is missing", "QueryRetrieveLevel=STUDY"],
        ),
        (Query(((SERIES_TAG, "1.3"), (STUDY_TAG, "1.2"))), ["add QueryRetrieveLevel=SERIES"]),
        (Query(((PATIENT_ID_TAG, "P"),), "patient"), ["add QueryRetrieveLevel=PATIENT"]),
        (Query(), ["QueryRetrieveLevel is missing"]),
        # bad level
        (Query.study("1.2").set("QueryRetrieveLevel", "FOO"), ["'FOO' is not a Study Root level"]),
        (Query.study("1.2").set("QueryRetrieveLevel", "STUDY\\SERIES"), ["not a Study Root level"]),
        (Query.study("1.2").set("QueryRetrieveLevel", None), ["not a Study Root level"]),
        (
            Query.patient("P").model("study"),
            ["PATIENT does not exist in Study Root", "model='patient'"],
        ),
        # PatientID in Study Root
        (Query.study("1.2").where(PatientID="P"), ["PatientID is not a key of Study Root"]),
        # missing keys of the levels above and at
        (Query.study(), ["StudyInstanceUID is missing"]),
        (Query.series("1.2"), ["SeriesInstanceUID is missing"]),
        (
            Query.study("1.2")
            .set("QueryRetrieveLevel", "SERIES")
            .set("SeriesInstanceUID", "1.3")
            .without("StudyInstanceUID"),
            ["StudyInstanceUID is missing", "SERIES-level"],
        ),
        (
            Query.image("1.2", "1.3", "1.4").without("SeriesInstanceUID"),
            ["SeriesInstanceUID is missing"],
        ),
        (Query.study("1.2").model("patient"), ["PatientID is missing", "Patient Root"]),
        (Query.series("1.2", "1.3").model("patient"), ["PatientID is missing"]),
        (Query.patient(), ["PatientID is missing"]),
        # empty unique keys: universal matches
        (
            Query.study("1.2").set("StudyInstanceUID", ""),
            ["StudyInstanceUID is empty", "universal match"],
        ),
        (Query.series("1.2", "1.3").set("StudyInstanceUID", None), ["StudyInstanceUID is empty"]),
        (Query.patient("P").set("PatientID", None), ["PatientID is empty", "every patient"]),
        (Query.from_sources(selectors=["SOPInstanceUID"]), ["SOPInstanceUID is empty"]),
        # several values above the level
        (
            Query.series("1.2", "1.3").set("StudyInstanceUID", ["1.2", "1.4"]),
            ["StudyInstanceUID has 2 values", "exactly one"],
        ),
        (
            Query.image("1.2", "1.3", "1.4").set("SeriesInstanceUID", ["1.3", "1.5"]),
            ["SeriesInstanceUID has 2 values"],
        ),
        (
            Query.from_keys({"PatientID": ["A", "B"], "StudyInstanceUID": "1.2"}, model="patient"),
            ["PatientID has 2 values", "exactly one"],
        ),
        (Query.patient("A", "B"), ["PatientID has 2 values", "one request per patient"]),
        # keys below the level
        (
            Query.study("1.2").set("SeriesInstanceUID", "1.3"),
            ["SeriesInstanceUID is below the retrieve level STUDY", "QueryRetrieveLevel=SERIES"],
        ),
        (
            Query.series("1.2", "1.3").set("SOPInstanceUID", "1.4"),
            ["SOPInstanceUID is below the retrieve level SERIES"],
        ),
        (
            Query.patient("P").set("StudyInstanceUID", "1.2"),
            ["StudyInstanceUID is below the retrieve level PATIENT"],
        ),
        # wildcards
        (Query.study("1.2.*"), ["wildcard"]),
        (Query.study("1.2.?"), ["wildcard"]),
        (Query.patient("PAT*"), ["wildcard"]),
        (Query.series("1.2", "1.3*"), ["wildcard"]),
        # UIDs
        (Query.study("1.2.abc"), ["not a valid UID"]),
        (Query.study("1..2"), ["not a valid UID"]),
        (Query.study(".1.2"), ["not a valid UID"]),
        (Query.study("1.2."), ["not a valid UID"]),
        (Query.study("1.2 3"), ["not a valid UID"]),
        (Query.study("1.02.3"), ["cannot start with 0"]),
        (Query.study("01.2"), ["cannot start with 0"]),
        (Query.study("1." + "1" * 63), ["65 characters", "at most 64"]),
        (Query.study("1.2", "1.x"), ["'1.x' is not a valid UID"]),
        (Query.patient("P" * 65), ["PatientID", "at most 64"]),
        # non-unique keys
        (
            Query.study("1.2").where(AccessionNumber="A1"),
            ["AccessionNumber=A1 is not a unique key", "C-FIND", "PS3.4 C.4.2.2.1", "strict=False"],
        ),
        (
            Query.study("1.2").where(StudyDate="20240101"),
            ["StudyDate=20240101 is not a unique key"],
        ),
        (Query.study("1.2").where(PatientName=None), ["PatientName= is not a unique key"]),
        (Query.patient("P").where(PatientName="Doe"), ["PatientName=Doe is not a unique key"]),
        (
            Query.from_keys({"AccessionNumber": "A1"}),
            ["AccessionNumber=A1 is not a unique key", "QueryRetrieveLevel is missing"],
        ),
    ],
    ids=str,
)
def test_invalid(query: Query, fragments: list[str]) -> None:
    problems = query.problems()
    assert problems
    joined = "\n".join(problems)
    for fragment in fragments:
        assert fragment in joined
    with pytest.raises(QueryError) as info:
        query.validate()
    for fragment in fragments:
        assert fragment in str(info.value)
    assert "strict=False" in str(info.value)
    with pytest.warns(QueryWarning) as record:
        assert query.validate(strict=False) is query
    assert len(record) == len(problems)
    assert all(issubclass(w.category, UserWarning) for w in record)
    assert fragments[0] in "\n".join(str(w.message) for w in record)


def test_strict_error_lists_every_problem() -> None:
    query = Query.study("1.2.*").where(AccessionNumber="A", SeriesInstanceUID="1.3")
    assert len(query.problems()) == 3
    with pytest.raises(QueryError) as info:
        query.validate(strict=True)
    assert str(info.value).count("\n  - ") == 3


def test_warning_points_at_caller() -> None:
    with pytest.warns(QueryWarning) as record:
        Query.study("1.2.*").validate(strict=False)
    assert record[0].filename == __file__


# --------------------------------------------------------------------------- to_dataset


def test_to_dataset_vrs_and_values() -> None:
    query = (
        Query.image(STUDY_UID, SERIES_UID, "1.2.3", "1.2.4")
        .set("SpecificCharacterSet", "ISO_IR 192")
        .where(
            PatientName=None,
            InstanceNumber=7,
            WindowCenter=[40, 1 / 3],
            Rows=512,
            SmallestImagePixelValue=-5,
            LargestImagePixelValue=5,
            ModalitiesInStudy="CT\\MR",
        )
    )
    dataset = query.to_dataset()
    assert isinstance(dataset, pydicom.Dataset)
    vrs = {element.keyword: element.VR for element in dataset}
    assert vrs == {
        "SpecificCharacterSet": "CS",
        "SOPInstanceUID": "UI",
        "QueryRetrieveLevel": "CS",
        "ModalitiesInStudy": "CS",
        "PatientName": "PN",
        "StudyInstanceUID": "UI",
        "SeriesInstanceUID": "UI",
        "InstanceNumber": "IS",
        "Rows": "US",
        "SmallestImagePixelValue": "SS",
        "LargestImagePixelValue": "US",
        "WindowCenter": "DS",
    }
    assert [int(element.tag) for element in dataset] == [tag for tag, _ in query.elements]
    assert dataset.QueryRetrieveLevel == "IMAGE"
    assert dataset.StudyInstanceUID == STUDY_UID
    assert list(dataset.SOPInstanceUID) == ["1.2.3", "1.2.4"]
    assert dataset["SOPInstanceUID"].VM == 2
    assert list(dataset.ModalitiesInStudy) == ["CT", "MR"]
    assert dataset["PatientName"].is_empty
    assert dataset.InstanceNumber == 7
    assert dataset.Rows == 512
    assert dataset.SmallestImagePixelValue == -5
    assert dataset["WindowCenter"].VM == 2
    assert float(dataset.WindowCenter[0]) == 40.0
    assert math.isclose(float(dataset.WindowCenter[1]), 1 / 3, rel_tol=1e-12)
    assert all(len(str(value)) <= 16 for value in dataset.WindowCenter)


def test_to_dataset_round_trips_through_a_file(tmp_path: Path) -> None:
    query = Query.series(STUDY_UID, SERIES_UID, "1.2.3")
    path = tmp_path / "q.dcm"
    query.to_dataset().save_as(path, implicit_vr=True, little_endian=True)
    assert Query(tuple(read_query_dataset(path))) == query
    assert Query.from_sources(dataset_file=path) == query


def test_to_dataset_of_invalid_query_does_not_warn() -> None:
    with pytest.warns(QueryWarning):
        query = Query.study("not a uid").validate(strict=False)
    dataset = query.to_dataset()  # pytest turns any other warning into an error
    assert dataset.StudyInstanceUID == "not a uid"


# --------------------------------------------------------------------------- to_requests


def test_to_requests_query() -> None:
    query = Query.series(STUDY_UID, SERIES_UID)
    assert to_requests(query) == [Request(0, query)]
    patient = Query.patient("P")
    assert to_requests(patient) == [Request(0, patient)]  # keeps its own model


def test_to_requests_list_of_queries() -> None:
    queries = [Query.study("1.2"), Query.series("1.2", "1.3")]
    assert to_requests(queries) == [Request(0, queries[0]), Request(1, queries[1])]
    assert to_requests(tuple(queries)) == to_requests(queries)


def test_to_requests_uid_string() -> None:
    assert to_requests(STUDY_UID) == [Request(0, Query.study(STUDY_UID))]
    assert to_requests(f"  {STUDY_UID} ")[0].query == Query.study(STUDY_UID)


def test_to_requests_patient_id_string() -> None:
    requests = to_requests("PAT-1", model="patient")
    assert requests == [Request(0, Query.patient("PAT-1"))]
    assert requests[0].query.information_model == "patient"


@pytest.mark.parametrize("container", [list, tuple])
def test_to_requests_strings(container: Any) -> None:
    requests = to_requests(container(["1.2", "1.3", "1.4"]))
    assert [r.index for r in requests] == [0, 1, 2]
    assert [r.query.retrieve_uids() for r in requests] == [["1.2"], ["1.3"], ["1.4"]]
    assert all(r.query.level == "STUDY" for r in requests)


def test_to_requests_patient_ids() -> None:
    requests = to_requests(["A", "B"], model="patient")
    assert [r.query for r in requests] == [Query.patient("A"), Query.patient("B")]


def test_to_requests_dict() -> None:
    requests = to_requests({"StudyInstanceUID": "1.2", "SeriesInstanceUID": "1.3"})
    assert requests == [Request(0, Query.series("1.2", "1.3"))]


def test_to_requests_list_of_dicts_and_mixed() -> None:
    requests = to_requests(
        [
            {"StudyInstanceUID": "1.2"},
            {"StudyInstanceUID": "1.2", "SeriesInstanceUID": "1.3"},
            "1.5",
            Query.image("1.2", "1.3", "1.4"),
        ]
    )
    assert [r.query.level for r in requests] == ["STUDY", "SERIES", "STUDY", "IMAGE"]
    assert [r.index for r in requests] == [0, 1, 2, 3]


def test_to_requests_dict_patient_model() -> None:
    requests = to_requests({"PatientID": "P", "StudyInstanceUID": "1.2"}, model="patient")
    assert requests[0].query.level == "STUDY"
    assert requests[0].query.information_model == "patient"


def test_to_requests_numpy_and_pandas_arrays() -> None:
    frame = pd.DataFrame({"StudyInstanceUID": ["1.2", "1.3", "1.2"]})
    for values in (
        frame["StudyInstanceUID"].unique(),
        np.array(["1.2", "1.3"]),
        pd.Index(["1.2", "1.3"]),
    ):
        requests = to_requests(values)
        assert [r.query.retrieve_uids()[0] for r in requests] == ["1.2", "1.3"]


def test_to_requests_dataframe_with_extra_columns() -> None:
    frame = pd.DataFrame(
        {
            "PatientID": ["P1", None],
            "PatientName": ["Doe^J", "Roe^R"],
            "StudyInstanceUID": ["1.2", "1.3"],
            "SeriesInstanceUID": ["1.2.1", "1.3.1"],
            "notes": ["first", np.nan],
            "path": ["/a", "/b"],
        },
        index=pd.Index(["a", "b"], name="case"),
    )
    requests = to_requests(frame)
    assert [r.index for r in requests] == ["a", "b"]
    assert requests[0].query == Query.series("1.2", "1.2.1")
    assert requests[1].query == Query.series("1.3", "1.3.1")
    assert all("PatientID" not in r.query.keys for r in requests)


def test_to_requests_dataframe_integer_index_and_level_column() -> None:
    frame = pd.DataFrame(
        {
            "StudyInstanceUID": ["1.2", "1.3", "1.4"],
            "SeriesInstanceUID": [None, "1.3.1", None],
            "QueryRetrieveLevel": ["STUDY", "series", None],
        },
        index=[10, 20, 30],
    )
    requests = to_requests(frame.loc[[10, 20]])
    assert [(r.index, r.query.level) for r in requests] == [(10, "STUDY"), (20, "SERIES")]
    assert requests[0].query == Query.study("1.2")
    # A null level falls back to the most specific key column: SERIES, whose key is null.
    with pytest.raises(QueryError, match=r"row 30: SeriesInstanceUID is empty"):
        to_requests(frame)


def test_to_requests_dataframe_level_column_keeps_keys_below() -> None:
    frame = pd.DataFrame(
        {
            "StudyInstanceUID": ["1.2"],
            "SeriesInstanceUID": ["1.2.1"],
            "QueryRetrieveLevel": ["STUDY"],
        }
    )
    with pytest.raises(QueryError, match="below the retrieve level STUDY"):
        to_requests(frame)


@pytest.mark.parametrize("missing", [None, np.nan, "", "   ", pd.NA])
def test_to_requests_dataframe_null_row(missing: Any) -> None:
    frame = pd.DataFrame(
        {"StudyInstanceUID": ["1.2", missing, "1.4"], "other": [1, 2, 3]},
        index=["x", "y", "z"],
        dtype=object,
    )
    with pytest.raises(QueryError) as info:
        to_requests(frame)
    message = str(info.value)
    assert "row 'y'" in message
    assert "StudyInstanceUID" in message


def test_to_requests_dataframe_nan_in_upper_level_column() -> None:
    frame = pd.DataFrame(
        {"StudyInstanceUID": ["1.2", np.nan], "SeriesInstanceUID": ["1.2.1", "1.3.1"]}
    )
    with pytest.raises(QueryError, match=r"row 1: StudyInstanceUID is empty .* SERIES-level"):
        to_requests(frame)


def test_to_requests_dataframe_without_key_column() -> None:
    frame = pd.DataFrame({"AccessionNumber": ["A1"], "PatientName": ["Doe"]})
    with pytest.raises(QueryError) as info:
        to_requests(frame)
    message = str(info.value)
    for column in ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        assert column in message
    assert "'AccessionNumber'" in message


def test_to_requests_dataframe_patient_id_only_in_study_model() -> None:
    frame = pd.DataFrame({"PatientID": ["P1"]})
    with pytest.raises(QueryError, match="model='patient'"):
        to_requests(frame)


def test_to_requests_dataframe_patient_model() -> None:
    frame = pd.DataFrame(
        {"PatientID": [123, 456], "StudyInstanceUID": ["1.2", "1.3"], "Comment": ["x", "y"]}
    )
    requests = to_requests(frame, model="patient")
    assert [r.query.level for r in requests] == ["STUDY", "STUDY"]
    assert requests[0].query.keys == {"PatientID": "123", "StudyInstanceUID": "1.2"}
    assert all(r.query.information_model == "patient" for r in requests)
    patients = to_requests(frame[["PatientID"]], model="patient")
    assert [r.query for r in patients] == [Query.patient("123"), Query.patient("456")]


def test_to_requests_dataframe_patient_model_needs_patient_id() -> None:
    frame = pd.DataFrame({"StudyInstanceUID": ["1.2"]})
    with pytest.raises(QueryError, match=r"(?s)row 0: .*PatientID is missing"):
        to_requests(frame, model="patient")


def test_to_requests_dataframe_float_patient_ids() -> None:
    # pandas turns an integer column with a NaN into floats: 123.0 means "123".
    frame = pd.DataFrame({"PatientID": [123, np.nan]}, index=["a", "b"])
    with pytest.raises(QueryError, match="row 'b': PatientID is empty"):
        to_requests(frame, model="patient")
    requests = to_requests(frame.loc[["a"]], model="patient")
    assert requests[0].query.get("PatientID") == "123"


def test_to_requests_empty_dataframe() -> None:
    frame = pd.DataFrame({"StudyInstanceUID": pd.Series([], dtype=object)})
    with pytest.raises(QueryError, match="no requests"):
        to_requests(frame)


def test_to_requests_series() -> None:
    uids = pd.Series(["1.2", "1.3"], index=["p", "q"], name="StudyInstanceUID")
    requests = to_requests(uids)
    assert [(r.index, r.query) for r in requests] == [
        ("p", Query.study("1.2")),
        ("q", Query.study("1.3")),
    ]
    unnamed = to_requests(pd.Series(["1.2"]))
    assert unnamed == [Request(0, Query.study("1.2"))]


def test_to_requests_series_patient_model() -> None:
    requests = to_requests(pd.Series(["A", "B"], index=[5, 6]), model="patient")
    assert [(r.index, r.query) for r in requests] == [
        (5, Query.patient("A")),
        (6, Query.patient("B")),
    ]
    named = to_requests(pd.Series(["A"], name="PatientID"), model="patient")
    assert named[0].query == Query.patient("A")


def test_to_requests_series_with_nan() -> None:
    with pytest.raises(QueryError, match="row 'q': StudyInstanceUID is empty"):
        to_requests(pd.Series(["1.2", np.nan], index=["p", "q"]))


@pytest.mark.parametrize(
    ("name", "model", "fragment"),
    [
        ("AccessionNumber", "study", "'AccessionNumber'"),
        ("PatientID", "study", "model='patient'"),
        ("QueryRetrieveLevel", "study", "must be one of"),
        ("uids", "patient", "PatientID, StudyInstanceUID"),
    ],
)
def test_to_requests_series_bad_name(name: str, model: Any, fragment: str) -> None:
    with pytest.raises(QueryError, match="Series") as info:
        to_requests(pd.Series(["1.2"], name=name), model=model)
    assert fragment in str(info.value)


def test_to_requests_series_of_series_uids_needs_study() -> None:
    series = pd.Series(["1.2.1"], name="SeriesInstanceUID")
    with pytest.raises(QueryError, match="StudyInstanceUID is missing"):
        to_requests(series)
    with pytest.warns(QueryWarning, match="StudyInstanceUID is missing"):
        requests = to_requests(series, strict=False)
    assert requests[0].query.level == "SERIES"


@pytest.mark.parametrize("empty", [[], (), pd.DataFrame({"StudyInstanceUID": []})])
def test_to_requests_empty(empty: Any) -> None:
    with pytest.raises(QueryError, match="no requests"):
        to_requests(empty)


@pytest.mark.parametrize(
    "obj", [42, 1.5, None, {"1.2"}, b"1.2", object(), pd.Timestamp("2024-01-01")]
)
def test_to_requests_rejects_other_types(obj: Any) -> None:
    with pytest.raises(QueryError, match="expected a Query, a UID string, a dict"):
        to_requests(obj)


@pytest.mark.parametrize("item", [42, None, ["1.2"], b"1.2"])
def test_to_requests_rejects_bad_item(item: Any) -> None:
    with pytest.raises(QueryError, match="item 1: cannot make a C-MOVE request"):
        to_requests(["1.2", item])


def test_to_requests_validates_strictly() -> None:
    with pytest.raises(QueryError, match=r"(?s)item 1: invalid C-MOVE identifier .*wildcard"):
        to_requests(["1.2", "1.3*"])
    with pytest.raises(QueryError, match="not a unique key"):
        to_requests({"StudyInstanceUID": "1.2", "AccessionNumber": "A1"})
    with pytest.raises(QueryError, match=r"row 'b': invalid C-MOVE identifier"):
        to_requests(pd.DataFrame({"StudyInstanceUID": ["1.2", "1.02"]}, index=["a", "b"]))


def test_to_requests_non_strict_warns_and_keeps() -> None:
    with pytest.warns(QueryWarning, match="item 1: sending .* as given: .*wildcard"):
        requests = to_requests(["1.2", "1.3*"], strict=False)
    assert [r.query.retrieve_uids() for r in requests] == [["1.2"], ["1.3*"]]
    with pytest.warns(QueryWarning, match="AccessionNumber=A1 is not a unique key"):
        requests = to_requests({"StudyInstanceUID": "1.2", "AccessionNumber": "A1"}, strict=False)
    assert requests[0].query.get("AccessionNumber") == "A1"


def test_to_requests_non_strict_still_refuses_unreadable_input() -> None:
    with pytest.raises(QueryError, match="row 1"):
        to_requests(pd.DataFrame({"StudyInstanceUID": ["1.2", None]}), strict=False)
    with pytest.raises(QueryError):
        to_requests(42, strict=False)
