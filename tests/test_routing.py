"""Routing of received instances to concurrent requests (reliability case 23), no network.

Two requests are active at once on one session, as when several C-MOVEs share one store
SCP. Then reliability case 15 (FailedSOPInstanceUIDList in every shape), as pure rows.
"""

from __future__ import annotations

import asyncio

from dicommove import AsyncSession, Query, StoreOptions
from dicommove.engine.request import Part, RequestState
from dicommove.engine.router import Router
from dicommove.engine.run import Run
from dicommove.journal import request_key
from dicommove.progress import MoveStats, NullReporter
from dicommove.query import Planned, Request
from dicommove.rows import Arrival, RequestOutcome, RunContext, request_rows
from dicommove.store import Received

STUDY_A, STUDY_B = "1.2.3.1", "1.2.3.2"


def received(study: str, sop: str, *, msg_id: int | None, ae: str = "STORE-SCP") -> Received:
    return Received(
        sop_instance_uid=sop,
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        status="received",
        study_instance_uid=study,
        series_instance_uid=study + ".1",
        originator_ae=ae,
        originator_message_id=msg_id,
    )


def part_of(index: int, query: Query, message_id: int) -> Part:
    state = RequestState(Planned(Request(index, query), {}), request_key(query))
    part = state.parts[0]
    part.message_id = message_id
    return part


def two_active() -> tuple[Router, Part, Part]:
    router = Router("STORE-SCP")
    a = part_of(0, Query.study(STUDY_A), 11)
    b = part_of(1, Query.study(STUDY_B), 12)
    router.activate(a)
    router.activate(b)
    return router, a, b


def test_routed_by_move_originator_message_id() -> None:
    router, a, b = two_active()
    assert router.route(received(STUDY_B, "1.2.3.2.1.1", msg_id=12)) is b
    assert router.route(received(STUDY_A, "1.2.3.1.1.1", msg_id=11)) is a


def test_falls_back_to_the_keys_without_originator() -> None:
    router, a, _b = two_active()
    assert router.route(received(STUDY_A, "1.2.3.1.1.2", msg_id=None)) is a


def test_another_originator_ae_is_not_trusted_for_the_message_id() -> None:
    router, _a, b = two_active()
    # message 11 of some other SCU: routed by keys instead, to request b
    assert router.route(received(STUDY_B, "1.2.3.2.1.3", msg_id=11, ae="SOMEONE")) is b


def test_a_message_id_with_the_wrong_keys_is_not_routed() -> None:
    router, _a, _b = two_active()
    assert router.route(received("9.9.9", "9.9.9.1.1", msg_id=11)) is None


def test_a_deactivated_part_still_gets_its_late_instances() -> None:
    """A C-MOVE that ended on our side (aborted, timed out) may still have instances on
    the way, or a PACS that never saw the abort goes on sending: they belong to its
    request, by Message ID or, when none is running, by its keys; never one that does
    not match the keys."""
    router, a, b = two_active()
    router.deactivate(a)
    assert router.route(received(STUDY_A, "1.2.3.1.1.1", msg_id=11)) is a
    assert router.route(received("9.9.9", "9.9.9.1.1", msg_id=11)) is None
    router.deactivate(b)
    assert router.route(received(STUDY_A, "1.2.3.1.1.2", msg_id=None)) is a  # by its keys


def test_a_reused_message_id_routes_to_the_running_part() -> None:
    router, a, b = two_active()
    router.deactivate(a)
    b.message_id = 11  # the session's Message IDs wrapped around
    router.activate(b)
    assert router.route(received(STUDY_B, "1.2.3.2.1.1", msg_id=11)) is b
    assert router.route(received(STUDY_A, "1.2.3.1.1.1", msg_id=11)) is None


def _run_with_two_active(unrequested: str = "keep") -> tuple[Run, Part, Part]:
    session = AsyncSession(
        "PACS@127.0.0.1:104",
        port=0,
        store=StoreOptions(unrequested=unrequested),  # type: ignore[arg-type]
    )
    planned = [
        Planned(Request(0, Query.study(STUDY_A)), {}),
        Planned(Request(1, Query.study(STUDY_B)), {}),
    ]
    run = Run(
        session, planned, stats=MoveStats(), reporter=NullReporter(), resume=False, deadline=None
    )
    a, b = run.states[0].parts[0], run.states[1].parts[0]
    a.message_id, b.message_id = 11, 12
    run.router.activate(a)
    run.router.activate(b)
    return run, a, b


def test_an_instance_of_no_request_is_unrequested_and_counted_nowhere() -> None:
    async def check() -> None:
        run, a, b = _run_with_two_active()
        rec = received("9.9.9", "9.9.9.1.1", msg_id=11)
        assert run.accept(rec) is True
        run.on_instance(rec)
        assert rec.status == "unrequested"
        assert run.unrequested == 1
        assert a.request.tally.n_ok == 0 and b.request.tally.n_ok == 0
        mine = received(STUDY_A, "1.2.3.1.1.1", msg_id=11)
        assert run.accept(mine) is True
        run.on_instance(mine)
        assert a.request.tally.n_ok == 1 and b.request.tally.n_ok == 0

    asyncio.run(check())


def test_refuse_policy_refuses_before_the_file_is_named() -> None:
    async def check() -> None:
        run, _a, _b = _run_with_two_active("refuse")
        rec = received("9.9.9", "9.9.9.1.2", msg_id=None)
        assert run.accept(rec) is False
        assert "unrequested" in rec.reason
        assert run.accept(received(STUDY_A, "1.2.3.1.1.9", msg_id=None)) is True

    asyncio.run(check())


# -- reliability case 15: FailedSOPInstanceUIDList in every shape, no network ------------


def arrival(sop: str) -> Arrival:
    return Arrival(
        sop=sop,
        sop_class="1.2.840.10008.5.1.4.1.1.2",
        transfer_syntax="1.2.840.10008.1.2.1",
        status="received",
        reason="",
        study=STUDY_A,
        series=STUDY_A + ".1",
        patient="",
        path=f"/out/{sop}.dcm",
        size=10,
        at=0.0,
    )


def rows_of(
    query: Query, arrived: list[str], failed: int, failed_uids: list[str]
) -> list[tuple[str | None, str]]:
    out = RequestOutcome(
        index="row",
        query=query,
        ran=True,
        final_status=0xB000,
        completed=len(arrived),
        failed=failed,
        failed_uids=failed_uids,
    )
    rows = request_rows(out, [arrival(s) for s in arrived], RunContext())
    return [(r.get("SOPInstanceUID"), r["status"]) for r in rows]


def test_a_multi_valued_failed_list_marks_each_instance_failed() -> None:
    got = rows_of(Query.study(STUDY_A), ["1.1"], 2, ["1.2", "1.3"])
    assert sorted(got, key=str) == sorted(
        [("1.1", "received"), ("1.2", "failed"), ("1.3", "failed")], key=str
    )


def test_an_empty_or_absent_failed_list_still_counts_the_failures() -> None:
    out = RequestOutcome(
        index="row",
        query=Query.study(STUDY_A),
        ran=True,
        final_status=0xB000,
        completed=1,
        failed=2,
    )
    rows = list(request_rows(out, [arrival("1.1")], RunContext()))
    assert [(r.get("SOPInstanceUID"), r["status"]) for r in rows] == [
        ("1.1", "received"),
        (None, "failed"),
    ]
    assert "2 sub-operations failed at the PACS" in rows[-1]["reason"]


def test_a_failed_list_naming_an_instance_that_arrived_is_not_doubled() -> None:
    got = rows_of(Query.study(STUDY_A), ["1.1", "1.2"], 1, ["1.2"])
    assert got == [("1.1", "received"), ("1.2", "received")]


def test_a_failed_list_of_unrequested_uids_at_image_level() -> None:
    """UIDs the request never named are reported once each, never as received."""
    query = Query.image(STUDY_A, STUDY_A + ".1", "1.1", "1.2")
    got = rows_of(query, ["1.1"], 2, ["1.2", "9.9"])
    assert dict(got) == {"1.1": "received", "1.2": "failed", "9.9": "failed"}
    assert len(got) == 3
