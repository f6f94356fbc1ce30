"""Schema changes in the log (pgoutput's Relation message): the target follows the source's
table where the change came in the log, by the task's `schema_changes`, or the task stops
naming the table and the column when the policy refuses."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from runner import services
from tests.cdc.test_postgresql_cdc import create_items, execute, run_ok, setup_project, source_engine
from tests.engine.test_crash import kill_at


def columns(engine: sa.Engine, table: str = "items") -> dict[str, str]:
    with engine.connect() as conn:
        return dict(
            conn.exec_driver_sql(
                "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
                "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped",
                (table,),
            ).all()
        )


def same(engine: sa.Engine, dst: sa.Engine, select: str) -> None:
    query = f"SELECT {select} FROM items ORDER BY id"
    with engine.connect() as source, dst.connect() as target:
        assert target.exec_driver_sql(query).all() == source.exec_driver_sql(query).all()


def test_a_column_added_mid_stream_is_added_and_filled_from_where_it_came(project, cdc_url, pg_url):
    engine, dst = source_engine(cdc_url), source_engine(pg_url)
    create_items(engine, 5)
    setup_project(project, cdc_url, pg_url)
    run_ok(project)
    execute(
        engine,
        "UPDATE items SET name = 'before' WHERE id = 1",  # in the old shape
        "ALTER TABLE items ADD COLUMN note text",
        "UPDATE items SET note = 'after' WHERE id = 2",
        "INSERT INTO items (id, name, note) VALUES (6, 'six', 'new')",
    )
    execute(
        engine,
        "BEGIN; UPDATE items SET name = 'same txn' WHERE id = 3; "
        "ALTER TABLE items ADD COLUMN size int; UPDATE items SET size = 7 WHERE id = 3; COMMIT",
    )
    dry = services.run(project.ws, "sync", services.RunOptions(dry_run=True))
    assert dry["status"] == "succeeded", dry["error"]
    # (each shape's writer rolls back, so a later one reports an earlier column again)
    changes = dry["tasks"][0]["schema_changes"]
    assert {c["column"] for c in changes} == {"note", "size"} and not any(c["applied"] for c in changes)
    assert "note" not in columns(dst)  # a dry run alters nothing
    task = run_ok(project)
    assert [(c["column"], c["change"]) for c in task["schema_changes"]] == [("note", "add"), ("size", "add")]
    assert columns(dst)["note"] == "text" and columns(dst)["size"] == "integer"
    same(engine, dst, "id, name, note, size")
    execute(engine, "UPDATE items SET note = 'later', size = 8 WHERE id = 4")
    run_ok(project)  # the next run reads on in the new shape
    same(engine, dst, "id, name, note, size")


def test_a_column_dropped_stays_in_the_target_or_goes_with_drop_columns(project, cdc_url, pg_url):
    engine, dst = source_engine(cdc_url), source_engine(pg_url)
    create_items(engine, 5)
    setup_project(project, cdc_url, pg_url)
    run_ok(project)
    execute(
        engine,
        "UPDATE items SET doc = '{\"n\": 100}' WHERE id = 1",
        "ALTER TABLE items DROP COLUMN doc",
        "UPDATE items SET name = 'after the drop' WHERE id = 2",
        "INSERT INTO items (id, name) VALUES (6, 'six')",
    )
    task = run_ok(project)
    assert task["schema_changes"] == []
    same(engine, dst, "id, name, amount, stamp")
    with dst.connect() as conn:  # kept, NULL in new rows, the last value before the drop kept
        assert conn.exec_driver_sql("SELECT doc->>'n' FROM items WHERE id IN (1, 6) ORDER BY id").all() == [
            ("100",),
            (None,),
        ]

    path = project.root / "jobs.d" / "sync.yaml"
    path.write_text(
        path.read_text().replace("deletes: propagate", "deletes: propagate\n  drop_columns: true")
    )
    services.apply(project.ws)
    execute(engine, "ALTER TABLE items DROP COLUMN stamp", "UPDATE items SET name = 'x' WHERE id = 3")
    task = run_ok(project)
    assert [(c["column"], c["change"]) for c in task["schema_changes"]] == [("stamp", "drop")]
    assert "stamp" not in columns(dst)
    same(engine, dst, "id, name, amount")


def test_a_widened_type_is_widened_in_the_target(project, cdc_url, pg_url):
    engine, dst = source_engine(cdc_url), source_engine(pg_url)
    execute(
        engine,
        "CREATE TABLE items (id int PRIMARY KEY, name varchar(10), n int)",
        "INSERT INTO items VALUES (1, 'one', 1), (2, 'two', 2)",
    )
    setup_project(project, cdc_url, pg_url)
    run_ok(project)
    execute(
        engine,
        "ALTER TABLE items ALTER COLUMN name TYPE varchar(40), ALTER COLUMN n TYPE bigint",
        "UPDATE items SET name = 'a name longer than ten', n = 5000000000 WHERE id = 1",
    )
    task = run_ok(project)
    assert sorted((c["column"], c["change"], c["after"]) for c in task["schema_changes"]) == [
        ("n", "widen", "bigint"),
        ("name", "widen", "varchar(40)"),
    ]
    assert columns(dst)["n"] == "bigint" and columns(dst)["name"] == "character varying(40)"
    same(engine, dst, "id, name, n")


@pytest.mark.parametrize(
    ("policy", "ddl", "said"),
    [
        ("off", "ALTER TABLE items ADD COLUMN note text", "column 'note' was added to table 'public.items'"),
        ("add_and_widen", "ALTER TABLE items ALTER COLUMN n TYPE text", "column 'n'"),
    ],
)
def test_a_change_the_policy_refuses_stops_the_task_naming_table_and_column(
    project, cdc_url, pg_url, policy, ddl, said
):
    engine, dst = source_engine(cdc_url), source_engine(pg_url)
    execute(
        engine,
        "CREATE TABLE items (id int PRIMARY KEY DEFAULT 2, name text, n int)",
        "INSERT INTO items VALUES (1, 'a', 1)",
    )
    setup_project(project, cdc_url, pg_url)
    path = project.root / "jobs.d" / "sync.yaml"
    path.write_text(
        path.read_text().replace("deletes: propagate", f"deletes: propagate\n  schema_changes: '{policy}'")
    )
    services.apply(project.ws)
    run_ok(project)
    execute(
        engine,
        "UPDATE items SET name = 'before' WHERE id = 1",
        ddl,
        "INSERT INTO items (name) VALUES ('b')",
    )
    record = services.run(project.ws, "sync")
    assert record["status"] == "failed"
    assert said in record["error"], record["error"]
    with dst.connect() as conn:  # what came before the change is applied, nothing after it
        assert conn.exec_driver_sql("SELECT id, name FROM items ORDER BY id").all() == [(1, "before")]


@pytest.mark.parametrize("point", ["write", "committed", "stored", "reshaped"])
def test_kill_around_a_schema_change_then_rerun(project, cdc_url, pg_url, tmp_path, point):
    """Killed -9 around the reshape (old shape committed, position stored, target altered): the
    rerun reads the old shape again, then the new, and ends equal to the source (a widened type
    read again in its old shape is no narrowing)."""
    engine, dst = source_engine(cdc_url), source_engine(pg_url)
    execute(
        engine,
        "CREATE TABLE items (id int PRIMARY KEY, name varchar(10), n int)",
        "INSERT INTO items SELECT g, 'r' || g, g FROM generate_series(1, 10) g",
    )
    setup_project(project, cdc_url, pg_url, batch_size=3)
    run_ok(project)
    for i in range(1, 5):
        execute(engine, f"UPDATE items SET name = 'old {i}' WHERE id = {i}")
    execute(  # one transaction: changes in the old shape, the change of shape, changes in the new
        engine,
        "BEGIN; UPDATE items SET name = 'in txn' WHERE id = 10; "
        "ALTER TABLE items ALTER COLUMN n TYPE bigint, ADD COLUMN note text; "
        "UPDATE items SET n = 6000000000, note = 'txn' WHERE id = 9; COMMIT",
    )
    for i in range(1, 5):
        execute(engine, f"UPDATE items SET n = 5000000000 + {i}, note = 'new' WHERE id = {i + 2}")
    project.ws.close()
    kill_at(project, point, tmp_path)
    run_ok(project)
    assert columns(dst)["n"] == "bigint"
    same(engine, dst, "id, name, n, note")
    execute(engine, "UPDATE items SET note = 'later' WHERE id = 9")
    again = run_ok(project)
    assert again["schema_changes"] == [] and again["rows_read"] == 1
    same(engine, dst, "id, name, n, note")
