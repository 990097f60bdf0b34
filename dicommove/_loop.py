"""The event loop behind the synchronous API: one per process, in a daemon thread of its own.

:class:`~dicommove.Session`, :func:`~dicommove.move` and the synchronous
:class:`~dicommove.scp.StoreSCP` run their coroutines here, so that they work
the same in a script and inside Jupyter, whose own loop is already running in the
caller's thread. The asynchronous API (:class:`~dicommove.AsyncSession`) runs on the
caller's loop instead and never touches this one.

The loop is started on first use, and again in a child process after ``fork``. It is
uvloop's when uvloop is installed (the ``fast`` extra): measured about 5-10 % faster on
one association (docs/performance.md); ``DICOMMOVE_LOOP=asyncio`` turns it off.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["LoopThread", "loop_thread"]

T = TypeVar("T")
logger = logging.getLogger("dicommove")

#: How often a waiting caller wakes to let Ctrl-C through (seconds).
_WAKE = 0.2


class LoopThread:
    """An asyncio event loop running forever in a daemon thread."""

    def __init__(self) -> None:
        self.loop = new_event_loop()
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._run, name="dicommove-loop", daemon=True)
        self.thread.start()
        self._ready.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        self.loop.run_forever()

    @property
    def in_loop(self) -> bool:
        """Whether the caller runs in the loop's own thread."""
        return threading.current_thread() is self.thread

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the loop and return a future of its result."""
        if self.in_loop:
            coro.close()
            raise RuntimeError("a synchronous dicommove call was made from its own event loop")
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait for its result (Ctrl-C interrupts the wait)."""
        return wait(self.submit(coro))

    def call(self, fn: Callable[..., T], *args: Any) -> None:
        """Call ``fn(*args)`` soon in the loop's thread (from any thread, without waiting)."""
        self.loop.call_soon_threadsafe(fn, *args)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """Return a new event loop: uvloop's when it is installed (``pip install dicommove[fast]``).

    ``DICOMMOVE_LOOP=asyncio`` forces the standard loop, ``DICOMMOVE_LOOP=uvloop`` asks for
    uvloop (and falls back, with a log line, when it is missing).
    """
    choice = os.environ.get("DICOMMOVE_LOOP", "").strip().lower()
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                logger.warning("DICOMMOVE_LOOP=uvloop, but uvloop is not installed: using asyncio")
        else:
            # Typed here: without uvloop installed, mypy sees its module as Any.
            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
            return loop
    return asyncio.new_event_loop()


def wait(
    future: concurrent.futures.Future[T],
    timeout: float | None = None,
    *,
    between: Callable[[], None] | None = None,
) -> T:
    """Wait for ``future`` in short slices, so that a KeyboardInterrupt is seen at once.

    ``between`` is called after each slice (a notebook's widget events are handled there).

    Raises
    ------
    TimeoutError
        If ``timeout`` seconds pass first (the future keeps running).
    """
    remaining = timeout
    while True:
        slice_ = _WAKE if remaining is None else min(_WAKE, max(remaining, 0.0))
        try:
            return future.result(timeout=slice_)
        except concurrent.futures.TimeoutError:
            if between is not None:
                between()
            if remaining is not None:
                remaining -= slice_
                if remaining <= 0:
                    raise TimeoutError(f"still running after {timeout:g} s") from None


_lock = threading.Lock()
_current: tuple[int, LoopThread] | None = None


def loop_thread() -> LoopThread:
    """Return the process's loop thread, starting it (again, after a fork) if needed."""
    global _current
    with _lock:
        if _current is None or _current[0] != os.getpid():
            _current = (os.getpid(), LoopThread())
        return _current[1]
