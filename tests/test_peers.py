"""Tests of the peer fixtures: real Orthanc and DCMTK on loopback, driven by raw pynetdicom.

They prove that the peers are configured so that C-MOVE works, before dicommove is involved.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from peers import (
    DESTINATION_AES,
    LOOPBACK,
    DcmQrScp,
    Orthanc,
    PeerError,
    StoreScp,
    echo,
    ensure_peers_or_skip,
    free_port,
    storescu,
)
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE, StoragePresentationContexts, evt

if TYPE_CHECKING:
    import pandas as pd

TESTS_DIR = Path(__file__).resolve().parent
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"  # Study Root Q/R Information Model - MOVE


class StorageScp:
    """A pynetdicom Storage SCP on 127.0.0.1 recording the SOPInstanceUIDs it receives."""

    def __init__(self, ae_title: str, port: int) -> None:
        self.ae_title = ae_title
        self.port = port
        self.received: list[str] = []
        self._lock = threading.Lock()
        self._ae = AE(ae_title=ae_title)
        self._ae.supported_contexts = StoragePresentationContexts
        self._server: Any = None

    def _on_store(self, event: Any) -> int:
        with self._lock:
            self.received.append(str(event.request.AffectedSOPInstanceUID))
        return 0x0000

    def __enter__(self) -> StorageScp:
        self._server = self._ae.start_server(
            (LOOPBACK, self.port),
            block=False,
            evt_handlers=[(evt.EVT_C_STORE, self._on_store)],
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()


def c_move_study(pacs: Orthanc | DcmQrScp, study_uid: str, destination: str) -> list[int]:
    """Send one study-level C-MOVE with pynetdicom; return every status code received."""
    ae = AE(ae_title="DICOMMOVE")
    ae.add_requested_context(STUDY_ROOT_MOVE)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    assoc = ae.associate(LOOPBACK, pacs.port, ae_title=pacs.ae_title)
    assert assoc.is_established, f"association to {pacs.address} failed"
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = study_uid
    statuses: list[int] = []
    try:
        for status, _identifier in assoc.send_c_move(query, destination, STUDY_ROOT_MOVE):
            statuses.append(int(status.Status) if "Status" in status else -1)
    finally:
        assoc.release()
    return statuses


def first_study(cohort: pd.DataFrame) -> tuple[str, set[str]]:
    study = str(cohort["StudyInstanceUID"].iloc[0])
    sops = cohort.loc[cohort["StudyInstanceUID"] == study, "SOPInstanceUID"]
    return study, {str(s) for s in sops}


@pytest.fixture(params=["orthanc", "dcmqrscp"])
def pacs(request: pytest.FixtureRequest) -> Orthanc | DcmQrScp:
    """Each of the two PACS fixtures in turn."""
    server: Orthanc | DcmQrScp = request.getfixturevalue(request.param)
    return server


# ------------------------------------------------------------------------------------------


def test_free_port_gives_distinct_bindable_loopback_ports() -> None:
    ports = {free_port() for _ in range(20)}
    assert len(ports) == 20
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK, port))


def test_importing_the_peers_is_light() -> None:
    """``dicommove.testing.peers`` needs neither pydicom nor pynetdicom to import."""
    code = textwrap.dedent("""\
        import sys
        import dicommove.testing.peers as peers
        heavy = sorted({m.split(".")[0] for m in sys.modules} & {"pydicom", "pynetdicom"})
        assert not heavy, heavy
        assert all(hasattr(peers, name) for name in peers.__all__)
        """)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.peers
def test_reserved_destinations(peer_ports: dict[str, int]) -> None:
    assert set(peer_ports) == set(DESTINATION_AES)
    assert len(set(peer_ports.values())) == len(peer_ports)


@pytest.mark.peers
def test_pacs_is_up_and_loaded(pacs: Orthanc | DcmQrScp, peer_cohort: pd.DataFrame) -> None:
    assert pacs.running
    assert pacs.host == LOOPBACK
    assert pacs.address == f"{pacs.ae_title}@127.0.0.1:{pacs.port}"
    assert echo(pacs.ae_title, pacs.port)
    assert pacs.count() == len(peer_cohort) == 24
    assert pacs.instances() == set(peer_cohort["SOPInstanceUID"])


@pytest.mark.peers
def test_pacs_knows_the_reserved_destinations(
    pacs: Orthanc | DcmQrScp, peer_modalities: dict[str, tuple[str, int]]
) -> None:
    known = pacs.modalities()
    for ae, where in peer_modalities.items():
        assert known[ae] == where


@pytest.mark.peers
def test_orthanc_http_is_loopback_only(orthanc: Orthanc) -> None:
    config = orthanc.get("/system")
    assert config["DicomAet"] == "ORTHANC"
    assert config["DicomPort"] == orthanc.port
    assert orthanc.url == f"http://127.0.0.1:{orthanc.http_port}"


@pytest.mark.peers
@pytest.mark.parametrize("destination", ["DICOMMOVE", "MOVESCU", "STORE-SCP"])
def test_c_move_delivers_one_study(
    pacs: Orthanc | DcmQrScp,
    peer_cohort: pd.DataFrame,
    peer_ports: dict[str, int],
    destination: str,
) -> None:
    study, expected = first_study(peer_cohort)
    with StorageScp(destination, peer_ports[destination]) as scp:
        statuses = c_move_study(pacs, study, destination)
    assert statuses[-1] == 0x0000, [hex(s) for s in statuses]
    assert all(s == 0xFF00 for s in statuses[:-1])
    assert sorted(scp.received) == sorted(expected)


@pytest.mark.peers
def test_c_move_to_foreign_storescp(
    pacs: Orthanc | DcmQrScp, peer_cohort: pd.DataFrame, storage_scp: StoreScp
) -> None:
    study, expected = first_study(peer_cohort)
    statuses = c_move_study(pacs, study, "STORAGE")
    assert statuses[-1] == 0x0000, [hex(s) for s in statuses]
    got = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in storage_scp.files()}
    assert got == expected


@pytest.mark.peers
def test_unknown_destination_is_refused(
    pacs: Orthanc | DcmQrScp, peer_cohort: pd.DataFrame
) -> None:
    study, _ = first_study(peer_cohort)
    with StorageScp("NOBODY", free_port()) as scp:
        statuses = c_move_study(pacs, study, "NOBODY")
    # dcmqrscp: 0xA801 (move destination unknown); Orthanc 1.10.1: 0xC000.
    assert statuses and statuses[-1] in (0xA801, 0xC000), [hex(s) for s in statuses]
    assert scp.received == []


@pytest.mark.peers
def test_orthanc_add_modality_at_run_time(orthanc: Orthanc, peer_cohort: pd.DataFrame) -> None:
    study, expected = first_study(peer_cohort)
    port = free_port()
    with StorageScp("LATECOMER", port) as scp:
        assert c_move_study(orthanc, study, "LATECOMER")[-1] != 0x0000
        orthanc.add_modality("LATECOMER", LOOPBACK, port)
        try:
            listed = orthanc.get("/modalities?expand")
            assert listed["LATECOMER"]["AET"] == "LATECOMER"
            assert listed["LATECOMER"]["Host"] == LOOPBACK
            assert listed["LATECOMER"]["Port"] == port
            statuses = c_move_study(orthanc, study, "LATECOMER")  # no restart in between
        finally:
            orthanc.remove_modality("LATECOMER")
    assert statuses[-1] == 0x0000, [hex(s) for s in statuses]
    assert sorted(scp.received) == sorted(expected)
    assert "LATECOMER" not in orthanc.modalities()


@pytest.mark.peers
def test_dcmqrscp_add_modality_restarts_and_keeps_data(
    tmp_path: Path, peer_cohort: pd.DataFrame
) -> None:
    ensure_peers_or_skip("dcmqrscp", "echoscu", "storescu")
    study, expected = first_study(peer_cohort)
    files = [Path(p) for p in peer_cohort.loc[peer_cohort["StudyInstanceUID"] == study, "path"]]
    with DcmQrScp(tmp_path / "qr", ae_title="PRIVATEQR") as qr:
        assert qr.load(files) == len(files)
        old_pid, old_port = qr.pid, qr.port
        port = free_port()
        qr.add_modality("LATECOMER", LOOPBACK, port)
        assert qr.pid != old_pid
        assert qr.port == old_port
        assert qr.count() == len(files)
        with StorageScp("LATECOMER", port) as scp:
            statuses = c_move_study(qr, study, "LATECOMER")
    assert not qr.running
    assert statuses[-1] == 0x0000, [hex(s) for s in statuses]
    assert sorted(scp.received) == sorted(expected)


@pytest.mark.peers
def test_storescp_receives_a_file(storage_scp: StoreScp, peer_cohort: pd.DataFrame) -> None:
    path = Path(peer_cohort["path"].iloc[0])
    assert storage_scp.files() == []
    assert storescu(storage_scp.ae_title, storage_scp.port, [path]) == 1
    (received,) = storage_scp.files()
    assert dcmread(received).SOPInstanceUID == peer_cohort["SOPInstanceUID"].iloc[0]


@pytest.mark.peers
def test_ignoring_storescp_counts_stores_and_writes_nothing(
    tmp_path: Path, peer_cohort: pd.DataFrame
) -> None:
    ensure_peers_or_skip()
    paths = [Path(p) for p in peer_cohort["path"].iloc[:3]]
    with StoreScp(tmp_path / "null", ignore=True) as scp:
        assert storescu(scp.ae_title, scp.port, paths) == 3
    assert scp.stores_logged() == [1, 2, 3]
    assert scp.files() == []
    with pytest.raises(PeerError, match="ignore=True"):
        StoreScp(tmp_path / "plain").stores_logged()


@pytest.mark.peers
def test_stop_leaves_no_process(tmp_path: Path) -> None:
    ensure_peers_or_skip()
    for server in (
        Orthanc(tmp_path / "o", ae_title="SHORTLIVED"),
        DcmQrScp(tmp_path / "q"),
        StoreScp(tmp_path / "s"),
    ):
        try:
            server.start()
        except Exception:
            server.stop()
            raise
        pid = server.pid
        assert pid is not None and server.running
        server.stop()
        assert not server.running
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


# ------------------------------------------------------------------------------------------
# DICOMMOVE_REQUIRE_PEERS turns skipped peer tests into failures


SKIPPING_TESTS = """
import pytest

@pytest.mark.peers
def test_needs_peers():
    pytest.skip("no peers here")

def test_other():
    pytest.skip("unrelated skip")
"""


@pytest.mark.parametrize(("require", "outcome"), [("1", "failed"), ("", "skipped")])
def test_require_peers_turns_skip_into_failure(tmp_path: Path, require: str, outcome: str) -> None:
    (tmp_path / "test_skipping.py").write_text(SKIPPING_TESTS)
    (tmp_path / "pytest.ini").write_text(
        textwrap.dedent("""\
        [pytest]
        markers = peers: needs the DICOM peers
        """)
    )
    env = dict(os.environ, DICOMMOVE_REQUIRE_PEERS=require, PYTHONPATH=str(TESTS_DIR))
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    env.pop("PYTEST_ADDOPTS", None)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "peers", "-p", "no:cacheprovider", "-rA", "-q"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if outcome == "failed":
        assert done.returncode == 1, done.stdout + done.stderr
        assert "1 failed, 1 skipped" in done.stdout
        assert "DICOMMOVE_REQUIRE_PEERS=1 but" in done.stdout
    else:
        assert done.returncode == 0, done.stdout + done.stderr
        assert "2 skipped" in done.stdout
