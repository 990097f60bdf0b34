"""C-MOVE identifiers: selectors, query files, validation and request lists.

This module turns what a user writes into the identifier of a C-MOVE request,
and checks that identifier before anything is sent. It opens no socket.

Selectors follow DICOM-rs ``dicom-movescu``: a standard tag as ``(gggg,eeee)``,
``gggg,eeee`` or ``ggggeeee`` (hexadecimal, any case), or a keyword such as
``StudyInstanceUID``. Tags and VRs come from :mod:`pydicom.datadict`. An
assignment is ``selector=value``; an empty value (or no ``=`` at all) asks for
an empty element, a backslash separates multiple values, and everything after
the first ``=`` is the value. Surrounding spaces of the selector and of each
value are dropped (they are padding in DICOM).

A query is built from up to three sources, each extending and overriding the
previous one tag by tag, as in ``dicom-movescu``:

1. a DICOM query object file (:func:`read_query_dataset`),
2. a query text file (:func:`read_query_file`),
3. the ``-q`` assignments (:func:`parse_assignment`).

Validation follows PS3.4 C.4.2.2.1 (baseline behaviour of the C-MOVE SCU): the
identifier holds the Query/Retrieve Level and the unique keys of the levels
from the top of the information model down to that level, nothing else
(Specific Character Set is also accepted, PS3.4 C.4.2.1.4.1).

==========  ====================  ==================  ========================
Level       Unique key            Study Root          Patient Root
==========  ====================  ==================  ========================
PATIENT     PatientID             (no such level)     PatientID
STUDY       StudyInstanceUID      StudyInstanceUID    + PatientID
SERIES      SeriesInstanceUID     + StudyInstanceUID  + PatientID, Study
IMAGE       SOPInstanceUID        + Study, Series     + PatientID, Study, Series
==========  ====================  ==================  ========================

Examples
--------
>>> q = Query.study("1.2.840.113619.2.1")
>>> str(q)
'STUDY StudyInstanceUID=1.2.840.113619.2.1'
>>> q.problems()
[]
>>> selectors = ["QueryRetrieveLevel=SERIES", "0020000D=1.2", "(0020,000E)=1.3"]
>>> q = Query.from_sources(selectors=selectors)
>>> str(q)
'SERIES StudyInstanceUID=1.2 SeriesInstanceUID=1.3'
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import math
import numbers
import os
import re
import sys
import warnings
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TypeAlias, cast

from pydicom import config as _pydicom_config
from pydicom import datadict, dcmread
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import DSfloat

from .errors import QueryError, QueryWarning

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "LEVELS",
    "UNIQUE_KEYS",
    "Level",
    "Model",
    "Planned",
    "Query",
    "Request",
    "Value",
    "parse_assignment",
    "parse_selector",
    "plan",
    "read_query_dataset",
    "read_query_file",
    "to_requests",
]

logger = logging.getLogger("dicommove")

Level: TypeAlias = Literal["PATIENT", "STUDY", "SERIES", "IMAGE"]
Model: TypeAlias = Literal["study", "patient"]

#: The Query/Retrieve levels, from the top of the hierarchy down.
LEVELS: tuple[Level, ...] = ("PATIENT", "STUDY", "SERIES", "IMAGE")

#: The unique key of each level, by keyword (PS3.4 C.6.1.1 and C.6.2.1).
UNIQUE_KEYS: dict[Level, str] = {
    "PATIENT": "PatientID",
    "STUDY": "StudyInstanceUID",
    "SERIES": "SeriesInstanceUID",
    "IMAGE": "SOPInstanceUID",
}

#: The value of one element: ``None`` is an empty element (universal match).
Value: TypeAlias = str | int | float | list[str] | list[int] | list[float] | None

_MODELS: tuple[Model, ...] = ("study", "patient")
_MODEL_LEVELS: dict[Model, tuple[Level, ...]] = {
    "study": ("STUDY", "SERIES", "IMAGE"),
    "patient": LEVELS,
}
_MODEL_NAMES: dict[Model, str] = {"study": "Study Root", "patient": "Patient Root"}

_QR_LEVEL = 0x00080052
_SPECIFIC_CHARACTER_SET = 0x00080005
_PATIENT_ID = 0x00100020
_UNIQUE_TAGS: dict[Level, int] = {
    "PATIENT": _PATIENT_ID,
    "STUDY": 0x0020000D,
    "SERIES": 0x0020000E,
    "IMAGE": 0x00080018,
}
_LEVEL_OF_TAG: dict[int, Level] = {tag: level for level, tag in _UNIQUE_TAGS.items()}
# Besides the level and the unique keys, a C-MOVE identifier may carry the
# Specific Character Set (PS3.4 C.4.2.1.4.1) when a value needs it.
_ALLOWED_EXTRA_TAGS = frozenset({_SPECIFIC_CHARACTER_SET})

_HEX_FORMS = (
    re.compile(r"^\(\s*([0-9A-Fa-f]{4})\s*,\s*([0-9A-Fa-f]{4})\s*\)$"),
    re.compile(r"^([0-9A-Fa-f]{4})\s*,\s*([0-9A-Fa-f]{4})$"),
    re.compile(r"^([0-9A-Fa-f]{4})([0-9A-Fa-f]{4})$"),
)
_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_INT_RE = re.compile(r"^[+-]?[0-9]+$")
_FLOAT_RE = re.compile(r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$")

_INT_RANGES: dict[str, tuple[int, int]] = {
    "IS": (-(2**31), 2**31 - 1),
    "SS": (-(2**15), 2**15 - 1),
    "SL": (-(2**31), 2**31 - 1),
    "SV": (-(2**63), 2**63 - 1),
    "US": (0, 2**16 - 1),
    "UL": (0, 2**32 - 1),
    "UV": (0, 2**64 - 1),
}
_FLOAT_VRS = frozenset({"DS", "FL", "FD"})
# Single-valued text VRs in which a backslash is an ordinary character.
_TEXT_VRS = frozenset({"LT", "ST", "UT", "UR"})
_REFUSED_VRS: dict[str, str] = {
    "SQ": "a sequence cannot be matched in a C-MOVE identifier",
    "OB": "binary values cannot be matched in a query",
    "OW": "binary values cannot be matched in a query",
    "OD": "binary values cannot be matched in a query",
    "OF": "binary values cannot be matched in a query",
    "OL": "binary values cannot be matched in a query",
    "OV": "binary values cannot be matched in a query",
    "UN": "values of unknown VR cannot be matched in a query",
    "AT": "attribute-tag values are not supported in a query",
    "NONE": "it is an item delimiter, not an attribute",
}
_SELECTOR_FORMS = (
    "a keyword such as StudyInstanceUID, or a tag as (gggg,eeee), gggg,eeee or ggggeeee"
)
_NO_STRICT_HINT = "pass strict=False (--no-strict) to send it as given"


# --------------------------------------------------------------------------- selectors


class _TagInfo(NamedTuple):
    """What we need to know of a dictionary tag."""

    tag: int
    keyword: str
    vr: str  # the dictionary VR, possibly "US or SS"
    kind: Literal["int", "float", "str", "text"]
    low: int
    high: int


def _tag_text(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _tag_name(tag: int) -> str:
    """``Keyword (gggg,eeee)``, or just the tag when it has no keyword."""
    info = _tag_info(tag)
    return f"{info.keyword} {_tag_text(tag)}" if info.keyword else _tag_text(tag)


@lru_cache(maxsize=4096)
def _tag_info(tag: int) -> _TagInfo:
    """Look a tag up in pydicom's dictionary, refusing what cannot go in an identifier."""
    shown = _tag_text(tag)
    group, element = tag >> 16, tag & 0xFFFF
    if group == 0x0000:
        raise QueryError(f"{shown} is a command element, not an identifier attribute")
    if group == 0x0002:
        raise QueryError(f"{shown} is a file meta element, not an identifier attribute")
    if group % 2:
        raise QueryError(
            f"{shown} is a private tag: only standard attributes from pydicom's data "
            "dictionary can be used in a query"
        )
    if element == 0x0000:
        raise QueryError(f"{shown} is a group length, not an attribute")
    try:
        vr, _vm, _name, _retired, keyword = datadict.get_entry(tag)
    except KeyError:
        raise QueryError(
            f"unknown tag {shown}: it is not in pydicom's DICOM data dictionary; "
            f"use a standard attribute ({_SELECTOR_FORMS})"
        ) from None
    named = f"{keyword} {shown}" if keyword else shown
    options = vr.split(" or ")
    for option in options:
        if option in _REFUSED_VRS:
            raise QueryError(
                f"{named} has VR {vr} and cannot be used as a query key: {_REFUSED_VRS[option]}"
            )
    if all(option in _INT_RANGES for option in options):
        return _TagInfo(
            tag,
            keyword,
            vr,
            "int",
            min(_INT_RANGES[o][0] for o in options),
            max(_INT_RANGES[o][1] for o in options),
        )
    if all(option in _FLOAT_VRS for option in options):
        return _TagInfo(tag, keyword, vr, "float", 0, 0)
    if any(option in _INT_RANGES or option in _FLOAT_VRS for option in options):
        raise QueryError(f"{named} has the ambiguous VR {vr} and cannot be used as a query key")
    kind: Literal["str", "text"] = "text" if vr in _TEXT_VRS else "str"
    return _TagInfo(tag, keyword, vr, kind, 0, 0)


@lru_cache(maxsize=1)
def _keywords() -> tuple[list[str], dict[str, str]]:
    names = sorted(k for k in datadict.keyword_dict if k)
    return names, {name.lower(): name for name in names}


def _unknown_keyword(text: str) -> QueryError:
    _names, by_lower = _keywords()
    if text in datadict.REPEATER_KEYWORDS:
        return QueryError(
            f"{text!r} is a repeating-group attribute: give its tag in hexadecimal, "
            "such as (6000,0010)"
        )
    suggestions: list[str] = []
    if text.lower() in by_lower:
        suggestions.append(by_lower[text.lower()])
    for match in difflib.get_close_matches(text.lower(), list(by_lower), n=3, cutoff=0.75):
        if by_lower[match] not in suggestions:
            suggestions.append(by_lower[match])
    if suggestions:
        return QueryError(
            f"unknown attribute keyword {text!r}: did you mean {' or '.join(suggestions[:3])}?"
        )
    return QueryError(f"unknown attribute {text!r}: use {_SELECTOR_FORMS}")


def parse_selector(text: str) -> int:
    """Resolve a selector to its tag.

    Parameters
    ----------
    text : str
        ``(gggg,eeee)``, ``gggg,eeee`` or ``ggggeeee`` in hexadecimal (any case),
        or a keyword of pydicom's data dictionary such as ``StudyInstanceUID``.

    Returns
    -------
    int
        The tag, for example ``0x0020000D``.

    Raises
    ------
    QueryError
        If the selector is malformed, unknown (with close keywords suggested),
        private, or names an attribute that cannot be a query key (VR SQ, OB,
        OW, OD, OF, OL, OV, UN or AT).

    Examples
    --------
    >>> hex(parse_selector("(0020,000d)"))
    '0x20000d'
    >>> parse_selector("StudyInstanceUID") == parse_selector("0020000D")
    True
    """
    if not isinstance(text, str):
        raise QueryError(f"expected a selector string, got {text!r}")
    stripped = text.strip()
    if not stripped:
        raise QueryError(f"empty selector: use {_SELECTOR_FORMS}")
    tag: int | None = None
    for form in _HEX_FORMS:
        match = form.match(stripped)
        if match:
            tag = int(match.group(1) + match.group(2), 16)
            break
    if tag is None:
        if "." in stripped or "[" in stripped or "/" in stripped:
            raise QueryError(
                f"selector {text!r} is a path into a sequence: a C-MOVE identifier holds "
                f"no sequences, so use a single attribute ({_SELECTOR_FORMS})"
            )
        if stripped.isidentifier():
            tag = datadict.tag_for_keyword(stripped)
            if tag is None:
                raise _unknown_keyword(stripped)
        else:
            raise QueryError(f"cannot read selector {text!r}: use {_SELECTOR_FORMS}")
    _tag_info(tag)
    return int(tag)


def _resolve(selector: str | int) -> int:
    if isinstance(selector, bool):
        raise QueryError(f"expected a selector, got {selector!r}")
    if isinstance(selector, int):
        if not 0 <= selector <= 0xFFFFFFFF:
            raise QueryError(f"tag {selector!r} is out of range")
        _tag_info(selector)
        return selector
    return parse_selector(selector)


# --------------------------------------------------------------------------- values


def _bad_value(info: _TagInfo, wants: str, got: object) -> QueryError:
    return QueryError(
        f"invalid value for {_tag_name(info.tag)}: VR {info.vr} wants {wants}, got {got!r}"
    )


def _int_wanted(info: _TagInfo) -> str:
    return f"an integer from {info.low} to {info.high}"


def _typed_text(info: _TagInfo, part: str) -> str | int | float:
    """Type one stripped text component by the VR."""
    if info.kind == "int":
        if not _INT_RE.match(part):
            raise _bad_value(info, _int_wanted(info), part)
        number = int(part)
        if not info.low <= number <= info.high:
            raise _bad_value(info, _int_wanted(info), part)
        return number
    if info.kind == "float":
        if not _FLOAT_RE.match(part):
            raise _bad_value(info, "a decimal number such as 1.5 or -2e3", part)
        result = float(part)
        if not math.isfinite(result):
            raise _bad_value(info, "a finite decimal number", part)
        return result
    if info.tag == _QR_LEVEL:
        return part.upper()
    return part


def _typed_scalar(info: _TagInfo, value: object) -> str | int | float:
    """Type one Python scalar by the VR (no splitting on backslashes)."""
    if isinstance(value, bool):
        raise _bad_value(info, "a string or number, not a boolean", value)
    if isinstance(value, str):
        part = value.strip()
        if "\\" in part and info.kind != "text":
            raise _bad_value(info, "one value per list item (no backslash)", value)
        return _typed_text(info, part)
    if isinstance(value, numbers.Integral):
        number = int(value)
        if info.kind == "int":
            if not info.low <= number <= info.high:
                raise _bad_value(info, _int_wanted(info), value)
            return number
        if info.kind == "float":
            return float(number)
        return str(number)
    if isinstance(value, numbers.Real):
        real = float(value)
        if not math.isfinite(real):
            raise _bad_value(info, "a value, not NaN or infinity (a missing value?)", value)
        if info.kind == "int":
            if not real.is_integer():
                raise _bad_value(info, _int_wanted(info), value)
            return _typed_scalar(info, int(real))
        if info.kind == "float":
            return real
        # A string attribute given as a float, as pandas does to integer
        # columns holding NaN: 123.0 means "123".
        return str(int(real)) if real.is_integer() else repr(real)
    raise _bad_value(info, "a string, a number or a list of them", value)


def _collect(items: Sequence[str | int | float]) -> Value:
    if not items:
        return None
    if len(items) == 1:
        return items[0]
    return cast(Value, list(items))


def _coerce(tag: int, value: object) -> Value:
    """Type a value for ``tag``: text is split on backslashes and parsed by VR."""
    info = _tag_info(tag)
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if info.kind == "text":
            return text
        return _collect([_typed_text(info, part.strip()) for part in text.split("\\")])
    if isinstance(value, (list, tuple)):
        if any(item is None for item in value):
            raise _bad_value(info, "no missing (None) items in a list of values", value)
        return _collect([_typed_scalar(info, item) for item in value])
    return _typed_scalar(info, value)


def _value_text(value: Value) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return "\\".join(str(item) for item in value)
    return str(value)


def parse_assignment(text: str) -> tuple[int, Value]:
    r"""Parse ``selector=value`` into a tag and a value typed by the tag's VR.

    Parameters
    ----------
    text : str
        ``selector=value``; without ``=``, or with an empty value, the element
        is empty (a universal match). Only the first ``=`` splits, so the value
        may contain ``=``. A backslash separates multiple values. Integer VRs
        (IS, SS, SL, SV, US, UL, UV) give :class:`int`, DS, FL and FD give
        :class:`float`, other VRs :class:`str`.

    Returns
    -------
    tuple of (int, Value)
        The tag and the value: ``None``, a scalar, or a list for several values.

    Raises
    ------
    QueryError
        If the selector is invalid or the value does not suit the VR.

    Examples
    --------
    >>> parse_assignment("QueryRetrieveLevel=STUDY")
    (524370, 'STUDY')
    >>> parse_assignment("StudyInstanceUID=1.2\\1.3")
    (2097165, ['1.2', '1.3'])
    >>> parse_assignment("PatientName")
    (1048592, None)
    """
    if not isinstance(text, str):
        raise QueryError(f"expected 'selector=value', got {text!r}")
    selector, _sep, raw = text.partition("=")
    try:
        tag = parse_selector(selector)
        return tag, _coerce(tag, raw)
    except QueryError as exc:
        raise QueryError(f"in {text!r}: {exc}") from None


def read_query_file(path: str | os.PathLike[str]) -> list[tuple[int, Value]]:
    """Read a query text file of ``selector=value`` lines.

    Blank lines and lines starting with ``#`` are skipped; every other line is
    read by :func:`parse_assignment`. The file is UTF-8 (a byte order mark is
    allowed).

    Parameters
    ----------
    path : str or os.PathLike
        The query file.

    Returns
    -------
    list of (int, Value)
        The assignments in file order (a later one for the same tag wins when
        they are applied).

    Raises
    ------
    QueryError
        If the file cannot be read, or a line is invalid; the message starts
        with ``file:line:``.
    """
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8-sig") as stream:
            lines = stream.read().splitlines()
    except OSError as exc:
        raise QueryError(f"cannot read query file {name}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise QueryError(f"cannot read query file {name}: it is not UTF-8 text ({exc})") from None
    result: list[tuple[int, Value]] = []
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            result.append(parse_assignment(stripped))
        except QueryError as exc:
            raise QueryError(f"{name}:{number}: {exc}") from None
    logger.debug("read %d query assignments from %s", len(result), name)
    return result


def _dataset_value(element: DataElement) -> object:
    """Return a pydicom element value as plain Python: str, int, float, list or None."""
    value = element.value
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        raise QueryError(f"{_tag_name(element.tag)} holds undecoded bytes")
    if isinstance(value, (list, MultiValue)):
        return [_plain(item) for item in value]
    return _plain(value)


def _plain(item: object) -> object:
    if isinstance(item, (str, int, float)):
        return item
    return str(item)  # PersonName and other value representations


def read_query_dataset(path: str | os.PathLike[str]) -> list[tuple[int, Value]]:
    """Read the elements of a DICOM query object file.

    The file is read with :func:`pydicom.dcmread` and ``force=True``, so it may
    lack the preamble and file meta information. Group length elements are
    skipped.

    Parameters
    ----------
    path : str or os.PathLike
        The DICOM dataset file.

    Returns
    -------
    list of (int, Value)
        The elements, typed as :func:`parse_assignment` types them.

    Raises
    ------
    QueryError
        If the file cannot be read, or holds an element that cannot be a query
        key (a sequence, binary or private element).
    """
    name = os.fspath(path)
    try:
        dataset = dcmread(name, force=True)
    except OSError as exc:
        raise QueryError(f"cannot read DICOM query file {name}: {exc.strerror or exc}") from None
    except Exception as exc:  # pydicom raises many kinds on malformed input
        raise QueryError(f"cannot read DICOM query file {name}: {exc}") from None
    result: list[tuple[int, Value]] = []
    try:
        for element in dataset:
            tag = int(element.tag)
            if tag & 0xFFFF == 0 and tag >> 16 not in (0x0000, 0x0002):
                continue  # group length: an encoding detail
            _tag_info(tag)
            result.append((tag, _coerce(tag, _dataset_value(element))))
    except QueryError as exc:
        # Garbage read with force=True fails on its first element.
        hint = (
            ""
            if result
            else " (is it a DICOM dataset file? a text file of 'selector=value' lines "
            "is a query file)"
        )
        raise QueryError(f"{name}: {exc}{hint}") from None
    except Exception as exc:  # a value pydicom cannot convert
        raise QueryError(f"cannot read DICOM query file {name}: {exc}") from None
    if not result:
        raise QueryError(f"{name}: no data elements found: is it a DICOM dataset file?")
    logger.debug("read %d query elements from %s", len(result), name)
    return result


# --------------------------------------------------------------------------- Query


def _infer_level(tags: Iterable[int], model: Model) -> Level | None:
    present = set(tags)
    for level in reversed(_MODEL_LEVELS[model]):
        if _UNIQUE_TAGS[level] in present:
            return level
    return None


def _check_model(model: object) -> Model:
    if model not in _MODELS:
        raise QueryError(
            f"unknown information model {model!r}: use 'study' (Study Root, -S) "
            "or 'patient' (Patient Root, -P)"
        )
    return model


def _uid_problems(keyword: str, uid: str) -> list[str]:
    if len(uid) > 64:
        return [f"{keyword} {uid!r} is {len(uid)} characters long; a UID has at most 64"]
    if not _UID_RE.match(uid):
        return [
            f"{keyword} {uid!r} is not a valid UID: use digits separated by single dots, "
            "such as 1.2.840.10008.1"
        ]
    if any(len(part) > 1 and part.startswith("0") for part in uid.split(".")):
        return [
            f"{keyword} {uid!r} is not a valid UID: a component other than a lone 0 "
            "cannot start with 0 (PS3.5 9.1)"
        ]
    return []


def _copy(value: Value) -> Value:
    return value.copy() if isinstance(value, list) else value


def _items(value: Value) -> list[str | int | float]:
    if value is None:
        return []
    if isinstance(value, list):
        return list(value)
    return [value]


@dataclass(frozen=True)
class Query:
    r"""Immutable, fluent C-MOVE identifier.

    Build one with :meth:`study`, :meth:`series`, :meth:`image`,
    :meth:`patient`, :meth:`from_keys` or :meth:`from_sources`, and refine it
    with :meth:`where`, :meth:`set`, :meth:`without` and :meth:`model`; each
    returns a new query.

    Parameters
    ----------
    elements : tuple of (int, Value)
        The identifier's elements. They are typed by VR, sorted by tag and
        deduplicated (the last one for a tag wins) on construction. Treat the
        lists in it as read-only.
    information_model : {'study', 'patient'}
        Study Root (the default) or Patient Root.

    Examples
    --------
    >>> q = Query.series("1.2.3", "1.2.3.4")
    >>> q.level, q.retrieve_uids()
    ('SERIES', ['1.2.3.4'])
    >>> str(q.where(SeriesInstanceUID=["1.2.3.4", "1.2.3.5"]))
    'SERIES StudyInstanceUID=1.2.3 SeriesInstanceUID=1.2.3.4\\1.2.3.5'
    """

    elements: tuple[tuple[int, Value], ...] = ()
    information_model: Model = "study"

    def __post_init__(self) -> None:
        _check_model(self.information_model)
        merged: dict[int, Value] = {}
        for pair in self.elements:
            try:
                selector, value = pair
            except (TypeError, ValueError):
                raise QueryError(f"expected (tag, value) pairs, got {pair!r}") from None
            tag = _resolve(selector)
            merged[tag] = _coerce(tag, value)
        object.__setattr__(self, "elements", tuple(sorted(merged.items())))

    def __hash__(self) -> int:
        frozen = tuple(
            (tag, tuple(value) if isinstance(value, list) else value)
            for tag, value in self.elements
        )
        return hash((frozen, self.information_model))

    # ------------------------------------------------------------ construction

    @classmethod
    def study(cls, *study_uids: str) -> Query:
        """Make a STUDY-level query (Study Root) for one or more StudyInstanceUIDs."""
        elements: list[tuple[int, Value]] = [(_QR_LEVEL, "STUDY")]
        if study_uids:
            elements.append((_UNIQUE_TAGS["STUDY"], list(study_uids)))
        return cls(tuple(elements))

    @classmethod
    def series(cls, study_uid: str, *series_uids: str) -> Query:
        """Make a SERIES-level query (Study Root): one study, one or more series."""
        elements: list[tuple[int, Value]] = [
            (_QR_LEVEL, "SERIES"),
            (_UNIQUE_TAGS["STUDY"], study_uid),
        ]
        if series_uids:
            elements.append((_UNIQUE_TAGS["SERIES"], list(series_uids)))
        return cls(tuple(elements))

    @classmethod
    def image(cls, study_uid: str, series_uid: str, *sop_uids: str) -> Query:
        """Make an IMAGE-level query (Study Root): one study, one series, one or more instances."""
        elements: list[tuple[int, Value]] = [
            (_QR_LEVEL, "IMAGE"),
            (_UNIQUE_TAGS["STUDY"], study_uid),
            (_UNIQUE_TAGS["SERIES"], series_uid),
        ]
        if sop_uids:
            elements.append((_UNIQUE_TAGS["IMAGE"], list(sop_uids)))
        return cls(tuple(elements))

    @classmethod
    def patient(cls, *patient_ids: str) -> Query:
        """Make a PATIENT-level query (Patient Root).

        Validation accepts exactly one PatientID; build one query per patient.
        """
        elements: list[tuple[int, Value]] = [(_QR_LEVEL, "PATIENT")]
        if patient_ids:
            elements.append((_PATIENT_ID, list(patient_ids)))
        return cls(tuple(elements), "patient")

    @classmethod
    def from_keys(cls, keys: Mapping[str, Any], *, model: Model = "study") -> Query:
        """Build a query from a mapping of selectors to values.

        Parameters
        ----------
        keys : Mapping
            Keys are keywords or any selector form; values are strings (split
            on backslashes), numbers, lists of them, or ``None`` (empty).
        model : {'study', 'patient'}
            The information model.

        Returns
        -------
        Query
            When ``keys`` has no QueryRetrieveLevel, the level of the most
            specific unique key present is set (PatientID counts in the patient
            model only).

        Examples
        --------
        >>> str(Query.from_keys({"StudyInstanceUID": "1.2", "SeriesInstanceUID": "1.3"}))
        'SERIES StudyInstanceUID=1.2 SeriesInstanceUID=1.3'
        """
        _check_model(model)
        if not isinstance(keys, Mapping):
            raise QueryError(f"expected a mapping of keywords to values, got {keys!r}")
        elements = [(_resolve(key), value) for key, value in keys.items()]
        tags = [tag for tag, _value in elements]
        if _QR_LEVEL not in tags:
            level = _infer_level(tags, model)
            if level is not None:
                elements.append((_QR_LEVEL, level))
        return cls(tuple(elements), model)

    @classmethod
    def from_sources(
        cls,
        *,
        dataset_file: str | os.PathLike[str] | None = None,
        query_file: str | os.PathLike[str] | None = None,
        selectors: Sequence[str] = (),
        model: Model = "study",
    ) -> Query:
        """Build a query as ``dicom-movescu`` does, from up to three sources.

        Each source extends and overrides the previous one, tag by tag: the
        DICOM query object file, then the query text file, then the ``-q``
        assignments. Nothing is inferred: a missing QueryRetrieveLevel is left
        for :meth:`validate` to report.

        Parameters
        ----------
        dataset_file : str or os.PathLike, optional
            A DICOM query object file (:func:`read_query_dataset`).
        query_file : str or os.PathLike, optional
            A query text file (:func:`read_query_file`).
        selectors : sequence of str
            ``selector=value`` assignments (:func:`parse_assignment`).
        model : {'study', 'patient'}
            The information model.

        Returns
        -------
        Query
        """
        _check_model(model)
        if isinstance(selectors, str):
            selectors = [selectors]
        elements: list[tuple[int, Value]] = []
        if dataset_file is not None:
            elements.extend(read_query_dataset(dataset_file))
        if query_file is not None:
            elements.extend(read_query_file(query_file))
        elements.extend(parse_assignment(text) for text in selectors)
        return cls(tuple(elements), model)

    # ------------------------------------------------------------ refinement

    def _with(self, updates: Iterable[tuple[int, Any]]) -> Query:
        return dataclasses.replace(self, elements=(*self.elements, *updates))

    def where(self, **keys: Any) -> Query:
        """Return a copy with elements added or overridden, by keyword.

        Examples
        --------
        >>> str(Query.study("1.2").where(StudyInstanceUID="1.3"))
        'STUDY StudyInstanceUID=1.3'
        """
        return self._with((parse_selector(keyword), value) for keyword, value in keys.items())

    def set(self, selector: str | int, value: Any) -> Query:
        """Return a copy with one element, given by any selector form or tag, set."""
        return self._with([(_resolve(selector), value)])

    def without(self, *selectors: str | int) -> Query:
        """Return a copy without the given elements (absent ones are ignored)."""
        drop = {_resolve(selector) for selector in selectors}
        kept = tuple((tag, value) for tag, value in self.elements if tag not in drop)
        return dataclasses.replace(self, elements=kept)

    def model(self, model: Model) -> Query:
        """Return a copy in the ``'study'`` or ``'patient'`` information model."""
        return dataclasses.replace(self, information_model=_check_model(model))

    # ------------------------------------------------------------ reading

    def _value(self, tag: int) -> tuple[bool, Value]:
        for element_tag, value in self.elements:
            if element_tag == tag:
                return True, value
        return False, None

    @property
    def level(self) -> Level | None:
        """The QueryRetrieveLevel, or ``None`` when absent or not a level name."""
        _present, value = self._value(_QR_LEVEL)
        if isinstance(value, str) and value in LEVELS:
            return value
        return None

    @property
    def keys(self) -> dict[str, Value]:
        """The elements by keyword, without QueryRetrieveLevel (lists are copies)."""
        return {
            _tag_info(tag).keyword or _tag_text(tag): _copy(value)
            for tag, value in self.elements
            if tag != _QR_LEVEL
        }

    def get(self, keyword: str) -> Value:
        """Return the value of an element by keyword or selector; ``None`` if absent or empty."""
        _present, value = self._value(_resolve(keyword))
        return _copy(value)

    def retrieve_uids(self) -> list[str]:
        """Return the values of the unique key of the retrieve level, as a list.

        At the PATIENT level these are PatientIDs. Empty when the level or the
        key is missing.
        """
        level = self.level
        if level is None:
            return []
        _present, value = self._value(_UNIQUE_TAGS[level])
        return [str(item) for item in _items(value)]

    # ------------------------------------------------------------ validation

    def problems(self) -> list[str]:
        """List what makes this identifier invalid for a C-MOVE (PS3.4 C.4.2.2.1).

        Returns
        -------
        list of str
            One message per problem, each saying what to do; empty if valid.
        """
        model = self.information_model
        root = _MODEL_NAMES[model]
        levels = _MODEL_LEVELS[model]
        values = dict(self.elements)
        found: list[str] = []

        level: Level | None = None
        if _QR_LEVEL not in values:
            inferred = _infer_level(values, model) or levels[0]
            found.append(
                f"QueryRetrieveLevel is missing: add QueryRetrieveLevel={inferred} "
                f"(-q QueryRetrieveLevel={inferred}); {root} levels are {', '.join(levels)}"
            )
        else:
            given = values[_QR_LEVEL]
            if isinstance(given, str) and given in levels:
                level = given
            elif given == "PATIENT":
                found.append(
                    "QueryRetrieveLevel=PATIENT does not exist in Study Root: use the "
                    "Patient Root model (model='patient', -P), or a STUDY, SERIES or IMAGE level"
                )
            else:
                found.append(
                    f"QueryRetrieveLevel={_value_text(given)!r} is not a {root} level: "
                    f"use one of {', '.join(levels)}"
                )

        for key_level in LEVELS:
            tag = _UNIQUE_TAGS[key_level]
            keyword = UNIQUE_KEYS[key_level]
            present = tag in values
            value = values.get(tag)
            if key_level not in levels:
                if present:
                    found.append(
                        f"{keyword} is not a key of {root}: remove it, or use the "
                        "Patient Root model (model='patient', -P)"
                    )
                continue
            if level is not None:
                depth = levels.index(key_level) - levels.index(level)
                if depth > 0:
                    if present:
                        found.append(
                            f"{keyword} is below the retrieve level {level}: remove it, "
                            f"or set QueryRetrieveLevel={key_level}"
                        )
                    continue
                if not present:
                    needed = ", ".join(UNIQUE_KEYS[lv] for lv in levels[: levels.index(level) + 1])
                    found.append(
                        f"{keyword} is missing: a {level}-level C-MOVE in {root} needs the "
                        f"unique key of every level down to {level} ({needed})"
                    )
                    continue
                if value is None:
                    found.append(
                        f"{keyword} is empty: an empty unique key is a universal match and "
                        f"would move every {key_level.lower()} the PACS has; give its value"
                    )
                    continue
                count = len(_items(value))
                if count > 1 and depth < 0:
                    found.append(
                        f"{keyword} has {count} values: each level above the retrieve level "
                        f"takes exactly one (PS3.4 C.4.2.2.1); send one request per "
                        f"{key_level.lower()}"
                    )
                elif count > 1 and key_level == "PATIENT":
                    found.append(
                        f"PatientID has {count} values: a PATIENT-level C-MOVE takes exactly "
                        "one PatientID; send one request per patient"
                    )
            elif present and value is None:
                found.append(
                    f"{keyword} is empty: an empty unique key is a universal match and "
                    f"would move every {key_level.lower()} the PACS has; give its value"
                )
            found.extend(self._value_problems(keyword, value))

        for tag, value in self.elements:
            if tag == _QR_LEVEL or tag in _LEVEL_OF_TAG or tag in _ALLOWED_EXTRA_TAGS:
                continue
            shown = f"{_tag_info(tag).keyword or _tag_text(tag)}={_value_text(value)}"
            found.append(
                f"{shown} is not a unique key: C-MOVE matches on unique keys only "
                "(PS3.4 C.4.2.2.1), so a PACS ignores it or refuses the request; find the "
                f"UIDs with C-FIND first, or {_NO_STRICT_HINT}"
            )
        return found

    @staticmethod
    def _value_problems(keyword: str, value: Value) -> list[str]:
        found: list[str] = []
        for item in _items(value):
            text = str(item)
            if "*" in text or "?" in text:
                found.append(
                    f"{keyword} {text!r} has a wildcard: C-MOVE does no wildcard matching; "
                    "give the exact value (find it with C-FIND first)"
                )
            elif keyword == "PatientID":
                if len(text) > 64:
                    found.append(
                        f"PatientID {text!r} is {len(text)} characters long; "
                        "a PatientID (VR LO) has at most 64"
                    )
            else:
                found.extend(_uid_problems(keyword, text))
        return found

    def _check(self, strict: bool, context: str, stacklevel: int) -> None:
        found = self.problems()
        if not found:
            return
        if strict:
            root = _MODEL_NAMES[self.information_model]
            lines = "\n".join(f"  - {problem}" for problem in found)
            raise QueryError(
                f"{context}invalid C-MOVE identifier [{self}] in {root}:\n{lines}\n"
                f"Fix it, or {_NO_STRICT_HINT}."
            )
        for problem in found:
            warnings.warn(
                f"{context}sending [{self}] as given: {problem}",
                QueryWarning,
                stacklevel=stacklevel + 1,
            )

    def validate(self, strict: bool = True) -> Query:
        """Check the identifier; raise or warn about each problem.

        Parameters
        ----------
        strict : bool
            If true, raise on any problem; if false, issue one
            :class:`~dicommove.errors.QueryWarning` per problem.

        Returns
        -------
        Query
            ``self``, for chaining.

        Raises
        ------
        QueryError
            In strict mode, with every problem listed.
        """
        self._check(strict, "", stacklevel=2)
        return self

    # ------------------------------------------------------------ output

    def to_dataset(self) -> Dataset:
        """Return the identifier as a :class:`pydicom.dataset.Dataset`.

        Each element gets its dictionary VR (US or SS by the sign of the
        values), lists become multi-valued elements and ``None`` an empty
        element. Values are not checked again here: :meth:`validate` does that.
        """
        dataset = Dataset()
        for tag, value in self.elements:
            info = _tag_info(tag)
            vr = info.vr
            items = _items(value)
            if " or " in vr:
                options = vr.split(" or ")
                signed = [o for o in options if _INT_RANGES[o][0] < 0]
                negative = any(isinstance(item, int) and item < 0 for item in items)
                vr = signed[0] if negative and signed else options[0]
            converted: Any
            if vr == "DS" and items:
                decimals = [DSfloat(float(item), auto_format=True) for item in items]
                converted = decimals if isinstance(value, list) else decimals[0]
            else:
                converted = list(value) if isinstance(value, list) else value
            dataset.add(DataElement(tag, vr, converted, validation_mode=_pydicom_config.IGNORE))
        return dataset

    def __str__(self) -> str:
        values = dict(self.elements)
        head = _value_text(values[_QR_LEVEL]) if _QR_LEVEL in values else "<no level>"
        order = sorted(
            (tag for tag in values if tag != _QR_LEVEL),
            key=lambda tag: (
                (0, LEVELS.index(_LEVEL_OF_TAG[tag])) if tag in _LEVEL_OF_TAG else (1, tag)
            ),
        )
        parts = [head]
        for tag in order:
            name = _tag_info(tag).keyword or _tag_text(tag)
            parts.append(f"{name}={_value_text(values[tag])}")
        return " ".join(parts)


# --------------------------------------------------------------------------- requests


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
        f"{context}cannot make a C-MOVE request of {item!r}: expected {_ACCEPTED_INPUTS}"
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


def _frame_queries(frame: pd.DataFrame, model: Model) -> list[tuple[Hashable, Query]]:
    levels = _MODEL_LEVELS[model]
    columns = set(frame.columns)
    key_columns = [UNIQUE_KEYS[level] for level in levels if UNIQUE_KEYS[level] in columns]
    accepted = ", ".join([*UNIQUE_KEYS.values(), "QueryRetrieveLevel"])
    if not key_columns:
        if model == "study" and "PatientID" in columns:
            raise QueryError(
                "the DataFrame has a PatientID column but no StudyInstanceUID, "
                "SeriesInstanceUID or SOPInstanceUID column: PatientID is not a key of "
                "Study Root; add the UIDs (find them with C-FIND), or use model='patient'"
            )
        shown = ", ".join(repr(c) for c in list(frame.columns)[:12])
        raise QueryError(
            f"the DataFrame has no unique-key column: it needs at least one of {accepted} "
            f"(its columns are: {shown or 'none'})"
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
        if name not in allowed:
            hint = (
                " (PatientID is not a key of Study Root: use model='patient')"
                if name == "PatientID"
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


def to_requests(obj: Any, *, model: Model = "study", strict: bool = True) -> list[Request]:
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
            return to_requests(list(obj), model=model, strict=strict)
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
        query._check(strict, context, stacklevel=2)
        requests.append(Request(index, query))
    logger.debug("built %d C-MOVE request(s)", len(requests))
    return requests
