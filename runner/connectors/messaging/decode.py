"""Messages into rows: a JSON payload's values found by path and converted to the column's
type (the inverse of `encode`, and lenient where JSON is: a decimal may come as a number or a
string), or the whole body as one column. A value that does not fit is a `BadMessage` naming
the column, its path and why; the task's read says whether it stops the task or goes to a
dead-letter destination."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import uuid
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from runner.streams.types import Column, ColumnType, TypeKind

MISSING = object()
_DURATION = re.compile(r"^(-?)P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")
_TYPE = re.compile(r"^([a-z]+)(?:\((\d+)(?:,\s*(\d+))?\))?$")
KINDS: tuple[TypeKind, ...] = (
    "smallint", "integer", "bigint", "decimal", "real", "double", "boolean", "text", "varchar", "char",
    "date", "time", "duration", "timestamp", "timestamptz", "json", "jsonb", "binary", "uuid",
)  # fmt: skip


class BadMessage(Exception):
    """A message that cannot become a row; the message says why."""


def column_type(text: str) -> ColumnType:
    """`'decimal(12,2)'`, `'varchar(40)'`, `'timestamptz'` -> a `ColumnType`.

    Raises:
        ValueError: not one of runner's types (the message lists them).
    """
    match = _TYPE.match(text.strip().lower())
    kind = match[1] if match else ""
    if kind not in KINDS or match is None:
        raise ValueError(f"unknown type {text!r}; runner's types: {', '.join(KINDS)} (e.g. decimal(12,2))")
    a, b = (int(match[2]) if match[2] else None), (int(match[3]) if match[3] else None)
    if kind == "decimal":
        return ColumnType("decimal", precision=a, scale=b if b is not None else (0 if a else None))
    if kind in ("varchar", "char"):
        return ColumnType(kind, length=a)  # type: ignore[arg-type]
    if a is not None:
        raise ValueError(f"type {kind!r} takes no arguments")
    return ColumnType(kind)  # type: ignore[arg-type]


def duration(text: str) -> dt.timedelta:
    match = _DURATION.match(text)
    if not match or text in ("P", "-P", "PT", "-PT"):
        raise ValueError(f"{text!r} is not an ISO 8601 duration such as PT1H30M or -P1DT2.5S")
    sign, days, hours, minutes, seconds = match.groups()
    value = dt.timedelta(days=int(days or 0), hours=int(hours or 0), minutes=int(minutes or 0))
    value += dt.timedelta(microseconds=int(Decimal(seconds or 0) * 1_000_000))
    return -value if sign else value


def _timestamp(zoned: bool) -> Callable[[Any], Any]:
    def convert(value: Any) -> dt.datetime:
        parsed = dt.datetime.fromisoformat(value if type(value) is str else str(value))  # "Z" read as UTC
        if parsed.tzinfo is not None:
            return parsed.astimezone(dt.UTC).replace(tzinfo=None)
        return parsed  # a timestamptz without an offset is UTC, as every naive time in runner

    return convert


def _integer(value: Any) -> int:
    if isinstance(value, bool) or (isinstance(value, Decimal) and value != value.to_integral_value()):
        raise ValueError(f"{value!r} is not an integer")
    return int(value)


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{value!r} is not true or false")
    return value


def _text(value: Any) -> str:
    if isinstance(value, dict | list):
        raise ValueError("an object or a list is not text (map it to a json column)")
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _float(value: Any) -> float:
    if value in ("NaN", "Infinity", "-Infinity"):  # as `encode` writes them
        return float(value)
    return float(_decimal(value))


def _decimal(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    try:
        return Decimal(value if type(value) is str or type(value) is Decimal else str(value))
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a number") from None


CONVERT: dict[str, Callable[[Any], Any]] = {
    "smallint": _integer,
    "integer": _integer,
    "bigint": _integer,
    "decimal": _decimal,
    "real": lambda v: (
        float(_decimal(v))
        if not isinstance(v, str) or v not in ("NaN", "Infinity", "-Infinity")
        else float(v)
    ),
    "double": lambda v: (
        float(_decimal(v))
        if not isinstance(v, str) or v not in ("NaN", "Infinity", "-Infinity")
        else float(v)
    ),
    "boolean": _boolean,
    "text": _text,
    "varchar": _text,
    "char": _text,
    "date": lambda v: dt.date.fromisoformat(str(v)),
    "time": lambda v: dt.time.fromisoformat(str(v)),
    "duration": lambda v: duration(str(v)),
    "timestamp": _timestamp(False),
    "timestamptz": _timestamp(True),
    "json": lambda v: _plain(v),
    "jsonb": lambda v: _plain(v),
    "binary": lambda v: base64.b64decode(str(v), validate=True),
    "uuid": lambda v: uuid.UUID(str(v)),
}


def _plain(value: Any) -> Any:
    """Parsed JSON with its exact decimals back as floats where they fit one (a JSON column)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() and "." not in str(value) else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def find(document: Any, path: list[str]) -> Any:
    """The value at a dotted path (`customer.address.city`, `items.0.sku`); MISSING if none."""
    value = document
    for part in path:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return MISSING
    return value


_EXACT = json.JSONDecoder(parse_float=Decimal)  # one decoder: `json.loads` with options makes one a call


def parse(body: bytes) -> Any:
    """A JSON body, numbers kept exact (a decimal column gets every digit).

    Raises:
        BadMessage: not UTF-8 JSON.
    """
    try:
        return _EXACT.decode(body.decode(json.detect_encoding(body), "surrogatepass"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadMessage(f"the payload is not JSON: {exc}") from None


# the values JSON gives that a column of the kind keeps as they are (`CONVERT` would give them back)
AS_IS: dict[str, type] = {
    "smallint": int, "integer": int, "bigint": int, "text": str, "varchar": str, "char": str,
}  # fmt: skip


def row_decoder(mapping: list[tuple[Column, list[str]]]) -> Callable[[Any], tuple]:
    """A parsed payload -> a row of `mapping`'s columns (a path absent or null: NULL). A path
    of one name is looked up directly, and a value already of the column's type kept as it is:
    a message's columns are decoded a million times a run."""
    steps = [
        (
            c.name,
            ".".join(path),
            path[0] if len(path) == 1 else None,
            path,
            CONVERT[c.type.kind],
            AS_IS.get(c.type.kind),
            c.type,
        )
        for c, path in mapping
    ]

    def decode(document: Any) -> tuple:
        row = []
        for name, where, key, path, convert, same, type_ in steps:
            value = document.get(key) if key is not None else find(document, path)
            if value is None or value is MISSING:
                row.append(None)
                continue
            if type(value) is not same:
                try:
                    value = convert(value)
                except (ValueError, TypeError, ArithmeticError) as exc:
                    raise BadMessage(f"column {name!r} (path {where!r}, {type_}): {exc}") from None
            if type_.length is not None and isinstance(value, str) and len(value) > type_.length:
                raise BadMessage(f"column {name!r} (path {where!r}): longer than {type_.length} characters")
            row.append(value)
        return tuple(row)

    return decode
