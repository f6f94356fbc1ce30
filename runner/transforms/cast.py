"""`cast`: columns converted to another of runner's canonical types; the target's column takes
the new type (created so, or changed as `schema_changes` allows). A value that cannot be
converted fails the task, naming the field and the column (never the value). The conversions
are the ones a message's JSON values are decoded with (`messaging.decode`), made lenient
where a source's own values need it (a timestamp's date, a number's text, yes/no)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import replace
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from runner.connectors.messaging.decode import CONVERT, column_type
from runner.definitions.transforms import Cast
from runner.streams.types import INTEGERS, Batch, Column, ColumnType
from runner.streams.values import EXACT
from runner.transforms.registry import TRANSFORMS, Bound, Context
from runner.transforms.rows import index_of, row_error

_TRUE, _FALSE = {"true", "t", "yes", "y", "1"}, {"false", "f", "no", "n", "0"}


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | Decimal) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise ValueError("not true or false")


def _integer(value: Any) -> int:
    if isinstance(value, float | Decimal) and value != int(value):
        raise ValueError("has a fraction")
    if isinstance(value, str):
        return _integer(Decimal(value.strip()))
    return int(value)


def text_of(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), default=str)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _bounded_decimal(to: ColumnType) -> Callable[[Any], Decimal]:
    """A number at `to`'s scale, rounded half away from zero as PostgreSQL and MariaDB round
    a value into a DECIMAL(p,s) column (a target that stores it as given, SQLite, keeps no
    more digits than the type says); one with more than p - s digits before the point fails."""
    quantum = Decimal(1).scaleb(-(to.scale or 0))
    whole = (to.precision or 0) - (to.scale or 0)

    def convert(value: Any) -> Decimal:
        number = CONVERT["decimal"](value).quantize(quantum, rounding=ROUND_HALF_UP, context=EXACT)
        if number and number.adjusted() >= whole:
            raise ValueError(f"has more than {whole} digit(s) before the point, the most {to} holds")
        return number

    return convert


def caster(to: ColumnType) -> Callable[[Any], Any]:
    """A value (not NULL) -> the same value as `to`, converted leniently (a text's number, a
    timestamp's date)."""
    kind = to.kind
    if kind in INTEGERS:
        return _integer
    if kind == "decimal" and to.precision:
        return _bounded_decimal(to)
    if kind == "boolean":
        return _boolean
    if kind in ("text", "varchar", "char"):
        return text_of
    if kind == "date":
        return lambda v: v.date() if isinstance(v, dt.datetime) else CONVERT["date"](v)
    if kind in ("json", "jsonb"):
        return lambda v: json.loads(v) if isinstance(v, str | bytes) else CONVERT[kind](v)
    convert = CONVERT[kind]
    return lambda v: convert(v)


def to_type(text: str) -> ColumnType:
    """A type's name as the definitions take it (`decimal(12,2)`) -> its `ColumnType`."""
    return column_type(text)


def bind(spec: Cast, columns: list[Column], ctx: Context) -> Bound:
    steps = []
    out = list(columns)
    for name, text in spec.columns.items():
        where = ctx.where("columns", name)
        i = index_of(columns, name, where)
        to = to_type(text)
        out[i] = replace(columns[i], type=to, unmapped=None)
        steps.append((i, caster(to), where, name, to))

    def apply(batch: Batch) -> Batch:
        rows = []
        for row in batch:
            values = list(row)
            for i, convert, where, name, to in steps:
                if values[i] is not None:
                    try:
                        values[i] = convert(values[i])
                    except (ValueError, TypeError, ArithmeticError) as exc:
                        raise row_error(where, f"cast of column {name!r} to {to}", exc, row) from None
            rows.append(tuple(values))
        return rows

    return Bound(out, apply)


TRANSFORMS.register("cast", bind)
