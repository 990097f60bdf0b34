"""One move, start to end: the orchestration every request of it shares.

:meth:`Run.execute` is the whole move, in order::

    plan -> journal opened (resume: earlier runs read, complete requests skipped)
         -> store SCP started -> scheduler (workers, retries, splits) -> store SCP stopped
         -> last group commit -> journal closed -> rows (pure, from the journal)

While it runs, the store SCP calls :meth:`Run.accept` and :meth:`Run.on_instance`
for every C-STORE (routing, tally, journal, progress), a ticker flushes the journal
and wakes the attempts that must cancel or give up, and each request that ends is
made durable by a group commit before the journal records it complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DicomMoveError, DiskFullError
from ..journal import Journal, file_ok, request_key
from ..progress import MoveStats, Reporter
from ..query import Planned
from ..rows import (
    Arrival,
    RunContext,
    Stop,
    instance_row,
    labelled,
    pending_row,
    request_rows,
    unrequested_rows,
    verdict,
)
from ..store import InstanceStore, Received
from .exchange import due
from .find import Finder
from .getstore import GetStore, negotiate_classes
from .listen import refusal_message
from .request import Part, Phase, RequestState, label_of
from .router import Router
from .scheduler import Scheduler

if TYPE_CHECKING:
    from ..scp import StoreSCP
    from .session import AsyncSession

__all__ = ["MoveResult", "Run"]

logger = logging.getLogger("dicommove")
#: How often the ticker looks at timeouts and flushes the journal (seconds).
_TICK = 0.2


@dataclass
class MoveResult:
    """What a move produced: its rows, and how it ended."""

    rows: list[dict[str, Any]]
    failure: DicomMoveError | None = None  # the error that ended the move
    stop: Stop = Stop.NONE
    deadline_passed: bool = False
    worst_status: int | None = None
    worst_comment: str = ""  # the ErrorComment sent with worst_status
    deadline: float | None = None
    problems: dict[str, int] = field(default_factory=dict)  # status -> rows


#: Files, or bytes, named since the last sync that start one in the background, so that the
#: sync a request (or the move) waits for has little left to write.
_NUDGE_FILES = 2000
_NUDGE_BYTES = 128 << 20


class _Committer:
    """Group commit: every caller of :meth:`commit` waits for one sync that starts after it."""

    def __init__(self, store: InstanceStore | None) -> None:
        self.store = store
        self._running: asyncio.Future[None] | None = None
        self._next: asyncio.Future[None] | None = None
        self._started = (0, 0)  # (files, bytes) named when the last sync started

    def nudge(self) -> None:
        """Start a sync in the background when much was written since the last one."""
        store = self.store
        if store is None or store.durability != "request" or self._running is not None:
            return
        files, nbytes = self._started
        if store.generation - files < _NUDGE_FILES and store.bytes_named - nbytes < _NUDGE_BYTES:
            return
        loop = asyncio.get_running_loop()
        if self._next is None:
            self._next = loop.create_future()
        self._start(loop)

    async def commit(self) -> None:
        store = self.store
        if store is None or store.durability == "none":
            return
        if self._running is None and self._next is None and store.synced >= store.generation:
            return  # nothing named since the last sync
        loop = asyncio.get_running_loop()
        if self._next is None:
            self._next = loop.create_future()
        waiter = self._next
        if self._running is None:
            self._start(loop)
        await asyncio.shield(waiter)

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        assert self.store is not None
        batch, self._next = self._next, None
        self._running = batch
        self._started = (self.store.generation, self.store.bytes_named)
        task = loop.run_in_executor(None, self.store.sync)

        def done(fut: asyncio.Future[None]) -> None:
            self._running = None
            if batch is not None and not batch.done():
                exc = fut.exception()
                if exc is not None:
                    logger.warning("cannot make the received files durable: %s", exc)
                batch.set_result(None)
            if self._next is not None:
                self._start(loop)

        task.add_done_callback(done)


class Run:
    """The state of one move; see the module docstring."""

    def __init__(
        self,
        session: AsyncSession,
        planned: list[Planned],
        *,
        stats: MoveStats,
        reporter: Reporter,
        resume: bool,
        deadline: float | None,
        unresolved: Sequence[dict[str, Any]] = (),
    ) -> None:
        self.session = session
        self.unresolved = list(unresolved)  # rows that C-FIND matched to nothing (resolve=True)
        self.loop = asyncio.get_running_loop()
        self.pacs = session.pacs
        self.pool = session.pool
        self.finder = Finder(session.pool)
        self.timeouts = session.timeouts
        self.retry = session.retry
        self.workers = session.workers
        self.split = session.split
        self.move_destination = session.move_destination
        #: "move" or "get"; with method="auto" it starts as "move" (see :meth:`use_get`)
        self.method_choice = session.method
        self.method = "get" if session.method == "get" else "move"
        self.moved = 0  # instances that came by C-MOVE, to our store SCP
        self.verify = session.verify
        self.local_destination = session.local_destination
        self.stats = stats
        self.reporter = reporter
        self.resume = resume
        self.deadline = deadline
        self.states = [RequestState(p, request_key(p.request.query)) for p in planned]
        self.router = Router(session.ae_title)
        self.stop = Stop.NONE
        self.fatal: DicomMoveError | None = None
        self.abort_now = False
        self.deadline_passed = False
        self.unrequested = 0
        self.store: InstanceStore | None = None
        self.scp: StoreSCP | None = None
        self.journal: Journal | None = None
        self._stopped = asyncio.Event()
        self._started: list[Part] = []
        self._finished_total = self._finished_counted = 0  # instances, requests that ran
        self._commits: set[asyncio.Task[None]] = set()
        self._committer = _Committer(None)
        self._scheduler: Scheduler | None = None
        self._ticker: asyncio.TimerHandle | None = None
        self._ends_at: float | None = None

    # -- the move ----------------------------------------------------------------
    async def execute(self) -> MoveResult:
        """Run the whole move and return its rows; never raises a move error."""
        failure: DicomMoveError | None = None
        try:
            if self.local_destination:
                self.store = self.session.new_store()
                self.store.prepare()
                self.store.begin()
                self._committer = _Committer(self.store)
                self.journal = Journal(self.store.root)
                self.journal.open()
                if self.resume:
                    self._resume()
            todo = [p for s in self.states for p in s.parts]
            if todo:
                if self.store is not None and self.method == "get":
                    await negotiate_classes(self)  # the classes the studies hold, first
                    self.pool.use_store(GetStore(self, self.store))  # C-STOREs come to us
                elif self.store is not None:
                    self.scp = self.session.new_scp(self.store, self)
                    await self.scp.astart()
                    if self.session.port == 0:  # keep the port chosen: the PACS knows it now
                        self.session.port = self.scp.port
                self.reporter.start()
                self._ends_at = None if self.deadline is None else self.loop.time() + self.deadline
                self._ticker = self.loop.call_later(_TICK, self._tick)
                self._scheduler = Scheduler(self, todo)
                await self._scheduler.run_all()
        except DicomMoveError as exc:
            failure = exc
        finally:
            await self._end()
        failure = failure or self.fatal
        return self._result(failure)

    async def _end(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        for state in self.states:
            if not state.finished and not state.resumed and state.ran:
                self.finish_request(state)
        if self.scp is not None:
            await self.scp.astop()
        self.pool.use_store(None)
        if self._commits:
            await asyncio.gather(*self._commits, return_exceptions=True)
        await self._committer.commit()
        if self.journal is not None:
            await self.loop.run_in_executor(None, self.journal.close)

    def _resume(self) -> None:
        journal, store = self.journal, self.store
        assert journal is not None and store is not None
        earlier = journal.scan()
        skipped = 0
        for state in self.states:
            entry = earlier.get(state.key)
            if entry is None:
                continue
            complete = entry.complete and entry.on_disk(journal.root)
            for record in entry.instances.values():
                if complete or file_ok(journal.root, record):
                    journal.copy(state.key, record)
                else:
                    _remove_damaged(journal.root, record)
            if complete:
                state.resumed, state.finished, state.parts = True, True, []
                self.stats.request_finished(id(state), ok=True)
                skipped += 1
            else:  # partly here: only the rest will be asked for
                for part in state.parts:
                    part.asks_remaining = True
        journal.flush()
        for key, arrival in journal.arrivals():
            found = self._by_key().get(key or "")
            if found is not None:
                found.tally.add(arrival)
        logger.info(
            "resume: %d of %d requests complete on disk, skipped", skipped, len(self.states)
        )

    def _by_key(self) -> dict[str, RequestState]:
        return {s.key: s for s in self.states}

    # -- stopping ----------------------------------------------------------------
    def request_stop(self, why: Stop) -> None:
        """Start no further part and cancel the running ones; the first reason wins."""
        if self.stop is Stop.NONE:
            self.stop = why
        self._stopped.set()
        self._wake_parts()
        if self._scheduler is not None:
            self._scheduler.wake()

    def abort(self) -> None:
        """Abort every association at once (a second Ctrl-C)."""
        self.abort_now = True
        self.request_stop(Stop.INTERRUPT)

    def fail(self, exc: DicomMoveError) -> None:
        """End the move because of ``exc`` (the first error wins)."""
        if self.fatal is None:
            self.fatal = exc
        self.request_stop(Stop.FATAL)

    async def sleep(self, seconds: float) -> bool:
        """Sleep, or less if the move stops; return whether it stopped."""
        try:
            await asyncio.wait_for(self._stopped.wait(), seconds)
        except asyncio.TimeoutError:
            return False
        return True

    def _wake_parts(self) -> None:
        now = self.loop.time()
        for part in list(self.router.active.values()):
            if due(self, part, now):
                assoc = self.pool.association(part.worker)
                if assoc is not None:
                    assoc.interrupt()

    def _tick(self) -> None:
        if self.journal is not None:
            self.journal.flush()
        if (
            self._ends_at is not None
            and self.loop.time() > self._ends_at
            and not self.deadline_passed
        ):
            self.deadline_passed = True
            logger.warning("the move's deadline of %g s passed: cancelling", self.deadline)
            self.request_stop(Stop.DEADLINE)
        self._wake_parts()
        self._ticker = self.loop.call_later(_TICK, self._tick)

    # -- parts and requests --------------------------------------------------------
    def on_moved_instance(self, rec: Received) -> None:
        """:meth:`on_instance` for the store SCP: counts what C-MOVE delivered."""
        self.moved += 1
        self.on_instance(rec)

    def use_get(self) -> None:
        """Retrieve with C-GET from now on (``method="auto"``, after C-MOVE failed)."""
        self.method = "get"
        if self.store is not None:
            self.pool.use_store(GetStore(self, self.store))

    def part_started(self, part: Part) -> None:
        """Note that a part's C-MOVE is being sent."""
        self.router.activate(part)
        request = part.request
        if not request.announced:
            request.announced = True
            self.stats.request_started(
                id(request), label_of(request.query, request.planned.request.index)
            )
        self._started.append(part)
        self.stats.worker(part.worker + 1, "moving")

    def part_stopped(self, part: Part) -> None:
        """Note that a part's C-MOVE ended (answered, aborted or given up)."""
        self.router.deactivate(part)

    def progress(self, part: Part, label: str) -> None:
        """Show a request's counts after a pending response, and the new total."""
        request = part.request
        live = [p for p in request.parts if p.phase is not Phase.REPLACED]
        done = sum(p.completed + p.failed + p.warning for p in live)
        expected = sum(p.expected for p in live)
        self.stats.request_progress(id(request), f"{label}  {done}/{expected}")
        self._update_total()

    def _update_total(self) -> None:
        active = [
            max(sum(p.expected for p in s.parts if p.phase is not Phase.REPLACED), s.tally.n_ok)
            for s in {p.request for p in self.router.active.values()}
        ]
        counted = self._finished_counted + sum(1 for n in active if n)  # the rest: estimated
        self.stats.set_total(self._finished_total + sum(active), requests=counted)

    def delivered(self, part: Part) -> bool:
        """Whether any other request of this move got an instance or a completed count."""
        return any(
            p.request is not part.request and (p.request.tally.n_ok or p.completed)
            for p in self._started
        )

    def part_done(self, part: Part) -> None:
        """Finish a part's request if the part was its last one."""
        state = part.request
        if not state.finished and state.open_parts == 0:
            self.finish_request(state)

    def finish_request(self, state: RequestState) -> None:
        """Account for a request that will not run again (progress, journal)."""
        state.finished = True
        out = state.outcome()
        ran = state.ran
        self._finished_total += max(
            sum(p.expected for p in state.parts if p.phase is not Phase.REPLACED), state.tally.n_ok
        )
        self._finished_counted += ran
        self._update_total()
        if not ran:
            return  # never sent (cancelled first): its row says so in the manifest
        complete, missing, problem = verdict(out, state.tally, self.context())
        self.stats.missing(missing)
        self.stats.request_finished(id(state), ok=complete, problem=problem)
        if self.journal is not None:
            task = self.loop.create_task(self._record(state.key, complete, state.tally.n_ok))
            self._commits.add(task)
            task.add_done_callback(self._commits.discard)

    async def _record(self, key: str, complete: bool, instances: int) -> None:
        await self._committer.commit()  # the files first, then the journal's claim
        if self.journal is not None:
            self.journal.request(key, complete=complete, instances=instances)

    # -- the store SCP's callbacks -----------------------------------------------
    def accept(self, rec: Received) -> bool:
        """Decide, before the file gets its final name, whether to keep an instance."""
        part = self.router.decide(rec)
        if part is None and self.session.store_options.unrequested == "refuse":
            rec.reason = "matches no request of this move (unrequested='refuse')"
            return False
        return True

    def on_instance(self, rec: Received) -> None:
        """Record one C-STORE outcome against its request (tally, journal, progress)."""
        part = self.router.routed(rec)
        key: str | None = None
        if part is None:
            if rec.status == "received":
                rec.status = "unrequested"
                rec.reason = "arrived during the move but matches no request"
            self.unrequested += 1
        arrival = _arrival(rec)
        if part is not None:
            key = part.request.key
            part.last_activity = self.loop.time()
            part.request.tally.add(arrival)
        if self.journal is not None:
            self.journal.instance(key, rec, arrival)
        self._committer.nudge()
        if rec.status in ("received", "unrequested"):
            self.stats.instance(rec.size)
        elif rec.status in ("failed", "refused", "conflict"):
            self.stats.instance(0, ok=False)
        if rec.status == "failed" and rec.errno in (errno.ENOSPC, errno.EDQUOT):
            self.fail(
                DiskFullError(
                    f"the disk holding {self.session.out.absolute()} is full ({rec.reason}); "
                    "the move was cancelled. Free some space or choose another output "
                    "directory, then run the same move again with resume=True: what arrived "
                    "is kept."
                )
            )

    def store_address(self) -> str:
        """Our store SCP as the PACS should reach it."""
        host = self.session.bind or self.pool.local_address
        port = self.scp.port if self.scp is not None else self.session.port
        return f"{host or '<this machine>'}:{port}"

    def context(self) -> RunContext:
        """Return what the rows of every request share."""
        failure = self.fatal
        return RunContext(
            local_destination=self.local_destination,
            stop=self.stop,
            failure=str(failure) if failure is not None else "",
            store_address=self.store_address() if self.method_choice != "get" else "",
            unrequested=self.unrequested,
            refused=refusal_message(self.session, scp.refusals)
            if (scp := self.scp) is not None and scp.refusals
            else "",
        )

    def rows(self, *, live: bool = False) -> list[dict[str, Any]]:
        """Return the manifest rows of the finished move, or so far (``live``: pending rows)."""
        by_key: dict[str | None, list[Arrival]] = defaultdict(list)
        if self.journal is not None:
            for key, arrival in self.journal.arrivals():
                by_key[key].append(arrival)
        ctx = self.context()
        rows: list[dict[str, Any]] = []
        for state in self.states:
            arrivals = by_key.get(state.key, [])
            if live and not state.finished:
                out = state.outcome()
                rows.extend(labelled(out, instance_row(out.index, a, None)) for a in arrivals)
                rows.append(pending_row(out, running=state.ran))
                continue
            rows.extend(request_rows(state.outcome(), arrivals, ctx))
        rows.extend(unrequested_rows(by_key.get(None, [])))
        rows.extend(dict(row) for row in self.unresolved)
        if self.session.tags or self.resume:
            _header_columns(rows, [kw for kw, _vr in self.session.tags.values()])
        return rows

    def _result(self, failure: DicomMoveError | None) -> MoveResult:
        rows = self.rows()
        from ..manifest import PROBLEM_STATUSES

        problems: dict[str, int] = {}
        for row in rows:
            if row["status"] in PROBLEM_STATUSES:
                problems[row["status"]] = problems.get(row["status"], 0) + 1
        # the first failed request's status, with the ErrorComment of a part that sent it
        worst, comment = next(
            (
                (code, _comment_of(s, code))
                for s in self.states
                if s.ran and _failed(code := s.outcome().final_status)
            ),
            (None, ""),
        )
        self.stats.finish(
            complete=not problems and failure is None and self.stop is Stop.NONE,
            cancelled=self.stop in (Stop.INTERRUPT, Stop.CANCEL),
            problems=problems,
        )
        return MoveResult(
            rows=rows,
            failure=failure,
            stop=self.stop,
            deadline_passed=self.deadline_passed,
            worst_status=worst,
            worst_comment=comment,
            problems=problems,
            deadline=self.deadline,
        )


def _remove_damaged(root: Path, record: dict[str, Any]) -> None:
    """Remove a file the journal recorded with another size: it is asked for again.

    A crash before the request's group commit can leave a file whose data never reached the
    disk (empty or short); left there, the copy fetched again would be a "conflict".
    """
    path = root / str(record.get("path", ""))
    with contextlib.suppress(OSError):
        if path.is_file():
            logger.warning(
                "%s is damaged (not the size the journal recorded): fetching it again", path
            )
            path.unlink()


def _header_columns(rows: list[dict[str, Any]], header: list[str]) -> None:
    """Give every row the header columns of this move (``tags=``), and only those.

    An earlier run's records (``resume=True``) may carry other ones, or none.
    """
    from ..manifest import COLUMNS

    wanted = set(header)
    for row in rows:
        for name in [k for k in row if k not in COLUMNS and k not in wanted]:
            del row[name]
        for name in header:
            row.setdefault(name, None)


def _comment_of(state: RequestState, code: int | None) -> str:
    """Return the ErrorComment of the part of ``state`` that answered ``code``, else any."""
    comments = [(p.final_status, p.error_comment) for p in state.parts if p.error_comment]
    return next((c for s, c in comments if s == code), state.outcome().error_comment)


def _failed(code: int | None) -> bool:
    from .. import _status as st

    return st.is_failure(code)


def _arrival(rec: Received) -> Arrival:
    return Arrival(
        rec.sop_instance_uid,
        rec.sop_class_uid,
        rec.transfer_syntax_uid,
        rec.status,
        rec.reason,
        rec.study_instance_uid,
        rec.series_instance_uid,
        rec.patient_id,
        rec.path,
        rec.size,
        rec.received_at,
        rec.tags,
    )


def _received(a: Arrival) -> Received:
    return Received(
        sop_instance_uid=a.sop,
        sop_class_uid=a.sop_class,
        transfer_syntax_uid=a.transfer_syntax,
        status=a.status,
        study_instance_uid=a.study,
        series_instance_uid=a.series,
        patient_id=a.patient,
    )
