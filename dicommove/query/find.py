"""C-FIND: the identifiers a find sends, and its answers as a typed table.

A find takes *matching keys* (PS3.4 C.2.2.2): single values such as an
AccessionNumber, wildcards (``*``, ``?``), date and time ranges
(``20240101-20241231``) and UID lists; and *return keys*, asked for empty and
filled in by the PACS. :func:`find_requests` turns a dict, a :class:`Query`, a
list of dicts or a DataFrame (one C-FIND per row) into C-FIND identifiers;
:func:`found_frame` turns the PACS's answers into a DataFrame, one row per match.

Typed columns: dates (DA) and date-times (DT) become ``datetime64``, integer VRs
(IS, US, UL, SS, SL) nullable ``Int64``, decimal ones (DS, FL, FD) ``Float64``;
everything else stays text (several values joined by a backslash, as DICOM writes
them; a time (TM) too). A value that does not parse is ``NaT``/``<NA>`` in its
column, and the ``problems`` column of its row names it with the text the PACS
sent, so nothing is lost.

Nothing here opens a socket; pandas is imported by :func:`found_frame` only, and
pydicom to decode the answers.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .. import _sop
from .._vr import PARSED_VRS, column, parse
from ..errors import QueryError
from ._model import (
    _MODEL_LEVELS,
    _QR_LEVEL,
    _SPECIFIC_CHARACTER_SET,
    LEVELS,
    UNIQUE_KEYS,
    Level,
    Model,
)
from .core import Query
from .plan import _is_null
from .selectors import parse_selector

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DEFAULT_RETURN_KEYS", "FindRequest", "find_requests", "found_frame", "inputs"]

logger = logging.getLogger("dicommove")

#: The return keys asked for when ``return_keys`` is not given, by level. Each level's
#: own attributes only: a PACS that searches hierarchically (dcmqrscp) refuses keys of
#: the levels above other than their unique keys.
DEFAULT_RETURN_KEYS: dict[Level, tuple[str, ...]] = {
    "PATIENT": (
        "PatientID",
        "PatientName",
        "PatientBirthDate",
        "PatientSex",
        "NumberOfPatientRelatedStudies",
    ),
    "STUDY": (
        "PatientID",
        "PatientName",
        "StudyInstanceUID",
        "AccessionNumber",
        "StudyDate",
        "StudyTime",
        "StudyDescription",
        "ModalitiesInStudy",
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
    ),
    "SERIES": (
        "SeriesInstanceUID",
        "Modality",
        "SeriesNumber",
        "SeriesDescription",
        "NumberOfSeriesRelatedInstances",
    ),
    "IMAGE": ("SOPInstanceUID", "SOPClassUID", "InstanceNumber"),
}
# Patient-level attributes are study-level ones in Study Root only.
_PATIENT_ROOT_STUDY = tuple(k for k in DEFAULT_RETURN_KEYS["STUDY"] if not k.startswith("Patient"))
_NOT_COLUMNS = frozenset({_QR_LEVEL, _SPECIFIC_CHARACTER_SET})


class FindRequest:
    """One C-FIND to send: the input row it came from, and its identifier.

    Attributes
    ----------
    label : Hashable
        The input's position, or the DataFrame row's index label (the ``request``
        column of the result).
    query : Query
        The identifier: matching keys with values, return keys empty.
    columns : list of (int, str)
        The tags and keywords of the result's columns, in order.
    """

    __slots__ = ("columns", "label", "query")

    def __init__(self, label: Hashable, query: Query, columns: list[tuple[int, str]]) -> None:
        self.label = label
        self.query = query
        self.columns = columns

    def __repr__(self) -> str:
        return f"FindRequest({self.label!r}, {str(self.query)!r})"


def inputs(what: Any) -> list[tuple[Hashable, Mapping[Any, Any] | Query]]:
    """Return the rows of a find's input as (label, keys or Query) pairs."""
    if isinstance(what, Query):
        return [(0, what)]
    if isinstance(what, Mapping):
        return [(0, what)]
    if isinstance(what, str):
        raise QueryError(
            f"a C-FIND query is a dict of keys, not a string ({what!r}): "
            "pass e.g. {'AccessionNumber': 'A123'}"
        )
    if "pandas" in type(what).__module__:
        import pandas as pd

        if isinstance(what, pd.DataFrame):
            if what.empty:
                raise QueryError("no queries: the DataFrame has no rows")
            columns = [str(c) for c in what.columns]
            keep = [i for i, c in enumerate(columns) if _is_selector(c)]
            if not keep:
                raise QueryError(
                    "the DataFrame has no column named by a DICOM keyword (such as "
                    f"AccessionNumber, PatientID or StudyDate); its columns are: {columns}"
                )
            _check_one_column_per_key([columns[i] for i in keep])
            if len(keep) < len(columns):
                ignored = [c for i, c in enumerate(columns) if i not in keep]
                logger.info("find: ignoring the columns %s (not DICOM keywords)", ignored)
            return [
                (label, {columns[i]: values[i] for i in keep})
                for label, values in zip(
                    what.index, what.itertuples(index=False, name=None), strict=True
                )
            ]
    if isinstance(what, Sequence) and all(isinstance(x, (Mapping, Query)) for x in what):
        if not what:
            raise QueryError("no queries: the list is empty")
        return list(enumerate(what))
    raise QueryError(
        f"cannot read a C-FIND query from a {type(what).__name__}: pass a dict of keys, a "
        "Query, a list of dicts or a DataFrame with one query per row"
    )


def _check_one_column_per_key(names: list[str]) -> None:
    """Refuse two columns naming one attribute (``A`` and ``A``, or ``A`` and its tag)."""
    seen: dict[int, str] = {}
    for name in names:
        tag = parse_selector(name)
        if tag in seen:
            raise QueryError(
                f"the DataFrame has two columns for {_keyword(tag)} ({seen[tag]!r} and "
                f"{name!r}): keep one (df.loc[:, ~df.columns.duplicated()]) or drop the other"
            )
        seen[tag] = name


def _is_selector(text: str) -> bool:
    try:
        parse_selector(text)
    except QueryError:
        return False
    return True


def _level(query: Query, level: str | None, model: Model, context: str) -> Level:
    given = query.level
    raw = query.get("QueryRetrieveLevel")
    if raw and given is None:
        raise QueryError(f"{context}QueryRetrieveLevel={raw!r}: use one of {', '.join(LEVELS)}")
    wanted: Any = level.strip().upper() if isinstance(level, str) else level
    if wanted is not None and wanted not in LEVELS:
        raise QueryError(f"level={level!r}: use one of {', '.join(LEVELS)}")
    if wanted is not None and given is not None and given != wanted:
        raise QueryError(
            f"{context}the query says QueryRetrieveLevel={given} but level={wanted!r} was "
            "passed: drop one of them"
        )
    chosen: Level = given or wanted or "STUDY"
    if chosen not in _MODEL_LEVELS[model]:
        raise QueryError(
            f"{context}{chosen} is not a level of Study Root: use model='patient' "
            "(Patient Root) to find patients"
        )
    return chosen


def _return_keys(
    level: Level, model: Model, return_keys: Sequence[str] | None
) -> list[tuple[int, str]]:
    if return_keys is None:
        patient_root_study = (level, model) == ("STUDY", "patient")
        names: Sequence[str] = (
            _PATIENT_ROOT_STUDY if patient_root_study else DEFAULT_RETURN_KEYS[level]
        )
    elif isinstance(return_keys, str) or not isinstance(return_keys, Iterable):
        example = repr(return_keys) if isinstance(return_keys, str) else "'PatientName'"
        raise QueryError(f"return_keys={return_keys!r}: pass a list of keywords, e.g. [{example}]")
    else:
        names = list(return_keys)
    keys: list[tuple[int, str]] = []
    for name in [*names, UNIQUE_KEYS[level]]:
        tag = parse_selector(str(name))
        if all(tag != t for t, _k in keys):
            keys.append((tag, _keyword(tag)))
    return keys


def _keyword(tag: int) -> str:
    """Return a tag's keyword, or ``ggggeeee`` for a tag without one (a private tag)."""
    from pydicom.datadict import keyword_for_tag

    return keyword_for_tag(tag) or f"{tag:08X}"


def find_requests(
    what: Any,
    *,
    level: str | None = None,
    model: Model = "study",
    return_keys: Sequence[str] | None = None,
) -> list[FindRequest]:
    """Turn user input into C-FIND requests; nothing is sent.

    Parameters
    ----------
    what : dict, Query, list of dict or DataFrame
        Matching keys by keyword (or any selector form). In a DataFrame each row is
        one C-FIND and each column named by a DICOM keyword a key (other columns,
        such as your own case ids, are ignored); an empty cell (None, NaN, blank)
        is a universal match: that row returns the key without matching on it.
    level : str, optional
        The QueryRetrieveLevel; default the query's own, else ``"STUDY"``.
    model : {'study', 'patient'}
        Study Root or Patient Root.
    return_keys : list of str, optional
        The keys to return, by keyword; default :data:`DEFAULT_RETURN_KEYS`. The
        level's unique key is always returned.

    Raises
    ------
    QueryError
        For input that cannot be read, an unknown keyword or level, or a row whose
        keys are all empty (it would match everything on the PACS).
    """
    if model == "composite":
        raise QueryError(
            "Composite Instance Root has no C-FIND: find in Study Root or Patient Root "
            "(model='study' or 'patient'), then move the SOPInstanceUIDs found"
        )
    requests: list[FindRequest] = []
    single = isinstance(what, (Mapping, Query))
    noun = "item" if isinstance(what, Sequence) else "row"
    for label, item in inputs(what):
        context = "" if single else f"{noun} {label!r}: "
        if isinstance(item, Query):
            query = item.model(model) if item.information_model != model else item
        else:
            pairs = [(key, None if _is_null(value) else value) for key, value in item.items()]
            try:
                query = Query(tuple(pairs), model)
            except QueryError as exc:
                raise QueryError(f"{context}{exc}") from None
        chosen = _level(query, level, model, context)
        matching = [(t, v) for t, v in query.elements if t not in _NOT_COLUMNS and v is not None]
        if not matching:
            raise QueryError(
                f"{context}no matching key has a value: a C-FIND of empty keys matches "
                "everything on the PACS. Give one (e.g. AccessionNumber, PatientID, a "
                "StudyDate range, or '*') or drop the row"
            )
        columns = _return_keys(chosen, model, return_keys)
        for tag, _value in query.elements:
            if tag not in _NOT_COLUMNS and all(tag != t for t, _k in columns):
                columns.append((tag, _keyword(tag)))
        query = query.set(_QR_LEVEL, chosen)
        for tag, _name in columns:
            if all(tag != t for t, _v in query.elements):
                query = query.set(tag, None)
        requests.append(FindRequest(label, query, columns))
    return requests


def _decode(matches: Iterable[bytes], syntax: str) -> list[Any]:
    from io import BytesIO

    from pydicom.filereader import read_dataset

    implicit = syntax == _sop.IMPLICIT_VR_LE
    return [read_dataset(BytesIO(raw), implicit, True) for raw in matches]


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(_text(v) for v in value)
    if isinstance(value, bytes):
        return value.decode("ascii", "replace").strip(" \x00")
    return str(value).strip()


def _element_text(ds: Any, tag: int, vr: str) -> str:
    """Return an element's value as text; numbers and dates from their bytes, unvalidated."""
    raw = ds.get_item(tag)
    if raw is None:
        return ""
    if vr in PARSED_VRS and isinstance(raw.value, bytes):
        return _text(raw.value)
    return _text(ds[tag].value)


def found_frame(answers: Sequence[tuple[FindRequest, list[bytes], str]]) -> pd.DataFrame:
    """Return one DataFrame row per match, typed, with ``request`` and ``problems``.

    Parameters
    ----------
    answers : list of (FindRequest, matches, transfer syntax)
        Each request with the identifiers the PACS returned for it.
    """
    import pandas as pd
    from pydicom.datadict import dictionary_VR

    columns: list[tuple[int, str]] = []
    for request, _m, _s in answers:
        columns += [c for c in request.columns if c not in columns]
    vrs: dict[int, str] = {}
    for tag, _keyword in columns:
        try:
            vrs[tag] = dictionary_VR(tag)
        except KeyError:
            vrs[tag] = "UN"
    labels: list[Hashable] = []
    values: dict[str, list[Any]] = {keyword: [] for _tag, keyword in columns}
    problems: list[str] = []
    for request, matches, syntax in answers:
        for ds in _decode(matches, syntax):
            labels.append(request.label)
            wrong: list[str] = []
            for tag, keyword in columns:
                text = _element_text(ds, tag, vrs[tag])
                value, parsed = parse(vrs[tag], text)
                if not parsed:
                    wrong.append(f"{keyword}={text!r} is not a valid {vrs[tag]}")
                values[keyword].append(value)
            problems.append("; ".join(wrong))
    data: dict[str, Any] = {"request": labels}
    for tag, keyword in columns:
        data[keyword] = column(vrs[tag], values[keyword])
    data["problems"] = problems
    frame: pd.DataFrame = pd.DataFrame(data)
    return frame
