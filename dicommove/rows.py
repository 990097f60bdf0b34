"""Manifest rows from what a move recorded: pure code, no sockets, no pandas.

The engine keeps, per request, a :class:`RequestOutcome` (what it asked for and how
the PACS answered) and the journal keeps every :class:`Arrival` (what landed).
:func:`request_rows` turns one request's outcome and arrivals into its manifest
rows: one per instance that arrived, and one for each requested item that did not,
with the reason. A :class:`Tally` is the part of the arrivals that the verdict
needs; the engine keeps one per running request (small: counts and the UIDs it
asked for), so that it can judge a request complete without holding its arrivals.

Row keys are the manifest's columns (:data:`dicommove.manifest.COLUMNS`).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import _status as st
from .manifest import PROBLEM_STATUSES
from .query import UNIQUE_KEYS, Query

__all__ = [
    "ARRIVED",
    "EARLIER_RUN",
    "Arrival",
    "RequestOutcome",
    "RunContext",
    "Stop",
    "Tally",
    "instance_row",
    "pending_row",
    "request_rows",
    "summary_rows",
    "unrequested_rows",
    "verdict",
]

#: Instance statuses that mean "it is on disk".
ARRIVED = frozenset({"received", "duplicate"})
#: The reason of a row taken from an earlier run's journal (``resume=True``).
EARLIER_RUN = "on disk from an earlier run (resume=True): not asked for again"

#: Level -> (unique key, Arrival attribute holding it).
LEVEL_KEYS: dict[str, tuple[str, str]] = {
    "PATIENT": ("PatientID", "patient"),
    "STUDY": ("StudyInstanceUID", "study"),
    "SERIES": ("SeriesInstanceUID", "series"),
    "IMAGE": ("SOPInstanceUID", "sop"),
}
_KEYS = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")


class Stop(enum.Enum):
    """Why a move stopped before its queue was empty (the first reason wins)."""

    NONE = "none"
    INTERRUPT = "interrupt"  # Ctrl-C
    CANCEL = "cancel"  # cancel(), a Cancel button
    DEADLINE = "deadline"  # the run's deadline passed
    FATAL = "fatal"  # an error that ends the move (disk full, unreachable PACS...)


@dataclass(frozen=True, slots=True)
class Arrival:
    """One C-STORE outcome, as the manifest needs it (one journal line)."""

    sop: str
    sop_class: str
    transfer_syntax: str
    status: str
    reason: str
    study: str
    series: str
    patient: str
    path: str  # absolute; "" when nothing was written
    size: int
    at: float | None
    tags: Mapping[str, str] | None = None  # header elements asked for (``tags=``)


@dataclass
class RequestOutcome:
    """What one request asked for and how it ended; no instances.

    ``ran`` is false for a request never sent (cancelled first, or skipped by
    ``resume=True``: then ``resumed`` is true and its rows are an earlier run's).
    """

    index: Hashable
    query: Query
    sources: dict[str, Hashable] = field(default_factory=dict)
    duplicates: tuple[tuple[Hashable, Hashable], ...] = ()
    resumed: bool = False
    ran: bool = False
    final_status: int | None = None
    error_comment: str = ""
    completed: int = 0
    failed: int = 0
    warning: int = 0
    failed_uids: list[str] = field(default_factory=list)
    aborted: str = ""
    timed_out: str = ""
    cancelled: bool = False
    matched_nothing: bool = False
    #: ``verify=True``: SOPInstanceUID -> (Study, Series InstanceUID) the C-FIND listed
    expected: Mapping[str, tuple[str, str]] | None = None
    #: C-GET: instances the PACS failed and stopped at (the others asked again), -> status
    gave_up: Mapping[str, int] = field(default_factory=dict)
    #: C-GET: SOPClassUID of failed instances, where a C-FIND told
    failed_classes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RunContext:
    """What the rows of every request of a move share."""

    local_destination: bool = True
    stop: Stop = Stop.NONE
    failure: str = ""  # the error that ended the move, if any
    store_address: str = ""  # our store SCP as host:port, for the PACS-cannot-reach hint
    refused: str = ""  # the associations our store SCP refused, and what to change
    unrequested: int = 0  # instances that matched no request


class Tally:
    """What arrived for one request, reduced to what its verdict needs.

    Counts, the retrieve-level UIDs the request asked for that got an instance, and
    the SOP Instance UIDs of failed stores (few), never one entry per instance.
    """

    __slots__ = (
        "attr",
        "bad",
        "failed",
        "got",
        "n_ok",
        "patients",
        "recovered",
        "resumed",
        "series",
        "studies",
        "wanted",
    )

    def __init__(self, query: Query) -> None:
        key, self.attr = LEVEL_KEYS.get(query.level or "", ("", ""))
        self.wanted = frozenset(_values(query.get(key))) if key else frozenset()
        self.n_ok = 0  # received or duplicate
        self.got: set[str] = set()
        self.bad = 0  # refused or conflict
        self.failed: set[str] = set()
        self.recovered: set[str] = set()  # failed, then arrived after all
        self.resumed: set[str] = set()  # on disk from an earlier run
        # where instances arrived (one entry per series, not per instance)
        self.series: set[str] = set()
        self.studies: set[str] = set()
        self.patients: set[str] = set()

    def add(self, a: Arrival) -> None:
        """Count one arrival."""
        if a.status in ARRIVED:
            if a.reason == EARLIER_RUN:
                self.resumed.add(a.sop)
            elif a.sop in self.resumed:
                return  # asked for again and sent: already counted
            self.n_ok += 1
            self.series.add(a.series)
            self.studies.add(a.study)
            self.patients.add(a.patient)
            value = getattr(a, self.attr) if self.attr else ""
            if value in self.wanted:
                self.got.add(value)
            if a.sop in self.failed:
                self.recovered.add(a.sop)
        elif a.status == "failed":
            self.failed.add(a.sop)
        elif a.status in ("refused", "conflict"):
            self.bad += 1

    @property
    def problems(self) -> int:
        """Instance rows with a problem status."""
        return self.bad + len(self.failed - self.recovered)


def _values(value: Any) -> list[str]:
    """Return a value as a list of strings (pydicom's MultiValue included)."""
    if value is None or value == "":
        return []
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        return [str(value)]
    return [str(v) for v in value]


def _class_hint(out: RequestOutcome, uid: str) -> str:
    """Name a failed instance's SOP class when C-GET did not propose it."""
    from . import _sop

    sop_class = out.failed_classes.get(uid)
    if not sop_class or sop_class in _sop.GET_STORAGE_CLASSES:
        return ""
    from pydicom.uid import UID

    name = UID(sop_class).name
    named = f"{sop_class} ({name})" if name != sop_class else sop_class
    return f"; its SOP class {named} is not one C-GET proposes: move it with C-MOVE"


def _comment(reason: str, out: RequestOutcome) -> str:
    return f"{reason}: {out.error_comment}" if out.error_comment and reason else reason


def instance_row(request: Hashable, a: Arrival, move_status: int | None) -> dict[str, Any]:
    """Return the manifest row of one arrival (with its header columns, if any)."""
    row = {
        "request": request,
        "PatientID": a.patient or None,
        "StudyInstanceUID": a.study or None,
        "SeriesInstanceUID": a.series or None,
        "SOPInstanceUID": a.sop,
        "SOPClassUID": a.sop_class or None,
        "TransferSyntaxUID": a.transfer_syntax or None,
        "path": a.path or None,
        "size": a.size if a.path else None,
        "status": a.status,
        "reason": a.reason or None,
        "received_at": a.at,
        "move_status": move_status,
    }
    if a.tags:
        row.update((keyword, text or None) for keyword, text in a.tags.items())
    return row


def request_base(out: RequestOutcome) -> dict[str, Any]:
    """Return the columns every request-level row of ``out`` shares."""
    keys = {k: "\\".join(_values(out.query.get(k))) or None for k in _KEYS}
    return {"request": out.index, **keys, "move_status": out.final_status}


def labelled(out: RequestOutcome, row: dict[str, Any]) -> dict[str, Any]:
    """Set a row's ``request`` to the input row that asked for its retrieve-level UID."""
    if len(out.sources) <= 1:
        return row
    level = out.query.level
    if level is not None:
        owner = out.sources.get(row.get(UNIQUE_KEYS[level]) or "")
        if owner is not None:
            row["request"] = owner
    return row


def request_rows(
    out: RequestOutcome, arrivals: Sequence[Arrival], ctx: RunContext
) -> Iterator[dict[str, Any]]:
    """Yield every row of one request, each labelled with the input row it answers."""
    tally = Tally(out.query)
    for a in arrivals:
        tally.add(a)
    recorded = {a.sop for a in arrivals}
    for row in instance_rows(out, arrivals):
        yield labelled(out, row)
    if not out.resumed:
        summary = list(summary_rows(out, tally, ctx, recorded.__contains__))
        named = missing_rows(
            out, recorded | {str(r["SOPInstanceUID"]) for r in summary if r.get("SOPInstanceUID")}
        )
        for row in summary:
            if (
                named
                and row["status"] in ("missing", "not_found")
                and not row.get("SOPInstanceUID")
            ):
                continue  # the instances are named below, one row each
            yield labelled(out, row)
        for row in named:
            yield labelled(out, row)
    yield from duplicate_rows(out)


def missing_rows(out: RequestOutcome, has_row: set[str]) -> list[dict[str, Any]]:
    """``verify=True``: a ``missing`` row for each listed instance that did not arrive.

    Only for a request the PACS answered to the end: one that timed out, was cancelled
    or failed says so in its own rows. Instances that have a row already (arrived,
    failed at the PACS, named by the request) get none.
    """
    stopped = out.timed_out or out.cancelled or out.aborted or st.is_failure(out.final_status)
    if not out.expected or stopped:
        return []
    failed = set(out.failed_uids)
    base = request_base(out)
    return [
        {
            **base,
            "StudyInstanceUID": study or base.get("StudyInstanceUID"),
            "SeriesInstanceUID": series or None,
            "SOPInstanceUID": sop,
            "status": "missing",
            "reason": "listed by the PACS's C-FIND before the move (verify=True), never arrived",
        }
        for sop, (study, series) in out.expected.items()
        if sop not in has_row and sop not in failed
    ]


def instance_rows(out: RequestOutcome, arrivals: Sequence[Arrival]) -> Iterator[dict[str, Any]]:
    """One row per arrival; a failed store later repeated successfully, and copies, once."""
    arrived = {a.sop for a in arrivals if a.status != "failed"}
    shown: set[str] = set()
    for a in arrivals:
        if a.status == "failed" and a.sop in arrived:
            continue  # a failed attempt the PACS later repeated successfully
        if a.status == "received":
            if a.sop in shown:
                continue  # on disk already, and sent again: one row
            shown.add(a.sop)
        yield instance_row(out.index, a, out.final_status)


def duplicate_rows(out: RequestOutcome) -> Iterator[dict[str, Any]]:
    """One row for each input row folded into an earlier identical one."""
    base = request_base(out)
    level = out.query.level
    for label, first in out.duplicates:
        row = {
            **base,
            "request": label,
            "status": "duplicate",
            "reason": f"the same request as row {first!r}, moved once: see its rows",
        }
        uids = [uid for uid, owner in out.sources.items() if owner == first]
        if level is not None and len(uids) == 1:  # its own UID, not the whole batch's
            row[UNIQUE_KEYS[level]] = uids[0]
        yield row


def verdict(out: RequestOutcome, tally: Tally, ctx: RunContext) -> tuple[bool, int, str]:
    """Judge a finished request from its tally: (complete, instances missing, problem).

    Conservative where only the arrivals could tell (a failed-SOP list naming an
    instance that arrived counts as a problem): ``complete`` is then false and a
    later ``resume=True`` asks again. ``problem`` is the status of its first
    problem row (``"failed"`` when it has none but is not complete, ``""`` when complete).
    """
    rows = list(summary_rows(out, tally, ctx, lambda _uid: False))
    missing = sum(1 for r in rows if r["status"] == "missing")
    complete = not rows and tally.problems == 0 and tally.n_ok > 0
    problem = next(
        (str(r["status"]) for r in rows if r["status"] in PROBLEM_STATUSES),
        "" if complete else "failed",
    )
    return complete, missing, problem


def summary_rows(
    out: RequestOutcome,
    tally: Tally,
    ctx: RunContext,
    recorded: Callable[[str], bool],
) -> Iterator[dict[str, Any]]:
    """Yield the request-level rows of one request: what did not arrive, and why.

    ``recorded(uid)`` says whether an instance with that SOP Instance UID arrived
    with any status (so a failed-SOP list naming it adds no row).
    """
    base = request_base(out)
    counts = {"completed": out.completed, "failed": out.failed, "warning": out.warning}
    if not (out.final_status is not None or out.aborted):  # never ran to an answer
        if out.timed_out:
            status, reason = "timeout", out.timed_out
        elif ctx.stop is Stop.DEADLINE:
            status, reason = "timeout", "not attempted before the move's deadline"
        elif out.cancelled or ctx.stop in (Stop.INTERRUPT, Stop.CANCEL):
            status, reason = "cancelled", "not attempted: the move was cancelled"
        else:
            failure = ctx.failure
            status, reason = "failed", f"not attempted: {failure}" if failure else "not attempted"
        yield {**base, "status": status, "reason": reason}
        return
    code = out.final_status
    if out.matched_nothing:
        yield {
            **base,
            **counts,
            "status": "not_found",
            "reason": "the PACS matched no instance for these keys (C-FIND finds none; "
            f"the C-MOVE answered {st.describe(code)})",
        }
        return
    if not ctx.local_destination:
        ok = code == st.SUCCESS and out.failed == 0
        status = "moved" if ok else ("cancelled" if code == st.CANCEL else "failed")
        reason = "" if ok else (out.aborted or st.describe(code))
        if out.timed_out:
            status, reason = "timeout", out.timed_out
        if ok and out.completed + out.warning == 0:
            status, reason = "not_found", "the PACS matched no instance for these keys"
        yield {**base, **counts, "status": status, "reason": _comment(reason, out)}
        return

    for uid, stopped_with in out.gave_up.items():
        if not recorded(uid):
            yield {
                **base,
                "SOPInstanceUID": uid,
                "status": "failed",
                "reason": f"the PACS could not send it by C-GET and stopped there "
                f"({st.describe(stopped_with)}); the others were asked for again"
                + _class_hint(out, uid),
            }
    failed_at_pacs = [u for u in out.failed_uids if not recorded(u) and u not in out.gave_up]
    for uid in failed_at_pacs:
        yield {
            **base,
            "SOPInstanceUID": uid,
            "status": "failed",
            "reason": f"the PACS reported this sub-operation failed ({st.describe(code)})"
            + _class_hint(out, uid),
        }
    # Every UID asked for at the retrieve level is accounted for, one row each.
    level = out.query.level
    key = LEVEL_KEYS.get(level or "", ("", ""))[0]
    wanted = _values(out.query.get(key)) if key else []
    got = set(tally.got)
    if level == "IMAGE":
        got |= set(failed_at_pacs)
    not_arrived = [u for u in wanted if u not in got]

    def per_uid(status: str, reason: str) -> Iterator[dict[str, Any]]:
        # one row per UID that did not arrive; a request row if that is none
        if not not_arrived:
            yield {**base, **counts, "status": status, "reason": reason}
        for uid in not_arrived:
            yield {**base, key: uid, "status": status, "reason": reason}

    if st.is_failure(code) or code == st.CANCEL:
        status = "cancelled" if code == st.CANCEL or out.cancelled else "failed"
        reason = out.aborted or st.describe(code)
        if code == st.OUT_OF_RESOURCES_SUBOPERATIONS and out.completed + tally.n_ok == 0:
            reason += (  # DCMTK dcmqrscp's answer when it cannot reach the destination
                "; a PACS answers so also when it cannot reach the move destination: "
                "check the address and port registered for our AE title"
            )
        if out.timed_out:
            status, reason = "timeout", f"{out.timed_out} ({reason})"
        elif status == "cancelled" and ctx.stop is Stop.FATAL and ctx.failure:
            reason = f"cancelled because {ctx.failure}"
        elif status == "cancelled" and ctx.stop in (Stop.INTERRUPT, Stop.CANCEL):
            by = "Ctrl-C" if ctx.stop is Stop.INTERRUPT else "cancel()"
            reason = f"cancelled ({by}): {reason}"
        yield from per_uid(status, _comment(reason, out))
        return
    n_ok = tally.n_ok
    if n_ok == 0 and out.completed == 0 and out.failed == 0 and out.warning == 0:
        yield from per_uid("not_found", "the PACS matched no instance for these keys")
        return
    short = out.completed + out.warning - n_ok
    reason = ""
    if short > 0:
        reason = (
            f"the PACS reported {out.completed + out.warning} sub-operations "
            f"completed but {n_ok} instances arrived"
        )
        if n_ok == 0 and ctx.unrequested:
            reason += (
                f"; {ctx.unrequested} instances arrived that do not match this "
                "request's keys (see the 'unrequested' rows): the PACS may have ignored a key"
            )
        elif n_ok == 0 and ctx.refused:
            reason += f"; {ctx.refused}"
        elif n_ok == 0 and ctx.store_address:
            reason += (
                f"; the PACS could not reach our store SCP at {ctx.store_address} "
                "(check the address it has for us)"
            )
        elif n_ok == 0:  # C-GET: nothing came on our own association
            reason += "; none of them came on the C-GET's association"
    if level == "IMAGE":
        for uid in not_arrived:
            yield {
                **base,
                key: uid,
                "status": "missing",
                "reason": "requested by UID but never arrived",
            }
    elif short > 0:
        if not_arrived:
            for uid in not_arrived:
                yield {
                    **base,
                    key: uid,
                    "status": "missing",
                    "reason": f"no instance of this {key} arrived; {reason}",
                }
        else:
            yield {**base, **counts, "status": "missing", "reason": reason}
    else:
        for uid in not_arrived:
            yield {
                **base,
                key: uid,
                "status": "not_found",
                "reason": f"no instance of this {key} arrived: the PACS matched none",
            }
    unlisted = out.failed - len(set(out.failed_uids))  # listed ones are accounted for
    if unlisted > 0:
        yield {
            **base,
            **counts,
            "status": "failed",
            "reason": f"{unlisted} sub-operations failed at the PACS ({st.describe(code)})",
        }


def pending_row(out: RequestOutcome, *, running: bool) -> dict[str, Any]:
    """Return the row of a request that has not finished (a live manifest)."""
    reason = "running" if running else "waiting for a worker"
    return {**request_base(out), "status": "pending", "reason": reason}


def unrequested_rows(arrivals: Iterable[Arrival]) -> Iterator[dict[str, Any]]:
    """Rows of instances that arrived during the move but match no request."""
    for a in arrivals:
        yield instance_row(None, a, None)
