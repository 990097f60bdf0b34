"""Issue 11: forged bytes, slow peers and floods against the running store SCP.

Reliability cases 30 (oversized PDUs), 31 (slow or idle connections) and 32 (malformed
PDUs), and the store SCP's identity rule (who may send with a bare ``host:port``).
Every attack is a raw socket from :mod:`dicommove.testing.hostile`; the ones during a
move come from other loopback addresses (127.0.0.2 and up) while a real PACS sends.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd
import pytest
from peers import ensure_peers_or_skip
from senders import RawAssociation, encode, make_dataset, store_one, wait_until

import dicommove
from dicommove import MoveIncomplete, Session, StoreAssociationRefused, StoreOptions
from dicommove.scp import Received, StoreSCP
from dicommove.testing import DemoPACS, PacsFaults, make_cohort
from dicommove.testing.hostile import (
    ATTACKS,
    Attack,
    AttackError,
    Outcome,
    associate_rq,
    run_attack,
)
from dicommove.testing.peers import LOOPBACK, Orthanc, free_port

AE_TITLE = "DICOMMOVE"
PACS_AE = "DEMOPACS"
DEMO_COHORT = {"patients": 1, "studies": 2, "series": 2, "instances": 10}


@pytest.fixture
def start_scp(start_store_scp: Any) -> Any:
    """Start a store SCP (AE ``DICOMMOVE``) and return a (scp, records) pair."""
    return lambda **options: Running(*start_store_scp(**options))


class Running(NamedTuple):
    scp: StoreSCP
    records: list[Received]


# -- case 30 and 32: each attack on its own ---------------------------------------------------


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
def test_each_attack_is_aborted_within_a_second_with_flat_memory(
    start_scp: Any, attack: Attack
) -> None:
    """Every forged PDU is answered with an A-ABORT within a second; the SCP allocates no
    more than a few MB for it (Python allocations traced across every thread, the loop's
    included); and a real C-STORE succeeds right after."""
    scp = start_scp().scp
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        outcome = run_attack("127.0.0.1", scp.port, attack, called_ae=AE_TITLE)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert outcome.answer == "abort", outcome
    assert outcome.seconds < 1.0, outcome
    # the largest payload is built in this thread (1 MiB); the SCP must add little to it
    assert peak < 4 << 20, f"{attack.name}: {peak / 2**20:.1f} MiB traced"
    assert store_one(scp.port, called=AE_TITLE) == 0


def test_max_pdu_zero_still_caps_p_data_at_16_mib(start_scp: Any) -> None:
    """Max PDU "unlimited" (0) on the wire is still a 16 MiB cap on what we read."""
    scp = start_scp(max_pdu=0).scp
    over = next(a for a in ATTACKS if a.name == "p-data-over-max")
    outcome = run_attack("127.0.0.1", scp.port, over, called_ae=AE_TITLE)
    assert outcome.answer == "abort" and outcome.seconds < 1.0, outcome
    # PDUs of 1 MiB (over the 256 KiB default) are fine when we announced no limit
    ds = make_dataset(pixel_bytes=3 << 20)
    with RawAssociation(scp.port, called=AE_TITLE) as raw:
        assert raw.peer_max_pdu == 0
        assert raw.store(encode(ds), sop_instance=ds.SOPInstanceUID) == 0
        raw.release()


def test_violations_are_logged_with_the_address_and_reason(
    start_scp: Any, caplog: pytest.LogCaptureFixture
) -> None:
    scp = start_scp().scp
    attack = next(a for a in ATTACKS if a.name == "p-data-2gib")
    with caplog.at_level(logging.WARNING, logger="dicommove"):
        run_attack("127.0.0.1", scp.port, attack, called_ae=AE_TITLE, source="127.0.0.3")
        wait_until(lambda: "127.0.0.3" in caplog.text, 5, "the log line")
    assert "P-DATA of 2147483647 bytes over our maximum" in caplog.text


# -- case 31: slow and idle peers ---------------------------------------------------------------


def _trickle(sock: socket.socket, data: bytes, every: float, stop: threading.Event) -> None:
    for i in range(len(data)):
        if stop.wait(every):
            return
        try:
            sock.sendall(data[i : i + 1])
        except OSError:
            return


def test_a_message_trickling_in_below_min_rate_is_aborted(
    start_scp: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The issue's probe: one byte every 0.3 s held an association for as long as it
    kept dripping, since every byte reset the network timeout (2 s here). Now a message
    in progress must arrive at min_rate over rate_window (1 s here)."""
    scp = start_scp(network_timeout=2.0, min_rate=1024, rate_window=1.0).scp
    stop = threading.Event()
    with socket.create_connection(("127.0.0.1", scp.port), timeout=10) as sock:
        sock.sendall(associate_rq(AE_TITLE))
        assert sock.recv(1) == b"\x02"  # A-ASSOCIATE-AC
        sock.settimeout(0.2)
        while True:  # drain the rest of the AC
            try:
                sock.recv(65536)
            except TimeoutError:
                break
        sock.settimeout(10)
        echo = struct.pack(">BBI", 4, 0, 1000) + bytes(1000)  # a P-DATA, dripped
        dripper = threading.Thread(target=_trickle, args=(sock, echo, 0.3, stop))
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="dicommove"):
            dripper.start()
            try:
                answer = sock.recv(6)
            except ConnectionResetError:
                answer = b""
            held = time.monotonic() - started
            stop.set()
            dripper.join()
    assert answer[:1] == b"\x07", answer  # A-ABORT
    assert 1.0 <= held < 3.0, f"held {held:.1f} s"
    assert "too slow" in caplog.text and "min_rate" in caplog.text


def test_an_association_idle_between_messages_is_not_cut_by_min_rate(start_scp: Any) -> None:
    """The rate applies to a message in progress: silence between messages is the
    network timeout's business."""
    scp = start_scp(network_timeout=10.0, min_rate=1 << 20, rate_window=0.5).scp
    ds = make_dataset()
    with RawAssociation(scp.port, called=AE_TITLE) as raw:
        assert raw.store(encode(ds), sop_instance=ds.SOPInstanceUID) == 0
        idle = threading.Event()
        idle.wait(1.6)  # three rate windows with no message in progress
        ds2 = make_dataset()
        assert raw.store(encode(ds2), sop_instance=ds2.SOPInstanceUID) == 0
        raw.release()


def test_a_flood_from_one_address_does_not_evict_another_address(start_scp: Any) -> None:
    """Pending connections are capped per address (4): 60 connections from 127.0.0.2
    drop their own oldest, never the one 127.0.0.1 opened before them."""
    scp = start_scp(max_pending_per_ip=4, max_pending=32).scp
    legit = socket.create_connection(("127.0.0.1", scp.port), timeout=10)
    flood = [
        socket.create_connection(
            ("127.0.0.1", scp.port), timeout=10, source_address=("127.0.0.2", 0)
        )
        for _ in range(60)
    ]
    try:
        # the flood's surplus is closed; at most 4 of its connections stay open
        def open_count() -> int:
            alive = 0
            for sock in flood:
                sock.setblocking(False)
                try:
                    alive += sock.recv(1) != b""
                except BlockingIOError:
                    alive += 1
                except OSError:
                    pass
            return alive

        wait_until(lambda: open_count() <= 4, 10, "the flood cut down to 4 connections")
        legit.sendall(associate_rq(AE_TITLE, "RAWSCU"))
        assert legit.recv(1) == b"\x02", "the earlier connection from 127.0.0.1 was dropped"
    finally:
        legit.close()
        for sock in flood:
            sock.close()


# -- attacks during real moves ------------------------------------------------------------------


def _fire(port: int, calling: str, called: str = "STORE-SCP") -> list[Any]:
    """Run every attack at once, each from its own loopback address; their outcomes."""
    outcomes: list[Any] = [None] * len(ATTACKS)

    def one(i: int, attack: Attack) -> None:
        try:
            outcomes[i] = run_attack(
                "127.0.0.1",
                port,
                attack,
                called_ae=called,
                calling_ae=calling,
                source=f"127.0.1.{i + 1}",
            )
        except Exception as exc:  # e.g. AttackError: the valid association was rejected
            outcomes[i] = exc

    threads = [threading.Thread(target=one, args=(i, a)) for i, a in enumerate(ATTACKS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return outcomes


@pytest.fixture
def pacs(demo_pacs: DemoPACS) -> Iterator[DemoPACS]:
    """The module's demo PACS, its faults reset afterwards."""
    yield demo_pacs
    demo_pacs.faults = PacsFaults()


@pytest.mark.parametrize("guarded", [False, True], ids=["ae-only", "allow-host"])
def test_every_attack_during_a_move_from_the_demo_pacs(
    pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path, guarded: bool
) -> None:
    """While the demo PACS sends 40 instances, every attack hits the same store port from
    its own address, the post-association ones spoofing the PACS's AE title. Each is
    aborted within a second, and every instance arrives.

    AE titles are not authentication: with the AE check alone, the spoofed C-STORE
    command of one attack gets in and is a ``refused`` row of its own (flagged, never
    a file). With ``allowed_hosts`` set to the PACS's address, the spoofers are rejected
    at association and the manifest is exactly the cohort.
    """
    cohort = demo_cohort
    pacs.faults.delay_per_store = 0.05  # about a second of C-STOREs per worker
    store = StoreOptions(allowed_hosts=["127.0.0.1"] if guarded else None)
    before = pacs.store_associations
    with Session(pacs.node, out=tmp_path / "out", port=store_port, workers=2, store=store) as s:
        job = s.start(sorted(cohort["StudyInstanceUID"].unique()), progress=False)
        wait_until(lambda: pacs.store_associations > before, 20, "the first store association")
        outcomes = _fire(store_port, PACS_AE)
        still_moving = not job.done()
        assert_survived(job, outcomes, cohort, guarded=guarded)
    assert still_moving, "the PACS finished before the attacks did: inconclusive"


def assert_survived(job: Any, outcomes: list[Any], cohort: pd.DataFrame, *, guarded: bool) -> None:
    """Each attack was aborted within a second (or, ``guarded``, rejected at association);
    every requested instance arrived; the only other rows are the spoofers' refused ones."""
    try:
        df = job.result(timeout=120)
    except MoveIncomplete as exc:
        assert not guarded, exc
        assert exc.manifest is not None
        df = exc.manifest
    for attack, outcome in zip(ATTACKS, outcomes, strict=True):
        if guarded and attack.associate:
            assert isinstance(outcome, AttackError), outcome
            continue
        assert isinstance(outcome, Outcome) and outcome.answer == "abort", outcome
        assert outcome.seconds < 1.0, outcome
    requested = df["SOPInstanceUID"].isin(cohort["SOPInstanceUID"])
    assert (df.loc[requested, "status"] == "received").all(), df["status"].value_counts()
    assert sorted(df.loc[requested, "SOPInstanceUID"]) == sorted(cohort["SOPInstanceUID"])
    assert set(df.loc[~requested, "status"]) <= {"refused", "failed"}
    if guarded:
        assert requested.all(), df.loc[~requested, ["status", "reason"]]


@pytest.mark.peers
def test_every_attack_during_a_move_from_orthanc(tmp_path: Path) -> None:
    """The same against a real PACS: a private Orthanc sends 300 instances (workers=1,
    one study at a time) while every attack runs from its own address. Attacks start
    once the first instance is on disk."""
    ensure_peers_or_skip("Orthanc", "storescu")
    source = tmp_path / "src"
    cohort = make_cohort(source, patients=1, studies=3, series=2, instances=50, rows=16, cols=16)
    port = free_port()
    with Orthanc(tmp_path / "orthanc", modalities={"STORE-SCP": (LOOPBACK, port)}) as orthanc:
        orthanc.load([source])
        store = StoreOptions(durability="instance")  # a little slower: more time under attack
        with Session(orthanc.address, out=tmp_path / "out", port=port, workers=1, store=store) as s:
            job = s.start(sorted(cohort["StudyInstanceUID"].unique()), progress=False)
            wait_until(lambda: any((tmp_path / "out").rglob("*.dcm")), 30, "a first instance")
            outcomes = _fire(port, orthanc.ae_title)
            still_moving = not job.done()
            assert_survived(job, outcomes, cohort, guarded=False)
    assert still_moving, "Orthanc finished before the attacks did: inconclusive"


# -- identity: who may send when the PACS's address names no AE title -------------------------


def test_a_bare_host_port_accepts_no_calling_ae_and_says_what_to_do(
    pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    cohort = demo_cohort
    address = f"{pacs.node.host}:{pacs.node.port}"
    with pytest.raises(StoreAssociationRefused) as caught:
        dicommove.move(
            address,
            cohort["StudyInstanceUID"].unique().tolist(),
            out=tmp_path / "o",
            port=store_port,
            progress=False,
        )
    message = str(caught.value)
    assert f"calling AE {PACS_AE!r}" in message
    assert f"{PACS_AE}@{address}" in message and "--allow-ae" in message and "ANY" in message
    rows = caught.value.manifest
    assert rows is not None and not (rows["status"] == "received").any()
    assert not list((tmp_path / "o").rglob("*.dcm"))


@pytest.mark.parametrize("allowed", [[PACS_AE], "ANY", ["OTHER", "ANY"]])
def test_a_bare_host_port_with_allowed_aes(
    pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path, allowed: Any
) -> None:
    cohort = demo_cohort
    address = f"{pacs.node.host}:{pacs.node.port}"
    df = dicommove.move(
        address,
        cohort["StudyInstanceUID"].unique().tolist(),
        out=tmp_path / "o",
        port=store_port,
        progress=False,
        store=StoreOptions(allowed_aes=allowed),
    )
    assert (df["status"] == "received").all() and len(df) == len(cohort)


def test_a_refusal_from_elsewhere_does_not_blame_the_pacs(
    pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    """A refused association from another address during the move is logged, but the
    move (whose PACS is allowed) completes."""
    cohort = demo_cohort
    pacs.faults.delay_per_store = 0.05
    before = pacs.store_associations
    with Session(pacs.node, out=tmp_path / "o", port=store_port, workers=1) as session:
        job = session.start(cohort["StudyInstanceUID"].unique().tolist(), progress=False)
        wait_until(lambda: pacs.store_associations > before, 20, "the store association")
        with socket.create_connection(
            ("127.0.0.1", store_port), source_address=("127.0.0.9", 0)
        ) as s:
            s.sendall(associate_rq(AE_TITLE, "INTRUDER"))
            assert s.recv(1) == b"\x03"  # A-ASSOCIATE-RJ
        df = job.result(timeout=30)
    assert (df["status"] == "received").all()


def test_store_options_reject_bad_limits() -> None:
    for bad in (
        {"max_pending_per_ip": 0},
        {"min_rate": -1},
        {"rate_window": -1.0},
        {"allowed_aes": "X"},
    ):
        with pytest.raises(dicommove.InputError):
            StoreOptions(**bad)
    assert StoreOptions(allowed_aes="ANY").any_calling_ae
    assert not StoreOptions(allowed_aes=["A"]).any_calling_ae


def test_the_attack_table_script_runs(tmp_path: Path) -> None:
    """benchmarks/attacks.py (the closing note's table) against our store SCP alone."""
    import subprocess
    import sys

    script = Path(__file__).parents[1] / "benchmarks" / "attacks.py"
    out = tmp_path / "attacks.md"
    subprocess.run(
        [sys.executable, str(script), "--receivers", "dicommove", "--out", str(out)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    rows = [line for line in out.read_text().splitlines() if line.startswith("| dicommove |")]
    assert len(rows) == len(ATTACKS)
    assert all("| abort |" in row for row in rows), rows
