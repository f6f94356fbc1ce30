"""The cdc strategy on PostgreSQL: a snapshot, then every kind of change from the log, into
real targets (SQLite, and the shared PostgreSQL), compared row by row with the source."""

from __future__ import annotations

from decimal import Decimal

import pytest
import sqlalchemy as sa

from runner import services

COLUMNS = "id, name, amount, stamp, doc"


def source_engine(url: str) -> sa.Engine:
    return sa.create_engine(url, poolclass=sa.NullPool, isolation_level="AUTOCOMMIT")


def execute(engine: sa.Engine, *statements: str) -> None:
    with engine.begin() as conn:
        for sql in statements:
            conn.exec_driver_sql(sql)


def rows(engine: sa.Engine, table: str = "items") -> list[tuple]:
    """Every row, in key order, as PostgreSQL has it (the source and a PostgreSQL target)."""
    with engine.connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql(f"SELECT {COLUMNS} FROM {table} ORDER BY id")]


def setup_project(
    project, url: str, target: str, batch_size: int = 1000, deletes: str = "propagate", extra: str = ""
) -> None:
    project.connection("src", "postgresql", url)
    project.connection("dst", "postgresql", target)
    project.job(
        "sync",
        "src",
        "dst",
        f"""
        - name: items
          read: {{table: public.items}}
          write: {{table: items, keys: [id]}}
          changes: {{strategy: cdc{extra}}}
          deletes: {deletes}
        """,
        extra=f"  batch_size: {batch_size}\n",
    )
    services.apply(project.ws)


def create_items(engine: sa.Engine, rows: int = 20) -> None:
    execute(
        engine,
        "CREATE TABLE items (id int PRIMARY KEY, name text, amount numeric(12,2), stamp timestamp, doc jsonb)",
        f"INSERT INTO items SELECT g, 'item ' || g, g * 1.5, '2026-01-01'::timestamp + g * interval '1 hour', "
        f"jsonb_build_object('n', g) FROM generate_series(1, {rows}) g",
    )


def run_ok(project) -> dict:
    record = services.run(project.ws, "sync")
    assert record["status"] == "succeeded", record["error"]
    return record["tasks"][0]


def test_snapshot_then_every_kind_of_change(project, cdc_url, pg_url):
    engine, dst = source_engine(cdc_url), source_engine(pg_url)
    create_items(engine)
    setup_project(project, cdc_url, pg_url)

    first = run_ok(project)
    assert first["inserted"] == 20
    assert rows(dst) == rows(engine)

    execute(
        engine,
        "INSERT INTO items VALUES (21, 'new ✓', 7.25, '2026-02-01 10:00:00', '{\"a\": [1, 2]}')",
        "UPDATE items SET name = 'changed', amount = NULL WHERE id = 2",
        "UPDATE items SET id = 100, name = 'moved' WHERE id = 3",  # a changed key
        "DELETE FROM items WHERE id = 4",
        "UPDATE items SET name = 'twice' WHERE id = 5",
        "UPDATE items SET name = 'three times' WHERE id = 5",
        "INSERT INTO items VALUES (22, 'gone again', 1, NULL, NULL)",
        "DELETE FROM items WHERE id = 22",
    )
    second = run_ok(project)
    assert rows(dst) == rows(engine)
    assert second["deleted"] >= 2 and second["inserted"] >= 2
    assert second["pointer_after"]["type"] == "lsn"

    nothing = run_ok(project)
    assert (nothing["rows_read"], nothing["inserted"], nothing["updated"], nothing["deleted"]) == (0, 0, 0, 0)

    execute(engine, "TRUNCATE items", "INSERT INTO items VALUES (1, 'after truncate', 1, NULL, NULL)")
    run_ok(project)
    assert rows(dst) == rows(engine) == [(1, "after truncate", Decimal("1.00"), None, None)]
