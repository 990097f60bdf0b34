"""Real DICOM peers on loopback for the test suite: the pytest side.

The peers themselves (:class:`Orthanc`, :class:`DcmQrScp`, :class:`StoreScp`, :func:`storescu`,
:func:`free_port`...) live in :mod:`dicommove.testing.peers`, which the benchmark uses too;
every name is re-exported here, so tests keep importing them ``from peers``.

This module adds what needs pytest: :func:`ensure_peers_or_skip`, and the plugin hook
(``-p peers``, or re-exported by ``conftest.py``) that turns skipped ``peers`` tests into
failures when ``DICOMMOVE_REQUIRE_PEERS=1``.
"""

from __future__ import annotations

from collections.abc import Generator

import pytest

from dicommove.testing.peers import (
    ALL_BINARIES,
    APT_INSTALL,
    DESTINATION_AES,
    ENV_REQUIRE_PEERS,
    LOADER_AE,
    LOOPBACK,
    DcmQrScp,
    Orthanc,
    PeerError,
    PeerMissing,
    StoreScp,
    binary,
    dataset_bytes,
    echo,
    free_port,
    peer_env,
    require_binaries,
    require_peers,
    storescu,
    wait_for,
)

__all__ = [
    "ALL_BINARIES",
    "APT_INSTALL",
    "DESTINATION_AES",
    "ENV_REQUIRE_PEERS",
    "LOADER_AE",
    "LOOPBACK",
    "DcmQrScp",
    "Orthanc",
    "PeerError",
    "PeerMissing",
    "StoreScp",
    "binary",
    "dataset_bytes",
    "echo",
    "ensure_peers_or_skip",
    "free_port",
    "peer_env",
    "pytest_runtest_makereport",
    "require_binaries",
    "require_peers",
    "storescu",
    "wait_for",
]


def ensure_peers_or_skip(*names: str) -> None:
    """Skip the calling test if a peer binary is missing, or fail it if peers are required.

    With no names, check all of :data:`ALL_BINARIES`. Peers are required when
    ``DICOMMOVE_REQUIRE_PEERS=1`` (as in CI).
    """
    try:
        require_binaries(*names)
    except PeerMissing as exc:
        if require_peers():
            pytest.fail(f"{exc} ({ENV_REQUIRE_PEERS}=1)", pytrace=False)
        pytest.skip(str(exc))


# --------------------------------------------------------------------------------------------
# pytest plugin part


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Turn a skipped ``peers`` test into a failure when ``DICOMMOVE_REQUIRE_PEERS=1``."""
    report = yield
    if (
        report.skipped
        and not hasattr(report, "wasxfail")
        and item.get_closest_marker("peers") is not None
        and require_peers()
    ):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        report.outcome = "failed"
        report.longrepr = (
            f"{ENV_REQUIRE_PEERS}=1 but this test needing the DICOM peers was skipped: {reason}"
        )
    return report
