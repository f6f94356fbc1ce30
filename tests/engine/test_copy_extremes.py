"""The copy matrix at the edges of every type: each (source, target) pair of SQLite,
PostgreSQL and MariaDB copies the extreme values of each type (64-bit integers in any SQLite
integer column, 17-digit doubles, 4-byte floats, 38-digit and unbounded decimals, MariaDB
durations past 24 hours and negative, PostgreSQL's infinity and BC dates, the first and last
timestamps). Each case is a table of its own and a task of its own (`on_error: continue`): the
target holds exactly the source's values, or, where it cannot hold them, the task fails naming
the row's key and the column, and nothing is written.
"""

from __future__ import annotations

import datetime as dt
import re
import struct
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from runner import services
from runner.changes.task import RunOptions
from tests.conftest import Project
from tests.engine.conftest import Database


def f32(value: float) -> float:
    """The 4-byte float nearest `value`, as a Python float."""
    return struct.unpack("f", struct.pack("f", value))[0]


def duration_text(value: dt.timedelta) -> str:
    """The text runner keeps a duration as in SQLite (MariaDB's TIME literal)."""
    sign, rest = ("-", -value) if value < dt.timedelta(0) else ("", value)
    seconds = rest.days * 86400 + rest.seconds
    return f"{sign}{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}.{rest.microseconds:06d}"


H = dt.timedelta(hours=1)


@dataclass(frozen=True)
class Case:
    name: str  # of the task; it copies table s_<name> into d_<name> (one database may be both)
    kind: str  # how values compare: int, float, float32, decimal, duration, timestamp, pgtext
    ddl: dict[str, str]  # source dialect -> declared type (a dialect without it has no such case)
    values: dict[str, list[Any]]  # source dialect ("*": any) -> values as inserted
    expected: dict[str, list[Any]] = field(default_factory=dict)  # source -> what the source holds
    fails_into: tuple[str, ...] = ()  # targets that cannot hold the values: the task fails

    @property
    def table(self) -> str:
        return f"s_{self.name}"

    @property
    def copy(self) -> str:
        return f"d_{self.name}"

    def inserted(self, dialect: str) -> list[Any]:
        return self.values.get(dialect, self.values.get("*", []))

    def held(self, dialect: str) -> list[Any]:
        return self.expected.get(dialect, self.expected.get("*", self.inserted(dialect)))


NINES = "9" * 28 + "." + "9" * 10
CASES = [
    Case(
        "int32",
        "int",
        {"sqlite": "INTEGER", "postgresql": "integer", "mariadb": "INT"},
        {"*": [-(2**31), 2**31 - 1, 0]},
    ),
    Case("int64_in_integer", "int", {"sqlite": "INTEGER"}, {"*": [2**63 - 1, -(2**63), 2**40]}),
    Case("int64_in_smallint", "int", {"sqlite": "SMALLINT"}, {"*": [2**40, -(2**35)]}),
    Case(
        "bigint",
        "int",
        {"sqlite": "BIGINT", "postgresql": "bigint", "mariadb": "BIGINT"},
        {"*": [-(2**63), 2**63 - 1]},
    ),
    Case("smallint", "int", {"postgresql": "smallint", "mariadb": "SMALLINT"}, {"*": [-(2**15), 2**15 - 1]}),
    Case("year", "int", {"mariadb": "YEAR"}, {"*": [1901, 2155]}),
    Case(
        "double",
        "float",
        {"sqlite": "REAL", "postgresql": "double precision", "mariadb": "DOUBLE"},
        {"*": [16777217.0, 0.1, 1 / 3, 1.7976931348623157e308, -2.2250738585072014e-308, 123456789.12345679]},
    ),
    Case(
        "real",
        "float32",
        {"postgresql": "real", "mariadb": "FLOAT"},
        {
            "postgresql": [16777216.0, 0.1, 3.4028234663852886e38, 1.1754943508222875e-38],
            "mariadb": [16777216.0, 0.1, 3.40282e38, 1.17549e-38],
        },
    ),
    Case(
        "decimal38",
        "decimal",
        {"sqlite": "NUMERIC(38,10)", "postgresql": "numeric(38,10)", "mariadb": "DECIMAL(38,10)"},
        {
            "*": [
                Decimal(NINES),
                Decimal("-" + NINES),
                Decimal("0.0000000001"),
                Decimal("12345678901234567890.1234567890"),
            ],
            # SQLite's NUMERIC affinity keeps a REAL (15 digits): what it holds is copied exactly
            "sqlite": ["12345678901234567890.1234567890", "0.0000000001", "-12345.5"],
        },
        {"sqlite": [Decimal(repr(12345678901234567890.1234567890)), Decimal("1E-10"), Decimal("-12345.5")]},
    ),
    Case(
        "numeric_wide",
        "decimal",
        {"postgresql": "numeric"},
        {"*": [Decimal("123456789012345678901234567890.123456789012345678901234567890")]},
    ),
    Case(
        "numeric_too_fine",
        "decimal",
        {"postgresql": "numeric"},
        {"*": [Decimal("1." + "1" * 40)]},
        fails_into=("mariadb",),
    ),  # past DECIMAL(65,30): MariaDB would round it with a mere note
    Case(
        "duration",
        "duration",
        {"mariadb": "TIME(6)"},
        {"*": ["838:59:59", "-838:59:59", "24:00:00", "-00:00:01.5", "100:00:00.000001"]},
        {
            "*": [
                838 * H + dt.timedelta(minutes=59, seconds=59),
                -(838 * H + dt.timedelta(minutes=59, seconds=59)),
                24 * H,
                -dt.timedelta(seconds=1.5),
                100 * H + dt.timedelta(microseconds=1),
            ]
        },
    ),
    Case(
        "timestamp_range",
        "timestamp",
        {"sqlite": "TIMESTAMP", "postgresql": "timestamp(6)", "mariadb": "DATETIME(6)"},
        {
            "*": [dt.datetime(1000, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59, 999999)],
            "sqlite": ["1000-01-01 00:00:00", "9999-12-31 23:59:59.999999"],
        },
        {"*": [dt.datetime(1000, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59, 999999)]},
    ),
    Case(
        "pg_timestamp_special",
        "pgtext",
        {"postgresql": "timestamp"},
        {"*": ["infinity", "-infinity", "0044-03-15 12:00:00 BC", "2000-01-01"]},
        fails_into=("sqlite", "mariadb"),
    ),
    Case(
        "pg_timestamptz_special",
        "pgtext",
        {"postgresql": "timestamptz"},
        {"*": ["infinity", "0100-01-01 00:00:00+00 BC", "2000-01-01 00:00:00+00"]},
        fails_into=("sqlite", "mariadb"),
    ),
    Case(
        "pg_time_24",
        "pgtext",
        {"postgresql": "time"},
        {"*": ["24:00:00", "23:59:59.999999"]},
        fails_into=("sqlite",),  # MariaDB's TIME holds 24:00:00
    ),
    Case(
        "pg_date_special",
        "pgtext",
        {"postgresql": "date"},
        {"*": ["-infinity", "4713-01-01 BC", "2000-01-01"]},
        fails_into=("sqlite", "mariadb"),
    ),
]


def _native(dialect: str, value: Any) -> Any:
    if dialect == "sqlite" and isinstance(value, Decimal | dt.datetime):
        return str(value)
    return value


def _create(db: Database, case: Case) -> None:
    values = case.inserted(db.dialect)
    with db.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE {case.table} (id INTEGER NOT NULL PRIMARY KEY, v {case.ddl[db.dialect]})"
        )
        cursor.executemany(
            f"INSERT INTO {case.table} (id, v) VALUES ({db.mark}, {db.mark})",
            [(i, _native(db.dialect, v)) for i, v in enumerate(values, 1)],
        )


def _canonical(dialect: str, kind: str, value: Any) -> Any:
    match kind:
        case "int":
            assert isinstance(value, int) and not isinstance(value, bool), value
            return value
        case "float":
            assert isinstance(value, float), value
            return value
        case "float32":
            assert isinstance(value, float), value
            return f32(value)
        case "decimal":
            assert isinstance(value, Decimal | str if dialect == "sqlite" else Decimal), value
            return Decimal(value)
        case "duration":
            if dialect == "sqlite":  # kept as text that reads back exactly
                assert isinstance(value, str), value
                return value
            assert isinstance(value, dt.timedelta), value
            return value
        case "timestamp":
            return dt.datetime.fromisoformat(value) if dialect == "sqlite" else value
    return value


def _expected(case: Case, source: str, target: str) -> list[Any]:
    held = case.held(source)
    if case.kind == "float32":
        return [f32(v) for v in held]
    if case.kind == "duration" and target == "sqlite":
        return [duration_text(v) for v in held]
    return held


def _read(db: Database, case: Case, table: str) -> list[Any]:
    if case.kind == "pgtext":  # PostgreSQL's text of the value (MariaDB's, without zero microseconds)
        column = "v::text" if db.dialect == "postgresql" else "CAST(v AS CHAR)"
        return [re.sub(r"\.0+$", "", v) for (v,) in db.fetch(f"SELECT {column} FROM {table} ORDER BY id")]
    return [_canonical(db.dialect, case.kind, v) for (v,) in db.fetch(f"SELECT v FROM {table} ORDER BY id")]


def _rows_in(db: Database, table: str) -> int:
    try:
        return db.fetch(f"SELECT count(*) FROM {table}")[0][0]
    except Exception:  # noqa: BLE001 - the table was never created (its transaction rolled back)
        return 0


def test_copy_extremes(project: Project, source: Database, target: Database) -> None:
    cases = [c for c in CASES if source.dialect in c.ddl]
    for case in cases:
        _create(source, case)
    project.connection("source", source.dialect, source.url)
    project.connection("target", target.dialect, target.url)
    tasks = "\n".join(
        f"- {{name: {c.name}, read: {{table: {c.table}}}, write: {{table: {c.copy}, keys: [id]}}}}"
        for c in cases
    )
    project.job("extremes", "source", "target", tasks, extra="  on_error: continue\n")
    services.apply(project.ws)
    problems = []
    # the first run may copy inside the databases; a limited run sends every row through Python
    for options in (None, RunOptions(limit=1_000)):
        record = services.run(project.ws, "extremes", options)
        results = {t["name"]: t for t in record["tasks"]}
        how = "limited run" if options else "first run"
        problems += [f"{how}: {p}" for p in _problems(cases, results, source, target)]
    assert not problems, "\n".join(problems)


def _problems(cases: list[Case], results: dict[str, Any], source: Database, target: Database) -> list[str]:
    problems = []
    for case in cases:
        result = results[case.name]
        if target.dialect in case.fails_into:
            error = result["error"] or ""
            if result["status"] != "failed" or not re.search(r"key id=\d+", error) or "'v'" not in error:
                problems.append(f"{case.name}: expected a failure naming key and column, got {result}")
            elif _rows_in(target, case.copy):
                problems.append(f"{case.name}: failed but wrote rows")
            continue
        if result["status"] != "succeeded":
            problems.append(f"{case.name}: {result['error']}")
            continue
        if case.kind == "pgtext":
            expected = _read(source, case, case.table)
        else:
            expected = _expected(case, source.dialect, target.dialect)
        got = _read(target, case, case.copy)
        if got != expected:
            problems.append(f"{case.name}: expected {expected!r}, got {got!r}")
    return problems
