"""method="get": C-GET, the instances come back on our own association.

Against the demo PACS, Orthanc 1.10.1 and DCMTK dcmqrscp 3.6.7 (both support C-GET in
their Debian packages: Orthanc with DicomAlwaysAllowGet, dcmqrscp by default), with an AE
title none of them knows: C-GET needs no registration and opens no port.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from peers import DcmQrScp, Orthanc, dataset_bytes
from pydicom import dcmread
from pydicom.uid import UID

import dicommove
from dicommove import InputError, Query, StoreOptions
from dicommove.cli import EXIT_OK, main
from dicommove.testing import DemoPACS

DEMO_COHORT: dict[str, int] = {}

#: An AE title no PACS here knows (C-MOVE to it would fail).
STRANGER = "NOT-REGISTERED"
#: An address we cannot listen on (TEST-NET-3): a store SCP started by mistake would fail.
NO_BIND = StoreOptions(bind="203.0.113.7")


@pytest.fixture(autouse=True)
def _no_faults(demo_pacs: DemoPACS) -> Any:
    yield
    demo_pacs.faults.clear()


@pytest.fixture(params=["demo", "orthanc", "dcmqrscp"])
def any_pacs(request: pytest.FixtureRequest, demo_pacs: DemoPACS) -> str:
    if request.param == "demo":
        return str(demo_pacs.node)
    server: Orthanc | DcmQrScp = request.getfixturevalue(request.param)
    return server.address


def get(pacs: str, what: Any, out: Path, **kw: Any) -> pd.DataFrame:
    kw.setdefault("progress", False)
    df: pd.DataFrame = dicommove.move(
        pacs, what, out=out, method="get", ae_title=STRANGER, store=NO_BIND, **kw
    )
    return df


def assert_intact(df: pd.DataFrame, cohort: pd.DataFrame) -> None:
    """Each file holds its source's dataset: the same bytes, or (when the PACS chose the
    other uncompressed transfer syntax of the context, as the demo PACS does) the same
    elements and values."""
    source = dict(zip(cohort["SOPInstanceUID"], cohort["path"], strict=True))
    got = df[df["status"] == "received"]
    for row in got.itertuples():
        path, original = str(row.path), source[str(row.SOPInstanceUID)]
        theirs = dcmread(original)
        if row.TransferSyntaxUID == theirs.file_meta.TransferSyntaxUID:
            assert dataset_bytes(path) == dataset_bytes(original)
        else:
            ours = dcmread(path)
            assert ours.file_meta.TransferSyntaxUID == row.TransferSyntaxUID
            assert ours == theirs


def test_studies_by_c_get_arrive_intact_without_registration(
    any_pacs: str, demo_cohort: pd.DataFrame, tmp_path: Path
) -> None:
    studies = sorted(demo_cohort["StudyInstanceUID"].unique())
    df = get(any_pacs, studies, tmp_path)
    assert df["status"].tolist() == ["received"] * len(demo_cohort)
    assert sorted(df["SOPInstanceUID"]) == sorted(demo_cohort["SOPInstanceUID"])
    assert_intact(df, demo_cohort)
    assert sorted(df["request"].unique()) == list(range(len(studies)))
    on_disk = [p for p in tmp_path.rglob("*.dcm")]
    assert len(on_disk) == len(demo_cohort)


def test_series_and_image_level(any_pacs: str, demo_cohort: pd.DataFrame, tmp_path: Path) -> None:
    first = demo_cohort.iloc[0]
    series = Query.series(first.StudyInstanceUID, first.SeriesInstanceUID)
    df = get(any_pacs, series, tmp_path / "series")
    expected = demo_cohort[demo_cohort["SeriesInstanceUID"] == first.SeriesInstanceUID]
    assert sorted(df["SOPInstanceUID"]) == sorted(expected["SOPInstanceUID"])
    two = list(expected["SOPInstanceUID"][:2])
    images = Query.image(first.StudyInstanceUID, first.SeriesInstanceUID, *two)
    df = get(any_pacs, images, tmp_path / "images")
    assert sorted(df["SOPInstanceUID"]) == sorted(two)
    assert set(df["status"]) == {"received"}


def test_nothing_matches_is_not_found(any_pacs: str, tmp_path: Path) -> None:
    df = get(any_pacs, ["1.2.826.0.1.3680043.2.1125.424242.1"], tmp_path, errors="ignore")
    assert df["status"].tolist() == ["not_found"]


def test_a_failed_sub_operation_is_a_row_and_the_rest_arrives(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, tmp_path: Path
) -> None:
    study = demo_cohort["StudyInstanceUID"].iloc[0]
    rows = demo_cohort[demo_cohort["StudyInstanceUID"] == study]
    bad = rows["SOPInstanceUID"].iloc[1]
    demo_pacs.faults.fail_instances = {bad}
    df = get(str(demo_pacs.node), [study], tmp_path, errors="ignore", split=False)
    failed = df[df["status"] == "failed"]
    assert failed["SOPInstanceUID"].tolist() == [bad]
    assert sorted(df.loc[df["status"] == "received", "SOPInstanceUID"]) == sorted(
        set(rows["SOPInstanceUID"]) - {bad}
    )


def test_an_abort_mid_c_get_is_retried_for_the_rest(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, tmp_path: Path
) -> None:
    study = demo_cohort["StudyInstanceUID"].iloc[0]
    demo_pacs.faults.abort_after, demo_pacs.faults.abort_count = 2, 1
    df = get(str(demo_pacs.node), [study], tmp_path, split=False)
    expected = demo_cohort.loc[demo_cohort["StudyInstanceUID"] == study, "SOPInstanceUID"]
    assert sorted(df["SOPInstanceUID"]) == sorted(expected)
    assert set(df["status"]) == {"received"}


def test_a_pacs_that_says_success_while_dropping_instances_gets_missing(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, tmp_path: Path
) -> None:
    study = demo_cohort["StudyInstanceUID"].iloc[0]
    dropped = demo_cohort.loc[demo_cohort["StudyInstanceUID"] == study, "SOPInstanceUID"].iloc[0]
    demo_pacs.faults.drop_instances = {dropped}
    df = get(str(demo_pacs.node), [study], tmp_path, errors="ignore", split=False)
    assert "missing" in set(df["status"])
    assert (df["status"] == "received").sum() == 5


def test_get_with_tags_durability_instance_and_resume(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, tmp_path: Path
) -> None:
    study = demo_cohort["StudyInstanceUID"].iloc[0]
    store = StoreOptions(bind="203.0.113.7", durability="instance")
    df = dicommove.move(
        demo_pacs.node,
        [study],
        out=tmp_path,
        method="get",
        store=store,
        progress=False,
        tags=["InstanceNumber"],
    )
    assert sorted(df["InstanceNumber"]) == [1, 1, 2, 2, 3, 3]
    for row in df.itertuples():
        assert dcmread(str(row.path), stop_before_pixels=True).InstanceNumber == row.InstanceNumber
    again = get(str(demo_pacs.node), [study], tmp_path, resume=True)
    assert again["reason"].str.contains("earlier run").all()


def test_get_refuses_a_move_destination() -> None:
    with pytest.raises(InputError, match="no other move destination"):
        dicommove.Session("PACS@127.0.0.1:1", method="get", move_destination="ELSEWHERE")
    with pytest.raises(InputError, match="method='post'"):
        dicommove.Session("PACS@127.0.0.1:1", method="post")  # type: ignore[arg-type]


def test_cli_method_get(orthanc: Orthanc, demo_cohort: pd.DataFrame, tmp_path: Path) -> None:
    study = demo_cohort["StudyInstanceUID"].iloc[0]
    argv = ["move", orthanc.address, "--method", "get", "--calling-ae-title", STRANGER]
    argv += ["-q", "QueryRetrieveLevel=STUDY", "-q", f"StudyInstanceUID={study}"]
    argv += ["--no-progress", "-o", str(tmp_path), "--bind", "203.0.113.7"]
    assert main(argv) == EXIT_OK
    assert len(list(tmp_path.rglob("*.dcm"))) == 6


def test_a_c_get_never_pauses_reading_its_association(
    demo_pacs: DemoPACS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The C-STOREs come on the C-GET's association: pausing it (as C-MOVE does to read
    pending responses in bursts) stalls the PACS until the pause ends, per instance."""
    from dicommove.engine import exchange
    from dicommove.engine.association import Association

    rests: list[float] = []
    monkeypatch.setattr(Association, "rest", lambda self, seconds: rests.append(seconds))
    monkeypatch.setattr(exchange, "_REST_FROM", 1)  # rest from the first pending response
    study = sorted(demo_pacs_studies(demo_pacs))[0]
    df = get(str(demo_pacs.node), [study], tmp_path, split=False)
    assert len(df) == 6 and rests == []


def demo_pacs_studies(demo_pacs: DemoPACS) -> list[str]:
    found = dicommove.find(demo_pacs.node, {"PatientID": "*"}, return_keys=[])
    return [str(uid) for uid in found["StudyInstanceUID"]]


@pytest.mark.parametrize("pacs_name", ["demo", "orthanc", "dcmqrscp"])
def test_auto_falls_back_to_c_get_when_the_pacs_does_not_know_us(
    pacs_name: str,
    request: pytest.FixtureRequest,
    demo_pacs: DemoPACS,
    demo_cohort: pd.DataFrame,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    if pacs_name == "demo":
        address = str(demo_pacs.node)
    else:
        server: Orthanc | DcmQrScp = request.getfixturevalue(pacs_name)
        address = server.address
    studies = sorted(demo_cohort["StudyInstanceUID"].unique())
    with caplog.at_level("WARNING", logger="dicommove"):
        df = dicommove.move(
            address,
            studies,
            out=tmp_path,
            method="auto",
            ae_title=STRANGER,
            port=0,
            progress=False,
        )
    assert sorted(df["SOPInstanceUID"]) == sorted(demo_cohort["SOPInstanceUID"])
    assert set(df["status"]) == {"received"}
    assert "retrieving with C-GET instead" in caplog.text


def test_auto_keeps_c_move_when_the_pacs_knows_us(
    demo_pacs: DemoPACS, store_port: int, demo_cohort: pd.DataFrame, tmp_path: Path
) -> None:
    before = len(demo_pacs.get_requests)
    study = demo_cohort["StudyInstanceUID"].iloc[0]
    df = dicommove.move(
        demo_pacs.node, [study], out=tmp_path, method="auto", port=store_port, progress=False
    )
    assert len(df) == 6 and set(df["status"]) == {"received"}
    assert len(demo_pacs.get_requests) == before  # no C-GET was sent


#: A storage class that no C-GET association of ours proposes.
UNPROPOSED = "1.2.840.10008.5.1.4.1.1.77.1.5.3"  # Stereometric Relationship Storage


@pytest.fixture(scope="module")
def odd_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A study of two CT instances and one of a class we do not propose for C-GET."""
    from dicommove.testing import make_cohort

    root = tmp_path_factory.mktemp("odd")
    cohort = make_cohort(root, patients=1, studies=1, series=1, instances=3, seed=7)
    odd = Path(cohort["path"].iloc[2])
    ds = dcmread(odd)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = UID(UNPROPOSED)
    ds.save_as(odd)
    return root, str(cohort["StudyInstanceUID"].iloc[0]), str(ds.SOPInstanceUID)


def _odd_server(pacs_name: str, root: Path, tmp_path: Path) -> Any:
    from peers import ensure_peers_or_skip

    if pacs_name == "demo":
        return DemoPACS(root)
    if pacs_name == "orthanc":
        ensure_peers_or_skip("Orthanc", "echoscu", "storescu")
        return Orthanc(tmp_path / "orthanc")
    ensure_peers_or_skip("dcmqrscp", "echoscu", "storescu")
    return DcmQrScp(tmp_path / "dcmqrscp")


@pytest.mark.parametrize("pacs_name", ["demo", "orthanc", "dcmqrscp"])
@pytest.mark.parametrize("told", [True, False], ids=["classes-told", "classes-not-told"])
def test_an_instance_of_a_class_not_proposed(
    pacs_name: str,
    told: bool,
    odd_study: tuple[Path, str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Where the PACS tells the classes of the study (SOPClassesInStudy: Orthanc, the demo
    PACS), the odd one is proposed first and arrives. Where it does not (dcmqrscp, or
    pretended here), the instance is a failed row naming it (and its class, where an
    IMAGE-level C-FIND says it), not asked for again; the others arrive."""
    from dicommove.engine.find import Finder

    if not told:

        async def silent(*_: Any) -> None:
            return None

        monkeypatch.setattr(Finder, "classes_in", silent)
    root, study, odd_uid = odd_study
    files = sorted(root.rglob("*.dcm"))
    with _odd_server(pacs_name, root, tmp_path) as server, caplog.at_level("INFO", "dicommove"):
        if pacs_name != "demo":
            server.load(files)
        address = str(server.node) if pacs_name == "demo" else server.address
        df = get(address, [study], tmp_path / "out", errors="ignore", split=False)
        asked = len(server.get_requests) if pacs_name == "demo" else None
    everything = {str(dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files}
    received = set(df.loc[df["status"] == "received", "SOPInstanceUID"])
    if told and pacs_name != "dcmqrscp":  # dcmqrscp does not return SOPClassesInStudy
        assert received == everything
        assert f"proposing 1 storage classes the studies hold first: {UNPROPOSED}" in caplog.text
        return
    failed = df[df["status"] == "failed"]
    # Orthanc 1.10 stops a C-GET at the first instance it cannot send (0xC000): that one
    # is given up, and the others are asked for again
    assert received == everything - {odd_uid}
    assert failed["SOPInstanceUID"].tolist() == [odd_uid]
    reason = failed["reason"].iloc[0]
    if pacs_name == "orthanc":
        assert "stopped there" in reason
    if pacs_name != "dcmqrscp":  # its C-FIND does not return SOPClassUID
        assert f"its SOP class {UNPROPOSED} (Stereometric Relationship Storage)" in reason
        assert "move it with C-MOVE" in reason
    assert asked in (None, 1)  # demo: answered 0xB000/0xA702 once, not asked again


def test_a_c_get_that_brings_nothing_says_so(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, tmp_path: Path
) -> None:
    study = demo_cohort["StudyInstanceUID"].iloc[0]
    demo_pacs.faults.drop_instances = set(
        demo_cohort.loc[demo_cohort["StudyInstanceUID"] == study, "SOPInstanceUID"]
    )
    df = get(str(demo_pacs.node), [study], tmp_path, errors="ignore", split=False)
    assert df["status"].tolist() == ["missing"]
    assert "none of them came on the C-GET's association" in df["reason"][0]
    assert "store SCP" not in df["reason"][0]


def test_auto_without_c_get_at_the_pacs_reports_the_destination(tmp_path: Path) -> None:
    """A PACS that offers C-MOVE only: no C-GET to fall back on, the destination error stays."""
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import (  # type: ignore[attr-defined]
        StudyRootQueryRetrieveInformationModelFind,
        StudyRootQueryRetrieveInformationModelMove,
        Verification,
    )

    from dicommove import MoveDestinationUnknown
    from dicommove.testing.peers import free_port

    def on_move(event: Any) -> Any:
        yield None, None  # pynetdicom: "move destination unknown" (0xA801)

    ae = AE(ae_title="MOVEONLY")
    for cx in (
        Verification,
        StudyRootQueryRetrieveInformationModelFind,
        StudyRootQueryRetrieveInformationModelMove,
    ):
        ae.add_supported_context(cx)
    port = free_port()
    server = ae.start_server(
        ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_MOVE, on_move)]
    )
    assert server is not None
    try:
        with pytest.raises(MoveDestinationUnknown, match="0xA801"):
            dicommove.move(
                f"MOVEONLY@127.0.0.1:{port}",
                ["1.2.826.0.1.3680043.2.1125.1"],
                out=tmp_path,
                method="auto",
                port=0,
                progress=False,
            )
    finally:
        server.shutdown()
