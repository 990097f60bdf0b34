"""The fault proxy between a real PACS and us: stalls, cuts and rewrites on both associations.

``dicommove.testing.faults.FaultProxy`` sits in one of two places:

* (a) our C-MOVE association -> proxy -> PACS: we are given the proxy's port as the PACS's;
* (b) the PACS's store association -> proxy -> our store SCP: the proxy's port is what the
  PACS has for our AE title ``VIAPROXY`` (demo PACS: ``add_destination``; Orthanc:
  ``add_modality``), and the proxy forwards to the port our store SCP listens on.

Whatever the fault, nothing is lost: every requested instance is in the manifest, received
(a complete file, byte-identical to the PACS's) or with a reason, no file with a final name
is partial, no temp file is left, and a ``resume=True`` run fetches the rest.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from peers import Orthanc, dataset_bytes, free_port, wait_for

import dicommove
from dicommove import AssociationAborted, Node, RetryPolicy, Timeouts
from dicommove.engine.run import _TICK
from dicommove.manifest import OK_STATUSES, PROBLEM_STATUSES
from dicommove.scp import CONFLICT_DIR_NAME, TEMP_DIR_NAME
from dicommove.testing import DemoPACS
from dicommove.testing.faults import DOWN, UP, Action, Fault, FaultProxy, Link, pdu_offsets

DEMO_COHORT = dict(patients=1, studies=2, series=2, instances=3)  # 12 instances, 6 a study
VIA = "VIAPROXY"  # our AE title when the PACS reaches our store SCP through the proxy
LOOPBACK = "127.0.0.1"
#: Small timeouts, so that a stall ends in about a second.
QUICK = Timeouts(connect=2, acse=1, dimse=2, network=1, inactivity=1, cancel_grace=0.5)
NO_RETRY = RetryPolicy(retries=0)
RETRY = RetryPolicy(retries=2, backoff=0.05)
P_DATA = 0x04


# -- helpers ---------------------------------------------------------------------------------


@pytest.fixture
def pacs(demo_pacs: DemoPACS) -> Iterator[DemoPACS]:
    """The module's demo PACS, with fresh counters, and no faults or VIAPROXY left behind."""
    demo_pacs.reset_counters()
    yield demo_pacs
    demo_pacs.faults.clear()
    demo_pacs.remove_destination(VIA)


def move(pacs: str | Node, study: str | list[str], out: Path, port: int, **kw: Any) -> pd.DataFrame:
    """Move on one association (no split: the proxy sees one connection per try)."""
    options: dict[str, Any] = dict(progress=False, workers=1, split=False, errors="ignore")
    options.update(timeouts=QUICK, retry=NO_RETRY)
    options.update(kw)
    return dicommove.move(pacs, study, out=out, port=port, **options)


def of_study(cohort: pd.DataFrame, study: str) -> pd.DataFrame:
    rows: pd.DataFrame = cohort.loc[cohort["StudyInstanceUID"] == study]
    return rows


def final_files(out: Path) -> set[str]:
    """Files with a final name: everything but the journal, temp and conflict directories."""
    hidden = {".dicommove", TEMP_DIR_NAME, CONFLICT_DIR_NAME}
    return {str(p) for p in out.rglob("*") if p.is_file() and not hidden & set(p.parts)}


def assert_nothing_lost(df: pd.DataFrame, expected: pd.DataFrame, out: Path) -> None:
    """Every expected instance is received (whole, byte-identical) or has a reason.

    A row without a SOPInstanceUID (a request that failed or timed out as a whole) stands
    for the instances of its study or series. No file with a final name is partial or
    unlisted, and no temp file is left.
    """
    source = expected.set_index("SOPInstanceUID")["path"]
    ok = df[df["status"].isin(OK_STATUSES)]
    for row in ok.itertuples():
        assert dataset_bytes(str(row.path)) == dataset_bytes(source[row.SOPInstanceUID])
    assert final_files(out) == set(ok["path"]), "a file with a final name is not in the manifest"
    assert list((out / TEMP_DIR_NAME).iterdir()) == []
    problems = df[df["status"].isin(PROBLEM_STATUSES)]
    assert (problems["reason"].fillna("").str.len() > 0).all(), problems
    whole = problems[problems["SOPInstanceUID"].isna()]
    for inst in expected.itertuples():
        if inst.SOPInstanceUID in set(df["SOPInstanceUID"].dropna()):
            continue
        covered = (whole["StudyInstanceUID"] == inst.StudyInstanceUID) & (
            whole["SeriesInstanceUID"].isna()
            | (whole["SeriesInstanceUID"] == inst.SeriesInstanceUID)
        )
        assert covered.any(), f"{inst.SOPInstanceUID} is neither received nor given a reason"


def assert_all_received(df: pd.DataFrame, expected: pd.DataFrame, out: Path) -> None:
    """Every expected instance received once; any other row is a second copy of one of them
    (``duplicate``: a retry may ask again for an instance still on its way)."""
    assert_nothing_lost(df, expected, out)
    assert set(df["status"]) <= OK_STATUSES, df[["request", "SOPInstanceUID", "status", "reason"]]
    received = df.loc[df["status"] == "received", "SOPInstanceUID"]
    assert sorted(received) == sorted(expected["SOPInstanceUID"])
    copies = df.loc[df["status"] != "received", "SOPInstanceUID"]
    assert set(copies) <= set(received), df[["SOPInstanceUID", "status"]]


def dataset_pdus(stream: bytes | bytearray) -> list[int]:
    """Offsets of the P-DATA PDUs whose first PDV is a dataset (not a command) fragment."""
    return [
        at for at, kind, _ in pdu_offsets(stream) if kind == P_DATA and not stream[at + 11] & 0x01
    ]


def closed(proxy: FaultProxy, timeout: float = 5.0) -> list[Link]:
    """The proxy's links, once every one is closed (bounded wait)."""
    wait_for(lambda: proxy.open_connections == 0, timeout, what="the proxied connections closed")
    return proxy.links


def record_store_stream(pacs: DemoPACS, study: str, out: Path) -> bytes:
    """The bytes the demo PACS sends our store SCP for ``study``, through a clean proxy."""
    port = free_port()
    with FaultProxy((LOOPBACK, port), record=True) as proxy:
        pacs.add_destination(VIA, LOOPBACK, proxy.port)
        df = move(pacs.node, study, out, port, ae_title=VIA)
        assert set(df["status"]) == {"received"}
        (link,) = closed(proxy)
    return bytes(link.sent[UP])


@pytest.fixture(scope="module")
def store_stream(demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, tmp_path_factory: Any) -> bytes:
    """The store stream of the first study (the same bytes on every move of it)."""
    study = sorted(demo_cohort["StudyInstanceUID"].unique())[0]
    stream = record_store_stream(demo_pacs, study, tmp_path_factory.mktemp("record"))
    demo_pacs.remove_destination(VIA)
    return stream


@pytest.fixture(scope="module")
def move_stream(
    demo_pacs: DemoPACS, demo_cohort: pd.DataFrame, store_port: int, tmp_path_factory: Any
) -> tuple[bytes, bytes]:
    """Our C-MOVE association for the first study, through a clean proxy: (up, down)."""
    study = sorted(demo_cohort["StudyInstanceUID"].unique())[0]
    out = tmp_path_factory.mktemp("record-move")
    with FaultProxy((LOOPBACK, demo_pacs.port), record=True) as proxy:
        df = move(f"{demo_pacs.ae_title}@{LOOPBACK}:{proxy.port}", study, out, store_port)
        assert set(df["status"]) == {"received"}
        (link,) = closed(proxy)
    return bytes(link.sent[UP]), bytes(link.sent[DOWN])


def pdu_end(stream: bytes | bytearray, n: int) -> int:
    """The offset right after the first ``n`` PDUs of ``stream``."""
    return pdu_offsets(stream)[n][0]


@pytest.fixture
def study(demo_cohort: pd.DataFrame) -> str:
    return str(sorted(demo_cohort["StudyInstanceUID"].unique())[0])


# -- pass-through ----------------------------------------------------------------------------


def test_pass_through_on_both_associations_changes_nothing(
    pacs: DemoPACS, demo_cohort: pd.DataFrame, study: str, tmp_path: Path
) -> None:
    port = free_port()
    with (
        FaultProxy((LOOPBACK, pacs.port), record=True) as front,
        FaultProxy((LOOPBACK, port), record=True) as back,
    ):
        pacs.add_destination(VIA, LOOPBACK, back.port)
        df = move(f"{pacs.ae_title}@{LOOPBACK}:{front.port}", study, tmp_path, port, ae_title=VIA)
        assert_all_received(df, of_study(demo_cohort, study), tmp_path)
        for proxy in (front, back):
            (link,) = closed(proxy)
            assert link.forwarded == [len(link.sent[UP]), len(link.sent[DOWN])]
            assert proxy.forwarded(UP) == link.forwarded[UP] and proxy.connections == 1
            assert link.fired_at == [None, None]
        # the store stream: A-ASSOCIATE-RQ, a command and a dataset PDU per instance, release
        store = [kind for _, kind, _ in pdu_offsets(back.links[0].sent[UP])]
        assert store == [0x01] + [P_DATA] * 12 + [0x05]


# -- (a) our C-MOVE association -> proxy -> PACS ---------------------------------------------


def test_stall_before_the_association_is_answered_fails_after_the_acse_timeout(
    pacs: DemoPACS, study: str, store_port: int, tmp_path: Path
) -> None:
    with FaultProxy((LOOPBACK, pacs.port), up=Fault("stall")) as proxy:
        began = time.monotonic()
        with pytest.raises(AssociationAborted, match="did not establish an association"):
            move(f"{pacs.ae_title}@{LOOPBACK}:{proxy.port}", study, tmp_path, store_port)
        assert time.monotonic() - began < QUICK.acse + 3
        assert proxy.links[0].fired_at[UP] is not None
    assert pacs.move_requests == []


@pytest.mark.parametrize("where", ["request", "responses"])
def test_stalled_move_association_times_out_with_a_reason(
    pacs: DemoPACS,
    demo_cohort: pd.DataFrame,
    study: str,
    store_port: int,
    tmp_path: Path,
    move_stream: tuple[bytes, bytes],
    where: str,
) -> None:
    """``request``: the C-MOVE never reaches the PACS (stalled after our A-ASSOCIATE-RQ);
    ``responses``: none of its answers reach us (stalled after the A-ASSOCIATE-AC; the
    instances still come, on the store association)."""
    up, down = move_stream
    if where == "request":
        proxy = FaultProxy((LOOPBACK, pacs.port), up=Fault("stall", after=pdu_end(up, 1)))
    else:
        proxy = FaultProxy((LOOPBACK, pacs.port), down=Fault("stall", after=pdu_end(down, 1)))
    with proxy:
        began = time.monotonic()
        df = move(f"{pacs.ae_title}@{LOOPBACK}:{proxy.port}", study, tmp_path, store_port)
        took = time.monotonic() - began
        (link,) = proxy.links  # (a stalled side swallows our close: the PACS keeps it open)
    assert link.fired_at[UP if where == "request" else DOWN] is not None
    assert_nothing_lost(df, of_study(demo_cohort, study), tmp_path)
    assert "timeout" in set(df["status"]), df[["status", "reason"]]
    reasons = " ".join(df.loc[df["status"] == "timeout", "reason"])
    assert "Timeouts.inactivity" in reasons
    assert took < QUICK.inactivity + QUICK.cancel_grace + 3


def cut_move(
    pacs: DemoPACS, study: str, out: Path, port: int, fault: Fault, retry: RetryPolicy
) -> tuple[pd.DataFrame, list[Link]]:
    """Move ``study`` with ``fault`` on the server-to-client side of our C-MOVE association."""
    with FaultProxy((LOOPBACK, pacs.port), down=fault) as proxy:
        df = move(f"{pacs.ae_title}@{LOOPBACK}:{proxy.port}", study, out, port, retry=retry)
        links = closed(proxy)
    assert links[0].fired_at[DOWN] is not None
    assert len(links) >= 2, "the engine did not try again on a new association"
    return df, links


@pytest.mark.parametrize("action", ["cut", "reset"])
def test_move_association_cut_mid_move_is_retried_for_the_rest(
    pacs: DemoPACS,
    demo_cohort: pd.DataFrame,
    study: str,
    store_port: int,
    tmp_path: Path,
    move_stream: tuple[bytes, bytes],
    action: Action,
) -> None:
    # down: the A-ASSOCIATE-AC, 2 pending C-MOVE responses, then 20 bytes of the third
    fault = Fault(action, after=pdu_end(move_stream[DOWN], 3) + 20, connections={0})
    pacs.faults.delay_per_store = 0.02  # the cut comes while instances are still to be sent
    df, _links = cut_move(pacs, study, tmp_path, store_port, fault, RETRY)
    expected = of_study(demo_cohort, study)
    assert_nothing_lost(df, expected, tmp_path)
    on_disk = df.loc[df["status"].isin(OK_STATUSES) & (df["request"] == 0), "SOPInstanceUID"]
    assert set(on_disk) == set(expected["SOPInstanceUID"]), df[["SOPInstanceUID", "status"]]


def test_instance_arriving_between_an_aborted_attempt_and_its_retry_belongs_to_its_request(
    pacs: DemoPACS,
    demo_cohort: pd.DataFrame,
    study: str,
    store_port: int,
    tmp_path: Path,
    move_stream: tuple[bytes, bytes],
) -> None:
    """Bug reproducer (engine, ``Router.route``): instances the PACS still sends for an
    aborted C-MOVE while its retry waits out its backoff match the request (same study),
    but no part is running then, so each is an ``unrequested`` row ("matches no request");
    the retry asks for them again and their second copies are the request's only rows for
    them, ``duplicate``.

    The third pending response reaches us with a PDU type that does not exist: we abort.
    Our A-ABORT and close never reach the PACS (the client-to-server side is stalled after
    the C-MOVE request), so it sends the other instances, one every 0.2 s.
    """
    up, down = move_stream
    pacs.faults.delay_per_store = 0.2
    with FaultProxy(
        (LOOPBACK, pacs.port),
        up=Fault("stall", after=pdu_end(up, 3), connections={0}),
        down=Fault("rewrite", after=pdu_end(down, 3), patch=b"\x0a", connections={0}),
    ) as proxy:
        retry = RetryPolicy(retries=1, backoff=1.0)  # waits 0.5 to 1.5 s
        df = move(
            f"{pacs.ae_title}@{LOOPBACK}:{proxy.port}", study, tmp_path, store_port, retry=retry
        )
        assert proxy.links[0].fired_at[DOWN] is not None and len(proxy.links) == 2
    assert "unrequested" not in set(df["status"]), df[["request", "SOPInstanceUID", "status"]]
    assert_all_received(df, of_study(demo_cohort, study), tmp_path)


# -- (b) the PACS's store association -> proxy -> our store SCP ------------------------------


def store_fault(
    pacs: DemoPACS, fault: Fault, study: str, out: Path, **kw: Any
) -> tuple[pd.DataFrame, list[Link], float, int]:
    """Move ``study``, the PACS reaching our store SCP through a proxy with ``fault`` (up)."""
    port = free_port()
    with FaultProxy((LOOPBACK, port), up=fault, record=True) as proxy:
        pacs.add_destination(VIA, LOOPBACK, proxy.port)
        began = time.monotonic()
        df = move(pacs.node, study, out, port, ae_title=VIA, **kw)
        took = time.monotonic() - began
        links = closed(proxy)
    return df, links, took, port


def resume(pacs: DemoPACS, study: str, out: Path, port: int) -> pd.DataFrame:
    """Move ``study`` again with ``resume=True``, the PACS sending straight to our store SCP."""
    pacs.add_destination(VIA, LOOPBACK, port)
    return move(pacs.node, study, out, port, ae_title=VIA, resume=True)


def test_store_stall_mid_instance_is_aborted_by_the_network_timeout(
    pacs: DemoPACS, demo_cohort: pd.DataFrame, study: str, store_stream: bytes, tmp_path: Path
) -> None:
    second = dataset_pdus(store_stream)[1]
    fault = Fault("stall", after=second + 1000)
    # The store side times out first. (The demo PACS may then hang in pynetdicom's
    # send_c_store for its DIMSE timeout, a race of its own: our inactivity timeout ends
    # that C-MOVE, and the rows say so.)
    timeouts = Timeouts(network=1, inactivity=2.5, cancel_grace=0.5)
    df, links, took, port = store_fault(pacs, fault, study, tmp_path, timeouts=timeouts)
    expected = of_study(demo_cohort, study)
    assert_nothing_lost(df, expected, tmp_path)
    assert links[0].fired_at[UP] is not None
    lost = df[df["reason"].fillna("").str.contains("network timeout")]
    assert len(lost) == 1 and lost["status"].tolist() == ["failed"]
    # the inactivity and the cancel grace are each checked on the engine's tick (0.2 s); the
    # 2 s are for the start and the end of the move (a CI run took 5.02 s in the race above)
    deadlines = timeouts.inactivity + timeouts.cancel_grace + 2 * _TICK
    assert timeouts.network <= took < deadlines + 2
    again = resume(pacs, study, tmp_path, port)
    assert_all_received(again, expected, tmp_path)


@pytest.mark.parametrize("action", ["cut", "reset"])
def test_store_cut_mid_instance_leaves_no_partial_file_and_resume_fetches_the_rest(
    pacs: DemoPACS,
    demo_cohort: pd.DataFrame,
    study: str,
    store_stream: bytes,
    tmp_path: Path,
    action: Action,
) -> None:
    """Retries are on, but the engine does not retry a C-MOVE whose sub-operations failed
    (0xB000 and a Failed SOP Instance UID List, from the demo PACS): ``resume`` does."""
    second = dataset_pdus(store_stream)[1]
    fault = Fault(action, after=second + 1000, connections={0})
    df, links, _took, port = store_fault(pacs, fault, study, tmp_path, retry=RETRY)
    expected = of_study(demo_cohort, study)
    assert_nothing_lost(df, expected, tmp_path)
    assert links[0].fired_at[UP] is not None
    assert (df["status"] == "received").sum() >= 1  # the first instance, before the cut
    again = resume(pacs, study, tmp_path, port)
    assert_all_received(again, expected, tmp_path)


def assert_aborted_within_a_second(link: Link) -> None:
    """The store SCP answered the rewritten bytes with an A-ABORT and closed, within 1 s."""
    fired, ended = link.fired_at[UP], link.ended_at[DOWN]  # ended: the SCP closed its side
    assert fired is not None and ended is not None
    assert ended - fired < 1.0, f"the store SCP took {ended - fired:.2f} s to abort"
    assert pdu_offsets(link.sent[DOWN])[-1][1] == 0x07  # its last PDU: A-ABORT


def _pdv_context(at: int) -> Fault:
    """The presentation context ID of the first PDV of the P-DATA PDU at ``at``: 1 -> 255."""
    return Fault("rewrite", after=at + 10, patch=b"\xff")


def _pdu_length(at: int) -> Fault:
    """The P-DATA PDU's length: 2 GiB, over our maximum PDU."""
    return Fault("rewrite", after=at + 2, patch=struct.pack(">I", 1 << 31))


def _pdv_length(at: int) -> Fault:
    """The first PDV item's length, grown past the end of its PDU."""
    return Fault("rewrite", after=at + 6, width=4, patch=lambda b: struct.pack(">I", 1 << 20))


def _pdu_type(at: int) -> Fault:
    """The PDU type: P-DATA (0x04) -> 0x0A, which does not exist."""
    return Fault("rewrite", after=at, patch=b"\x0a")


@pytest.mark.parametrize("rewrite", [_pdv_context, _pdu_length, _pdv_length, _pdu_type])
def test_rewritten_pdu_header_is_aborted_within_a_second(
    pacs: DemoPACS,
    demo_cohort: pd.DataFrame,
    study: str,
    store_stream: bytes,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    rewrite: Callable[[int], Fault],
) -> None:
    second = dataset_pdus(store_stream)[1]  # the second instance's dataset PDU
    with caplog.at_level(logging.WARNING, logger="dicommove"):
        df, links, _took, port = store_fault(pacs, rewrite(second), study, tmp_path, retry=RETRY)
    assert_aborted_within_a_second(links[0])
    assert "store SCP aborts the association" in caplog.text
    expected = of_study(demo_cohort, study)
    assert_nothing_lost(df, expected, tmp_path)
    again = resume(pacs, study, tmp_path, port)
    assert_all_received(again, expected, tmp_path)


# -- Orthanc ---------------------------------------------------------------------------------


def test_orthanc_move_association_reset_mid_move_is_retried(
    orthanc: Orthanc,
    peer_cohort: pd.DataFrame,
    peer_ports: dict[str, int],
    tmp_path: Path,
) -> None:
    study = str(sorted(peer_cohort["StudyInstanceUID"].unique())[0])
    address, port = f"{orthanc.ae_title}@{LOOPBACK}:{{}}", peer_ports["STORE-SCP"]
    with FaultProxy((LOOPBACK, orthanc.port), record=True) as proxy:
        move(address.format(proxy.port), study, tmp_path / "clean", port)
        (link,) = closed(proxy)
    # down: the A-ASSOCIATE-AC, the first pending C-MOVE response, then 10 bytes of the next
    fault = Fault("reset", after=pdu_end(link.sent[DOWN], 2) + 10, connections={0})
    with FaultProxy((LOOPBACK, orthanc.port), down=fault) as proxy:
        df = move(address.format(proxy.port), study, tmp_path / "out", port, retry=RETRY)
        links = closed(proxy)
    assert links[0].fired_at[DOWN] is not None and len(links) >= 2
    assert_all_received(df, of_study(peer_cohort, study), tmp_path / "out")


@pytest.fixture(scope="module")
def orthanc_studies(peer_cohort: pd.DataFrame) -> list[str]:
    return [str(s) for s in sorted(peer_cohort["StudyInstanceUID"].unique())[:2]]


@pytest.fixture(scope="module")
def orthanc_streams(
    orthanc: Orthanc, orthanc_studies: list[str], tmp_path_factory: Any
) -> Iterator[list[bytes]]:
    """What Orthanc sends our store SCP for each of two studies, through a clean proxy.

    Our AE title ``VIAPROXY`` stays registered on Orthanc for the module (at whatever port
    the test's proxy listens on), and is removed at the end.
    """
    out, port = tmp_path_factory.mktemp("orthanc-record"), free_port()
    try:
        with FaultProxy((LOOPBACK, port), record=True) as proxy:
            orthanc.add_modality(VIA, LOOPBACK, proxy.port)
            df = move(orthanc.address, orthanc_studies, out, port, ae_title=VIA)
            assert set(df["status"]) == {"received"}
            links = closed(proxy)
        yield [bytes(link.sent[UP]) for link in links]
    finally:
        orthanc.remove_modality(VIA)


def orthanc_store_fault(
    orthanc: Orthanc, fault: Fault, studies: list[str], out: Path
) -> tuple[pd.DataFrame, list[Link], int]:
    port = free_port()
    with FaultProxy((LOOPBACK, port), up=fault, record=True) as proxy:
        orthanc.add_modality(VIA, LOOPBACK, proxy.port)
        df = move(orthanc.address, studies, out, port, ae_title=VIA)
        links = closed(proxy)
    assert_aborted_within_a_second(links[-1])
    return df, links, port


def orthanc_resume(orthanc: Orthanc, studies: list[str], out: Path, port: int) -> pd.DataFrame:
    orthanc.add_modality(VIA, LOOPBACK, port)
    return move(orthanc.address, studies, out, port, ae_title=VIA, resume=True)


def test_orthanc_store_association_with_a_rewritten_pdv_is_aborted(
    orthanc: Orthanc,
    peer_cohort: pd.DataFrame,
    orthanc_studies: list[str],
    orthanc_streams: list[bytes],
    tmp_path: Path,
) -> None:
    """Two studies; the second one's store association gets a bad context ID mid-instance."""
    second = dataset_pdus(orthanc_streams[1])[1]
    fault = Fault("rewrite", after=second + 10, patch=b"\xff", connections={1})
    df, _links, port = orthanc_store_fault(orthanc, fault, orthanc_studies, tmp_path)
    expected = peer_cohort[peer_cohort["StudyInstanceUID"].isin(orthanc_studies)]
    assert_nothing_lost(df, expected, tmp_path)
    first = df[df["StudyInstanceUID"] == orthanc_studies[0]]
    assert set(first["status"]) == {"received"} and len(first) == 6
    assert not set(df["status"]) <= OK_STATUSES
    again = orthanc_resume(orthanc, orthanc_studies, tmp_path, port)
    assert_all_received(again, expected, tmp_path)


def test_orthanc_store_abort_after_an_instance_arrived_is_not_an_unknown_destination(
    orthanc: Orthanc,
    peer_cohort: pd.DataFrame,
    orthanc_studies: list[str],
    orthanc_streams: list[bytes],
    tmp_path: Path,
) -> None:
    """Bug reproducer (engine, ``check_destination``): one study; its store association is
    aborted at its second instance, after the first was received. Orthanc answers 0xC000
    with no counts, and the move raises MoveDestinationUnknown ("before sending any of
    the 1 matching items") although an instance of this very request arrived through that
    destination (``Run.delivered`` looks at the other requests only)."""
    study = orthanc_studies[0]
    second = dataset_pdus(orthanc_streams[0])[1]
    fault = Fault("rewrite", after=second + 10, patch=b"\xff")
    df, _links, port = orthanc_store_fault(orthanc, fault, [study], tmp_path)
    expected = of_study(peer_cohort, study)
    assert_nothing_lost(df, expected, tmp_path)
    again = orthanc_resume(orthanc, [study], tmp_path, port)
    assert_all_received(again, expected, tmp_path)
