"""move() and Session against the in-process demo PACS, over real loopback associations."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from peers import dataset_bytes, free_port
from pydicom.dataset import Dataset
from pynetdicom import AE, StoragePresentationContexts, evt

import dicommove
from dicommove import (
    AssociationRejected,
    ConnectError,
    LocalSetupError,
    MoveDestinationUnknown,
    MoveIncomplete,
    Query,
    QueryError,
    RetryPolicy,
    Session,
    Timeouts,
)
from dicommove.manifest import COLUMNS
from dicommove.testing import DemoPACS

AE_TITLE = "STORE-SCP"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
VERIFICATION = "1.2.840.10008.1.1"

DEMO_COHORT = dict(patients=2, studies=2, series=2, instances=3)


@pytest.fixture(autouse=True)
def _no_faults(demo_pacs: DemoPACS) -> Iterator[None]:
    yield
    demo_pacs.faults.clear()


def run(demo_pacs: DemoPACS, what: Any, out: Path, store_port: int, **kw: Any) -> pd.DataFrame:
    kw.setdefault("progress", False)
    return dicommove.move(demo_pacs.node, what, out=out, port=store_port, **kw)


def test_study_list_arrives_complete_and_byte_identical(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    studies = sorted(demo_cohort["StudyInstanceUID"].unique())
    df = run(demo_pacs, studies, tmp_path, store_port)
    assert list(df.columns) == list(COLUMNS)
    assert (df["status"] == "received").all()
    assert sorted(df["SOPInstanceUID"]) == sorted(demo_cohort["SOPInstanceUID"])
    # every request index points back at the input list
    by_request = df.groupby("request")["StudyInstanceUID"].unique()
    for i, study in enumerate(studies):
        assert list(by_request[i]) == [study]
    source = demo_cohort.set_index("SOPInstanceUID")["path"]
    for row in df.itertuples():
        assert Path(str(row.path)).is_relative_to(tmp_path)
        assert dataset_bytes(str(row.path)) == dataset_bytes(source[row.SOPInstanceUID])
        assert row.size == Path(str(row.path)).stat().st_size
    # nothing extra on disk: only the files the manifest lists (and the empty temp dir)
    on_disk = {str(p) for p in tmp_path.rglob("*.dcm")}
    assert on_disk == set(df["path"])
    assert list((tmp_path / ".dicommove-tmp").iterdir()) == []


def test_series_level_query(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    row = demo_cohort.iloc[0]
    df = run(
        demo_pacs, Query.series(row.StudyInstanceUID, row.SeriesInstanceUID), tmp_path, store_port
    )
    expected = demo_cohort[demo_cohort["SeriesInstanceUID"] == row.SeriesInstanceUID]
    assert sorted(df["SOPInstanceUID"]) == sorted(expected["SOPInstanceUID"])


def test_image_level_into_local_store(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    """The dicom-movescu limitation we remove: IMAGE-level moves to our own store SCP."""
    a, b = demo_cohort.iloc[0], demo_cohort.iloc[1]
    q = Query.image(a.StudyInstanceUID, a.SeriesInstanceUID, a.SOPInstanceUID, b.SOPInstanceUID)
    df = run(demo_pacs, q, tmp_path, store_port)
    assert sorted(df["SOPInstanceUID"]) == sorted([a.SOPInstanceUID, b.SOPInstanceUID])
    assert (df["status"] == "received").all()


def test_patient_root(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    pid = demo_cohort["PatientID"].iloc[0]
    df = run(demo_pacs, pid, tmp_path, store_port, model="patient")
    expected = demo_cohort[demo_cohort["PatientID"] == pid]
    assert sorted(df["SOPInstanceUID"]) == sorted(expected["SOPInstanceUID"])
    assert (df["PatientID"] == pid).all()


def test_dataframe_rows_map_back_to_index(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    rows = demo_cohort.iloc[[0, 4, 7]].set_index(pd.Index(["a", "b", "c"]))
    df = run(demo_pacs, rows, tmp_path, store_port)  # SOPInstanceUID column: IMAGE level per row
    assert df.set_index("request")["SOPInstanceUID"].to_dict() == rows["SOPInstanceUID"].to_dict()


def test_flat_layout(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    study = demo_cohort["StudyInstanceUID"].iloc[0]
    df = run(demo_pacs, study, tmp_path, store_port, layout="flat")
    assert {Path(p).parent for p in df["path"]} == {tmp_path.absolute()}


def test_not_found_is_a_row_and_raises(
    demo_pacs: DemoPACS, store_port: int, tmp_path: Path
) -> None:
    with pytest.raises(MoveIncomplete) as info:
        run(demo_pacs, "1.2.3.999", tmp_path, store_port)
    df = info.value.manifest
    assert df is not None
    assert df["status"].tolist() == ["not_found"]
    assert df["StudyInstanceUID"].tolist() == ["1.2.3.999"]
    again = run(demo_pacs, "1.2.3.999", tmp_path, store_port, errors="ignore")
    assert again["status"].tolist() == ["not_found"]


def test_partial_failure_with_failed_uid_list(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    study = demo_cohort["StudyInstanceUID"].iloc[0]
    in_study = demo_cohort[demo_cohort["StudyInstanceUID"] == study]["SOPInstanceUID"].tolist()
    demo_pacs.faults.fail_instances = {in_study[0]}
    df = run(demo_pacs, study, tmp_path, store_port, errors="ignore")
    assert df.loc[df["SOPInstanceUID"] == in_study[0], "status"].tolist() == ["failed"]
    assert (df["status"] == "received").sum() == len(in_study) - 1
    assert set(df["move_status"].dropna()) == {0xB000}


def test_success_with_fewer_instances_is_missing(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    study = demo_cohort["StudyInstanceUID"].iloc[0]
    in_study = demo_cohort[demo_cohort["StudyInstanceUID"] == study]["SOPInstanceUID"].tolist()
    demo_pacs.faults.drop_instances = {in_study[1]}
    with pytest.raises(MoveIncomplete) as info:
        run(demo_pacs, study, tmp_path, store_port)
    df = info.value.manifest
    assert df is not None
    missing = df[df["status"] == "missing"]
    assert len(missing) == 1
    assert "reported 6" in str(missing["reason"].iloc[0])
    assert (df["status"] == "received").sum() == len(in_study) - 1


@pytest.mark.parametrize("code", [0xA701, 0xA702, 0xA900, 0xC123])
def test_failure_statuses_become_rows(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path, code: int
) -> None:
    demo_pacs.faults.move_status = code
    demo_pacs.faults.error_comment = "synthetic failure"
    study = demo_cohort["StudyInstanceUID"].iloc[0]
    # (retries=0: 0xA702 is retried, and the retry would find everything here already)
    df = run(demo_pacs, study, tmp_path, store_port, errors="ignore", retry=RetryPolicy(retries=0))
    failed = df[df["status"] == "failed"]
    assert len(failed) >= 1
    assert f"0x{code:04X}" in str(failed["reason"].iloc[-1])
    assert "synthetic failure" in str(failed["reason"].iloc[-1])


@pytest.mark.parametrize("code", [0xA701, 0x0122, 0xC000, 0xCFFF, 0xD123])
def test_a_failure_status_raises_with_its_code_and_error_comment(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path, code: int
) -> None:
    """Case 16: a failure status (an unknown code too) is a typed error carrying the code
    and the PACS's ErrorComment; what arrived before it is kept."""
    demo_pacs.faults.move_status = code
    demo_pacs.faults.error_comment = f"synthetic {code:04X}"
    study = demo_cohort["StudyInstanceUID"].iloc[0]
    with pytest.raises(MoveIncomplete) as info:
        run(demo_pacs, study, tmp_path, store_port)  # errors="raise", the default retries
    exc = info.value
    assert type(exc) is MoveIncomplete
    assert exc.status == code
    assert exc.error_comment == f"synthetic {code:04X}"
    df = exc.manifest
    assert df is not None
    failed = df[df["status"] == "failed"]
    assert len(failed) == 1
    assert f"0x{code:04X}" in str(failed["reason"].iloc[0])
    assert f"synthetic {code:04X}" in str(failed["reason"].iloc[0])
    in_study = demo_cohort.loc[demo_cohort["StudyInstanceUID"] == study, "SOPInstanceUID"]
    assert sorted(df.loc[df["status"] == "received", "SOPInstanceUID"]) == sorted(in_study)


class _SentResponses:
    """The C-MOVE responses the demo PACS puts on the wire (its ``EVT_DIMSE_SENT``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.pending: list[Dataset] = []

    def __call__(self, event: Any) -> None:
        command = event.message.command_set
        if type(event.message).__name__ == "C_MOVE_RSP" and command.Status == 0xFF00:
            with self._lock:
                self.pending.append(command)


def test_pending_responses_without_counts_still_deliver_everything(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    """Case 16: pending C-MOVE responses with no Number of ... Suboperations: no crash,
    every instance arrives, and the move ends complete."""
    demo_pacs.faults.pending_without_counts = True
    sent = _SentResponses()
    server = demo_pacs._server  # the one way to see what the PACS sends
    assert server is not None
    server.bind(evt.EVT_DIMSE_SENT, sent)
    try:
        studies = sorted(demo_cohort["StudyInstanceUID"].unique())
        df = run(demo_pacs, studies, tmp_path, store_port)
    finally:
        server.unbind(evt.EVT_DIMSE_SENT, sent)
    assert (df["status"] == "received").all(), df[["status", "reason"]]
    assert sorted(df["SOPInstanceUID"]) == sorted(demo_cohort["SOPInstanceUID"])
    assert len(sent.pending) >= len(demo_cohort)  # the fault was on the wire
    counts = {0x00001020, 0x00001021, 0x00001022, 0x00001023}
    assert all(counts.isdisjoint(command.keys()) for command in sent.pending)


def test_unknown_destination(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, tmp_path: Path
) -> None:
    study = demo_cohort["StudyInstanceUID"].iloc[0]
    with pytest.raises(
        MoveDestinationUnknown, match=r"Register AE NOBODY at 127\.0\.0\.1:"
    ) as info:
        dicommove.move(
            demo_pacs.node, study, out=tmp_path, ae_title="NOBODY", port=0, progress=False
        )
    assert info.value.status == 0xA801
    assert info.value.manifest is not None
    assert info.value.manifest["status"].tolist() == ["failed"]


def test_an_abort_before_any_instance_while_c_find_matches_is_an_unknown_destination(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    """Case 5: the PACS aborts the C-MOVE before any C-STORE (Orthanc's way of saying
    "unknown destination") while a C-FIND finds the study: MoveDestinationUnknown."""
    demo_pacs.reset_counters()
    demo_pacs.faults.abort_after = 0
    study = demo_cohort["StudyInstanceUID"].iloc[0]
    with pytest.raises(
        MoveDestinationUnknown, match=rf"Register AE {AE_TITLE} at 127\.0\.0\.1:{store_port} "
    ) as info:
        run(demo_pacs, study, tmp_path, store_port, ae_title=AE_TITLE, split=False)
    assert info.value.status is None  # no final response
    assert "aborted" in str(info.value)
    assert demo_pacs.sent_instances == []
    assert len(demo_pacs.move_requests) == 1  # not retried: the destination is what to fix
    (found,) = demo_pacs.find_requests  # the C-FIND that finds the study
    assert (found.QueryRetrieveLevel, found.StudyInstanceUID) == ("STUDY", study)


def test_foreign_destination_has_counts(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, tmp_path: Path
) -> None:
    received: list[str] = []

    def on_store(event: Any) -> int:
        received.append(str(event.request.AffectedSOPInstanceUID))
        return 0

    other = AE(ae_title="OTHER")
    other.supported_contexts = StoragePresentationContexts
    server: Any = other.start_server(
        ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    try:
        demo_pacs.add_destination("OTHER", "127.0.0.1", int(server.server_address[1]))
        study = demo_cohort["StudyInstanceUID"].iloc[0]
        df = dicommove.move(
            demo_pacs.node, study, out=tmp_path, move_destination="OTHER", progress=False
        )
    finally:
        server.shutdown()
    assert df["status"].tolist() == ["moved"]
    assert df["completed"].tolist() == [6]
    assert df["failed"].tolist() == [0]
    assert len(received) == 6
    assert not list(tmp_path.rglob("*.dcm"))


def test_invalid_query_sends_nothing(demo_pacs: DemoPACS, store_port: int, tmp_path: Path) -> None:
    before = len(demo_pacs.move_requests)
    with pytest.raises(QueryError, match="not a unique key"):
        run(demo_pacs, {"StudyInstanceUID": "1.2.3", "AccessionNumber": "A1"}, tmp_path, store_port)
    assert len(demo_pacs.move_requests) == before


def test_store_port_in_use_fails_before_any_move(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, tmp_path: Path
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = int(busy.getsockname()[1])
        before = len(demo_pacs.move_requests)
        with pytest.raises(LocalSetupError, match="in use") as info:
            run(demo_pacs, demo_cohort["StudyInstanceUID"].iloc[0], tmp_path, taken)
        assert type(info.value) is LocalSetupError
    assert len(demo_pacs.move_requests) == before


def test_unwritable_output_fails_before_any_move(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    (tmp_path / "file").write_text("x")
    before = len(demo_pacs.move_requests)
    with pytest.raises(LocalSetupError, match="output directory") as info:
        run(
            demo_pacs,
            demo_cohort["StudyInstanceUID"].iloc[0],
            tmp_path / "file" / "out",
            store_port,
        )
    assert type(info.value) is LocalSetupError
    assert len(demo_pacs.move_requests) == before


def test_connection_refused(tmp_path: Path) -> None:
    pacs_port = free_port()
    with pytest.raises(ConnectError, match=f"127.0.0.1:{pacs_port}.*Connection refused") as info:
        dicommove.move(
            f"PACS@127.0.0.1:{pacs_port}",
            "1.2.3",
            out=tmp_path,
            port=0,
            progress=False,
            retry=RetryPolicy(retries=0),
        )
    manifest = info.value.manifest
    assert manifest is not None
    assert manifest["status"].tolist() == ["failed"]
    assert "not attempted" in str(manifest["reason"].iloc[0])


def test_association_rejected_names_the_fix(tmp_path: Path) -> None:
    strict = AE(ae_title="STRICT")
    strict.add_supported_context(STUDY_ROOT_MOVE)
    strict.add_supported_context(VERIFICATION)
    strict.require_calling_aet = ["SOMEONE-ELSE"]
    server: Any = strict.start_server(("127.0.0.1", 0), block=False)
    try:
        addr = f"STRICT@127.0.0.1:{server.server_address[1]}"
        with pytest.raises(AssociationRejected, match="register our calling AE") as info:
            dicommove.echo(addr, ae_title="ME")
        assert (info.value.source, info.value.reason) == (1, 3)
    finally:
        server.shutdown()


class _Rejecter:
    """A raw TCP server that answers every A-ASSOCIATE-RQ with an A-ASSOCIATE-RJ."""

    def __init__(self, result: int, source: int, reason: int) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.requests = 0  # A-ASSOCIATE-RQ PDUs received
        self._answer = bytes([0x03, 0, 0, 0, 0, 4, 0, result, source, reason])
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:  # closed: the test is over
                return
            with conn:
                conn.settimeout(10)
                with contextlib.suppress(OSError):
                    header = conn.recv(6, socket.MSG_WAITALL)
                    if header[:1] == b"\x01":
                        conn.recv(int.from_bytes(header[2:6], "big"), socket.MSG_WAITALL)
                        self.requests += 1
                        conn.sendall(self._answer)
                        conn.recv(1)  # until the requestor closes

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() (Linux)
        self.listener.close()
        self._thread.join(timeout=10)
        assert not self._thread.is_alive()


@pytest.mark.parametrize(
    ("source", "reason", "hint"),
    [
        (1, 3, "register our calling AE title 'ME' on the PACS"),
        (1, 7, "the called AE title 'WRONG-AE' is wrong"),
        (2, 2, "permanent: protocol version not supported"),
    ],
)
def test_a_permanent_reject_is_raised_once_without_retry(
    tmp_path: Path, source: int, reason: int, hint: str
) -> None:
    """Case 3: a permanent A-ASSOCIATE-RJ during a move: one association request, no
    retry (even with retries=3), AssociationRejected decoding the reason, with a hint."""
    pacs = _Rejecter(1, source, reason)
    try:
        with pytest.raises(AssociationRejected) as info:
            dicommove.move(
                f"WRONG-AE@127.0.0.1:{pacs.port}",
                ["1.2.3.1", "1.2.3.2"],
                out=tmp_path,
                ae_title="ME",
                port=0,
                progress=False,
                workers=1,
                retry=RetryPolicy(retries=3, backoff=0.01),
            )
    finally:
        pacs.close()
    exc = info.value
    assert (exc.result, exc.source, exc.reason) == (1, source, reason)
    assert hint in str(exc)
    assert pacs.requests == 1


def test_echo(demo_pacs: DemoPACS) -> None:
    """The C-ECHO reaches the peer, from our AE title; once the peer is gone, it raises."""
    echoes: list[tuple[str, str]] = []

    def on_echo(event: Any) -> int:
        echoes.append((event.assoc.requestor.ae_title, event.assoc.acceptor.ae_title))
        return 0x0000

    peer = AE(ae_title="ECHOSCP")
    peer.add_supported_context(VERIFICATION)
    server: Any = peer.start_server(
        ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_ECHO, on_echo)]
    )
    address = f"ECHOSCP@127.0.0.1:{server.server_address[1]}"
    try:
        dicommove.echo(address, ae_title="ECHO-TEST")
    finally:
        server.shutdown()
    assert echoes == [("ECHO-TEST", "ECHOSCP")]
    with pytest.raises(ConnectError, match=rf"127\.0\.0\.1:{server.server_address[1]}"):
        dicommove.echo(address, ae_title="ECHO-TEST")
    assert len(echoes) == 1
    dicommove.echo(demo_pacs.node)  # and the demo PACS answers it too


def test_session_reuse_and_close(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    studies = sorted(demo_cohort["StudyInstanceUID"].unique())
    with Session(demo_pacs.node, out=tmp_path, port=store_port) as s:
        a = s.move(studies[:1], progress=False)
        b = s.move(studies[1:2], progress=False)
    assert set(a["StudyInstanceUID"]) == {studies[0]}
    assert set(b["StudyInstanceUID"]) == {studies[1]}
    with pytest.raises(dicommove.DicomMoveError, match="this session is closed") as info:
        s.move(studies[:1], progress=False)
    assert type(info.value) is dicommove.DicomMoveError  # no subclass fits a closed session
    # the store store_port is free again once the move returned (as a server binds it)
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", store_port))
        probe.listen()


def test_message_ids_are_unique_per_session(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    studies = sorted(demo_cohort["StudyInstanceUID"].unique())
    before = len(demo_pacs.move_requests)
    with Session(demo_pacs.node, out=tmp_path, port=store_port) as s:
        s.move(studies, progress=False)
        s.move(studies, progress=False)
    ids = demo_pacs.move_message_ids[before:]
    assert len(ids) == 2 * len(studies)
    assert len(set(ids)) == len(ids)


def test_identifier_sent_is_exactly_the_query(
    demo_pacs: DemoPACS, store_port: int, tmp_path: Path
) -> None:
    before = len(demo_pacs.move_requests)
    # split=False: one C-MOVE as given (by default idle workers would share the two studies)
    query = Query.study("1.2.3.4", "1.2.3.5")
    run(demo_pacs, query, tmp_path, store_port, errors="ignore", split=False)
    identifier = demo_pacs.move_requests[before]
    assert isinstance(identifier, Dataset)
    assert {e.keyword for e in identifier} == {"QueryRetrieveLevel", "StudyInstanceUID"}
    assert list(identifier.StudyInstanceUID) == ["1.2.3.4", "1.2.3.5"]


def test_every_uid_of_a_list_is_accounted_for(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    present = demo_cohort["StudyInstanceUID"].iloc[0]
    df = run(demo_pacs, Query.study(present, "1.2.3.404"), tmp_path, store_port, errors="ignore")
    by_status = df.groupby("status", observed=True)["StudyInstanceUID"].unique()
    assert list(by_status["received"]) == [present]
    assert list(by_status["not_found"]) == ["1.2.3.404"]
    assert (df["request"] == 0).all()


def test_a_port_that_is_not_dicom_is_an_association_error(tmp_path: Path) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]

        def hang_up() -> None:
            conn, _ = server.accept()
            conn.recv(6)
            conn.close()

        import threading

        thread = threading.Thread(target=hang_up)
        thread.start()
        with pytest.raises(dicommove.AssociationAborted, match="did not establish an association"):
            dicommove.echo(f"PACS@127.0.0.1:{port}", timeouts=Timeouts(acse=5))
        thread.join()


def test_no_association_reply_times_out_after_the_acse_timeout(tmp_path: Path) -> None:
    """Reliability case 2: TCP accepted, no A-ASSOCIATE-AC: a typed error after acse_timeout."""
    import threading
    import time

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        done = threading.Event()

        def hold() -> None:
            conn, _ = server.accept()
            done.wait(10)  # holds the connection open, answers nothing
            conn.close()

        thread = threading.Thread(target=hold)
        thread.start()
        t0 = time.monotonic()
        try:
            with pytest.raises(
                dicommove.AssociationAborted, match=r"no association reply within 0\.5 s"
            ):
                dicommove.echo(f"PACS@127.0.0.1:{port}", timeouts=Timeouts(acse=0.5))
        finally:
            done.set()
            thread.join()
        assert 0.5 <= time.monotonic() - t0 < 5
