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
