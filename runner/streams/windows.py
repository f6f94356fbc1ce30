"""A backfill's windows over a watermark column, in the column's own type and spelling.

Windows lie on a grid anchored at the task's start: `start + k × window`. A run reads the
window that holds its pointer, up to the next boundary, so a backfill stopped half-way through
a window resumes in that same window (its pointer is past the rows committed, its end the
same boundary). Boundaries are computed in the type the source's driver gives the column (a
datetime, a date, SQLite's ISO text spelled as the column's own values, a number), so they
compare in the source exactly as the column does: nothing is converted the other way.
"""

from __future__ import annotations

import calendar
import datetime as dt
import math
from decimal import Decimal
from typing import Any

from runner.definitions.windows import Window
from runner.streams.values import EXACT

_FIXED = {"minutes", "hours", "days", "weeks"}


class WindowMismatch(ValueError):
    """The window's kind does not suit the column (a time window on a number, or the reverse)."""


def is_time(value: Any) -> bool:
    """Whether a column value is a date or time (SQLite's ISO text included)."""
    if isinstance(value, dt.date):
        return True
    if isinstance(value, str):
        return _moment(value) is not None
    return False


def _moment(text: str) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        return None


def _spelled_like(moment: dt.datetime, like: str) -> str:
    """`moment` as text spelled as the column's value `like` is (SQLite compares text)."""
    if len(like) == 10:  # a date
        return moment.date().isoformat()
    sep = "T" if "T" in like else " "
    spec = "microseconds" if "." in like else "seconds"
    sample = _moment(like)
    if sample is not None and sample.tzinfo is not None and moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    if sample is not None and sample.tzinfo is None and moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
    return moment.isoformat(sep=sep, timespec=spec)


def in_column_terms(value: Any, like: Any) -> Any:
    """A start or pointer (ISO text or a number from YAML) in the type of the column value
    `like`, spelled as the column is.

    Raises:
        WindowMismatch: a date or time for a numeric column, or the reverse.
    """
    if isinstance(like, str) and is_time(like):
        moment = value if isinstance(value, dt.datetime) else _moment(str(value))
        if moment is None:
            raise WindowMismatch(f"{value!r} is not a date or time, and the column holds times")
        return _spelled_like(moment, like)
    if isinstance(like, dt.datetime):
        moment = value if isinstance(value, dt.datetime) else _moment(str(value))
        if moment is None:
            raise WindowMismatch(f"{value!r} is not a date or time, and the column holds times")
        if like.tzinfo is not None and moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        if like.tzinfo is None and moment.tzinfo is not None:
            moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
        return moment
    if isinstance(like, dt.date):
        moment = value if isinstance(value, dt.date) else _moment(str(value))
        if moment is None:
            raise WindowMismatch(f"{value!r} is not a date, and the column holds dates")
        return moment if type(moment) is dt.date else moment.date()
    if isinstance(like, int | Decimal | float) and not isinstance(like, bool):
        if isinstance(value, dt.date) or (isinstance(value, str) and is_time(value)):
            raise WindowMismatch(f"{value!r} is a date or time, and the column holds numbers")
        number = Decimal(str(value))
        if isinstance(like, int):
            return int(number) if number == number.to_integral_value() else number
        return float(number) if isinstance(like, float) else number
    raise WindowMismatch(f"a {type(like).__name__} column cannot be read in windows")


def _add_months(moment: Any, months: int) -> Any:
    year, month = divmod(moment.month - 1 + months, 12)
    year += moment.year
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


def window_end(anchor: Any, lower: Any, window: Window) -> Any:
    """The first boundary of the grid `anchor + k × window` past `lower`: the end (exclusive)
    of the window that holds `lower`. `anchor` and `lower` are in the column's type
    (`in_column_terms`).

    Raises:
        WindowMismatch: the window's kind does not suit the column.
    """
    if isinstance(anchor, str):
        start, at = _moment(anchor), _moment(lower)
        assert start is not None and at is not None
        if len(anchor) == 10 and window.unit in ("minutes", "hours"):
            raise WindowMismatch(f"a window of {window.unit} on a column of dates")
        return _spelled_like(window_end(start, at, window), anchor)
    if isinstance(anchor, dt.date):
        if not window.is_time:
            raise WindowMismatch(f"window {window} is a number, and the column holds dates or times")
        if window.unit in _FIXED:
            if not isinstance(anchor, dt.datetime) and window.unit in ("minutes", "hours"):
                raise WindowMismatch(f"a window of {window.unit} on a column of dates")
            step = dt.timedelta(**{window.unit: int(window.count)})
            return anchor + ((lower - anchor) // step + 1) * step
        months = int(window.count) * (12 if window.unit == "years" else 1)
        between = (lower.year - anchor.year) * 12 + lower.month - anchor.month
        k = between // months - 1
        while _add_months(anchor, k * months) <= lower:
            k += 1
        return _add_months(anchor, k * months)
    if window.is_time:
        raise WindowMismatch(f"window {window} is a length of time, and the column holds numbers")
    if isinstance(anchor, int) and window.count == window.count.to_integral_value():
        step = int(window.count)
        return anchor + ((lower - anchor) // step + 1) * step
    step = window.count
    k = math.floor(EXACT.divide(Decimal(str(lower)) - Decimal(str(anchor)), step)) + 1
    end = EXACT.add(Decimal(str(anchor)), EXACT.multiply(step, Decimal(k)))
    return float(end) if isinstance(anchor, float) else end
