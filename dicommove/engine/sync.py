"""The synchronous session: :class:`AsyncSession` run on dicommove's own loop thread.

Every call is submitted to the one event loop of :mod:`dicommove._loop` and waited
for in the caller's thread, so it works the same in a script and in Jupyter (whose
own loop is busy in the caller's thread). Ctrl-C in the waiting thread cancels the
move cleanly (C-CANCEL, grace period, release) and raises
:class:`~dicommove.MoveInterrupted` with the partial manifest; a second Ctrl-C aborts
the associations at once.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from .._loop import LoopThread, loop_thread, wait
from ..errors import MoveInterrupted
from ..node import Node
from ..options import RetryPolicy, StoreOptions, Timeouts
from ..progress import MoveStats, Reporter, make_reporter
from ..progress.events import can_cancel_while_waiting, widget_events
from ..rows import Stop
from .job import MoveJob
from .run import MoveResult
from .session import AsyncSession, Progress, SessionOptions, conclude, remember, verb

if TYPE_CHECKING:
    import pandas as pd
    from typing_extensions import Unpack

    from ..query import Planned

__all__ = ["Session"]

logger = logging.getLogger("dicommove")
T = TypeVar("T")


async def _call(fn: Any, *args: Any) -> Any:
    return fn(*args)


class Session:
    """A connection to one PACS, reused across moves.

    Takes the parameters of :class:`~dicommove.AsyncSession`: ``out``, ``ae_title``,
    ``port``, ``move_destination``, ``model``, ``layout``, ``workers``, ``split``,
    ``timeouts`` (:class:`~dicommove.Timeouts`), ``retry``
    (:class:`~dicommove.RetryPolicy`) and ``store`` (:class:`~dicommove.StoreOptions`).

    Parameters
    ----------
    pacs : str or Node
        The PACS as ``AE@host:port``.
    **options
        See :class:`~dicommove.AsyncSession`.

    Examples
    --------
    >>> with Session("ORTHANC@127.0.0.1:4242", out="data") as s:  # doctest: +SKIP
    ...     s.echo()
    ...     df = s.move(["1.2.3", "1.2.4"])
    """

    def __init__(self, pacs: str | Node, **options: Unpack[SessionOptions]) -> None:
        self._async = AsyncSession(pacs, **options)

    # -- what it is ----------------------------------------------------------------------
    @property
    def pacs(self) -> Node:
        """The PACS."""
        return self._async.pacs

    @property
    def out(self) -> Path:
        """The output directory."""
        return self._async.out

    @property
    def ae_title(self) -> str:
        """Our AE title."""
        return self._async.ae_title

    @property
    def port(self) -> int:
        """The store SCP's port."""
        return self._async.port

    @property
    def move_destination(self) -> str:
        """The C-MOVE destination AE title."""
        return self._async.move_destination

    @property
    def local_destination(self) -> bool:
        """Whether the move destination is our own embedded store SCP."""
        return self._async.local_destination

    @property
    def workers(self) -> int:
        """Parallel associations."""
        return self._async.workers

    @property
    def timeouts(self) -> Timeouts:
        """The timeouts."""
        return self._async.timeouts

    @property
    def retry(self) -> RetryPolicy:
        """The retry policy."""
        return self._async.retry

    @property
    def store(self) -> StoreOptions:
        """The store SCP's options."""
        return self._async.store_options

    @property
    def closed(self) -> bool:
        """Whether the session is closed (or closes when its running move ends)."""
        return self._async.closed

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return loop_thread().run(coro)

    # -- life cycle ------------------------------------------------------------------------
    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the associations; the session cannot be used afterwards.

        A move started with :meth:`start` keeps running: the associations are
        released when it ends.
        """
        self._run(self._async.aclose())

    def echo(self) -> None:
        """Send a C-ECHO to the PACS.

        Raises
        ------
        NetworkError
            If no association could be made or the C-ECHO got no success reply.
        """
        self._run(self._async.echo())

    def find(
        self,
        what: Any,
        *,
        level: str | None = None,
        return_keys: Sequence[str] | None = None,
        max_results: int | None = None,
    ) -> pd.DataFrame:
        """Run C-FINDs and return their matches, one row each; see :func:`dicommove.find`."""
        return self._run(
            self._async.find(what, level=level, return_keys=return_keys, max_results=max_results)
        )

    # -- moving ----------------------------------------------------------------------------
    def move(
        self,
        what: Any,
        *,
        strict: bool = True,
        progress: Progress = "auto",
        errors: Literal["raise", "ignore"] = "raise",
        resume: bool = False,
        resolve: bool = False,
        batch: int = 1,
        deadline: float | None = None,
    ) -> pd.DataFrame:
        """Move the instances that ``what`` identifies, and return the manifest.

        The requests run on ``workers`` parallel associations. Ctrl-C (or "interrupt
        kernel") sends a C-CANCEL to every active move, waits up to
        ``Timeouts.cancel_grace`` s for the PACS to confirm, releases, and raises
        :class:`MoveInterrupted` with the partial manifest; a second Ctrl-C aborts at
        once. :meth:`cancel` (from another thread) does the same and raises
        :class:`MoveCancelled`.

        Parameters
        ----------
        what : Query, str, list, dict, DataFrame or Series
            What to move; see :func:`dicommove.query.to_requests`.
        strict : bool
            Refuse identifiers that are not valid C-MOVE identifiers (default).
            ``False`` sends them as given, with a :class:`QueryWarning`.
        progress : {"auto", "tqdm", "widget"}, bool or callable
            How to show progress; ``False`` shows nothing.
        errors : {"raise", "ignore"}
            ``"raise"`` (default): raise :class:`MoveIncomplete`, carrying the
            manifest, if any request fell short. ``"ignore"``: return the manifest
            anyway; its ``status`` column tells.
        resume : bool
            Skip the requests that an earlier run into the same ``out`` completed, as
            its journal (``out/.dicommove/journal.jsonl``) says, once their files are
            checked to exist with their recorded sizes; their rows are taken from the
            journal. Everything else is asked for again (only what is missing).
        resolve : bool
            Find the UIDs of rows that carry other keys than unique ones (an
            AccessionNumber, a PatientID with a StudyDate range...) with C-FIND first,
            at STUDY level unless a row's QueryRetrieveLevel says otherwise, and move
            what they match; every manifest row keeps the ``request`` of the row it came
            from, and a row that matches nothing is a ``not_found`` row. Rows of unique
            keys only are moved as they are. See :func:`dicommove.find`.
        batch : int
            Group up to ``batch`` input rows of the same parent (studies, series of
            one study, instances of one series) into one C-MOVE listing their UIDs
            (default 1: one C-MOVE per row). Identical rows are always folded into
            one C-MOVE; each gets a ``duplicate`` row pointing at the first.
        deadline : float, optional
            Longest time this move may take, in seconds (default
            ``Timeouts.deadline``: no limit).

        Returns
        -------
        pandas.DataFrame
            The manifest (see :mod:`dicommove.manifest`).

        Raises
        ------
        InputError
            Bad input; nothing was sent.
        LocalSetupError
            The output directory or store port is unusable; nothing was sent.
        NetworkError, MoveDestinationUnknown
            The PACS could not be reached or refused the destination. ``.manifest``
            holds every request, with what arrived.
        MoveIncomplete
            With ``errors="raise"``, when any request fell short.
        MoveCancelled, MoveInterrupted, MoveTimeout
            The move was cancelled, interrupted, or ran past its deadline.
        """
        rows = self.move_rows(
            what,
            strict=strict,
            progress=progress,
            errors=errors,
            resume=resume,
            resolve=resolve,
            batch=batch,
            deadline=deadline,
        )
        from ..manifest import build

        return build(rows)

    def move_rows(
        self,
        what: Any,
        *,
        strict: bool = True,
        progress: Progress = "auto",
        errors: Literal["raise", "ignore"] = "raise",
        resume: bool = False,
        resolve: bool = False,
        batch: int = 1,
        deadline: float | None = None,
    ) -> list[dict[str, Any]]:
        """:meth:`move`, returning the manifest as plain rows (no pandas)."""
        s = self._async
        s.check_move(errors=errors, resume=resume, deadline=deadline)
        planned, unresolved = self._prepare(what, strict=strict, batch=batch, resolve=resolve)
        stats = MoveStats(len(planned))
        # a Cancel button only where the waiting cell can handle its click
        reporter = make_reporter(
            progress,
            stats,
            desc=f"{verb(s.method)} from {s.pacs.ae_title}",
            on_cancel=self.cancel if can_cancel_while_waiting() else None,
        )
        lt = loop_thread()
        result, interrupted = _run_interruptible(
            lt,
            s,
            reporter,
            s.run(
                planned,
                stats=stats,
                reporter=reporter,
                resume=resume,
                deadline=deadline,
                unresolved=unresolved,
            ),
        )
        if interrupted or result.stop is Stop.INTERRUPT:
            remember(result.rows)
            unfinished = sum(r["status"] in ("cancelled", "timeout") for r in result.rows)
            raise MoveInterrupted(
                f"the move from {s.pacs} was interrupted (Ctrl-C) and cancelled; {unfinished} "
                "rows read 'cancelled' or 'timeout' (what arrived is kept). The partial "
                "manifest is exc.manifest, or df = dicommove.last_manifest() after an "
                "uncaught Ctrl-C. Run it again with resume=True (--resume) to fetch the rest.",
                status=0xFE00,
                rows=result.rows,
            )
        rows, error = conclude(result, errors=errors, pacs=s.pacs)
        if error is not None:
            raise error
        return rows

    def _prepare(
        self, what: Any, *, strict: bool, batch: int, resolve: bool
    ) -> tuple[list[Planned], list[dict[str, Any]]]:
        s = self._async
        if resolve is False:  # pure: no need for the loop
            return s.plan(what, strict=strict, batch=batch), []
        return self._run(s.prepare(what, strict=strict, batch=batch, resolve=resolve))

    def start(
        self,
        what: Any,
        *,
        strict: bool = True,
        progress: Progress = "auto",
        errors: Literal["raise", "ignore"] = "raise",
        resume: bool = False,
        resolve: bool = False,
        batch: int = 1,
        deadline: float | None = None,
        close_session: bool = False,
    ) -> MoveJob:
        """Start :meth:`move` in the background and return its :class:`MoveJob` at once.

        In a notebook this keeps the kernel free while the move runs, so that
        ``job.cancel()`` (or the progress panel's Cancel button) can stop it. With
        ``close_session=True`` the session is closed when the move ends.
        """
        s = self._async
        s.check_move(errors=errors, resume=resume, deadline=deadline)
        planned, unresolved = self._prepare(what, strict=strict, batch=batch, resolve=resolve)
        # Made here, in the caller's thread: a notebook panel shows in the caller's cell,
        # and its Cancel button works because the kernel stays free.
        stats = MoveStats(len(planned))
        reporter = make_reporter(
            progress, stats, desc=f"{verb(s.method)} from {s.pacs.ae_title}", on_cancel=self.cancel
        )

        async def run() -> MoveResult:
            try:
                return await s.run(
                    planned,
                    stats=stats,
                    reporter=reporter,
                    resume=resume,
                    deadline=deadline,
                    unresolved=unresolved,
                )
            finally:
                if close_session:
                    await s.aclose()

        return MoveJob(self, loop_thread().submit(run()), errors=errors, reporter=reporter)

    def cancel(self) -> None:
        """Cancel the running move (from any thread): C-CANCEL, grace period, release.

        The move then raises :class:`MoveCancelled` with the partial manifest.
        Nothing happens when no move is running.
        """
        loop_thread().call(self._async.cancel, Stop.CANCEL)

    def manifest(self) -> pd.DataFrame:
        """Return the manifest so far of the running (or the last) move.

        Requests that have not finished yet have a request row with status
        ``pending`` besides the instances that already arrived.
        """
        from ..manifest import build

        rows: list[dict[str, Any]] = self._run(_call(self._async.rows))
        return build(rows)

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        out = os.fspath(self.out)
        return f"<Session {self.pacs} -> {self.ae_title}:{self.port} into {out!r} ({state})>"

    def _repr_html_(self) -> str:
        from .display import session_html

        return session_html(self._async, "closed" if self.closed else "open")


def _run_interruptible(
    lt: LoopThread, s: AsyncSession, reporter: Reporter, coro: Coroutine[Any, Any, MoveResult]
) -> tuple[MoveResult, bool]:
    """Run a move on the loop and wait; the first Ctrl-C cancels it, the second aborts it.

    Every step is inside the loop that catches KeyboardInterrupt, so a Ctrl-C that lands
    while the previous one is being handled is counted too: the move is never left
    running without its caller. Returns the result and whether Ctrl-C was pressed.
    """
    future: concurrent.futures.Future[MoveResult] | None = None
    interrupts = 0
    acted = 0  # interrupts acted upon: 1 cancelled, 2 aborted
    while True:
        try:
            if future is None:
                future = lt.submit(coro)
            if interrupts >= 1 and acted < 1:
                lt.call(s.cancel, Stop.INTERRUPT)
                acted = 1  # before the log line: a Ctrl-C while logging must not cancel twice
                logger.warning(
                    "interrupted: cancelling the active C-MOVEs (press Ctrl-C again to abort "
                    "at once)"
                )
            if interrupts >= 2 and acted < 2:
                lt.call(s.abort)
                acted = 2
            with widget_events(reporter) as poll:
                return wait(future, between=poll), interrupts > 0
        except KeyboardInterrupt:
            if future is None:
                coro.close()
                raise  # nothing was started
            interrupts += 1
