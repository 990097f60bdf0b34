"""encode_identifier() and the built-in Query/Retrieve key table: as pydicom, without it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from pydicom import datadict
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

from dicommove._tags import QR_KEYS, QR_KEYS_BY_TAG
from dicommove.query import Query, encode_identifier, parse_selector, plan, to_requests
from dicommove.query.identifier import _encode_plain

STUDY_UID = "1.3.46.670589.5.2.10.2156913941.892665384.993397"
SERIES_UID = "1.3.46.670589.5.2.10.2156913941.892665339.860724"
SOP_UID = "1.2.840.113619.2.55.3.1"


def pydicom_bytes(query: Query, *, implicit: bool) -> bytes:
    """What the engine sent before encode_identifier: pydicom's write_dataset."""
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = implicit
    write_dataset(fp, query.to_dataset())
    return fp.getvalue()


# --------------------------------------------------------------------------- the table


def test_table_agrees_with_pydicom_datadict() -> None:
    assert QR_KEYS, "the table is empty"
    for keyword, key in QR_KEYS.items():
        assert key.keyword == keyword
        assert datadict.tag_for_keyword(keyword) == key.tag, keyword
        assert datadict.keyword_for_tag(key.tag) == keyword, keyword
        assert datadict.dictionary_VR(key.tag) == key.vr, keyword
        assert QR_KEYS_BY_TAG[key.tag] is key
    assert len(QR_KEYS_BY_TAG) == len(QR_KEYS)


def test_table_holds_every_unique_key_and_the_level() -> None:
    for keyword in (
        "QueryRetrieveLevel",
        "PatientID",
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPInstanceUID",
        "SpecificCharacterSet",
    ):
        assert keyword in QR_KEYS
        assert parse_selector(keyword) == QR_KEYS[keyword].tag


# --------------------------------------------------------------------------- bytes


def _q(*selectors: str) -> Query:
    return Query.from_sources(selectors=selectors)


#: (id, query, written without pydicom)
CASES: list[tuple[str, Query, bool]] = [
    ("study", Query.study(STUDY_UID), True),
    ("study-odd-uid", Query.study("1.2.345"), True),
    ("study-even-uid", Query.study("1.2.34"), True),
    ("study-multi", Query.study("1.2.3", "1.2.34", "1.2.345"), True),
    ("series", Query.series(STUDY_UID, SERIES_UID), True),
    ("series-multi", Query.series(STUDY_UID, SERIES_UID, "1.2.3.4"), True),
    ("image", Query.image(STUDY_UID, SERIES_UID, SOP_UID), True),
    ("image-multi", Query.image(STUDY_UID, SERIES_UID, SOP_UID, "1.2.840.1"), True),
    ("patient", Query.patient("PAT-001"), True),
    ("patient-id-spaces", Query.patient("ID WITH SPACE"), True),
    ("patient-id-even", Query.patient("ID 2"), True),
    ("patient-id-multi", Query.patient("A", "B C"), True),
    ("patient-id-empty-item", Query.patient(""), True),
    (
        "patient-root-image",
        Query.from_keys(
            {
                "PatientID": "P 1",
                "StudyInstanceUID": STUDY_UID,
                "SeriesInstanceUID": SERIES_UID,
                "SOPInstanceUID": SOP_UID,
            },
            model="patient",
        ),
        True,
    ),
    ("empty-uid", _q("QueryRetrieveLevel=STUDY", "StudyInstanceUID="), True),
    ("empty-items", _q("QueryRetrieveLevel=STUDY", "StudyInstanceUID=\\"), True),
    ("no-level", _q("(0020,000D)=1.2", "0020000E=1.3"), True),
    ("specific-character-set-empty", Query.study("1.2").set("SpecificCharacterSet", None), True),
    ("level-only", Query.study(), True),
    ("empty-query", Query(), True),
    # elements outside the table, still without pydicom
    ("study-date", Query.study("1.2").where(StudyDate="20240101-20241231"), True),
    ("accession", Query.study("1.2").where(AccessionNumber="ACC123"), True),
    ("accession-odd", Query.study("1.2").where(AccessionNumber="A12"), True),
    ("accession-empty", Query.study("1.2").where(AccessionNumber=None), True),
    ("patient-name", Query.study("1.2").where(PatientName="Doe^John"), True),
    ("patient-name-multi", Query.study("1.2").where(PatientName="Doe^J\\Roe^R"), True),
    ("modalities", Query.study("1.2").where(ModalitiesInStudy="CT\\MR"), True),
    (
        "ae-as-tm-dt",
        _q(
            "RetrieveAETitle=PACS",
            "PatientAge=042Y",
            "StudyTime=1200",
            "AcquisitionDateTime=20240101",
        ),
        True,
    ),
    (
        "st-lt-ut-ur-uc",
        _q(
            "InstitutionAddress=Main St 1",
            "StudyComments=a\\b",
            "TextValue=xyz",
            "RetrieveURL=http://x/y",
            "LongCodeValue=abc",
        ),
        True,
    ),
    ("is", _q("InstanceNumber=-5\\17\\300"), True),
    ("ds", _q("WindowCenter=40\\-1.5\\.25"), True),
    (
        "us-ul-ss-sl",
        _q(
            "Rows=512",
            "SimpleFrameList=1\\4294967295",
            "TagAngleSecondAxis=-3",
            "ReferencePixelX0=-7",
        ),
        True,
    ),
    ("sv-uv", _q("SelectorSVValue=-9000000000", "SelectorUVValue=18446744073709551615"), True),
    ("fl-fd", _q("RecommendedDisplayFrameRateInFloat=25.5", "TableSpeed=2.25\\-1e300"), True),
    ("us-or-ss", _q("SmallestImagePixelValue=-1", "LargestImagePixelValue=65535"), True),
    (
        "empty-numbers",
        _q("Rows", "WindowCenter=", "InstanceNumber", "TableSpeed", "SmallestImagePixelValue"),
        True,
    ),
    # what pydicom writes: character sets, name groups, long decimals, LUT descriptors
    ("specific-character-set", Query.study("1.2").set("SpecificCharacterSet", "ISO_IR 192"), False),
    (
        "utf8-name",
        Query.study("1.2")
        .set("SpecificCharacterSet", "ISO_IR 192")
        .where(PatientName="Müller^Jörg"),
        False,
    ),
    ("latin1-id", Query.patient("Sébastien"), False),
    ("name-groups", Query.study("1.2").where(PatientName="Yamada^Tarou=Y^T"), False),
    ("name-empty-groups", Query.study("1.2").where(PatientName="Doe^John=="), False),
    ("ds-long", Query.study("1.2").where(WindowCenter=1 / 3), False),
    ("lut-descriptor-ss", _q("LUTDescriptor=4096\\-5\\16"), False),
]


@pytest.mark.parametrize("implicit", [True, False], ids=["implicit", "explicit"])
@pytest.mark.parametrize(("query", "plain"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_encode_identifier_equals_pydicom(query: Query, plain: bool, implicit: bool) -> None:
    expected = pydicom_bytes(query, implicit=implicit)
    assert encode_identifier(query, implicit=implicit) == expected
    written = _encode_plain(query, implicit)
    assert (written is not None) == plain
    if written is not None:
        assert written == expected


def test_encode_identifier_layout() -> None:
    query = Query.study("1.2")
    assert encode_identifier(query, implicit=False) == (
        b"\x08\x00\x52\x00CS\x06\x00STUDY "  # (0008,0052) CS, padded with a space
        b"\x20\x00\x0d\x00UI\x04\x001.2\x00"  # (0020,000D) UI, padded with a NUL
    )
    assert encode_identifier(query, implicit=True) == (
        b"\x08\x00\x52\x00\x06\x00\x00\x00STUDY \x20\x00\x0d\x00\x04\x00\x00\x001.2\x00"
    )
    empty = Query.study("1.2").where(AccessionNumber=None)
    assert b"\x08\x00\x50\x00SH\x00\x00" in encode_identifier(empty, implicit=False)
    long_text = Query.study("1.2").where(TextValue="x" * 70_001)  # UT: 4-byte length
    data = encode_identifier(long_text, implicit=False)
    assert b"\x40\x00\x60\xa1UT\x00\x00" + (70_002).to_bytes(4, "little") in data


def test_encode_identifier_too_long_for_explicit_short_length() -> None:
    query = Query.study("1.2").where(StudyComments="x" * 70_001)  # LT: 2-byte length
    with pytest.warns(UserWarning, match="64 kByte"):
        expected = pydicom_bytes(query, implicit=False)
    with pytest.warns(UserWarning, match="64 kByte"):
        assert encode_identifier(query, implicit=False) == expected
    assert _encode_plain(query, False) is None
    assert encode_identifier(query, implicit=True) == pydicom_bytes(query, implicit=True)


def test_encode_identifier_keeps_pydicom_errors() -> None:
    query = _q("LUTDescriptor=-1\\0\\16")  # pydicom writes the first value as US
    with pytest.raises(OSError, match="format"):
        pydicom_bytes(query, implicit=True)
    with pytest.raises(OSError, match="format"):
        encode_identifier(query, implicit=True)


# --------------------------------------------------------------------------- no pydicom

_NO_PYDICOM_SCRIPT = textwrap.dedent(
    r"""
    import json
    import sys

    from dicommove.errors import QueryError
    from dicommove.query import Query, encode_identifier, parse_selector, plan, to_requests

    selectors = [
        "QueryRetrieveLevel=SERIES",
        "(0020,000D)=1.2.3",
        "0020,000E=1.2.3.4\\1.2.3.5",
        "PatientID=ID WITH SPACE",
        "0020000d = 1.2.3",
    ]
    query = Query.from_sources(selectors=selectors, model="patient").model("study")
    query = query.without("PatientID")
    assert query.validate() is query and query.problems() == [], query.problems()
    assert str(query) == "SERIES StudyInstanceUID=1.2.3 SeriesInstanceUID=1.2.3.4\\1.2.3.5"
    assert hash(query) == hash(Query.series("1.2.3", "1.2.3.4", "1.2.3.5"))
    assert query.where(SeriesInstanceUID="1.2.3.9").set("0020000E", "1.2.3.8").get(
        "SeriesInstanceUID"
    ) == "1.2.3.8"
    assert Query.from_keys({"StudyInstanceUID": "1.5"}).problems() == []
    assert Query.image("1.2", "1.3", "1.4").problems() == []
    assert Query.patient("P1").validate().level == "PATIENT"
    assert Query.study("bad uid").problems()
    for refused in ("(0000,0100)", "(0002,0010)", "(0009,1010)", "(0008,0000)"):
        try:
            parse_selector(refused)
        except QueryError:
            pass
        else:
            raise AssertionError(refused)
    try:
        wildcard = ["QueryRetrieveLevel=STUDY", "StudyInstanceUID=1.2\\*"]
        Query.from_sources(selectors=wildcard).validate()
    except QueryError:
        pass
    else:
        raise AssertionError("a wildcard UID validated")
    requests = []
    for inputs in ("1.2", ["1.3", "1.4"], ("1.5",), {"StudyInstanceUID": "1.6"}, query):
        requests.extend(to_requests(inputs))
    planned = plan(requests, batch=2)
    out = {
        str(p.request.query): [
            encode_identifier(p.request.query, implicit=True).hex(),
            encode_identifier(p.request.query, implicit=False).hex(),
        ]
        for p in planned
    }
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("pydicom", "pandas"))
    assert "pydicom" not in sys.modules and "pandas" not in sys.modules, loaded
    print(json.dumps(out))
    """
)


def test_selectors_to_bytes_without_pydicom_or_pandas() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _NO_PYDICOM_SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    encoded: dict[str, list[str]] = json.loads(result.stdout)
    # Same queries, built here where pydicom is loaded: the subprocess wrote pydicom's bytes.
    requests = to_requests(["1.2", "1.3", "1.4", "1.5", {"StudyInstanceUID": "1.6"}])
    requests += to_requests(Query.series("1.2.3", "1.2.3.4", "1.2.3.5"))
    planned = plan(requests, batch=2)
    assert sorted(encoded) == sorted(str(p.request.query) for p in planned)
    for p in planned:
        query = p.request.query
        assert encoded[str(query)] == [
            pydicom_bytes(query, implicit=True).hex(),
            pydicom_bytes(query, implicit=False).hex(),
        ]


def test_import_does_not_load_pydicom() -> None:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import dicommove.query"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    modules = [
        line.rsplit("|", 1)[1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    ]
    assert "dicommove.query" in modules
    roots = {module.split(".")[0] for module in modules}
    assert "pydicom" not in roots
    assert "pandas" not in roots
    assert "numpy" not in roots
