"""dicommove.find: C-FIND from what researchers hold, against the demo PACS, Orthanc and dcmqrscp.

The same finds run against the three PACS (the ``any_pacs`` fixture), all holding the
default synthetic cohort (2 patients x 2 studies x 2 series x 3 instances); what they
must return is read from the cohort's own files. The pure parts (identifiers, typing of
the answers) and the CLI are tested here too.
"""

from __future__ import annotations

import datetime
import io
import logging
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from peers import DcmQrScp, Orthanc, ensure_peers_or_skip
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filewriter import write_dataset

import dicommove
from dicommove import FindError, InputError, QueryError
from dicommove.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, main
from dicommove.query import Query
from dicommove.query.find import DEFAULT_RETURN_KEYS, FindRequest, find_requests, found_frame
from dicommove.query.window import narrow
from dicommove.testing import DemoPACS

DEMO_COHORT: dict[str, int] = {}  # make_cohort's defaults: the same cohort as the peers'


@pytest.fixture(scope="module")
def studies(demo_cohort: pd.DataFrame) -> pd.DataFrame:
    """One row per study of the cohort, with the attributes its files carry."""
    rows = []
    for _uid, group in demo_cohort.groupby("StudyInstanceUID"):
        ds = dcmread(group["path"].iloc[0], stop_before_pixels=True)
        rows.append(
            {
                "PatientID": ds.PatientID,
                "PatientName": str(ds.PatientName),
                "StudyInstanceUID": ds.StudyInstanceUID,
                "AccessionNumber": ds.AccessionNumber,
                "StudyDate": pd.Timestamp(ds.StudyDate),
            }
        )
    frame: pd.DataFrame = pd.DataFrame(rows).sort_values("StudyInstanceUID", ignore_index=True)
    return frame


@pytest.fixture(params=["demo", "orthanc", "dcmqrscp"])
def any_pacs(request: pytest.FixtureRequest, demo_pacs: DemoPACS) -> str:
    """The address of each PACS in turn: the demo PACS, Orthanc, dcmqrscp."""
    if request.param == "demo":
        return str(demo_pacs.node)
    server: Orthanc | DcmQrScp = request.getfixturevalue(request.param)
    return server.address


def by_study(df: pd.DataFrame) -> pd.DataFrame:
    ordered: pd.DataFrame = df.sort_values("StudyInstanceUID", ignore_index=True)
    return ordered


# -- against each PACS ---------------------------------------------------------------------


def test_find_by_accession_number(any_pacs: str, studies: pd.DataFrame) -> None:
    wanted = studies.iloc[2]
    df = dicommove.find(any_pacs, {"AccessionNumber": wanted["AccessionNumber"]}, level="STUDY")
    assert df["StudyInstanceUID"].tolist() == [wanted["StudyInstanceUID"]]
    assert df["PatientID"].tolist() == [wanted["PatientID"]]
    assert df["StudyDate"].tolist() == [wanted["StudyDate"]]
    assert str(df["StudyDate"].dtype).startswith("datetime64")
    assert df["request"].tolist() == [0]
    assert df["problems"].tolist() == [""]


def test_a_cohort_of_accession_numbers_maps_back_to_its_rows(
    any_pacs: str, studies: pd.DataFrame
) -> None:
    cohort = pd.DataFrame(
        {"AccessionNumber": [*studies["AccessionNumber"], "NO-SUCH-ACCESSION"]},
        index=[f"r{i}" for i in range(len(studies) + 1)],
    )
    df = dicommove.find(any_pacs, cohort, return_keys=["StudyInstanceUID"], workers=3)
    assert sorted(df.columns) == ["AccessionNumber", "StudyInstanceUID", "problems", "request"]
    assert len(df) == len(studies)  # the unknown accession number matches nothing
    got = dict(zip(df["request"], df["StudyInstanceUID"], strict=True))
    expected = dict(zip(cohort.index[:-1], studies["StudyInstanceUID"], strict=True))
    assert got == expected


def test_find_by_patient_id_and_date_range(any_pacs: str, studies: pd.DataFrame) -> None:
    patient = studies["PatientID"].iloc[0]
    theirs = studies[studies["PatientID"] == patient]
    first = theirs["StudyDate"].min()
    day = first.strftime("%Y%m%d")
    df = dicommove.find(any_pacs, {"PatientID": patient, "StudyDate": f"{day}-{day}"})
    assert by_study(df)["StudyInstanceUID"].tolist() == sorted(
        theirs.loc[theirs["StudyDate"] == first, "StudyInstanceUID"]
    )
    everything = dicommove.find(any_pacs, {"PatientID": patient, "StudyDate": "19000101-"})
    assert sorted(everything["StudyInstanceUID"]) == sorted(theirs["StudyInstanceUID"])


def test_find_with_wildcards(any_pacs: str, studies: pd.DataFrame) -> None:
    name = studies["PatientName"].iloc[0]
    df = dicommove.find(any_pacs, {"PatientName": name[:-2] + "*"})
    matching = studies[studies["PatientName"].str.startswith(name[:-2])]
    assert sorted(df["StudyInstanceUID"]) == sorted(matching["StudyInstanceUID"])
    assert set(df["PatientName"]) == set(matching["PatientName"])
    one_char = dicommove.find(any_pacs, {"PatientID": studies["PatientID"].iloc[0][:-1] + "?"})
    assert len(one_char) == len(studies)  # both patients differ in the last character only


def test_series_and_images_of_a_study(any_pacs: str, demo_cohort: pd.DataFrame) -> None:
    study = demo_cohort["StudyInstanceUID"].iloc[0]
    rows = demo_cohort[demo_cohort["StudyInstanceUID"] == study]
    series = dicommove.find(any_pacs, {"StudyInstanceUID": study}, level="SERIES")
    assert sorted(series["SeriesInstanceUID"]) == sorted(rows["SeriesInstanceUID"].unique())
    assert series["SeriesNumber"].dtype == "Int64"
    first = rows["SeriesInstanceUID"].iloc[0]
    images = dicommove.find(
        any_pacs, {"StudyInstanceUID": study, "SeriesInstanceUID": first}, level="IMAGE"
    )
    assert sorted(images["SOPInstanceUID"]) == sorted(
        rows.loc[rows["SeriesInstanceUID"] == first, "SOPInstanceUID"]
    )


def test_patients_in_patient_root(any_pacs: str, studies: pd.DataFrame) -> None:
    df = dicommove.find(any_pacs, {"PatientID": "*"}, level="PATIENT", model="patient")
    assert sorted(df["PatientID"]) == sorted(studies["PatientID"].unique())
    assert list(df.columns[:2]) == ["request", "PatientID"]


def test_found_study_uids_can_be_moved(
    demo_pacs: DemoPACS, store_port: int, studies: pd.DataFrame, tmp_path: Path
) -> None:
    found = dicommove.find(demo_pacs.node, {"AccessionNumber": studies["AccessionNumber"][0]})
    df = dicommove.move(
        demo_pacs.node,
        found[["StudyInstanceUID"]],
        out=tmp_path,
        port=store_port,
        ae_title="STORE-SCP",
        progress=False,
    )
    assert set(df["status"]) == {"received"} and len(df) == 6


def test_find_beside_a_running_move_uses_associations_of_its_own(
    demo_pacs: DemoPACS, store_port: int, studies: pd.DataFrame, tmp_path: Path
) -> None:
    with dicommove.Session(
        demo_pacs.node, out=tmp_path, port=store_port, ae_title="STORE-SCP", workers=2
    ) as session:
        job = session.start(list(studies["StudyInstanceUID"]), progress=False)
        found = session.find({"PatientID": "*"}, return_keys=["StudyInstanceUID"])
        df = job.result()
    assert sorted(found["StudyInstanceUID"]) == sorted(studies["StudyInstanceUID"])
    assert set(df["status"]) == {"received"} and len(df) == 24


# -- refusals and PACS errors --------------------------------------------------------------


def test_hierarchical_pacs_refusal_is_a_find_error_with_a_hint(dcmqrscp: DcmQrScp) -> None:
    with pytest.raises(FindError) as caught:
        dicommove.find(dcmqrscp.address, {"AccessionNumber": "A*"}, level="SERIES")
    assert caught.value.status is not None and caught.value.status >= 0xA000
    assert "hierarchically" in str(caught.value) and "StudyInstanceUID" in str(caught.value)


@pytest.fixture(scope="module")
def capped_orthanc(
    tmp_path_factory: pytest.TempPathFactory, demo_cohort: pd.DataFrame
) -> Iterator[Orthanc]:
    """An Orthanc that returns at most 3 C-FIND matches (LimitFindResults, LimitFindInstances)."""
    ensure_peers_or_skip("Orthanc", "echoscu", "storescu")
    workdir = tmp_path_factory.mktemp("capped-orthanc")
    with Orthanc(workdir, config={"LimitFindResults": 3, "LimitFindInstances": 3}) as pacs:
        pacs.load(Path(p) for p in demo_cohort["path"])
        yield pacs


def test_a_pacs_that_caps_its_results_is_asked_again_by_date(
    capped_orthanc: Orthanc, studies: pd.DataFrame, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="dicommove"):
        df = dicommove.find(capped_orthanc.address, {"PatientID": "*"})
    assert sorted(df["StudyInstanceUID"]) == sorted(studies["StudyInstanceUID"])  # once each
    assert "cut short by the PACS" in caplog.text
    in_a_range = dicommove.find(capped_orthanc.address, {"StudyDate": "20000101-20301231"})
    assert sorted(in_a_range["StudyInstanceUID"]) == sorted(studies["StudyInstanceUID"])


def test_a_capped_query_that_cannot_be_narrowed_keeps_what_arrived(
    capped_orthanc: Orthanc, demo_cohort: pd.DataFrame
) -> None:
    study = demo_cohort["StudyInstanceUID"].iloc[0]  # 6 instances; the PACS returns 3
    with pytest.raises(FindError) as caught:
        dicommove.find(capped_orthanc.address, {"StudyInstanceUID": study}, level="IMAGE")
    error = caught.value
    assert error.status == 0xFE00
    assert "only a STUDY-level query" in str(error) and ".found" in str(error)
    assert error.found is not None and len(error.found) == 3
    assert set(error.found["SOPInstanceUID"]) < set(
        demo_cohort.loc[demo_cohort["StudyInstanceUID"] == study, "SOPInstanceUID"]
    )


def test_max_results_narrows_a_pacs_that_caps_silently(
    demo_pacs: DemoPACS, studies: pd.DataFrame
) -> None:
    before = len(demo_pacs.find_requests)
    df = dicommove.find(demo_pacs.node, {"PatientName": "*"}, max_results=2)
    assert sorted(df["StudyInstanceUID"]) == sorted(studies["StudyInstanceUID"])
    assert len(demo_pacs.find_requests) - before > 3  # asked again, narrower
    with pytest.raises(InputError, match="max_results=0"):
        dicommove.find(demo_pacs.node, {"PatientName": "*"}, max_results=0)


def test_narrowed_to_one_second_and_still_full_is_a_find_error(
    demo_pacs: DemoPACS, studies: pd.DataFrame
) -> None:
    day = studies["StudyDate"][0].strftime("%Y%m%d")
    with pytest.raises(FindError, match="cannot be narrowed further") as caught:
        dicommove.find(demo_pacs.node, {"StudyDate": day}, max_results=1)
    assert caught.value.found is not None and len(caught.value.found) == 1


# -- identifiers (pure) --------------------------------------------------------------------


def test_identifier_has_the_matching_keys_and_the_return_keys_empty() -> None:
    (request,) = find_requests({"AccessionNumber": "A1", "StudyDate": "20240101-20241231"})
    keys = request.query.keys
    assert request.query.level == "STUDY"
    assert keys["AccessionNumber"] == "A1" and keys["StudyDate"] == "20240101-20241231"
    for name in DEFAULT_RETURN_KEYS["STUDY"]:
        assert name in keys
    assert keys["StudyInstanceUID"] is None


def test_empty_cells_are_universal_matches_of_that_row() -> None:
    frame = pd.DataFrame({"AccessionNumber": ["A1", None], "PatientID": [float("nan"), "P2"]})
    first, second = find_requests(frame, return_keys=["StudyInstanceUID"])
    assert first.query.keys["AccessionNumber"] == "A1" and first.query.keys["PatientID"] is None
    assert second.query.keys["PatientID"] == "P2"
    assert second.query.keys["AccessionNumber"] is None
    assert [first.label, second.label] == [0, 1]


@pytest.mark.parametrize(
    ("what", "kw", "message"),
    [
        ({"AccessionNumber": None}, {}, "matches everything"),
        (pd.DataFrame({"AccessionNumber": ["A1", ""]}), {}, "row 1: no matching key"),
        ("1.2.3", {}, "not a string"),
        ({"PatientID": "P1"}, {"level": "PATIENT"}, "use model='patient'"),
        ({"PatientID": "P1"}, {"level": "SERIE"}, "level='SERIE'"),
        ({"QueryRetrieveLevel": "SERIES", "StudyInstanceUID": "1.2"}, {"level": "IMAGE"}, "drop"),
        ({"NoSuchKeyword": "x"}, {}, "NoSuchKeyword"),
        ({"PatientID": "P1"}, {"return_keys": "StudyDate"}, "a list of keywords"),
        (pd.DataFrame({"AccessionNumber": []}), {}, "no rows"),
    ],
)
def test_bad_queries_are_refused_before_anything_is_sent(
    what: object, kw: dict[str, str], message: str
) -> None:
    with pytest.raises(QueryError, match=message):
        find_requests(what, **kw)  # type: ignore[arg-type]


def test_a_cohorts_own_columns_are_not_keys() -> None:
    frame = pd.DataFrame({"case_id": ["c1"], "AccessionNumber": ["A1"], "arm": ["x"]})
    (request,) = find_requests(frame, return_keys=[])
    assert set(request.query.keys) == {"AccessionNumber", "StudyInstanceUID"}
    with pytest.raises(QueryError, match="no column named by a DICOM keyword"):
        find_requests(frame[["case_id", "arm"]])


def test_patient_root_study_level_asks_no_patient_attributes() -> None:
    (request,) = find_requests({"PatientID": "P1"}, model="patient")
    assert "PatientName" not in request.query.keys
    assert request.query.keys["PatientID"] == "P1"


# -- the answers as a table (pure) -----------------------------------------------------------


def identifier(implicit: bool, **values: str) -> bytes:
    from pydicom.filebase import DicomBytesIO

    ds = Dataset()
    for keyword, value in values.items():
        if keyword.startswith("("):
            ds.add_new(int(keyword[1:10].replace(",", ""), 16), "LO", value)
        else:
            setattr(ds, keyword, value)
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, implicit
    write_dataset(fp, ds)
    return fp.getvalue()


@pytest.mark.parametrize("implicit", [True, False])
def test_answers_are_typed_and_bad_values_kept_as_problems(implicit: bool) -> None:
    (request,) = find_requests(
        Query.study("1.2"),
        return_keys=["StudyDate", "NumberOfStudyRelatedInstances", "PatientName"],
    )
    from pydicom import config

    syntax = "1.2.840.10008.1.2" if implicit else "1.2.840.10008.1.2.1"
    with config.disable_value_validation():
        good = identifier(
            implicit,
            StudyInstanceUID="1.2",
            StudyDate="20240229",
            NumberOfStudyRelatedInstances="12",
            PatientName="Doe^Jane",
        )
        bad = identifier(implicit, StudyInstanceUID="1.2", StudyDate="20240230")
        # not an IS: written under another VR (the decoder types by the dictionary's VR)
        bad += identifier(implicit, **{"(0020,1208)": "twelve"})
    df = found_frame([(request, [good, bad], syntax)])
    assert str(df["StudyDate"].dtype).startswith("datetime64")
    assert df["StudyDate"][0] == pd.Timestamp("2024-02-29") and pd.isna(df["StudyDate"][1])
    assert df["NumberOfStudyRelatedInstances"].dtype == "Int64"
    assert df["NumberOfStudyRelatedInstances"][0] == 12
    assert pd.isna(df["NumberOfStudyRelatedInstances"][1])
    assert df["PatientName"][0] == "Doe^Jane" and df["PatientName"][1] is None
    assert df["problems"][0] == ""
    assert "StudyDate='20240230'" in df["problems"][1]
    assert "NumberOfStudyRelatedInstances='twelve'" in df["problems"][1]


def test_no_matches_is_an_empty_table_with_the_columns() -> None:
    (request,) = find_requests({"AccessionNumber": "A1"}, return_keys=["StudyDate"])
    df = found_frame([(request, [], "1.2.840.10008.1.2")])
    assert list(df.columns) == [
        "request",
        "StudyDate",
        "StudyInstanceUID",
        "AccessionNumber",
        "problems",
    ]
    assert len(df) == 0 and str(df["StudyDate"].dtype).startswith("datetime64")


def test_find_request_repr() -> None:
    (request,) = find_requests({"AccessionNumber": "A1"}, return_keys=[])
    assert isinstance(request, FindRequest)
    assert repr(request) == "FindRequest(0, 'STUDY StudyInstanceUID= AccessionNumber=A1')"


# -- the CLI ---------------------------------------------------------------------------------


def test_cli_find_prints_csv(
    demo_pacs: DemoPACS, studies: pd.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    accession = studies["AccessionNumber"][1]
    code = main(
        ["find", str(demo_pacs.node), "-q", f"AccessionNumber={accession}", "-q", "PatientSex"]
    )
    out, err = capsys.readouterr()
    assert code == EXIT_OK, err
    df = pd.read_csv(io.StringIO(out), dtype=str)
    assert df["StudyInstanceUID"].tolist() == [studies["StudyInstanceUID"][1]]
    assert "PatientSex" in df.columns
    assert "1 matches" in err


def test_cli_find_cohort_to_a_csv_file(
    demo_pacs: DemoPACS, studies: pd.DataFrame, tmp_path: Path
) -> None:
    cohort = tmp_path / "cohort.csv"
    studies[["AccessionNumber"]].to_csv(cohort, index=False)
    out = tmp_path / "found.csv"
    code = main(["find", str(demo_pacs.node), "--cohort", str(cohort), "--csv", str(out)])
    assert code == EXIT_OK
    df = pd.read_csv(out, dtype=str)
    assert sorted(df["StudyInstanceUID"]) == sorted(studies["StudyInstanceUID"])
    assert sorted(df["request"].astype(int)) == list(range(len(studies)))


def test_cli_find_max_results(
    demo_pacs: DemoPACS, studies: pd.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["find", str(demo_pacs.node), "-q", "PatientID=*", "--max-results", "2"])
    out, err = capsys.readouterr()
    assert code == EXIT_OK, err
    df = pd.read_csv(io.StringIO(out), dtype=str)
    assert sorted(df["StudyInstanceUID"]) == sorted(studies["StudyInstanceUID"])
    day = studies["StudyDate"][0].strftime("%Y%m%d")
    code = main(["find", str(demo_pacs.node), "-q", f"StudyDate={day}", "--max-results", "1"])
    out, err = capsys.readouterr()
    assert code == EXIT_FAILED and "cannot be narrowed further" in err
    assert len(pd.read_csv(io.StringIO(out), dtype=str)) == 1  # what arrived is printed


def test_cli_find_exit_codes(
    dcmqrscp: DcmQrScp, demo_pacs: DemoPACS, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["find", str(demo_pacs.node)]) == EXIT_USAGE
    assert "query not specified" in capsys.readouterr().err
    assert main(["find", str(demo_pacs.node), "-q", "AccessionNumber"]) == EXIT_USAGE
    assert "matches everything" in capsys.readouterr().err
    refused = ["find", dcmqrscp.address, "-q", "AccessionNumber=A*", "--level", "series"]
    assert main(refused) == EXIT_FAILED
    assert "refused the C-FIND" in capsys.readouterr().err


# -- narrowing a capped query (pure) -----------------------------------------------------------

TODAY = datetime.date(2026, 12, 1)


def windows(query: Query) -> list[tuple[object, object]]:
    parts = narrow(query, TODAY)
    assert parts is not None
    return [(part.get("StudyDate"), part.get("StudyTime")) for part in parts]


def test_narrow_closes_an_open_range_and_keeps_its_ends_apart() -> None:
    q = Query.from_keys({"QueryRetrieveLevel": "STUDY", "PatientID": "P1"})
    assert windows(q) == [("-18991231", None), ("20261202-", None), ("19000101-20261201", None)]
    assert windows(q.set("StudyDate", "20240101-")) == [
        ("20261202-", None),
        ("20240101-20261201", None),
    ]
    assert windows(q.set("StudyDate", "-20240101")) == [
        ("-18991231", None),
        ("19000101-20240101", None),
    ]


def test_narrow_halves_a_range_then_a_day_by_time() -> None:
    q = Query.from_keys({"QueryRetrieveLevel": "STUDY", "StudyDate": "20240101-20240110"})
    assert windows(q) == [("20240101-20240105", None), ("20240106-20240110", None)]
    day = q.set("StudyDate", "20240101")
    assert windows(day) == [("20240101", "000000-115959"), ("20240101", "120000-235959")]
    assert windows(day.set("StudyTime", "1000-1001")) == [
        ("20240101", "100000-100059"),
        ("20240101", "100100-100159"),
    ]
    assert narrow(day.set("StudyTime", "100000"), TODAY) is None  # one second


@pytest.mark.parametrize(
    "keys",
    [
        {"QueryRetrieveLevel": "STUDY", "StudyDate": "2024*"},
        {"QueryRetrieveLevel": "STUDY", "StudyDate": ["20240101", "20240102"]},
        {"QueryRetrieveLevel": "STUDY", "StudyDate": "20240110-20240101"},
        {"QueryRetrieveLevel": "SERIES", "StudyInstanceUID": "1.2"},
    ],
)
def test_what_narrow_cannot_cut(keys: dict[str, object]) -> None:
    assert narrow(Query.from_keys(keys), TODAY) is None


def test_the_parts_of_a_range_cover_it_exactly() -> None:
    q = Query.from_keys({"QueryRetrieveLevel": "STUDY", "StudyDate": "20230105-20240317"})
    first, second = windows(q)
    assert isinstance(first[0], str) and isinstance(second[0], str)
    lo1, hi1 = (datetime.datetime.strptime(x, "%Y%m%d").date() for x in first[0].split("-"))
    lo2, hi2 = (datetime.datetime.strptime(x, "%Y%m%d").date() for x in second[0].split("-"))
    assert lo1 == datetime.date(2023, 1, 5) and hi2 == datetime.date(2024, 3, 17)
    assert hi1 + datetime.timedelta(days=1) == lo2
