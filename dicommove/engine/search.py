"""A user's find: C-FINDs in parallel, capped answers narrowed by date, one table.

:func:`search` runs the C-FINDs of :func:`dicommove.find` on the pool, one association
per worker. A PACS that caps its results either says so (it ends the C-FIND with
Cancel, 0xFE00, as Orthanc does with ``LimitFindResults``) or says nothing and stops
at its limit, which the caller then gives as ``max_results``. Either way the capped
query is cut by StudyDate, then StudyTime (:func:`~dicommove.query.window.narrow`),
the parts are asked again, and so on until every part returns fewer than the cap;
the matches are merged and deduplicated. A query that cannot be cut any further
raises :class:`~dicommove.FindError` carrying what did arrive.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .. import _status as st
from ..errors import DicomMoveError, FindError, InputError
from ..node import Node
from ..query import Query
from ..query.find import FindRequest, found_frame
from ..query.window import narrow
from .find import Answer, Finder

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["search"]

logger = logging.getLogger("dicommove")

_HIERARCHICAL_HINT = (
    "Check the keys: a PACS that searches hierarchically (DCMTK dcmqrscp) wants, below "
    "the STUDY level, the unique keys of the levels above (StudyInstanceUID for a SERIES "
    "query) and no other keys of those levels"
)

Found = list[tuple[FindRequest, list[bytes], str]]


def check_max_results(max_results: object) -> int | None:
    """Return ``max_results`` if it is None or a positive int, else raise InputError."""
    if max_results is None:
        return None
    if isinstance(max_results, bool) or not isinstance(max_results, int) or max_results < 1:
        raise InputError(
            f"max_results={max_results!r}: give the most matches the PACS returns per "
            "C-FIND (a positive integer), or None"
        )
    return max_results


async def search(
    finder: Finder,
    keys: Sequence[int],
    requests: Sequence[FindRequest],
    *,
    pacs: Node,
    max_results: int | None = None,
) -> pd.DataFrame:
    """Run the C-FINDs of ``requests`` on the associations ``keys``; return the matches.

    Parameters
    ----------
    max_results : int, optional
        The most matches the PACS returns per C-FIND: an answer that long is taken as
        cut short, and its query narrowed. A PACS that ends a C-FIND with Cancel is
        narrowed without it.

    Raises
    ------
    FindError
        When a C-FIND was refused, or cut short and its query cannot be narrowed
        (not at STUDY level, no StudyDate range, or one second of one day); its
        ``found`` holds every match received.
    NetworkError
        When a C-FIND could not be sent or its association broke.
    """
    pending = list(requests)
    done: Found = []
    narrowed = False
    several = len(requests) > 1
    while pending:
        results = await finder.ask_all(keys, [request.query for request in pending])
        following: list[FindRequest] = []
        for request, result in zip(pending, results, strict=True):
            if result is None:
                continue  # not sent, after an error that is raised below
            if isinstance(result, DicomMoveError):
                raise _with_found(result, done)
            where = f" of row {request.label!r}" if several else ""
            capped = _capped(result, max_results)
            if not capped:
                if st.kind_of(result.status) is not st.Kind.SUCCESS:
                    raise _refused(pacs, request, result, where, done)
                done.append((request, result.matches, result.syntax))
                continue
            parts = narrow(request.query)
            if parts is None:
                done.append((request, result.matches, result.syntax))
                raise _cut_short(pacs, request, result, where, done, narrowed)
            logger.info(
                "C-FIND%s: %d matches, cut short by the PACS; asking again in %d parts (%s)",
                where,
                len(result.matches),
                len(parts),
                ", ".join(_window(part) for part in parts),
            )
            narrowed = True
            following += [FindRequest(request.label, part, request.columns) for part in parts]
        pending = following
    frame = found_frame(done)
    if narrowed:  # a match on a boundary of two parts may be in both
        frame = frame.drop_duplicates(ignore_index=True)
    return frame


def _capped(answer: Answer, max_results: int | None) -> bool:
    kind = st.kind_of(answer.status)
    if kind is st.Kind.CANCEL:
        return True
    return (
        kind is st.Kind.SUCCESS and max_results is not None and len(answer.matches) >= max_results
    )


def _window(query: Query) -> str:
    date, time = query.get("StudyDate"), query.get("StudyTime")
    return f"StudyDate={date}" + (f" StudyTime={time}" if time else "")


def _with_found(error: DicomMoveError, done: Found) -> DicomMoveError:
    if isinstance(error, FindError):
        error.found = found_frame(done)
    return error


def _refused(
    pacs: Node, request: FindRequest, answer: Answer, where: str, done: Found
) -> FindError:
    code, comment = answer.status, answer.comment
    said = f" ({comment})" if comment else ""
    return FindError(
        f"{pacs} refused the C-FIND{where}: {st.describe(code)}{said}. "
        f"{_HIERARCHICAL_HINT}. The query was: {request.query}",
        status=code,
        error_comment=comment,
        found=found_frame(done),
    )


def _cut_short(
    pacs: Node, request: FindRequest, answer: Answer, where: str, done: Found, narrowed: bool
) -> FindError:
    n, code, comment = len(answer.matches), answer.status, answer.comment
    said = f" ({comment})" if comment else ""
    how = (
        "ended the C-FIND with Cancel (0xFE00)"
        if st.kind_of(code) is st.Kind.CANCEL
        else "returned as many matches as max_results"
    )
    if narrowed:
        advice = (
            f"it cannot be narrowed further (the window is {_window(request.query)}): more "
            "matches there than the PACS returns at once"
        )
    else:
        advice = (
            "it caps its results (Orthanc: LimitFindResults), and only a STUDY-level query "
            "whose StudyDate is absent, a date or a range can be narrowed (by StudyDate, then "
            "StudyTime): find the studies first, or narrow the query yourself"
        )
    return FindError(
        f"{pacs} {how}{where} after {n} matches{said}; {advice}. The matches so far are in "
        "the error's .found",
        status=code,
        error_comment=comment,
        found=found_frame(done),
    )
