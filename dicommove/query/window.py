"""Narrowing a STUDY-level C-FIND by date, then time, for a PACS that caps its results.

Many PACS return at most a few hundred matches per C-FIND. :func:`narrow` cuts a
query into parts that together match exactly what it matches: its StudyDate range
in two halves (an absent or open range first into a closed one and the open ends
beyond it), and a single day by StudyTime, down to one second. The caller runs the
parts, narrows again those that are still capped, and merges the matches by their
unique key. Pure code: no socket.
"""

from __future__ import annotations

import datetime

from .core import Query

__all__ = ["EARLIEST", "MIN_SECONDS", "narrow"]

#: Where an absent or open StudyDate range is first closed (the open end is a part of
#: its own, so nothing before it is lost).
EARLIEST = datetime.date(1900, 1, 1)
#: The narrowest StudyTime window tried: a second.
MIN_SECONDS = 1

_STUDY_DATE = 0x00080020
_STUDY_TIME = 0x00080030
_DAY = datetime.timedelta(days=1)
_LAST_SECOND = 24 * 3600 - 1


def _date(text: str) -> datetime.date | None:
    if len(text) == 8 and text.isdigit():
        try:
            return datetime.date(int(text[:4]), int(text[4:6]), int(text[6:]))
        except ValueError:
            return None
    return None


def _day(d: datetime.date) -> str:
    return d.strftime("%Y%m%d")


def _dates(value: object, today: datetime.date) -> tuple[datetime.date, datetime.date] | None:
    """Return the closed range a StudyDate value matches within, or ``None`` if not a range."""
    text = "" if value is None else value if isinstance(value, str) else None
    if text is None:
        return None  # a list of dates
    text = text.strip()
    if not text:
        return EARLIEST, today
    if "-" not in text:
        d = _date(text)
        return (d, d) if d else None
    lo_text, _, hi_text = text.partition("-")
    lo = _date(lo_text) if lo_text else EARLIEST
    hi = _date(hi_text) if hi_text else max(today, lo or today)
    if lo is None or hi is None or lo > hi:
        return None
    return lo, hi


def _seconds(text: str, *, end: bool) -> int | None:
    digits = text.split(".")[0]
    if not digits.isdigit() or len(digits) not in (2, 4, 6):
        return None
    h, m, s = int(digits[:2]), int(digits[2:4] or 0), int(digits[4:6] or 0)
    if end:  # "10" as an upper bound is up to 10:59:59
        m = 59 if len(digits) == 2 else m
        s = 59 if len(digits) <= 4 else s
    if h > 23 or m > 59 or s > 60:
        return None
    return min(h * 3600 + m * 60 + s, _LAST_SECOND)


def _times(value: object) -> tuple[int, int] | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return 0, _LAST_SECOND
    if not isinstance(value, str):
        return None
    text = value.strip()
    if "-" not in text:
        lo = _seconds(text, end=False)
        hi = _seconds(text, end=True)
    else:
        lo_text, _, hi_text = text.partition("-")
        lo = _seconds(lo_text, end=False) if lo_text else 0
        hi = _seconds(hi_text, end=True) if hi_text else _LAST_SECOND
    if lo is None or hi is None or lo > hi:
        return None
    return lo, hi


def _clock(seconds: int) -> str:
    return f"{seconds // 3600:02d}{seconds // 60 % 60:02d}{seconds % 60:02d}"


def narrow(query: Query, today: datetime.date | None = None) -> list[Query] | None:
    """Cut a STUDY-level query into narrower parts that together match the same.

    Parameters
    ----------
    query : Query
        A STUDY-level C-FIND identifier. Its StudyDate may be absent, a date, or a
        range (open or closed); a list of dates or a wildcard cannot be cut.
    today : datetime.date, optional
        Where an open-ended range is closed (default: today); what lies after it is
        a part of its own.

    Returns
    -------
    list of Query or None
        Two or three parts, or ``None`` when the query cannot be cut further: not
        at STUDY level, a StudyDate that is no range, or one day whose StudyTime
        window is a single second.
    """
    if query.level != "STUDY":
        return None
    today = today or datetime.date.today()
    raw_date = query.get("StudyDate")
    dates = _dates(raw_date, today)
    if dates is None:
        return None
    lo, hi = dates
    parts: list[Query] = []
    text = raw_date.strip() if isinstance(raw_date, str) else ""
    single = bool(text) and "-" not in text
    closed = "-" in text and not text.startswith("-") and not text.endswith("-")
    if not (single or closed):
        # close it first: the open ends beyond the closed range are parts of their own
        if not text or text.startswith("-"):
            parts.append(query.set(_STUDY_DATE, f"-{_day(EARLIEST - _DAY)}"))
        if not text or text.endswith("-"):
            parts.append(query.set(_STUDY_DATE, f"{_day(hi + _DAY)}-"))
        parts.append(query.set(_STUDY_DATE, f"{_day(lo)}-{_day(hi)}"))
        return parts
    if lo < hi:
        middle = lo + (hi - lo) // 2
        return [
            query.set(_STUDY_DATE, f"{_day(lo)}-{_day(middle)}"),
            query.set(_STUDY_DATE, f"{_day(middle + _DAY)}-{_day(hi)}"),
        ]
    times = _times(query.get("StudyTime"))
    if times is None or times[1] - times[0] < MIN_SECONDS:
        return None
    start, end = times
    middle_s = start + (end - start) // 2
    day = query.set(_STUDY_DATE, _day(lo))
    return [
        day.set(_STUDY_TIME, f"{_clock(start)}-{_clock(middle_s)}"),
        day.set(_STUDY_TIME, f"{_clock(middle_s + 1)}-{_clock(end)}"),
    ]
