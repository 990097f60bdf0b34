"""Widget clicks while a cell waits: the panel's Cancel button beside a busy kernel.

A Jupyter kernel handles a widget's click between cells, so while a cell waits in
``job.result()`` or a blocking ``move()``, a click on the panel's Cancel button would wait
too. Two ways around it, tried in this order:

1. **A kernel subshell** (ipykernel 7+, JEP 91): :func:`route_to_subshell` sends the
   button's messages to a subshell of dicommove's own, a thread of the kernel that
   handles them beside the busy cell. (ipykernel 7.4 sends a comm's messages to the
   subshell that last published on it, the main shell for a widget made in a cell, even
   when JupyterLab sends them to a subshell; dicommove names its own instead.)
2. **jupyter-ui-poll** (ipykernel 6): :func:`widget_events` lets the waiting call handle
   pending widget messages itself, when the package is installed.

Both use kernel internals, guarded: if neither works the panel says how to cancel.
Standard library only at import.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

from .base import Reporter, _shell
from .widget import WidgetReporter

__all__ = ["can_cancel_while_waiting", "route_to_subshell", "widget_events"]

logger = logging.getLogger("dicommove")

#: Shown on the panel while a cell waits and widget events cannot be handled.
NO_POLL_NOTE = (
    "This cell is waiting, so the kernel cannot handle the Cancel button now: interrupt "
    "the kernel (\u25a0) to stop waiting, then click Cancel. (ipykernel 7, or "
    "jupyter-ui-poll with ipykernel 6, lets the click through while a cell waits.)"
)


def _in_kernel_main_thread() -> bool:
    from . import _in_jupyter_kernel

    return threading.current_thread() is threading.main_thread() and _in_jupyter_kernel()


def _kernel() -> Any:
    """Return the running ipykernel's Kernel object, or None."""
    return getattr(_shell(), "kernel", None)


def _subshell_manager() -> Any:
    """Return the kernel's subshell manager if it has subshells (ipykernel 7+), else None."""
    kernel = _kernel()
    if kernel is None or not getattr(kernel, "_supports_kernel_subshells", False):
        return None
    thread = getattr(kernel, "shell_channel_thread", None)
    return getattr(thread, "manager", None)


_subshell: list[str] = []  # dicommove's subshell in this kernel, made once


def _own_subshell(manager: Any) -> str:
    """Return dicommove's subshell, creating it (in the shell channel thread) once."""
    if _subshell and _subshell[0] in manager.list_subshell():
        return _subshell[0]
    made: list[str] = []
    done = threading.Event()

    def create() -> None:  # runs in the shell channel thread, as ipykernel requires
        try:
            made.append(manager._create_subshell())
        finally:
            done.set()

    manager._shell_channel_io_loop.add_callback(create)
    if not done.wait(_SUBSHELL_TIMEOUT) or not made:
        raise RuntimeError("the kernel did not create a subshell")
    _subshell[:] = made
    return made[0]


#: Seconds to wait for the kernel to create dicommove's subshell.
_SUBSHELL_TIMEOUT = 5.0


def route_to_subshell(widget: Any) -> bool:
    """Have the kernel handle ``widget``'s messages on dicommove's subshell.

    Returns whether it could (ipykernel 7+ with subshells, a widget with an open comm);
    then a click is handled even while a cell runs.
    """
    comm = getattr(widget, "comm", None)
    if comm is None or not hasattr(comm, "_reply_subshell_for"):
        return False
    manager = _subshell_manager()
    if manager is None:
        return False
    try:
        subshell = _own_subshell(manager)
    except Exception:  # another ipykernel: the other ways, or the note
        logger.debug("could not route the Cancel button to a subshell", exc_info=True)
        return False

    def route(_data: object, _default: str | None) -> str:
        return subshell  # always: ipykernel would follow the last message's subshell

    comm._reply_subshell_for = route
    return True


def _can_poll() -> bool:
    """Whether jupyter-ui-poll can run here: installed, and a kernel it knows (ipykernel 6)."""
    try:
        import jupyter_ui_poll  # noqa: F401
    except ImportError:
        return False
    return hasattr(_kernel(), "do_one_iteration")


def can_cancel_while_waiting() -> bool:
    """Whether a Cancel click can be handled while this thread, a cell, waits."""
    if not _in_kernel_main_thread():
        return False
    return _subshell_manager() is not None or _can_poll()


@contextlib.contextmanager
def widget_events(reporter: Reporter | None) -> Iterator[Callable[[], None] | None]:
    """Yield a function that handles pending widget events, or ``None``.

    Call the function now and then while the cell waits (``wait(..., between=poll)``).
    It is ``None`` when nothing needs polling: ``reporter`` is not a panel with a Cancel
    button, this is not a kernel's cell, or the button is served by a subshell. When the
    click cannot be handled at all while the cell waits, the panel says how to cancel.
    """
    if (
        not isinstance(reporter, WidgetReporter)
        or reporter.on_cancel is None
        or not _in_kernel_main_thread()
        or reporter.routed
    ):
        yield None
        return
    if not _can_poll():
        reporter.note(NO_POLL_NOTE)
        try:
            yield None
        finally:
            reporter.note("")
        return
    from jupyter_ui_poll import ui_events

    with ui_events() as poll:

        def handle() -> None:
            try:
                poll(10)
            except Exception:  # a kernel jupyter-ui-poll does not know: wait without it
                logger.debug("jupyter-ui-poll could not handle widget events", exc_info=True)

        yield handle
