"""Instances by SOPInstanceUID alone: Composite Instance Root (PS3.4 C.6.3) and
relational-retrieve in Study Root (SOP Class Extended Negotiation, PS3.4 C.5.2).

The demo PACS serves both; Orthanc 1.10.1 and dcmqrscp 3.6.7 do neither, and we say so.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pandas as pd
import pytest
from peers import DcmQrScp, Orthanc, dataset_bytes

import dicommove
from dicommove import AssociationAborted, InputError, MoveError, Query, QueryError
from dicommove.cli import EXIT_OK, main
from dicommove.testing import DemoPACS

DEMO_COHORT: dict[str, int] = {}


def spread(cohort: pd.DataFrame) -> list[str]:
    """SOPInstanceUIDs from every study and series: no one parent above them."""
    return sorted(cohort.groupby("SeriesInstanceUID")["SOPInstanceUID"].first())


@pytest.mark.parametrize("method", ["move", "get"])
def test_instances_by_uid_alone(
    demo_pacs: DemoPACS,
    demo_cohort: pd.DataFrame,
    store_port: int,
    tmp_path: Path,
    method: Literal["move", "get"],
) -> None:
    uids = spread(demo_cohort)
    df = dicommove.move(
        demo_pacs.node,
        pd.DataFrame({"SOPInstanceUID": uids}),
        out=tmp_path,
        port=store_port,
        model="composite",
        method=method,
        progress=False,
    )
    assert sorted(df["SOPInstanceUID"]) == uids and set(df["status"]) == {"received"}
    source = dict(zip(demo_cohort["SOPInstanceUID"], demo_cohort["path"], strict=True))
    if method == "move":  # C-GET may come in the other uncompressed syntax (test_get.py)
        for row in df.itertuples():
            assert dataset_bytes(str(row.path)) == dataset_bytes(source[str(row.SOPInstanceUID)])
    assert sorted(df["request"]) == list(range(len(uids)))


def test_one_request_listing_instances_with_verify(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    uids = spread(demo_cohort)
    query = Query.from_keys(
        {"QueryRetrieveLevel": "IMAGE", "SOPInstanceUID": uids}, model="composite"
    )
    df = dicommove.move(
        demo_pacs.node, query, out=tmp_path, port=store_port, progress=False, verify=True
    )
    assert sorted(df["SOPInstanceUID"]) == uids and set(df["status"]) == {"received"}


def test_identifiers_are_checked_for_the_model(tmp_path: Path) -> None:
    with pytest.raises(QueryError, match="SOPInstanceUID alone"):
        dicommove.move(
            "PACS@127.0.0.1:1",
            {"QueryRetrieveLevel": "IMAGE", "StudyInstanceUID": "1.2", "SOPInstanceUID": "1.3"},
            out=tmp_path,
            model="composite",
        )
    with pytest.raises(QueryError, match="no C-FIND"):
        dicommove.find("PACS@127.0.0.1:1", {"SOPInstanceUID": "1.3"}, model="composite")
    with pytest.raises(QueryError):  # in Study Root, an instance needs its study and series
        dicommove.move("PACS@127.0.0.1:1", pd.DataFrame({"SOPInstanceUID": ["1.3"]}), out=tmp_path)


@pytest.mark.parametrize("pacs_name", ["orthanc", "dcmqrscp"])
@pytest.mark.parametrize("method", ["move", "get"])
def test_a_pacs_without_it_says_so(
    pacs_name: str,
    method: Literal["move", "get"],
    request: pytest.FixtureRequest,
    demo_cohort: pd.DataFrame,
    tmp_path: Path,
) -> None:
    server: Orthanc | DcmQrScp = request.getfixturevalue(pacs_name)
    with pytest.raises(AssociationAborted, match="does not support Composite Instance Root"):
        dicommove.move(
            server.address,
            pd.DataFrame({"SOPInstanceUID": spread(demo_cohort)[:1]}),
            out=tmp_path,
            model="composite",
            method=method,
            port=0,
            progress=False,
        )


def test_cli_composite(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    uids = spread(demo_cohort)[:2]
    argv = ["move", str(demo_pacs.node), "--composite", "-p", str(store_port), "--no-progress"]
    argv += ["-q", "QueryRetrieveLevel=IMAGE", "-q", "SOPInstanceUID=" + "\\".join(uids)]
    assert main([*argv, "-o", str(tmp_path)]) == EXIT_OK
    assert sorted(p.stem for p in tmp_path.rglob("*.dcm")) == sorted(uids)


# -- relational-retrieve ----------------------------------------------------------------------


@pytest.fixture
def relational_pacs(demo_pacs: DemoPACS) -> Iterator[DemoPACS]:
    """The demo PACS, accepting relational-retrieve for this test."""
    demo_pacs.relational = True
    try:
        yield demo_pacs
    finally:
        demo_pacs.relational = False


@pytest.mark.parametrize("method", ["move", "get"])
@pytest.mark.parametrize("batch", [1, 50])
def test_relational_retrieve_moves_instances_by_uid_alone(
    relational_pacs: DemoPACS,
    demo_cohort: pd.DataFrame,
    store_port: int,
    tmp_path: Path,
    method: Literal["move", "get"],
    batch: int,
) -> None:
    uids = spread(demo_cohort)
    sent = len(relational_pacs.move_requests) + len(relational_pacs.get_requests)
    df = dicommove.move(
        relational_pacs.node,
        pd.DataFrame({"SOPInstanceUID": uids}),
        out=tmp_path,
        port=store_port,
        relational=True,
        method=method,
        batch=batch,
        progress=False,
    )
    assert sorted(df["SOPInstanceUID"]) == uids and set(df["status"]) == {"received"}
    assert sorted(df["request"]) == list(range(len(uids)))
    # the instances sit in every study and series: each row went out without its parents
    assert df["StudyInstanceUID"].nunique() > 1 and df["SeriesInstanceUID"].nunique() > 1
    requests = (relational_pacs.move_requests + relational_pacs.get_requests)[sent:]
    assert len(requests) == (1 if batch > 1 else len(uids))


def test_a_pacs_that_declines_relational_retrieve_stops_with_what_to_do(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    sent = len(demo_pacs.move_requests)
    with pytest.raises(MoveError, match=r"relational-retrieve, which DEMOPACS.* declined") as info:
        dicommove.move(
            demo_pacs.node,
            pd.DataFrame({"SOPInstanceUID": spread(demo_cohort)[:2]}),
            out=tmp_path,
            port=store_port,
            relational=True,
            progress=False,
        )
    assert "resolve=True" in str(info.value)
    assert len(demo_pacs.move_requests) == sent  # nothing was sent that the PACS may refuse
    manifest = info.value.manifest
    assert manifest is not None and "received" not in set(manifest["status"])


def test_with_full_keys_relational_changes_nothing(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    rows = demo_cohort.head(3)[["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"]]
    df = dicommove.move(
        demo_pacs.node, rows, out=tmp_path, port=store_port, relational=True, progress=False
    )
    assert set(df["status"]) == {"received"} and len(df) == 3


def test_without_relational_the_error_names_both_ways_out(tmp_path: Path) -> None:
    with pytest.raises(QueryError, match=r"resolve=True.*relational=True"):
        dicommove.move("PACS@127.0.0.1:1", pd.DataFrame({"SOPInstanceUID": ["1.3"]}), out=tmp_path)
    query = Query.from_keys({"QueryRetrieveLevel": "IMAGE", "SOPInstanceUID": "1.3"})
    assert query.relational and not query.problems(relational=True)
    assert not Query.from_keys({"StudyInstanceUID": "1.2"}).relational
    with pytest.raises(InputError, match="relational='yes': use True or False"):
        dicommove.move("PACS@127.0.0.1:1", "1.2", out=tmp_path, relational="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize("pacs_name", ["orthanc", "dcmqrscp"])
@pytest.mark.parametrize("method", ["move", "get"])
def test_orthanc_and_dcmqrscp_decline_relational_retrieve(
    pacs_name: str,
    method: Literal["move", "get"],
    request: pytest.FixtureRequest,
    peer_cohort: pd.DataFrame,
    tmp_path: Path,
) -> None:
    server: Orthanc | DcmQrScp = request.getfixturevalue(pacs_name)
    with pytest.raises(MoveError, match=f"{server.ae_title}@.* declined"):
        dicommove.move(
            server.address,
            pd.DataFrame({"SOPInstanceUID": spread(peer_cohort)[:1]}),
            out=tmp_path,
            relational=True,
            method=method,
            port=0,
            progress=False,
        )


def test_cli_relational(
    relational_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    uids = spread(demo_cohort)[:2]
    argv = ["move", str(relational_pacs.node), "--relational", "-p", str(store_port)]
    argv += ["--no-progress", "-q", "QueryRetrieveLevel=IMAGE"]
    argv += ["-q", "SOPInstanceUID=" + "\\".join(uids)]
    assert main([*argv, "-o", str(tmp_path)]) == EXIT_OK
    assert sorted(p.stem for p in tmp_path.rglob("*.dcm")) == sorted(uids)
