"""The copy matrix: every (source, target) pair of SQLite, PostgreSQL and MariaDB.

In the style of dlt's `destinations_configs`: two parametrised fixtures, `source` and
`target`, each give a fresh database of one dialect, and pytest runs the test body for all
nine combinations. The servers are requested lazily (`request.getfixturevalue`), so the
SQLite-only pair runs without them.

For each pair a table created natively in the source (every common column type, NULLs,
unicode, extreme numbers, microseconds, more rows than a batch) and a grouped query are
copied through `services.apply` + `services.run`; both sides are then read back with the plain
drivers, normalised to canonical Python values and compared exactly, and the target's column
types are checked.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from runner import services
from tests.conftest import Project
from tests.engine.conftest import DIALECTS, Database

ROWS = 50
BATCH_SIZE = 7  # ROWS is not a multiple: the last batch is partial


# --- the source table ----------------------------------------------------------------------


@dataclass(frozen=True)
class Col:
    name: str
    kind: str  # how values are normalised: see _canonical
    scale: int | None = None
    ddl: tuple[str | None, str | None, str | None] = (None, None, None)  # sqlite, postgresql, mariadb

    def declared(self, dialect: str) -> str | None:
        return self.ddl[DIALECTS.index(dialect)]


COLUMNS = [
    Col("id", "int", ddl=("INTEGER NOT NULL", "integer NOT NULL", "INT NOT NULL")),
    Col("qty", "int", ddl=("INTEGER", "integer", "INT")),
    Col("big", "int", ddl=("BIGINT", "bigint", "BIGINT")),
    Col("small", "int", ddl=("SMALLINT", "smallint", "SMALLINT")),
    Col("price", "decimal", 2, ("NUMERIC(12,2)", "numeric(12,2)", "DECIMAL(12,2)")),
    Col("precise", "decimal", 6, ("NUMERIC(20,6)", "numeric(20,6)", "DECIMAL(20,6)")),
    Col("name", "text", ddl=("VARCHAR(40)", "varchar(40)", "VARCHAR(40)")),
    Col("note", "text", ddl=("TEXT", "text", "TEXT")),
    Col("active", "bool", ddl=("BOOLEAN", "boolean", "BOOLEAN")),
    Col("day", "date", ddl=("DATE", "date", "DATE")),
    Col("seen_at", "timestamp", ddl=("TIMESTAMP", "timestamp(6)", "DATETIME(6)")),
    Col("seen_tz", "timestamp", ddl=(None, "timestamptz", None)),  # only PostgreSQL has the type
    Col("doc", "json", ddl=("JSON", "jsonb", "JSON")),
    Col("payload", "binary", ddl=("BLOB", "bytea", "LONGBLOB")),
]

# The type each column gets in a target (but PostgreSQL's jsonb and MariaDB's JSON are jsonb in PostgreSQL).
TARGET_TYPES = {
    "postgresql": {
        "id": "integer",
        "qty": "integer",
        "big": "bigint",
        "small": "smallint",
        "price": "numeric(12,2)",
        "precise": "numeric(20,6)",
        "name": "character varying(40)",
        "note": "text",
        "active": "boolean",
        "day": "date",
        "seen_at": "timestamp without time zone",
        "seen_tz": "timestamp with time zone",
        "doc": "json",
        "payload": "bytea",
    },
    "mariadb": {
        "id": "int",
        "qty": "int",
        "big": "bigint",
        "small": "smallint",
        "price": "decimal(12,2)",
        "precise": "decimal(20,6)",
        "name": "varchar(40)",
        "note": "longtext",
        "active": "tinyint(1)",
        "day": "date",
        "seen_at": "datetime(6)",
        "seen_tz": "datetime(6)",  # MariaDB has no zone type: UTC in DATETIME(6), as documented
        "doc": "json",
        "payload": "longblob",
    },
    "sqlite": {
        "id": "INTEGER",
        "qty": "INTEGER",
        "big": "BIGINT",
        "small": "SMALLINT",
        "price": "NUMERIC(12,2)",
        "precise": "NUMERIC_TEXT(20,6)",  # wider than a REAL: TEXT affinity keeps every digit
        "name": "VARCHAR(40)",
        "note": "TEXT",
        "active": "BOOLEAN",
        "day": "DATE",
        "seen_at": "TIMESTAMP",
        "seen_tz": "TIMESTAMPTZ",
        "doc": "JSON",
        "payload": "BLOB",
    },
}

TEXTS = [
    "Zürich",
    "東京",
    "🎁",
    "",
    "naïve café – ok",
    'O\'Brien "q" \\ %s ?',
    "tab\tand\nnewline",
    "form\x0cfeed\x0bvtab\\f \\N",  # escapes that PostgreSQL's COPY text and MariaDB's LOAD DATA spell apart
]
PRICES = ["0.10", "99999999.99", "-99999999.99", "0.00", "12.34", "-0.01", "12.00"]
PRECISE = ["12345678901234.123456", "-12345678901234.123456", "0.000001", "99999999999999.999999", "1.5"]
DOCS: list[Any] = [
    {"city": "Zürich", "tags": ["東京", "🎁"], "n": 1.5, "ok": True, "none": None},
    [1, 2, 3],
    "just a string",
    42,
    {"nested": {"deep": [{"a": -1}]}},
    {},
    [],
]
BLOBS = [b"", b"\x00\x01\xff", bytes(range(256)), "Zürich 🎁".encode(), b"\x00" * 10]
ZONES = [dt.UTC, dt.timezone(dt.timedelta(hours=5, minutes=30)), dt.timezone(-dt.timedelta(hours=8))]
SEEN = dt.datetime(2024, 2, 29, 23, 59, 59, 999999)


def source_columns(dialect: str) -> list[Col]:
    return [c for c in COLUMNS if c.declared(dialect)]


def _value(column: Col, i: int, dialect: str) -> Any:
    n = i - 1
    if column.name == "id":
        return i
    extremes = {
        "qty": (-(2**31), 2**31 - 1),
        "big": (-(2**63), 2**63 - 1),
        "small": (-(2**15), 2**15 - 1),
    }
    if column.name in extremes and i <= 2:
        return extremes[column.name][i - 1]
    if i == ROWS or (i + COLUMNS.index(column)) % 9 == 0:
        return None  # the last row is NULL in every nullable column, the others here and there
    match column.name:
        case "qty":
            return (i - 25) * 1_000_003
        case "big":
            return i * -9_007_199_254_740_993  # not exact as a float
        case "small":
            return (-1) ** i * i * 600
        case "price":
            return Decimal(PRICES[n % len(PRICES)])
        case "precise":
            value = Decimal(PRECISE[n % len(PRECISE)])
            if dialect == "sqlite" and value == Decimal("99999999999999.999999"):
                # a REAL rounds it to 1e14, past the declared precision (the targets refuse that)
                return Decimal("-99999999999999.99")
            return value
        case "name":
            return TEXTS[n % len(TEXTS)]
        case "note":
            return "x" * 20_000 if i == 5 else "" if i == 6 else "東京 " * i + "🎁"
        case "active":
            return i % 3 == 0
        case "day":
            return {1: dt.date(1000, 1, 1), 3: dt.date(9999, 12, 31)}.get(
                i, dt.date(2000, 1, 1) + i * dt.timedelta(97)
            )
        case "seen_at":
            return SEEN - dt.timedelta(days=i * 11, hours=i, microseconds=i * 12345)
        case "seen_tz":
            return (SEEN - dt.timedelta(hours=i * 7, microseconds=i)).replace(tzinfo=ZONES[n % len(ZONES)])
        case "doc":
            return DOCS[n % len(DOCS)]
        case "payload":
            return BLOBS[n % len(BLOBS)]
    raise AssertionError(column.name)


def source_rows(dialect: str) -> list[tuple[Any, ...]]:
    """The rows as Python values (the canonical form, before any database)."""
    return [tuple(_value(c, i, dialect) for c in source_columns(dialect)) for i in range(1, ROWS + 1)]


def _native(dialect: str, column: Col, value: Any) -> Any:
    """A value as an application of that database would insert it."""
    if value is None:
        return None
    if dialect == "sqlite":  # dynamic typing: text, integers and blobs
        if column.kind == "decimal":
            return str(value)  # NUMERIC affinity makes it INTEGER or REAL
        if column.kind == "bool":
            return int(value)
        if column.kind in ("date", "timestamp"):
            return value.isoformat(sep=" ") if isinstance(value, dt.datetime) else value.isoformat()
    if column.kind == "json":
        if dialect == "postgresql":
            from psycopg.types.json import Jsonb

            return Jsonb(value)
        return json.dumps(value, ensure_ascii=False)
    return value


def create_source(db: Database) -> None:
    columns = source_columns(db.dialect)
    body = ", ".join(f"{c.name} {c.declared(db.dialect)}" for c in columns)
    names = ", ".join(c.name for c in columns)
    marks = ", ".join([db.mark] * len(columns))
    rows = [
        tuple(_native(db.dialect, c, v) for c, v in zip(columns, row, strict=True))
        for row in source_rows(db.dialect)
    ]
    with db.cursor() as cursor:
        cursor.execute(f"CREATE TABLE src ({body})")
        cursor.executemany(f"INSERT INTO src ({names}) VALUES ({marks})", rows)


# --- reading back --------------------------------------------------------------------------


def _canonical(dialect: str, column: Col, value: Any) -> Any:
    """A value as the driver returns it -> canonical Python, accepting only what that
    database can store for the column (so a decimal stored as text in PostgreSQL fails)."""
    if value is None:
        return None
    kind, sqlite = column.kind, dialect == "sqlite"

    def expect(*types: type) -> None:
        assert isinstance(value, types), (
            f"{dialect} column {column.name} ({kind}): got {type(value).__name__} {value!r}"
        )

    match kind:
        case "int":
            expect(int)
            return value
        case "decimal" | "exact":  # exact: an integer or a decimal, whichever the database made it
            if sqlite:
                expect(int, float, str)
            else:
                expect(Decimal, int) if kind == "exact" else expect(Decimal)
            number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
            return number.quantize(Decimal(1).scaleb(-column.scale)) if column.scale is not None else number
        case "float":
            expect(float, int)
            return float(value)
        case "text":
            expect(str)
            return value
        case "bool":
            if dialect == "postgresql":
                expect(bool)
                return value
            assert value in (0, 1), f"{dialect} column {column.name}: boolean stored as {value!r}"
            return bool(value)
        case "date":
            if sqlite:
                expect(str)
                return dt.date.fromisoformat(value)
            expect(dt.date)
            assert not isinstance(value, dt.datetime), f"{column.name}: {value!r} is not a date"
            return value
        case "timestamp":
            if sqlite:
                expect(str)
                value = dt.datetime.fromisoformat(value)
            expect(dt.datetime)
            if value.tzinfo is not None:
                value = value.astimezone(dt.UTC).replace(tzinfo=None)
            return value
        case "json":
            if dialect == "postgresql":  # psycopg parses json and jsonb; text would stay a str
                return value
            if sqlite:  # JSON has NUMERIC affinity there: a top-level number is stored as one
                expect(str, int, float)
                return json.loads(value) if isinstance(value, str) else value
            expect(str)
            return json.loads(value)
        case "binary":
            expect(bytes, memoryview)
            return bytes(value)
    raise AssertionError(kind)


def read_back(db: Database, table: str, columns: list[Col], order_by: str) -> list[tuple[Any, ...]]:
    names = ", ".join(c.name for c in columns)
    rows = db.fetch(f"SELECT {names} FROM {table} ORDER BY {order_by}")
    return [tuple(_canonical(db.dialect, c, v) for c, v in zip(columns, row, strict=True)) for row in rows]


def expected_canonical(dialect: str) -> list[tuple[Any, ...]]:
    """The source rows as the source database keeps them."""
    columns = source_columns(dialect)
    out = []
    for row in source_rows(dialect):
        values = []
        for c, v in zip(columns, row, strict=True):
            if isinstance(v, dt.datetime) and v.tzinfo is not None:
                v = v.astimezone(dt.UTC).replace(tzinfo=None)
            if isinstance(v, Decimal) and dialect == "sqlite":  # a REAL keeps ~15 digits
                v = _canonical("sqlite", c, float(v))
            values.append(v)
        out.append(tuple(values))
    return out


def assert_same_rows(
    expected: list[tuple[Any, ...]], actual: list[tuple[Any, ...]], columns: list[Col], what: str
) -> None:
    assert len(actual) == len(expected), f"{what}: {len(actual)} rows, expected {len(expected)}"
    diffs = [
        f"row {i} column {c.name}: expected {e!r}, got {a!r}"
        for i, (erow, arow) in enumerate(zip(expected, actual, strict=True))
        for c, e, a in zip(columns, erow, arow, strict=True)
        if e != a or type(e) is not type(a)
    ]
    assert not diffs, f"{what}: {len(diffs)} values differ:\n  " + "\n  ".join(diffs[:12])


def target_types(db: Database, table: str) -> dict[str, str]:
    """Column name -> declared type, as the target's catalog shows it."""
    if db.dialect == "postgresql":
        rows = db.fetch(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            f"WHERE attrelid = '{table}'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
        )
        return dict(rows)
    if db.dialect == "sqlite":
        return {r[1]: r[2] for r in db.fetch(f"PRAGMA table_info({table})")}
    json_columns = {  # MariaDB's JSON is LONGTEXT with a json_valid() check named after the column
        name
        for name, clause in db.fetch(
            "SELECT CONSTRAINT_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "
            f"WHERE CONSTRAINT_SCHEMA = DATABASE() AND TABLE_NAME = '{table}'"
        )
        if clause == f"json_valid(`{name}`)"
    }
    types = {}
    for name, declared, *_ in db.fetch(f"SHOW COLUMNS FROM {table}"):
        declared = re.sub(r"^(smallint|int|bigint)\(\d+\)", r"\1", declared)  # display width
        types[name] = "json" if name in json_columns and declared == "longtext" else declared
    return types


# --- the summary query ---------------------------------------------------------------------

QUERY = "SELECT active, count(*) AS n, sum(price) AS total, sum(small) AS small_sum FROM src GROUP BY active"


def summary_columns(source: str) -> list[Col]:
    # SQLite declares no type for an expression: runner infers it from the values, and the sum
    # of a NUMERIC column is a REAL there.
    total = Col("total", "float") if source == "sqlite" else Col("total", "decimal", 2)
    return [Col("active", "bool"), Col("n", "int"), total, Col("small_sum", "exact", 0)]


def _group_key(row: tuple[Any, ...]) -> tuple[bool, bool]:
    return (row[0] is not None, bool(row[0]))


# --- the test ------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def pg_session_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sessions in a zone that is not UTC (libpq reads PGTZ), so no offset can go unnoticed."""
    monkeypatch.setenv("PGTZ", "America/St_Johns")  # -03:30, or -02:30 in summer


def _run(project: Project, replaced: int) -> dict[str, Any]:
    """A run; `replaced`: the rows each task's replace removes (a rerun: those of the last)."""
    record = services.run(project.ws, "copy")
    assert record["status"] == "succeeded", record["error"]
    tasks = {t["name"]: t for t in record["tasks"]}
    assert (tasks["table"]["rows_read"], tasks["table"]["inserted"]) == (ROWS, ROWS)
    assert (tasks["summary"]["rows_read"], tasks["summary"]["inserted"]) == (3, 3)
    assert (tasks["table"]["deleted"], tasks["summary"]["deleted"]) == (replaced and ROWS, replaced and 3)
    assert (record["rows_read"], record["rows_written"]) == (ROWS + 3, (ROWS + 3) * (1 + replaced))
    return record


def test_copy_matrix(project: Project, source: Database, target: Database) -> None:
    create_source(source)
    project.connection("source", source.dialect, source.url)
    project.connection("target", target.dialect, target.url)
    project.job(
        "copy",
        "source",
        "target",
        f"""
        - name: table
          read: {{table: src}}
          write: {{table: dst}}
        - name: summary
          read: {{query: "{QUERY}"}}
          write: {{table: dst_summary}}
        """,
        extra=f"  batch_size: {BATCH_SIZE}\n",
    )
    services.apply(project.ws)
    columns = source_columns(source.dialect)
    summary = summary_columns(source.dialect)

    src = read_back(source, "src", columns, "id")
    assert_same_rows(expected_canonical(source.dialect), src, columns, "source (test setup)")
    src_summary = sorted(
        (
            tuple(_canonical(source.dialect, c, v) for c, v in zip(summary, r, strict=True))
            for r in source.fetch(QUERY)
        ),
        key=_group_key,
    )
    active = [c.name for c in columns].index("active")
    flags = [row[active] for row in source_rows(source.dialect)]
    assert [r[:2] for r in src_summary] == [(v, flags.count(v)) for v in (None, False, True)]

    for rerun, attempt in enumerate(("first run", "second run")):  # a rerun replaces: no duplicate
        _run(project, rerun)
        assert_same_rows(src, read_back(target, "dst", columns, "id"), columns, f"{attempt}: dst")
        dst_summary = sorted(read_back(target, "dst_summary", summary, "n"), key=_group_key)
        assert_same_rows(src_summary, dst_summary, summary, f"{attempt}: dst_summary")
        assert target.fetch("SELECT count(*) FROM dst") == [(ROWS,)]

    # the types the target got: exact, never widened to text or a float
    expected = dict(TARGET_TYPES[target.dialect])
    if source.dialect != "sqlite" and target.dialect == "postgresql":  # MariaDB's JSON is parsed too
        expected["doc"] = "jsonb"
    if source.dialect == "sqlite":  # every SQLite integer column holds 64 bits, whatever its name
        expected.update(dict.fromkeys(("id", "qty", "small"), expected["big"]))
    got = target_types(target, "dst")
    assert got == {c.name: expected[c.name] for c in columns}

    # the query's columns: SQLite declares no type for an expression (runner infers one from
    # the values); MariaDB declares SUM(decimal(p,s)) as decimal(p+22,s), PostgreSQL as numeric
    exact = {
        "sqlite": lambda p, s: (
            "NUMERIC_TEXT" if p is None else f"NUMERIC{'_TEXT' if p > 15 else ''}({p},{s})"
        ),
        "postgresql": lambda p, s: "numeric" if p is None else f"numeric({p},{s})",
        "mariadb": lambda p, s: "decimal(65,30)" if p is None else f"decimal({p},{s})",
    }[target.dialect]
    big = TARGET_TYPES[target.dialect]["big"]
    assert target_types(target, "dst_summary") == {
        "active": TARGET_TYPES[target.dialect]["active"],
        "n": big,
        "total": {
            "sqlite": {"postgresql": "double precision", "mariadb": "double", "sqlite": "DOUBLE"}[
                target.dialect
            ],
            "postgresql": exact(None, None),
            "mariadb": exact(34, 2),
        }[source.dialect],
        "small_sum": exact(27, 0) if source.dialect == "mariadb" else big,
    }
