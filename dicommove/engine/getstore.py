"""The C-STOREs of a C-GET: they come on our own association, and go to the same store.

With ``method="get"`` the PACS sends each instance as a C-STORE sub-operation on the
association that carries the C-GET (PS3.4 C.4.3), for the storage SOP classes we
proposed with the SCP role (:data:`dicommove._sop.GET_STORAGE_CLASSES`). The
:class:`~dicommove.engine.association.Association` parses the P-DATA and streams each
dataset into an :class:`~dicommove.store.Incoming`, exactly as the store SCP does;
:class:`GetStore` opens that Incoming, and at the end names the file, answers the
C-STORE and records the instance against the running C-GET (:meth:`Run.accept`,
:meth:`Run.on_instance`): the same atomic writes, group commit, safe names, routing and
manifest as a C-MOVE. No port is opened.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .. import _status as st
from .. import _tags as tg
from .. import _ul

if TYPE_CHECKING:
    from ..store import Incoming, InstanceStore
    from .association import Association
    from .run import Run

__all__ = ["GetStore", "negotiate_classes"]

logger = logging.getLogger("dicommove")


class GetStore:
    """Receives the C-STOREs of the C-GETs of one move into its store."""

    def __init__(self, run: Run, store: InstanceStore) -> None:
        self.run = run
        self.store = store
        self.fsync_each = store.durability == "instance"

    def begin(self, assoc: Association, command: dict[int, bytes], cx_id: int) -> Incoming:
        """Start one instance: a C-STORE-RQ arrived on ``assoc`` (its dataset follows)."""
        sop_class = _ul.command_text(command, tg.AFFECTED_SOP_CLASS_UID)
        abstract, syntax = assoc.storage_contexts.get(cx_id, ("", ""))
        incoming = self.store.begin_instance(
            sop_class_uid=sop_class,
            sop_instance_uid=_ul.command_text(command, tg.AFFECTED_SOP_INSTANCE_UID),
            transfer_syntax_uid=syntax,
            calling_ae=self.run.pacs.ae_title,
            # the C-GET on this association is what asked for it: route it there
            originator_ae=self.run.session.ae_title,
            originator_message_id=assoc.get_message_id,
        )
        rec = incoming.rec
        if rec.status == "received" and sop_class != abstract:
            why = (
                "no storage context was negotiated for this SOP class"
                if not abstract
                else "Affected SOP Class differs from the presentation context"
            )
            rec.status, rec.reason = "refused", why
            rec.dimse_status = st.STORE_DATASET_MISMATCH if abstract else st.SOP_CLASS_NOT_SUPPORTED
            incoming.abort(why)
        return incoming

    def end(self, assoc: Association, incoming: Incoming, message_id: int, cx_id: int) -> None:
        """Finish an instance whose dataset is complete: name, answer, record."""
        keep_open = False
        if not incoming.seal(self.run.accept):
            rec = incoming.rec
        elif self.fsync_each:  # rare: the file reaches the disk before the answer
            rec = incoming.persist(fsync=True)
        else:
            rec, keep_open = incoming.persist(keep_open=True), True
        assoc.write(
            _ul.encode_store_response(
                cx_id, message_id, rec.dimse_status, rec.sop_class_uid, rec.sop_instance_uid
            )
        )
        if keep_open:
            incoming.release()
        self.run.on_instance(rec)

    def lost(self, incoming: Incoming, reason: str) -> None:
        """Record an instance cut short by the end of the association as failed."""
        rec = incoming.abort(reason)
        logger.warning("lost %s: %s", rec.sop_instance_uid, reason)
        self.run.on_instance(rec)


#: Studies per C-FIND when asking which classes a move will bring.
_STUDIES_PER_FIND = 500


async def negotiate_classes(run: Run) -> None:
    """Before C-GETs: propose the storage classes the move's studies hold, first.

    One STUDY-level C-FIND per 500 studies asks for SOPClassesInStudy (Orthanc and the
    demo PACS answer it; dcmqrscp does not). A class outside the common list is then
    proposed first, and the associations are made again: 128 presentation contexts
    cannot hold every storage class. Without an answer the common list stays.
    """
    studies = sorted(
        {
            uid
            for state in run.states
            for part in state.parts
            for uid in part.query.retrieve_uids()
            if part.query.level == "STUDY"
        }
        | {
            str(part.query.get("StudyInstanceUID"))
            for state in run.states
            for part in state.parts
            if part.query.level in ("SERIES", "IMAGE") and part.query.get("StudyInstanceUID")
        }
    )
    if not studies or run.session.model == "composite":
        return
    classes: set[str] = set()
    for start in range(0, len(studies), _STUDIES_PER_FIND):
        found = await run.finder.classes_in(
            0, studies[start : start + _STUDIES_PER_FIND], run.session.model
        )
        if found:
            classes |= found
    known = set(run.pool.storage_classes)
    missing = sorted(c for c in classes if c not in known)
    if missing and await run.pool.propose_first(missing):
        logger.info(
            "C-GET: proposing %d storage classes the studies hold first: %s",
            len(missing),
            ", ".join(missing),
        )
