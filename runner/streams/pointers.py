"""Watermark pointers as exact, typed JSON: `{"type": "datetime", "value": "2026-01-02T03:04:05.123456"}`.

A pointer is the highest value of the watermark column that the target has committed, as the
source's driver returned it: a datetime keeps its microseconds and offset, a decimal its
digits, SQLite's timestamp text its exact text. Never a float of a time, never a truncated
string: the next run compares it in the source exactly as the column compares.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

from runner.errors import TerminalError
from runner.streams.values import EXACT, duration_text, parse_duration


def encode(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return {"type": "datetime", "value": value.isoformat()}
    if isinstance(value, dt.date):
        return {"type": "date", "value": value.isoformat()}
    if isinstance(value, dt.timedelta):
        return {"type": "duration", "value": duration_text(value)}
    if isinstance(value, bool):
        return {"type": "boolean", "value": "true" if value else "false"}
    if isinstance(value, int):
        return {"type": "integer", "value": str(value)}
    if isinstance(value, Decimal):
        return {"type": "decimal", "value": str(value)}
    if isinstance(value, float):
        return {"type": "float", "value": repr(value)}
    if isinstance(value, str):
        return {"type": "text", "value": value}
    if isinstance(value, bytes | memoryview):
        return {"type": "binary", "value": bytes(value).hex()}
    if isinstance(value, uuid.UUID):
        return {"type": "uuid", "value": str(value)}
    raise TerminalError(f"runner cannot keep a {type(value).__name__} value as a pointer or key")


_DECODE = {
    "datetime": dt.datetime.fromisoformat,
    "date": dt.date.fromisoformat,
    "duration": parse_duration,
    "integer": int,
    "decimal": Decimal,
    "float": float,
    "text": str,
    "boolean": lambda v: v == "true",
    "binary": bytes.fromhex,
    "uuid": uuid.UUID,
}


def encode_key(values: tuple) -> str:
    """A key (raw values) as exact JSON text, for the digest store. A single integer key (the
    common one, encoded for every row of a first load) is written directly: the same text."""
    if len(values) == 1 and type(values[0]) is int:
        return f'[{{"type":"integer","value":"{values[0]}"}}]'
    return json.dumps([encode(v) for v in values], separators=(",", ":"))


def decode_key(text: str) -> tuple:
    return tuple(decode(v) for v in json.loads(text))


def decode(pointer: dict[str, str] | None) -> Any:
    if not pointer:
        return None
    return _DECODE[pointer["type"]](pointer["value"])


def _is_time(text: str) -> bool:
    try:
        dt.datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def parse(text: str, like: dict[str, str] | None) -> dict[str, str]:
    """A pointer typed by the user (`runner pointer set`): of the current pointer's type when
    there is one, else a number when it is one, else an ISO date or time kept as typed (the
    source compares it with the column: PostgreSQL and MariaDB cast it, SQLite's timestamps
    are text). Free text is taken only where the current pointer is free text too: "yesterday"
    for a time column would be compared as text and silently read the wrong rows."""
    if like is not None and like["type"] == "text":
        if _is_time(like["value"]) and not _is_time(text):
            raise ValueError(f"{text!r} is not an ISO date or time like {like['value']!r}")
        return {"type": "text", "value": text}
    kinds = [like["type"]] if like else ["integer", "decimal"]
    for kind in kinds:
        try:
            value = _DECODE[kind](text)
        except (ValueError, InvalidOperation):
            continue
        if isinstance(value, Decimal | float) and not math.isfinite(value):
            continue  # NaN and Infinity compare with nothing
        return encode(value) or {}
    if like is None and _is_time(text):
        return {"type": "text", "value": text}
    expected = f"a valid {like['type']} value" if like else "a number or an ISO date or time"
    raise ValueError(f"{text!r} is not {expected}")


def coerce(value: Any, like: Any) -> Any:
    """`value` (a pointer typed by hand) in the type of `like` (a value of the column)."""
    if isinstance(value, dt.datetime) and isinstance(like, dt.datetime):
        # a pointer kept without its zone (by an older runner) is UTC
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None and like.tzinfo is not None else value
    if type(value) is type(like) or value is None:
        return value
    text = value.isoformat() if isinstance(value, dt.date) else str(value)
    if isinstance(like, dt.datetime):
        parsed = dt.datetime.fromisoformat(text)
        if like.tzinfo is not None and parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        return parsed
    if isinstance(like, dt.date):
        return dt.date.fromisoformat(text)
    if isinstance(like, bool):
        raise TypeError("a boolean column cannot be a watermark")
    if isinstance(like, int):
        return int(Decimal(text))
    if isinstance(like, Decimal):
        return Decimal(text)
    if isinstance(like, float):
        return float(text)
    if isinstance(like, str) and isinstance(value, dt.datetime):
        return value.isoformat(sep=" ", timespec="microseconds")
    return type(like)(text)


def shift_back(value: Any, amount: float) -> Any:
    """`value` moved back by the lookback: seconds for times, units for numbers."""
    if not amount or value is None:
        return value
    if isinstance(value, dt.datetime):
        return value - dt.timedelta(seconds=amount)
    if isinstance(value, dt.date):
        return value - dt.timedelta(days=math.ceil(amount / 86400))
    if isinstance(value, int):
        return value - math.ceil(amount)
    if isinstance(value, Decimal):
        return EXACT.subtract(value, Decimal(repr(amount)))
    if isinstance(value, float):
        return value - amount
    if isinstance(value, str):  # SQLite keeps times as ISO text: shift it in the same spelling
        try:
            moment = dt.datetime.fromisoformat(value)
        except ValueError:
            raise TerminalError(
                f"lookback needs a time or number column; the pointer is text {value!r}"
            ) from None
        shifted = moment - dt.timedelta(seconds=amount)
        sep = "T" if "T" in value else " "
        return shifted.isoformat(sep=sep, timespec="microseconds" if "." in value else "seconds")
    return value
