"""Columns of types runner cannot map (PostgreSQL arrays, enums and intervals; MariaDB's ENUM,
SET and BIT): one error names every one of them before anything is written, unless
`read.unmapped_types` reads them as text or JSON. MariaDB's YEAR is a smallint, its JSON
PostgreSQL's jsonb; a MariaDB zero date fails the task naming its row and column."""

from __future__ import annotations

import json
from typing import Any

import pytest

from runner import services
from tests.conftest import Project
from tests.engine.conftest import Database

PG_SOURCE = [
    "CREATE TYPE mood AS ENUM ('sad', 'happy')",
    "CREATE TABLE src (id integer PRIMARY KEY, tags integer[], feel mood, span interval, note text)",
    "INSERT INTO src VALUES (1, '{1,2,3}', 'happy', '1 day 02:00:00', 'a'), (2, NULL, NULL, NULL, 'b')",
]
PG_TEXT = [(1, "{1,2,3}", "happy", "1 day 02:00:00", "a"), (2, None, None, None, "b")]
PG_JSON = [(1, [1, 2, 3], "happy", "1 day 02:00:00", "a"), (2, None, None, None, "b")]


def _job(project: Project, source: Database, target: Database, read: str) -> None:
    project.connection("source", source.dialect, source.url)
    project.connection("target", target.dialect, target.url)
    project.job("copy", "source", "target", f"- {{name: t, read: {read}, write: {{table: dst, keys: [id]}}}}")
    services.apply(project.ws)


def _table_rows(db: Database) -> int:
    try:
        return db.fetch("SELECT count(*) FROM dst")[0][0]
    except Exception:  # noqa: BLE001 - never created: its transaction rolled back
        return 0


def _json(db: Database, value: Any) -> Any:
    """A JSON value as the target keeps it: parsed by psycopg, text elsewhere."""
    return json.loads(value) if isinstance(value, str) and db.dialect != "postgresql" else value


@pytest.mark.parametrize("target_dialect", ["sqlite", "postgresql", "mariadb"])
def test_postgresql_types_runner_cannot_map(
    project: Project, make_database: Any, target_dialect: str
) -> None:
    source, target = make_database("postgresql", "source"), make_database(target_dialect, "target")
    with source.cursor() as c:
        for sql in PG_SOURCE:
            c.execute(sql)
    _job(project, source, target, "{table: src}")
    record = services.run(project.ws, "copy")
    assert record["status"] == "failed"
    assert "'tags' (integer[]), 'feel' (mood), 'span' (interval)" in record["error"], record["error"]
    assert "read.unmapped_types" in record["error"]
    assert _table_rows(target) == 0

    _job(project, source, target, "{table: src, unmapped_types: text}")
    record = services.run(project.ws, "copy")
    assert record["status"] == "succeeded", record["error"]
    assert [
        tuple(r) for r in target.fetch("SELECT id, tags, feel, span, note FROM dst ORDER BY id")
    ] == PG_TEXT

    with target.cursor() as c:
        c.execute("DROP TABLE dst")
    _job(project, source, target, "{table: src, unmapped_types: json}")
    record = services.run(project.ws, "copy")
    assert record["status"] == "succeeded", record["error"]
    rows = target.fetch("SELECT id, tags, feel, span, note FROM dst ORDER BY id")
    assert [(r[0], *(_json(target, v) for v in r[1:4]), r[4]) for r in rows] == PG_JSON


@pytest.mark.parametrize("target_dialect", ["sqlite", "postgresql"])
def test_mariadb_types_runner_cannot_map(project: Project, make_database: Any, target_dialect: str) -> None:
    source, target = make_database("mariadb", "source"), make_database(target_dialect, "target")
    with source.cursor() as c:
        c.execute(
            "CREATE TABLE src (id INT PRIMARY KEY, size ENUM('S','M'), opts SET('a','b'), flags BIT(4), "
            "made YEAR, doc JSON)"
        )
        c.execute("INSERT INTO src VALUES (1, 'M', 'a,b', b'0101', 2155, '{\"b\": 1,  \"a\": [true]}')")
    _job(project, source, target, "{table: src}")
    record = services.run(project.ws, "copy")
    assert record["status"] == "failed"
    assert "'size' (enum('S','M')), 'opts' (set('a','b')), 'flags' (bit(4))" in record["error"], record[
        "error"
    ]
    assert _table_rows(target) == 0

    _job(project, source, target, "{table: src, unmapped_types: json}")
    record = services.run(project.ws, "copy")
    assert record["status"] == "succeeded", record["error"]
    ((size, opts, made, doc),) = target.fetch("SELECT size, opts, made, doc FROM dst")
    assert (_json(target, size), _json(target, opts), made, _json(target, doc)) == (
        "M",
        "a,b",
        2155,
        {"a": [True], "b": 1},
    )
    if target_dialect == "postgresql":
        assert target.fetch("SELECT pg_typeof(doc)::text, pg_typeof(made)::text FROM dst") == [
            ("jsonb", "smallint")
        ]


@pytest.mark.parametrize("target_dialect", ["sqlite", "postgresql", "mariadb"])
def test_a_mariadb_zero_date_is_named(project: Project, make_database: Any, target_dialect: str) -> None:
    source, target = make_database("mariadb", "source"), make_database(target_dialect, "target")
    with source.cursor() as c:
        c.execute("SET SESSION sql_mode = ''")
        c.execute("CREATE TABLE src (id INT PRIMARY KEY, day DATE)")
        c.execute("INSERT INTO src VALUES (1, '2024-01-01'), (2, '0000-00-00')")
    _job(project, source, target, "{table: src}")
    record = services.run(project.ws, "copy")
    assert record["status"] == "failed"
    assert "row with key id=2: column 'day'" in record["error"], record["error"]
    assert _table_rows(target) == 0
