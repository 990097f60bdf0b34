"""Regression tests: one (or a few) per defect of the old engine (9bf229a), each able to fail.

Every test names its defect in its docstring. Each was run against the old engine
(a worktree of 9bf229a) and failed there; the call spellings that differ between the
two engines are kept in the helpers of the first section (``instance_store``,
``open_session``, ``session_closed``), so that only they change for such a run.

The store SCP tests build a :class:`StoreSCP` directly; the engine tests move from the
module's demo PACS (``DEMO_COHORT``) into our store SCP on ``store_port``.
"""

from __future__ import annotations

import _thread
import errno
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import psutil  # type: ignore[import-untyped]
import pytest
from conftest import DimseLog
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from senders import RawAssociation, encode, make_dataset, store_one, wait_until

import dicommove
from dicommove import DicomMoveError, MoveInterrupted, Session, Timeouts
from dicommove.engine import MoveJob
from dicommove.scp import InstanceStore, Received, StoreSCP
from dicommove.testing import DemoPACS

DEMO_COHORT = dict(patients=2, studies=2, series=1, instances=3)  # 4 studies, 12 instances
AE_TITLE = "DICOMMOVE"
MiB = 1 << 20


# -- the spellings of the API (the only lines that differ for a run on the old engine) --------


def instance_store(root: Path, *, fsync_each: bool) -> InstanceStore:
    """A prepared store; ``fsync_each``: each file reaches the disk before it is answered."""
    store = InstanceStore(root, durability="instance" if fsync_each else "none")
    store.prepare()
    store.begin()
    return store


def open_session(
    pacs: DemoPACS, out: Path, port: int, *, workers: int = 2, **timeouts: float
) -> Session:
    """A session on the demo PACS; ``timeouts`` are fields of :class:`Timeouts`."""
    return Session(pacs.node, out=out, port=port, workers=workers, timeouts=Timeouts(**timeouts))


def session_closed(session: Session) -> bool:
    return session.closed


# -- helpers ---------------------------------------------------------------------------------


@pytest.fixture
def start_scp(
    start_store_scp: Callable[..., tuple[StoreSCP, list[Received]]],
) -> Callable[..., tuple[StoreSCP, list[Received]]]:
    """Start StoreSCPs on 127.0.0.1 (port 0, AE ``DICOMMOVE``); all stopped at the end."""
    return start_store_scp


@pytest.fixture
def pacs(demo_pacs: DemoPACS) -> Iterator[DemoPACS]:
    """The module's demo PACS, with fresh counters and no faults left behind."""
    demo_pacs.reset_counters()
    yield demo_pacs
    demo_pacs.faults.clear()


def studies(cohort: pd.DataFrame) -> list[str]:
    return sorted(cohort["StudyInstanceUID"].unique())


def on_disk(out: Path) -> set[str]:
    """SOPInstanceUIDs of the files under ``out`` (file names of the default layout)."""
    return {p.stem for p in out.rglob("*.dcm") if ".dicommove" not in p.parts}


def wait_idle(pacs: DemoPACS, timeout: float = 10.0) -> None:
    """Wait (bounded) until the demo PACS has no association open."""
    wait_until(lambda: pacs.active_associations == 0, timeout, "the demo PACS without associations")


def assert_all_received(df: pd.DataFrame, cohort: pd.DataFrame) -> None:
    assert (df["status"] == "received").all(), df[["status", "reason"]].value_counts()
    assert sorted(df["SOPInstanceUID"]) == sorted(cohort["SOPInstanceUID"])


# -- defect 1: a descriptor closed twice after a failed fsync -----------------------------


@pytest.mark.parametrize("pixel_bytes", [0, 256 * 1024], ids=["small", "large"])
def test_failed_fsync_closes_each_descriptor_exactly_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pixel_bytes: int
) -> None:
    """Defect 1: ``Incoming.finish`` closed the temp file's descriptor twice when fsync failed.

    With several store threads the second ``close`` could close another association's
    freshly opened file (same number). Here the second close does nothing, as when the
    number had been reused, and is counted: each descriptor must be closed once, no temp
    file left, the record ``failed`` with EIO.
    """
    store = instance_store(tmp_path / "out", fsync_each=True)
    me = threading.get_ident()
    opened: list[int] = []
    closes: list[int] = []
    live: set[int] = set()
    real_open, real_close = os.open, os.close

    def recording_open(path: Any, flags: int, mode: int = 0o777, **kw: Any) -> int:
        fd = real_open(path, flags, mode, **kw)
        if threading.get_ident() == me:
            opened.append(fd)
            live.add(fd)
        return fd

    def recording_close(fd: int) -> None:
        if threading.get_ident() != me or fd not in opened:
            real_close(fd)
            return
        closes.append(fd)
        if fd in live:
            live.discard(fd)
            real_close(fd)
        # else: a second close; a real one would close whatever file now has this number

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    ds = make_dataset(pixel_bytes=pixel_bytes)
    data = encode(ds)
    monkeypatch.setattr(os, "open", recording_open)
    monkeypatch.setattr(os, "close", recording_close)
    monkeypatch.setattr(os, "fsync", failing_fsync)
    rec = store.store(
        data,
        sop_class_uid=CTImageStorage,
        sop_instance_uid=str(ds.SOPInstanceUID),
        transfer_syntax_uid=ExplicitVRLittleEndian,
    )
    monkeypatch.undo()

    assert opened, "the store opened no temp file"
    twice = {fd: closes.count(fd) for fd in set(opened) if closes.count(fd) != opened.count(fd)}
    assert not twice, f"descriptors opened {opened}, closed {closes}: {twice} (fd: closes)"
    assert rec.status == "failed", (rec.status, rec.reason)
    assert rec.errno == errno.EIO
    assert list(store.temp_dir.iterdir()) == []
    assert list(store.root.rglob("*.dcm")) == []


# -- defect 2: an A-RELEASE-RQ length read without a cap ------------------------------------


def test_release_rq_announcing_2_gib_is_aborted_without_allocating_it(
    start_scp: Callable[..., tuple[StoreSCP, list[Received]]],
) -> None:
    """Defect 2: the A-RELEASE-RQ body was read with no length cap (old scp.py ~957).

    A peer that passed the AE check could make the store SCP allocate up to 4 GiB. An
    A-RELEASE-RQ header announcing 2 GiB must be answered with an A-ABORT within 1 s,
    with no memory to speak of, and the SCP must go on serving.
    """
    scp, records = start_scp(allowed_calling_aes={"RAWSCU"})
    process = psutil.Process()
    with RawAssociation(scp.port, called=AE_TITLE, calling="RAWSCU") as raw:
        before = int(process.memory_info().rss)
        raw.sock.settimeout(1.0)
        raw.sock.sendall(struct.pack(">BBI", 5, 0, 2**31))
        answer: int | str
        try:
            answer = raw.read_pdu()[0]
        except TimeoutError:
            answer = "nothing within 1 s"
        except OSError as exc:
            answer = f"the connection closed without an A-ABORT ({exc})"
        growth = int(process.memory_info().rss) - before
    assert answer == 0x07 and growth < 8 * MiB, (
        f"answer: {answer!r} (A-ABORT is 7); the process grew by {growth / MiB:.0f} MiB"
    )
    assert store_one(scp.port, called=AE_TITLE) == 0
    wait_until(lambda: any(r.status == "received" for r in records), 10, "the stored record")


# -- defect 3: a second Ctrl-C became an "internal error" -------------------------------------


def test_second_ctrl_c_raises_move_interrupted_at_once(
    pacs: DemoPACS,
    dimse_log: DimseLog,
    demo_cohort: pd.DataFrame,
    store_port: int,
    tmp_path: Path,
) -> None:
    """Defect 3: after a second Ctrl-C the old ``_scu.receive`` called ``settimeout`` on the
    socket just closed, outside its ``try``: the raw OSError became "internal error, please
    report" instead of MoveInterrupted.

    The PACS stalls after one instance and ignores C-CANCEL; Ctrl-C once (C-CANCEL sent,
    seen by the PACS), then again: MoveInterrupted at once (well within the 30 s grace),
    with the partial manifest, and the store port is free.
    """
    pacs.faults.stall_after = 1
    pacs.faults.ignore_cancel = True
    grace = 30.0
    done = threading.Event()
    second_at: list[float] = []

    def interrupter() -> None:
        try:
            wait_until(lambda: done.is_set() or on_disk(tmp_path), 20, "the first instance")
            if done.is_set():
                return
            _thread.interrupt_main()  # the first Ctrl-C: the move sends a C-CANCEL
            wait_until(
                lambda: done.is_set() or "C_CANCEL_RQ" in dimse_log.kinds(), 20, "the C-CANCEL"
            )
            if done.is_set():
                return
            second_at.append(time.monotonic())
            _thread.interrupt_main()  # the second Ctrl-C, while the PACS ignores the cancel
        except TimeoutError:
            return

    thread = threading.Thread(target=interrupter, daemon=True)
    thread.start()
    try:
        with open_session(pacs, tmp_path, store_port, workers=1, cancel_grace=grace) as session:
            with pytest.raises(MoveInterrupted) as info:
                session.move(studies(demo_cohort), progress=False)
            ended = time.monotonic()
    finally:
        done.set()
        thread.join(30)
    exc = info.value
    assert type(exc) is MoveInterrupted
    assert "internal error" not in str(exc)
    assert second_at, "the second Ctrl-C was never sent"
    assert ended - second_at[0] < 5.0, f"{ended - second_at[0]:.1f} s after the second Ctrl-C"
    df = exc.manifest
    assert df is not None
    assert set(df["status"]) <= {"received", "cancelled"}, df[["status", "reason"]]
    got = set(df.loc[df["status"] == "received", "SOPInstanceUID"])
    assert got and got == on_disk(tmp_path)
    assert (df["status"] == "cancelled").any()
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.connect(("127.0.0.1", store_port))


class _CtrlCWhileLogged(logging.Handler):
    """Presses Ctrl-C (in the main thread) when a record starting with ``prefix`` is logged."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith(self.prefix):
            _thread.interrupt_main()


def test_second_ctrl_c_while_the_first_is_handled_raises_move_interrupted(
    pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    """Defect 3, its other timing: the second Ctrl-C comes while the first one's handler
    is still logging "interrupted: cancelling ...". It must still raise MoveInterrupted
    (not a bare KeyboardInterrupt) and leave no move running behind the caller.
    """
    pacs.faults.stall_after = 1
    pacs.faults.ignore_cancel = True
    done = threading.Event()

    def first_ctrl_c() -> None:
        try:
            wait_until(lambda: done.is_set() or on_disk(tmp_path), 20, "the first instance")
        except TimeoutError:
            return
        if not done.is_set():
            _thread.interrupt_main()

    second = _CtrlCWhileLogged("interrupted: cancelling")
    logger = logging.getLogger("dicommove")
    thread = threading.Thread(target=first_ctrl_c, daemon=True)
    caught: BaseException | None = None
    with open_session(pacs, tmp_path, store_port, workers=1, cancel_grace=30.0) as session:
        logger.addHandler(second)
        thread.start()
        try:
            session.move(studies(demo_cohort), progress=False)
        except BaseException as exc:  # a bare KeyboardInterrupt must not end the test run
            caught = exc
        finally:
            logger.removeHandler(second)
            done.set()
            thread.join(30)
            # whatever happened, end the move: the PACS now honours the cancel
            pacs.faults.ignore_cancel = False
            session.cancel()
            wait_until(lambda: not _listening(store_port), 20, "the store port free")
    assert type(caught) is MoveInterrupted, repr(caught)


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.connect(("127.0.0.1", port))
        except ConnectionRefusedError:
            return False
    return True


# -- defect 4: C-ECHO on a worker's association ------------------------------------------------


def test_echo_during_a_background_move_uses_its_own_association(
    pacs: DemoPACS,
    dimse_log: DimseLog,
    demo_cohort: pd.DataFrame,
    store_port: int,
    tmp_path: Path,
) -> None:
    """Defect 4: ``Session.echo()`` during a background ``start()`` used worker 0's
    association, so the C-ECHO reply and the C-MOVE responses could be read by the wrong
    side. Each echo must succeed, the move must complete, and no C-ECHO may travel on an
    association that carries a C-MOVE.
    """
    pacs.faults.delay_per_store = 0.1
    with open_session(pacs, tmp_path, store_port, workers=1, dimse=10) as session:
        job = session.start(studies(demo_cohort), progress=False)
        wait_until(lambda: on_disk(tmp_path), 20, "the first instance")
        for _ in range(5):
            session.echo()
        overlapped = not job.done()
        df = job.result(timeout=60)
    assert_all_received(df, demo_cohort)
    echoes = dimse_log.associations("C_ECHO_RQ")
    moves = dimse_log.associations("C_MOVE_RQ")
    assert echoes and moves
    shared = [a for a in echoes if any(a is m for m in moves)]
    assert not shared, "a C-ECHO used an association that carried a C-MOVE"
    assert overlapped, "the move ended before the echoes: slow the PACS down more"


# -- defect 5: close() under a running start() ---------------------------------------------------


def test_close_while_a_started_job_runs_lets_it_finish_then_releases(
    pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    """Defect 5: ``Session.close()`` while a ``start()``ed job ran released the associations
    the workers were still reading: ``with Session(...) as s: job = s.start(...)`` did that.

    The job must complete; then the session is closed, its associations are released,
    and a new move on it says it is closed.
    """
    pacs.faults.delay_per_store = 0.05
    with open_session(pacs, tmp_path, store_port) as session:
        job = session.start(studies(demo_cohort), progress=False)
        wait_until(lambda: on_disk(tmp_path), 20, "the first instance")
    running_at_close = not job.done()
    df = job.result(timeout=60)
    assert_all_received(df, demo_cohort)
    assert session_closed(session)
    wait_idle(pacs)
    with pytest.raises(DicomMoveError, match="closed"):
        session.move(studies(demo_cohort)[:1], progress=False)
    assert running_at_close, "the move ended before close(): slow the PACS down more"


# -- defect 6: dicommove.start() of a fast move left its session open ---------------------------


def test_a_started_tiny_move_closes_its_session(
    pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    """Defect 6: ``_api.start`` set ``job._close_session`` after the job's thread had
    started, so a move that ended first never closed its session (a race; repeated)."""
    study = studies(demo_cohort)[0]
    for attempt in range(5):
        job = dicommove.start(
            pacs.node, study, out=tmp_path / str(attempt), port=store_port, progress=False
        )
        df = job.result(timeout=30)
        assert (df["status"] == "received").all() and len(df) == 3, df
        assert session_closed(job.session), f"attempt {attempt}: the session is still open"
        wait_idle(pacs)


def test_session_closed_when_the_move_ends_before_start_returns(
    pacs: DemoPACS,
    demo_cohort: pd.DataFrame,
    store_port: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Defect 6, made deterministic: the caller's thread is slower than the move.

    ``Session.start`` is wrapped to return only once its move has ended (what a
    preempted caller sees); ``dicommove.start`` must still close the session.
    """
    original = Session.start

    def start_then_wait(self: Session, *args: Any, **kwargs: Any) -> MoveJob:
        job = original(self, *args, **kwargs)
        wait_until(job.done, 30, "the end of the move")
        return job

    monkeypatch.setattr(Session, "start", start_then_wait)
    job = dicommove.start(
        pacs.node, studies(demo_cohort)[0], out=tmp_path, port=store_port, progress=False
    )
    monkeypatch.undo()
    df = job.result(timeout=30)
    assert (df["status"] == "received").all() and len(df) == 3, df
    assert session_closed(job.session), "the session of a move that ended early is still open"
    wait_idle(pacs)


# -- defect 7: idle connections took the store SCP's association slots --------------------------


@pytest.mark.parametrize("idle_count", [24, 100])
def test_idle_connections_to_the_store_port_do_not_lock_the_pacs_out(
    pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path, idle_count: int
) -> None:
    """Defect 7: a store association slot was taken at TCP accept, before any byte, with a
    thread per connection and no cap: 24 idle connections made the store SCP reject the
    PACS ("too many store associations at once") and the move failed.

    The PACS aborts the first C-MOVE after one instance; while the move waits to retry
    (the store SCP listening, no store association open), ``idle_count`` connections
    that send nothing are opened. The retry and the next studies (each on a new store
    association) must deliver every instance.
    """
    pacs.faults.delay_per_store = 0.02
    pacs.faults.abort_after = 1
    pacs.faults.abort_count = 1
    idle: list[socket.socket] = []
    try:
        with open_session(pacs, tmp_path, store_port, workers=1) as session:
            job = session.start(studies(demo_cohort), progress=False)
            wait_until(
                lambda: pacs.store_associations >= 1 and pacs.active_associations == 0,
                20,
                "the first C-MOVE aborted and its store association closed",
            )
            for _ in range(idle_count):
                idle.append(socket.create_connection(("127.0.0.1", store_port), timeout=10))
            flooded_before_retry = len(pacs.move_requests) == 1
            df = job.result(timeout=60)
    finally:
        for sock in idle:
            sock.close()
    assert_all_received(df, demo_cohort)
    assert flooded_before_retry, "the retry came before the idle connections: inconclusive"
    assert pacs.store_associations >= 5  # the aborted one, its retry, and three more studies


def test_a_c_store_succeeds_with_40_idle_connections_open(
    start_scp: Callable[..., tuple[StoreSCP, list[Received]]],
) -> None:
    """Defect 7, on the store SCP alone: with 40 idle connections open (more than its 16
    association slots), a real C-STORE still succeeds."""
    scp, records = start_scp()
    idle = [socket.create_connection(("127.0.0.1", scp.port), timeout=10) for _ in range(40)]
    try:
        assert store_one(scp.port, called=AE_TITLE) == 0
    finally:
        for sock in idle:
            sock.close()
    wait_until(lambda: any(r.status == "received" for r in records), 10, "the stored record")


# -- connection hygiene ---------------------------------------------------------------------------


def test_a_connection_that_never_associates_is_closed_after_acse_timeout(
    start_scp: Callable[..., tuple[StoreSCP, list[Received]]],
) -> None:
    """Hygiene: a connection that never sends an A-ASSOCIATE-RQ is closed after
    ``acse_timeout`` (0.5 s here), not kept open."""
    scp, _ = start_scp(acse_timeout=0.5)
    with socket.create_connection(("127.0.0.1", scp.port), timeout=10) as sock:
        started = time.monotonic()
        try:
            data = sock.recv(1)  # bounded by the socket's 10 s timeout
        except ConnectionResetError:
            data = b""
        elapsed = time.monotonic() - started
    assert data == b"", data
    assert 0.4 <= elapsed < 3.0, f"closed after {elapsed:.2f} s"
