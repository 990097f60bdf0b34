"""A throwaway PKI for DICOM TLS tests: one CA, a server and a client certificate, an outsider.

:func:`make_pki` writes PEM files into a directory and returns their paths as a
:class:`TlsFiles`:

* a CA (key and self-signed certificate) that every peer trusts (``ca_cert``),
* a *server* and a *client* leaf certificate signed by that CA,
* an *untrusted* CA and a client leaf signed by it, for "unknown client" tests: a valid
  chain, to a root nobody trusts.

>>> from dicommove.testing.tls import make_pki
>>> pki = make_pki(tmp_path)  # doctest: +SKIP
>>> pki.server_cert.name
'server.pem'

Both leaves carry the extended key usages serverAuth *and* clientAuth, because a DICOM node
uses one certificate for both roles (Orthanc's ``DicomTlsCertificate`` authenticates its SCP
and its SCU), and the subject alternative names ``IP:127.0.0.1`` and ``DNS:localhost``.
Keys are RSA 2048 by default, or ECDSA P-256 (``key_type="ec"``). DCMTK 3.6.7's default
TLS profile (BCP 195, non-downgrading), also inside Orthanc 1.10.1, accepts RSA with TLS 1.2
and 1.3, but ECDSA with TLS 1.3 only (its TLS 1.2 suites are all RSA: "no shared cipher").
Private keys are unencrypted PKCS #8 PEM, as Orthanc requires (``DicomTlsPrivateKey`` takes
no password), readable by their owner only.

The package ``cryptography`` (a test dependency, ``pip install dicommove[test]``) is
imported only when :func:`make_pki` runs: importing this module does not need it.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

__all__ = ["KeyType", "TlsFiles", "make_pki"]

#: The key algorithms :func:`make_pki` offers: RSA 2048 or ECDSA on P-256.
KeyType = Literal["rsa", "ec"]


@dataclass(frozen=True)
class TlsFiles:
    """The PEM files written by :func:`make_pki`.

    Attributes
    ----------
    directory : Path
        Where the files are.
    ca_cert, ca_key : Path
        The trusted CA's self-signed certificate and its key.
    server_cert, server_key : Path
        A leaf signed by the CA (subject ``CN=dicommove test server``).
    client_cert, client_key : Path
        Another leaf signed by the CA (subject ``CN=dicommove test client``).
    untrusted_ca_cert : Path
        A second CA that no peer trusts.
    untrusted_cert, untrusted_key : Path
        A leaf signed by the untrusted CA (subject ``CN=dicommove untrusted client``).
    """

    directory: Path
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    untrusted_ca_cert: Path
    untrusted_cert: Path
    untrusted_key: Path


def make_pki(
    directory: str | os.PathLike[str], *, key_type: KeyType = "rsa", days: int = 7
) -> TlsFiles:
    """Write a fresh CA, server and client certificates and an untrusted client into ``directory``.

    Parameters
    ----------
    directory : str or os.PathLike
        Created if missing; existing files of the same names are replaced.
    key_type : {"rsa", "ec"}
        RSA 2048 (default; ~0.3 s for the five keys) or ECDSA P-256 (instant; TLS 1.3
        only with DCMTK peers).
    days : int
        Validity of every certificate, from one hour ago (clock skew) on.

    Returns
    -------
    TlsFiles
        The paths of the PEM files.

    Raises
    ------
    ModuleNotFoundError
        If the package ``cryptography`` is not installed.
    ValueError
        If ``key_type`` is unknown or ``days`` is not positive.
    """
    if key_type not in ("rsa", "ec"):
        raise ValueError(f"key_type must be 'rsa' or 'ec', not {key_type!r}")
    if days < 1:
        raise ValueError(f"days must be positive, not {days}")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    not_before, not_after = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=days)

    def new_key() -> CertificateIssuerPrivateKeyTypes:
        if key_type == "ec":
            return ec.generate_private_key(ec.SECP256R1())
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def name(common_name: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "dicommove tests"),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            ]
        )

    def builder(
        subject: str, key: CertificateIssuerPrivateKeyTypes, issuer: x509.Name
    ) -> x509.CertificateBuilder:
        public = key.public_key()
        return (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(issuer)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        )

    def make_ca(subject: str) -> tuple[CertificateIssuerPrivateKeyTypes, x509.Certificate]:
        key = new_key()
        cert = (
            builder(subject, key, name(subject))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        return key, cert

    def make_leaf(
        subject: str, ca_key: CertificateIssuerPrivateKeyTypes, ca: x509.Certificate
    ) -> tuple[CertificateIssuerPrivateKeyTypes, x509.Certificate]:
        key = new_key()
        ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        cert = (
            builder(subject, key, ca.subject)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=key_type == "rsa",
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                        x509.DNSName("localhost"),
                    ]
                ),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        return key, cert

    def write_cert(filename: str, cert: x509.Certificate) -> Path:
        path = out / filename
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return path

    def write_key(filename: str, key: CertificateIssuerPrivateKeyTypes) -> Path:
        path = out / filename
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(pem)
        return path

    ca_key, ca = make_ca("dicommove test CA")
    server_key, server = make_leaf("dicommove test server", ca_key, ca)
    client_key, client = make_leaf("dicommove test client", ca_key, ca)
    other_ca_key, other_ca = make_ca("dicommove untrusted CA")
    untrusted_key, untrusted = make_leaf("dicommove untrusted client", other_ca_key, other_ca)
    return TlsFiles(
        directory=out,
        ca_cert=write_cert("ca.pem", ca),
        ca_key=write_key("ca.key", ca_key),
        server_cert=write_cert("server.pem", server),
        server_key=write_key("server.key", server_key),
        client_cert=write_cert("client.pem", client),
        client_key=write_key("client.key", client_key),
        untrusted_ca_cert=write_cert("untrusted-ca.pem", other_ca),
        untrusted_cert=write_cert("untrusted.pem", untrusted),
        untrusted_key=write_key("untrusted.key", untrusted_key),
    )
