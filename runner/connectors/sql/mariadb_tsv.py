"""Canonical values as the tab-separated text MariaDB's LOAD DATA reads: one field encoder per
column type (`\\N` for NULL, tabs, newlines and backslashes escaped, plain decimal notation,
ISO times, hex for bytes read back through UNHEX)."""

from __future__ import annotations

import datetime as dt
from typing import Any

ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\x00": "\\0"})


def text_field(value: Any) -> str:
    if value is None:
        return "\\N"
    return (value if isinstance(value, str) else str(value)).translate(ESCAPES)


def plain_field(value: Any) -> str:  # integers: no character to escape
    return "\\N" if value is None else str(value)


def decimal_field(value: Any) -> str:  # plain notation, never 1E+3
    return "\\N" if value is None else format(value, "f")


def iso_field(value: Any) -> str:
    if value is None or isinstance(value, str):  # an `OutOfRange` time is MariaDB's text already
        return text_field(value)
    return value.isoformat(" ") if isinstance(value, dt.datetime) else value.isoformat()


def bool_field(value: Any) -> str:
    return "\\N" if value is None else ("1" if value else "0")


def hex_field(value: Any) -> str:
    return "\\N" if value is None else bytes(value).hex()


TSV = {
    "smallint": plain_field,
    "integer": plain_field,
    "bigint": plain_field,
    "decimal": decimal_field,
    "real": lambda v: "\\N" if v is None else repr(v),
    "double": lambda v: "\\N" if v is None else repr(v),
    "boolean": bool_field,
    "date": iso_field,
    "time": iso_field,
    "timestamp": iso_field,
    "timestamptz": iso_field,
    "binary": hex_field,
}
