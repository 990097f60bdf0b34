"""Workers, retries and splits: who runs which part, and what happens when it fails.

``workers`` coroutines share one queue of parts. Each takes the next part, runs its
C-MOVE on its own association (:func:`~dicommove.engine.exchange.move_once`), and
retries transient failures with a jittered exponential backoff, asking only for
what has not arrived. A worker that cannot get an association while others have
one hands its part back and stops (the PACS takes fewer associations than we have
workers); parts handed back after the last worker ended run in another round with
as many workers as had an association.

Splitting (``split="auto"``, the default): a STUDY or PATIENT part that a worker
takes when fewer parts are queued than there are other workers (so one of them would
idle before the move ends: a single study, or the last studies of a cohort) is cut up
so that they can help: several studies of one C-MOVE into one C-MOVE per study (not
rows grouped with ``batch``), one study of at least :data:`SPLIT_AT` instances into its
series (one C-FIND, which also asks for their sizes). A part whose PACS announces more
sub-operations than a response can count (65,535) is always moved series by series.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from typing import TYPE_CHECKING

from .. import _tags as tg
from ..errors import AssociationAborted, AssociationRejected, ConnectError, DicomMoveError
from ..rows import Stop
from .exchange import move_once
from .ondisk import arrived as on_disk
from .ondisk import needs_remaining, unverified
from .request import Next, Part, Phase

if TYPE_CHECKING:
    from .run import Run

__all__ = ["Scheduler"]

logger = logging.getLogger("dicommove")
#: A study (or patient) is moved series by series over idle workers from this many
#: instances on: below, the extra C-MOVEs cost more than the parallel transfer saves.
SPLIT_AT = 100
_UNIQUE_TAGS = {
    "PATIENT": tg.PATIENT_ID,
    "STUDY": tg.STUDY_INSTANCE_UID,
    "SERIES": tg.SERIES_INSTANCE_UID,
    "IMAGE": tg.SOP_INSTANCE_UID,
}


class _Retire(Exception):
    """A worker cannot get an association while others have one: it hands back its part."""


class _SetupAborted(Exception):
    """The PACS closed or reset the connection while the association was being set up."""


class Scheduler:
    """The queue of parts and the workers that empty it."""

    def __init__(self, run: Run, parts: list[Part]) -> None:
        self.run = run
        self.queue: deque[Part] = deque(parts)
        self.running = 0  # parts held by a worker
        self.live: set[int] = set()
        self.retired = 0
        self._wake = asyncio.Event()

    async def run_all(self) -> None:
        """Run every queued part (rounds, see the module docstring)."""
        run = self.run
        workers = run.workers
        while self.queue and run.stop is Stop.NONE:
            self.retired = 0
            connected = run.pool.connected()
            spare = [w for w in range(run.workers) if w not in connected]
            wanted = workers if run.split is not False else min(workers, len(self.queue))
            chosen = (connected + spare)[: max(wanted, 1)]
            self.live = set(chosen)
            await asyncio.gather(*(self._worker(i) for i in chosen))
            workers = max(1, len(chosen) - self.retired)

    def wake(self) -> None:
        """Wake idle workers (parts were queued, or a part ended)."""
        self._wake.set()

    def _push_front(self, parts: list[Part]) -> None:
        for part in reversed(parts):
            part.phase = Phase.QUEUED
            self.queue.appendleft(part)
        self.wake()

    async def _worker(self, worker: int) -> None:
        run = self.run
        try:
            while run.stop is Stop.NONE:
                if self.queue:
                    part = self.queue.popleft()
                elif self.running == 0:
                    break
                else:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                self.running += 1
                part.phase = Phase.RUNNING
                try:
                    await self._run_part(part, worker)
                except _Retire as retire:
                    logger.warning(
                        "worker %d stops (%s); the other workers carry on",
                        worker + 1,
                        retire.__cause__,
                    )
                    if not part.started_at:
                        part.attempts = 0
                    self.retired += 1
                    self._push_front([part])
                    return  # (not finished: another worker, or the next round, runs it)
                except DicomMoveError as exc:
                    run.fail(exc)
                except Exception as exc:  # a bug of ours: stop the move, keep what arrived
                    logger.exception("worker %d failed on %s", worker + 1, part.query)
                    run.fail(
                        DicomMoveError(
                            f"internal error while moving {part.query}: {exc!r}. "
                            "What arrived is kept; please report this."
                        )
                    )
                finally:
                    self.running -= 1
                    self.wake()
                if part.phase is Phase.RUNNING:
                    part.phase = Phase.DONE
                run.part_done(part)
        finally:
            run.stats.worker(worker + 1, "done")
            self.live.discard(worker)
            self.wake()

    async def _run_part(self, part: Part, worker: int) -> None:
        """Run one part; try again after transient failures, with exponential backoff."""
        run = self.run
        delay = run.retry.backoff
        while True:
            part.attempts += 1
            error: DicomMoveError | None = None
            transient = ""
            try:
                try:
                    await run.pool.get(worker)
                except AssociationAborted as exc:  # reset or closed during set-up: transient
                    raise _SetupAborted(str(exc)) from exc
                if part.asks_remaining or needs_remaining(part):
                    part.asks_remaining = False
                    if await self._ask_remaining(part, worker):
                        return
                if run.verify and part.request.expected is None:
                    listed = await run.finder.instances(worker, part.request.query)
                    part.request.expected = listed if listed is not None else {}
                if self._should_split(part) and await self._split(part, worker):
                    return
                attempt = await move_once(run, part, worker)
                if attempt.next is Next.SPLIT:
                    await self._overflow(part, worker)
                    return
                transient = attempt.reason if attempt.next is Next.RETRY else ""
                if not transient and run.verify and (missing := unverified(run, part)):
                    transient = f"{missing} instances listed by C-FIND did not arrive (verify)"
            except (ConnectError, _SetupAborted) as exc:
                if self._others_connected(worker):
                    raise _Retire from exc
                cause = exc.__cause__ if isinstance(exc, _SetupAborted) else exc
                assert isinstance(cause, DicomMoveError)
                transient, error = str(exc), cause
            except AssociationRejected as exc:
                if exc.result != 2:  # permanent: a configuration error, no retry
                    raise
                if self._others_connected(worker) or any(w < worker for w in self.live):
                    raise _Retire from exc  # let one worker find out what the PACS allows
                transient, error = str(exc), exc
            if not transient or run.stop is not Stop.NONE:
                return
            if part.attempts > run.retry.retries:
                if error is not None:
                    raise error  # the PACS cannot be reached at all: stop the move
                return  # the rows say what failed
            wait = delay * random.uniform(0.5, 1.5)  # jitter: workers do not retry in step
            logger.warning(
                "%s: %s; retry %d of %d in %.2g s",
                part.query,
                transient,
                part.attempts,
                run.retry.retries,
                wait,
            )
            run.stats.worker(worker + 1, f"retry in {wait:.1f}s")
            if await run.sleep(wait):
                return  # the move stops
            delay *= 2
            part.asks_remaining = part.request.tally.n_ok > 0 or bool(part.request.gave_up)

    async def _ask_remaining(self, part: Part, worker: int) -> bool:
        """Ask only for what has not arrived; return whether the part is done or replaced."""
        run = self.run
        arrived = on_disk(run, part)
        skip = frozenset(part.request.gave_up)
        queries = await run.finder.remaining(worker, part.query, arrived, skip=skip)
        if queries is None:
            return False  # ask again for the whole part
        if not queries:
            part.nothing_missing()
            return True
        if len(queries) == 1 and queries[0] == part.query:
            return False
        self._replace(part, [part.child(q) for q in queries])
        return True

    def _replace(self, part: Part, children: list[Part]) -> None:
        part.request.replace(part, children)
        self._push_front(children)

    def _should_split(self, part: Part) -> bool:
        """Whether to cut up a part before its first C-MOVE (see the module docstring)."""
        run = self.run
        if run.split is False or not run.local_destination or part.started_at:
            return False
        if part.query.level not in ("PATIENT", "STUDY"):
            return False
        if run.split is True:
            return True
        # fewer parts are left than the other workers: one of them would idle before the end
        return len(self.queue) < len(self.live) - 1

    async def _split(self, part: Part, worker: int) -> bool:
        """Cut a part up: several UIDs into chunks, one study or patient into its series."""
        run = self.run
        query, level = part.query, part.query.level
        uids = query.retrieve_uids()
        # rows grouped on purpose (batch=N) are sent as grouped, unless split=True
        batched = len(set(part.request.planned.sources.values())) > 1 and run.split is not True
        if len(uids) > 1 and level in ("PATIENT", "STUDY") and not batched:
            # one C-MOVE per study: the workers share them out as they go
            chunks = [[uid] for uid in uids]
            tag = _UNIQUE_TAGS[level]
            self._replace(
                part, [part.child(query.set(tag, c if len(c) > 1 else c[0])) for c in chunks]
            )
            logger.info("%s: shared out in %d C-MOVEs over the workers", query, len(uids))
            return True
        if len(uids) > 1:
            return False
        sizes: list[int | None] = []
        series = await run.finder.series_of(worker, query, sizes)
        if series is None or len(series) < 2:
            return False
        known = [n for n in sizes if n is not None]
        if run.split is not True and (len(known) < len(sizes) or sum(known) < SPLIT_AT):
            return False  # small (or of unknown size): one C-MOVE costs less
        logger.info("%s: moved as its %d series, over the workers", query, len(series))
        self._replace(part, [part.child(q) for q in series])
        return True

    async def _overflow(self, part: Part, worker: int) -> None:
        """More sub-operations than a response can count: move what is left series by series."""
        run = self.run
        logger.warning(
            "%s: the PACS announced 65535 or more sub-operations, more than a C-MOVE "
            "response can count; moving it series by series (C-FIND)",
            part.query,
        )
        queries = await run.finder.remaining(worker, part.query, on_disk(run, part), whole=True)
        if queries is None:
            part.aborted = (
                "the PACS announced 65,535 or more sub-operations, and its series could not "
                "be listed (C-FIND) to move them one by one"
            )
            return
        if not queries:
            part.nothing_missing()  # everything arrived before the C-CANCEL took effect
            return
        self._replace(part, [part.child(q) for q in queries])

    def _others_connected(self, worker: int) -> bool:
        """Whether another running worker holds an association (and can take our part)."""
        return any(w != worker and w in self.live for w in self.run.pool.connected())
