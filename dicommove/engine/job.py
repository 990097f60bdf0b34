"""A move running in the background: :class:`MoveJob`, like a concurrent future."""

from __future__ import annotations

import concurrent.futures
from typing import TYPE_CHECKING, Any, Literal

from .._loop import wait
from ..errors import DicomMoveError
from ..progress import ProgressSnapshot
from .run import MoveResult
from .session import conclude

if TYPE_CHECKING:
    import pandas as pd

    from ..progress import Reporter
    from .sync import Session

__all__ = ["MoveJob"]


class MoveJob:
    """A move running in the background, from :meth:`Session.start` or :func:`dicommove.start`.

    Like a :class:`concurrent.futures.Future`: :meth:`result` waits for the manifest
    (or raises what the move raised), :meth:`cancel` stops it the way Ctrl-C would,
    :attr:`progress` the counts so far (cheap), and :attr:`manifest` the rows so far
    while it runs.

    Examples
    --------
    >>> job = dicommove.start("PACS@10.0.0.5:104", cohort, out="data")  # doctest: +SKIP
    >>> job.manifest["status"].value_counts()  # doctest: +SKIP
    >>> job.cancel()  # doctest: +SKIP
    >>> df = job.result()  # doctest: +SKIP
    """

    def __init__(
        self,
        session: Session,
        future: concurrent.futures.Future[MoveResult],
        *,
        errors: Literal["raise", "ignore"],
        reporter: Reporter | None = None,
    ) -> None:
        self.session = session
        self._future = future
        self._reporter = reporter  # the progress display (a notebook panel with Cancel)
        self._errors = errors
        self._concluded: tuple[pd.DataFrame | None, BaseException | None] | None = None

    def cancel(self) -> None:
        """Cancel the move: C-CANCEL, grace period, release; :meth:`result` then raises."""
        self.session.cancel()

    def done(self) -> bool:
        """Whether the move has ended (completed, failed or cancelled)."""
        return self._future.done()

    def _conclude(self, timeout: float | None) -> tuple[pd.DataFrame | None, BaseException | None]:
        if self._concluded is None:
            from ..progress.events import widget_events

            try:
                # in a notebook cell, the panel's Cancel button is handled while we wait
                with widget_events(self._reporter) as poll:
                    result = wait(self._future, timeout, between=poll)
            except TimeoutError:
                raise TimeoutError(f"the move is still running after {timeout:g} s") from None
            except BaseException as exc:  # a failure before the move ran (busy, closed...)
                self._concluded = (None, exc)
                return self._concluded
            rows, error = conclude(result, errors=self._errors, pacs=self.session.pacs)
            if error is not None:
                self._concluded = (None, error)
            else:
                from ..manifest import build

                self._concluded = (build(rows), None)
        return self._concluded

    def result(self, timeout: float | None = None) -> pd.DataFrame:
        """Wait for the move and return its manifest.

        Raises
        ------
        TimeoutError
            If it is still running after ``timeout`` seconds.
        DicomMoveError
            Whatever the move raised (:class:`MoveCancelled` after :meth:`cancel`),
            with its ``.manifest``.
        """
        df, error = self._conclude(timeout)
        if error is not None:
            raise error
        assert df is not None
        return df

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """Wait for the move; return what it raised, or ``None``."""
        return self._conclude(timeout)[1]

    @property
    def progress(self) -> ProgressSnapshot:
        """The counts so far, cheaply (no DataFrame): ``job.progress.instances``, ..."""
        if self._reporter is None:
            return ProgressSnapshot()
        return self._reporter.stats.snapshot()

    @property
    def manifest(self) -> pd.DataFrame:
        """The manifest so far: the result once done, else a live view (``pending`` rows)."""
        if self.done():
            df, error = self._conclude(None)
            if df is not None:
                return df
            if isinstance(error, DicomMoveError) and error.manifest is not None:
                return error.manifest
        return self.session.manifest()

    def _state(self) -> str:
        if not self.done():
            return "running"
        _df, error = self._conclude(None)
        return "done" if error is None else f"ended with {type(error).__name__}"

    def __repr__(self) -> str:
        counts = ""
        if self._reporter is not None:
            snap = self._reporter.stats.snapshot()
            expected = "?" if snap.expected is None else f"{snap.expected:,}"
            counts = f", {snap.instances:,}/{expected} instances"
        return f"<MoveJob {self._state()}: from {self.session.pacs}{counts}>"

    def _repr_html_(self) -> str:
        from .display import job_html

        return job_html(self, self._state())

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self))
