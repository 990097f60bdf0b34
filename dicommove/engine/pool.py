"""The associations with the PACS: one per worker, one for C-ECHO, none shared.

A worker's association is its own while it runs a request, so no two coroutines
ever read the same association: :meth:`Pool.echo` uses an association of its own
(defect: an echo during a background move used to read the move's responses).
Failures to connect or associate become typed errors whose messages say what to do.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from typing import TYPE_CHECKING, Literal

from .. import _sop, _ul
from .. import _status as st
from ..errors import AssociationAborted, AssociationRejected, ConnectError
from ..node import Node
from ..options import Timeouts
from ..store import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from .association import Aborted, Association, Rejected

if TYPE_CHECKING:
    from .getstore import GetStore

__all__ = ["ECHO", "FIND", "Pool"]

logger = logging.getLogger("dicommove")

#: The pool key of the association C-ECHO uses.
ECHO = -1
#: The pool key of the first association of C-FINDs run beside a move (then FIND - 1, ...).
FIND = -2
_SERVICES = [_sop.VERIFICATION, *_sop.MOVE.values(), *_sop.FIND.values()]
_GET_SERVICES = [_sop.VERIFICATION, *_sop.GET.values(), *_sop.FIND.values()]
_BOTH = [_sop.VERIFICATION, *_sop.MOVE.values(), *_sop.GET.values(), *_sop.FIND.values()]

#: A-ASSOCIATE-RJ (source, reason) -> meaning (PS3.8 9.3.4).
_REJECT_REASONS = {
    (1, 1): "no reason given",
    (1, 2): "application context name not supported",
    (1, 3): "calling AE title not recognized",
    (1, 7): "called AE title not recognized",
    (2, 1): "no reason given",
    (2, 2): "protocol version not supported",
    (3, 1): "temporary congestion",
    (3, 2): "local limit exceeded",
}


class Pool:
    """Associations to one PACS, by worker number.

    Parameters
    ----------
    pacs : Node
        The PACS.
    ae_title : str
        Our calling AE title.
    max_pdu : int
        The largest PDU we receive (announced).
    timeouts : Timeouts
        Connect, ACSE and DIMSE timeouts.
    method : {"move", "get", "auto"}
        ``"get"``: the associations propose C-GET and, with the Storage SCP role, the
        storage classes of :data:`dicommove._sop.GET_STORAGE_CLASSES` instead of C-MOVE;
        ``"auto"``: both (one storage class fewer: 128 presentation contexts at most).
    relational : bool
        Ask for relational-retrieval (and relational queries) on the Patient and Study
        Root classes by SOP Class Extended Negotiation (PS3.4 C.5.1 to C.5.3).
    tls : ssl.SSLContext, optional
        Open every association over TLS with this client context.
    """

    def __init__(
        self,
        pacs: Node,
        *,
        ae_title: str,
        max_pdu: int,
        timeouts: Timeouts,
        method: Literal["move", "get", "auto"] = "move",
        relational: bool = False,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.pacs = pacs
        self.tls = tls
        self.ae_title = ae_title
        self.max_pdu = max_pdu
        self.timeouts = timeouts
        self.method = method
        self._services = {"move": _SERVICES, "get": _GET_SERVICES, "auto": _BOTH}[method]
        self.relational = relational
        roots = ("study", "patient")
        hierarchical = [t[m] for t in (_sop.MOVE, _sop.GET, _sop.FIND) for m in roots]
        self._extended = {
            uid: b"\x01" for uid in self._services if relational and uid in hierarchical
        }
        # 128 presentation contexts at most: the services, then as many storage classes
        room = 128 - len(self._services)
        self._storage: tuple[str, ...] = _sop.GET_STORAGE_CLASSES[:room] if method != "move" else ()
        self._store: GetStore | None = None
        self._assocs: dict[int, Association] = {}
        self._message_ids = 0

    def relational_accepted(self, assoc: Association, sop_class: str) -> bool:
        """Whether the PACS accepted relational-retrieval (or -queries) for ``sop_class``."""
        return assoc.extended.get(sop_class, b"")[:1] == b"\x01"

    @property
    def storage_classes(self) -> tuple[str, ...]:
        """The storage classes proposed with the SCP role (C-GET), in order."""
        return self._storage

    async def propose_first(self, classes: list[str]) -> bool:
        """Propose ``classes`` first (C-GET); release the associations that did not.

        Returns whether anything changed. The other classes fill the 128 contexts.
        """
        room = 128 - len(self._services)
        wanted = [c for c in classes if c not in self._storage[:room]]
        if not wanted or not self._storage:
            return False
        rest = [c for c in self._storage if c not in classes]
        self._storage = tuple([*classes, *rest][:room])
        await self.close()  # the next associations propose the new list
        return True

    def use_store(self, store: GetStore | None) -> None:
        """Send the C-STOREs of C-GETs to ``store`` (a move's), on every association."""
        self._store = store
        for assoc in self._assocs.values():
            assoc.store = store

    def next_message_id(self) -> int:
        """Return a Message ID unique among this session's requests (1 to 65535, then again)."""
        self._message_ids = self._message_ids % 0xFFFF + 1
        return self._message_ids

    def association(self, worker: int) -> Association | None:
        """Return ``worker``'s association, if it has one."""
        return self._assocs.get(worker)

    def established(self, worker: int) -> bool:
        """Whether ``worker`` holds an established association."""
        assoc = self._assocs.get(worker)
        return assoc is not None and assoc.established

    def connected(self) -> list[int]:
        """Return the workers holding an established association, in order."""
        return sorted(w for w, a in self._assocs.items() if w >= 0 and a.established)

    @property
    def local_address(self) -> str:
        """Our IP address as the PACS sees it, from any association."""
        return next((a.local_address for a in self._assocs.values() if a.local_address), "")

    async def get(self, worker: int) -> Association:
        """Return ``worker``'s established association, opening one if needed.

        Raises
        ------
        ConnectError, AssociationRejected, AssociationAborted
            With a message that says what failed and what to check.
        """
        assoc = self._assocs.get(worker)
        if assoc is not None and assoc.established:
            return assoc
        pacs = self.pacs
        logger.debug("requesting association %s -> %s (worker %d)", self.ae_title, pacs, worker + 1)
        t = self.timeouts
        try:
            assoc = await Association.connect(
                pacs.host,
                pacs.port,
                calling_ae=self.ae_title,
                called_ae=pacs.ae_title,
                abstract_syntaxes=self._services,
                storage_classes=self._storage,
                extended=self._extended,
                max_pdu=self.max_pdu,
                connect_timeout=t.connect,
                acse_timeout=t.acse,
                implementation_class_uid=IMPLEMENTATION_CLASS_UID,
                implementation_version_name=IMPLEMENTATION_VERSION_NAME,
                tls=self.tls,
            )
        except Rejected as rj:
            raise self.rejected(rj) from None
        except Aborted as exc:
            tls = (
                "Over TLS, this is also how a PACS refuses our certificate: check that it "
                "trusts the CA that signed --tls-cert, or that it asks for none if none is "
                "given (--tls-anonymous). "
                if self.tls is not None
                else ""
            )
            raise AssociationAborted(
                f"{pacs} accepted the TCP connection but did not establish an association "
                f"({exc}). {tls}Check that {pacs.host}:{pacs.port} is a DICOM port and that "
                f"the PACS accepts calling AE {self.ae_title!r}."
            ) from None
        except (OSError, asyncio.TimeoutError) as exc:
            in_handshake = isinstance(exc, ssl.SSLError) or (
                isinstance(exc, ConnectionError) and not isinstance(exc, ConnectionRefusedError)
            )
            if self.tls is not None and in_handshake and isinstance(exc, OSError):
                raise ConnectError(self._tls_failed(exc)) from None
            if isinstance(exc, OSError) and exc.errno:
                # asyncio's own message hides the reason; a DNS error (negative) has its own
                text = os.strerror(exc.errno) if exc.errno > 0 else exc.strerror or str(exc)
                why = f"[Errno {exc.errno}] {text}"
            else:
                why = str(exc) or f"timed out after {t.connect:g} s"
            raise ConnectError(
                f"cannot connect to {pacs.host}:{pacs.port}: {why}. Check the address, "
                "that the PACS is running, and that no firewall blocks the port."
            ) from exc
        assoc.store = self._store
        self._assocs[worker] = assoc
        return assoc

    def _tls_failed(self, exc: OSError) -> str:
        """Say why the TLS handshake with the PACS failed, and what to check."""
        where = f"{self.pacs.host}:{self.pacs.port}"
        if isinstance(exc, ssl.SSLCertVerificationError):
            return (
                f"the TLS certificate of {where} is not trusted ({exc.verify_message}): give "
                "the CA that signs it (tls.client_context(ca=...), CLI: --tls-ca FILE)"
            )
        why = getattr(exc, "reason", None) or exc.strerror or str(exc) or type(exc).__name__
        return (
            f"the TLS handshake with {where} failed ({why}). Check that the PACS speaks DICOM "
            "TLS on this port, that it trusts our certificate (--tls-cert, or --tls-anonymous "
            "if it asks for none), and that it allows TLS 1.2 or later"
        )

    def rejected(self, rj: Rejected) -> AssociationRejected:
        """Return the typed error of an A-ASSOCIATE-RJ, with a hint."""
        pacs = self.pacs
        result, source, reason = rj.result, rj.source, rj.reason
        hint = "check the PACS configuration"
        if source == 1 and reason == 3:
            hint = f"register our calling AE title {self.ae_title!r} on the PACS"
        elif source == 1 and reason == 7:
            hint = (
                f"the called AE title {pacs.ae_title!r} is wrong: use the PACS's own AE title "
                f"in AE@host:port; or the PACS does not let {self.ae_title!r} call it (DCMTK "
                "dcmqrscp answers so for a calling AE title its AETable does not allow)"
            )
        elif result == 2:
            hint = "the PACS is busy (transient): try again later or with fewer workers"
        kind = "permanent" if result == 1 else "transient"
        why = _REJECT_REASONS.get((source, reason), f"source {source}, reason {reason}")
        return AssociationRejected(
            f"{pacs} rejected the association ({kind}: {why}): {hint}",
            result=result,
            source=source,
            reason=reason,
        )

    def context(self, assoc: Association, sop_class: str) -> tuple[int, str]:
        """Return the presentation context (id, transfer syntax) of a SOP class.

        Raises
        ------
        AssociationAborted
            If the PACS did not accept it.
        """
        found = assoc.contexts.get(sop_class)
        if found is None:
            other = ""
            if sop_class in (_sop.COMPOSITE_ROOT_MOVE, _sop.COMPOSITE_ROOT_GET):
                other = (
                    "; without Composite Instance Root, move the instances in Study Root "
                    "(model='study') with their Study and Series UIDs (dicommove.find(..., "
                    "level='IMAGE') lists them)"
                )
            elif sop_class in _sop.GET.values():
                other = ", or retrieve with C-MOVE (method='move', --method move)"
            elif sop_class in _sop.MOVE.values():
                other = ", or retrieve with C-GET (method='get', --method get)"
            raise AssociationAborted(
                f"{self.pacs} does not support {_sop.NAMES.get(sop_class, sop_class)}: "
                f"check the model (-S/-P) and the PACS's services{other}"
            )
        return found

    def drop(self, worker: int) -> None:
        """Abort ``worker``'s association (it is broken or must stop at once)."""
        assoc = self._assocs.pop(worker, None)
        if assoc is not None:
            assoc.abort()

    def abort_all(self) -> None:
        """Abort every association at once."""
        for worker in list(self._assocs):
            self.drop(worker)

    async def echo(self, *, idle: bool) -> None:
        """Send a C-ECHO on an association no one else is reading.

        Worker 0's when ``idle`` (no move runs), else one of its own, released afterwards:
        a worker's association is never read by two.

        Raises
        ------
        NetworkError
            If no association could be made or the C-ECHO got no success reply.
        """
        key = 0 if idle else ECHO
        try:
            await self._echo(key)
        finally:
            if key == ECHO:
                await self.release(ECHO)

    async def _echo(self, key: int) -> None:
        assoc = await self.get(key)
        cx_id, _ = self.context(assoc, _sop.VERIFICATION)
        request = _ul.encode_request(
            _ul.C_ECHO_RQ, self.next_message_id(), sop_class=_sop.VERIFICATION
        )
        try:
            assoc.send(cx_id, request)
            code = (await assoc.receive(timeout=self.timeouts.dimse)).status
        except Aborted as exc:
            self.drop(key)
            raise AssociationAborted(
                f"C-ECHO to {self.pacs} failed: {exc}. A PACS that does not know our calling AE "
                f"title often aborts so: register {self.ae_title!r} on the PACS"
            ) from None
        if code != st.SUCCESS:
            self.drop(key)
            raise AssociationAborted(f"C-ECHO to {self.pacs} failed: {st.describe(code)}")

    async def release(self, *keys: int) -> None:
        """Release the associations of ``keys`` that exist (each bounded by the timeouts)."""
        assocs = [self._assocs.pop(key) for key in keys if key in self._assocs]
        timeout = min(self.timeouts.dimse, 10.0)
        await asyncio.gather(*(a.release(timeout) for a in assocs), return_exceptions=True)

    async def close(self) -> None:
        """Release every association (each bounded by the timeouts)."""
        assocs, self._assocs = list(self._assocs.values()), {}
        timeout = min(self.timeouts.dimse, 10.0)
        await asyncio.gather(*(a.release(timeout) for a in assocs), return_exceptions=True)
