"""Progress display: a tqdm bar in a terminal, a widget in Jupyter, or nothing.

The engine talks to a :class:`Progress`; only :func:`make_progress` knows about
tqdm, and tqdm picks the notebook widget itself (``tqdm.auto``), so the core
never imports ipywidgets.
"""

from __future__ import annotations

import threading
from typing import Any, Literal, Protocol

__all__ = ["NullProgress", "Progress", "ProgressMode", "TqdmProgress", "make_progress"]

ProgressMode = bool | None | Literal["auto", "tqdm", "widget"]


class Progress(Protocol):
    """What the engine reports progress to."""

    def set_total(self, total: int) -> None:
        """Set the number of instances expected so far (it may grow)."""

    def advance(self, instances: int, nbytes: int) -> None:
        """Count instances that arrived (from any thread)."""

    def close(self, *, complete: bool) -> None:
        """Finish; ``complete=False`` marks the run as short of its total."""


class NullProgress:
    """Shows nothing."""

    def set_total(self, total: int) -> None:
        """Do nothing."""

    def advance(self, instances: int, nbytes: int) -> None:
        """Do nothing."""

    def close(self, *, complete: bool) -> None:
        """Do nothing."""


class TqdmProgress:
    """A tqdm bar counting instances, with the received volume as a postfix."""

    def __init__(self, bar: Any) -> None:
        self._bar = bar
        self._lock = threading.Lock()
        self._bytes = 0

    def set_total(self, total: int) -> None:
        """Set the expected number of instances."""
        with self._lock:
            if total != self._bar.total:
                self._bar.total = total
                self._bar.refresh()

    def advance(self, instances: int, nbytes: int) -> None:
        """Advance by ``instances`` and add ``nbytes`` to the volume shown."""
        with self._lock:
            self._bytes += nbytes
            self._bar.set_postfix_str(f"{self._bytes / 1e6:.1f} MB", refresh=False)
            if self._bar.total is not None and self._bar.n + instances > self._bar.total:
                # an instance can arrive before the pending response that counts it
                self._bar.total = self._bar.n + instances
            self._bar.update(instances)

    def close(self, *, complete: bool) -> None:
        """Close the bar; an incomplete notebook bar turns red (tqdm's own style)."""
        with self._lock:
            if not complete and hasattr(self._bar, "colour"):
                self._bar.colour = "red"
            self._bar.close()


def make_progress(mode: ProgressMode, *, desc: str = "C-MOVE") -> Progress:
    """Return a progress display for ``mode``.

    Parameters
    ----------
    mode : bool, None or {"auto", "tqdm", "widget"}
        ``"auto"`` or ``True``: a notebook widget in Jupyter, else a terminal bar;
        ``"tqdm"``: always the terminal bar; ``"widget"``: always the notebook
        widget (needs ipywidgets); ``False`` or ``None``: nothing.
    desc : str
        The bar's label.

    Returns
    -------
    Progress
    """
    if mode is False or mode is None:
        return NullProgress()
    if mode is True or mode == "auto":
        from tqdm.auto import tqdm
    elif mode == "tqdm":
        from tqdm.std import tqdm
    elif mode == "widget":
        from tqdm.notebook import tqdm
    else:
        raise ValueError(f"unknown progress mode {mode!r}: use 'auto', 'tqdm', 'widget' or False")
    return TqdmProgress(tqdm(total=0, desc=desc, unit="inst", dynamic_ncols=True, leave=True))
