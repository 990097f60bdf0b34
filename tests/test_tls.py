"""Issue 11: DICOM TLS for our associations and the embedded store SCP, end to end.

A CA made in the test (``dicommove.testing.tls.make_pki``); Orthanc 1.10.1 with DICOM TLS
(its SCP speaks only TLS, and it reaches our store SCP over TLS: ``UseDicomTls``); DCMTK
3.6.7's ``storescu +tls`` and ``echoscu +tls`` against our store SCP.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from peers import LOOPBACK, Orthanc, echo, ensure_peers_or_skip, storescu

from dicommove import (
    AssociationAborted,
    ConnectError,
    InputError,
    Session,
    StoreAssociationRefused,
    cli,
    tls,
)
from dicommove.scp import Received, StoreSCP
from dicommove.testing.peers import PeerTls, free_port
from dicommove.testing.tls import TlsFiles, make_pki

pytest.importorskip("cryptography")

OUR_AE = "STORE-SCP"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    from dicommove.testing import make_cohort

    return make_cohort(tmp_path_factory.mktemp("tls"), patients=1, studies=2, series=1, instances=3)


@pytest.fixture(scope="module")
def store_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def orthanc_tls(
    tmp_path_factory: pytest.TempPathFactory, pki: TlsFiles, cohort: pd.DataFrame, store_port: int
) -> Iterator[Orthanc]:
    """Orthanc speaking only TLS, and reaching STORE-SCP (us) over TLS."""
    ensure_peers_or_skip("Orthanc", "echoscu", "storescu")
    pacs = Orthanc(
        tmp_path_factory.mktemp("orthanc-tls"),
        tls=PeerTls.from_pki(pki, "server"),
        modalities={OUR_AE: (LOOPBACK, store_port)},
        tls_modalities=[OUR_AE],
    )
    try:
        pacs.start()
        assert pacs.load(Path(p) for p in cohort["path"]) == len(cohort)
        yield pacs
    finally:
        pacs.stop(timeout=0)


def ours(pki: TlsFiles) -> dict[str, Any]:
    """Our TLS session options: the PKI's client identity, both ways."""
    return {
        "tls": tls.client_context(pki.ca_cert, pki.client_cert, pki.client_key),
        "store_tls": tls.server_context(pki.client_cert, pki.client_key, pki.ca_cert),
    }


# -- with Orthanc -------------------------------------------------------------------------------


def test_c_move_from_orthanc_over_tls_both_ways(
    orthanc_tls: Orthanc, pki: TlsFiles, cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    """Our C-MOVE association is TLS (Orthanc's port speaks nothing else) and so is
    Orthanc's store association to us (our store SCP speaks nothing else)."""
    studies = sorted(cohort["StudyInstanceUID"].unique())
    with Session(orthanc_tls.address, out=tmp_path, port=store_port, **ours(pki)) as session:
        session.echo()
        df = session.move(studies, progress=False)
    assert (df["status"] == "received").all()
    assert sorted(df["SOPInstanceUID"]) == sorted(cohort["SOPInstanceUID"])
    for row in df.itertuples():
        assert Path(str(row.path)).read_bytes()[128:132] == b"DICM"


def test_a_plain_store_scp_says_the_pacs_speaks_tls(
    orthanc_tls: Orthanc, pki: TlsFiles, cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    """Orthanc reaches us over TLS but our store SCP has no certificate: the move stops
    with an error that says so and what to give."""
    options = ours(pki)
    del options["store_tls"]
    study = str(cohort["StudyInstanceUID"].iloc[0])
    session = Session(orthanc_tls.address, out=tmp_path, port=store_port, **options)
    with session, pytest.raises(StoreAssociationRefused, match="TLS") as caught:
        session.move([study], progress=False)
    assert "--tls-cert" in str(caught.value) and "store_tls" in str(caught.value)


def test_orthanc_refuses_a_client_without_a_trusted_certificate(
    orthanc_tls: Orthanc, pki: TlsFiles, tmp_path: Path
) -> None:
    for context in (
        tls.client_context(pki.ca_cert, pki.untrusted_cert, pki.untrusted_key),
        tls.client_context(pki.ca_cert),  # anonymous: Orthanc requires a certificate
    ):
        session = Session(orthanc_tls.address, out=tmp_path, tls=context)
        # TLS 1.3: Orthanc's refusal comes after our side of the handshake is done
        with session, pytest.raises((ConnectError, AssociationAborted), match="TLS") as caught:
            session.echo()
        assert "--tls-cert" in str(caught.value)


def test_an_untrusted_pacs_certificate_names_the_option_to_fix(
    orthanc_tls: Orthanc, pki: TlsFiles, tmp_path: Path
) -> None:
    context = tls.client_context(pki.untrusted_ca_cert, pki.client_cert, pki.client_key)
    session = Session(orthanc_tls.address, out=tmp_path, tls=context)
    with session, pytest.raises(ConnectError, match="not trusted") as caught:
        session.echo()
    assert "--tls-ca" in str(caught.value)


def test_cli_moves_over_tls(
    orthanc_tls: Orthanc, pki: TlsFiles, cohort: pd.DataFrame, store_port: int, tmp_path: Path
) -> None:
    flags = ["--tls-ca", str(pki.ca_cert), "--tls-cert", str(pki.client_cert)]
    flags += ["--tls-key", str(pki.client_key)]
    assert cli.run(["echo", orthanc_tls.address, *flags]) == cli.EXIT_OK
    study = str(cohort["StudyInstanceUID"].iloc[-1])
    argv = ["move", orthanc_tls.address, "-q", f"StudyInstanceUID={study}", "--no-progress"]
    argv += ["-o", str(tmp_path), "-p", str(store_port), *flags]
    assert cli.run(argv) == cli.EXIT_OK
    assert len(list(tmp_path.rglob("*.dcm"))) == 3


def test_cli_store_scp_needs_a_certificate(
    orthanc_tls: Orthanc, pki: TlsFiles, tmp_path: Path
) -> None:
    argv = ["move", orthanc_tls.address, "-q", "StudyInstanceUID=1.2.3", "--no-progress"]
    argv += ["-o", str(tmp_path), "--tls-ca", str(pki.ca_cert), "--tls-anonymous"]
    assert cli.run(argv) == cli.EXIT_USAGE


# -- our store SCP with DCMTK ---------------------------------------------------------------------


@pytest.fixture
def tls_scp(start_store_scp: Any, pki: TlsFiles) -> Any:
    """Start a store SCP (AE ``STORE-SCP``) speaking TLS with the PKI's server identity."""

    def start(**options: Any) -> tuple[StoreSCP, list[Received]]:
        ensure_peers_or_skip("echoscu", "storescu")
        options.setdefault("ssl", tls.server_context(pki.server_cert, pki.server_key, pki.ca_cert))
        return start_store_scp(ae_title=OUR_AE, **options)  # type: ignore[no-any-return]

    return start


def test_dcmtk_storescu_over_tls_into_our_store_scp(
    tls_scp: Any, pki: TlsFiles, cohort: pd.DataFrame
) -> None:
    scp, records = tls_scp()
    files = [Path(p) for p in cohort["path"]]
    sent = storescu(OUR_AE, scp.port, files, tls=PeerTls.from_pki(pki, "client"))
    assert sent == len(files)
    assert sorted(r.sop_instance_uid for r in records if r.status == "received") == sorted(
        cohort["SOPInstanceUID"]
    )


def test_echoscu_over_tls_and_who_is_refused(tls_scp: Any, pki: TlsFiles) -> None:
    scp, _ = tls_scp()
    assert echo(OUR_AE, scp.port, tls=PeerTls.from_pki(pki, "client"))
    assert not echo(OUR_AE, scp.port, tls=PeerTls.from_pki(pki, "untrusted"))
    assert not echo(OUR_AE, scp.port, tls=PeerTls.from_pki(pki, "anonymous"))
    assert not echo(OUR_AE, scp.port)  # plain DICOM on a TLS port


def test_anonymous_tls_when_client_certificates_are_not_required(
    tls_scp: Any, pki: TlsFiles
) -> None:
    context = tls.server_context(pki.server_cert, pki.server_key, require_client_cert=False)
    scp, _ = tls_scp(ssl=context)
    assert echo(OUR_AE, scp.port, tls=PeerTls.from_pki(pki, "anonymous"))


def test_a_stalled_handshake_does_not_block_others_and_is_closed(
    tls_scp: Any, pki: TlsFiles
) -> None:
    """Ten connections that never finish (or never start) the handshake: a real client
    still gets through at once, and each stalled one is closed at the deadline (the
    ACSE timeout, 1 s here)."""
    scp, _ = tls_scp(acse_timeout=1.0)
    stalled = [socket.create_connection((LOOPBACK, scp.port), timeout=10) for _ in range(10)]
    try:
        stalled[0].sendall(b"\x16\x03\x01\x00\xff")  # a ClientHello's record header, no more
        started = time.monotonic()
        assert echo(OUR_AE, scp.port, tls=PeerTls.from_pki(pki, "client"))
        for sock in stalled:
            with contextlib.suppress(ConnectionResetError):
                assert sock.recv(1) == b""
        waited = time.monotonic() - started
    finally:
        for sock in stalled:
            sock.close()
    assert waited < 4.0, f"the stalled handshakes were closed after {waited:.1f} s"


# -- contexts ----------------------------------------------------------------------------------


def test_contexts_follow_bcp_195(pki: TlsFiles) -> None:
    client = tls.client_context(pki.ca_cert, pki.client_cert, pki.client_key)
    server = tls.server_context(pki.server_cert, pki.server_key, pki.ca_cert)
    for ctx in (client, server):
        assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
        assert ctx.verify_mode == ssl.CERT_REQUIRED
        assert ctx.options & ssl.OP_NO_COMPRESSION
        names = {c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"}
        assert names and all("GCM" in n or "CHACHA20" in n for n in names), names
        assert all(n.startswith(("ECDHE", "DHE")) for n in names), names


def test_bad_tls_files_are_input_errors(pki: TlsFiles, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        tls.client_context(tmp_path / "missing.pem")
    with pytest.raises(InputError, match="PEM"):
        tls.client_context(pki.ca_cert, pki.client_cert, pki.server_key)  # key of another cert
    with pytest.raises(InputError, match="both"):
        tls.client_context(pki.ca_cert, pki.client_cert)
    with pytest.raises(InputError, match="--tls-anonymous"):
        tls.server_context(pki.server_cert, pki.server_key)
    with pytest.raises(InputError, match="server context"):
        Session("A@127.0.0.1:104", store_tls=tls.client_context(pki.ca_cert))
    with pytest.raises(InputError, match="SSLContext"):
        Session("A@127.0.0.1:104", tls="yes")  # type: ignore[arg-type]
