"""DICOM TLS (PS3.15 Annex B.1): SSL contexts for our associations and the store SCP.

A :class:`~dicommove.Session` takes two :class:`ssl.SSLContext`: ``tls=`` for the
associations we open to the PACS (C-ECHO, C-FIND, C-MOVE, C-GET) and ``store_tls=``
for the embedded store SCP, where the PACS connects to us::

    from dicommove import Session, tls

    Session(
        "PACS@10.0.0.5:2762",
        tls=tls.client_context(ca="site-ca.pem", cert="me.pem", key="me.key"),
        store_tls=tls.server_context(cert="me.pem", key="me.key", ca="site-ca.pem"),
    )

The contexts made here follow the BCP 195 profile that DCMTK and Orthanc use: TLS 1.2
or later, forward-secret AEAD cipher suites only, no compression or renegotiation;
the peer's certificate is always verified against ``ca``. Both sides present a
certificate unless a site runs *anonymous* (server-only) TLS. Any other
:class:`ssl.SSLContext` works too.
"""

from __future__ import annotations

import os
import ssl

from .errors import InputError

__all__ = ["BCP195_CIPHERS", "client_context", "server_context"]

#: TLS 1.2 cipher suites (TLS 1.3's are all allowed): ECDHE or DHE, AES-GCM or ChaCha20.
BCP195_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!eNULL:!MD5:!DSS"

PathLike = str | os.PathLike[str]


def _base(protocol: int) -> ssl.SSLContext:
    ctx = ssl.SSLContext(protocol)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(BCP195_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    return ctx


def _load(
    ctx: ssl.SSLContext, ca: PathLike | None, cert: PathLike | None, key: PathLike | None
) -> None:
    """Load the CA and our certificate, turning a bad file into an InputError."""
    if (cert is None) != (key is None):
        raise InputError("TLS: give both a certificate and its private key (cert= and key=)")
    try:
        if ca is not None:
            ctx.load_verify_locations(cafile=os.fspath(ca))
        if cert is not None and key is not None:
            ctx.load_cert_chain(os.fspath(cert), os.fspath(key))
    except FileNotFoundError as exc:
        raise InputError(f"TLS: {exc.filename}: no such file") from None
    except (ssl.SSLError, OSError) as exc:
        files = ", ".join(os.fspath(p) for p in (ca, cert, key) if p is not None)
        raise InputError(
            f"TLS: cannot load {files}: {getattr(exc, 'reason', None) or exc}. They must be PEM "
            "files: the CA certificate(s), our certificate, and its unencrypted private key "
            "that matches it"
        ) from None


def client_context(
    ca: PathLike | None = None,
    cert: PathLike | None = None,
    key: PathLike | None = None,
    *,
    check_hostname: bool = False,
) -> ssl.SSLContext:
    """Return a context for our associations to the PACS (``Session(tls=...)``).

    Parameters
    ----------
    ca : path-like, optional
        PEM file of the CA certificate(s) that sign the PACS's certificate. Default:
        the system's trusted CAs.
    cert, key : path-like, optional
        Our certificate and its private key (PEM), presented to the PACS. Leave both
        out for anonymous TLS, where the PACS asks for no client certificate.
    check_hostname : bool
        Also check that the PACS's certificate names the host we connect to. DCMTK and
        Orthanc verify the certificate chain only; so does the default.

    Returns
    -------
    ssl.SSLContext

    Raises
    ------
    InputError
        If a file is missing or is not a PEM certificate or key.
    """
    ctx = _base(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = check_hostname
    ctx.verify_mode = ssl.CERT_REQUIRED
    if ca is None:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    _load(ctx, ca, cert, key)
    return ctx


def server_context(
    cert: PathLike,
    key: PathLike,
    ca: PathLike | None = None,
    *,
    require_client_cert: bool = True,
) -> ssl.SSLContext:
    """Return a context for the embedded store SCP (``Session(store_tls=...)``).

    Parameters
    ----------
    cert, key : path-like
        The store SCP's certificate and private key (PEM).
    ca : path-like, optional
        PEM file of the CA certificate(s) that sign the PACS's client certificate.
        Required when ``require_client_cert`` is true.
    require_client_cert : bool
        Refuse a peer without a certificate signed by ``ca`` (default). ``False``
        accepts any peer that completes the handshake (anonymous TLS); the AE-title and
        address allow-lists still apply.

    Returns
    -------
    ssl.SSLContext

    Raises
    ------
    InputError
        If a file is missing or unreadable, or client certificates are required with no
        ``ca`` to verify them.
    """
    if require_client_cert and ca is None:
        raise InputError(
            "TLS: the store SCP verifies the PACS's certificate against a CA: give ca= (the "
            "PEM file of the CA that signs the PACS's certificate; CLI: --tls-ca), or "
            "require_client_cert=False (--tls-anonymous) to accept any peer"
        )
    ctx = _base(ssl.PROTOCOL_TLS_SERVER)
    ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_NONE
    _load(ctx, ca, cert, key)
    return ctx
