"""Conversions between canonical values and what drivers hold, shared by the SQL dialects.

Canonical values are: int, Decimal, float, str, bool, date, time, datetime (naive = UTC),
timedelta (a duration), bytes, UUID, and parsed JSON (dict, list, ...)."""

from __future__ import annotations

import datetime as dt
import json
import re
import struct
import uuid
from collections.abc import Callable, Sequence
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from runner.errors import TerminalError
from runner.streams.types import Column

if TYPE_CHECKING:
    pass

from runner.streams.types import Batch, Convert

# --- value conversion shared by the SQL dialects -----------------------------------------

TIMES = ("date", "time", "timestamp", "timestamptz")


class OutOfRange(str):
    """A date or time a source holds that Python's cannot (PostgreSQL's `infinity`, a BC date,
    a year past 9999, 24:00:00; MariaDB's zero dates), kept as the source's own text: a
    target whose columns of that type take such text (`SqlConnector.holds_out_of_range`:
    PostgreSQL's, MariaDB's TIME for 24:00:00) takes it back as it is; any other fails naming
    its row and column."""


def to_naive_utc(value: Any) -> Any:
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def to_aware_utc(value: Any) -> Any:
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


def decimal_of(scale: int | None) -> Convert:
    """Text, int or float -> Decimal, at the column's scale (a float from SQLite's REAL storage
    goes through its shortest repr, so 12.3 in a numeric(12,2) column reads back as 12.30)."""
    quantum = Decimal(1).scaleb(-scale) if scale is not None else None

    def convert(value: Any) -> Any:
        if value is None or isinstance(value, Decimal) and quantum is None:
            return value
        number = (
            value
            if isinstance(value, Decimal)
            else Decimal(repr(value) if isinstance(value, float) else str(value))
        )
        return exact_quantize(number, quantum) if quantum is not None else number

    return convert


# Exact decimal arithmetic: the default context keeps 28 digits (a NUMERIC(38,10) value needs
# 38, MariaDB's DECIMAL 65) and would round or refuse.
EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)


def exact_quantize(number: Decimal, quantum: Decimal) -> Decimal:
    """`number` at `quantum`'s scale, however many digits that takes."""
    return number.quantize(quantum, context=EXACT)


_DURATION = re.compile(r"(-?)(\d+):(\d\d):(\d\d)(?:\.(\d{1,6}))?")


def duration_text(value: Any) -> Any:
    """A duration as `[-]HH:MM:SS.ffffff`, hours past 24 as they are: MariaDB's TIME literal,
    and the text SQLite keeps (`parse_duration` reads it back exactly)."""
    if not isinstance(value, dt.timedelta):
        return value
    sign, rest = ("-", -value) if value < dt.timedelta(0) else ("", value)
    seconds = rest.days * 86400 + rest.seconds
    return f"{sign}{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}.{rest.microseconds:06d}"


def parse_duration(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    match = _DURATION.fullmatch(value.strip())
    if not match:
        raise ValueError(f"{value!r} is not a duration ([-]HH:MM:SS.ffffff)")
    sign, hours, minutes, seconds, fraction = match.groups()
    length = dt.timedelta(
        hours=int(hours),
        minutes=int(minutes),
        seconds=int(seconds),
        microseconds=int((fraction or "0").ljust(6, "0")),
    )
    return -length if sign else length


def json_text(value: Any) -> Any:
    """Canonical JSON is parsed; a JSON string value is dumped too (`"a"` stays a string)."""
    return json.dumps(value, ensure_ascii=False)


def json_value(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


def uuid_value(value: Any) -> Any:
    return uuid.UUID(str(value)) if value is not None and not isinstance(value, uuid.UUID) else value


def text_of(value: Any) -> Any:
    return value if value is None else str(value)


def row_converter(
    converters: list[Convert | None], columns: list[Column], keys: Sequence[int] = ()
) -> Callable[[Batch], Batch] | None:
    """A function converting a batch column by column, or None when no column needs it. A
    value it cannot convert fails the batch naming its column and, by the `keys` columns'
    values, its row."""
    active = [(i, c) for i, c in enumerate(converters) if c is not None]
    if not active:
        return None

    def convert(batch: Batch) -> Batch:
        out = []
        for row in batch:
            values = list(row)
            for i, fn in active:
                value = values[i]
                if value is not None:
                    try:
                        values[i] = fn(value)
                    except (ValueError, TypeError, InvalidOperation, OverflowError) as exc:
                        row_key = ", ".join(f"{columns[k].name}={row[k]!r}" for k in keys)
                        raise TerminalError(
                            (f"row with key {row_key}: " if row_key else "")
                            + f"column {columns[i].name!r} ({columns[i].type}): cannot "
                            f"convert value of type {type(value).__name__}: {exc}"
                        ) from None
            out.append(tuple(values))
        return out

    return convert


# --- values as `runner verify` compares them ---------------------------------------------


class _NaN:
    """Not-a-number as a compared value: equal to itself (a float NaN is not), so a NaN held
    on both sides is no difference."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _NaN)

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "NaN"


NAN = _NaN()


def comparable(value: Any, kind: str) -> Any:
    """A canonical value in the form two databases' values are compared in: equal exactly when
    they hold the same value. A timestamp with a zone is its naive UTC time, a `real` the
    single-precision float it is (a database that gives its double read of it, or keeps a
    double in a REAL, gives the same value), a `char` without its padding, bytes as `bytes`,
    a UUID's text as a UUID, NaN equal to NaN; Python's own equality does the rest (a Decimal
    at any scale, 1 and 1.0, True and 1)."""
    if value is None:
        return None
    if isinstance(value, float):
        if value != value:
            return NAN
        if kind == "real":
            try:
                return struct.unpack("f", struct.pack("f", value))[0]
            except OverflowError:
                return value
        return value
    if isinstance(value, Decimal) and value.is_nan():
        return NAN
    if isinstance(value, dt.datetime):
        return to_naive_utc(value)
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        if kind == "char":
            return value.rstrip(" ")
        if kind == "uuid":
            try:
                return uuid.UUID(value)
            except ValueError:
                return value
    return value


# The kinds whose values `canonical_text` spells, and the SQL dialects spell alike
# (`SqlConnector.canonical_sql`); a row with a column of another kind has no canonical text.
CANONICAL_KINDS = frozenset(
    ("smallint", "integer", "bigint", "decimal", "real", "double", "boolean", "text", "varchar", "char")
    + ("date", "timestamp", "timestamptz")
)


def canonical_text(value: Any, kind: str) -> str | None:
    """A canonical value's text as verify's row hash spells it in every dialect (exact: the
    value can be read back from it, so equal texts mean equal values): integers and decimals
    in plain notation (a decimal at its scale), a double as its shortest exact digits (a
    `real` as the double it is), with an exponent from 1e15 (as PostgreSQL), a boolean 1 or
    0, a date `YYYY-MM-DD`, a timestamp `YYYY-MM-DD HH:MM:SS.ffffff` (naive UTC); None for
    NULL. Where a database spells a value otherwise (an exponent's form), the texts differ
    and the rows are compared in Python: slower, never wrong."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    if kind == "char" and isinstance(value, str):
        return value.rstrip(" ")
    if kind == "real" and isinstance(value, float):
        value = comparable(value, "real")
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value).replace("inf", "Infinity").replace("nan", "NaN")
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dt.datetime):
        v = to_naive_utc(value)
        return (
            f"{v.year:04d}-{v.month:02d}-{v.day:02d} {v.hour:02d}:{v.minute:02d}:{v.second:02d}"
            f".{v.microsecond:06d}"
        )
    if isinstance(value, dt.date):
        return f"{value.year:04d}-{value.month:02d}-{value.day:02d}"
    return str(value)


def canonical_row_text(values: Sequence[Any], kinds: Sequence[str]) -> bytes:
    """A row's canonical texts joined unambiguously: each as its length in bytes, a colon and
    its UTF-8 bytes, a NULL as `N` (`SqlConnector.canonical_row_sql` builds the same)."""
    parts = []
    for value, kind in zip(values, kinds, strict=True):
        text = canonical_text(value, kind)
        if text is None:
            parts.append(b"N")
        else:
            data = text.encode()
            parts.append(b"%d:%s" % (len(data), data))
    return b"".join(parts)
