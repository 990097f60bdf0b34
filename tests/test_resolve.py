"""move(..., resolve=True): from accession numbers, MRNs and dates to files, one call.

Against the demo PACS, Orthanc and dcmqrscp, all holding the default synthetic cohort
(2 patients x 2 studies x 2 series x 3 instances). What each row must bring is read
from the cohort's own files.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pandas as pd
import pytest
from peers import DcmQrScp, Orthanc
from pydicom import dcmread

import dicommove
from dicommove import MoveIncomplete, QueryError
from dicommove.cli import EXIT_OK, EXIT_PARTIAL, main
from dicommove.testing import DemoPACS

DEMO_COHORT: dict[str, int] = {}  # make_cohort's defaults: the same cohort as the peers'


@pytest.fixture(scope="module")
def studies(demo_cohort: pd.DataFrame) -> pd.DataFrame:
    """One row per study: its UID, accession number, patient, date and instances."""
    rows = []
    for uid, group in demo_cohort.groupby("StudyInstanceUID"):
        ds = dcmread(group["path"].iloc[0], stop_before_pixels=True)
        rows.append(
            {
                "StudyInstanceUID": uid,
                "AccessionNumber": ds.AccessionNumber,
                "PatientID": ds.PatientID,
                "StudyDate": ds.StudyDate,
                "sops": frozenset(group["SOPInstanceUID"]),
            }
        )
    frame: pd.DataFrame = pd.DataFrame(rows).sort_values("StudyDate", ignore_index=True)
    return frame


def sops_by_request(df: pd.DataFrame) -> dict[object, frozenset[str]]:
    got = df[df["status"] == "received"]
    return {label: frozenset(g["SOPInstanceUID"]) for label, g in got.groupby("request")}


def test_a_cohort_of_accession_numbers_is_moved_row_by_row(
    demo_pacs: DemoPACS, store_port: int, studies: pd.DataFrame, tmp_path: Path
) -> None:
    cohort = pd.DataFrame(
        {
            "AccessionNumber": [studies["AccessionNumber"][0], "NO-SUCH", None],
            "StudyInstanceUID": [None, None, studies["StudyInstanceUID"][3]],
            "arm": ["a", "b", "c"],  # the researcher's own column: ignored
        },
        index=["case-1", "case-2", "case-3"],
    )
    with pytest.raises(MoveIncomplete, match="1 not_found") as caught:
        dicommove.move(
            demo_pacs.node, cohort, out=tmp_path, port=store_port, progress=False, resolve=True
        )
    df = caught.value.manifest
    assert df is not None
    assert sops_by_request(df) == {"case-1": studies["sops"][0], "case-3": studies["sops"][3]}
    (missing,) = df[df["status"] != "received"].itertuples()
    assert missing.request == "case-2" and missing.status == "not_found"
    assert "AccessionNumber=NO-SUCH" in missing.reason
    assert len(df) == 13
    on_disk = {p.name for p in tmp_path.rglob("*.dcm")}
    assert len(on_disk) == 12


def test_a_patient_and_a_date_range_bring_every_study_in_it(
    demo_pacs: DemoPACS, store_port: int, studies: pd.DataFrame, tmp_path: Path
) -> None:
    patient = studies["PatientID"][0]
    theirs = studies[studies["PatientID"] == patient]
    cohort = [{"PatientID": patient, "StudyDate": f"{theirs['StudyDate'].min()}-"}]
    df = dicommove.move(
        demo_pacs.node, cohort, out=tmp_path, port=store_port, progress=False, resolve=True
    )
    assert set(df["status"]) == {"received"}
    assert sops_by_request(df) == {0: frozenset().union(*theirs["sops"])}


def test_patient_ids_in_study_root_are_found_first(
    demo_pacs: DemoPACS, store_port: int, studies: pd.DataFrame, tmp_path: Path
) -> None:
    patients = pd.DataFrame({"PatientID": sorted(studies["PatientID"].unique())})
    df = dicommove.move(
        demo_pacs.node,
        patients,
        out=tmp_path / "p",
        port=store_port,
        progress=False,
        resolve=True,
    )
    expected = {
        i: frozenset().union(*studies.loc[studies["PatientID"] == pid, "sops"])
        for i, pid in enumerate(patients["PatientID"])
    }
    assert sops_by_request(df) == expected

    # beside a UID, a PatientID is ignored in Study Root (no C-FIND)
    def study_finds() -> int:
        return sum(ds.QueryRetrieveLevel == "STUDY" for ds in demo_pacs.find_requests)

    before = study_finds()
    both = studies[["PatientID", "StudyInstanceUID"]].iloc[:1]
    df = dicommove.move(
        demo_pacs.node, both, out=tmp_path / "u", port=store_port, progress=False, resolve=True
    )
    assert study_finds() == before
    assert sops_by_request(df) == {0: studies["sops"][0]}


def test_patient_root_with_a_date_range_moves_only_those_studies(
    demo_pacs: DemoPACS, store_port: int, studies: pd.DataFrame, tmp_path: Path
) -> None:
    first = studies.iloc[0]
    day = first["StudyDate"]
    argv = ["move", str(demo_pacs.node), "-P", "-p", str(store_port), "--no-progress"]
    argv += ["--resolve", "-q", f"PatientID={first['PatientID']}", "-q", f"StudyDate={day}-{day}"]
    assert main([*argv, "-o", str(tmp_path)]) == EXIT_OK
    on_disk = {p.stem for p in tmp_path.rglob("*.dcm")}
    assert on_disk == set(first["sops"])  # that study, not the whole patient


def test_series_level_rows_resolve_to_series(
    demo_pacs: DemoPACS, store_port: int, demo_cohort: pd.DataFrame, tmp_path: Path
) -> None:
    study = demo_cohort["StudyInstanceUID"].iloc[0]
    rows = {"QueryRetrieveLevel": "SERIES", "StudyInstanceUID": study, "Modality": "CT"}
    df = dicommove.move(
        demo_pacs.node, rows, out=tmp_path, port=store_port, progress=False, resolve=True
    )
    expected = demo_cohort.loc[demo_cohort["StudyInstanceUID"] == study, "SOPInstanceUID"]
    assert sorted(df["SOPInstanceUID"]) == sorted(expected)
    assert df["SeriesInstanceUID"].nunique() == 2


def test_without_resolve_the_error_points_to_it(demo_pacs: DemoPACS, tmp_path: Path) -> None:
    with pytest.raises(QueryError, match=r"resolve=True \(CLI: --resolve\)"):
        dicommove.move(demo_pacs.node, pd.DataFrame({"AccessionNumber": ["A1"]}), out=tmp_path)
    with pytest.raises(QueryError, match="resolve=True"):
        dicommove.move(demo_pacs.node, {"AccessionNumber": "A1"}, out=tmp_path)


def test_start_and_amove_resolve_too(
    demo_pacs: DemoPACS, store_port: int, studies: pd.DataFrame, tmp_path: Path
) -> None:
    accession = {"AccessionNumber": studies["AccessionNumber"][1]}
    job = dicommove.start(
        demo_pacs.node,
        accession,
        out=tmp_path / "a",
        port=store_port,
        progress=False,
        resolve=True,
    )
    assert sops_by_request(job.result()) == {0: studies["sops"][1]}
    df = asyncio.run(
        dicommove.amove(
            demo_pacs.node, accession, out=tmp_path / "b", port=store_port, resolve=True
        )
    )
    assert sops_by_request(df) == {0: studies["sops"][1]}


@pytest.fixture(params=["orthanc", "dcmqrscp"])
def peer(request: pytest.FixtureRequest) -> Orthanc | DcmQrScp:
    server: Orthanc | DcmQrScp = request.getfixturevalue(request.param)
    return server


def test_resolve_against_real_pacs(
    peer: Orthanc | DcmQrScp, peer_ports: dict[str, int], studies: pd.DataFrame, tmp_path: Path
) -> None:
    cohort = pd.DataFrame({"AccessionNumber": [*studies["AccessionNumber"], "NO-SUCH"]})
    df = dicommove.move(
        peer.address,
        cohort,
        out=tmp_path,
        port=peer_ports["STORE-SCP"],
        progress=False,
        resolve=True,
        errors="ignore",
    )
    assert sops_by_request(df) == dict(enumerate(studies["sops"]))
    assert df.loc[df["request"] == len(studies), "status"].tolist() == ["not_found"]


def test_cli_move_resolve(
    demo_pacs: DemoPACS, store_port: int, studies: pd.DataFrame, tmp_path: Path
) -> None:
    cohort = tmp_path / "accessions.csv"
    studies[["AccessionNumber"]].to_csv(cohort, index=False)
    base = ["move", str(demo_pacs.node), "-p", str(store_port), "--no-progress", "--resolve"]
    assert main([*base, "--cohort", str(cohort), "-o", str(tmp_path / "all")]) == EXIT_OK
    assert len(list((tmp_path / "all").rglob("*.dcm"))) == 24
    with_unknown = tmp_path / "with-unknown.csv"
    pd.DataFrame({"AccessionNumber": [studies["AccessionNumber"][0], "NO-SUCH"]}).to_csv(
        with_unknown, index=False
    )
    out = tmp_path / "some"
    assert main([*base, "--cohort", str(with_unknown), "-o", str(out)]) == EXIT_PARTIAL
    one = ["-q", f"AccessionNumber={studies['AccessionNumber'][2]}", "-o", str(tmp_path / "q")]
    assert main([*base, *one]) == EXIT_OK
    assert len(list((tmp_path / "q").rglob("*.dcm"))) == 6


def test_a_row_with_uids_and_other_keys_is_found_at_the_level_of_its_uids(
    demo_pacs: DemoPACS, store_port: int, demo_cohort: pd.DataFrame, tmp_path: Path
) -> None:
    first = demo_cohort.iloc[0]
    row = {
        "StudyInstanceUID": first.StudyInstanceUID,
        "SeriesInstanceUID": first.SeriesInstanceUID,
        "Modality": "CT",
    }
    df = dicommove.move(
        demo_pacs.node, row, out=tmp_path, port=store_port, progress=False, resolve=True
    )
    expected = demo_cohort.loc[
        demo_cohort["SeriesInstanceUID"] == first.SeriesInstanceUID, "SOPInstanceUID"
    ]
    assert sorted(df["SOPInstanceUID"]) == sorted(expected)  # that series, not the study


def test_an_unknown_patient_reads_as_such(
    demo_pacs: DemoPACS, store_port: int, tmp_path: Path
) -> None:
    df = dicommove.move(
        demo_pacs.node,
        {"PatientID": "NOPE"},
        out=tmp_path,
        port=store_port,
        progress=False,
        resolve=True,
        errors="ignore",
    )
    assert df["reason"].tolist() == ["C-FIND found no study for PatientID=NOPE"]
