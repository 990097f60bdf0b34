"""verify=True: the instances a request should bring are listed with C-FIND first.

A PACS that answers Success while sending fewer instances, or none, is caught by name:
each listed instance that did not arrive is a ``missing`` row with its SOPInstanceUID,
and the request is asked again for exactly those.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from peers import DcmQrScp, Orthanc

import dicommove
from dicommove import RetryPolicy
from dicommove.testing import DemoPACS

DEMO_COHORT: dict[str, int] = {}


@pytest.fixture(autouse=True)
def _no_faults(demo_pacs: DemoPACS) -> Iterator[None]:
    yield
    demo_pacs.faults.clear()


def move(pacs: str, what: Any, out: Path, port: int, **kw: Any) -> pd.DataFrame:
    kw.setdefault("progress", False)
    df: pd.DataFrame = dicommove.move(pacs, what, out=out, port=port, verify=True, **kw)
    return df


def in_study(cohort: pd.DataFrame, study: str) -> list[str]:
    return sorted(cohort.loc[cohort["StudyInstanceUID"] == study, "SOPInstanceUID"])


def test_a_pacs_that_drops_instances_is_caught_by_name_and_asked_for_exactly_those(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    study = demo_cohort["StudyInstanceUID"].iloc[0]
    sops = in_study(demo_cohort, study)
    dropped = {sops[1], sops[4]}
    demo_pacs.faults.drop_instances = set(dropped)
    before = len(demo_pacs.move_requests)
    df = move(
        str(demo_pacs.node),
        [study],
        tmp_path,
        store_port,
        errors="ignore",
        split=False,
        retry=RetryPolicy(retries=1, backoff=0.01),
    )
    missing = df[df["status"] == "missing"]
    assert set(missing["SOPInstanceUID"]) == dropped
    assert missing["reason"].str.contains("verify=True").all()
    assert sorted(df.loc[df["status"] == "received", "SOPInstanceUID"]) == sorted(
        set(sops) - dropped
    )
    first, *retries = demo_pacs.move_requests[before:]
    assert first.QueryRetrieveLevel == "STUDY"
    # then one retry, series by series, for exactly the missing instances
    assert retries and all(ds.QueryRetrieveLevel == "IMAGE" for ds in retries)
    asked: set[str] = set()
    for ds in retries:
        uids = ds.SOPInstanceUID
        asked |= {uids} if isinstance(uids, str) else set(uids)
    assert asked == dropped


def test_success_with_nothing_sent_names_every_instance(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    study = demo_cohort["StudyInstanceUID"].iloc[0]
    demo_pacs.faults.drop_instances = set(in_study(demo_cohort, study))
    df = move(
        str(demo_pacs.node),
        [study],
        tmp_path,
        store_port,
        errors="ignore",
        split=False,
        retry=RetryPolicy(retries=0),
    )
    assert df["status"].tolist() == ["missing"] * 6
    assert sorted(df["SOPInstanceUID"]) == in_study(demo_cohort, study)


def test_without_verify_the_same_is_one_count_row(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    study = demo_cohort["StudyInstanceUID"].iloc[0]
    demo_pacs.faults.drop_instances = set(in_study(demo_cohort, study))
    df = dicommove.move(
        demo_pacs.node,
        [study],
        out=tmp_path,
        port=store_port,
        progress=False,
        errors="ignore",
        split=False,
    )
    assert df["status"].tolist() == ["missing"] and df["SOPInstanceUID"].isna().all()
    # case 6: Success, counts say 6 completed, no C-STORE arrived: our address is named
    reason = str(df["reason"].iloc[0])
    assert "the PACS reported 6 sub-operations completed but 0 instances arrived" in reason
    assert f"could not reach our store SCP at 127.0.0.1:{store_port}" in reason


@pytest.fixture(params=["demo", "orthanc", "dcmqrscp"])
def any_pacs(request: pytest.FixtureRequest, demo_pacs: DemoPACS) -> str:
    if request.param == "demo":
        return str(demo_pacs.node)
    server: Orthanc | DcmQrScp = request.getfixturevalue(request.param)
    return server.address


@pytest.mark.parametrize("method", ["move", "get"])
def test_a_complete_move_has_nothing_missing(
    any_pacs: str,
    method: str,
    demo_cohort: pd.DataFrame,
    peer_ports: dict[str, int],
    store_port: int,
    tmp_path: Path,
) -> None:
    port = store_port if "DEMO" in any_pacs else peer_ports["STORE-SCP"]
    studies = sorted(demo_cohort["StudyInstanceUID"].unique())
    df = move(any_pacs, studies, tmp_path, port, method=method)
    assert set(df["status"]) == {"received"}
    assert sorted(df["SOPInstanceUID"]) == sorted(demo_cohort["SOPInstanceUID"])


def test_verify_must_be_a_bool() -> None:
    with pytest.raises(dicommove.InputError, match="verify="):
        dicommove.Session("PACS@127.0.0.1:1", verify="yes")  # type: ignore[arg-type]


def test_cli_verify(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    from dicommove.cli import EXIT_FAILED, MANIFEST_NAME, main
    from dicommove.manifest import read_csv

    study = demo_cohort["StudyInstanceUID"].iloc[0]
    dropped = in_study(demo_cohort, study)[0]
    demo_pacs.faults.drop_instances = {dropped}
    argv = ["move", str(demo_pacs.node), "-p", str(store_port), "--no-progress", "--verify"]
    argv += ["-q", "QueryRetrieveLevel=STUDY", "-q", f"StudyInstanceUID={study}"]
    argv += ["--split", "never", "--retries", "0", "-o", str(tmp_path)]
    assert main(argv) in (EXIT_FAILED, 3)
    df = read_csv(tmp_path / MANIFEST_NAME)
    assert df.loc[df["status"] == "missing", "SOPInstanceUID"].tolist() == [dropped]


def test_image_level_names_each_missing_instance_once(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    first = demo_cohort.iloc[0]
    sops = sorted(
        demo_cohort.loc[
            demo_cohort["SeriesInstanceUID"] == first.SeriesInstanceUID, "SOPInstanceUID"
        ]
    )
    demo_pacs.faults.drop_instances = {sops[0]}
    query = dicommove.Query.image(first.StudyInstanceUID, first.SeriesInstanceUID, *sops)
    df = move(
        str(demo_pacs.node),
        query,
        tmp_path,
        store_port,
        errors="ignore",
        retry=RetryPolicy(retries=0),
    )
    assert df.loc[df["status"] == "missing", "SOPInstanceUID"].tolist() == [sops[0]]


def test_a_timed_out_request_is_not_also_missing_by_name(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    from dicommove import Timeouts

    study = demo_cohort["StudyInstanceUID"].iloc[0]
    demo_pacs.faults.stall_after, demo_pacs.faults.stall_seconds = 2, 5.0
    df = move(
        str(demo_pacs.node),
        [study],
        tmp_path,
        store_port,
        errors="ignore",
        split=False,
        timeouts=Timeouts(inactivity=0.5, cancel_grace=0.5),
        retry=RetryPolicy(retries=0),
    )
    assert "missing" not in set(df["status"])
    assert "timeout" in set(df["status"])


def test_a_study_list_shared_out_is_not_retried_for_the_others_instances(
    demo_pacs: DemoPACS,
    demo_cohort: pd.DataFrame,
    store_port: int,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    studies = sorted(demo_cohort["StudyInstanceUID"].unique())
    with caplog.at_level("WARNING", logger="dicommove"):
        df = move(str(demo_pacs.node), dicommove.Query.study(*studies), tmp_path, store_port)
    assert set(df["status"]) == {"received"} and len(df) == 24
    assert "did not arrive" not in caplog.text


def test_verify_refuses_a_foreign_destination() -> None:
    with pytest.raises(dicommove.InputError, match="verify=True checks what arrives here"):
        dicommove.Session("PACS@127.0.0.1:1", verify=True, move_destination="ELSEWHERE")
