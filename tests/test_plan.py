"""plan(): folding identical requests and batching siblings into multi-UID C-MOVEs (pure)."""

from __future__ import annotations

import pandas as pd
import pytest

from dicommove import Query, QueryError
from dicommove.query import plan, to_requests


def frame(**columns: list[str]) -> pd.DataFrame:
    first = next(iter(columns.values()))
    df: pd.DataFrame = pd.DataFrame(columns, index=[f"r{i}" for i in range(len(first))])
    return df


def test_one_request_per_row_by_default() -> None:
    planned = plan(to_requests(frame(StudyInstanceUID=["1.1", "1.2"])))
    assert [str(p.request.query) for p in planned] == [
        "STUDY StudyInstanceUID=1.1",
        "STUDY StudyInstanceUID=1.2",
    ]
    assert [p.sources for p in planned] == [{"1.1": "r0"}, {"1.2": "r1"}]


def test_identical_rows_are_folded_with_a_pointer_back() -> None:
    planned = plan(to_requests(frame(StudyInstanceUID=["1.1", "1.2", "1.1", "1.1"])))
    assert [p.request.index for p in planned] == ["r0", "r1"]
    assert planned[0].duplicates == (("r2", "r0"), ("r3", "r0"))
    assert planned[1].duplicates == ()


def test_batches_group_siblings_in_input_order() -> None:
    uids = [f"1.{i}" for i in range(1, 8)]
    planned = plan(to_requests(frame(StudyInstanceUID=uids)), batch=3)
    assert [p.request.query.retrieve_uids() for p in planned] == [
        ["1.1", "1.2", "1.3"],
        ["1.4", "1.5", "1.6"],
        ["1.7"],
    ]
    assert planned[1].sources == {"1.4": "r3", "1.5": "r4", "1.6": "r5"}
    assert planned[2].request.query == Query.study("1.7")
    assert all(p.request.query.problems() == [] for p in planned)


def test_batches_only_join_rows_of_the_same_parent() -> None:
    df = frame(
        StudyInstanceUID=["1.1", "1.1", "1.2", "1.1"],
        SeriesInstanceUID=["1.1.1", "1.1.2", "1.2.1", "1.1.3"],
    )
    planned = plan(to_requests(df), batch=10)
    assert [(p.request.query.get("StudyInstanceUID"), p.sources) for p in planned] == [
        ("1.1", {"1.1.1": "r0", "1.1.2": "r1", "1.1.3": "r3"}),
        ("1.2", {"1.2.1": "r2"}),
    ]


def test_levels_and_models_are_never_mixed() -> None:
    requests = to_requests(
        [
            Query.study("1.1"),
            Query.series("1.1", "1.1.1"),
            Query.study("1.2").where(PatientID="P1").model("patient"),
        ]
    )
    assert len(plan(requests, batch=5)) == 3


@pytest.mark.parametrize("batch", [0, -1, 1.5, True, "2"])
def test_bad_batch_is_a_query_error(batch: object) -> None:
    with pytest.raises(QueryError, match="batch="):
        plan(to_requests("1.2.3"), batch=batch)  # type: ignore[arg-type]
