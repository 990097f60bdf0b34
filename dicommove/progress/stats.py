"""Counters of a move: :class:`MoveStats`, and the :class:`ProgressSnapshot` it hands out.

The engine's event loop updates a :class:`MoveStats` (a few integer updates per call, under
a lock where several fields change together; never a UI call); a reporter thread (see
:mod:`dicommove.progress.base`) reads it with :meth:`MoveStats.snapshot` and draws the
frozen :class:`ProgressSnapshot` it gets. Standard library only.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = ["THROUGHPUT_WINDOW", "MoveStats", "ProgressSnapshot"]

#: Seconds of history behind :attr:`ProgressSnapshot.mb_per_s` while a move runs.
THROUGHPUT_WINDOW = 3.0


def _no_workers() -> Mapping[int, str]:
    return MappingProxyType({})


def _nothing() -> Mapping[str, int]:
    return MappingProxyType({})


@dataclass(frozen=True)
class ProgressSnapshot:
    """The state of a move at one moment, as a reporter or a progress callable sees it.

    Attributes
    ----------
    total : int or None
        Instances expected so far: the sum of the counts the PACS announced in its pending
        responses (it grows as requests start). Never less than ``instances``. ``None`` until
        the first count is known.
    instances : int
        Instances received and kept.
    nbytes : int
        Bytes received.
    elapsed : float
        Seconds since the move started (frozen when it finishes).
    mb_per_s : float
        Throughput in MB/s (10^6 bytes a second): over the last few seconds while the move
        runs, over the whole move once it has finished.
    requests_total : int
        Requests (C-MOVEs) in this move.
    requests_done : int
        Requests finished, whatever their outcome.
    requests_failed : int
        Requests finished with a problem (see ``request_problems`` for which).
    failed : int
        Instances that arrived but could not be stored.
    missing : int
        Instances announced but never received, as counted at the end of each request.
    active : tuple of str
        Labels of the requests running now, oldest first (e.g. ``"STUDY 1.2.3... 40/120"``).
    workers : Mapping[int, str]
        Worker number (from 1, as in the engine's log) to a short state: ``"moving"``,
        ``"idle"``, ``"retry in 2s"``, ``"cancelling"``, ... Read-only.
    finished : bool
        The move is over.
    complete : bool or None
        ``None`` while the move runs; at the end, whether everything arrived.
    cancelled : bool
        The move was cancelled.
    per_s : float
        Instances a second, over the same window as ``mb_per_s``.
    requests_started : int
        Requests sent to the PACS so far (not those already complete on disk with
        ``resume=True``).
    request_problems : Mapping[str, int]
        Finished requests with a problem, by the manifest status that tells it:
        ``{"not_found": 1, "cancelled": 2}``. Read-only.
    problems : Mapping[str, int]
        Once the move has finished: the manifest's rows by problem status (``"missing"``,
        ``"cancelled"``, ...), never-started requests included. Empty before. Read-only.
    expected : int or None
        Instances the whole move will likely bring: ``total``, plus an estimate for the
        requests whose count is not known yet (the average of those known). Equal to
        ``total`` once every count is known; ``None`` while none is.
    eta : float or None
        Seconds left at the recent rate (``per_s``); ``None`` when unknown or finished.
    """

    total: int | None = None
    instances: int = 0
    nbytes: int = 0
    elapsed: float = 0.0
    mb_per_s: float = 0.0
    requests_total: int = 0
    requests_done: int = 0
    requests_failed: int = 0
    failed: int = 0
    missing: int = 0
    active: tuple[str, ...] = ()
    workers: Mapping[int, str] = field(default_factory=_no_workers)
    finished: bool = False
    complete: bool | None = None
    cancelled: bool = False
    per_s: float = 0.0
    requests_started: int = 0
    request_problems: Mapping[str, int] = field(default_factory=_nothing)
    problems: Mapping[str, int] = field(default_factory=_nothing)

    expected: int | None = None
    eta: float | None = None

    @property
    def requests_waiting(self) -> int:
        """Requests not started yet (or never, once the move has finished)."""
        return max(self.requests_total - self.requests_done - len(self.active), 0)


class MoveStats:
    """Thread-safe counters of a move, updated by the engine and read by a reporter.

    Every method takes one lock for a few integer or dict updates, so it is cheap to call
    from a store thread for every instance; none of them draws anything.

    Parameters
    ----------
    requests_total : int
        The number of requests the move will send (raised automatically if more start).
    clock : callable returning float
        The clock, in seconds; :func:`time.monotonic` by default (tests pass their own).
    """

    def __init__(
        self, requests_total: int = 0, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._start = clock()
        self._end: float | None = None
        self._total: int | None = None
        self._instances = 0
        self._nbytes = 0
        self._failed = 0
        self._missing = 0
        self._requests_total = requests_total
        self._requests_done = 0
        self._requests_failed = 0
        self._requests_started = 0
        self._finished_started = 0  # requests finished after request_started
        self._covered: int | None = None
        self._request_problems: dict[str, int] = {}
        self._problems: dict[str, int] = {}
        self._active: dict[Hashable, str] = {}
        self._workers: dict[int, str] = {}
        self._complete: bool | None = None
        self._cancelled = False
        # (time, nbytes, instances) samples taken by snapshot(), for the recent throughput
        self._samples: deque[tuple[float, int, int]] = deque([(self._start, 0, 0)])

    def set_total(self, total: int, *, requests: int | None = None) -> None:
        """Set the number of instances expected so far (it may grow as requests start).

        ``requests`` is how many requests that total covers (by default, those
        started): the others are estimated at their average.
        """
        with self._lock:
            self._total = total
            self._covered = requests

    def instance(self, nbytes: int, *, ok: bool = True) -> None:
        """Count one instance that arrived: stored (``ok``) or failed, with its size.

        Called for every instance from the one thread that receives them, so it takes no
        lock (a reader may see the count a moment before the bytes).
        """
        self._nbytes += nbytes
        if ok:
            self._instances += 1
        else:
            self._failed += 1

    def missing(self, n: int) -> None:
        """Count ``n`` instances that a finished request announced but never sent."""
        with self._lock:
            self._missing += n

    def request_started(self, key: Hashable, label: str) -> None:
        """Mark the request ``key`` as running, shown as ``label``."""
        with self._lock:
            if key not in self._active:
                self._requests_started += 1
            self._active[key] = label
            self._requests_total = max(
                self._requests_total, self._requests_done + len(self._active)
            )

    def request_progress(self, key: Hashable, label: str) -> None:
        """Relabel the running request ``key`` (ignored once it has finished)."""
        with self._lock:
            if key in self._active:
                self._active[key] = label

    def request_finished(self, key: Hashable, *, ok: bool, problem: str = "failed") -> None:
        """Mark the request ``key`` as finished.

        ``ok=False`` counts it among the failed requests, under ``problem``: the manifest
        status that tells what went wrong (``"not_found"``, ``"cancelled"``, ...).
        """
        with self._lock:
            if self._active.pop(key, None) is not None:
                self._finished_started += 1
            self._requests_done += 1
            if not ok:
                self._requests_failed += 1
                self._request_problems[problem] = self._request_problems.get(problem, 0) + 1
            self._requests_total = max(
                self._requests_total, self._requests_done + len(self._active)
            )

    def worker(self, worker: int, state: str) -> None:
        """Set the short state of worker number ``worker`` (from 1: ``"moving"``, ``"idle"``...)."""
        with self._lock:
            self._workers[worker] = state

    def finish(
        self,
        *,
        complete: bool,
        cancelled: bool = False,
        problems: Mapping[str, int] | None = None,
    ) -> None:
        """Mark the move as over: ``complete`` if everything arrived, or ``cancelled``.

        ``problems`` counts the manifest's rows by problem status (the final panel
        shows them).
        """
        with self._lock:
            if self._end is None:
                self._end = self._clock()
            self._complete = complete
            self._cancelled = cancelled
            if problems is not None:
                self._problems = {k: v for k, v in problems.items() if v}

    def snapshot(self) -> ProgressSnapshot:
        """Return the current state, consistent as of one instant."""
        with self._lock:
            finished = self._end is not None
            now = self._end if self._end is not None else self._clock()
            elapsed = max(now - self._start, 0.0)
            if finished:
                rate = self._nbytes / elapsed if elapsed > 0 else 0.0
                per_s = self._instances / elapsed if elapsed > 0 else 0.0
            else:
                rate, per_s = self._recent_rate(now)
            total = self._total
            expected = self._expected(finished)
            eta = None
            if expected is not None and not finished and per_s > 0:
                eta = max(expected - self._instances, 0) / per_s
            return ProgressSnapshot(
                total=None if total is None else max(total, self._instances),
                instances=self._instances,
                nbytes=self._nbytes,
                elapsed=elapsed,
                mb_per_s=rate / 1e6,
                requests_total=self._requests_total,
                requests_done=self._requests_done,
                requests_failed=self._requests_failed,
                failed=self._failed,
                missing=self._missing,
                active=tuple(self._active.values()),
                workers=MappingProxyType(dict(sorted(self._workers.items()))),
                finished=finished,
                complete=self._complete if finished else None,
                cancelled=self._cancelled,
                per_s=per_s,
                requests_started=self._requests_started,
                request_problems=MappingProxyType(dict(self._request_problems)),
                problems=MappingProxyType(dict(self._problems)),
                expected=expected,
                eta=eta,
            )

    def _expected(self, finished: bool) -> int | None:
        """Return the total, plus its average per request for each request it does not cover."""
        total = self._total
        if total is None:
            return None
        total = max(total, self._instances)
        covered = self._requests_started if self._covered is None else self._covered
        skipped = self._requests_done - self._finished_started  # complete on disk already
        uncovered = self._requests_total - skipped - covered
        if finished or uncovered <= 0 or covered <= 0:
            return total
        return total + round(total * uncovered / covered)

    def _recent_rate(self, now: float) -> tuple[float, float]:
        """Bytes and instances a second over the last THROUGHPUT_WINDOW seconds (lock held)."""
        samples = self._samples
        if now - samples[-1][0] >= 0.1:  # at most ~30 samples in the window
            samples.append((now, self._nbytes, self._instances))
        # keep the newest sample at least a window old as the reference point
        while len(samples) > 1 and samples[1][0] <= now - THROUGHPUT_WINDOW:
            samples.popleft()
        t0, n0, i0 = samples[0]
        # a 1 s floor: no absurd spike when the first instance lands in the first milliseconds
        span = max(now - t0, 1.0)
        return (self._nbytes - n0) / span, (self._instances - i0) / span
