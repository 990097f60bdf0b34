"""Widget clicks while a cell waits: :func:`widget_events`, with jupyter-ui-poll when installed.

A Jupyter kernel handles a widget's click only between cells (unless the front end sends
comms to a subshell, JupyterLab 4.4+ with ipykernel 7). So while a cell waits in
``job.result()`` or a blocking ``move()``, the panel's Cancel button would be dropped.
The `jupyter-ui-poll <https://pypi.org/project/jupyter-ui-poll/>`_ package lets the
waiting cell handle pending widget messages itself; :func:`widget_events` uses it when it
is installed (``pip install 'dicommove[notebook]'``) and else says on the panel how to
cancel. Standard library only at import.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator

from .base import Reporter
from .widget import WidgetReporter

__all__ = ["can_poll", "widget_events"]

logger = logging.getLogger("dicommove")

#: Shown on the panel while a cell waits and widget events cannot be handled.
NO_POLL_NOTE = (
    "This cell is waiting, so the kernel cannot handle the Cancel button now: interrupt "
    "the kernel (\u25a0) to stop waiting, then click Cancel. (pip install jupyter-ui-poll "
    "lets the click through while a cell waits.)"
)


def _in_kernel_main_thread() -> bool:
    from . import _in_jupyter_kernel

    return threading.current_thread() is threading.main_thread() and _in_jupyter_kernel()


def can_poll() -> bool:
    """Whether this thread is a Jupyter kernel's cell and jupyter-ui-poll is installed."""
    if not _in_kernel_main_thread():
        return False
    try:
        import jupyter_ui_poll  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def widget_events(reporter: Reporter | None) -> Iterator[Callable[[], None] | None]:
    """Yield a function that handles pending widget events, or ``None``.

    Call the function now and then while the cell waits (``wait(..., between=poll)``).
    It is ``None`` when ``reporter`` is not a panel with a Cancel button, outside a
    kernel's cell, or without jupyter-ui-poll (then the panel says how to cancel).
    """
    if (
        not isinstance(reporter, WidgetReporter)
        or reporter.on_cancel is None
        or not _in_kernel_main_thread()
    ):
        yield None
        return
    try:
        from jupyter_ui_poll import ui_events
    except ImportError:
        reporter.note(NO_POLL_NOTE)
        try:
            yield None
        finally:
            reporter.note("")
        return
    with ui_events() as poll:

        def handle() -> None:
            try:
                poll(10)
            except Exception:  # a kernel jupyter-ui-poll does not know: wait without it
                logger.debug("jupyter-ui-poll could not handle widget events", exc_info=True)

        yield handle
