"""Splitting at the defaults (``split="auto"``): which C-MOVEs reach the PACS, and what the
manifest says (nothing of the split shows in it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import dicommove
from dicommove import Query
from dicommove.engine import scheduler
from dicommove.testing import DemoPACS

#: Three studies of 2 series x 50 instances: each at SPLIT_AT (100), so worth splitting.
DEMO_COHORT = dict(patients=1, studies=3, series=2, instances=50, rows=8, cols=8)


def moves(demo_pacs: DemoPACS, before: int) -> list[tuple[str, str]]:
    """(level, UID) of each C-MOVE the demo PACS received since ``before``."""
    out = []
    for ds in demo_pacs.move_requests[before:]:
        level = ds.QueryRetrieveLevel
        uid = ds.SeriesInstanceUID if level == "SERIES" else ds.StudyInstanceUID
        out.append((level, str(uid)))
    return out


def move(demo_pacs: DemoPACS, query: Query, out: Path, port: int, **kw: Any) -> pd.DataFrame:
    return dicommove.move(demo_pacs.node, query, out=out, port=port, progress=False, **kw)


def test_a_large_study_is_moved_series_by_series_over_idle_workers(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    study = demo_cohort["StudyInstanceUID"].iloc[0]
    expected = demo_cohort[demo_cohort["StudyInstanceUID"] == study]
    before, finds = len(demo_pacs.move_requests), len(demo_pacs.find_requests)
    df = move(demo_pacs, Query.study(study), tmp_path, store_port, workers=2)
    # one C-FIND for the series and their sizes, then one C-MOVE per series
    find = demo_pacs.find_requests[finds]
    assert find.QueryRetrieveLevel == "SERIES" and "NumberOfSeriesRelatedInstances" in find
    assert sorted(moves(demo_pacs, before)) == sorted(
        ("SERIES", s) for s in expected["SeriesInstanceUID"].unique()
    )
    assert (df["status"] == "received").all()
    assert sorted(df["SOPInstanceUID"]) == sorted(expected["SOPInstanceUID"])
    assert (df["request"] == 0).all()  # the manifest answers the request as it was given


def test_a_study_below_split_at_is_one_c_move(
    demo_pacs: DemoPACS,
    demo_cohort: pd.DataFrame,
    store_port: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(scheduler, "SPLIT_AT", 101)  # our studies have 100 instances
    study = demo_cohort["StudyInstanceUID"].iloc[0]
    before = len(demo_pacs.move_requests)
    df = move(demo_pacs, Query.study(study), tmp_path, store_port, workers=2)
    assert moves(demo_pacs, before) == [("STUDY", study)]
    assert (df["status"] == "received").sum() == 100


def test_one_worker_and_split_never_send_the_study_as_asked(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    study = demo_cohort["StudyInstanceUID"].iloc[0]
    before = len(demo_pacs.move_requests)
    move(demo_pacs, Query.study(study), tmp_path / "one", store_port, workers=1)
    move(demo_pacs, Query.study(study), tmp_path / "never", store_port, split=False)
    assert moves(demo_pacs, before) == [("STUDY", study), ("STUDY", study)]


def test_the_last_studies_of_a_cohort_are_split_so_that_no_worker_idles(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    """Two workers, three studies in one request: one C-MOVE per study, and the third,
    taken when nothing else is queued, series by series (else a worker would idle)."""
    studies = sorted(demo_cohort["StudyInstanceUID"].unique())
    before = len(demo_pacs.move_requests)
    df = move(demo_pacs, Query.study(*studies), tmp_path, store_port, workers=2)
    sent = moves(demo_pacs, before)
    assert sent[:2] == [("STUDY", studies[0]), ("STUDY", studies[1])]
    last = demo_cohort[demo_cohort["StudyInstanceUID"] == studies[2]]
    assert sorted(sent[2:]) == sorted(("SERIES", s) for s in last["SeriesInstanceUID"].unique())
    assert (df["status"] == "received").sum() == len(demo_cohort)
    assert (df["request"] == 0).all()
