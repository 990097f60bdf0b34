"""The asynchronous session: a PACS, our AE, and the moves run against it.

:class:`AsyncSession` is the core that :class:`~dicommove.Session` and
:func:`~dicommove.move` wrap, as ``httpx.AsyncClient`` is for ``httpx.Client``. It
runs on the caller's event loop: ``await session.move(cohort)``. Its associations
(:class:`~dicommove.engine.pool.Pool`) are kept across moves; each move gets a
:class:`~dicommove.engine.run.Run`, the embedded store SCP for its duration, and
returns the manifest.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from .._defaults import DEFAULT_AE_TITLE, DEFAULT_PORT, DEFAULT_WORKERS
from ..errors import (
    DicomMoveError,
    InputError,
    MoveCancelled,
    MoveIncomplete,
    MoveTimeout,
)
from ..node import Node, validate_ae_title
from ..options import RetryPolicy, StoreOptions, Timeouts, check_session_options
from ..progress import MoveStats, ProgressMode, ProgressSnapshot, Reporter, make_reporter
from ..query import Model, Planned, plan, to_requests
from ..rows import Stop
from ..store import InstanceStore, Layout, compile_layout
from ..store.tags import header_tags
from .find import Finder
from .listen import default_bind, store_scp
from .pool import FIND, Pool
from .run import MoveResult, Run

if TYPE_CHECKING:
    import pandas as pd

    from ..query.find import FindRequest
    from ..scp import StoreSCP

__all__ = ["AsyncSession", "Progress", "SessionOptions", "conclude", "verb"]

logger = logging.getLogger("dicommove")

#: What ``progress=`` takes: a mode, or a callable receiving each ProgressSnapshot.
Progress = ProgressMode | Callable[[ProgressSnapshot], object]
Split = bool | Literal["auto"]


class SessionOptions(TypedDict, total=False):
    """The keyword options of :class:`AsyncSession` and :class:`~dicommove.Session`."""

    out: str | os.PathLike[str]
    ae_title: str
    port: int
    move_destination: str | None
    model: Model
    layout: Layout
    workers: int
    split: Split
    timeouts: Timeouts | None
    retry: RetryPolicy | None
    store: StoreOptions | None
    tags: Sequence[str] | None
    method: Literal["move", "get", "auto"]
    verify: bool
    relational: bool
    tls: ssl.SSLContext | None
    store_tls: ssl.SSLContext | None


class AsyncSession:
    """A connection to one PACS, reused across moves, on the running event loop.

    Parameters
    ----------
    pacs : str or Node
        The PACS as ``AE@host:port``.
    out : path-like
        Where received files are written (created if needed).
    ae_title : str
        Our AE title: the calling AE of our associations, and the embedded store SCP's.
    port : int
        The port of the embedded store SCP (0 picks a free one).
    move_destination : str, optional
        The C-MOVE destination AE title. Defaults to ``ae_title``, in which case the
        embedded store SCP receives the instances; any other title is a *foreign*
        destination and no store SCP is started.
    model : {"study", "patient", "composite"}
        The Query/Retrieve information model for inputs that don't say.
    layout : str
        File layout under ``out``: ``"hierarchical"``, ``"flat"`` or a template of
        UID fields such as ``"{StudyInstanceUID}/{SOPInstanceUID}.dcm"``.
    workers : int
        Parallel associations to the PACS (default 4, at most 16), all delivering
        into the one store SCP.
    split : {"auto", True, False}
        Cut a STUDY or PATIENT request into its series (one C-FIND), or a C-MOVE of
        several studies into smaller ones, so that idle workers can share it:
        ``"auto"`` (default) when workers would otherwise idle, ``True`` always,
        ``False`` never (for a PACS that limits associations).
    timeouts : Timeouts, optional
        Connect, association, response, inactivity, request and deadline timeouts.
    retry : RetryPolicy, optional
        Retries after transient failures.
    store : StoreOptions, optional
        The store SCP's bind address, PDU size, allow-lists and durability.
    method : {"move", "get", "auto"}
        ``"move"`` (default): C-MOVE to our embedded store SCP (the PACS must know our AE
        title and port). ``"get"``: C-GET, the instances come back on our own
        association: no port, no registration on the PACS (see
        :data:`dicommove._sop.GET_STORAGE_CLASSES` for the storage classes proposed).
        ``"auto"``: C-MOVE, and C-GET from the first request that shows the PACS cannot
        send to our AE title (0xA801, the way Orthanc says so, or an abort before any
        instance), with a warning in the log.
    verify : bool
        Before moving, list each request's instances with IMAGE-level C-FINDs; after
        it, each listed instance that did not arrive is a ``missing`` row naming its
        SOPInstanceUID (a PACS that answers Success while sending fewer, or nothing, is
        caught by name), and a request that misses some is asked again for exactly those
        (``RetryPolicy``).
    relational : bool
        Ask the PACS for relational-retrieve (SOP Class Extended Negotiation) and accept
        requests without the unique keys above their level, e.g. SOPInstanceUIDs alone.
        A PACS that declines it ends such a move with :class:`~dicommove.MoveError`.
    tags : list of str, optional
        Header elements to add to the manifest as columns, by keyword (e.g.
        ``["Modality", "SeriesDescription", "InstanceNumber"]``), read from each
        instance's header as it is received. Integers are ``Int64``, decimals
        ``Float64``, the rest text as DICOM writes it (dates ``YYYYMMDD``).
    tls : ssl.SSLContext, optional
        Open our associations to the PACS over DICOM TLS with this client context
        (:func:`dicommove.tls.client_context`).
    store_tls : ssl.SSLContext, optional
        The embedded store SCP speaks only TLS, with this server context
        (:func:`dicommove.tls.server_context`); the PACS must send to it over TLS.

    Examples
    --------
    >>> async with AsyncSession("ORTHANC@127.0.0.1:4242", out="data") as s:  # doctest: +SKIP
    ...     df = await s.move(["1.2.3", "1.2.4"])
    """

    def __init__(
        self,
        pacs: str | Node,
        *,
        out: str | os.PathLike[str] = ".",
        ae_title: str = DEFAULT_AE_TITLE,
        port: int = DEFAULT_PORT,
        move_destination: str | None = None,
        model: Model = "study",
        layout: Layout = "hierarchical",
        workers: int = DEFAULT_WORKERS,
        split: Split = "auto",
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        store: StoreOptions | None = None,
        tags: Sequence[str] | None = None,
        method: Literal["move", "get", "auto"] = "move",
        verify: bool = False,
        relational: bool = False,
        tls: ssl.SSLContext | None = None,
        store_tls: ssl.SSLContext | None = None,
    ) -> None:
        self.pacs = Node.parse(pacs)
        check_session_options(
            verify=verify,
            relational=relational,
            method=method,
            ae_title=ae_title,
            move_destination=move_destination,
            model=model,
            port=port,
            workers=workers,
            split=split,
            objects=(
                ("timeouts", timeouts, Timeouts),
                ("retry", retry, RetryPolicy),
                ("store", store, StoreOptions),
                ("tls", tls, ssl.SSLContext),
                ("store_tls", store_tls, ssl.SSLContext),
            ),
        )
        self.verify, self.relational = verify, relational
        self.tls, self.store_tls = tls, store_tls
        self.method: Literal["move", "get", "auto"] = method
        self.ae_title = validate_ae_title(ae_title, what="calling AE title")
        self.move_destination = validate_ae_title(
            move_destination or self.ae_title, what="move destination AE title"
        )
        self.model: Model = model
        self.out = Path(out)
        self.port = port
        self.layout: Layout = layout
        compile_layout(layout)  # an unsafe layout is refused before any traffic
        self.workers = workers
        self.split: Split = split
        self.timeouts = timeouts or Timeouts()
        self.retry = retry or RetryPolicy()
        self.store_options = store or StoreOptions()
        self.tags = header_tags(tags)
        bind = self.store_options.bind
        self.bind = bind if bind is not None else default_bind(self.pacs.host)
        self.pool = Pool(
            self.pacs,
            ae_title=self.ae_title,
            max_pdu=self.store_options.max_pdu,
            timeouts=self.timeouts,
            method=method,
            relational=relational,
            tls=tls,
        )
        self._closed = False
        self._close_when_done = False
        self._run: Run | None = None

    # -- life cycle ----------------------------------------------------------------
    async def __aenter__(self) -> AsyncSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def closed(self) -> bool:
        """Whether the session is closed (or closes when its running move ends)."""
        return self._closed or self._close_when_done

    @property
    def running(self) -> bool:
        """Whether a move is running."""
        return self._run is not None and self._run.stats.snapshot().finished is False

    async def aclose(self) -> None:
        """Release the associations; a running move first ends, then they are released."""
        if self._busy:
            self._close_when_done = True
            return
        self._closed = True
        await self.pool.close()

    def _check_open(self) -> None:
        if self.closed:
            raise DicomMoveError("this session is closed: open a new Session")

    @property
    def local_destination(self) -> bool:
        """Whether the move destination is our own embedded store SCP."""
        return self.move_destination == self.ae_title

    # -- parts of a move ---------------------------------------------------------------
    def new_store(self) -> InstanceStore:
        """Return the file store of one move."""
        return InstanceStore(
            self.out, layout=self.layout, durability=self.store_options.durability, tags=self.tags
        )

    def new_scp(self, store: InstanceStore, run: Run) -> StoreSCP:
        """Return the store SCP of one move, calling back into ``run``."""
        return store_scp(self, store, run)

    # -- C-ECHO ------------------------------------------------------------------------
    async def echo(self) -> None:
        """Send a C-ECHO to the PACS (on an association of its own).

        Raises
        ------
        NetworkError
            If no association could be made or the C-ECHO got no success reply.
        """
        self._check_open()
        await self.pool.echo(idle=not self._busy)

    # -- C-FIND ------------------------------------------------------------------------
    async def find(
        self,
        what: Any,
        *,
        level: str | None = None,
        return_keys: Sequence[str] | None = None,
        max_results: int | None = None,
    ) -> pd.DataFrame:
        """Run C-FINDs and return their matches, one row each; see :func:`dicommove.find`.

        The C-FINDs run on ``workers`` associations in parallel: the session's own when
        no move runs, else associations of their own, released afterwards.
        """
        self._check_open()
        from ..query.find import find_requests
        from .search import check_max_results

        cap = check_max_results(max_results)
        requests = find_requests(what, level=level, model=self.model, return_keys=return_keys)
        return await self.search(requests, max_results=cap)

    async def search(
        self, requests: Sequence[FindRequest], *, max_results: int | None = None
    ) -> pd.DataFrame:
        """Run prepared C-FINDs (:func:`~dicommove.engine.search.search`) on the pool."""
        from .search import search

        beside_a_move = self._busy
        width = min(self.workers, len(requests))
        keys = [FIND - i for i in range(width)] if beside_a_move else list(range(width))
        try:
            return await search(
                Finder(self.pool), keys, requests, pacs=self.pacs, max_results=max_results
            )
        finally:
            if beside_a_move:
                await self.pool.release(*keys)

    # -- moving ------------------------------------------------------------------------
    def plan(self, what: Any, *, strict: bool = True, batch: int = 1) -> list[Planned]:
        """Turn what the user passed into planned requests (validated; nothing sent)."""
        requests = to_requests(what, model=self.model, strict=strict, relational=self.relational)
        return plan(requests, batch=batch)

    async def prepare(
        self, what: Any, *, strict: bool = True, batch: int = 1, resolve: bool = False
    ) -> tuple[list[Planned], list[dict[str, Any]]]:
        """Plan a move; with ``resolve``, find the UIDs of rows that need it (C-FIND) first.

        Returns the planned requests and a ``not_found`` manifest row for each input
        row that C-FIND matched to nothing (see :mod:`~dicommove.engine.resolve`).
        """
        if resolve is False:
            return self.plan(what, strict=strict, batch=batch), []
        if resolve is not True:
            raise InputError(f"resolve={resolve!r}: use True or False")
        from .resolve import resolve as find_uids

        self._check_open()
        requests, unresolved = await find_uids(self, what, strict=strict)
        return (plan(requests, batch=batch) if requests else []), unresolved

    def check_move(self, *, errors: str, resume: bool, deadline: float | None) -> None:
        """Refuse bad move options before anything runs."""
        self._check_open()
        if errors not in ("raise", "ignore"):
            raise InputError(f"errors={errors!r}: use 'raise' or 'ignore'")
        if resume and not self.local_destination:
            raise InputError(
                "resume=True needs our own store SCP, whose journal says what arrived; "
                f"with move_destination={self.move_destination!r} nothing is written here"
            )
        Timeouts(deadline=deadline)  # checks the value

    @property
    def _busy(self) -> bool:
        return self._run is not None and not self._run_done

    async def run(
        self,
        planned: list[Planned],
        *,
        stats: MoveStats,
        reporter: Reporter,
        resume: bool = False,
        deadline: float | None = None,
        unresolved: Sequence[dict[str, Any]] = (),
    ) -> MoveResult:
        """Run planned requests; return their rows and how the move ended.

        Never raises a move error: :func:`conclude` turns the result into one.
        """
        self._check_open()
        if self._busy:
            raise DicomMoveError(
                "this session is already running a move: wait for it or cancel it, "
                "or open another Session"
            )
        run = Run(
            self,
            planned,
            stats=stats,
            reporter=reporter,
            resume=resume,
            deadline=deadline if deadline is not None else self.timeouts.deadline,
            unresolved=unresolved,
        )
        self._run, self._run_done = run, False
        try:
            return await run.execute()
        finally:
            self._run_done = True
            await asyncio.get_running_loop().run_in_executor(None, reporter.stop)
            if self._close_when_done:
                self._close_when_done = False
                await self.aclose()

    _run_done = True

    async def move(
        self,
        what: Any,
        *,
        strict: bool = True,
        progress: Progress = False,
        errors: Literal["raise", "ignore"] = "raise",
        resume: bool = False,
        resolve: bool = False,
        batch: int = 1,
        deadline: float | None = None,
    ) -> pd.DataFrame:
        """Move what ``what`` identifies and return the manifest (see :meth:`Session.move`).

        If the task running this is cancelled, the active C-MOVEs are cancelled
        (C-CANCEL, grace period) before :class:`asyncio.CancelledError` propagates;
        :meth:`manifest` then holds what arrived.
        """
        self.check_move(errors=errors, resume=resume, deadline=deadline)
        planned, unresolved = await self.prepare(what, strict=strict, batch=batch, resolve=resolve)
        stats = MoveStats(len(planned))
        reporter = make_reporter(
            progress, stats, desc=f"{verb(self.method)} from {self.pacs.ae_title}"
        )
        task = asyncio.ensure_future(
            self.run(
                planned,
                stats=stats,
                reporter=reporter,
                resume=resume,
                deadline=deadline,
                unresolved=unresolved,
            )
        )
        try:
            result = await asyncio.shield(task)
        except asyncio.CancelledError:
            self.cancel(Stop.INTERRUPT)
            await asyncio.wait({task})
            raise
        rows, error = conclude(result, errors=errors, pacs=self.pacs)
        if error is not None:
            raise error
        from ..manifest import build

        return await asyncio.get_running_loop().run_in_executor(None, build, rows)

    def cancel(self, why: Stop = Stop.CANCEL) -> None:
        """Cancel the running move: C-CANCEL, grace period, release (from the loop).

        Nothing happens when no move is running.
        """
        run = self._run
        if run is not None and not self._run_done:
            logger.warning("cancelling the move from %s", self.pacs)
            run.request_stop(why)

    def abort(self) -> None:
        """Abort the running move's associations at once (a second Ctrl-C)."""
        run = self._run
        if run is not None and not self._run_done:
            logger.warning("interrupted again: aborting the associations")
            run.abort()

    def rows(self) -> list[dict[str, Any]]:
        """Return the rows of the running move so far, or of the last move."""
        run = self._run
        if run is None:
            return []
        return run.rows(live=not self._run_done)


#: The rows of the last move that ended in this process (see dicommove.last_manifest).
_last_rows: list[list[dict[str, Any]]] = []


def remember(rows: list[dict[str, Any]]) -> None:
    """Keep the rows of a move that ended, for :func:`dicommove.last_manifest`."""
    _last_rows[:] = [rows]


def last_rows() -> list[dict[str, Any]] | None:
    """Return the rows of the last move that ended in this process, if any."""
    return _last_rows[0] if _last_rows else None


def verb(method: str) -> str:
    """Return the progress bar's word for a session's retrieve method."""
    return {"get": "C-GET", "auto": "Retrieve"}.get(method, "C-MOVE")


def conclude(
    result: MoveResult, *, errors: str, pacs: Node
) -> tuple[list[dict[str, Any]], DicomMoveError | None]:
    """Return the rows of a move and the error to raise for it, if any.

    An interrupted move (Ctrl-C) gets a :class:`~dicommove.MoveCancelled` here; the
    synchronous API raises :class:`~dicommove.MoveInterrupted` instead, in the
    caller's thread.
    """
    rows = result.rows
    remember(rows)
    failure = result.failure
    if failure is not None:
        failure.rows = rows
        return rows, failure
    if result.stop in (Stop.INTERRUPT, Stop.CANCEL):
        unfinished = sum(r["status"] in ("cancelled", "timeout") for r in rows)
        message = (
            f"the move from {pacs} was cancelled; {unfinished} rows read 'cancelled' "
            "or 'timeout' (what arrived is kept). Run it again with resume=True "
            "(--resume) to fetch the rest."
        )
        return rows, MoveCancelled(message, status=0xFE00, rows=rows)
    if result.deadline_passed:
        return rows, MoveTimeout(
            f"the move from {pacs} ran past its deadline of {result.deadline or 0:g} s and was "
            "cancelled; what arrived is kept. Run it again with resume=True (and a longer "
            "deadline) to fetch the rest.",
            rows=rows,
        )
    if result.problems:
        summary = ", ".join(f"{n} {s}" for s, n in result.problems.items() if n)
        message = (
            f"the move from {pacs} fell short: {summary}. The manifest's "
            "'status' and 'reason' columns say which and why"
        )
        if errors == "raise":
            return rows, MoveIncomplete(
                message + " (read exc.manifest, or pass errors='ignore').",
                status=result.worst_status,
                error_comment=result.worst_comment,
                rows=rows,
            )
        logger.warning("%s.", message)
    return rows, None
