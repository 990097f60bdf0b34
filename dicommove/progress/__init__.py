"""Progress of a move: thread-safe counters, and reporters that draw them from their own thread.

The engine counts into a :class:`MoveStats` from its event loop: a few integer updates,
never a UI call. A :class:`Reporter` made by :func:`make_reporter` polls
:meth:`MoveStats.snapshot` from a thread of its own (every 0.2 s by default) and draws it: a
tqdm bar on stderr, an ipywidgets panel in Jupyter, or a callable of yours. Nothing a
reporter does can block the receiving of an instance.

The package is split as ``tqdm.auto`` is, and everything is re-exported here:

- :mod:`~dicommove.progress.stats`: :class:`MoveStats` and :class:`ProgressSnapshot`;
- :mod:`~dicommove.progress.base`: :class:`Reporter`, :class:`NullReporter`,
  :class:`CallbackReporter`;
- :mod:`~dicommove.progress.terminal`: :class:`TqdmReporter`;
- :mod:`~dicommove.progress.widget`: :class:`WidgetReporter`, drawing a
  :class:`~dicommove.progress.panel.Panel` (also static HTML and text);
- this module: :data:`ProgressMode` and :func:`make_reporter`, which picks a reporter
  (the widget panel in a Jupyter kernel, else the tqdm bar, for ``"auto"``).

This package imports neither tqdm nor ipywidgets (nor IPython, nor pandas) until a
reporter needs them.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import IO, Literal

from ..errors import InputError
from .base import CallbackReporter, NullReporter, Reporter, _shell
from .base import _state as _state
from .stats import THROUGHPUT_WINDOW as THROUGHPUT_WINDOW
from .stats import MoveStats, ProgressSnapshot
from .terminal import TqdmReporter
from .terminal import _workers_summary as _workers_summary
from .widget import WidgetReporter

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

_MODES = "'auto' or True, 'tqdm', 'widget', False or None, or a callable taking a ProgressSnapshot"


def _in_jupyter_kernel() -> bool:
    """Whether we run in a Jupyter kernel that can show widgets (tqdm.autonotebook's rule)."""
    if "ipykernel.zmqshell" in sys.modules:
        if any(k == "QT_API" or k.startswith("SPYDER") for k in os.environ):
            return False  # jupyter-qtconsole, spyder
        shell = _shell()
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
