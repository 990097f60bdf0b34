"""The terminal bar: :class:`TqdmReporter`, one tqdm bar of instances on stderr.

The engine's threads update a :class:`~dicommove.progress.stats.MoveStats`; this
reporter's own thread (see :class:`~dicommove.progress.base.Reporter`) redraws the bar
from its snapshots. tqdm is imported only when the bar opens (at ``start()``), so
importing this module does not import it.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Mapping
from typing import IO, Any

from .base import Reporter, _state
from .stats import MoveStats, ProgressSnapshot

__all__ = ["TqdmReporter"]


def _workers_summary(workers: Mapping[int, str]) -> str:
    """``"3 moving, 1 idle"``: how many workers are in each state."""
    return ", ".join(f"{n} {state}" for state, n in Counter(workers.values()).items())


class TqdmReporter(Reporter):
    """One tqdm bar of instances, with throughput, requests and workers as its postfix.

    Its total follows :attr:`ProgressSnapshot.expected` (the instances announced, plus an
    estimate for the requests not started yet), so tqdm's ETA covers the whole move. At
    the end its description says complete, incomplete or cancelled, and it turns green or
    red.

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
        for status, n in snapshot.request_problems.items():
            if status not in ("failed", "missing") and n:
                parts.append(f"{n} req {status.replace('_', ' ')}")
        if snapshot.workers and not snapshot.finished:
            parts.append(f"w: {_workers_summary(snapshot.workers)}")
        return ", ".join(parts)

    def render(self, snapshot: ProgressSnapshot) -> None:
        """Redraw the bar for ``snapshot``."""
        bar = self._bar
        if bar is None:
            return
        # an estimate while requests wait: tqdm's ETA follows it
        total = snapshot.expected if snapshot.expected is not None else snapshot.total
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
