"""Routing of received instances to concurrent requests (reliability case 23), no network.

Two requests are active at once on one session, as when several C-MOVEs share one store SCP.
"""

from __future__ import annotations

from dicommove import Query, Request, Session
from dicommove.engine import _RequestState
from dicommove.scp import Received

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


def session_with_two_active() -> tuple[Session, _RequestState, _RequestState]:
    session = Session("PACS@127.0.0.1:104", port=0)
    a = _RequestState(Request(0, Query.study(STUDY_A)), message_id=11)
    b = _RequestState(Request(1, Query.study(STUDY_B)), message_id=12)
    session._active.update({11: a, 12: b})
    return session, a, b


def test_routed_by_move_originator_message_id() -> None:
    session, a, b = session_with_two_active()
    session._on_instance(received(STUDY_B, "1.2.3.2.1.1", msg_id=12))
    session._on_instance(received(STUDY_A, "1.2.3.1.1.1", msg_id=11))
    assert [r.sop_instance_uid for r in a.received] == ["1.2.3.1.1.1"]
    assert [r.sop_instance_uid for r in b.received] == ["1.2.3.2.1.1"]


def test_falls_back_to_the_keys_without_originator() -> None:
    session, a, b = session_with_two_active()
    session._on_instance(received(STUDY_A, "1.2.3.1.1.2", msg_id=None))
    assert [r.sop_instance_uid for r in a.received] == ["1.2.3.1.1.2"]
    assert b.received == []


def test_another_originator_ae_is_not_trusted_for_the_message_id() -> None:
    session, a, b = session_with_two_active()
    # message 11 of some other SCU: routed by keys instead, to request b
    session._on_instance(received(STUDY_B, "1.2.3.2.1.3", msg_id=11, ae="SOMEONE"))
    assert a.received == []
    assert [r.sop_instance_uid for r in b.received] == ["1.2.3.2.1.3"]


def test_a_message_id_with_the_wrong_keys_is_unrequested() -> None:
    session, a, b = session_with_two_active()
    rec = received("9.9.9", "9.9.9.1.1", msg_id=11)
    session._on_instance(rec)
    assert a.received == [] and b.received == []
    assert rec.status == "unrequested"
    assert [(r.sop_instance_uid, r.status) for r in session._unrequested] == [
        ("9.9.9.1.1", "unrequested")
    ]


def test_refuse_policy_refuses_before_the_file_is_named() -> None:
    session, _, _ = session_with_two_active()
    session.unrequested = "refuse"
    rec = received("9.9.9", "9.9.9.1.2", msg_id=None)
    assert session._accept(rec) is False
    assert "unrequested" in rec.reason
    assert session._accept(received(STUDY_A, "1.2.3.1.1.9", msg_id=None)) is True


# -- reliability case 15: FailedSOPInstanceUIDList in every shape, no network ------------


def finished_state(
    query: Query, arrived: list[str], failed: int, failed_uids: list[str]
) -> tuple[Session, _RequestState]:
    session = Session("PACS@127.0.0.1:104", port=0)
    state = _RequestState(Request("row", query), message_id=11, attempts=1)
    session._active[11] = state
    for sop in arrived:
        session._on_instance(received(STUDY_A, sop, msg_id=11))
    state.final_status, state.completed, state.failed = 0xB000, len(arrived), failed
    state.failed_uids = failed_uids
    return session, state


def rows_of(session: Session, state: _RequestState) -> list[tuple[str | None, str]]:
    return [(r.get("SOPInstanceUID"), r["status"]) for r in session._state_rows(state, None)]


def test_a_multi_valued_failed_list_marks_each_instance_failed() -> None:
    query = Query.study(STUDY_A)
    session, state = finished_state(query, ["1.1"], 2, ["1.2", "1.3"])
    assert sorted(rows_of(session, state), key=str) == sorted(
        [("1.1", "received"), ("1.2", "failed"), ("1.3", "failed")], key=str
    )


def test_an_empty_or_absent_failed_list_still_counts_the_failures() -> None:
    session, state = finished_state(Query.study(STUDY_A), ["1.1"], 2, [])
    rows = list(session._state_rows(state, None))
    assert [(r.get("SOPInstanceUID"), r["status"]) for r in rows] == [
        ("1.1", "received"),
        (None, "failed"),
    ]
    assert "2 sub-operations failed at the PACS" in rows[-1]["reason"]


def test_a_failed_list_naming_an_instance_that_arrived_is_not_doubled() -> None:
    session, state = finished_state(Query.study(STUDY_A), ["1.1", "1.2"], 1, ["1.2"])
    assert rows_of(session, state) == [("1.1", "received"), ("1.2", "received")]


def test_a_failed_list_of_unrequested_uids_at_image_level() -> None:
    """UIDs the request never named are reported once each, never as received."""
    query = Query.image(STUDY_A, STUDY_A + ".1", "1.1", "1.2")
    session, state = finished_state(query, ["1.1"], 2, ["1.2", "9.9"])
    got = dict(rows_of(session, state))
    assert got["1.1"] == "received" and got["1.2"] == "failed" and got["9.9"] == "failed"
    assert len(rows_of(session, state)) == 3
