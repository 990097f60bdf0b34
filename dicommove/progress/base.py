"""The reporter base: :class:`Reporter`, which draws a :class:`MoveStats` from its own thread.

The engine's threads only update a :class:`~dicommove.progress.stats.MoveStats`; a
:class:`Reporter` polls its snapshot from a daemon thread of its own and draws it, so
nothing it does can block the receiving of an instance. This module holds the thread
lifecycle (start, periodic render, final render, stop), :class:`NullReporter` (no
thread) and :class:`CallbackReporter` (a callable of yours). The tqdm bar lives in
:mod:`dicommove.progress.terminal`, the Jupyter panel in :mod:`dicommove.progress.widget`.
Standard library only.
"""

from __future__ import annotations

import contextvars
import dataclasses
import logging
import sys
import threading
from collections.abc import Callable
from typing import Any

from ..errors import InputError
from .stats import MoveStats, ProgressSnapshot

__all__ = ["CallbackReporter", "NullReporter", "Reporter"]

logger = logging.getLogger("dicommove")


class Reporter:
    """Draws a :class:`MoveStats` from a daemon thread of its own.

    :meth:`start` and :meth:`stop` are called by the engine's main thread; :meth:`render`
    runs in the reporter thread only: once at start, then every ``interval`` seconds, then
    a last time with the final snapshot when :meth:`stop` is called. An exception raised
    while drawing is logged (logger ``dicommove``) and the move goes on.

    The reporter keeps the :mod:`contextvars` context of the thread that created it, and
    displays and draws in it: in Jupyter, create it in the cell's thread, and its output
    goes to that cell even when a background thread starts it.

    Subclasses override :meth:`render`, and optionally ``_open`` (called by :meth:`start`)
    and ``_close`` (called in the reporter thread after the final render).

    Parameters
    ----------
    stats : MoveStats
        The counters to draw.
    interval : float
        Seconds between two renders.
    """

    def __init__(self, stats: MoveStats, *, interval: float = 0.2) -> None:
        if not interval > 0:
            raise InputError(f"interval={interval!r}: use a positive number of seconds")
        self.stats = stats
        self.interval = interval
        self._stopping = threading.Event()
        self._state_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._errors = 0
        self._context = contextvars.copy_context()

    def start(self) -> None:
        """Start drawing, in a daemon thread. Does nothing if already started or stopped."""
        with self._state_lock:
            if self._thread is not None or self._stopped:
                return
            try:
                self._context.copy().run(self._open)
            except Exception:  # no display is no reason to fail the move
                logger.warning("%s could not start", self._what(), exc_info=True)
            self._thread = threading.Thread(
                target=self._context.copy().run,
                args=(self._run,),
                name="dicommove-progress",
                daemon=True,
            )
            self._thread.start()

    def stop(self) -> None:
        """Draw the final snapshot, then end and join the thread. Safe to call twice.

        If :meth:`MoveStats.finish` was not called, the final snapshot says
        ``finished=True, complete=False``.
        """
        with self._state_lock:
            self._stopped = True
            thread = self._thread
        self._stopping.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def render(self, snapshot: ProgressSnapshot) -> None:
        """Draw one snapshot; the base draws nothing.

        The reporter thread calls this. Call it yourself only on a reporter that is not
        started (to show a given snapshot, as the documentation does).
        """

    def _open(self) -> None:
        """Prepare the display (main thread, from :meth:`start`)."""

    def _close(self, snapshot: ProgressSnapshot) -> None:
        """Release the display after the final render (reporter thread)."""

    def _run(self) -> None:
        while True:
            self._guarded(self.render, self.stats.snapshot())
            if self._stopping.wait(self.interval):
                break
        final = self._final_snapshot()
        self._guarded(self.render, final)
        self._guarded(self._close, final)

    def _final_snapshot(self) -> ProgressSnapshot:
        """Return the snapshot drawn last: the current one, marked finished."""
        snapshot = self.stats.snapshot()
        if not snapshot.finished:
            snapshot = dataclasses.replace(snapshot, finished=True, complete=False)
        return snapshot

    def _guarded(self, draw: Callable[[ProgressSnapshot], object], snap: ProgressSnapshot) -> None:
        try:
            draw(snap)
        except Exception:
            self._errors += 1
            if self._errors == 1:
                logger.warning("%s failed; the move goes on", self._what(), exc_info=True)
            else:
                logger.debug("%s failed again (%d times)", self._what(), self._errors)

    def _what(self) -> str:
        return "the progress display"


class NullReporter(Reporter):
    """Shows nothing, and starts no thread."""

    def __init__(self, stats: MoveStats | None = None) -> None:
        super().__init__(stats if stats is not None else MoveStats())

    def start(self) -> None:
        """Do nothing."""

    def stop(self) -> None:
        """Do nothing."""


class CallbackReporter(Reporter):
    """Calls ``callback(snapshot)`` from the reporter thread, and once at the end.

    The last call gets a snapshot with ``finished=True``. An exception raised by the
    callback is logged and does not stop the move; keep the callback quick, as
    :meth:`stop` waits for it.

    Parameters
    ----------
    stats : MoveStats
        The counters to report.
    callback : callable
        Called with each :class:`ProgressSnapshot`; its return value is ignored.
    interval : float
        Seconds between two calls.
    """

    def __init__(
        self,
        stats: MoveStats,
        callback: Callable[[ProgressSnapshot], object],
        *,
        interval: float = 0.2,
    ) -> None:
        super().__init__(stats, interval=interval)
        self.callback = callback

    def render(self, snapshot: ProgressSnapshot) -> None:
        """Call the callback with ``snapshot``."""
        self.callback(snapshot)

    def _what(self) -> str:
        return f"the progress callback {self.callback!r}"


def _state(snapshot: ProgressSnapshot) -> str:
    """Where the move stands: ``"running"``, ``"complete"``, ``"incomplete"`` or ``"cancelled"``."""
    if not snapshot.finished:
        return "running"
    if snapshot.cancelled:
        return "cancelled"
    return "complete" if snapshot.complete else "incomplete"


def _shell() -> Any:
    """Return the running IPython shell (a kernel's, or the terminal's), or ``None``.

    Never imports IPython: without it imported, no shell can run.
    """
    ipython = sys.modules.get("IPython")
    return ipython.get_ipython() if ipython is not None else None
