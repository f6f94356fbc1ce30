"""A backfill's window and start, as the YAML states them (`changes.window`, `changes.start`).

A window is a length of time in whole units (`30 min`, `6h`, `7d`, `2 weeks`, `1 month`,
`1y`) for a time column, or a plain number (`100000`) for a numeric one. A bare `m` is refused:
it could mean minutes or months. A start is an ISO date or time (`2024-01-01`,
`2024-01-01 06:00`) for a time column, or a number for a numeric one. Both are checked here,
without the source; whether the column is of the window's kind is checked by the run, which
knows the column's type.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

WINDOW_HELP = (
    "a whole number of minutes, hours, days, weeks, months or years ('30 min', '6h', '7d', '2 weeks', "
    "'1 month', '1y'), or a number for a numeric column"
)
_WINDOW = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$")
_UNITS = {
    "min": "minutes",
    "mins": "minutes",
    "minute": "minutes",
    "minutes": "minutes",
    "h": "hours",
    "hour": "hours",
    "hours": "hours",
    "d": "days",
    "day": "days",
    "days": "days",
    "w": "weeks",
    "week": "weeks",
    "weeks": "weeks",
    "mo": "months",
    "month": "months",
    "months": "months",
    "y": "years",
    "year": "years",
    "years": "years",
}


@dataclass(frozen=True)
class Window:
    """`count` units of time (`unit` is minutes, hours, days, weeks, months or years), or, with
    no unit, a step of `count` in a numeric column."""

    count: Decimal
    unit: str | None = None

    @property
    def is_time(self) -> bool:
        return self.unit is not None

    def __str__(self) -> str:
        return f"{self.count} {self.unit}" if self.unit else str(self.count)


def parse_window(value: Any) -> Window:
    """A window field's value (`'7d'`, `'1 month'`, `100000`).

    Raises:
        ValueError: not a window, or zero.
    """
    if isinstance(value, bool):
        raise ValueError(f"invalid window {value!r}; use {WINDOW_HELP}")
    if isinstance(value, int | float):
        count = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        if count <= 0:
            raise ValueError("a window must be more than 0")
        return Window(count)
    match = _WINDOW.match(str(value).lower())
    if match is None:
        raise ValueError(f"invalid window {value!r}; use {WINDOW_HELP}")
    number, unit = match.groups()
    count = Decimal(number)
    if count <= 0:
        raise ValueError("a window must be more than 0")
    if not unit:
        return Window(count)
    if unit == "m":
        raise ValueError(f"window {value!r}: 'm' could be minutes or months; write 'min' or 'month'")
    if unit not in _UNITS:
        raise ValueError(f"invalid window {value!r}: unknown unit {unit!r}; use {WINDOW_HELP}")
    if count != count.to_integral_value():
        raise ValueError(f"window {value!r}: a time window is a whole number of {_UNITS[unit]}")
    return Window(count, _UNITS[unit])


def start_is_time(value: Any) -> bool:
    """Whether a start (already checked by `parse_start`) is a date or time, not a number."""
    return isinstance(value, str) and not _is_number(value)


def _is_number(text: str) -> bool:
    try:
        return Decimal(text).is_finite()
    except InvalidOperation:
        return False


def parse_start(value: Any) -> str | int | float:
    """A start field's value: a date or time from YAML (kept as ISO text: the canonical
    document is JSON), ISO text, or a number.

    Raises:
        ValueError: neither an ISO date or time nor a number.
    """
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bool):
        raise ValueError("a start is an ISO date or time, or a number")
    if isinstance(value, int | float):
        return value
    text = str(value).strip()
    if _is_number(text):
        return text
    try:
        dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"invalid start {value!r}; use an ISO date or time ('2024-01-01', '2024-01-01 06:00') or a number"
        ) from None
    return text
