"""Typing DICOM text by its VR, for tables: dates, counts and decimals as pandas types.

Used for C-FIND answers (:mod:`dicommove.query.find`) and the header columns of a
manifest (``tags=``). :func:`parse` turns one value's text into a Python value;
:func:`column` turns a column of them into a pandas array of the VR's dtype. A value
that does not parse is missing in the column (the caller keeps its text if it must).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DATE_VRS", "DECIMAL_VRS", "INTEGER_VRS", "PARSED_VRS", "column", "dtype", "parse"]

INTEGER_VRS = frozenset({"IS", "US", "UL", "SS", "SL", "SV", "UV"})
DECIMAL_VRS = frozenset({"DS", "FL", "FD"})
DATE_VRS = frozenset({"DA", "DT"})
#: VRs whose values are typed (the others stay text).
PARSED_VRS = INTEGER_VRS | DECIMAL_VRS | DATE_VRS
_DT = re.compile(r"(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,6}))?(?:[+-]\d{4})?")


def _date(text: str) -> datetime.datetime | None:
    if len(text) == 8 and text.isdigit():
        try:
            return datetime.datetime(int(text[:4]), int(text[4:6]), int(text[6:]))
        except ValueError:
            return None
    return None


def _datetime(text: str) -> datetime.datetime | None:
    m = _DT.fullmatch(text)
    if m is None:
        return None
    y, mo, d, h, mi, sec = (
        int(g) if g else default
        for g, default in zip(m.groups()[:6], (0, 1, 1, 0, 0, 0), strict=True)
    )
    micro = int((m.group(7) or "0").ljust(6, "0"))
    try:
        return datetime.datetime(y, mo, d, h, mi, sec, micro)
    except ValueError:
        return None


def parse(vr: str, text: str) -> tuple[Any, bool]:
    """Return (typed value, parsed); an empty text is a missing value, not a problem.

    DA and DT become :class:`datetime.datetime` (a DT's UTC offset is dropped), the
    integer VRs :class:`int`, DS/FL/FD :class:`float`; other VRs stay text.
    """
    if not text:
        return None, True
    try:
        if vr == "DA":
            value: Any = _date(text)
        elif vr == "DT":
            value = _datetime(text)
        elif vr in INTEGER_VRS:
            value = int(text)
        elif vr in DECIMAL_VRS:
            value = float(text)
        else:
            return text, True
    except ValueError:
        value = None
    return value, value is not None


def dtype(vr: str) -> str:
    """Return the pandas dtype of a column of ``vr`` values."""
    if vr in DATE_VRS:
        return "datetime64[ns]"
    if vr in INTEGER_VRS:
        return "Int64"
    if vr in DECIMAL_VRS:
        return "Float64"
    return "string"


def column(vr: str, values: Sequence[Any]) -> pd.Series | Any:
    """Return typed values (from :func:`parse`) as a pandas array or Series of ``vr``'s dtype.

    Text columns are ``object`` Series with ``None`` for missing values.
    """
    import pandas as pd

    if vr in DATE_VRS:
        return pd.to_datetime(pd.Series(values, dtype="object"))
    if vr in INTEGER_VRS:
        return pd.array(values, dtype="Int64")
    if vr in DECIMAL_VRS:
        return pd.array(values, dtype="Float64")
    return pd.Series(values, dtype="object")
