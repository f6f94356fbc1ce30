"""End to end through the definitions, as a user runs them: an API into SQLite and into
PostgreSQL (watermark, nested values flattened), and PostgreSQL rows into an API (reverse ETL,
deletes included), each checked where the data lands."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from decimal import Decimal

import pytest
import sqlalchemy as sa

from runner import services

PULL = {
    "name": "items",
    "read": {
        "path": "/cursor",
        "params": {"updated_since": "{{ since }}"},
        "records": "results",
        "paginate": {"style": "cursor", "path": "meta.next_cursor"},
        "columns": {
            "id": "bigint",
            "name": "text",
            "price": "decimal(12,2)",
            "updated_at": "timestamptz",
            "city": {"path": "customer.address.city", "type": "text"},
        },
    },
    "write": {"table": "items", "keys": ["id"]},
    "changes": {"strategy": "watermark", "column": "updated_at"},
}


def _define(project, api, target: dict, job: dict, name: str = "job") -> None:
    api_spec = {
        "type": "http",
        "base_url": f"{api.base}/api",
        "auth": {"type": "bearer", "token": "${env:API_TOKEN}"},
    }
    head = "apiVersion: runner/v1\nkind: Connection\nmetadata: {name: %s}\nspec: %s\n"
    project.write("connections.d/api.yaml", head % ("api", json.dumps(api_spec)))
    project.write("connections.d/db.yaml", head % ("db", json.dumps(target)))
    project.write(
        f"jobs.d/{name}.yaml",
        f"apiVersion: runner/v1\nkind: Job\nmetadata: {{name: {name}}}\nspec: {json.dumps(job)}\n",
    )
    services.apply(project.ws)


def _pull_twice(project, api, read_rows) -> None:
    first = services.run(project.ws, "job")
    assert first["status"] == "succeeded", first["error"]
    rows = read_rows()
    assert len(rows) == 45
    assert rows[6] == (7, 'item 7 ✓ "quoted"', Decimal("7.07"), dt.datetime(2024, 1, 1, 0, 7), "city 0")
    api.touch([7], dt.datetime(2024, 3, 1, tzinfo=dt.UTC))
    api.records[46] = api.records[7] | {"id": 46, "name": "new"}
    second = services.run(project.ws, "job")["tasks"][0]
    assert second["status"] == "succeeded", second["error"]
    assert (second["inserted"], second["updated"]) == (1, 1)
    rows = read_rows()
    assert len(rows) == 46 and rows[6][1] == "item 7 changed" and rows[45][1] == "new"


def test_an_api_into_sqlite(api, project):
    _define(
        project,
        api,
        {"type": "sqlite", "url": "sqlite:///out.db"},
        {"source": "api", "target": "db", "tasks": [PULL]},
    )

    def rows():
        con = sqlite3.connect(project.root / "out.db")
        try:
            found = con.execute("SELECT id, name, price, updated_at, city FROM items ORDER BY id").fetchall()
        finally:
            con.close()
        return [
            (i, n, Decimal(str(p)), dt.datetime.fromisoformat(str(u)).replace(tzinfo=None), c)
            for i, n, p, u, c in found
        ]

    _pull_twice(project, api, rows)


def test_an_api_into_postgresql(api, project, pg_url):
    _define(
        project,
        api,
        {"type": "postgresql", "url": pg_url},
        {"source": "api", "target": "db", "tasks": [PULL]},
    )
    engine = sa.create_engine(
        pg_url.replace("postgresql://", "postgresql+psycopg://", 1), poolclass=sa.NullPool
    )

    def rows():
        with engine.connect() as con:
            found = con.exec_driver_sql(
                "SELECT id, name, price, updated_at, city FROM items ORDER BY id"
            ).all()
        return [(i, n, p, u.astimezone(dt.UTC).replace(tzinfo=None), c) for i, n, p, u, c in found]

    _pull_twice(project, api, rows)
    engine.dispose()


def test_postgresql_rows_into_an_api(api, project, pg_url):
    engine = sa.create_engine(
        pg_url.replace("postgresql://", "postgresql+psycopg://", 1), poolclass=sa.NullPool
    )
    with engine.begin() as con:
        con.exec_driver_sql("CREATE TABLE customers (id int PRIMARY KEY, email text, credit numeric(10,2))")
        con.exec_driver_sql(
            "INSERT INTO customers SELECT g, 'user' || g || '@example.com', g * 1.5 "
            "FROM generate_series(1, 30) g"
        )
    push = {
        "name": "customers",
        "read": {"table": "customers"},
        "write": {
            "keys": ["id"],
            "method": "PUT",
            "path": "/customers/{{ row.id }}",
            "payload": {"email": "{{ row.email }}", "credit": "{{ row.credit }}", "source": "warehouse"},
            "delete_payload": "",
        },
        "changes": {"strategy": "hash"},
        "deletes": "propagate",
    }
    _define(
        project,
        api,
        {"type": "postgresql", "url": pg_url},
        {"source": "db", "target": "api", "tasks": [push]},
    )
    first = services.run(project.ws, "job")
    assert first["status"] == "succeeded", first["error"]
    assert len(api.received) == 30 and {r.method for r in api.received} == {"PUT"}
    assert api.stored["7"] == {"email": "user7@example.com", "credit": "10.50", "source": "warehouse"}
    api.received.clear()
    with engine.begin() as con:
        con.exec_driver_sql("UPDATE customers SET email = 'new@example.com' WHERE id = 3")
        con.exec_driver_sql("DELETE FROM customers WHERE id IN (29, 30)")
    second = services.run(project.ws, "job")["tasks"][0]
    assert (second["upserted"], second["deleted"]) == (1, 2), second["error"]
    assert sorted((r.method, r.path) for r in api.received) == [
        ("DELETE", "/api/customers/29"),
        ("DELETE", "/api/customers/30"),
        ("PUT", "/api/customers/3"),
    ]
    assert len(api.stored) == 28 and api.stored["3"]["email"] == "new@example.com"
    engine.dispose()


@pytest.fixture(autouse=True)
def _close(project):
    yield
    project.ws.close()


@pytest.mark.parametrize("point", ["read", "write", "committed"])
def test_a_kill_mid_read_then_a_clean_run_leaves_the_target_equal_to_the_api(api, project, tmp_path, point):
    """Killed -9 with a page read, a batch written but not committed, or committed before the
    pointer: the API changing meanwhile, a clean run leaves the table equal to the API's
    records, and the pointer at their highest value."""
    from tests.engine.test_crash import kill_at

    task = {**PULL, "read": {**PULL["read"], "path": "/next", "records": "data"}}
    task["read"]["paginate"] = {"style": "next_link", "path": "links.next"}
    job = {"source": "api", "target": "db", "batch_size": 7, "tasks": [task]}
    _define(
        project, api, {"type": "sqlite", "url": "sqlite:///out.db"}, job, name="sync"
    )  # kill_at runs `sync`
    project.ws.close()
    kill_at(project, point, tmp_path)
    api.touch([2, 40], dt.datetime(2024, 4, 1, tzinfo=dt.UTC))
    record = services.run(project.ws, "sync")
    assert record["status"] == "succeeded", record["error"]
    con = sqlite3.connect(project.root / "out.db")
    got = dict(con.execute("SELECT id, name FROM items").fetchall())
    con.close()
    assert got == {i: r["name"] for i, r in api.records.items()}
    assert record["tasks"][0]["pointer_after"]["value"] == "2024-04-01T00:00:00"


def test_transforms_over_an_api_source(api, project, monkeypatch):
    """Transforms work over an API's records as over a table's rows: a computed column, a
    filter (counted), a rename and a masked column reach the target; the salt nowhere."""
    monkeypatch.setenv("MASK_SALT", "pepper-9f1c")
    task = {
        **PULL,
        "transforms": [
            {"type": "compute", "column": "label", "expression": "name ~ ' @ ' ~ city"},
            {"type": "filter", "expression": "id % 2 == 1"},
            {"type": "rename", "columns": {"price": "gross"}},
            {"type": "mask", "column": "city", "salt": "${env:MASK_SALT}"},
        ],
    }
    _define(
        project,
        api,
        {"type": "sqlite", "url": "sqlite:///out.db"},
        {"source": "api", "target": "db", "tasks": [task]},
    )
    record = services.run(project.ws, "job")
    (result,) = record["tasks"]
    assert result["status"] == "succeeded", result["error"]
    assert result["filtered"] == 22  # ids 2, 4, …, 44 of 45
    con = sqlite3.connect(project.root / "out.db")
    try:
        rows = con.execute("SELECT id, label, gross, city FROM items ORDER BY id").fetchall()
        columns = [r[1] for r in con.execute("PRAGMA table_info(items)")]
    finally:
        con.close()
    assert [r[0] for r in rows] == list(range(1, 46, 2))
    assert rows[3][1] == f"{api.records[7]['name']} @ city 0" and Decimal(str(rows[3][2])) == Decimal("7.07")
    assert "price" not in columns and all(len(r[3]) == 64 and r[3] != "city 0" for r in rows)
    written = b"".join(p.read_bytes() for p in project.root.rglob("*") if p.is_file())
    assert b"pepper-9f1c" not in written
