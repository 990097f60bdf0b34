"""Tests of the DICOM TLS test infrastructure: the throwaway PKI and the peers over TLS.

They prove, before dicommove's own TLS is involved, that the certificates of
``dicommove.testing.tls.make_pki`` are accepted by Python's ``ssl``, by DCMTK 3.6.7 and by
Orthanc 1.10.1, and that Orthanc C-MOVEs over TLS to a TLS destination.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from peers import LOOPBACK, Orthanc, PeerError, StoreScp, echo, ensure_peers_or_skip, storescu

from dicommove.testing.peers import PeerTls, dataset_bytes
from dicommove.testing.tls import KeyType, TlsFiles, make_pki

if TYPE_CHECKING:
    import pandas as pd

pytest.importorskip("cryptography")

STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"  # Study Root Q/R Information Model - MOVE


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A fresh RSA PKI: CA, server, client and an untrusted client."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_cohort(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """One study of two instances."""
    from dicommove.testing.cohort import make_cohort

    return make_cohort(
        tmp_path_factory.mktemp("tls-cohort"), patients=1, studies=1, series=1, instances=2
    )


@pytest.fixture(scope="module")
def orthanc_tls(
    tmp_path_factory: pytest.TempPathFactory, pki: TlsFiles, tls_cohort: pd.DataFrame
) -> Iterator[Orthanc]:
    """An Orthanc whose SCP speaks DICOM TLS only, holding ``tls_cohort`` (loaded over TLS)."""
    ensure_peers_or_skip("Orthanc", "echoscu", "storescu")
    pacs = Orthanc(tmp_path_factory.mktemp("orthanc-tls"), tls=PeerTls.from_pki(pki, "server"))
    try:
        pacs.start()
        assert pacs.load(Path(p) for p in tls_cohort["path"]) == 2
        yield pacs
    finally:
        pacs.stop(timeout=0)  # its storage is thrown away: no clean shutdown needed


def handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> str:
    """Run one TLS handshake over a socket pair; return the version, or raise ssl.SSLError."""
    left, right = socket.socketpair()
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            with server.wrap_socket(left, server_side=True) as tls:
                tls.recv(1)
        except (OSError, ssl.SSLError) as exc:
            errors.append(exc)

    thread = threading.Thread(target=serve)
    thread.start()
    version = ""
    try:
        with client.wrap_socket(right, server_hostname=LOOPBACK) as tls:
            tls.sendall(b"x")
            version = str(tls.version())
    except OSError as exc:  # e.g. the server's alert, or a reset
        errors.append(exc)
    finally:
        right.close()
        thread.join(5)
        left.close()
    if errors:
        raise errors[0]  # the server's error first: it says why
    return version


def c_move(pacs: Orthanc, study: str, destination: str, tls: ssl.SSLContext | None) -> list[int]:
    """Send one study-level C-MOVE with pynetdicom (over TLS if given); return the statuses."""
    from pydicom.dataset import Dataset
    from pynetdicom import AE

    ae = AE(ae_title="MOVESCU")
    ae.add_requested_context(STUDY_ROOT_MOVE)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    tls_args = None if tls is None else (tls, LOOPBACK)
    assoc = ae.associate(LOOPBACK, pacs.port, ae_title=pacs.ae_title, tls_args=tls_args)
    assert assoc.is_established, f"association to {pacs.address} failed"
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = study
    try:
        return [int(s.Status) for s, _ in assoc.send_c_move(query, destination, STUDY_ROOT_MOVE)]
    finally:
        assoc.release()


def server_context(pki: TlsFiles) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca_cert))
    ctx.load_cert_chain(pki.server_cert, pki.server_key)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_context(pki: TlsFiles, cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))  # checks the SAN IP 127.0.0.1
    ctx.load_cert_chain(cert, key)
    return ctx


# ------------------------------------------------------------------------------------------
# the PKI alone


def test_importing_the_pki_module_does_not_need_cryptography() -> None:
    code = textwrap.dedent("""\
        import sys
        import dicommove.testing.peers, dicommove.testing.tls
        assert "cryptography" not in sys.modules
        """)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("key_type", ["rsa", "ec"])
def test_pki_is_accepted_by_python_ssl(tmp_path: Path, key_type: KeyType) -> None:
    pki = make_pki(tmp_path, key_type=key_type)
    assert all(Path(p).parent == tmp_path for p in vars(pki).values() if p != tmp_path)
    for key in (pki.ca_key, pki.server_key, pki.client_key, pki.untrusted_key):
        assert key.stat().st_mode & 0o777 == 0o600
    server = server_context(pki)
    assert handshake(server, client_context(pki, pki.client_cert, pki.client_key))
    # The server certificate serves as a client one too (one identity per DICOM node).
    assert handshake(server, client_context(pki, pki.server_cert, pki.server_key))
    with pytest.raises(ssl.SSLError, match=r"CERTIFICATE_VERIFY_FAILED|unknown ca"):
        handshake(server, client_context(pki, pki.untrusted_cert, pki.untrusted_key))


def test_pki_certificate_extensions(pki: TlsFiles) -> None:
    import ipaddress

    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for path in (pki.server_cert, pki.client_cert, pki.untrusted_cert):
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
        assert san.get_values_for_type(x509.DNSName) == ["localhost"]
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    untrusted = x509.load_pem_x509_certificate(pki.untrusted_cert.read_bytes())
    assert untrusted.issuer != ca.subject


def test_peer_tls_dcmtk_args(pki: TlsFiles) -> None:
    client = PeerTls.from_pki(pki, "client")
    key, cert, ca = str(pki.client_key), str(pki.client_cert), str(pki.ca_cert)
    assert client.dcmtk_args() == ["+tls", key, cert, "+cf", ca, "-rc"]
    assert PeerTls.from_pki(pki, "anonymous").dcmtk_args() == ["+tla", "+cf", ca, "-rc"]
    server = PeerTls.from_pki(pki, "server", peer_cert="verify")
    assert server.dcmtk_args(server=True)[-1] == "-vc"
    assert server.dcmtk_args()[-1] == "-rc"
    with pytest.raises(ValueError, match="needs a certificate"):
        PeerTls.from_pki(pki, "anonymous").dcmtk_args(server=True)
    with pytest.raises(ValueError, match="both cert and key"):
        PeerTls(ca=pki.ca_cert, cert=pki.client_cert)
    with pytest.raises(ValueError, match="ignore"):
        PeerTls(cert=pki.client_cert, key=pki.client_key)


# ------------------------------------------------------------------------------------------
# DCMTK and Orthanc over TLS


@pytest.mark.peers
def test_dcmtk_storescu_tls_into_storescp_tls(
    tmp_path: Path, pki: TlsFiles, tls_cohort: pd.DataFrame
) -> None:
    ensure_peers_or_skip("storescp", "storescu", "echoscu")
    files = [Path(p) for p in tls_cohort["path"]]
    with StoreScp(tmp_path / "scp", tls=PeerTls.from_pki(pki, "server")) as scp:
        assert not echo(scp.ae_title, scp.port)  # plain DICOM is refused
        assert storescu(scp.ae_title, scp.port, files, tls=PeerTls.from_pki(pki, "client")) == 2
        with pytest.raises(PeerError, match="exited"):
            storescu(scp.ae_title, scp.port, files, tls=PeerTls.from_pki(pki, "untrusted"))
        received = scp.files()
    assert sorted(dataset_bytes(p) for p in received) == sorted(dataset_bytes(p) for p in files)


@pytest.mark.peers
def test_orthanc_tls_echo(orthanc_tls: Orthanc, pki: TlsFiles) -> None:
    config = orthanc_tls.config_path.read_text()
    assert '"DicomTlsEnabled": true' in config
    assert orthanc_tls.count() == 2  # loaded over TLS
    ae, port = orthanc_tls.ae_title, orthanc_tls.port
    assert echo(ae, port, tls=PeerTls.from_pki(pki, "client"))
    assert not echo(ae, port, tls=PeerTls.from_pki(pki, "untrusted"))
    assert not echo(ae, port, tls=PeerTls.from_pki(pki, "anonymous"))  # certificate required
    assert not echo(ae, port)  # plain DICOM is refused
    log = (orthanc_tls.workdir / "orthanc-main.log").read_text(errors="replace")
    assert "TLS error: certificate verify failed" in log


@pytest.mark.peers
def test_orthanc_c_move_over_tls_to_tls_storescp(
    orthanc_tls: Orthanc, pki: TlsFiles, tls_cohort: pd.DataFrame, tmp_path: Path
) -> None:
    """pynetdicom -> Orthanc over TLS (C-MOVE), Orthanc -> DCMTK storescp over TLS (C-STORE)."""
    ensure_peers_or_skip("storescp")
    study = str(tls_cohort["StudyInstanceUID"].iloc[0])
    with StoreScp(tmp_path / "scp", ae_title="TLS-SCP", tls=PeerTls.from_pki(pki, "client")) as scp:
        orthanc_tls.add_modality("TLS-SCP", LOOPBACK, scp.port, tls=True)
        try:
            assert orthanc_tls.get("/modalities/TLS-SCP/configuration")["UseDicomTls"] is True
            tls = client_context(pki, pki.client_cert, pki.client_key)
            statuses = c_move(orthanc_tls, study, "TLS-SCP", tls)
            # The same destination without UseDicomTls: Orthanc's plain association fails.
            orthanc_tls.add_modality("TLS-SCP", LOOPBACK, scp.port)
            assert orthanc_tls.get("/modalities/TLS-SCP/configuration")["UseDicomTls"] is False
            assert c_move(orthanc_tls, study, "TLS-SCP", tls)[-1] == 0xC000
        finally:
            orthanc_tls.remove_modality("TLS-SCP")
        received = scp.files()
        log = scp.log_path.read_text(errors="replace")
    assert statuses[-1] == 0x0000, [hex(s) for s in statuses]
    expected = sorted(dataset_bytes(p) for p in tls_cohort["path"])
    assert sorted(dataset_bytes(p) for p in received) == expected
    assert "TLS error: wrong version number" in log  # the plain attempt


@pytest.mark.peers
def test_orthanc_tls_scu_only(tmp_path: Path, pki: TlsFiles, tls_cohort: pd.DataFrame) -> None:
    """``tls_scp=False``: plain SCP (plain C-MOVE in), TLS to ``tls_modalities`` destinations."""
    ensure_peers_or_skip("Orthanc", "echoscu", "storescu", "storescp")
    study = str(tls_cohort["StudyInstanceUID"].iloc[0])
    with StoreScp(tmp_path / "scp", ae_title="TLS-SCP", tls=PeerTls.from_pki(pki, "client")) as scp:
        pacs = Orthanc(
            tmp_path / "orthanc",
            modalities={"TLS-SCP": (LOOPBACK, scp.port)},
            tls=PeerTls.from_pki(pki, "server"),
            tls_scp=False,
            tls_modalities=["TLS-SCP"],
        )
        try:
            pacs.start()
            assert pacs.client_tls is None
            assert echo(pacs.ae_title, pacs.port)  # plain
            assert pacs.load(Path(p) for p in tls_cohort["path"]) == 2
            statuses = c_move(pacs, study, "TLS-SCP", None)
        finally:
            pacs.stop(timeout=0)
        received = scp.files()
    assert statuses[-1] == 0x0000, [hex(s) for s in statuses]
    assert len(received) == 2


def test_orthanc_tls_arguments_are_checked(tmp_path: Path, pki: TlsFiles) -> None:
    server = PeerTls.from_pki(pki, "server")
    with pytest.raises(ValueError, match=r"tls\.cert"):
        Orthanc(tmp_path, tls=PeerTls.from_pki(pki, "anonymous"))
    with pytest.raises(ValueError, match="always verifies"):
        Orthanc(tmp_path, tls=PeerTls(pki.ca_cert, server.cert, server.key, peer_cert="ignore"))
    with pytest.raises(ValueError, match="need a TLS identity"):
        Orthanc(tmp_path, modalities={"A": (LOOPBACK, 1)}, tls_modalities=["A"])
    with pytest.raises(ValueError, match="not in modalities"):
        Orthanc(tmp_path, tls=server, tls_modalities=["A"])
    with pytest.raises(ValueError, match="needs a TLS identity"):
        Orthanc(tmp_path).add_modality("A", LOOPBACK, 1, tls=True)
    with pytest.raises(ValueError, match="certificate and key"):
        StoreScp(tmp_path, tls=PeerTls.from_pki(pki, "anonymous"))
