"""One-shot functions over a session, as ``httpx.get`` is over a Client.

Each takes the PACS, what to move, the options of one move, and the session's
options (``**options``: ``out``, ``ae_title``, ``port``, ``move_destination``,
``model``, ``layout``, ``workers``, ``split``, ``timeouts``, ``retry``, ``store``; see
:class:`~dicommove.AsyncSession`), opens a session, and closes it at the end.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from .engine import AsyncSession, MoveJob, Progress, Session
from .node import Node

if TYPE_CHECKING:
    import pandas as pd
    from typing_extensions import Unpack

    from .engine import SessionOptions

__all__ = ["amove", "echo", "find", "last_manifest", "move", "move_rows", "start"]


def move(
    pacs: str | Node,
    uids: Any,
    *,
    progress: Progress = "auto",
    strict: bool = True,
    errors: Literal["raise", "ignore"] = "raise",
    resume: bool = False,
    resolve: bool = False,
    batch: int = 1,
    deadline: float | None = None,
    **options: Unpack[SessionOptions],
) -> pd.DataFrame:
    """Move studies, series or instances from a PACS and return the manifest.

    Opens a :class:`~dicommove.Session`, starts the embedded store SCP on ``port``
    when the move destination is our own AE title (the default), runs the C-MOVEs
    on ``workers`` parallel associations, stops the store SCP and closes the session.

    Parameters
    ----------
    pacs : str or Node
        The PACS, as ``AE@host:port``.
    uids : Query, str, list, dict, DataFrame or Series
        What to move. A str or list of str are StudyInstanceUIDs (PatientIDs with
        ``model="patient"``); a dict or DataFrame holds unique keys by keyword, and
        the level is inferred from the most specific one present.
    progress : {"auto", "tqdm", "widget"}, bool or callable
        Progress display: a tqdm bar in a terminal, a panel in Jupyter (``"auto"``),
        ``False`` for none, or a callable that receives a
        :class:`~dicommove.progress.ProgressSnapshot` a few times a second.
    strict : bool
        Refuse invalid C-MOVE identifiers (default); ``False`` sends them with a
        warning.
    errors : {"raise", "ignore"}
        Whether a move that fell short raises :class:`~dicommove.MoveIncomplete`
        (carrying ``.manifest``) or just returns the manifest.
    resume : bool
        Skip requests that an earlier run into ``out`` completed (its journal says
        so and the files are there with their sizes); fetch the rest.
    resolve : bool
        Find the UIDs of rows that carry other keys than unique ones (an
        AccessionNumber, a PatientID with a StudyDate range...) with C-FIND first,
        at STUDY level unless a row's QueryRetrieveLevel says otherwise, and move
        what they match; every manifest row keeps the ``request`` of the row it came
        from, and a row that matches nothing is a ``not_found`` row. Rows of unique
        keys only are moved as they are. See :func:`find`.
    batch : int
        Group up to ``batch`` rows of the same parent into one C-MOVE listing their
        UIDs (default 1: one C-MOVE per row). Identical rows are always moved once.
    deadline : float, optional
        Longest time the move may take, in seconds.
    **options
        The session's options: ``out`` (output directory, default ``.``),
        ``ae_title``, ``port``, ``move_destination``, ``model``, ``layout``,
        ``workers``, ``split``, ``timeouts``, ``retry``, ``store``; see
        :class:`~dicommove.AsyncSession`.

    Returns
    -------
    pandas.DataFrame
        The manifest; see :mod:`dicommove.manifest` for its schema.

    Examples
    --------
    >>> df = move("ORTHANC@127.0.0.1:4242", "1.2.3", out="data")  # doctest: +SKIP
    >>> df[["SOPInstanceUID", "path", "status"]]  # doctest: +SKIP
    """
    with Session(pacs, **options) as session:
        return session.move(
            uids,
            strict=strict,
            progress=progress,
            errors=errors,
            resume=resume,
            resolve=resolve,
            batch=batch,
            deadline=deadline,
        )


def move_rows(
    pacs: str | Node,
    uids: Any,
    *,
    progress: Progress = "auto",
    strict: bool = True,
    errors: Literal["raise", "ignore"] = "raise",
    resume: bool = False,
    resolve: bool = False,
    batch: int = 1,
    deadline: float | None = None,
    **options: Unpack[SessionOptions],
) -> list[dict[str, Any]]:
    """:func:`move`, returning the manifest as plain rows: no pandas (the command line).

    Errors carry the same rows as ``.rows``.
    """
    with Session(pacs, **options) as session:
        return session.move_rows(
            uids,
            strict=strict,
            progress=progress,
            errors=errors,
            resume=resume,
            resolve=resolve,
            batch=batch,
            deadline=deadline,
        )


def start(
    pacs: str | Node,
    uids: Any,
    *,
    progress: Progress = "auto",
    strict: bool = True,
    errors: Literal["raise", "ignore"] = "raise",
    resume: bool = False,
    resolve: bool = False,
    batch: int = 1,
    deadline: float | None = None,
    **options: Unpack[SessionOptions],
) -> MoveJob:
    """Start :func:`move` in the background and return a :class:`~dicommove.MoveJob` at once.

    Takes the same parameters as :func:`move`. Bad input raises here, before
    anything runs; everything else is raised by ``job.result()``. The session is
    closed when the move ends.

    Examples
    --------
    >>> job = start("ORTHANC@127.0.0.1:4242", cohort, out="data")  # doctest: +SKIP
    >>> job.cancel()  # doctest: +SKIP
    >>> job.result()  # doctest: +SKIP
    Traceback (most recent call last):
    dicommove.errors.MoveCancelled: the move from ORTHANC@127.0.0.1:4242 was cancelled; ...
    """
    session = Session(pacs, **options)
    try:
        return session.start(
            uids,
            strict=strict,
            progress=progress,
            errors=errors,
            resume=resume,
            resolve=resolve,
            batch=batch,
            deadline=deadline,
            close_session=True,
        )
    except BaseException:
        session.close()
        raise


async def amove(
    pacs: str | Node,
    uids: Any,
    *,
    progress: Progress = False,
    strict: bool = True,
    errors: Literal["raise", "ignore"] = "raise",
    resume: bool = False,
    resolve: bool = False,
    batch: int = 1,
    deadline: float | None = None,
    **options: Unpack[SessionOptions],
) -> pd.DataFrame:
    """:func:`move` on the running event loop: ``df = await dicommove.amove(pacs, uids)``.

    Takes the same parameters as :func:`move` (``progress`` is off by default).
    """
    async with AsyncSession(pacs, **options) as session:
        return await session.move(
            uids,
            strict=strict,
            progress=progress,
            errors=errors,
            resume=resume,
            resolve=resolve,
            batch=batch,
            deadline=deadline,
        )


def echo(pacs: str | Node, **options: Unpack[SessionOptions]) -> None:
    """Check that the PACS answers a C-ECHO.

    Raises
    ------
    NetworkError
        With a message that says what failed (connect, reject, no reply).
    """
    with Session(pacs, **options) as session:
        session.echo()


def find(
    pacs: str | Node,
    query: Any,
    *,
    level: str | None = None,
    return_keys: Sequence[str] | None = None,
    max_results: int | None = None,
    **options: Unpack[SessionOptions],
) -> pd.DataFrame:
    """Find patients, studies, series or instances with C-FIND; one row per match.

    What researchers hold (accession numbers, MRNs, date ranges) becomes the unique
    keys that :func:`move` needs.

    Parameters
    ----------
    pacs : str or Node
        The PACS, as ``AE@host:port``.
    query : dict, Query, list of dict or DataFrame
        Matching keys by keyword: single values (``{"AccessionNumber": "A123"}``),
        wildcards (``{"PatientName": "SMITH*"}``), ranges
        (``{"StudyDate": "20240101-20241231"}``) or UID lists. A DataFrame (or a
        list of dicts) is one C-FIND per row, run on ``workers`` associations in
        parallel; an empty cell is a universal match (that row returns the key
        without matching on it), and a row with no value at all is refused (it
        would match everything).
    level : {"PATIENT", "STUDY", "SERIES", "IMAGE"}, optional
        The QueryRetrieveLevel; default the query's own QueryRetrieveLevel, else
        ``"STUDY"``. PATIENT needs ``model="patient"``.
    return_keys : list of str, optional
        The attributes to return, by keyword; default the level's usual ones
        (:data:`dicommove.query.find.DEFAULT_RETURN_KEYS`). The level's unique key
        and the query's own keys are always returned.
    max_results : int, optional
        The most matches the PACS returns per C-FIND, for a PACS that stops there
        without saying so: an answer that long is taken as cut short. A STUDY-level
        query that is cut short (so, or by a PACS that ends it with Cancel, 0xFE00) is
        asked again in narrower parts, by StudyDate (an absent or open range is closed
        first, its open ends asked apart) and then by StudyTime, down to one second,
        until each part returns fewer; the matches are merged and deduplicated.
    **options
        The session's options (``ae_title``, ``model``, ``workers``, ``timeouts``...;
        see :class:`~dicommove.AsyncSession`).

    Returns
    -------
    pandas.DataFrame
        One row per match: ``request`` (the input row's index label, or position;
        0 for a dict), one column per key, typed (dates ``datetime64``, counts
        ``Int64``, decimals ``Float64``, the rest text, several values joined by a
        backslash), and ``problems``: the values that did not parse, with the text
        the PACS sent (their cells are empty), or ``""``.

    Raises
    ------
    QueryError
        For a query that cannot be read; nothing is sent.
    FindError
        When the PACS refused a C-FIND, or cut its matches short (status Cancel,
        0xFE00, as Orthanc does with ``LimitFindResults``, or ``max_results``) and
        the query cannot be narrowed any further; ``.found`` holds the matches
        received.
    NetworkError
        When the PACS cannot be reached or the association breaks.

    Examples
    --------
    >>> df = find("ORTHANC@127.0.0.1:4242", {"AccessionNumber": "A123"})  # doctest: +SKIP
    >>> move("ORTHANC@127.0.0.1:4242", df[["StudyInstanceUID"]])  # doctest: +SKIP
    """
    with Session(pacs, **options) as session:
        return session.find(query, level=level, return_keys=return_keys, max_results=max_results)


def last_manifest() -> pd.DataFrame | None:
    """Return the manifest of the last move that ended in this process, or ``None``.

    Whatever way it ended: completed, failed, cancelled, or interrupted by a Ctrl-C that
    nothing caught (in a notebook, the exception is gone with the cell; this is not).

    Examples
    --------
    >>> df = dicommove.move(pacs, cohort)  # doctest: +SKIP
    KeyboardInterrupt ... MoveInterrupted: the move from ... was interrupted
    >>> df = dicommove.last_manifest()  # doctest: +SKIP
    """
    from .engine.session import last_rows
    from .manifest import build

    rows = last_rows()
    return None if rows is None else build(rows)
