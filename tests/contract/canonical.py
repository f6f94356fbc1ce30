"""The canonical values every kind must carry exactly: a row of NULLs, unicode with emoji,
decimals at full precision, naive and aware datetimes (an aware one is its UTC instant),
dates, times, durations, JSON, bytes, UUIDs, booleans and 64-bit integers."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from runner.streams.types import Column, ColumnType, Row

COLUMNS = [
    Column("id", ColumnType("bigint")),
    Column("big", ColumnType("bigint")),
    Column("n", ColumnType("integer")),
    Column("wide", ColumnType("decimal", precision=38, scale=10)),
    Column("money", ColumnType("decimal", precision=12, scale=2)),
    Column("ratio", ColumnType("double")),
    Column("flag", ColumnType("boolean")),
    Column("name", ColumnType("varchar", length=40)),
    Column("note", ColumnType("text")),
    Column("day", ColumnType("date")),
    Column("at", ColumnType("time")),
    Column("took", ColumnType("duration")),
    Column("seen", ColumnType("timestamp")),
    Column("seen_tz", ColumnType("timestamptz")),
    Column("doc", ColumnType("json")),
    Column("blob", ColumnType("binary")),
    Column("uid", ColumnType("uuid")),
]
KINDS = {c.name: c.type.kind for c in COLUMNS}

_IST, _PST = dt.timezone(dt.timedelta(hours=5, minutes=30)), dt.timezone(-dt.timedelta(hours=8))
_SPECIAL: list[dict[str, Any]] = [
    {},  # every column NULL but the key
    {
        "big": 2**63 - 1,
        "n": 2**31 - 1,
        "wide": Decimal("1234567890123456789012345678.0123456789"),
        "money": Decimal("99999999.99"),
        "ratio": 0.1,
        "flag": True,
        "name": "Zürich 東京 🎁",
        "note": "tab\tand\nnewline, \\N and form\x0cfeed",
        "day": dt.date(2024, 2, 29),
        "at": dt.time(23, 59, 59, 999999),
        "took": dt.timedelta(hours=838, minutes=59, seconds=59, microseconds=999999),
        "seen": dt.datetime(2024, 2, 29, 23, 59, 59, 999999),
        "seen_tz": dt.datetime(2024, 6, 1, 12, 0, 0, 123456, tzinfo=_IST),
        "doc": {"city": "Zürich", "tags": ["東京", "🎁"], "n": 1.5, "ok": True, "none": None},
        "blob": bytes(range(256)),
        "uid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    },
    {
        "big": -(2**63),
        "n": -(2**31),
        "wide": Decimal("-0.0000000001"),
        "money": Decimal("-0.01"),
        "ratio": -1e300,
        "flag": False,
        "name": "",
        "note": 'O\'Brien "q" \\ %s ?',
        "day": dt.date(1970, 1, 1),
        "at": dt.time(0, 0),
        "took": -dt.timedelta(hours=4, minutes=59, seconds=59, microseconds=999999),
        "seen": dt.datetime(1970, 1, 1),
        "seen_tz": dt.datetime(1999, 12, 31, 23, 0, tzinfo=_PST),
        "doc": [1, [2, {"deep": -1}], "x"],
        "blob": b"",
        "uid": uuid.UUID(int=0),
    },
    {
        "big": 0,
        "wide": Decimal("0.0000000000"),
        "ratio": 2.5,
        "name": "naïve café – ok",
        "day": dt.date(9999, 12, 31),
        "seen": dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
        "seen_tz": dt.datetime(2020, 1, 1, 0, 0, 1),  # naive: UTC
        "doc": "just a string",
        "blob": b"\x00\x01\xff",
    },
]
ROWS = 23  # with batches of 5 the last one is partial


def rows(count: int = ROWS, stamp: int = 0) -> list[Row]:
    """`count` rows: the special ones, then plain ones (`stamp` changes their note)."""
    out = []
    for i in range(1, count + 1):
        values = dict(_SPECIAL[i - 1]) if i <= len(_SPECIAL) else _plain(i, stamp)
        values["id"] = i
        out.append(tuple(values.get(c.name) for c in COLUMNS))
    return out


def _plain(i: int, stamp: int) -> dict[str, Any]:
    return {
        "big": i * 10**12,
        "n": i,
        "wide": Decimal(i).scaleb(-10),
        "money": Decimal(i * 101).scaleb(-2),
        "ratio": i / 4,
        "flag": i % 2 == 0,
        "name": f"row {i} ✓",
        "note": f"note {i} v{stamp}",
        "day": dt.date(2020, 1, 1) + dt.timedelta(days=i),
        "at": dt.time(i % 24, i % 60),
        "took": dt.timedelta(seconds=i * 61, microseconds=i),
        "seen": dt.datetime(2020, 1, 1) + dt.timedelta(minutes=i),
        "seen_tz": dt.datetime(2020, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=i),
        "doc": {"i": i},
        "blob": i.to_bytes(2, "big"),
        "uid": uuid.UUID(int=i),
    }


def held(lacks: frozenset[str]) -> list[int]:
    """The positions of the columns a kind gives back exactly (all but the kinds it `lacks`)."""
    return [i for i, c in enumerate(COLUMNS) if c.type.kind not in lacks]


def columns(lacks: frozenset[str] = frozenset()) -> list[Column]:
    return [COLUMNS[i] for i in held(lacks)]


def project(data: list[Row], lacks: frozenset[str]) -> list[Row]:
    picked = held(lacks)
    return [tuple(r[i] for i in picked) for r in data]


def canonical(value: Any) -> tuple[type, Any]:
    """A value as compared: its type and value, an aware datetime as its naive UTC instant."""
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    if isinstance(value, memoryview | bytearray):
        value = bytes(value)
    return type(value), value


def differences(expected: list[Row], got: list[Row], names: list[str]) -> list[str]:
    """Every value that did not come back as it went in, named by row and column."""
    if len(expected) != len(got):
        return [f"{len(got)} rows, expected {len(expected)}"]
    found = []
    for want, have in zip(expected, got, strict=True):
        for name, a, b in zip(names, want, have, strict=True):
            if canonical(a) != canonical(b):
                found.append(f"id={want[0]} {name}: {b!r}, expected {a!r}")
    return found
