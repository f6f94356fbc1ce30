"""Column types in a dialect-neutral form, so a source's columns become the closest exact
type in a target of another dialect.

Each dialect module parses its own type names (`numeric(12,2)`, `character varying(16)`,
`datetime(6)`) into `ColumnType` and renders a `ColumnType` back into its DDL.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

TypeKind = Literal[
    "smallint",
    "integer",
    "bigint",
    "decimal",
    "real",
    "double",
    "boolean",
    "text",
    "varchar",
    "char",
    "date",
    "time",
    "duration",  # a signed length of time (MariaDB's TIME, up to 838:59:59): a timedelta
    "timestamp",
    "timestamptz",
    "json",
    "jsonb",
    "binary",
    "uuid",
]
INTEGERS = ("smallint", "integer", "bigint")


@dataclass(frozen=True)
class ColumnType:
    kind: TypeKind
    length: int | None = None  # varchar / char
    precision: int | None = None  # decimal
    scale: int | None = None  # decimal

    def __str__(self) -> str:
        if self.kind == "decimal" and self.precision is not None:
            return f"decimal({self.precision},{self.scale or 0})"
        if self.length is not None:
            return f"{self.kind}({self.length})"
        return self.kind


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType
    unmapped: str | None = None  # the source's type when runner cannot map it: read as `type` (text, JSON)


_TYPE_ARGS = re.compile(r"^([^(]*?)\s*\(\s*([0-9]+)\s*(?:,\s*([0-9]+)\s*)?\)\s*(.*)$")


def split_type(declared: str) -> tuple[str, int | None, int | None]:
    """A declared type's name (lower case, one space between words, arguments taken out) and
    its numeric arguments: `'NUMERIC(12, 2)'` -> `('numeric', 12, 2)`,
    `'timestamp(3) without time zone'` -> `('timestamp without time zone', 3, None)`."""
    text = " ".join(declared.lower().split())
    match = _TYPE_ARGS.match(text)
    if not match:
        return text, None, None
    name, a, b, rest = match.groups()
    return " ".join(f"{name} {rest}".split()), int(a), int(b) if b else None


Row = tuple[Any, ...]
Batch = list[Row]
Convert = Callable[[Any], Any]
