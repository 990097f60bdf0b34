"""Request lists: what the user passed -> validated requests -> the C-MOVEs to send.

:func:`to_requests` reads a query, a UID string, a dict of keys, a list or
tuple of those, or a pandas DataFrame or Series (pandas is imported only for a
pandas input); :func:`plan` folds identical requests and batches siblings.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from ..errors import QueryError
from ._model import (
    _MODEL_LEVELS,
    _QR_LEVEL,
    _UNIQUE_TAGS,
    LEVELS,
    UNIQUE_KEYS,
    Model,
    _check_model,
    _infer_level,
)
from .core import Query
from .selectors import _shown

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Planned", "Request", "plan", "to_requests"]

logger = logging.getLogger("dicommove")


@dataclass(frozen=True)
class Request:
    """One C-MOVE to run, pointing back at the input row(s) it came from.

    Parameters
    ----------
    index : Hashable
        The position in the input list, or the DataFrame / Series index label.
    query : Query
        The identifier to send.
    """

    index: Hashable
    query: Query


@dataclass(frozen=True)
class Planned:
    """A C-MOVE to send, made of one or more input rows (see :func:`plan`).

    Parameters
    ----------
    request : Request
        What to send; its ``index`` is the first input row's label.
    sources : dict
        Retrieve-level UID -> the label of the input row that asked for it (the
        first one, when several identical rows did).
    duplicates : tuple of (label, label)
        Input rows identical to an earlier one, as (its label, the earlier
        row's label): folded into this C-MOVE, not sent again.
    """

    request: Request
    sources: dict[str, Hashable]
    duplicates: tuple[tuple[Hashable, Hashable], ...] = ()


def plan(requests: list[Request], *, batch: int = 1) -> list[Planned]:
    """Fold identical requests and, with ``batch > 1``, group siblings into one C-MOVE.

    Identical requests (same identifier and model) are sent once; the later
    rows are kept as :attr:`Planned.duplicates`. With ``batch=N``, requests at
    the same level that differ only in their retrieve-level UID (rows of the
    same parent: studies of Study Root, series of one study, instances of one
    series) are grouped, in input order, into C-MOVEs listing up to N UIDs
    (PS3.4 C.4.2.2.1 allows a list of UIDs at the retrieve level).

    Parameters
    ----------
    requests : list of Request
        From :func:`to_requests`.
    batch : int
        UIDs per C-MOVE at most (1: one C-MOVE per request).

    Returns
    -------
    list of Planned

    Raises
    ------
    QueryError
        If ``batch`` is not a positive integer.
    """
    if not (isinstance(batch, int) and not isinstance(batch, bool) and batch >= 1):
        raise QueryError(f"batch={batch!r}: use a positive number of UIDs per C-MOVE")
    folded: dict[Query, list[Hashable]] = {}
    for request in requests:
        folded.setdefault(request.query, []).append(request.index)
    singles: list[Planned] = []
    groups: dict[tuple[Any, ...], list[tuple[Query, list[Hashable]]]] = {}
    order: list[tuple[str, Any]] = []  # the output order: singles and groups as first seen
    for query, labels in folded.items():
        level = query.level
        uids = query.retrieve_uids()
        if batch == 1 or level is None or not uids:
            order.append(("single", len(singles)))
            singles.append(_planned(query, labels))
            continue
        tag = _UNIQUE_TAGS[level]
        parent = tuple(
            (t, tuple(v) if isinstance(v, list) else v) for t, v in query.elements if t != tag
        )
        key = (query.information_model, parent)
        if key not in groups:
            groups[key] = []
            order.append(("group", key))
        groups[key].append((query, labels))
    planned: list[Planned] = []
    for kind, ref in order:
        if kind == "single":
            planned.append(singles[ref])
            continue
        chunk: list[tuple[str, Hashable]] = []
        duplicates: list[tuple[Hashable, Hashable]] = []
        first: Query | None = None
        for query, labels in groups[ref]:
            first = first or query
            for uid in query.retrieve_uids():
                chunk.append((uid, labels[0]))
                if len(chunk) == batch:
                    planned.append(_batched(first, chunk, duplicates))
                    chunk, duplicates = [], []
            duplicates.extend((label, labels[0]) for label in labels[1:])
        if chunk:
            assert first is not None
            planned.append(_batched(first, chunk, duplicates))
        elif duplicates:  # the last chunk was flushed full: its rows keep their duplicates
            last = planned[-1]
            planned[-1] = dataclasses.replace(last, duplicates=(*last.duplicates, *duplicates))
    return planned


def _planned(query: Query, labels: list[Hashable]) -> Planned:
    return Planned(
        Request(labels[0], query),
        {uid: labels[0] for uid in query.retrieve_uids()},
        tuple((label, labels[0]) for label in labels[1:]),
    )


def _batched(
    template: Query,
    chunk: list[tuple[str, Hashable]],
    duplicates: list[tuple[Hashable, Hashable]],
) -> Planned:
    level = template.level
    assert level is not None
    uids = [uid for uid, _ in chunk]
    query = template.set(_UNIQUE_TAGS[level], uids if len(uids) > 1 else uids[0])
    return Planned(Request(chunk[0][1], query), dict(chunk), tuple(duplicates))


_ACCEPTED_INPUTS = (
    "a Query, a UID string, a dict of keys, a list or tuple of those, "
    "a pandas DataFrame or a pandas Series"
)


def _unaccepted(obj: object) -> QueryError:
    return QueryError(
        f"cannot make C-MOVE requests of a {type(obj).__name__}: expected {_ACCEPTED_INPUTS}"
    )


def _from_item(item: object, model: Model, context: str) -> Query:
    if isinstance(item, Query):
        return item
    try:
        if isinstance(item, str):
            return Query.patient(item) if model == "patient" else Query.study(item)
        if isinstance(item, Mapping):
            return Query.from_keys(item, model=model)
    except QueryError as exc:
        raise QueryError(f"{context}{exc}") from None
    raise QueryError(
        f"{context}cannot make a C-MOVE request of {_shown(item)}: expected {_ACCEPTED_INPUTS}"
    )


def _is_null(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, (list, tuple)):
        return not value
    if isinstance(value, float):
        return math.isnan(value)
    if "pandas" in sys.modules:
        import pandas as pd

        try:
            return bool(pd.isna(cast(Any, value)))
        except (TypeError, ValueError):
            return False
    return False


def _check_key_column_names(names: Sequence[Hashable], read: Sequence[str]) -> None:
    """Refuse a column that is read, or looks meant to be, but is named twice or padded."""
    for name in names:
        if isinstance(name, str) and name not in read and name.strip() in read:
            raise QueryError(
                f"the DataFrame column {name!r} has blanks around its name, so it would be "
                f"ignored: rename it to {name.strip()!r} (df.columns = df.columns.str.strip())"
            )
    for name in read:
        count = sum(1 for other in names if isinstance(other, str) and other == name)
        if count > 1:  # (not names.count: a pd.NA column name has no truth value)
            raise QueryError(
                f"the DataFrame has {count} columns named {name!r}: keep one "
                "(df.loc[:, ~df.columns.duplicated()]) or rename the others"
            )


def _frame_queries(frame: pd.DataFrame, model: Model) -> list[tuple[Hashable, Query]]:
    levels = _MODEL_LEVELS[model]
    names = list(frame.columns)
    columns = set(names)
    _check_key_column_names(
        names, [*(UNIQUE_KEYS[level] for level in levels), "QueryRetrieveLevel"]
    )
    key_columns = [UNIQUE_KEYS[level] for level in levels if UNIQUE_KEYS[level] in columns]
    accepted = ", ".join([*UNIQUE_KEYS.values(), "QueryRetrieveLevel"])
    if not key_columns:
        if model == "study" and "PatientID" in columns:
            raise QueryError(
                "the DataFrame has a PatientID column but no StudyInstanceUID, "
                "SeriesInstanceUID or SOPInstanceUID column: PatientID is not a key of "
                "Study Root; pass resolve=True (CLI: --resolve) to find the patients' "
                "studies with C-FIND, add the UIDs (dicommove.find), or use model='patient'"
            )
        shown = ", ".join(repr(c) for c in list(frame.columns)[:12])
        raise QueryError(
            f"the DataFrame has no unique-key column: it needs at least one of {accepted} "
            f"(its columns are: {shown or 'none'}). For other keys (AccessionNumber, dates...) "
            "pass resolve=True (CLI: --resolve) to find the UIDs with C-FIND first, or find "
            "them yourself with dicommove.find(pacs, df)"
        )
    if model == "study" and "PatientID" in columns:
        logger.debug("study model: ignoring the PatientID column (not a Study Root key)")
    if frame.empty:
        raise QueryError("no requests: the DataFrame has no rows")
    key_tags = {UNIQUE_KEYS[level]: _UNIQUE_TAGS[level] for level in LEVELS}
    frame_level = _infer_level((key_tags[column] for column in key_columns), model)
    has_level_column = "QueryRetrieveLevel" in columns
    used = [*key_columns, *(["QueryRetrieveLevel"] if has_level_column else [])]
    column_values = {column: frame[column].tolist() for column in used}
    result: list[tuple[Hashable, Query]] = []
    for position, label in enumerate(frame.index):
        context = f"row {label!r}: "
        row_level: object = frame_level
        if has_level_column:
            given = column_values["QueryRetrieveLevel"][position]
            if not _is_null(given):
                row_level = str(given).strip().upper()
        depth = levels.index(row_level) + 1 if row_level in levels else len(levels)
        needed = set(levels[:depth])
        elements: list[tuple[int, Any]] = [(_QR_LEVEL, row_level)]
        for level in levels:
            column = UNIQUE_KEYS[level]
            if column not in column_values:
                continue
            value = column_values[column][position]
            if _is_null(value):
                if level in needed:
                    raise QueryError(
                        f"{context}{column} is empty (null, NaN or blank) but a "
                        f"{row_level}-level C-MOVE needs it: fill it in or drop the row"
                    )
                continue
            elements.append((_UNIQUE_TAGS[level], value))
        try:
            query = Query(tuple(elements), model)
        except QueryError as exc:
            raise QueryError(f"{context}{exc}") from None
        result.append((label, query))
    return result


def _pandas_queries(obj: object, model: Model) -> list[tuple[Hashable, Query]] | None:
    """Return the queries of a pandas object, or ``None`` if it is not one we read."""
    import pandas as pd

    if isinstance(obj, pd.Series):
        name = obj.name
        if name is None:
            name = UNIQUE_KEYS["PATIENT"] if model == "patient" else UNIQUE_KEYS["STUDY"]
        allowed = [UNIQUE_KEYS[level] for level in _MODEL_LEVELS[model]]
        # isinstance first: pd.NA == "PatientID" has no truth value.
        if not isinstance(name, str) or name not in allowed:
            hint = (
                " (PatientID is not a key of Study Root: use model='patient')"
                if isinstance(name, str) and name == "PatientID"
                else ""
            )
            raise QueryError(
                f"a Series is read as one key column, so its name must be one of "
                f"{', '.join(allowed)}; got {name!r}{hint}"
            )
        return _frame_queries(obj.to_frame(name=name), model)
    if isinstance(obj, pd.DataFrame):
        return _frame_queries(obj, model)
    return None


def to_requests(
    obj: Any, *, model: Model = "study", strict: bool = True, relational: bool = False
) -> list[Request]:
    """Turn what the user passed into a list of validated C-MOVE requests.

    Parameters
    ----------
    obj
        One of:

        - a :class:`Query` (index 0), or a list or tuple of them (index = position);
          a query keeps its own information model;
        - a UID string: a STUDY-level query; in the patient model a PatientID
          at PATIENT level; a list or tuple of strings gives one request each;
        - a dict of keys (:meth:`Query.from_keys`), or a list of dicts;
        - a :class:`pandas.DataFrame`: one request per row, ``index`` = the
          row's index label. Only the unique-key columns (PatientID,
          StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID) and
          QueryRetrieveLevel are read; every other column is ignored. The
          level is QueryRetrieveLevel where given, else that of the most
          specific unique-key column. In the study model the PatientID
          column is ignored (it is not a Study Root key);
        - a :class:`pandas.Series`: read as a one-column DataFrame named after
          the Series (unnamed: StudyInstanceUID, or PatientID in the patient
          model); other 1-D pandas or numpy arrays are read as lists.
    model : {'study', 'patient'}
        The information model for inputs that are not already queries.
    strict : bool
        Raise on an invalid identifier if true; otherwise warn
        (:class:`~dicommove.errors.QueryWarning`) and keep it.
    relational : bool
        Accept identifiers without the unique keys above their retrieve level (e.g.
        SOPInstanceUIDs alone): the PACS must accept relational-retrieve.

    Returns
    -------
    list of Request

    Raises
    ------
    QueryError
        If the input is empty or of another type, a needed DataFrame cell is
        empty (naming the row and column), or (strict) an identifier is invalid.
    """
    _check_model(model)
    pairs: list[tuple[Hashable, Query]]
    module = type(obj).__module__ or ""
    if isinstance(obj, (Query, str, Mapping)):
        pairs = [(0, _from_item(obj, model, ""))]
    elif isinstance(obj, (list, tuple)):
        pairs = [(i, _from_item(item, model, f"item {i}: ")) for i, item in enumerate(obj)]
        if not pairs:
            raise QueryError(f"no requests: the {type(obj).__name__} is empty")
    elif module.split(".")[0] in ("pandas", "numpy"):
        frame_pairs = _pandas_queries(obj, model) if module.startswith("pandas") else None
        if frame_pairs is not None:
            pairs = frame_pairs
        elif getattr(obj, "ndim", None) == 1:
            return to_requests(list(obj), model=model, strict=strict, relational=relational)
        else:
            raise _unaccepted(obj)
    else:
        raise _unaccepted(obj)
    if not pairs:
        raise QueryError("no requests: the input holds nothing to move")
    requests: list[Request] = []
    for index, query in pairs:
        if isinstance(obj, (list, tuple)):
            context = f"item {index!r}: "
        elif module.startswith("pandas"):
            context = f"row {index!r}: "
        else:
            context = ""
        query._check(strict, context, stacklevel=2, relational=relational)
        requests.append(Request(index, query))
    logger.debug("built %d C-MOVE request(s)", len(requests))
    return requests
