"""Composite Instance Root (PS3.4 C.6.3): C-MOVE and C-GET of SOPInstanceUIDs alone.

The demo PACS serves it; Orthanc 1.10.1 and dcmqrscp 3.6.7 do not, and say so clearly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pandas as pd
import pytest
from peers import DcmQrScp, Orthanc, dataset_bytes

import dicommove
from dicommove import AssociationAborted, Query, QueryError
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
