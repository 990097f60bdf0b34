"""From what researchers hold to what C-MOVE needs: ``move(..., resolve=True)``.

C-MOVE matches on unique keys only. A cohort row that carries other keys (an
AccessionNumber, a PatientID with a StudyDate range, a PatientName wildcard) is
first looked up with C-FIND (:func:`~dicommove.engine.search.search`), at STUDY
level unless the row says otherwise (a QueryRetrieveLevel column), and each match
becomes a C-MOVE request labelled with the row's label, so that every manifest row
points back at the cohort row it came from. A row that matches nothing becomes a
``not_found`` row. Rows that already hold only unique keys are moved as they are.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping
from typing import TYPE_CHECKING, Any

from ..query import LEVELS, UNIQUE_KEYS, Model, Query, Request, to_requests
from ..query.find import FindRequest, find_requests, inputs

if TYPE_CHECKING:
    import pandas as pd

    from .session import AsyncSession

__all__ = ["resolve"]

logger = logging.getLogger("dicommove")

_MOVE_KEYS = frozenset({*UNIQUE_KEYS.values(), "QueryRetrieveLevel", "SpecificCharacterSet"})
_STUDY_ROOT_UIDS = frozenset(UNIQUE_KEYS[level] for level in LEVELS[1:])


def _needs_finding(item: Mapping[Any, Any] | Query, model: Model) -> bool:
    """Whether an input row has a non-empty key that C-MOVE cannot match on.

    In Study Root, PatientID is no C-MOVE key: a row with a PatientID and no UID is
    found first; beside a UID it is ignored, as :func:`~dicommove.query.to_requests`
    does.
    """
    from ..query.plan import _is_null

    pairs = item.keys.items() if isinstance(item, Query) else item.items()
    given = {str(k) for k, v in pairs if not _is_null(v)}
    if model == "study" and "PatientID" in given and not given & _STUDY_ROOT_UIDS:
        return True
    return bool(given - _MOVE_KEYS)


def _move_queries(request: FindRequest, found: pd.DataFrame, model: Model) -> list[Query]:
    """Return the C-MOVE identifiers of one find's matches (unique keys only)."""
    level = request.query.level or "STUDY"
    levels = LEVELS[: LEVELS.index(level) + 1]
    if model == "study":
        levels = levels[1:] if levels[0] == "PATIENT" else levels
    keys = [UNIQUE_KEYS[lv] for lv in levels]
    queries = []
    for values in found[keys].itertuples(index=False, name=None):
        given = {k: v for k, v in zip(keys, values, strict=True) if isinstance(v, str) and v}
        queries.append(Query.from_keys({"QueryRetrieveLevel": level, **given}, model=model))
    return queries


def _described(query: Query) -> str:
    """Return the keys a row was found by: those with a value."""
    shown = [f"{k}={v}" for k, v in query.keys.items() if v is not None and v != ""]
    return ", ".join(shown) or str(query)


def _level_of(item: Mapping[Any, Any] | Query) -> str | None:
    """Return the level to find a row at: its own, its most specific UID's, else ``None``.

    ``None`` lets the find take its default (STUDY): a PatientID alone does not make
    it a PATIENT-level find, as the dates or accession numbers beside it are about
    studies.
    """
    from ..query.plan import _is_null

    if isinstance(item, Query):
        if item.level is not None:
            return item.level
        pairs: Any = item.keys.items()
    else:
        pairs = item.items()
    given = {str(k): v for k, v in pairs if not _is_null(v)}
    if "QueryRetrieveLevel" in given:
        return None  # find_requests reads (and checks) it
    for level in ("IMAGE", "SERIES"):
        if UNIQUE_KEYS[level] in given:
            return level
    return None


async def resolve(
    session: AsyncSession, what: Any, *, strict: bool = True
) -> tuple[list[Request], list[dict[str, Any]]]:
    """Return the C-MOVE requests for ``what``, and a ``not_found`` row per unmatched row.

    Raises
    ------
    QueryError
        For input that cannot be read (nothing is sent).
    FindError, NetworkError
        When a C-FIND fails: nothing is moved.
    """
    from ..query.plan import _is_null

    model = session.model
    requests: list[Request] = []
    finds: list[FindRequest] = []
    labels: list[Hashable] = []
    for label, item in inputs(what):
        if not _needs_finding(item, model):
            if isinstance(item, Query) and item.level is None:
                item = Query.from_keys(item.keys, model=model)  # the level of its keys
            ignored = ("PatientID",) if model == "study" else ()  # as for a DataFrame
            keys = (
                item
                if isinstance(item, Query)
                else {k: v for k, v in item.items() if not _is_null(v) and k not in ignored}
            )
            for request in to_requests(keys, model=model, strict=strict):
                requests.append(Request(label, request.query))
            continue
        (probe,) = find_requests(item, model=model, level=_level_of(item), return_keys=[])
        level = probe.query.level or "STUDY"
        above = LEVELS[: LEVELS.index(level) + 1]
        chain = [UNIQUE_KEYS[lv] for lv in above if lv != "PATIENT" or model == "patient"]
        (asked,) = find_requests(item, model=model, level=level, return_keys=chain)
        finds.append(FindRequest(len(finds), asked.query, asked.columns))
        labels.append(label)
    if not finds:
        return requests, []
    logger.info("resolving %d rows with C-FIND", len(finds))
    found = await session.search(finds)
    unmatched: list[dict[str, Any]] = []
    for position, find in enumerate(finds):
        label = labels[position]
        queries = _move_queries(find, found[found["request"] == position], model)
        if not queries:
            what_level = (find.query.level or "STUDY").lower()
            unmatched.append(
                {
                    "request": label,
                    "status": "not_found",
                    "reason": f"C-FIND found no {what_level} for {_described(find.query)}",
                }
            )
            continue
        for query in queries:
            query._check(strict, f"row {label!r} (a UID the PACS returned for it): ", 2)
            requests.append(Request(label, query))
    logger.info(
        "resolved %d rows: %d C-MOVE requests in all; %d rows matched nothing",
        len(finds),
        len(requests),
        len(unmatched),
    )
    return requests, unmatched
