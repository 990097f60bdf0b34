"""Selectors and values: from what a user writes to a tag and a value typed by VR.

A selector is a tag as ``(gggg,eeee)``, ``gggg,eeee`` or ``ggggeeee``, or a
keyword. The Query/Retrieve keys of :data:`dicommove._tags.QR_KEYS` are looked
up in that built-in table; any other keyword or tag, and the did-you-mean
suggestions of an unknown keyword, come from :mod:`pydicom.datadict`, imported
only then.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Literal, NamedTuple, cast

from .._tags import QR_KEYS, QR_KEYS_BY_TAG
from ..errors import QueryError
from ._model import _QR_LEVEL, Value

__all__ = ["parse_assignment", "parse_selector"]

_HEX_FORMS = (
    re.compile(r"^\(\s*([0-9A-Fa-f]{4})\s*,\s*([0-9A-Fa-f]{4})\s*\)$"),
    re.compile(r"^([0-9A-Fa-f]{4})\s*,\s*([0-9A-Fa-f]{4})$"),
    re.compile(r"^([0-9A-Fa-f]{4})([0-9A-Fa-f]{4})$"),
)
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

# --------------------------------------------------------------------------- selectors


class _TagInfo(NamedTuple):
    """What we need to know of a dictionary tag."""

    tag: int
    keyword: str
    vr: str  # the dictionary VR, possibly "US or SS"
    kind: Literal["int", "float", "str", "text"]
    low: int
    high: int


def _shown(value: object) -> str:
    """``repr(value)``; an integer longer than Python prints is named by its type."""
    try:
        return repr(value)
    except ValueError:  # more digits than sys.get_int_max_str_digits()
        if isinstance(value, numbers.Integral):
            return "an integer too long to print"
        return f"a {type(value).__name__} holding an integer too long to print"


def _tag_text(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _tag_name(tag: int) -> str:
    """``Keyword (gggg,eeee)``, or just the tag when it has no keyword."""
    info = _tag_info(tag)
    return f"{info.keyword} {_tag_text(tag)}" if info.keyword else _tag_text(tag)


@lru_cache(maxsize=4096)
def _tag_info(tag: int) -> _TagInfo:
    """Look a tag up, refusing what cannot go in an identifier.

    The Query/Retrieve keys come from the built-in table (no pydicom); any
    other tag from pydicom's data dictionary.
    """
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
    known = QR_KEYS_BY_TAG.get(tag)
    if known is not None:
        vr, keyword = known.vr, known.keyword
    else:
        from pydicom import datadict

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
    from pydicom import datadict

    names = sorted(k for k in datadict.keyword_dict if k)
    return names, {name.lower(): name for name in names}


def _unknown_keyword(text: str) -> QueryError:
    import difflib

    from pydicom import datadict

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
        raise QueryError(f"expected a selector string, got {_shown(text)}")
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
        if stripped in QR_KEYS:
            tag = QR_KEYS[stripped].tag
        elif stripped.isidentifier():
            from pydicom import datadict

            tag = datadict.tag_for_keyword(stripped)
            if tag is None:
                raise _unknown_keyword(stripped)
        else:
            raise QueryError(f"cannot read selector {text!r}: use {_SELECTOR_FORMS}")
    _tag_info(tag)
    return int(tag)


def _resolve(selector: str | int) -> int:
    if isinstance(selector, bool):
        raise QueryError(f"expected a selector, got {_shown(selector)}")
    if isinstance(selector, int):
        if not 0 <= selector <= 0xFFFFFFFF:
            raise QueryError(f"tag {_shown(selector)} is out of range")
        _tag_info(selector)
        return selector
    return parse_selector(selector)


# --------------------------------------------------------------------------- values


def _bad_value(info: _TagInfo, wants: str, got: object) -> QueryError:
    return QueryError(
        f"invalid value for {_tag_name(info.tag)}: VR {info.vr} wants {wants}, got {_shown(got)}"
    )


def _int_wanted(info: _TagInfo) -> str:
    return f"an integer from {info.low} to {info.high}"


def _typed_text(info: _TagInfo, part: str) -> str | int | float:
    """Type one stripped text component by the VR."""
    if info.kind == "int":
        if not _INT_RE.match(part):
            raise _bad_value(info, _int_wanted(info), part)
        try:
            number = int(part)
        except ValueError:  # more digits than int() reads: far out of range anyway
            raise _bad_value(info, _int_wanted(info), part) from None
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
        try:
            return float(number) if info.kind == "float" else str(number)
        except (OverflowError, ValueError):  # beyond a float, or too many digits to print
            raise _bad_value(info, "a number of fewer digits", value) from None
    if isinstance(value, numbers.Real):
        try:
            real = float(value)
        except OverflowError:  # e.g. a Fraction beyond a float
            raise _bad_value(info, "a finite number", value) from None
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
        raise QueryError(f"expected 'selector=value', got {_shown(text)}")
    selector, _sep, raw = text.partition("=")
    try:
        tag = parse_selector(selector)
        return tag, _coerce(tag, raw)
    except QueryError as exc:
        raise QueryError(f"in {text!r}: {exc}") from None
