"""One-shot functions over a Session, as ``httpx.get`` is over a Client."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Literal

from .engine import DEFAULT_AE_TITLE, DEFAULT_PORT, MoveJob, Progress, Session
from .node import Node
from .query import Model
from .store import Layout

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["echo", "move", "start"]


def move(
    pacs: str | Node,
    uids: Any,
    *,
    out: str | os.PathLike[str] = ".",
    ae_title: str = DEFAULT_AE_TITLE,
    port: int = DEFAULT_PORT,
    move_destination: str | None = None,
    model: Model = "study",
    progress: Progress = "auto",
    strict: bool = True,
    errors: Literal["raise", "ignore"] = "raise",
    layout: Layout = "hierarchical",
    resume: bool = False,
    batch: int = 1,
    **session_options: Any,
) -> pd.DataFrame:
    """Move studies, series or instances from a PACS and return the manifest.

    Opens a :class:`~dicommove.engine.Session`, starts the embedded Store SCP on
    ``port`` when the move destination is our own AE title (the default), runs
    one C-MOVE per request, stops the Store SCP and closes the session.

    Parameters
    ----------
    pacs : str or Node
        The PACS, as ``AE@host:port``.
    uids : Query, str, list, dict, DataFrame or Series
        What to move. A str or list of str are StudyInstanceUIDs (PatientIDs with
        ``model="patient"``); a dict or DataFrame holds unique keys by keyword,
        and the level is inferred from the most specific one present.
    out : path-like
        Output directory, created if needed.
    ae_title : str
        Our AE title (calling AE and Store SCP AE). Register it on the PACS.
    port : int
        Store SCP port (register it on the PACS with ``ae_title``).
    move_destination : str, optional
        Send the instances to another AE instead (no Store SCP is started, and
        the manifest holds one row per request with its sub-operation counts).
    model : {"study", "patient"}
        Query/Retrieve information model.
    progress : {"auto", "tqdm", "widget"}, bool or callable
        Progress display: a tqdm bar in a terminal, a panel in Jupyter
        (``"auto"``), ``False`` for none, or a callable that receives a
        :class:`~dicommove.progress.ProgressSnapshot` a few times a second
        (see docs/progress.md).
    strict : bool
        Refuse invalid C-MOVE identifiers (default); ``False`` sends them with a
        warning.
    errors : {"raise", "ignore"}
        Whether a move that fell short raises :class:`~dicommove.MoveIncomplete`
        (carrying ``.manifest``) or just returns the manifest.
    layout : {"hierarchical", "flat"}
        ``<Study>/<Series>/<SOP>.dcm`` or ``<SOP>.dcm``.
    resume : bool
        Skip requests that an earlier run into ``out`` completed (its journal
        says so and the files are there with their sizes); fetch the rest.
    batch : int
        Group up to ``batch`` rows of the same parent into one C-MOVE listing
        their UIDs (default 1: one C-MOVE per row). Identical rows are always
        moved once.
    **session_options
        Further :class:`~dicommove.engine.Session` options: ``workers``
        (parallel associations, default 2), ``retries``, timeouts
        (``inactivity_timeout``, ``request_timeout``, ``deadline``), ``bind``,
        ``max_pdu``, ``allowed_aes``...

    Returns
    -------
    pandas.DataFrame
        The manifest; see :mod:`dicommove.manifest` for its schema.

    Examples
    --------
    >>> df = move("ORTHANC@127.0.0.1:4242", "1.2.3", out="data")  # doctest: +SKIP
    >>> df[["SOPInstanceUID", "path", "status"]]  # doctest: +SKIP
    """
    with Session(
        pacs,
        out=out,
        ae_title=ae_title,
        port=port,
        move_destination=move_destination,
        model=model,
        layout=layout,
        **session_options,
    ) as session:
        return session.move(
            uids, strict=strict, progress=progress, errors=errors, resume=resume, batch=batch
        )


def start(
    pacs: str | Node,
    uids: Any,
    *,
    out: str | os.PathLike[str] = ".",
    ae_title: str = DEFAULT_AE_TITLE,
    port: int = DEFAULT_PORT,
    move_destination: str | None = None,
    model: Model = "study",
    progress: Progress = "auto",
    strict: bool = True,
    errors: Literal["raise", "ignore"] = "raise",
    layout: Layout = "hierarchical",
    resume: bool = False,
    batch: int = 1,
    **session_options: Any,
) -> MoveJob:
    """Start :func:`move` in the background and return a :class:`~dicommove.MoveJob` at once.

    Takes the same parameters as :func:`move`. Bad input raises here, before
    anything runs; everything else is raised by ``job.result()``. The session
    is closed when the move ends.

    Examples
    --------
    >>> job = start("ORTHANC@127.0.0.1:4242", cohort, out="data")  # doctest: +SKIP
    >>> job.cancel()  # doctest: +SKIP
    >>> job.result()  # doctest: +SKIP
    Traceback (most recent call last):
    dicommove.errors.MoveCancelled: the move from ORTHANC@127.0.0.1:4242 was cancelled; ...
    """
    session = Session(
        pacs,
        out=out,
        ae_title=ae_title,
        port=port,
        move_destination=move_destination,
        model=model,
        layout=layout,
        **session_options,
    )
    try:
        job = session.start(
            uids, strict=strict, progress=progress, errors=errors, resume=resume, batch=batch
        )
    except BaseException:
        session.close()
        raise
    job._close_session = True  # the job owns the session: closed when the move ends
    return job


def echo(pacs: str | Node, *, ae_title: str = DEFAULT_AE_TITLE, **session_options: Any) -> None:
    """Check that the PACS answers a C-ECHO.

    Raises
    ------
    NetworkError
        With a message that says what failed (connect, reject, no reply).
    """
    with Session(pacs, ae_title=ae_title, **session_options) as session:
        session.echo()
