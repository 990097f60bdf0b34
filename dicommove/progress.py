"""Progress of a move: thread-safe counters, and reporters that draw them from their own thread.

The engine counts into a :class:`MoveStats` from its worker and store threads: a lock and a
few integer updates, never a UI call. A :class:`Reporter` made by :func:`make_reporter` polls
:meth:`MoveStats.snapshot` from a thread of its own (every 0.2 s by default) and draws it: a
tqdm bar on stderr, an ipywidgets panel in Jupyter, or a callable of yours. Nothing a
reporter does can block the receiving of an instance.

This module imports neither tqdm nor ipywidgets (nor pandas) until a reporter needs them.
"""

from __future__ import annotations

import contextvars
import dataclasses
import html
import logging
import os
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import IO, Any, Literal

from .errors import InputError

__all__ = [
    "CallbackReporter",
    "MoveStats",
    "NullReporter",
    "ProgressMode",
    "ProgressSnapshot",
    "Reporter",
    "TqdmReporter",
    "WidgetReporter",
    "make_reporter",
]

logger = logging.getLogger("dicommove")

ProgressMode = bool | None | Literal["auto", "tqdm", "widget"]

#: Seconds of history behind :attr:`ProgressSnapshot.mb_per_s` while a move runs.
THROUGHPUT_WINDOW = 3.0

_MODES = "'auto' or True, 'tqdm', 'widget', False or None, or a callable taking a ProgressSnapshot"


# ---------------------------------------------------------------------------
# Counters (engine side)
# ---------------------------------------------------------------------------
def _no_workers() -> Mapping[int, str]:
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
        Requests finished with a problem.
    failed : int
        Instances that arrived but could not be stored.
    missing : int
        Instances announced but never received, as counted at the end of each request.
    active : tuple of str
        Labels of the requests running now, oldest first (e.g. ``"STUDY 1.2.3... 40/120"``).
    workers : Mapping[int, str]
        Worker number to a short state: ``"moving"``, ``"idle"``, ``"retry in 2s"``,
        ``"cancelling"``, ... Read-only.
    finished : bool
        The move is over.
    complete : bool or None
        ``None`` while the move runs; at the end, whether everything arrived.
    cancelled : bool
        The move was cancelled.
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
        self._active: dict[Hashable, str] = {}
        self._workers: dict[int, str] = {}
        self._complete: bool | None = None
        self._cancelled = False
        # (time, nbytes) samples taken by snapshot(), for the recent throughput
        self._samples: deque[tuple[float, int]] = deque([(self._start, 0)])

    def set_total(self, total: int) -> None:
        """Set the number of instances expected so far (it may grow as requests start)."""
        with self._lock:
            self._total = total

    def instance(self, nbytes: int, *, ok: bool = True) -> None:
        """Count one instance that arrived: stored (``ok``) or failed, with its size."""
        with self._lock:
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
            self._active[key] = label
            self._requests_total = max(
                self._requests_total, self._requests_done + len(self._active)
            )

    def request_progress(self, key: Hashable, label: str) -> None:
        """Relabel the running request ``key`` (ignored once it has finished)."""
        with self._lock:
            if key in self._active:
                self._active[key] = label

    def request_finished(self, key: Hashable, *, ok: bool) -> None:
        """Mark the request ``key`` as finished; ``ok=False`` counts it as failed."""
        with self._lock:
            self._active.pop(key, None)
            self._requests_done += 1
            if not ok:
                self._requests_failed += 1
            self._requests_total = max(
                self._requests_total, self._requests_done + len(self._active)
            )

    def worker(self, worker: int, state: str) -> None:
        """Set the short state of worker number ``worker`` (``"moving"``, ``"idle"``, ...)."""
        with self._lock:
            self._workers[worker] = state

    def finish(self, *, complete: bool, cancelled: bool = False) -> None:
        """Mark the move as over: ``complete`` if everything arrived, or ``cancelled``."""
        with self._lock:
            if self._end is None:
                self._end = self._clock()
            self._complete = complete
            self._cancelled = cancelled

    def snapshot(self) -> ProgressSnapshot:
        """Return the current state, consistent as of one instant."""
        with self._lock:
            finished = self._end is not None
            now = self._end if self._end is not None else self._clock()
            elapsed = max(now - self._start, 0.0)
            if finished:
                rate = self._nbytes / elapsed if elapsed > 0 else 0.0
            else:
                rate = self._recent_rate(now)
            total = self._total
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
            )

    def _recent_rate(self, now: float) -> float:
        """Bytes a second over the last THROUGHPUT_WINDOW seconds (lock held)."""
        samples = self._samples
        if now - samples[-1][0] >= 0.1:  # at most ~30 samples in the window
            samples.append((now, self._nbytes))
        # keep the newest sample at least a window old as the reference point
        while len(samples) > 1 and samples[1][0] <= now - THROUGHPUT_WINDOW:
            samples.popleft()
        t0, n0 = samples[0]
        # a 1 s floor: no absurd spike when the first instance lands in the first milliseconds
        return (self._nbytes - n0) / max(now - t0, 1.0)


# ---------------------------------------------------------------------------
# Reporters
# ---------------------------------------------------------------------------
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


def _workers_summary(workers: Mapping[int, str]) -> str:
    """``"3 moving, 1 idle"``: how many workers are in each state."""
    return ", ".join(f"{n} {state}" for state, n in Counter(workers.values()).items())


def _state(snapshot: ProgressSnapshot) -> str:
    if not snapshot.finished:
        return "running"
    if snapshot.cancelled:
        return "cancelled"
    return "complete" if snapshot.complete else "incomplete"


class TqdmReporter(Reporter):
    """One tqdm bar of instances, with throughput, requests and workers as its postfix.

    Its total follows :attr:`ProgressSnapshot.total`; at the end its description says
    complete, incomplete or cancelled, and it turns green or red.

    Parameters
    ----------
    stats : MoveStats
        The counters to draw.
    desc : str
        The bar's label.
    interval : float
        Seconds between two redraws.
    file : file-like or None
        Where to draw; ``None`` for :data:`sys.stderr`.
    """

    def __init__(
        self,
        stats: MoveStats,
        *,
        desc: str = "C-MOVE",
        interval: float = 0.2,
        file: IO[str] | None = None,
    ) -> None:
        super().__init__(stats, interval=interval)
        self.desc = desc
        self.file = file
        self._bar: Any = None

    def _open(self) -> None:
        from tqdm.std import tqdm

        self._bar = tqdm(
            total=None,
            desc=self.desc,
            unit="inst",
            file=self.file if self.file is not None else sys.stderr,
            dynamic_ncols=True,
            leave=True,
            mininterval=0,  # the reporter paces the redraws
            miniters=1,
        )

    @staticmethod
    def postfix(snapshot: ProgressSnapshot) -> str:
        """Return the bar's postfix: ``"12.3 MB/s, req 3/10, 2 failed, w: 3 moving, 1 idle"``."""
        parts = [
            f"{snapshot.mb_per_s:.1f} MB/s",
            f"req {snapshot.requests_done}/{snapshot.requests_total}",
        ]
        if snapshot.failed:
            parts.append(f"{snapshot.failed} failed")
        if snapshot.missing:
            parts.append(f"{snapshot.missing} missing")
        if snapshot.workers and not snapshot.finished:
            parts.append(f"w: {_workers_summary(snapshot.workers)}")
        return ", ".join(parts)

    def render(self, snapshot: ProgressSnapshot) -> None:
        """Redraw the bar for ``snapshot``."""
        bar = self._bar
        if bar is None:
            return
        total = snapshot.total
        if snapshot.finished:
            if snapshot.complete and total is None:
                total = snapshot.instances
            state = _state(snapshot)
            bar.colour = "green" if state == "complete" else "red"
            bar.set_description_str(f"{self.desc} ({state})", refresh=False)
        bar.total = total
        bar.set_postfix_str(self.postfix(snapshot), refresh=False)
        delta = snapshot.instances - bar.n
        if delta > 0:
            bar.update(delta)  # redraws, and feeds tqdm's own rate and ETA
        else:
            bar.refresh()

    def _close(self, snapshot: ProgressSnapshot) -> None:
        if self._bar is not None:
            self._bar.close()


def _size(nbytes: int) -> str:
    if nbytes >= 10**9:
        return f"{nbytes / 1e9:.2f} GB"
    return f"{nbytes / 1e6:.1f} MB"


def _duration(seconds: float) -> str:
    s = int(seconds)
    if s >= 3600:
        return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
    return f"{s // 60}:{s % 60:02d}"


@dataclass(frozen=True)
class _Panel:
    """What the widget panel shows, as plain data (drawn as widgets and as text)."""

    title: str
    state: str
    value: int
    maximum: int
    style: str
    count: str
    line: str
    active: tuple[str, ...]
    more: int
    workers: str

    @classmethod
    def of(cls, snapshot: ProgressSnapshot, desc: str, rows: int) -> _Panel:
        state = _state(snapshot)
        total = snapshot.total
        maximum = max(total or 0, snapshot.instances, 1)
        value = snapshot.instances
        if state == "complete":
            value = maximum
        shown = "?" if total is None else f"{total:,}"
        requests = f"requests {snapshot.requests_done}/{snapshot.requests_total} done"
        if snapshot.requests_failed:
            requests += f" ({snapshot.requests_failed} failed)"
        line = " \u00b7 ".join(
            [
                f"{snapshot.mb_per_s:.1f} MB/s",
                f"received {snapshot.instances:,} ({_size(snapshot.nbytes)})",
                f"failed {snapshot.failed:,}",
                f"missing {snapshot.missing:,}",
                requests,
                f"{_duration(snapshot.elapsed)} elapsed",
            ]
        )
        groups: dict[str, list[int]] = {}
        for number, what in snapshot.workers.items():
            groups.setdefault(what, []).append(number)
        workers = " \u00b7 ".join(
            f"{len(numbers)} {what} ({' '.join(f'#{n}' for n in numbers)})"
            for what, numbers in groups.items()
        )
        return cls(
            title=desc,
            state=state,
            value=value,
            maximum=maximum,
            style={"running": "info", "complete": "success"}.get(state, "danger"),
            count=f"{snapshot.instances:,} / {shown} instances",
            line=line,
            active=snapshot.active[:rows],
            more=max(len(snapshot.active) - rows, 0),
            workers=f"workers: {workers}" if workers else "",
        )


class WidgetReporter(Reporter):
    """An ipywidgets panel for Jupyter: bar, counts, active requests, workers, Cancel.

    The panel (:attr:`panel`, a ``VBox``) is built at once and displayed by :meth:`start`.
    Its bar is blue (``"info"``) while the move runs, green (``"success"``) when it ends
    complete, red (``"danger"``) when it ends incomplete or cancelled. The Cancel button
    calls ``on_cancel`` once; it is hidden when ``on_cancel`` is None, and disabled once
    clicked or when the move ends.

    Parameters
    ----------
    stats : MoveStats
        The counters to draw.
    desc : str
        The panel's title.
    on_cancel : callable or None
        Called (with no argument) when Cancel is clicked.
    interval : float
        Seconds between two redraws.
    rows : int
        Active requests listed at most; the others are counted as "+k more".

    Raises
    ------
    InputError
        ipywidgets is not installed.
    """

    def __init__(
        self,
        stats: MoveStats,
        *,
        desc: str = "C-MOVE",
        on_cancel: Callable[[], None] | None = None,
        interval: float = 0.2,
        rows: int = 8,
    ) -> None:
        super().__init__(stats, interval=interval)
        try:
            import ipywidgets as w
        except ImportError as exc:
            raise InputError(
                "progress='widget' needs ipywidgets: pip install ipywidgets "
                "(or use progress='tqdm')"
            ) from exc
        self.desc = desc
        self.on_cancel = on_cancel
        self.rows = rows
        self._lock = threading.Lock()
        self._cancel_clicked = False
        self._finished = False
        self._panel = _Panel.of(stats.snapshot(), desc, rows)
        self._title = w.HTML()
        self._bar = w.IntProgress(
            value=0, min=0, max=1, bar_style="info", layout=w.Layout(width="50%")
        )
        self._count = w.Label()
        self._line = w.HTML()
        self._table = w.HTML()
        self._workers = w.HTML()
        self.cancel_button = w.Button(
            description="Cancel",
            icon="stop",
            tooltip="Ask the PACS to stop sending (C-CANCEL)",
            disabled=on_cancel is None,
            layout=w.Layout(display="none" if on_cancel is None else None, width="auto"),
        )
        self.cancel_button.on_click(self._clicked)
        self.panel = w.VBox(
            [
                self._title,
                w.HBox([self._bar, self._count]),
                self._line,
                self._table,
                self._workers,
                self.cancel_button,
            ]
        )
        self._apply(self._panel)

    def _open(self) -> None:
        from IPython.display import display

        display(self.panel)  # type: ignore[no-untyped-call]

    def render(self, snapshot: ProgressSnapshot) -> None:
        """Redraw the panel for ``snapshot``."""
        self._apply(_Panel.of(snapshot, self.desc, self.rows))

    def _apply(self, panel: _Panel) -> None:
        colour = {"running": "#1f77b4", "complete": "#2ca02c"}.get(panel.state, "#d62728")
        rows = "".join(
            f"<tr><td style='padding:0 8px'>{html.escape(label)}</td></tr>"
            for label in panel.active
        )
        if panel.more:
            rows += f"<tr><td style='padding:0 8px'><i>+{panel.more} more</i></td></tr>"
        table = (
            "<table style='font-family:monospace;font-size:90%'>"
            f"<tr><th style='text-align:left;padding:0 8px'>active requests</th></tr>{rows}</table>"
            if rows
            else ""
        )
        with self._lock:
            self._panel = panel
            self._finished = panel.state != "running"
            self._title.value = (
                f"<b>{html.escape(panel.title)}</b> "
                f"<span style='color:{colour}'>{panel.state}</span>"
            )
            with self._bar.hold_sync():
                self._bar.max = panel.maximum  # first: a lower max clamps the old value
                self._bar.value = panel.value
                self._bar.bar_style = panel.style
            self._count.value = panel.count
            self._line.value = html.escape(panel.line)
            self._table.value = table
            self._workers.value = html.escape(panel.workers)
            if self._finished:
                self.cancel_button.disabled = True

    def _clicked(self, _button: object) -> None:
        with self._lock:
            if self._cancel_clicked or self._finished or self.on_cancel is None:
                return
            self._cancel_clicked = True
            self.cancel_button.disabled = True
            self.cancel_button.description = "Cancelling\u2026"
            on_cancel = self.on_cancel
        try:
            on_cancel()
        except Exception:
            logger.warning("the Cancel button's callback failed", exc_info=True)

    def text(self) -> str:
        """Return the panel as it stands, as plain text (for tests and documentation)."""
        with self._lock:
            p = self._panel
            value, maximum = self._bar.value, self._bar.max
            button = self.cancel_button
            has_button = self.on_cancel is not None
            button_text = f"[ {button.description} ]" + (" (disabled)" if button.disabled else "")
        width = 30
        filled = round(width * value / maximum) if maximum else 0
        lines = [
            f"{p.title}: {p.state}",
            f"[{'#' * filled}{'.' * (width - filled)}] {p.count}  ({p.style})",
            p.line,
        ]
        if p.active:
            lines.append("active requests:")
            lines.extend(f"  {label}" for label in p.active)
            if p.more:
                lines.append(f"  +{p.more} more")
        if p.workers:
            lines.append(p.workers)
        if has_button:
            lines.append(button_text)
        return "\n".join(lines)


def _in_jupyter_kernel() -> bool:
    """Whether we run in a Jupyter kernel that can show widgets (tqdm.autonotebook's rule)."""
    if "ipykernel.zmqshell" in sys.modules:
        if any(k == "QT_API" or k.startswith("SPYDER") for k in os.environ):
            return False  # jupyter-qtconsole, spyder
        ipython = sys.modules.get("IPython")
        shell = ipython.get_ipython() if ipython is not None else None
        name = type(shell).__name__.lower()
        return shell is not None and "qt" not in name and "spyder" not in name
    return "IPython.utils._process_emscripten" in sys.modules  # jupyterlite


def make_reporter(
    mode: ProgressMode | Callable[[ProgressSnapshot], object],
    stats: MoveStats,
    *,
    desc: str = "C-MOVE",
    on_cancel: Callable[[], None] | None = None,
    interval: float = 0.2,
    file: IO[str] | None = None,
) -> Reporter:
    """Return the reporter that draws ``stats`` as ``mode`` asks; call its ``start()``.

    Parameters
    ----------
    mode : bool, None, {"auto", "tqdm", "widget"} or callable
        ``"auto"`` or ``True``: the widget panel in a Jupyter kernel with ipywidgets, else
        the tqdm bar; ``"tqdm"``: a tqdm bar on stderr; ``"widget"``: the ipywidgets panel;
        ``False`` or ``None``: nothing (no thread); a callable: called with each
        :class:`ProgressSnapshot` from the reporter thread, and once at the end with
        ``finished=True``.
    stats : MoveStats
        The counters the engine updates.
    desc : str
        Label of the bar or title of the panel.
    on_cancel : callable or None
        What the widget's Cancel button calls; no button when None.
    interval : float
        Seconds between two redraws.
    file : file-like or None
        Where the tqdm bar draws; ``None`` for :data:`sys.stderr`.

    Returns
    -------
    Reporter

    Raises
    ------
    InputError
        An unknown ``mode``, a non-positive ``interval``, or ``"widget"`` without ipywidgets.
    """
    if mode is False or mode is None:
        return NullReporter(stats)
    if mode is True or (isinstance(mode, str) and mode == "auto"):
        if _in_jupyter_kernel():
            try:
                return WidgetReporter(stats, desc=desc, on_cancel=on_cancel, interval=interval)
            except InputError:
                logger.info("ipywidgets is not installed: showing progress with tqdm")
        return TqdmReporter(stats, desc=desc, interval=interval, file=file)
    if isinstance(mode, str) and mode == "tqdm":
        return TqdmReporter(stats, desc=desc, interval=interval, file=file)
    if isinstance(mode, str) and mode == "widget":
        return WidgetReporter(stats, desc=desc, on_cancel=on_cancel, interval=interval)
    if callable(mode):
        return CallbackReporter(stats, mode, interval=interval)
    raise InputError(f"progress={mode!r}: use {_MODES}")
