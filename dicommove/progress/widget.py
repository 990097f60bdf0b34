"""The notebook panel: :class:`WidgetReporter`, an ipywidgets panel with a Cancel button.

The engine's threads update a :class:`~dicommove.progress.stats.MoveStats`; this
reporter's own thread (see :class:`~dicommove.progress.base.Reporter`) turns each
snapshot into a :class:`_Panel` (plain data, also drawn as text by
:meth:`WidgetReporter.text`) and applies it to the widgets. ipywidgets is imported when
a :class:`WidgetReporter` is made and IPython when it is displayed, so importing this
module imports neither.
"""

from __future__ import annotations

import html
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import InputError
from .base import Reporter, _state
from .stats import MoveStats, ProgressSnapshot

__all__ = ["WidgetReporter"]

logger = logging.getLogger("dicommove")


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
