"""The embedded store SCP of one move: who may send to it, its limits, and its TLS.

Who may send (the calling AE titles the store SCP accepts):

* the PACS's own AE title when its address names one (``AE@host:port``), and the
  titles in ``StoreOptions.allowed_aes``;
* with a bare ``host:port``, only the titles in ``allowed_aes``: none listed means
  every association is refused, and the move stops with
  :class:`~dicommove.StoreAssociationRefused` naming the calling AE the PACS used;
* anyone, with the explicit opt-in ``allowed_aes=["ANY"]`` (CLI ``--allow-ae ANY``).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Collection
from typing import TYPE_CHECKING

from ..node import DEFAULT_CALLED_AE

if TYPE_CHECKING:
    from ..scp import Refusal, StoreSCP
    from ..store import InstanceStore
    from .run import Run
    from .session import AsyncSession

__all__ = ["allowed_calling_aes", "default_bind", "refusal_message", "store_scp"]

logger = logging.getLogger("dicommove")


def allowed_calling_aes(session: AsyncSession) -> frozenset[str] | None:
    """Return the calling AE titles the store SCP accepts (``None``: any)."""
    options = session.store_options
    if options.any_calling_ae:
        logger.info("the store SCP accepts any calling AE title (allowed_aes=['ANY'])")
        return None
    if session.pacs.ae_title != DEFAULT_CALLED_AE:
        return frozenset({session.pacs.ae_title}) | options.calling_aes
    if not options.calling_aes:
        logger.warning(
            "the PACS address %s:%s names no AE title and allowed_aes lists none: the store "
            "SCP will refuse every association. Give the PACS as AE@host:port, list the AE "
            "title it calls us with (allowed_aes=[...], --allow-ae AE), or accept any "
            "(--allow-ae ANY)",
            session.pacs.host,
            session.pacs.port,
        )
    return options.calling_aes


def default_bind(pacs_host: str) -> str:
    """Return the store SCP's default address: loopback for a loopback PACS, else all."""
    try:
        infos = socket.getaddrinfo(pacs_host, None)
    except OSError:
        return ""
    addresses = [str(info[4][0]) for info in infos]
    loopback = all(a.startswith("127.") or a == "::1" for a in addresses)
    return "127.0.0.1" if loopback and infos else ""


def store_scp(session: AsyncSession, store: InstanceStore, run: Run) -> StoreSCP:
    """Return the store SCP of one move, calling back into ``run``."""
    from ..scp import StoreSCP

    options = session.store_options
    return StoreSCP(
        store,
        ae_title=session.ae_title,
        host=session.bind,
        port=session.port,
        on_instance=run.on_moved_instance,
        accept=run.accept,
        allowed_calling_aes=allowed_calling_aes(session),
        allowed_hosts=options.allowed_hosts,
        max_pdu=options.max_pdu,
        network_timeout=session.timeouts.network,
        acse_timeout=session.timeouts.acse,
        accept_unknown_sop_classes=options.accept_unknown_sop_classes,
        max_associations=options.max_associations,
        max_pending_per_ip=options.max_pending_per_ip,
        min_rate=options.min_rate,
        rate_window=options.rate_window,
        ssl=session.store_tls,
    )


def refusal_message(session: AsyncSession, refusals: Collection[Refusal]) -> str:
    """Say which associations our store SCP refused during a move, and what to change."""
    last = list(refusals)[-1]
    pacs = session.pacs
    ae = last.calling_ae
    who = f" with calling AE {ae!r}" if ae else ""
    text = (
        f"our store SCP refused {len(refusals)} association(s) during this move, the last "
        f"from {last.ip}{who}: {last.why}"
    )
    if last.why.startswith("calling AE"):
        if pacs.ae_title == DEFAULT_CALLED_AE:
            text += (
                f". The PACS address names no AE title, so only allowed_aes are accepted: give "
                f"the PACS as {ae}@{pacs.host}:{pacs.port}, or allowed_aes=[{ae!r}] "
                f"(CLI: --allow-ae {ae}); --allow-ae ANY accepts any calling AE"
            )
        else:
            text += (
                f". The PACS {pacs} calls us as {ae!r}: add allowed_aes=[{ae!r}] "
                f"(CLI: --allow-ae {ae}), or correct the PACS's AE title in its address"
            )
    elif last.why.startswith("a TLS handshake"):
        text += (
            ". The PACS sends over DICOM TLS: give the store SCP a certificate, "
            "store_tls=tls.server_context(cert, key, ca) (CLI: --tls-cert, --tls-key, --tls-ca)"
        )
    elif last.why.startswith("address"):
        text += f". Add allowed_hosts=[{last.ip!r}] (CLI: --allow-host {last.ip}) if it is the PACS"
    elif last.why.startswith("called AE"):
        text += (
            f". The PACS sends to the wrong AE title: register ours, {session.ae_title!r}, as "
            "the move destination on the PACS"
        )
    return text
