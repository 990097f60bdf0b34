"""The manifest: one row per instance received, or per request that fell short.

Schema (column: dtype, meaning):

=================== ===================== ================================================
``request``         object                index label of the request row (your cohort's
                                          index), ``None`` for ``unrequested`` rows
``status``          category              see :data:`STATUSES`
``reason``          string                why a row is not ``received`` (empty otherwise)
``PatientID``       string                from the received dataset, or the request keys
``StudyInstanceUID`` string               idem
``SeriesInstanceUID`` string              idem
``SOPInstanceUID``  string                idem; ``<NA>`` on request-level rows
``SOPClassUID``     string                from the C-STORE request
``TransferSyntaxUID`` string              the transfer syntax the instance arrived in
``path``            string                absolute path of the file written
``size``            Int64                 bytes of the file written
``received_at``     datetime64[ns, UTC]   when the file got its final name (to the ms)
``move_status``     Int64                 final C-MOVE status code of the request
``completed``       Int64                 request rows: sub-operations completed
``failed``          Int64                 request rows: sub-operations failed
``warning``         Int64                 request rows: sub-operations with warnings
=================== ===================== ================================================

Request-level rows (``SOPInstanceUID`` is ``<NA>``) stand for a request as a
whole: one moved to a foreign destination, one that matched nothing, or one
that failed before its instances could be listed.
"""

from __future__ import annotations

import csv
import datetime
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "COLUMNS",
    "OK_STATUSES",
    "PROBLEM_STATUSES",
    "STATUSES",
    "build",
    "is_complete",
    "read_csv",
    "summarize",
    "summarize_rows",
    "write_csv",
    "write_rows",
]

_DATE_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"

#: Every value the ``status`` column can take.
STATUSES: tuple[str, ...] = (
    "received",  # stored under its final name
    "duplicate",  # the same instance again, identical bytes: counted once
    "moved",  # request row: moved to a foreign destination, all sub-operations completed
    "unrequested",  # arrived during a move but matches no request; kept
    "conflict",  # the same SOPInstanceUID again with different bytes; first kept
    "refused",  # our store SCP refused it (unsafe UID, mismatch); nothing written
    "not_found",  # request row: the PACS matched no instance
    "missing",  # counted by the PACS, or requested by UID, but never arrived
    "failed",  # the PACS (or our disk) failed it; ``reason`` says how
    "cancelled",  # the move was cancelled before it arrived
    "timeout",  # the PACS went silent before it arrived
    "pending",  # request row of a live manifest (job.manifest): not finished yet
)

#: Statuses that mean "this item is where it should be".
OK_STATUSES: frozenset[str] = frozenset({"received", "duplicate", "moved"})

#: Statuses that mean a requested item is not where it should be.
PROBLEM_STATUSES: frozenset[str] = frozenset(
    {"conflict", "refused", "not_found", "missing", "failed", "cancelled", "timeout"}
)

#: Column name -> pandas dtype name ("category" is :data:`STATUSES`).
COLUMNS: dict[str, str] = {
    "request": "object",
    "status": "category",
    "reason": "string",
    "PatientID": "string",
    "StudyInstanceUID": "string",
    "SeriesInstanceUID": "string",
    "SOPInstanceUID": "string",
    "SOPClassUID": "string",
    "TransferSyntaxUID": "string",
    "path": "string",
    "size": "Int64",
    "received_at": "datetime64[ns, UTC]",
    "move_status": "Int64",
    "completed": "Int64",
    "failed": "Int64",
    "warning": "Int64",
}


def build(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Build a manifest with the documented schema from row mappings.

    Missing keys become ``<NA>``. Keys that are DICOM keywords (the header columns of
    ``tags=``) come after the documented columns, typed by their VR; other unknown
    keys are an error.

    Parameters
    ----------
    rows : iterable of mapping
        One mapping per row, keyed by column name.

    Returns
    -------
    pandas.DataFrame
    """
    import pandas as pd

    table = rows if isinstance(rows, list) else list(rows)
    data: dict[str, list[Any]] = {name: [] for name in [*COLUMNS, *header_columns(table)]}
    for row in table:
        for name, column in data.items():
            column.append(row.get(name))
    # object columns, so that integer request labels beside None stay integers
    return _typed(pd.DataFrame({k: pd.Series(v, dtype=object) for k, v in data.items()}))


def header_columns(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Return the header columns of manifest rows (``tags=``), in first-seen order.

    Raises
    ------
    KeyError
        For a key that is neither a manifest column nor a DICOM keyword.
    """
    extra: dict[str, None] = {}
    for row in rows:
        if row.keys() <= _CELLS.keys():
            continue
        for name in row:
            if name not in COLUMNS and name not in extra:
                if _header_vr(name) is None:
                    raise KeyError(f"unknown manifest columns {[name]}")
                extra[name] = None
    return list(extra)


def _header_vr(keyword: str) -> str | None:
    from pydicom.datadict import dictionary_VR, tag_for_keyword

    tag = tag_for_keyword(keyword)
    return None if tag is None else str(dictionary_VR(tag))


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    from . import summary  # registers the df.dicommove accessor

    out: pd.DataFrame = pd.DataFrame(index=pd.RangeIndex(len(df)))
    for name, dtype in COLUMNS.items():
        col = df[name] if name in df else pd.Series([None] * len(df), dtype="object")
        col = col.reset_index(drop=True)
        if dtype == "category":
            unknown = set(col.dropna()) - set(STATUSES)
            if unknown:
                raise ValueError(f"unknown manifest statuses {sorted(unknown)}")
            out[name] = pd.Categorical(col.astype("object"), categories=list(STATUSES))
        elif dtype.startswith("datetime64"):
            kinds = set(col.dropna().map(type))
            if kinds and kinds <= {int, float}:  # epoch seconds, as the engine records them
                col = pd.to_datetime(col.astype("float64"), unit="s", utc=True)
            # to the millisecond: what the clock tells, and how a notebook shows it
            out[name] = pd.to_datetime(col, utc=True).astype("datetime64[ns, UTC]").dt.floor("ms")
        elif dtype == "Int64":
            out[name] = pd.to_numeric(col, errors="raise").astype("Int64")
        elif dtype == "string":
            out[name] = col.astype("object").where(col.notna(), None).astype("string")
        else:
            out[name] = pd.Series(
                [None if _missing(v) else v for v in col], dtype=object, index=out.index
            )
    for name in df.columns:
        if name not in COLUMNS:
            out[name] = _header_column(name, df[name].reset_index(drop=True))
    out.attrs["dicommove"] = summary.MANIFEST  # shown on one line per row in IPython
    summary.register_html()
    return out


def _header_column(name: str, col: pd.Series) -> Any:
    r"""Return a header column (``tags=``) typed by its VR: numbers, or DICOM text.

    Integers become ``Int64`` and decimals ``Float64`` when every value parses as one
    number; otherwise (several values, bad text), and for every other VR, dates
    included, the column stays text as DICOM writes it (``20240131``, ``0.5\\0.5``),
    so that nothing is lost and it reads back the same from CSV.
    """
    from . import _vr

    vr = _header_vr(str(name)) or "UN"
    if vr in _vr.INTEGER_VRS or vr in _vr.DECIMAL_VRS:
        parsed = [_vr.parse(vr, "" if _missing(v) else str(v)) for v in col]
        if all(ok for _value, ok in parsed):  # else (several values, bad text): as text
            return _vr.column(vr, [value for value, _ok in parsed])
    return col.astype("object").where(col.notna(), None).astype("string")


def _missing(value: Any) -> bool:
    if type(value).__name__ == "NAType":  # pandas.NA, without importing pandas
        return True
    try:
        return bool(value is None or value != value)  # None or NaN
    except (TypeError, ValueError):
        return False


def write_csv(df: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write a manifest as CSV, atomically (temp file, then rename).

    Returns
    -------
    pathlib.Path
        The path written.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.part")
    df.to_csv(tmp, index=False, date_format=_DATE_FORMAT)
    os.replace(tmp, target)
    return target


def read_csv(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a manifest written by :func:`write_csv`, restoring its dtypes."""
    import pandas as pd

    df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    return _typed(df)


def is_complete(df: pd.DataFrame) -> bool:
    """Return whether no row of a manifest has a problem status (see :data:`PROBLEM_STATUSES`)."""
    return not bool(df["status"].isin(sorted(PROBLEM_STATUSES)).any())


def summarize(df: pd.DataFrame) -> str:
    """One line: instance and byte counts, then the count of each status present.

    Examples
    --------
    >>> summarize(build([{"status": "received", "size": 10, "request": 0}]))
    '1 instance received (10 bytes) for 1 request; received: 1'
    """
    part = df[["status", "size", "request"]].astype(object)
    return summarize_rows(part.where(part.notna(), None).to_dict("records"))


def summarize_rows(rows: Iterable[Mapping[str, Any]]) -> str:
    """:func:`summarize` of manifest rows (no pandas)."""
    counts: dict[str, int] = {}
    n = nbytes = 0
    requests: set[Any] = set()
    for row in rows:
        status = row.get("status")
        if isinstance(status, str):
            counts[status] = counts.get(status, 0) + 1
        if status == "received":
            n += 1
            size = row.get("size")
            nbytes += 0 if _missing(size) else int(cast(Any, size))
        request = row.get("request")
        if not _missing(request):
            requests.add(request)
    present = [f"{name}: {counts[name]}" for name in STATUSES if counts.get(name, 0)]
    text = received_text(n, nbytes, len(requests))
    return text + ("; " + ", ".join(present) if present else "")


def received_text(instances: int, nbytes: int, requests: int) -> str:
    """``"24 instances received (227.1 kB) for 4 requests"``: the head of every summary."""
    return (
        f"{instances:,} instance{'s' if instances != 1 else ''} received "
        f"({_human_bytes(nbytes)}) for {requests:,} request{'s' if requests != 1 else ''}"
    )


def _text(value: Any) -> str:
    if type(value) is str:
        return value
    return "" if value is None or _missing(value) else str(value)


def _integer(value: Any) -> str:
    if type(value) is int:
        return str(value)
    return "" if value is None or _missing(value) else str(int(value))


_SECONDS: dict[int, str] = {}


def _stamp(value: Any) -> str:
    if value is None or _missing(value):
        return ""
    if isinstance(value, (int, float)):  # epoch seconds, as the engine records them
        whole = int(value)
        text = _SECONDS.get(whole)
        if text is None:
            if len(_SECONDS) > 4096:
                _SECONDS.clear()
            stamp = datetime.datetime.fromtimestamp(whole, tz=datetime.timezone.utc)
            text = _SECONDS[whole] = stamp.strftime("%Y-%m-%dT%H:%M:%S")
        # as pandas converts (to ns), then floored to the ms as build() does
        micro = min(round((value - whole) * 1e9) // 1_000_000 * 1000, 999000)
        return f"{text}.{micro:06d}Z"
    return str(value.strftime(_DATE_FORMAT))


#: How each column is written to CSV (as pandas writes the typed frame).
_CELLS = {
    name: _stamp if name == "received_at" else _integer if dtype == "Int64" else _text
    for name, dtype in COLUMNS.items()
}


def _column(values: list[Any], cell: Callable[[Any], str]) -> list[str]:
    """Write one column's cells; the common types skip the call to ``cell``."""
    if cell is _text:
        return [v if type(v) is str else "" if v is None else _text(v) for v in values]
    if cell is _integer:
        return [str(v) if type(v) is int else "" if v is None else _integer(v) for v in values]
    return [cell(v) for v in values]


def write_rows(rows: Iterable[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Write manifest rows as CSV, as :func:`write_csv` would (no pandas); atomically.

    Returns
    -------
    pathlib.Path
        The path written.
    """
    table = rows if isinstance(rows, list) else list(rows)
    extra = header_columns(table)
    cells = {**_CELLS, **dict.fromkeys(extra, _text)}
    columns = [_column([row.get(name) for row in table], cell) for name, cell in cells.items()]
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.part")
    with open(tmp, "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(cells)
        writer.writerows(zip(*columns, strict=True))
    os.replace(tmp, target)
    return target


def _human_bytes(n: int) -> str:
    if n < 1000:
        return f"{n} bytes"
    value = float(n)
    for unit in ("kB", "MB", "GB", "TB"):
        value /= 1000.0
        if value < 1000 or unit == "TB":
            break
    return f"{value:.1f} {unit}"
