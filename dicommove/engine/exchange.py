"""One C-MOVE attempt of one part: send it, read its responses, cancel it if asked.

:func:`move_once` sends the C-MOVE on the worker's association and reads the
responses until the final one, recording the counts and status on the part. It
waits without polling: the run's ticker (or a cancel) calls
:meth:`~dicommove.engine.association.Association.interrupt`, and the attempt then
looks at :func:`due`: a stop of the whole move, an inactivity or request timeout,
or a C-CANCEL whose grace period is over. It returns the :class:`Next` step.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .. import _sop, _ul
from .. import _status as st
from ..errors import MoveDestinationUnknown, MoveError, StoreAssociationRefused
from ..query import encode_identifier
from ..query.validation import missing_parent_keys
from ..rows import Stop
from ..scp import BUSY
from .association import Aborted, Association, Interrupted, Response
from .listen import refusal_message
from .request import FINISHED, MAX_SUBOPERATIONS, Attempt, Next, Part, label_of

if TYPE_CHECKING:
    from .run import Run

__all__ = ["due", "move_once"]

logger = logging.getLogger("dicommove")

_COMPLETED, _FAILED, _WARNING, _REMAINING = 0x1021, 0x1022, 0x1023, 0x1020
_FAILED_LIST = 0x00080058
#: Seconds between two progress updates of one part (pending responses come per instance).
_SHOW_EVERY = 0.1
#: While at least _REST_FROM sub-operations remain, pending responses are read every _REST s.
_REST_FROM = 100
_REST = 0.01


def due(run: Run, part: Part, now: float) -> bool:
    """Whether a running part must be woken: to cancel it, or to abort it."""
    if run.abort_now:
        return True
    if part.cancel_sent_at is not None:
        return now - part.cancel_sent_at > run.timeouts.cancel_grace
    t = run.timeouts
    return (
        run.stop is not Stop.NONE
        or part.overflow
        or now - part.last_activity > t.inactivity
        or (t.request is not None and now - part.started_at > t.request)
    )


def _why_cancel(run: Run, part: Part, now: float) -> bool:
    """Whether to C-CANCEL this part now; records why on the part."""
    t = run.timeouts
    if run.stop is Stop.DEADLINE:
        part.timed_out = f"the move's deadline of {run.deadline:g} s passed"
        return True
    if run.stop is not Stop.NONE:
        part.cancelled = True
        return True
    if part.overflow:
        return True
    if now - part.last_activity > t.inactivity:
        silent = f"no response and no instance from the PACS for {t.inactivity:g} s"
        part.timed_out = f"{silent} (Timeouts.inactivity, --timeout)"
        return True
    if t.request is not None and now - part.started_at > t.request:
        part.timed_out = f"the C-MOVE took longer than Timeouts.request={t.request:g} s"
        return True
    return False


async def move_once(run: Run, part: Part, worker: int, *, allow_split: bool = True) -> Attempt:
    """Send one C-MOVE for ``part`` and record its responses; return the next step."""
    pool = run.pool
    assoc = await pool.get(worker)
    query = part.query
    model = query.information_model
    if (
        run.method == "move"
        and run.method_choice == "auto"
        and _sop.MOVE[model] not in (assoc.contexts)
        and _sop.GET[model] in assoc.contexts
    ):
        logger.warning("%s does not offer C-MOVE: retrieving with C-GET instead", run.pacs)
        run.use_get()
    get = run.method == "get"
    sop_class = (_sop.GET if get else _sop.MOVE)[model]
    cx_id, syntax = pool.context(assoc, sop_class)
    if query.relational and not pool.relational_accepted(assoc, sop_class):
        asked = "declined" if pool.relational else "was not asked for"
        raise MoveError(
            f"[{query}] leaves out {', '.join(missing_parent_keys(query.elements, model))}: "
            f"that needs relational-retrieve, which {run.pacs} {asked} (SOP Class Extended "
            f"Negotiation of {_sop.NAMES[sop_class]}). Add the missing UIDs, or find them by "
            "C-FIND with resolve=True (--resolve)"
        )
    identifier = encode_identifier(query, implicit=syntax == _sop.IMPLICIT_VR_LE)
    now = run.loop.time()
    part.start_attempt(pool.next_message_id(), worker, now)
    run.part_started(part)
    label = label_of(query, part.request.planned.request.index)
    if get:
        logger.info("C-GET %s (message %d)", query, part.message_id)
        command = _ul.encode_request(
            _ul.C_GET_RQ, part.message_id, sop_class=sop_class, has_dataset=True
        )
        assoc.get_message_id = part.message_id  # its C-STOREs are routed to this part
    else:
        logger.info("C-MOVE %s (message %d) -> %s", query, part.message_id, run.move_destination)
        command = _ul.encode_request(
            _ul.C_MOVE_RQ,
            part.message_id,
            sop_class=sop_class,
            has_dataset=True,
            move_destination=run.move_destination,
        )
    try:
        assoc.send(cx_id, command, identifier)
        while True:
            try:
                rsp = await assoc.receive()
            except Interrupted:
                if not _on_wake(run, part, assoc, worker, cx_id):
                    break
                continue
            part.last_activity = run.loop.time()
            if _response(run, part, rsp, syntax, label, allow_split=allow_split):
                break
            if not get and (part.remaining or 0) >= _REST_FROM and not assoc.has_messages:
                # many instances to come: read their responses in bursts (not with C-GET,
                # whose C-STOREs come on this association and must be answered at once)
                assoc.rest(_REST)
    except Aborted as exc:
        part.aborted = f"the association was aborted or the PACS stopped answering ({exc})"
        pool.drop(worker)
    finally:
        run.part_stopped(part)
    if part.overflow and not (part.cancelled or part.timed_out):
        return Attempt(Next.SPLIT)
    if part.cancelled or part.timed_out:
        return FINISHED  # we stopped it ourselves: no retry
    # method="auto": a C-MOVE that shows the PACS cannot send to us is asked again by C-GET
    fall_back = run.method_choice == "auto" and not get and run.moved == 0
    if not get:
        refused_store(run, part, assoc.peer_address)
    try:
        if fall_back and _aborted_first(part) and part.attempts >= 2:  # twice: not a hiccup
            raise MoveDestinationUnknown(f"{run.pacs} aborted the C-MOVE before any instance")
        await check_destination(run, part, worker, get=get)
    except MoveDestinationUnknown as exc:
        if not fall_back or _sop.GET[model] not in assoc.contexts:
            raise  # no C-GET to fall back on: the destination is what to fix
        if run.method == "move":
            logger.warning("C-MOVE did not work (%s): retrieving with C-GET instead", exc)
            run.use_get()
        return await move_once(run, part, worker, allow_split=allow_split)
    if part.aborted and not part.matched_nothing:
        return Attempt(Next.RETRY, part.aborted)
    code = part.final_status
    unknown = [u for u in part.failed_uids if u not in part.request.failed_classes]
    if get and unknown:  # name their classes in the rows, where the PACS tells
        found = await run.finder.classes_of(worker, part.query, unknown)
        part.request.failed_classes.update(found)
    if get and part.failed_uids and st.is_failure(code) and code is not None:
        # the PACS stopped at what it could not send (Orthanc does at the first one): give
        # those up, ask for the others again
        new = [uid for uid in part.failed_uids if uid not in part.request.gave_up]
        if new:
            part.request.gave_up.update(dict.fromkeys(new, code))
            return Attempt(
                Next.RETRY, f"the PACS could not send {len(new)} instances by C-GET ({code:#06x})"
            )
    # 0xA702 is transient for a C-MOVE; a C-GET's failed sub-operations are ours to receive
    # (a class not negotiated): asking again fails again
    if part.final_status == st.OUT_OF_RESOURCES_SUBOPERATIONS and not (get and part.failed):
        return Attempt(Next.RETRY, st.describe(part.final_status))
    return FINISHED


def _aborted_first(part: Part) -> bool:
    """Whether a C-MOVE was aborted before it moved anything."""
    return bool(part.aborted) and not part.cancelled and part.completed == 0


def _on_wake(run: Run, part: Part, assoc: Association, worker: int, cx_id: int) -> bool:
    """Act on an interrupt: cancel, or abort after the grace. False: stop reading."""
    now = run.loop.time()
    if run.abort_now:
        part.cancelled = True
        part.aborted = "aborted at once (a second Ctrl-C)"
        run.pool.drop(worker)
        return False
    if part.cancel_sent_at is None:
        if _why_cancel(run, part, now):
            run.stats.worker(worker + 1, "cancelling")
            why = part.timed_out or (
                "the move is stopping" if part.cancelled else "too many sub-operations: split"
            )
            logger.warning("sending C-CANCEL for message %d: %s", part.message_id, why)
            cancel = _ul.encode_request(_ul.C_CANCEL_RQ, 0, responding_to=part.message_id)
            assoc.send(cx_id, cancel)
            part.cancel_sent_at = now
    elif now - part.cancel_sent_at > run.timeouts.cancel_grace:
        part.aborted = (
            f"the PACS did not confirm the C-CANCEL within {run.timeouts.cancel_grace:g} s: "
            "association aborted"
        )
        run.pool.drop(worker)
        return False
    return True


def _response(
    run: Run, part: Part, rsp: Response, syntax: str, label: str, *, allow_split: bool
) -> bool:
    """Record one C-MOVE response; return whether it was the final one."""
    code = rsp.status
    if code is None:
        raise Aborted("a response without a status")
    part.completed = rsp.us(_COMPLETED) or 0
    part.failed = rsp.us(_FAILED) or 0
    part.warning = rsp.us(_WARNING) or 0
    part.remaining = rsp.us(_REMAINING)
    if st.kind_of(code) is st.Kind.PENDING:
        if part.last_activity - part.shown_at >= _SHOW_EVERY:
            part.shown_at = part.last_activity
            run.progress(part, label)
        if (
            allow_split
            and part.expected >= MAX_SUBOPERATIONS
            and part.query.level in ("PATIENT", "STUDY")
        ):
            part.overflow = True  # the ticker wakes the attempt, which sends the C-CANCEL
        return False
    part.final_status = code
    part.error_comment = rsp.text(0x0902)
    failed = rsp.text(_FAILED_LIST)  # Orthanc 1.10 sends it in the command set (C-GET)
    if rsp.dataset:
        from .._header import read_elements

        found = read_elements(rsp.dataset, syntax, frozenset({_FAILED_LIST})) or {}
        failed = found.get(_FAILED_LIST, "") or failed
    part.failed_uids = [u.strip() for u in failed.split("\\") if u.strip()]
    return True


def refused_store(run: Run, part: Part, pacs_ip: str) -> None:
    """Raise StoreAssociationRefused when our store SCP refused the PACS and nothing came.

    Only permanent refusals of associations from the PACS's address since the part
    started count: one from anywhere else (a scan, another device) says nothing about
    the move, and a busy reject (all slots taken) is transient.
    """
    scp = run.scp
    if scp is None or part.request.tally.n_ok or part.completed:
        return
    code = part.final_status
    if code is not None and not st.is_failure(code) and not (part.failed or part.warning):
        return
    refusals = [
        r
        for r in scp.refusals
        if r.ip == pacs_ip and r.at >= part.started_at and r.why != BUSY  # busy: transient
    ]
    if refusals:
        raise StoreAssociationRefused(
            refusal_message(run.session, refusals) + ".",
            status=code,
            error_comment=part.error_comment,
        )


async def check_destination(run: Run, part: Part, worker: int, *, get: bool = False) -> None:
    """Raise MoveDestinationUnknown when the PACS evidently cannot use our destination.

    A part that fails (abort or 0xCxxx) before counting any sub-operation is checked
    with a C-FIND: Orthanc answers both "nothing matches" and "unknown destination"
    with 0xC000 (1.10), or an A-ABORT, never 0xA801. No match makes it ``not_found``;
    matches, while no instance has arrived in this move, mean the destination is the
    problem.
    """
    code = part.final_status
    if get:  # a C-GET has no destination: only tell "nothing matches" apart
        if part.expected == 0 and (code is None or 0xC000 <= code <= 0xCFFF):
            part.matched_nothing = await run.finder.count(worker, part.query) == 0
        return
    if code == st.MOVE_DESTINATION_UNKNOWN:
        why = "it answered 0xA801, move destination unknown"
    elif part.expected == 0 and (code is None or 0xC000 <= code <= 0xCFFF):
        matches = await run.finder.count(worker, part.query)
        if matches == 0:
            part.matched_nothing = True
            return
        # instances of this move (this request's own included) did arrive by C-MOVE: the
        # destination works (with "auto", the ones C-GET brought say nothing about it)
        moved = (
            run.moved > 0
            if run.method_choice == "auto"
            else run.delivered(part) or part.request.tally.n_ok > 0
        )
        if matches is None or moved:
            return
        why = (
            f"it answered {st.describe(code)} before sending any of the {matches} "
            "matching items (C-FIND), which is how some PACS (Orthanc among them) "
            "report an unknown move destination"
        )
    else:
        return
    comment = f" ({part.error_comment})" if part.error_comment else ""
    where = (
        f"at {run.store_address()}"
        if run.local_destination
        else "with the host and port it listens on"
    )
    raise MoveDestinationUnknown(
        f"{run.pacs} cannot send to the move destination {run.move_destination!r}: "
        f"{why}{comment}. Register AE {run.move_destination} {where} on the PACS "
        "(Orthanc: DicomModalities; DCMTK dcmqrscp: HostTable), and check that it is "
        "reachable from the PACS.",
        status=code,
        error_comment=part.error_comment,
    )
