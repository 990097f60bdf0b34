"""move() and Session against the in-process demo PACS, over real loopback associations."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from peers import dataset_bytes
from pydicom.dataset import Dataset
from pynetdicom import AE, StoragePresentationContexts, evt

import dicommove
from dicommove import (
    AssociationRejected,
    ConnectError,
    LocalSetupError,
    MoveDestinationUnknown,
    MoveIncomplete,
    Query,
    QueryError,
    Session,
)
from dicommove.manifest import COLUMNS
from dicommove.testing import DemoPACS, make_cohort

AE_TITLE = "STORE-SCP"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
VERIFICATION = "1.2.840.10008.1.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    return make_cohort(
        tmp_path_factory.mktemp("demo") / "src", patients=2, studies=2, series=2, instances=3
    )


@pytest.fixture(scope="module")
def port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def pacs(cohort: pd.DataFrame, port: int) -> Iterator[DemoPACS]:
    root = Path(cohort["path"].iloc[0]).parents[3]
    with DemoPACS(root, destinations={AE_TITLE: ("127.0.0.1", port)}) as p:
        yield p


@pytest.fixture(autouse=True)
def _no_faults(pacs: DemoPACS) -> Iterator[None]:
    yield
    pacs.faults.clear()


def run(pacs: DemoPACS, what: Any, out: Path, port: int, **kw: Any) -> pd.DataFrame:
    kw.setdefault("progress", False)
    return dicommove.move(pacs.node, what, out=out, port=port, **kw)


def test_study_list_arrives_complete_and_byte_identical(
    pacs: DemoPACS, cohort: pd.DataFrame, port: int, tmp_path: Path
) -> None:
    studies = sorted(cohort["StudyInstanceUID"].unique())
    df = run(pacs, studies, tmp_path, port)
    assert list(df.columns) == list(COLUMNS)
    assert (df["status"] == "received").all()
    assert sorted(df["SOPInstanceUID"]) == sorted(cohort["SOPInstanceUID"])
    # every request index points back at the input list
    by_request = df.groupby("request")["StudyInstanceUID"].unique()
    for i, study in enumerate(studies):
        assert list(by_request[i]) == [study]
    source = cohort.set_index("SOPInstanceUID")["path"]
    for row in df.itertuples():
        assert Path(str(row.path)).is_relative_to(tmp_path)
        assert dataset_bytes(str(row.path)) == dataset_bytes(source[row.SOPInstanceUID])
        assert row.size == Path(str(row.path)).stat().st_size
    # nothing extra on disk: only the files the manifest lists (and the empty temp dir)
    on_disk = {str(p) for p in tmp_path.rglob("*.dcm")}
    assert on_disk == set(df["path"])
    assert list((tmp_path / ".dicommove-tmp").iterdir()) == []


def test_series_level_query(
    pacs: DemoPACS, cohort: pd.DataFrame, port: int, tmp_path: Path
) -> None:
    row = cohort.iloc[0]
    df = run(pacs, Query.series(row.StudyInstanceUID, row.SeriesInstanceUID), tmp_path, port)
    expected = cohort[cohort["SeriesInstanceUID"] == row.SeriesInstanceUID]
    assert sorted(df["SOPInstanceUID"]) == sorted(expected["SOPInstanceUID"])


def test_image_level_into_local_store(
    pacs: DemoPACS, cohort: pd.DataFrame, port: int, tmp_path: Path
) -> None:
    """The dicom-movescu limitation we remove: IMAGE-level moves to our own store SCP."""
    a, b = cohort.iloc[0], cohort.iloc[1]
    q = Query.image(a.StudyInstanceUID, a.SeriesInstanceUID, a.SOPInstanceUID, b.SOPInstanceUID)
    df = run(pacs, q, tmp_path, port)
    assert sorted(df["SOPInstanceUID"]) == sorted([a.SOPInstanceUID, b.SOPInstanceUID])
    assert (df["status"] == "received").all()


def test_patient_root(pacs: DemoPACS, cohort: pd.DataFrame, port: int, tmp_path: Path) -> None:
    pid = cohort["PatientID"].iloc[0]
    df = run(pacs, pid, tmp_path, port, model="patient")
    expected = cohort[cohort["PatientID"] == pid]
    assert sorted(df["SOPInstanceUID"]) == sorted(expected["SOPInstanceUID"])
    assert (df["PatientID"] == pid).all()


def test_dataframe_rows_map_back_to_index(
    pacs: DemoPACS, cohort: pd.DataFrame, port: int, tmp_path: Path
) -> None:
    rows = cohort.iloc[[0, 4, 7]].set_index(pd.Index(["a", "b", "c"]))
    df = run(pacs, rows, tmp_path, port)  # SOPInstanceUID column: IMAGE level per row
    assert df.set_index("request")["SOPInstanceUID"].to_dict() == rows["SOPInstanceUID"].to_dict()


def test_flat_layout(pacs: DemoPACS, cohort: pd.DataFrame, port: int, tmp_path: Path) -> None:
    study = cohort["StudyInstanceUID"].iloc[0]
    df = run(pacs, study, tmp_path, port, layout="flat")
    assert {Path(p).parent for p in df["path"]} == {tmp_path.absolute()}


def test_not_found_is_a_row_and_raises(pacs: DemoPACS, port: int, tmp_path: Path) -> None:
    with pytest.raises(MoveIncomplete) as info:
        run(pacs, "1.2.3.999", tmp_path, port)
    df = info.value.manifest
    assert df is not None
    assert df["status"].tolist() == ["not_found"]
    assert df["StudyInstanceUID"].tolist() == ["1.2.3.999"]
    again = run(pacs, "1.2.3.999", tmp_path, port, errors="ignore")
    assert again["status"].tolist() == ["not_found"]


def test_partial_failure_with_failed_uid_list(
    pacs: DemoPACS, cohort: pd.DataFrame, port: int, tmp_path: Path
) -> None:
    study = cohort["StudyInstanceUID"].iloc[0]
    in_study = cohort[cohort["StudyInstanceUID"] == study]["SOPInstanceUID"].tolist()
    pacs.faults.fail_instances = {in_study[0]}
    df = run(pacs, study, tmp_path, port, errors="ignore")
    assert df.loc[df["SOPInstanceUID"] == in_study[0], "status"].tolist() == ["failed"]
    assert (df["status"] == "received").sum() == len(in_study) - 1
    assert set(df["move_status"].dropna()) == {0xB000}


def test_success_with_fewer_instances_is_missing(
    pacs: DemoPACS, cohort: pd.DataFrame, port: int, tmp_path: Path
) -> None:
    study = cohort["StudyInstanceUID"].iloc[0]
    in_study = cohort[cohort["StudyInstanceUID"] == study]["SOPInstanceUID"].tolist()
    pacs.faults.drop_instances = {in_study[1]}
    with pytest.raises(MoveIncomplete) as info:
        run(pacs, study, tmp_path, port)
    df = info.value.manifest
    assert df is not None
    missing = df[df["status"] == "missing"]
    assert len(missing) == 1
    assert "reported 6" in str(missing["reason"].iloc[0])
    assert (df["status"] == "received").sum() == len(in_study) - 1


@pytest.mark.parametrize("code", [0xA701, 0xA702, 0xA900, 0xC123])
def test_failure_statuses_become_rows(
    pacs: DemoPACS, cohort: pd.DataFrame, port: int, tmp_path: Path, code: int
) -> None:
    pacs.faults.move_status = code
    pacs.faults.error_comment = "synthetic failure"
    study = cohort["StudyInstanceUID"].iloc[0]
    df = run(pacs, study, tmp_path, port, errors="ignore")
    failed = df[df["status"] == "failed"]
    assert len(failed) >= 1
    assert f"0x{code:04X}" in str(failed["reason"].iloc[-1])
    assert "synthetic failure" in str(failed["reason"].iloc[-1])


def test_unknown_destination(pacs: DemoPACS, cohort: pd.DataFrame, tmp_path: Path) -> None:
    study = cohort["StudyInstanceUID"].iloc[0]
    with pytest.raises(
        MoveDestinationUnknown, match=r"Register AE NOBODY at 127\.0\.0\.1:"
    ) as info:
        dicommove.move(pacs.node, study, out=tmp_path, ae_title="NOBODY", port=0, progress=False)
    assert info.value.status == 0xA801
    assert info.value.manifest is not None
    assert info.value.manifest["status"].tolist() == ["failed"]


def test_foreign_destination_has_counts(
    pacs: DemoPACS, cohort: pd.DataFrame, tmp_path: Path
) -> None:
    received: list[str] = []

    def on_store(event: Any) -> int:
        received.append(str(event.request.AffectedSOPInstanceUID))
        return 0

    other = AE(ae_title="OTHER")
    other.supported_contexts = StoragePresentationContexts
    server: Any = other.start_server(
        ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    try:
        pacs.add_destination("OTHER", "127.0.0.1", int(server.server_address[1]))
        study = cohort["StudyInstanceUID"].iloc[0]
        df = dicommove.move(
            pacs.node, study, out=tmp_path, move_destination="OTHER", progress=False
        )
    finally:
        server.shutdown()
    assert df["status"].tolist() == ["moved"]
    assert df["completed"].tolist() == [6]
    assert df["failed"].tolist() == [0]
    assert len(received) == 6
    assert not list(tmp_path.rglob("*.dcm"))


def test_invalid_query_sends_nothing(pacs: DemoPACS, port: int, tmp_path: Path) -> None:
    before = len(pacs.move_requests)
    with pytest.raises(QueryError, match="not a unique key"):
        run(pacs, {"StudyInstanceUID": "1.2.3", "AccessionNumber": "A1"}, tmp_path, port)
    assert len(pacs.move_requests) == before


def test_store_port_in_use_fails_before_any_move(
    pacs: DemoPACS, cohort: pd.DataFrame, tmp_path: Path
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = int(busy.getsockname()[1])
        before = len(pacs.move_requests)
        with pytest.raises(LocalSetupError, match="in use"):
            run(pacs, cohort["StudyInstanceUID"].iloc[0], tmp_path, taken)
    assert len(pacs.move_requests) == before


def test_unwritable_output_fails_before_any_move(
    pacs: DemoPACS, cohort: pd.DataFrame, port: int, tmp_path: Path
) -> None:
    (tmp_path / "file").write_text("x")
    before = len(pacs.move_requests)
    with pytest.raises(LocalSetupError, match="output directory"):
        run(pacs, cohort["StudyInstanceUID"].iloc[0], tmp_path / "file" / "out", port)
    assert len(pacs.move_requests) == before


def test_connection_refused(tmp_path: Path) -> None:
    port = free_port()
    with pytest.raises(ConnectError, match=f"127.0.0.1:{port}.*Connection refused") as info:
        dicommove.move(f"PACS@127.0.0.1:{port}", "1.2.3", out=tmp_path, port=0, progress=False)
    manifest = info.value.manifest
    assert manifest is not None
    assert manifest["status"].tolist() == ["failed"]
    assert "not attempted" in str(manifest["reason"].iloc[0])


def test_association_rejected_names_the_fix(tmp_path: Path) -> None:
    strict = AE(ae_title="STRICT")
    strict.add_supported_context(STUDY_ROOT_MOVE)
    strict.add_supported_context(VERIFICATION)
    strict.require_calling_aet = ["SOMEONE-ELSE"]
    server: Any = strict.start_server(("127.0.0.1", 0), block=False)
    try:
        addr = f"STRICT@127.0.0.1:{server.server_address[1]}"
        with pytest.raises(AssociationRejected, match="register our calling AE") as info:
            dicommove.echo(addr, ae_title="ME")
        assert (info.value.source, info.value.reason) == (1, 3)
    finally:
        server.shutdown()


def test_echo(pacs: DemoPACS) -> None:
    dicommove.echo(pacs.node)


def test_session_reuse_and_close(
    pacs: DemoPACS, cohort: pd.DataFrame, port: int, tmp_path: Path
) -> None:
    studies = sorted(cohort["StudyInstanceUID"].unique())
    with Session(pacs.node, out=tmp_path, port=port) as s:
        a = s.move(studies[:1], progress=False)
        b = s.move(studies[1:2], progress=False)
    assert set(a["StudyInstanceUID"]) == {studies[0]}
    assert set(b["StudyInstanceUID"]) == {studies[1]}
    with pytest.raises(dicommove.DicomMoveError, match="closed"):
        s.move(studies[:1], progress=False)
    # the store port is free again once the move returned (as a server binds it)
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
        probe.listen()


def test_message_ids_are_unique_per_session(
    pacs: DemoPACS, cohort: pd.DataFrame, port: int, tmp_path: Path
) -> None:
    studies = sorted(cohort["StudyInstanceUID"].unique())
    before = len(pacs.move_requests)
    with Session(pacs.node, out=tmp_path, port=port) as s:
        s.move(studies, progress=False)
        s.move(studies, progress=False)
    ids = pacs.move_message_ids[before:]
    assert len(ids) == 2 * len(studies)
    assert len(set(ids)) == len(ids)


def test_identifier_sent_is_exactly_the_query(pacs: DemoPACS, port: int, tmp_path: Path) -> None:
    before = len(pacs.move_requests)
    run(pacs, Query.study("1.2.3.4", "1.2.3.5"), tmp_path, port, errors="ignore")
    identifier = pacs.move_requests[before]
    assert isinstance(identifier, Dataset)
    assert {e.keyword for e in identifier} == {"QueryRetrieveLevel", "StudyInstanceUID"}
    assert list(identifier.StudyInstanceUID) == ["1.2.3.4", "1.2.3.5"]


def test_every_uid_of_a_list_is_accounted_for(
    pacs: DemoPACS, cohort: pd.DataFrame, port: int, tmp_path: Path
) -> None:
    present = cohort["StudyInstanceUID"].iloc[0]
    df = run(pacs, Query.study(present, "1.2.3.404"), tmp_path, port, errors="ignore")
    by_status = df.groupby("status", observed=True)["StudyInstanceUID"].unique()
    assert list(by_status["received"]) == [present]
    assert list(by_status["not_found"]) == ["1.2.3.404"]
    assert (df["request"] == 0).all()
