"""Columns and types of CSV and JSON-lines files whose read states none, inferred from a sample
of the first file: each column gets the narrowest of runner's types that every sampled value
fits (bigint, decimal(p,s), double, boolean, date, timestamp, timestamptz), else text; a JSON
object or list is json. A later value that does not fit fails the task naming its file, line
and column, as a stated type would: state `columns` then."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from runner.streams.types import Column, ColumnType

SAMPLE_ROWS = 1000
_INT = re.compile(r"^[+-]?\d{1,18}$")
_DECIMAL = re.compile(r"^[+-]?(\d*)\.(\d+)$")
_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?$")
_ZONED = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$")
BOOLEANS = {"true", "false"}
ORDER = ("bigint", "decimal", "double", "boolean", "date", "timestamp", "timestamptz", "json", "text")


def _parses(pattern: re.Pattern[str], text: str, parse: Any) -> bool:
    if not pattern.match(text):
        return False
    try:
        parse(text)
    except ValueError:
        return False
    return True


def _kinds(value: Any) -> set[str]:
    """Every type a sampled value fits."""
    if isinstance(value, bool):
        return {"boolean", "text"}
    if isinstance(value, int):
        return {"bigint", "decimal", "double", "text"}
    if isinstance(value, Decimal | float):
        return {"decimal", "double", "text"}
    if isinstance(value, dict | list):
        return {"json"}
    text = str(value).strip()
    fits = {"text"}
    if _INT.match(text):
        fits |= {"bigint", "decimal", "double"}
    elif _DECIMAL.match(text):
        fits |= {"decimal", "double"}
    elif _FLOAT.match(text):
        fits.add("double")
    if text.lower() in BOOLEANS:
        fits.add("boolean")
    if _parses(_DATE, text, dt.date.fromisoformat):
        fits.add("date")
    elif _parses(_ZONED, text, lambda t: dt.datetime.fromisoformat(t.replace("Z", "+00:00"))):
        fits.add("timestamptz")
    elif _parses(_TIMESTAMP, text, dt.datetime.fromisoformat):
        fits.add("timestamp")
    return fits


def _decimal_type(values: list[Any]) -> ColumnType:
    """decimal(p,s) holding every sampled value, or double past 38 digits."""
    whole = scale = 0
    for value in values:
        sign, digits, exponent = Decimal(str(value).strip()).as_tuple()
        places = max(0, -int(exponent))
        scale = max(scale, places)
        whole = max(whole, len(digits) + int(exponent))  # 1E+300: 301 digits before the point
    precision = max(1, whole + scale)
    return ColumnType("double") if precision > 38 else ColumnType("decimal", precision=precision, scale=scale)


def infer(names: list[str], rows: Iterable[list[Any]], null: str = "") -> list[Column]:
    """Each column's type from the sample `rows` (values by position; `null` and None are NULL,
    fitting any type; a column only NULL is text)."""
    fits: list[set[str] | None] = [None] * len(names)
    seen: list[list[Any]] = [[] for _ in names]
    structured = [False] * len(names)  # an object or a list among the values: JSON documents' column
    for row in rows:
        for i, value in enumerate(row[: len(names)]):
            if value is None or value == null:
                continue
            structured[i] = structured[i] or isinstance(value, dict | list)
            kinds = _kinds(value)
            fits[i] = kinds if fits[i] is None else fits[i] & kinds  # type: ignore[operator]
            seen[i].append(value)
    columns = []
    for name, kinds, values, mixed in zip(names, fits, seen, structured, strict=True):
        kind = next((k for k in ORDER if kinds and k in kinds), "json" if mixed else "text")
        type_ = _decimal_type(values) if kind == "decimal" else ColumnType(kind)  # type: ignore[arg-type]
        columns.append(Column(name, type_))
    return columns
