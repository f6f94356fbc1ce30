"""Canonical values as JSON, losslessly: what a message's default payload holds, and what a
payload template sees (`row`, `key`).

| canonical value          | JSON                                                          |
|--------------------------|---------------------------------------------------------------|
| int, bool, str, None     | number, true/false, string, null (an int keeps every digit)   |
| float                    | number (shortest repr that reads back the same); NaN and     |
|                          | infinities as the strings "NaN", "Infinity", "-Infinity"      |
| Decimal                  | string of its exact digits ("12.50"): a JSON number would be |
|                          | read back as a binary float by most consumers                 |
| date, time               | ISO 8601 string ("2024-05-01", "13:45:00.250000")             |
| datetime, `timestamp`    | ISO 8601 without an offset ("2024-05-01T13:45:00")            |
| datetime, `timestamptz`  | ISO 8601 in UTC with "Z" ("2024-05-01T13:45:00Z")             |
| timedelta (a duration)   | ISO 8601 duration with a sign ("-P1DT2H3M4.5S")               |
| bytes                    | base64 string                                                 |
| UUID                     | canonical string                                              |
| JSON (dict, list, ...)   | itself                                                        |
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from runner.streams.types import Column

Encode = Callable[[Any], Any]


def _float(value: float) -> Any:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def duration(value: dt.timedelta) -> str:
    """An ISO 8601 duration with a leading sign: `-P1DT2H3M4.5S`, `PT0S`."""
    sign = "-" if value < dt.timedelta(0) else ""
    value = abs(value)
    days, seconds, micros = value.days, value.seconds, value.microseconds
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{secs}.{micros:06d}".rstrip("0").rstrip(".") if micros else str(secs)
    time = "".join(f"{n}{unit}" for n, unit in ((hours, "H"), (minutes, "M")) if n) + (
        f"{text}S" if secs or micros or not (hours or minutes or days) else ""
    )
    return f"{sign}P{f'{days}D' if days else ''}{f'T{time}' if time else ''}"


def _datetime(zoned: bool) -> Encode:
    def encode(value: Any) -> Any:
        if not isinstance(value, dt.datetime):
            return any_value(value)
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value.isoformat() + ("Z" if zoned else "")

    return encode


def _same(value: Any) -> Any:
    return value


AS_IS = frozenset({type(None), bool, int, str})  # JSON as they are, whatever the column's type
_BY_TYPE: dict[type, Encode] = {
    **dict.fromkeys(AS_IS, _same),
    float: _float,
    Decimal: str,
    dt.date: dt.date.isoformat,
    dt.time: dt.time.isoformat,
    uuid.UUID: str,
}


def any_value(value: Any) -> Any:
    """A canonical value of any type, when the column's type does not say more."""
    exact = _BY_TYPE.get(value.__class__)  # the common types in one look-up, before isinstance
    if exact is not None:
        return exact(value)
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime):
        return _datetime(value.tzinfo is not None)(value)
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return duration(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {str(k): any_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [any_value(v) for v in value]
    return str(value)  # text a source gave for a value runner cannot map (`unmapped_types: text`)


def encoder(column: Column) -> Encode:
    """A column's canonical values -> JSON values."""
    kind = column.type.kind
    if kind in ("timestamp", "timestamptz"):
        return _datetime(kind == "timestamptz")
    if kind in ("json", "jsonb"):
        return lambda value: value  # parsed JSON already
    return any_value


def row_encoder(columns: list[Column]) -> Callable[[tuple], dict[str, Any]]:
    """A row -> a JSON object of its columns, in order."""
    pairs = [(c.name, encoder(c)) for c in columns]

    def encode(row: tuple) -> dict[str, Any]:
        # None, booleans, integers and strings are themselves in every column (no call)
        return {n: v if v.__class__ in AS_IS else e(v) for (n, e), v in zip(pairs, row, strict=True)}

    return encode


_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def dumps(value: Any) -> bytes:
    """Compact JSON in UTF-8, as every payload is sent (one encoder for every message:
    `json.dumps` with options builds one per call)."""
    return _JSON.encode(value).encode()
