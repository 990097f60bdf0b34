"""The cohort engine against a misbehaving demo PACS: workers, timeouts, retries, cancel, resume.

Reliability cases (../shared/reliability.md) are named in each test's docstring.
"""

from __future__ import annotations

import _thread
import itertools
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import DimseLog
from peers import free_port
from senders import wait_until

import dicommove
from dicommove import (
    AssociationRejected,
    ConnectError,
    MoveCancelled,
    MoveInterrupted,
    MoveTimeout,
    Query,
    RetryPolicy,
    Session,
    Timeouts,
)
from dicommove.testing import DemoPACS

DEMO_COHORT = dict(patients=2, studies=2, series=2, instances=3)  # 4 studies, 24 instances
#: Quick retries and a short C-CANCEL grace, for tests that provoke them.
FAST_RETRY = RetryPolicy(backoff=0.01)
FAST: dict[str, Any] = dict(retry=FAST_RETRY, timeouts=Timeouts(cancel_grace=1.0))


@pytest.fixture(autouse=True)
def _no_faults(demo_pacs: DemoPACS) -> Iterator[None]:
    demo_pacs.reset_counters()
    yield
    demo_pacs.faults.clear()
    demo_pacs.maximum_associations = 64


def cancels_reached_the_pacs(log: DimseLog) -> list[object]:
    """The associations that carried a C-CANCEL to the PACS, each one that of a C-MOVE."""
    cancels = wait_until(lambda: log.associations("C_CANCEL_RQ"), 5, "a C-CANCEL at the PACS")
    moves = log.associations("C_MOVE_RQ")
    assert all(any(c is m for m in moves) for c in cancels), "a C-CANCEL without a C-MOVE"
    return cancels


def run(demo_pacs: DemoPACS, what: Any, out: Path, store_port: int, **kw: Any) -> pd.DataFrame:
    kw.setdefault("progress", False)
    return dicommove.move(demo_pacs.node, what, out=out, port=store_port, **kw)


def wait_until_idle(pacs: DemoPACS, timeout: float = 10.0) -> None:
    """Wait (bounded) until the PACS has no association open."""
    tick = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if pacs.active_associations == 0:
            return
        tick.wait(0.01)
    raise AssertionError(f"the demo PACS still has {pacs.active_associations} associations")


def studies(cohort: pd.DataFrame) -> list[str]:
    return sorted(cohort["StudyInstanceUID"].unique())


def on_disk(out: Path) -> set[str]:
    """SOPInstanceUIDs of the files under ``out`` (file names of the default layout)."""
    return {p.stem for p in out.rglob("*.dcm") if ".dicommove" not in p.parts}


# -- workers -----------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 4])
def test_workers_deliver_every_instance_routed_to_its_row(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path, workers: int
) -> None:
    """Case 23: parallel moves into one store SCP, each instance routed to its request."""
    cohort = demo_cohort.drop_duplicates("StudyInstanceUID").set_index("StudyInstanceUID")
    frame = pd.DataFrame({"StudyInstanceUID": cohort.index}, index=[f"row{i}" for i in range(4)])
    demo_pacs.faults.delay_per_store = 0.01  # the moves overlap
    df = run(demo_pacs, frame, tmp_path, store_port, workers=workers)
    assert (df["status"] == "received").all(), df[["status", "reason"]]
    assert sorted(df["SOPInstanceUID"]) == sorted(demo_cohort["SOPInstanceUID"])
    for label, uid in frame["StudyInstanceUID"].items():
        assert set(df.loc[df["request"] == label, "StudyInstanceUID"]) == {uid}
    ids = demo_pacs.move_message_ids
    assert len(ids) == 4 and len(set(ids)) == 4  # unique across workers


def test_fewer_associations_than_workers_the_rest_carry_on(
    demo_pacs: DemoPACS,
    demo_cohort: pd.DataFrame,
    store_port: int,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Case 4: a PACS that takes one association: the extra workers stop, nothing is lost."""
    wait_until_idle(demo_pacs)  # the previous test's associations count until they close
    demo_pacs.maximum_associations = 1
    with caplog.at_level(logging.WARNING, logger="dicommove"):
        # (a backoff long enough for an association of the previous test to end)
        df = run(
            demo_pacs,
            studies(demo_cohort),
            tmp_path,
            store_port,
            workers=3,
            retry=RetryPolicy(backoff=0.2),
        )
    assert (df["status"] == "received").all(), df[["status", "reason"]]
    assert len(df) == len(demo_cohort)
    assert "the other workers carry on" in caplog.text


def test_transient_reject_is_retried_with_backoff_then_fails(
    demo_pacs: DemoPACS,
    demo_cohort: pd.DataFrame,
    store_port: int,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Case 4: rejected as transient every time: bounded retries, then a typed error."""
    wait_until_idle(demo_pacs)
    demo_pacs.maximum_associations = 1  # (pynetdicom's least) and another session holds it
    with Session(demo_pacs.node, ae_title="OTHER") as holder:
        holder.echo()
        with (
            caplog.at_level(logging.WARNING, logger="dicommove"),
            pytest.raises(AssociationRejected, match="transient") as info,
        ):
            run(demo_pacs, studies(demo_cohort)[0], tmp_path, store_port, workers=1, **FAST)
    assert info.value.result == 2
    assert caplog.text.count("retry ") == 3
    assert info.value.manifest is not None
    assert info.value.manifest["status"].tolist() == ["failed"]


def test_connection_refused_is_retried_a_bounded_number_of_times(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Case 1: refused: retried ``retries`` times, then ConnectError naming host, port, errno."""
    port = free_port()
    with (
        caplog.at_level(logging.WARNING, logger="dicommove"),
        pytest.raises(
            ConnectError, match=rf"127\.0\.0\.1:{port}: \[Errno \d+\] Connection refused"
        ),
    ):
        dicommove.move(
            f"PACS@127.0.0.1:{port}",
            "1.2.3",
            out=tmp_path,
            port=0,
            progress=False,
            retry=RetryPolicy(retries=2, backoff=0.01),
            timeouts=Timeouts(cancel_grace=1.0),
            workers=1,
        )
    assert caplog.text.count("retry ") == 2


# -- timeouts -----------------------------------------------------------------------------


@pytest.mark.parametrize("ignore_cancel", [False, True])
def test_a_silent_pacs_times_out_after_inactivity(
    demo_pacs: DemoPACS,
    dimse_log: DimseLog,
    demo_cohort: pd.DataFrame,
    store_port: int,
    tmp_path: Path,
    ignore_cancel: bool,
) -> None:
    """Case 8 (and 13): silent after 2 instances: C-CANCEL, grace, abort; rows read timeout."""
    study = studies(demo_cohort)[0]
    demo_pacs.faults.stall_after = 2
    demo_pacs.faults.ignore_cancel = ignore_cancel
    df = run(
        demo_pacs,
        study,
        tmp_path,
        store_port,
        errors="ignore",
        retry=FAST_RETRY,
        timeouts=Timeouts(inactivity=0.5, cancel_grace=1.0),
    )
    received = df[df["status"] == "received"]
    assert len(received) == 2
    problems = df[df["status"] != "received"]
    assert set(problems["status"]) == {"timeout"}, problems[["status", "reason"]]
    assert problems["reason"].str.contains("Timeouts.inactivity").all()
    assert len(cancels_reached_the_pacs(dimse_log)) == 1  # the one C-MOVE was cancelled
    # a PACS that honours the C-CANCEL confirms it (0xFE00): no abort after the grace
    confirmed = ~problems["reason"].str.contains("did not confirm the C-CANCEL")
    assert (confirmed if not ignore_cancel else ~confirmed).all(), problems["reason"]


def test_slow_stores_without_pending_responses_are_activity(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    """Case 9: no pending responses, a store every 0.25 s for 1.5 s: no timeout at 0.6 s."""
    study = studies(demo_cohort)[0]
    demo_pacs.faults.skip_pending = True
    demo_pacs.faults.delay_per_store = 0.25
    df = run(demo_pacs, study, tmp_path, store_port, timeouts=Timeouts(inactivity=0.6))
    assert (df["status"] == "received").all()
    assert len(df) == len(demo_cohort[demo_cohort["StudyInstanceUID"] == study])


def test_run_deadline_cancels_and_raises_a_timeout(
    demo_pacs: DemoPACS,
    dimse_log: DimseLog,
    demo_cohort: pd.DataFrame,
    store_port: int,
    tmp_path: Path,
) -> None:
    """Case 10: deadline passed: cancel the active moves, MoveTimeout with the manifest."""
    demo_pacs.faults.delay_per_store = 0.2  # 4 studies x 6 instances: ~2.4 s per worker
    with pytest.raises(MoveTimeout, match=r"deadline of 0\.6 s") as info:
        run(demo_pacs, studies(demo_cohort), tmp_path, store_port, deadline=0.6, **FAST)
    df = info.value.manifest
    assert df is not None
    assert set(df["status"]) <= {"received", "timeout"}
    assert (df["status"] == "timeout").any() and (df["status"] == "received").any()
    assert set(df["request"].dropna()) == {0, 1, 2, 3}  # every request accounted for
    # each request cut short (some received, some timeout) was running: its C-MOVE got a
    # C-CANCEL, each on its worker's association
    by_request = df.groupby("request")["status"].agg(set)
    cut_short = sum({"received", "timeout"} <= statuses for statuses in by_request)
    assert cut_short >= 1
    assert len(cancels_reached_the_pacs(dimse_log)) >= cut_short


# -- retries -------------------------------------------------------------------------------


def test_abort_mid_move_is_retried_for_the_missing_instances_only(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    """Case 11: the PACS aborts after 2 of 3 instances; the retry asks only for the third."""
    series = demo_cohort.iloc[0]["SeriesInstanceUID"]
    rows = demo_cohort[demo_cohort["SeriesInstanceUID"] == series]
    query = Query.image(rows.iloc[0]["StudyInstanceUID"], series, *rows["SOPInstanceUID"])
    demo_pacs.faults.abort_after = 2
    demo_pacs.faults.abort_count = 1
    df = run(demo_pacs, query, tmp_path, store_port, **FAST)
    assert (df["status"] == "received").all(), df[["status", "reason"]]
    assert sorted(df["SOPInstanceUID"]) == sorted(rows["SOPInstanceUID"])
    first, second = demo_pacs.move_requests
    assert len(first.SOPInstanceUID) == 3
    assert second.SOPInstanceUID == rows["SOPInstanceUID"].iloc[2]


@pytest.mark.parametrize("level", ["IMAGE", "STUDY"])
def test_abort_mid_move_without_retries_keeps_what_arrived_and_fails_the_rest(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path, level: str
) -> None:
    """Case 11 with retries=0: the files that arrived are kept (``received``); the rest is
    ``failed`` (not ``missing``: docs/manifest.md, a request with no final response),
    with a reason naming the abort; at IMAGE level one row per undelivered SOPInstanceUID,
    at STUDY level one request-level row with the PACS's count so far."""
    study = studies(demo_cohort)[0]
    rows = demo_cohort[demo_cohort["StudyInstanceUID"] == study]
    if level == "IMAGE":
        rows = rows[rows["SeriesInstanceUID"] == rows["SeriesInstanceUID"].iloc[0]]
        what: Any = Query.image(study, rows["SeriesInstanceUID"].iloc[0], *rows["SOPInstanceUID"])
    else:
        what = study
    demo_pacs.faults.abort_after = 2
    df = run(
        demo_pacs,
        what,
        tmp_path,
        store_port,
        errors="ignore",
        retry=RetryPolicy(retries=0),
        split=False,
    )
    assert len(demo_pacs.move_requests) == 1  # no retry
    sent = demo_pacs.sent_instances
    assert len(sent) == 2
    received = df[df["status"] == "received"]
    assert sorted(received["SOPInstanceUID"]) == sorted(sent) == sorted(on_disk(tmp_path))
    rest = df[df["status"] != "received"]
    assert set(rest["status"]) == {"failed"}, rest[["status", "reason"]]
    assert rest["reason"].str.contains("the PACS aborted the association").all()
    assert rest["move_status"].isna().all()  # no final response
    if level == "IMAGE":
        undelivered = set(rows["SOPInstanceUID"]) - set(sent)
        assert sorted(rest["SOPInstanceUID"]) == sorted(undelivered)
    else:
        assert len(rest) == 1 and rest["SOPInstanceUID"].isna().all()
        assert rest["StudyInstanceUID"].tolist() == [study]
        assert rest["completed"].tolist() == [2]


def test_a702_is_retried(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    """0xA702 (out of resources) is transient: retried; still failing, the rows say so."""
    study = studies(demo_cohort)[0]
    in_study = demo_cohort[demo_cohort["StudyInstanceUID"] == study]
    demo_pacs.faults.fail_instances = set(in_study["SOPInstanceUID"])  # every one: 0xA702
    df = run(
        demo_pacs,
        study,
        tmp_path,
        store_port,
        errors="ignore",
        retry=RetryPolicy(retries=2, backoff=0.01),
        timeouts=Timeouts(cancel_grace=1.0),
    )
    assert len(demo_pacs.move_requests) == 3
    assert df["reason"].str.contains("0xA702").any()
    assert not (df["status"] == "received").any()


# -- cancel ---------------------------------------------------------------------------------


def _first_instance(out: Path, timeout: float = 10.0) -> threading.Event:
    """An event set once a file has landed under ``out`` (polled by a helper thread)."""
    landed = threading.Event()

    def watch() -> None:
        for _ in range(int(timeout / 0.01)):
            if on_disk(out):
                landed.set()
                return
            landed.wait(0.01)

    threading.Thread(target=watch, daemon=True).start()
    return landed


def test_ctrl_c_cancels_releases_and_a_rerun_resumes(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    """Case 17: Ctrl-C: C-CANCEL, rows cancelled, port free; the re-run fetches only the rest."""
    demo_pacs.faults.delay_per_store = 0.1
    landed = _first_instance(tmp_path)

    def interrupt() -> None:
        if landed.wait(10):
            _thread.interrupt_main()

    threading.Thread(target=interrupt, daemon=True).start()
    with pytest.raises(MoveInterrupted) as info:
        run(demo_pacs, studies(demo_cohort), tmp_path, store_port, **FAST)
    assert isinstance(info.value, KeyboardInterrupt)
    df = info.value.manifest
    assert df is not None
    # after an uncaught Ctrl-C the exception is gone with the cell: the message says where
    assert "dicommove.last_manifest()" in str(info.value)
    last = dicommove.last_manifest()
    assert last is not None and last.equals(df)
    assert set(df["status"]) <= {"received", "cancelled"}
    assert (df["status"] == "cancelled").any()
    got = set(df.loc[df["status"] == "received", "SOPInstanceUID"])
    assert got == on_disk(tmp_path) and got
    started = set(df.loc[df["status"] == "received", "request"])
    unstarted = df[df["reason"].str.contains("not attempted", na=False)]
    assert not set(unstarted["request"]) & started  # a running move is never "not attempted"

    demo_pacs.faults.clear()
    demo_pacs.reset_counters()
    again = run(demo_pacs, studies(demo_cohort), tmp_path, store_port, resume=True)
    assert (again["status"] == "received").all()
    assert sorted(again["SOPInstanceUID"]) == sorted(demo_cohort["SOPInstanceUID"])
    complete_before = {
        uid
        for uid in studies(demo_cohort)
        if set(demo_cohort.loc[demo_cohort["StudyInstanceUID"] == uid, "SOPInstanceUID"]) <= got
    }
    asked = {str(ds.StudyInstanceUID) for ds in demo_pacs.move_requests}
    assert asked == set(studies(demo_cohort)) - complete_before


def test_job_cancel_stops_the_move_and_result_raises(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    """Case 17 from a background job: cancel() works while the caller stays free."""
    demo_pacs.faults.delay_per_store = 0.1
    landed = _first_instance(tmp_path)
    job = dicommove.start(
        demo_pacs.node,
        studies(demo_cohort),
        out=tmp_path,
        port=store_port,
        progress=False,
        **FAST,
    )
    assert landed.wait(10)
    live = job.manifest
    assert "pending" in set(live["status"])
    job.cancel()
    with pytest.raises(MoveCancelled) as info:
        job.result(timeout=30)
    assert type(info.value) is MoveCancelled  # not MoveInterrupted: no KeyboardInterrupt
    assert job.done()
    df = job.manifest
    assert (df["status"] == "cancelled").any()
    assert set(df["status"]) <= {"received", "cancelled"}


def test_job_result_returns_the_manifest(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    with Session(demo_pacs.node, out=tmp_path, port=store_port) as session:
        job = session.start(studies(demo_cohort), progress=False)
        df = job.result(timeout=60)
    assert (df["status"] == "received").all()
    assert len(df) == len(demo_cohort)
    assert job.manifest is df


# -- resume --------------------------------------------------------------------------------


def test_rerun_with_resume_fetches_nothing_new(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    first = run(demo_pacs, studies(demo_cohort), tmp_path, store_port)
    demo_pacs.reset_counters()
    second = run(demo_pacs, studies(demo_cohort), tmp_path, store_port, resume=True)
    assert demo_pacs.move_requests == []
    assert sorted(second["SOPInstanceUID"]) == sorted(first["SOPInstanceUID"])
    assert (second["status"] == "received").all()
    assert second["reason"].str.contains("earlier run").all()
    assert sorted(second["path"]) == sorted(first["path"])


def test_resume_refetches_a_request_whose_file_was_removed(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    first = run(demo_pacs, studies(demo_cohort), tmp_path, store_port)
    victim = first.iloc[0]
    Path(str(victim["path"])).unlink()
    demo_pacs.reset_counters()
    second = run(demo_pacs, studies(demo_cohort), tmp_path, store_port, resume=True)
    assert [str(ds.StudyInstanceUID) for ds in demo_pacs.move_requests] == [
        victim["StudyInstanceUID"]
    ]
    assert (second["status"] == "received").all()
    assert Path(str(victim["path"])).is_file()


@pytest.mark.parametrize("cut", [0, 1000], ids=["emptied", "truncated"])
def test_resume_refetches_a_file_cut_short(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path, cut: int
) -> None:
    """A crash before the group commit can leave an empty or short file under its name."""
    first = run(demo_pacs, studies(demo_cohort), tmp_path, store_port)
    victim = first.iloc[0]
    path = Path(str(victim["path"]))
    whole = path.read_bytes()
    path.write_bytes(whole[:cut])
    demo_pacs.reset_counters()
    second = run(demo_pacs, studies(demo_cohort), tmp_path, store_port, resume=True)
    assert [str(ds.StudyInstanceUID) for ds in demo_pacs.move_requests] == [
        victim["StudyInstanceUID"]
    ]
    assert (second["status"] == "received").all(), second[["status", "reason"]]
    assert path.read_bytes() == whole
    assert not (tmp_path / ".dicommove-conflicts").exists()


def test_journal_lines_are_json_and_name_each_instance(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    df = run(demo_pacs, studies(demo_cohort)[0], tmp_path, store_port)
    lines = [json.loads(x) for x in (tmp_path / ".dicommove" / "journal.jsonl").read_text().split()]
    instances = [x for x in lines if x["event"] == "instance"]
    assert sorted(x["sop"] for x in instances) == sorted(df["SOPInstanceUID"])
    assert all(not Path(x["path"]).is_absolute() for x in instances)
    (request,) = [x for x in lines if x["event"] == "request"]
    assert request["complete"] is True


# -- progress ------------------------------------------------------------------------------


def test_a_progress_callable_sees_the_move_and_its_end(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    from dicommove.progress import ProgressSnapshot

    seen: list[ProgressSnapshot] = []
    df = run(demo_pacs, studies(demo_cohort), tmp_path, store_port, progress=seen.append)
    last = seen[-1]
    assert last.finished and last.complete is True and not last.cancelled
    assert last.instances == len(df) == last.total
    assert last.requests_total == last.requests_done == 4
    assert last.nbytes == int(df["size"].sum())
    assert all(a.instances <= b.instances for a, b in itertools.pairwise(seen))


def test_the_widget_cancel_button_cancels_a_background_job(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    pytest.importorskip("ipywidgets")
    from dicommove.progress import WidgetReporter

    demo_pacs.faults.delay_per_store = 0.1
    landed = _first_instance(tmp_path)
    with Session(demo_pacs.node, out=tmp_path, port=store_port, **FAST) as session:
        job = session.start(studies(demo_cohort), progress="widget")
        assert landed.wait(10)
        reporter = job._reporter
        assert isinstance(reporter, WidgetReporter)
        reporter.cancel_button.click()
        with pytest.raises(MoveCancelled) as info:
            job.result(timeout=30)
        assert type(info.value) is MoveCancelled
    assert reporter._bar.bar_style == "danger"  # red: the move ended cancelled
    assert reporter.cancel_button.disabled
    assert "cancelled" in reporter.text()


# -- batches and duplicate rows ------------------------------------------------------------


def test_batched_moves_map_every_instance_back_to_its_row(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    uids = studies(demo_cohort)
    frame = pd.DataFrame(
        {"StudyInstanceUID": [*uids, uids[0]]}, index=["a", "b", "c", "d", "again"]
    )
    df = run(demo_pacs, frame, tmp_path, store_port, batch=3)
    sent = [
        list(ds.StudyInstanceUID) if ds["StudyInstanceUID"].VM > 1 else [ds.StudyInstanceUID]
        for ds in demo_pacs.move_requests
    ]
    assert sorted(map(len, sent)) == [1, 3]  # 4 studies in 2 C-MOVEs
    instances = df[df["SOPInstanceUID"].notna()]
    assert (instances["status"] == "received").all()
    assert len(instances) == len(demo_cohort)
    for label, uid in frame["StudyInstanceUID"].iloc[:4].items():
        assert set(instances.loc[instances["request"] == label, "StudyInstanceUID"]) == {uid}
    (dup,) = df[df["request"] == "again"].itertuples()
    assert dup.status == "duplicate" and "'a'" in dup.reason
    assert dup.StudyInstanceUID == uids[0]


# -- more than 65,535 sub-operations ---------------------------------------------------------


@pytest.mark.parametrize("model", ["study", "patient"])
def test_a_request_too_big_to_count_is_moved_series_by_series(
    demo_pacs: DemoPACS,
    demo_cohort: pd.DataFrame,
    store_port: int,
    tmp_path: Path,
    model: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The PACS says 65,535 remaining (the most a US can say): C-CANCEL, C-FIND, series moves."""
    demo_pacs.faults.overflow_counts = True
    demo_pacs.faults.delay_per_store = 0.02  # the C-CANCEL arrives while the move runs
    patient = demo_cohort["PatientID"].iloc[0]
    rows = demo_cohort[demo_cohort["PatientID"] == patient]
    what: Any = Query.patient(patient) if model == "patient" else studies(rows)
    with caplog.at_level(logging.WARNING, logger="dicommove"):
        df = run(demo_pacs, what, tmp_path, store_port, model=model, workers=1)
    assert "series by series" in caplog.text
    assert (df["status"] == "received").all(), df[["status", "reason"]]  # nothing twice
    assert sorted(df["SOPInstanceUID"]) == sorted(rows["SOPInstanceUID"])
    levels = [str(ds.QueryRetrieveLevel) for ds in demo_pacs.move_requests]
    top = "PATIENT" if model == "patient" else "STUDY"
    n_top = 1 if model == "patient" else rows["StudyInstanceUID"].nunique()
    assert levels[:1] == [top] and levels.count(top) == n_top
    # then one C-MOVE per series not yet complete: the whole series, or (when some of it
    # arrived before the C-CANCEL) its missing instances only
    assert set(levels) - {top} <= {"SERIES", "IMAGE"}
    assert len(levels) - n_top <= rows["SeriesInstanceUID"].nunique()
    assert demo_pacs.find_requests  # the series were listed with C-FIND


def test_a_study_cut_short_is_retried_for_its_missing_instances_only(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    """Case 11 at STUDY level: the retry lists series and instances (C-FIND), asks the rest."""
    study = studies(demo_cohort)[0]
    in_study = demo_cohort[demo_cohort["StudyInstanceUID"] == study]
    demo_pacs.faults.abort_after = 2
    demo_pacs.faults.abort_count = 1
    df = run(demo_pacs, study, tmp_path, store_port, **FAST)
    assert (df["status"] == "received").all(), df[["status", "reason"]]
    assert sorted(df["SOPInstanceUID"]) == sorted(in_study["SOPInstanceUID"])
    sent = demo_pacs.sent_instances
    assert sorted(sent) == sorted(in_study["SOPInstanceUID"])  # nothing sent twice
    assert str(demo_pacs.move_requests[0].QueryRetrieveLevel) == "STUDY"


def test_resume_asks_a_partial_request_only_for_what_is_missing(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    study = studies(demo_cohort)[0]
    in_study = demo_cohort[demo_cohort["StudyInstanceUID"] == study]
    demo_pacs.faults.abort_after = 4
    first = run(
        demo_pacs, study, tmp_path, store_port, errors="ignore", retry=RetryPolicy(retries=0)
    )
    assert (first["status"] == "received").sum() == 4
    demo_pacs.faults.clear()
    demo_pacs.reset_counters()
    again = run(demo_pacs, study, tmp_path, store_port, resume=True)
    assert (again["status"] == "received").all()
    assert sorted(again["SOPInstanceUID"]) == sorted(in_study["SOPInstanceUID"])
    assert len(demo_pacs.sent_instances) == len(in_study) - 4  # only the rest was sent
    earlier = again["reason"].str.contains("earlier run", na=False)
    assert earlier.sum() == 4


def test_a_connection_closed_during_set_up_is_retried(tmp_path: Path) -> None:
    """An abort during association set-up is transient: retried, then a typed error."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[int] = []

    def close_each() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(1)
            conn.close()

    thread = threading.Thread(target=close_each, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    try:
        with pytest.raises(dicommove.AssociationAborted):
            dicommove.move(
                f"PACS@127.0.0.1:{port}", "1.2.3", out=tmp_path, port=0, progress=False,
                retry=RetryPolicy(retries=2, backoff=0.01), timeouts=Timeouts(cancel_grace=1.0),
                workers=1,
            )  # fmt: skip
    finally:
        listener.close()
        thread.join(timeout=5)
    assert len(accepted) == 3
