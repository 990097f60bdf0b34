"""Shared fixtures: real DICOM peers (Orthanc, DCMTK) on loopback, and a synthetic cohort.

Peer fixtures skip their tests when Orthanc or DCMTK is not installed, unless
``DICOMMOVE_REQUIRE_PEERS=1`` (CI), which turns every such skip into a failure.

The session-scoped PACS fixtures are shared by many tests: do not delete their instances
or leave extra modalities registered on them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
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
    ensure_peers_or_skip,
    free_port,
)

# Re-exported so that pytest registers the hook: a skipped `peers` test fails when
# DICOMMOVE_REQUIRE_PEERS=1.
from peers import pytest_runtest_makereport as pytest_runtest_makereport

if TYPE_CHECKING:
    import pandas as pd

    from dicommove.scp import Received, StoreSCP
    from dicommove.testing import DemoPACS

#: The AE title of the store SCPs that :func:`start_store_scp` starts.
SCP_AE = "DICOMMOVE"

#: Fixtures that start a peer: tests using them are marked ``peers`` automatically.
PEER_FIXTURES = frozenset({"orthanc", "dcmqrscp", "storage_scp"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that uses a peer fixture with ``peers``."""
    for item in items:
        names = getattr(item, "fixturenames", ())
        if PEER_FIXTURES.intersection(names) and item.get_closest_marker("peers") is None:
            item.add_marker(pytest.mark.peers)


@pytest.fixture(scope="session")
def peer_ports() -> dict[str, int]:
    """Ports reserved up front for the AE titles the tests use as C-MOVE destinations.

    Keys: ``STORE-SCP``, ``MOVESCU``, ``DICOMMOVE`` (dicommove's own Storage SCP) and
    ``STORAGE`` (a foreign DCMTK storescp, see ``storage_scp``). Both PACS know each of them
    as ``AE -> 127.0.0.1:port`` from the start (dcmqrscp reads destinations only at start).
    """
    return {ae: free_port() for ae in DESTINATION_AES}


@pytest.fixture(scope="session")
def peer_modalities(peer_ports: dict[str, int]) -> dict[str, tuple[str, int]]:
    """``peer_ports`` as the PACS see them: AE title -> (127.0.0.1, port)."""
    return {ae: (LOOPBACK, port) for ae, port in peer_ports.items()}


@pytest.fixture(scope="session")
def peer_cohort(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """The synthetic cohort loaded into both PACS (``dicommove.testing.make_cohort`` defaults).

    2 patients x 2 studies x 2 series x 3 instances = 24 CT instances of 64 x 64 pixels;
    one row per instance (PatientID, StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID,
    SOPClassUID, path (absolute), size). Treat it as read-only.
    """
    from dicommove.testing.cohort import make_cohort

    return make_cohort(tmp_path_factory.mktemp("cohort"))


def _load_checked(pacs: Orthanc | DcmQrScp, cohort: pd.DataFrame) -> None:
    pacs.load(Path(p) for p in cohort["path"])
    if pacs.count() != len(cohort):
        raise PeerError(f"{pacs.name} holds {pacs.count()} instances, expected {len(cohort)}")


@pytest.fixture(scope="session")
def orthanc(
    tmp_path_factory: pytest.TempPathFactory,
    peer_modalities: dict[str, tuple[str, int]],
    peer_cohort: pd.DataFrame,
) -> Iterator[Orthanc]:
    """A running Orthanc (AE ``ORTHANC``) holding ``peer_cohort``, destinations registered.

    Address: ``orthanc.address`` (``ORTHANC@127.0.0.1:<port>``); REST at ``orthanc.url``.
    Add a destination at run time with ``orthanc.add_modality(ae, host, port)`` and remove
    it again with ``orthanc.remove_modality(ae)``.
    """
    ensure_peers_or_skip("Orthanc", "echoscu", "storescu")
    with Orthanc(tmp_path_factory.mktemp("orthanc"), modalities=peer_modalities) as pacs:
        _load_checked(pacs, peer_cohort)
        yield pacs


@pytest.fixture(scope="session")
def dcmqrscp(
    tmp_path_factory: pytest.TempPathFactory,
    peer_modalities: dict[str, tuple[str, int]],
    peer_cohort: pd.DataFrame,
) -> Iterator[DcmQrScp]:
    """A running DCMTK dcmqrscp (AE ``DCMQRSCP``) holding ``peer_cohort``.

    It knows only the ``peer_ports`` destinations (its HostTable is read at start; its
    ``add_modality`` restarts it, so prefer a private ``DcmQrScp`` for that).
    """
    ensure_peers_or_skip("dcmqrscp", "echoscu", "storescu")
    with DcmQrScp(tmp_path_factory.mktemp("dcmqrscp"), modalities=peer_modalities) as pacs:
        _load_checked(pacs, peer_cohort)
        yield pacs


@pytest.fixture
def storage_scp(tmp_path: Path, peer_ports: dict[str, int]) -> Iterator[StoreScp]:
    """A DCMTK storescp as AE ``STORAGE`` on its reserved port, receiving into ``tmp_path``.

    Both PACS know it as a move destination. ``storage_scp.files()`` lists what arrived.
    """
    ensure_peers_or_skip("storescp", "echoscu")
    with StoreScp(tmp_path / "storage", ae_title="STORAGE", port=peer_ports["STORAGE"]) as scp:
        yield scp


# -- the demo PACS, for test modules that set DEMO_COHORT ------------------------------------


@pytest.fixture(scope="module")
def demo_cohort(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> pd.DataFrame:
    """A synthetic cohort of the module's ``DEMO_COHORT`` sizes (make_cohort keywords)."""
    from dicommove.testing import make_cohort

    sizes = getattr(request.module, "DEMO_COHORT", {})
    return make_cohort(tmp_path_factory.mktemp("demo") / "src", **sizes)


@pytest.fixture(scope="module")
def store_port() -> int:
    """A free loopback port for our store SCP, registered on the demo PACS as STORE-SCP."""
    return free_port()


@pytest.fixture(scope="module")
def demo_pacs(demo_cohort: pd.DataFrame, store_port: int) -> Iterator[DemoPACS]:
    """The demo PACS serving ``demo_cohort``, knowing STORE-SCP at ``store_port``."""
    from dicommove.testing import DemoPACS

    root = Path(demo_cohort["path"].iloc[0]).parents[3]
    with DemoPACS(root, destinations={"STORE-SCP": ("127.0.0.1", store_port)}) as pacs:
        yield pacs


@pytest.fixture
def start_store_scp(tmp_path: Path) -> Iterator[Callable[..., tuple[StoreSCP, list[Received]]]]:
    """Start StoreSCPs on 127.0.0.1 (port 0, AE ``DICOMMOVE`` unless ``ae_title=``), each
    writing under its own ``tmp_path/outN`` with no fsync; all stopped at the end.

    ``start(**options)`` passes ``options`` to :class:`~dicommove.scp.StoreSCP` and returns
    it with the list its records are appended to.
    """
    from dicommove.scp import InstanceStore, StoreSCP

    started: list[StoreSCP] = []

    def start(**options: Any) -> tuple[StoreSCP, list[Received]]:
        store = InstanceStore(tmp_path / f"out{len(started)}", durability="none")
        store.prepare()
        store.begin()
        records: list[Received] = []
        options.setdefault("ae_title", SCP_AE)
        scp = StoreSCP(store, host=LOOPBACK, port=0, on_instance=records.append, **options)
        started.append(scp)
        scp.start()
        return scp, records

    try:
        yield start
    finally:
        for scp in started:
            scp.stop()


class DimseLog:
    """The DIMSE messages the demo PACS receives, each with the association it came on.

    Bound with pynetdicom's notification event ``EVT_DIMSE_RECV`` on the PACS's server
    (a private attribute of :class:`DemoPACS`: the one way to see which association a
    message used).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: list[tuple[object, str]] = []

    def __call__(self, event: Any) -> None:
        with self._lock:
            self._seen.append((event.assoc, type(event.message).__name__))

    def kinds(self) -> set[str]:
        with self._lock:
            return {kind for _, kind in self._seen}

    def associations(self, kind: str) -> list[object]:
        """The distinct associations that carried a ``kind`` message (``C_ECHO_RQ``...)."""
        with self._lock:
            found: list[object] = []
            for assoc, seen in self._seen:
                if seen == kind and not any(assoc is a for a in found):
                    found.append(assoc)
            return found


@pytest.fixture
def dimse_log(demo_pacs: DemoPACS) -> Iterator[DimseLog]:
    """The DIMSE messages the module's demo PACS receives (C-CANCEL included)."""
    from pynetdicom import evt

    log = DimseLog()
    server = demo_pacs._server  # the one way to see the messages the PACS receives
    assert server is not None
    server.bind(evt.EVT_DIMSE_RECV, log)
    try:
        yield log
    finally:
        server.unbind(evt.EVT_DIMSE_RECV, log)
