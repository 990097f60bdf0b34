"""The demo PACS's hooks into pynetdicom: fault injection, Move Originator, TCP_NODELAY.

pynetdicom's Query/Retrieve SCP decides every response and sub-operation itself; the hooks
here are installed per association (never globally) to change what it does:

* :class:`ResponseHook` wraps the DIMSE ``send_msg`` to rewrite C-MOVE/C-GET responses: a
  forced final status and ErrorComment, no final response after an abort, no pending
  responses or pending responses without counts, 65,535 remaining sub-operations (see
  :class:`~dicommove.testing.PacsFaults`);
* :class:`StoreHook` wraps ``send_c_store`` for the sub-operations: Move Originator fields,
  delays, dropped and failed instances, and the count of what was sent;
* :class:`PacsAE` installs the store hook on the C-MOVE sub-association, sets TCP_NODELAY
  and closes the socket of a refused connection; :class:`NoDelayServer` sets TCP_NODELAY on
  accepted connections;
* :func:`store_contexts` chooses the presentation contexts a sub-association proposes.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, build_context
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_GET, C_MOVE
from pynetdicom.presentation import PresentationContext
from pynetdicom.transport import AddressInformation, AssociationSocket, ThreadedAssociationServer

from .. import _status as st
from .._pynetdicom import reactor_reads_nothing
from ._index import Entry
from ._match import error_comment

if TYPE_CHECKING:
    from ._handlers import QueryRetrieveHandlers

LOGGER = logging.getLogger("dicommove.testing")

_NATIVE = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)


def store_contexts(entries: Iterable[Entry]) -> list[PresentationContext]:
    """Return the contexts to propose for a C-STORE sub-association.

    Each SOP class with its stored transfer syntax first, then Explicit and
    Implicit VR Little Endian.
    """
    by_class: dict[str, list[str]] = {}
    for entry in entries:
        syntaxes = by_class.setdefault(entry.sop_class_uid, [])
        if entry.transfer_syntax not in syntaxes:
            syntaxes.append(entry.transfer_syntax)
    contexts = []
    for sop_class, syntaxes in by_class.items():
        native = [ts for ts in syntaxes if ts in _NATIVE]
        encoded = [ts for ts in syntaxes if ts not in _NATIVE]
        if native or not encoded:
            contexts.append(build_context(sop_class, list(dict.fromkeys([*native, *_NATIVE]))))
        for ts in encoded:
            contexts.append(build_context(sop_class, [ts, *_NATIVE]))
    if len(contexts) > 128:
        LOGGER.warning(
            "DemoPACS: %d presentation contexts needed, only the first 128 are proposed",
            len(contexts),
        )
    return contexts[:128]


class ResponseHook:
    """Wraps an association's DIMSE ``send_msg`` to rewrite C-MOVE/C-GET responses.

    pynetdicom's Q/R SCP decides every response itself. This hook lets the handler
    attach a status and ErrorComment to the final response, drop it (after an
    abort), drop pending responses (:attr:`PacsFaults.skip_pending`) or their
    sub-operation counts (:attr:`PacsFaults.pending_without_counts`).
    """

    def __init__(self, pacs: QueryRetrieveHandlers, send: Callable[[Any, int], None]) -> None:
        self._pacs = pacs
        self._send = send
        self._final: dict[int, tuple[int | None, str, bool]] = {}
        self.overflow: set[int] = set()  # message IDs whose counts say 65,535 remaining

    def override(self, msg_id: int, status: int | None, comment: str = "") -> None:
        """Send the final response to `msg_id` with `status` and `comment`."""
        self._final[msg_id] = (status, error_comment(comment), False)

    def suppress(self, msg_id: int) -> None:
        """Send no final response to `msg_id` (the association is being aborted)."""
        self._final[msg_id] = (None, "", True)

    def __call__(self, primitive: Any, context_id: int) -> None:
        if (
            isinstance(primitive, C_MOVE | C_GET)
            and primitive.MessageIDBeingRespondedTo is not None
        ):
            msg_id = int(primitive.MessageIDBeingRespondedTo)
            status = primitive.Status
            if status in (st.PENDING, st.PENDING_WARNING):
                faults = self._pacs.faults
                if faults.skip_pending or self._final.get(msg_id, (0, "", False))[2]:
                    return
                if faults.pending_without_counts:  # None: pynetdicom leaves the element out
                    primitive.NumberOfRemainingSuboperations = None
                    primitive.NumberOfCompletedSuboperations = None
                    primitive.NumberOfFailedSuboperations = None
                    primitive.NumberOfWarningSuboperations = None
                elif msg_id in self.overflow:
                    primitive.NumberOfRemainingSuboperations = 0xFFFF
            else:
                status_override, comment, suppress = self._final.pop(msg_id, (None, "", False))
                if suppress:
                    return
                if status_override is not None:
                    primitive.Status = status_override
                if (
                    not comment
                    and isinstance(primitive, C_MOVE)
                    and status == st.MOVE_DESTINATION_UNKNOWN
                ):
                    comment = "could not associate with the move destination"
                if comment:
                    setattr(primitive, "ErrorComment", comment)  # noqa: B010 - typed as None
        self._send(primitive, context_id)


class StoreHook:
    """Wraps an association's ``send_c_store`` for C-MOVE and C-GET sub-operations.

    It sets the Move Originator fields to the C-MOVE requestor (pynetdicom would
    send the PACS's own AE title), applies the store faults and counts.
    """

    def __init__(self, pacs: QueryRetrieveHandlers, originator: tuple[str, int] | None) -> None:
        self._pacs = pacs
        self._originator = originator

    def install(self, assoc: Association) -> None:
        """Replace ``assoc.send_c_store`` by the hooked version."""
        if self._originator is not None:
            self._pacs._count_store_association()
        send = assoc.send_c_store
        pacs = self._pacs
        originator = self._originator

        def send_c_store(
            dataset: Any,
            msg_id: int = 1,
            priority: int = 2,
            originator_aet: str | None = None,
            originator_id: int | None = None,
        ) -> Dataset:
            faults = pacs.faults
            uid = str(dataset.get("SOPInstanceUID", "")) if isinstance(dataset, Dataset) else ""
            if faults.delay_per_store > 0:
                time.sleep(faults.delay_per_store)
            status = Dataset()
            if uid and uid in faults.fail_instances:
                status.Status = st.STORE_OUT_OF_RESOURCES  # as if the destination refused
                return status
            if uid and uid in faults.drop_instances:
                status.Status = st.SUCCESS
                return status
            if originator is not None:
                originator_aet, originator_id = originator
            result: Dataset = send(
                dataset,
                msg_id=msg_id,
                priority=priority,
                originator_aet=originator_aet,
                originator_id=originator_id,
            )
            pacs._sent(uid)
            return result

        setattr(assoc, "send_c_store", send_c_store)  # noqa: B010 - instance override


class PacsAE(AE):
    """An AE whose ``associate`` accepts a ``store_hook``, and does not leak sockets.

    pynetdicom's C-MOVE SCP opens the store sub-association with
    ``ae.associate(addr, port, **kwargs)``, the kwargs coming from the handler's
    first yield: that is the one place to reach the sub-association.

    When the TCP connection is refused, pynetdicom 3.0.4 drops its socket without
    closing it (``AssociationSocket._shutdown_socket`` calls ``shutdown()`` first,
    which raises on an unconnected socket, so ``close()`` never runs), and the
    ResourceWarning at garbage collection fails test suites that turn warnings
    into errors. ``_create_socket`` remembers the socket so it can be closed.
    """

    _created = threading.local()

    def _create_socket(
        self,
        assoc: Association,
        address: AddressInformation,
        tls_args: tuple[ssl.SSLContext, str] | None,
    ) -> AssociationSocket:
        transport = super()._create_socket(assoc, address, tls_args)
        self._created.socket = transport.socket
        return transport

    def associate(
        self, *args: Any, store_hook: StoreHook | None = None, **kwargs: Any
    ) -> Association:
        self._created.socket = None
        try:
            assoc = super().associate(*args, **kwargs)
        finally:
            created: socket.socket | None = self._created.socket
            self._created.socket = None
        if not assoc.is_established:
            if created is not None:
                created.close()
            return assoc
        transport = assoc.dul.socket
        if transport is not None and transport.socket is not None:
            _no_delay(transport.socket)
        reactor_reads_nothing(assoc)
        if store_hook is not None:
            store_hook.install(assoc)
        return assoc


class NoDelayServer(ThreadedAssociationServer):
    """The association server, with Nagle's algorithm off on accepted connections."""

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        """Accept a connection and set TCP_NODELAY on it."""
        sock, address = super().get_request()
        _no_delay(sock)
        return sock, address


def _no_delay(sock: socket.socket) -> None:
    """Send small PDUs at once.

    pynetdicom leaves Nagle's algorithm on; with delayed ACKs every C-STORE
    sub-operation then waits about 40 ms for the last segment of its request
    (50 ms instead of 8 ms per instance on loopback).
    """
    with contextlib.suppress(OSError):  # not TCP, or already closed
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
