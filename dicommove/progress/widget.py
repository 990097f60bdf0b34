"""The notebook panel: :class:`WidgetReporter`, an ipywidgets panel with a Cancel button.

The engine's threads update a :class:`~dicommove.progress.stats.MoveStats`; this
reporter's own thread (see :class:`~dicommove.progress.base.Reporter`) turns each
snapshot into a :class:`~dicommove.progress.panel.Panel` (plain data, also drawn as text by
:meth:`WidgetReporter.text`) and applies it to the widgets. When the move ends, the live
widgets are replaced by the same panel as static HTML, which a saved notebook keeps.
ipywidgets is imported when a :class:`WidgetReporter` is made and IPython when it is
displayed, so importing this module imports neither.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from ..errors import InputError
from .base import Reporter, _shell
from .panel import Panel, StaticPanel
from .stats import MoveStats, ProgressSnapshot

__all__ = ["WidgetReporter"]

logger = logging.getLogger("dicommove")


class WidgetReporter(Reporter):
    """An ipywidgets panel for Jupyter: bar, counts, active requests, workers, Cancel.

    The panel (:attr:`panel`, a ``VBox`` with the CSS class ``dicommove-panel``) is built
    at once and displayed by :meth:`start`. Its bar counts instances out of those expected
    (estimated from the requests started so far while others wait) and is blue
    (``"info"``) while the move runs, orange (``"warning"``) while it is being cancelled,
    green (``"success"``) when it ends complete, red (``"danger"``) when it ends
    incomplete or cancelled. The Cancel button calls ``on_cancel`` once; it is hidden
    when ``on_cancel`` is None, and disabled once clicked or when the move ends.

    When the move ends, the widgets are closed and the display shows the final panel as
    static HTML (``<div class="dicommove-summary" data-state="...">``), with what fell
    short and the ``resume=True`` hint: a notebook saved and reopened later shows it
    without a kernel.

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
        self._handle: Any = None  # IPython's DisplayHandle of the panel
        self._panel = Panel.of(stats.snapshot(), desc, rows)
        self._title = w.HTML()
        self._bar = w.IntProgress(
            value=0, min=0, max=1, bar_style="info", layout=w.Layout(width="50%")
        )
        self._count = w.Label()
        self._count.add_class("dicommove-count")
        self._line = w.HTML()
        self._note = w.HTML()
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
                self._note,
                self.cancel_button,
            ]
        )
        self.panel.add_class("dicommove-panel")
        #: Whether a subshell of the kernel handles the Cancel button (even while a cell runs).
        self.routed = False
        if on_cancel is not None:
            from .events import route_to_subshell

            self.routed = route_to_subshell(self.cancel_button)
        self._apply(self._panel)

    def _open(self) -> None:
        if not _shell_running():  # IPython's display would print: a library does not
            logger.info("progress='widget' outside IPython: the panel is not displayed")
            return
        from IPython.display import display

        self._handle = display(self.panel, display_id=True)  # type: ignore[no-untyped-call]

    def render(self, snapshot: ProgressSnapshot) -> None:
        """Redraw the panel for ``snapshot``."""
        self._apply(Panel.of(snapshot, self.desc, self.rows, cancelling=self._cancel_clicked))

    def note(self, text: str) -> None:
        """Show ``text`` (or nothing, for ``""``) under the panel, until the move ends."""
        import html

        with self._lock:
            if not self._finished:
                self._note.value = f"<i>{html.escape(text)}</i>" if text else ""

    def _apply(self, panel: Panel) -> None:
        import html

        with self._lock:
            self._panel = panel
            self._finished = panel.state not in ("running", "cancelling")
            self._title.value = panel.title_html()
            with self._bar.hold_sync():
                self._bar.max = panel.maximum  # first: a lower max clamps the old value
                self._bar.value = panel.value
                self._bar.bar_style = panel.style
            self._count.value = panel.count
            self._line.value = html.escape(panel.line)
            self._table.value = panel.active_table()
            self._workers.value = html.escape(panel.workers)
            if self._finished:
                self._note.value = f"<i>{html.escape(panel.hint)}</i>" if panel.hint else ""
                self.cancel_button.disabled = True
                if self._cancel_clicked:
                    self.cancel_button.description = "Cancelled"

    def _close(self, snapshot: ProgressSnapshot) -> None:
        """Replace the live widgets by the final panel as static HTML, and close them."""
        handle = self._handle
        if handle is None:
            return
        with self._lock:
            final = StaticPanel(self._panel)
        handle.update(final)
        _close_all(self.panel)

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
            panel = self._panel
            button = self.cancel_button
            button_text = ""
            if self.on_cancel is not None:
                button_text = f"[ {button.description} ]" + (
                    " (disabled)" if button.disabled else ""
                )
        return panel.text(button=button_text)


def _close_all(widget: Any) -> None:
    """Close a widget, its children, its layout and its style (their models go away)."""
    for child in getattr(widget, "children", ()):
        _close_all(child)
    for part in (getattr(widget, "layout", None), getattr(widget, "style", None)):
        if part is not None:
            part.close()
    widget.close()


def _shell_running() -> bool:
    """Whether an IPython shell runs in this process (a kernel, or the terminal IPython)."""
    return _shell() is not None
