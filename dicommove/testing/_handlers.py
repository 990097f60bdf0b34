"""What the demo PACS does with requests: the C-FIND, C-MOVE and C-GET handlers, and their log.

:class:`RequestLog` records, under one lock, the identifiers of the requests received and
what the C-STORE sub-operations sent; its properties are part of
:class:`~dicommove.testing.DemoPACS`. :class:`QueryRetrieveHandlers` holds the pynetdicom
event handlers: they match the request against the index (:mod:`._match`), answer C-FIND,
select and send the instances of a C-MOVE or C-GET, and inject the faults of
:class:`~dicommove.testing.PacsFaults` that are not in the hooks (stall, abort). Both are
bases of :class:`~dicommove.testing.DemoPACS`, which provides the state they declare.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pydicom.dataset import Dataset
from pynetdicom.association import Association
from pynetdicom.events import Event

from .. import _status as st
from ._hooks import ResponseHook, StoreHook, store_contexts
from ._index import Entry, Index, load_instance
from ._match import (
    ALLOWED,
    Key,
    Refused,
    matches,
    parse_identifier,
    query_level,
    response,
    select,
)

if TYPE_CHECKING:
    from .pacs import PacsFaults

LOGGER = logging.getLogger("dicommove.testing")


class RequestLog:
    """The requests a PACS received and the instances it sent, safe to read from any thread.

    ``_lock`` guards these logs and counters; a subclass may use it for its own state too.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._move_requests: list[Dataset] = []
        self._move_message_ids: list[int] = []
        self._get_requests: list[Dataset] = []
        self._find_requests: list[Dataset] = []
        self._sent_instances: list[str] = []
        self._store_associations = 0

    @property
    def move_requests(self) -> list[Dataset]:
        """The identifiers of the C-MOVE requests received, oldest first (a copy).

        Only decodable identifiers are logged; :attr:`move_message_ids` is parallel.
        """
        with self._lock:
            return list(self._move_requests)

    @property
    def move_message_ids(self) -> list[int]:
        """The Message IDs of the requests in :attr:`move_requests`, in the same order."""
        with self._lock:
            return list(self._move_message_ids)

    @property
    def get_requests(self) -> list[Dataset]:
        """The identifiers of the C-GET requests received, oldest first (a copy)."""
        with self._lock:
            return list(self._get_requests)

    @property
    def find_requests(self) -> list[Dataset]:
        """The identifiers of the C-FIND requests received, oldest first (a copy)."""
        with self._lock:
            return list(self._find_requests)

    @property
    def sent_instances(self) -> list[str]:
        """SOPInstanceUIDs sent by C-STORE sub-operations, in order (a copy).

        Instances dropped or failed by :attr:`faults` are not included.
        """
        with self._lock:
            return list(self._sent_instances)

    @property
    def store_associations(self) -> int:
        """How many C-STORE sub-associations C-MOVEs have opened."""
        with self._lock:
            return self._store_associations

    def reset_counters(self) -> None:
        """Clear the request logs, :attr:`sent_instances` and :attr:`store_associations`."""
        with self._lock:
            self._move_requests.clear()
            self._move_message_ids.clear()
            self._get_requests.clear()
            self._find_requests.clear()
            self._sent_instances.clear()
            self._store_associations = 0

    # -- internals -----------------------------------------------------------------

    def _count_store_association(self) -> None:
        with self._lock:
            self._store_associations += 1

    def _sent(self, uid: str) -> None:
        with self._lock:
            self._sent_instances.append(uid)

    def _log_request(self, log: list[Dataset], identifier: Dataset, msg_id: int) -> None:
        with self._lock:
            log.append(identifier)
            if log is self._move_requests:
                self._move_message_ids.append(msg_id)


class QueryRetrieveHandlers(RequestLog):
    """The C-FIND, C-MOVE and C-GET handlers of a PACS serving an :class:`Index`.

    A subclass provides the attributes declared here and :meth:`_resolve`.
    """

    faults: PacsFaults
    _ae_title: str
    _index: Index
    _stopping: threading.Event  # set when the PACS stops: ends a stall at once

    def _resolve(self, ae_title: str) -> tuple[str, int] | None:
        """Return the address of a move destination, or None if unknown."""
        raise NotImplementedError

    def _response_hook(self, assoc: Association) -> ResponseHook:
        dimse = assoc.dimse
        hook = getattr(dimse, "_dicommove_hook", None)
        if not isinstance(hook, ResponseHook):
            hook = ResponseHook(self, dimse.send_msg)
            setattr(dimse, "send_msg", hook)  # noqa: B010 - instance override
            setattr(dimse, "_dicommove_hook", hook)  # noqa: B010
        return hook

    def _identifier(self, event: Event, log: list[Dataset]) -> dict[int, Key]:
        """Decode and log the request's identifier."""
        try:
            identifier = event.identifier
            query = parse_identifier(identifier)
        except Exception as exc:  # a broken identifier from the peer
            LOGGER.warning("DemoPACS cannot decode an identifier: %s", exc)
            raise Refused(st.UNABLE_TO_PROCESS, "cannot decode the identifier") from exc
        self._log_request(log, identifier, int(event.request.MessageID or 0))
        return query

    def _on_find(self, event: Event) -> Iterator[tuple[int | Dataset, Dataset | None]]:
        index = self._index
        try:
            query = self._identifier(event, self._find_requests)
            level = query_level(query, str(event.request.AffectedSOPClassUID))
        except Refused as exc:
            status = Dataset()
            status.Status = exc.status
            status.ErrorComment = exc.comment
            LOGGER.info("DemoPACS refuses a C-FIND: %s", exc.comment)
            yield status, None
            return
        allowed = None if level == "IMAGE" else ALLOWED[level]
        for record in index.records[level]:
            if event.is_cancelled:
                yield st.CANCEL, None
                return
            if matches(record, query, allowed):
                yield st.PENDING, response(record, query, level, self._ae_title)

    def _on_move(self, event: Event) -> Iterator[Any]:
        index = self._index
        assoc = event.assoc
        msg_id = int(event.request.MessageID or 0)
        hook = self._response_hook(assoc)
        destination = (event.move_destination or "").strip()
        try:
            query = self._identifier(event, self._move_requests)
            entries = select(index, str(event.request.AffectedSOPClassUID), query)
        except Refused as exc:
            LOGGER.info("DemoPACS refuses a C-MOVE: %s", exc.comment)
            hook.override(msg_id, exc.status, exc.comment)
            yield None, None  # pynetdicom sends a final response, which the hook rewrites
            return
        address = self._resolve(destination)
        if address is None:
            LOGGER.info("DemoPACS: unknown move destination %r", destination)
            hook.override(
                msg_id, st.MOVE_DESTINATION_UNKNOWN, f"unknown move destination {destination!r}"
            )
            yield None, None
            return
        faults = self.faults
        if faults.move_status is not None:
            hook.override(msg_id, faults.move_status, faults.error_comment)
        model = str(event.request.AffectedSOPClassUID)
        if faults.overflow_counts and query_level(query, model) in ("PATIENT", "STUDY"):
            hook.overflow.add(msg_id)
        LOGGER.info(
            "DemoPACS: C-MOVE %d from %s: %d instances to %s at %s:%d",
            msg_id,
            assoc.requestor.ae_title,
            len(entries),
            destination,
            *address,
        )
        store_hook = StoreHook(self, originator=(assoc.requestor.ae_title, msg_id))
        yield (
            address[0],
            address[1],
            {"contexts": store_contexts(entries), "store_hook": store_hook},
        )
        yield len(entries)
        yield from self._sub_operations(event, entries, hook, msg_id)

    def _on_get(self, event: Event) -> Iterator[Any]:
        index = self._index
        assoc = event.assoc
        msg_id = int(event.request.MessageID or 0)
        hook = self._response_hook(assoc)
        if not getattr(assoc, "_dicommove_store_hook", False):
            StoreHook(self, originator=None).install(assoc)
            setattr(assoc, "_dicommove_store_hook", True)  # noqa: B010
        try:
            query = self._identifier(event, self._get_requests)
            entries = select(index, str(event.request.AffectedSOPClassUID), query)
        except Refused as exc:
            LOGGER.info("DemoPACS refuses a C-GET: %s", exc.comment)
            hook.override(msg_id, exc.status, exc.comment)
            yield 0  # pynetdicom sends a final response, which the hook rewrites
            return
        yield len(entries)
        yield from self._sub_operations(event, entries, hook, msg_id)

    def _sub_operations(
        self, event: Event, entries: list[Entry], hook: ResponseHook, msg_id: int
    ) -> Iterator[tuple[int, Dataset | None]]:
        faults = self.faults
        for n, entry in enumerate(entries):
            cancelled = False
            if faults.stall_after is not None and n == faults.stall_after:
                cancelled = self._stall(event)
            # (pynetdicom's is_cancelled is true once: it consumes the C-CANCEL)
            if (cancelled or event.is_cancelled) and not faults.ignore_cancel:
                yield st.CANCEL, None
                return
            abort_after = faults.abort_after
            if abort_after is not None and n >= abort_after and faults.abort_count != 0:
                if faults.abort_count is not None:
                    faults.abort_count -= 1
                LOGGER.info("DemoPACS: aborting after %d sub-operations (fault)", n)
                hook.suppress(msg_id)
                event.assoc.abort(block=False)
                return
            yield st.PENDING, load_instance(entry)

    def _stall(self, event: Event) -> bool:
        """Stay silent for ``faults.stall_seconds``, or until cancelled or stopped.

        Returns whether a C-CANCEL ended it.
        """
        faults = self.faults
        LOGGER.info("DemoPACS: going silent for up to %g s (fault)", faults.stall_seconds)
        deadline = time.monotonic() + faults.stall_seconds
        while time.monotonic() < deadline and not self._stopping.is_set():
            if not faults.ignore_cancel and event.is_cancelled:
                return True
            if not event.assoc.is_established or _transport_gone(event.assoc):
                return False
            self._stopping.wait(0.02)
        return False


def _transport_gone(assoc: Any) -> bool:
    """Whether the peer aborted or closed an association whose handler is still running.

    pynetdicom runs the handler in the association's thread, which only marks the
    association ended after the handler returns; its DUL thread knows at once (state 1,
    "idle", or no socket).
    """
    dul = getattr(assoc, "dul", None)
    machine = getattr(dul, "state_machine", None)
    if getattr(machine, "current_state", "Sta6") == "Sta1":
        return True
    sock = getattr(dul, "socket", None)
    return sock is not None and getattr(sock, "socket", True) is None
