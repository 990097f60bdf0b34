"""The state of one request, and of the C-MOVEs (parts) it takes.

A request is one row of the plan (:class:`~dicommove.query.Planned`). It starts as
one :class:`Part`: one C-MOVE of the request's identifier. A part may be replaced by
smaller parts: the series of a study when workers would otherwise idle or when the
PACS announces more sub-operations than it can count, or, on a retry, only what has
not arrived yet. Parts run on any worker; each arrival is routed to its part and
counted in its request's :class:`~dicommove.rows.Tally`. When the last part is done,
:meth:`RequestState.outcome` folds the parts into one
:class:`~dicommove.rows.RequestOutcome` for the manifest.

Control flow runs on enums: a part's :class:`Phase`, and the :class:`Next` step an
attempt returns.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable
from dataclasses import dataclass, field

from .. import _status as st
from ..query import Planned, Query
from ..rows import RequestOutcome, Tally

__all__ = ["MAX_SUBOPERATIONS", "Attempt", "Next", "Part", "Phase", "RequestState", "label_of"]

#: Sub-operation counters are US: a PACS cannot count more (PS3.7 C.4.2.1.5).
MAX_SUBOPERATIONS = 0xFFFF


class Phase(enum.Enum):
    """Where a part stands."""

    QUEUED = "waiting for a worker"
    RUNNING = "running"
    DONE = "done"
    REPLACED = "replaced by smaller parts"


class Next(enum.Enum):
    """What an attempt says to do next."""

    FINISH = "finish"  # done, whatever the outcome: the rows say
    RETRY = "retry"  # a transient failure: try again after a backoff
    SPLIT = "split"  # more sub-operations than a response can count: move its series


@dataclass(frozen=True)
class Attempt:
    """The result of one C-MOVE attempt: the next step and, for a retry, why."""

    next: Next
    reason: str = ""


FINISHED = Attempt(Next.FINISH)


def label_of(query: Query, source: Hashable = None) -> str:
    """Return a short name for a request in the progress display.

    The cohort row's label (``source``, the manifest's ``request``) first, then the level
    and the UID, shortened in its middle: ``"case-3 · STUDY 1.2.826.0.1…0.4.1"``.
    """
    uids = query.retrieve_uids()
    first = ellipsize(uids[0]) if uids else ellipsize(str(query), 40)
    more = f" +{len(uids) - 1}" if len(uids) > 1 else ""
    name = f"{query.level or '?'} {first}{more}"
    return name if source is None else f"{ellipsize(str(source), 32)} \u00b7 {name}"


def ellipsize(text: str, width: int = 24) -> str:
    """Shorten ``text`` to ``width`` characters by an ellipsis in its middle."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return f"{text[:head]}\u2026{text[len(text) - (width - 1 - head) :]}"


@dataclass(eq=False)
class Part:
    """One C-MOVE of a request, and what its latest attempt got back."""

    request: RequestState
    query: Query
    attempts: int = 0
    phase: Phase = Phase.QUEUED
    message_id: int = 0
    worker: int = -1
    started_at: float = 0.0  # loop time of its first C-MOVE, 0 before
    last_activity: float = 0.0  # the last response or instance
    shown_at: float = 0.0  # the last progress update
    cancel_sent_at: float | None = None
    asks_remaining: bool = False  # on its next attempt, ask only for what is missing
    final_status: int | None = None
    error_comment: str = ""
    completed: int = 0
    failed: int = 0
    warning: int = 0
    remaining: int | None = None
    failed_uids: list[str] = field(default_factory=list)
    aborted: str = ""
    timed_out: str = ""
    cancelled: bool = False
    matched_nothing: bool = False
    overflow: bool = False  # counted past MAX_SUBOPERATIONS: cancelled, to be split

    @property
    def expected(self) -> int:
        """Sub-operations the PACS announced so far."""
        return self.completed + self.failed + self.warning + (self.remaining or 0)

    def start_attempt(self, message_id: int, worker: int, now: float) -> None:
        """Forget the previous attempt's answer; note a new C-MOVE."""
        self.message_id, self.worker, self.last_activity = message_id, worker, now
        self.cancel_sent_at = None
        self.final_status, self.aborted, self.error_comment = None, "", ""
        self.completed = self.failed = self.warning = 0
        self.remaining, self.failed_uids = None, []
        self.overflow = False
        if not self.started_at:
            self.started_at = now

    def nothing_missing(self) -> None:
        """End a retry that found every instance here: a success with nothing to move."""
        self.start_attempt(0, self.worker, self.last_activity)
        self.final_status = st.SUCCESS

    def child(self, query: Query) -> Part:
        """Return a smaller part of the same request (its first try counts as this one's)."""
        return Part(self.request, query, attempts=max(self.attempts - 1, 0))


@dataclass(eq=False)
class RequestState:
    """One planned request: its parts, its tally, and how it ended."""

    planned: Planned
    key: str  # the journal's key
    parts: list[Part] = field(default_factory=list)
    resumed: bool = False  # complete on disk from an earlier run: not asked for
    finished: bool = False
    announced: bool = False  # shown in the progress display
    tally: Tally = field(init=False)
    #: verify=True: SOPInstanceUID -> (Study, Series InstanceUID) listed by C-FIND first
    expected: dict[str, tuple[str, str]] | None = None
    #: C-GET: instances the PACS failed and stopped at -> its status (not asked again)
    gave_up: dict[str, int] = field(default_factory=dict)
    #: C-GET: the SOPClassUID of instances the PACS failed, where a C-FIND told
    failed_classes: dict[str, str] = field(default_factory=dict)
    keys: tuple[tuple[str, frozenset[str]], ...] = field(init=False)

    def __post_init__(self) -> None:
        self.tally = Tally(self.planned.request.query)
        from .router import keys_of

        #: The unique keys an instance of this request must match (for routing).
        self.keys = keys_of(self.planned.request.query)
        if not self.parts and not self.resumed:
            self.parts.append(Part(self, self.planned.request.query))

    @property
    def query(self) -> Query:
        """The request's own identifier."""
        return self.planned.request.query

    @property
    def open_parts(self) -> int:
        """Parts queued or running."""
        return sum(p.phase in (Phase.QUEUED, Phase.RUNNING) for p in self.parts)

    @property
    def ran(self) -> bool:
        """Whether any C-MOVE of it was sent."""
        return any(p.attempts and p.started_at for p in self.parts)

    def replace(self, part: Part, children: list[Part]) -> None:
        """Replace ``part`` by ``children`` (queued by the caller)."""
        part.phase = Phase.REPLACED
        self.parts.extend(children)

    def outcome(self) -> RequestOutcome:
        """Fold the parts into the request's outcome (see the module docstring)."""
        planned = self.planned
        out = RequestOutcome(
            index=planned.request.index,
            query=self.query,
            sources=planned.sources,
            duplicates=planned.duplicates,
            resumed=self.resumed,
            expected=self.expected,
            gave_up=dict(self.gave_up),
            failed_classes=dict(self.failed_classes),
        )
        answered = [
            p
            for p in self.parts
            if p.phase is not Phase.REPLACED and (p.final_status is not None or p.aborted)
        ]
        out.ran = bool(answered) or self.ran
        if not answered:
            timed_out = next((p.timed_out for p in self.parts if p.timed_out), "")
            out.timed_out = timed_out
            out.cancelled = any(p.cancelled for p in self.parts)
            return out
        for p in answered:
            out.completed += p.completed
            out.failed += p.failed
            out.warning += p.warning
            out.failed_uids.extend(p.failed_uids)
        out.error_comment = next((p.error_comment for p in answered if p.error_comment), "")
        out.timed_out = next((p.timed_out for p in answered if p.timed_out), "")
        out.cancelled = any(p.cancelled for p in answered)
        matched = [p for p in answered if not p.matched_nothing]
        out.matched_nothing = not matched
        broken = next((p for p in matched if p.aborted), None)
        stopped = next((p for p in matched if p.cancelled or p.timed_out), None)
        if broken is not None:
            out.final_status, out.aborted = broken.final_status, broken.aborted
        elif stopped is not None:
            out.final_status = stopped.final_status
        elif out.matched_nothing:
            out.final_status = answered[0].final_status
        else:
            out.final_status = _worst(p.final_status for p in matched)
        return out


def _worst(codes: object) -> int | None:
    """Return the first failure among final statuses, else the first warning, or success."""
    worst: int | None = st.SUCCESS
    for code in codes:  # type: ignore[attr-defined]
        if code != st.SUCCESS and worst in (st.SUCCESS, st.WARNING) and code is not None:
            worst = code
    return worst
