"""Manifest rows from outcomes and arrivals: pure code, no sockets (dicommove.rows)."""

from __future__ import annotations

from typing import Any

import pytest

from dicommove.query import Query
from dicommove.rows import (
    EARLIER_RUN,
    Arrival,
    RequestOutcome,
    RunContext,
    Stop,
    Tally,
    request_rows,
    verdict,
)

STUDY, SERIES = "1.2.3", "1.2.3.1"
CT = "1.2.840.10008.5.1.4.1.1.2"


def arrival(sop: str, status: str = "received", **kw: Any) -> Arrival:
    fields: dict[str, Any] = {
        "sop": sop,
        "sop_class": CT,
        "transfer_syntax": "1.2.840.10008.1.2.1",
        "status": status,
        "reason": "",
        "study": STUDY,
        "series": SERIES,
        "patient": "PAT1",
        "path": f"/out/{sop}.dcm" if status in ("received", "duplicate") else "",
        "size": 100,
        "at": 1.0,
    }
    fields.update(kw)
    return Arrival(**fields)


def outcome(query: Query | None = None, **kw: Any) -> RequestOutcome:
    base: dict[str, Any] = {"index": "r", "query": query or Query.study(STUDY), "ran": True}
    base.update(kw)
    return RequestOutcome(**base)


def statuses(rows: list[dict[str, Any]]) -> list[tuple[Any, str]]:
    return [(r.get("SOPInstanceUID"), r["status"]) for r in rows]


def rows(out: RequestOutcome, arrivals: list[Arrival], ctx: RunContext | None = None) -> Any:
    return list(request_rows(out, arrivals, ctx or RunContext()))


def test_complete_success_is_one_row_per_instance() -> None:
    got = rows(outcome(final_status=0, completed=2), [arrival("1"), arrival("2")])
    assert statuses(got) == [("1", "received"), ("2", "received")]
    assert all(r["move_status"] == 0 and r["request"] == "r" for r in got)
    out = outcome(final_status=0, completed=2)
    tally = Tally(out.query)
    for a in (arrival("1"), arrival("2")):
        tally.add(a)
    assert verdict(out, tally, RunContext()) == (True, 0, "")


def test_fewer_arrivals_than_completed_sub_operations_is_missing() -> None:
    got = rows(outcome(final_status=0, completed=3), [arrival("1")])
    assert statuses(got) == [("1", "received"), (None, "missing")]
    assert "reported 3 sub-operations completed but 1 instances arrived" in got[-1]["reason"]


def test_nothing_arrived_although_counted_blames_the_store_address() -> None:
    ctx = RunContext(store_address="10.0.0.9:11111")
    got = rows(outcome(final_status=0, completed=4), [], ctx)
    assert statuses(got) == [(None, "missing")]
    assert "could not reach our store SCP at 10.0.0.9:11111" in got[0]["reason"]


def test_nothing_matched_is_not_found() -> None:
    assert statuses(rows(outcome(final_status=0), [])) == [(None, "not_found")]
    got = rows(outcome(final_status=0xC000, matched_nothing=True), [])
    assert statuses(got) == [(None, "not_found")]
    assert "C-FIND finds none" in got[0]["reason"]


@pytest.mark.parametrize(
    ("stop", "status", "words"),
    [
        (Stop.NONE, "failed", "not attempted"),
        (Stop.CANCEL, "cancelled", "not attempted: the move was cancelled"),
        (Stop.INTERRUPT, "cancelled", "not attempted: the move was cancelled"),
        (Stop.DEADLINE, "timeout", "before the move's deadline"),
    ],
)
def test_a_request_never_sent(stop: Stop, status: str, words: str) -> None:
    got = rows(outcome(ran=False), [], RunContext(stop=stop))
    assert statuses(got) == [(None, status)]
    assert words in got[0]["reason"]


def test_a_failure_status_names_every_uid_that_did_not_arrive() -> None:
    query = Query.study("1.2.3", "1.2.4")
    got = rows(outcome(query, final_status=0xA702, error_comment="busy"), [arrival("1")])
    assert statuses(got) == [("1", "received"), (None, "failed")]
    assert got[-1]["StudyInstanceUID"] == "1.2.4"
    assert "0xA702" in got[-1]["reason"] and got[-1]["reason"].endswith(": busy")


def test_a_pacs_that_could_deliver_nothing_hints_at_the_destination() -> None:
    # DCMTK dcmqrscp answers 0xA702 when it cannot reach the move destination
    got = rows(outcome(final_status=0xA702, failed=3), [])
    assert statuses(got) == [(None, "failed")]
    assert "cannot reach the move destination" in got[0]["reason"]
    out = outcome(final_status=0xA702, failed=3)
    assert verdict(out, Tally(out.query), RunContext())[2] == "failed"
    # some arrived: a real shortage, no such hint
    got = rows(outcome(final_status=0xA702, completed=1, failed=2), [arrival("1")])
    assert not any("move destination" in str(r.get("reason")) for r in got)


def test_cancelled_by_the_user_says_how() -> None:
    got = rows(outcome(final_status=0xFE00, cancelled=True), [], RunContext(stop=Stop.INTERRUPT))
    assert statuses(got) == [(None, "cancelled")]
    assert got[0]["reason"].startswith("cancelled (Ctrl-C)")


def test_a_timeout_wins_over_the_status() -> None:
    got = rows(outcome(final_status=0xFE00, timed_out="no response for 5 s"), [])
    assert statuses(got) == [(None, "timeout")]
    assert got[0]["reason"].startswith("no response for 5 s")


def test_image_level_lists_each_uid_missing() -> None:
    query = Query.image(STUDY, SERIES, "1", "2", "3")
    got = rows(outcome(query, final_status=0, completed=1), [arrival("1")])
    assert statuses(got) == [("1", "received"), ("2", "missing"), ("3", "missing")]


def test_a_failed_store_later_sent_again_is_one_received_row() -> None:
    arrivals = [arrival("1", "failed", reason="write failed"), arrival("1")]
    got = rows(outcome(final_status=0, completed=1), arrivals)
    assert statuses(got) == [("1", "received")]


def test_a_copy_is_one_row_and_a_refusal_is_its_own() -> None:
    arrivals = [arrival("1"), arrival("1"), arrival("2", "refused", reason="unsafe")]
    got = rows(outcome(final_status=0, completed=2), arrivals)
    assert statuses(got) == [("1", "received"), ("2", "refused")]
    out = outcome(final_status=0, completed=2)
    tally = Tally(out.query)
    for a in arrivals:
        tally.add(a)
    complete, _missing, _problem = verdict(out, tally, RunContext())
    assert complete is False  # a refused instance is a problem


def test_a_foreign_destination_has_request_rows_with_counts() -> None:
    ctx = RunContext(local_destination=False)
    got = rows(outcome(final_status=0, completed=5), [], ctx)
    assert statuses(got) == [(None, "moved")] and got[0]["completed"] == 5
    got = rows(outcome(final_status=0xB000, completed=4, failed=1), [], ctx)
    assert statuses(got) == [(None, "failed")]


def test_batched_rows_point_at_the_input_row_of_their_uid() -> None:
    query = Query.study("1.2.3", "1.2.4")
    out = outcome(
        query,
        index="a",
        sources={"1.2.3": "a", "1.2.4": "b"},
        duplicates=(("again", "a"),),
        final_status=0,
        completed=2,
    )
    got = rows(out, [arrival("1", study="1.2.3"), arrival("2", study="1.2.4")])
    assert [(r["request"], r["status"]) for r in got] == [
        ("a", "received"),
        ("b", "received"),
        ("again", "duplicate"),
    ]
    assert got[-1]["StudyInstanceUID"] == "1.2.3" and "'a'" in got[-1]["reason"]


def test_a_resumed_request_has_its_earlier_rows_only() -> None:
    out = outcome(resumed=True, ran=False)
    got = rows(out, [arrival("1", reason=EARLIER_RUN)])
    assert statuses(got) == [("1", "received")]
    assert got[0]["reason"] == EARLIER_RUN


def test_an_earlier_runs_instance_sent_again_is_counted_once() -> None:
    out = outcome(final_status=0, completed=1)
    tally = Tally(out.query)
    tally.add(arrival("1", reason=EARLIER_RUN))
    tally.add(arrival("1"))
    assert tally.n_ok == 1
    got = rows(out, [arrival("1", reason=EARLIER_RUN), arrival("1")])
    assert statuses(got) == [("1", "received")]


def test_pending_row_of_a_live_manifest() -> None:
    from dicommove.rows import pending_row

    row = pending_row(outcome(), running=True)
    assert (row["status"], row["reason"]) == ("pending", "running")
    assert pending_row(outcome(), running=False)["reason"] == "waiting for a worker"
