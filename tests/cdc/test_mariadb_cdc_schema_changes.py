"""Schema changes in MariaDB's binlog (each table map names the columns, with
`binlog_row_metadata=FULL`): the target follows the source's table where the change came in the
log, by the task's `schema_changes`, or the task stops naming the table and the column when the
policy refuses; killed -9 around the change, a rerun ends equal to the source."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from runner import services
from tests.cdc.test_mariadb_cdc import create_items, engine_of, execute, run_ok, setup_project
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
        assert target.exec_driver_sql(query).all() == [tuple(r) for r in source.exec_driver_sql(query)]


def with_policy(project, **settings: str) -> None:
    path = project.root / "jobs.d" / "sync.yaml"
    lines = "".join(f"\n  {k}: {v}" for k, v in settings.items())
    path.write_text(path.read_text().replace("deletes: propagate", f"deletes: propagate{lines}"))
    services.apply(project.ws)


def test_a_column_added_mid_stream_is_added_and_filled_from_where_it_came(project, binlog_url, pg_url):
    engine, dst = engine_of(binlog_url), engine_of(pg_url)
    create_items(engine, 5)
    setup_project(project, binlog_url, "postgresql", pg_url)
    run_ok(project)
    execute(
        engine,
        "UPDATE items SET name = 'before' WHERE id = 1",  # in the old shape
        "ALTER TABLE items ADD COLUMN note varchar(20), ADD COLUMN flag tinyint(1)",
        "UPDATE items SET note = 'after', flag = 1 WHERE id = 2",
        "INSERT INTO items (id, name, note, flag) VALUES (6, 'six', 'new', 0)",
    )
    dry = services.run(project.ws, "sync", services.RunOptions(dry_run=True))
    assert dry["status"] == "succeeded", dry["error"]
    assert "note" not in columns(dst)  # a dry run alters nothing
    task = run_ok(project)
    assert sorted((c["column"], c["change"]) for c in task["schema_changes"]) == [
        ("flag", "add"),
        ("note", "add"),
    ]
    assert columns(dst)["note"] == "character varying(20)" and columns(dst)["flag"] == "boolean"
    with dst.connect() as conn:
        assert conn.exec_driver_sql("SELECT id, name, note, flag FROM items ORDER BY id").all() == [
            (1, "before", None, None),
            (2, "item 2", "after", True),
            (3, "item 3", None, None),
            (4, "item 4", None, None),
            (5, "item 5", None, None),
            (6, "six", "new", False),
        ]
    execute(engine, "UPDATE items SET note = 'later' WHERE id = 4")
    again = run_ok(project)  # the next run reads on in the new shape
    assert again["schema_changes"] == [] and again["rows_read"] == 1
    same(engine, dst, "id, name, note")


def test_a_column_dropped_stays_in_the_target_or_goes_with_drop_columns(project, binlog_url, pg_url):
    engine, dst = engine_of(binlog_url), engine_of(pg_url)
    create_items(engine, 5)
    setup_project(project, binlog_url, "postgresql", pg_url)
    run_ok(project)
    execute(
        engine,
        "UPDATE items SET amount = 100 WHERE id = 1",
        "ALTER TABLE items DROP COLUMN amount",
        "UPDATE items SET name = 'after the drop' WHERE id = 2",
        "INSERT INTO items (id, name) VALUES (6, 'six')",
    )
    task = run_ok(project)
    assert task["schema_changes"] == []
    same(engine, dst, "id, name, stamp")
    with dst.connect() as conn:  # kept, NULL in new rows, the last value before the drop kept
        found = conn.exec_driver_sql("SELECT amount FROM items WHERE id IN (1, 6) ORDER BY id").all()
        assert [r[0] for r in found] == [100, None]

    with_policy(project, drop_columns="true")
    execute(engine, "ALTER TABLE items DROP COLUMN stamp", "UPDATE items SET name = 'x' WHERE id = 3")
    task = run_ok(project)
    assert [(c["column"], c["change"]) for c in task["schema_changes"]] == [("stamp", "drop")]
    assert "stamp" not in columns(dst)
    same(engine, dst, "id, name")


def test_a_widened_type_is_widened_in_the_target(project, binlog_url, pg_url):
    engine, dst = engine_of(binlog_url), engine_of(pg_url)
    execute(
        engine,
        "CREATE TABLE items (id int PRIMARY KEY, name varchar(10), n int, amount decimal(8,2))",
        "INSERT INTO items VALUES (1, 'one', 1, 1.5), (2, 'two', 2, 2.5)",
    )
    setup_project(project, binlog_url, "postgresql", pg_url)
    run_ok(project)
    execute(
        engine,
        "ALTER TABLE items MODIFY name varchar(40), MODIFY n bigint, MODIFY amount decimal(14,2)",
        "UPDATE items SET name = 'a name longer than ten', n = 5000000000, amount = 123456789.25 "
        "WHERE id = 1",
    )
    task = run_ok(project)
    assert sorted((c["column"], c["change"]) for c in task["schema_changes"]) == [
        ("amount", "widen"),
        ("n", "widen"),
        ("name", "widen"),
    ]
    assert columns(dst)["n"] == "bigint" and columns(dst)["name"] == "character varying(40)"
    assert columns(dst)["amount"] == "numeric(14,2)"
    same(engine, dst, "id, name, n, amount")


@pytest.mark.parametrize(
    ("policy", "ddl", "said"),
    [
        ("off", "ALTER TABLE items ADD COLUMN note text", "column 'note' was added to table 'items'"),
        ("add_and_widen", "ALTER TABLE items MODIFY n varchar(20)", "column 'n'"),
    ],
)
def test_a_change_the_policy_refuses_stops_the_task_naming_table_and_column(
    project, binlog_url, pg_url, policy, ddl, said
):
    engine, dst = engine_of(binlog_url), engine_of(pg_url)
    execute(
        engine,
        "CREATE TABLE items (id int PRIMARY KEY AUTO_INCREMENT, name text, n int)",
        "INSERT INTO items VALUES (1, 'a', 1)",
    )
    setup_project(project, binlog_url, "postgresql", pg_url)
    with_policy(project, schema_changes=f"'{policy}'")
    run_ok(project)
    execute(
        engine, "UPDATE items SET name = 'before' WHERE id = 1", ddl, "INSERT INTO items (name) VALUES ('b')"
    )
    record = services.run(project.ws, "sync")
    assert record["status"] == "failed"
    assert said in record["error"], record["error"]
    with dst.connect() as conn:  # what came before the change is applied, nothing after it
        assert conn.exec_driver_sql("SELECT id, name FROM items ORDER BY id").all() == [(1, "before")]


@pytest.mark.parametrize("point", ["write", "committed", "stored", "reshaped"])
def test_kill_around_a_schema_change_then_rerun(project, binlog_url, pg_url, tmp_path, point):
    """Killed -9 around the reshape (old shape committed, position stored, target altered —
    `reshaped` is between the target altered and the position past the change stored): the
    rerun reads the old shape again, then the new, and ends equal to the source (a widened type
    read again in its old shape is no narrowing)."""
    engine, dst = engine_of(binlog_url), engine_of(pg_url)
    execute(
        engine,
        "CREATE TABLE items (id int PRIMARY KEY, name varchar(10), n int)",
        "INSERT INTO items SELECT seq, CONCAT('r', seq), seq FROM seq_1_to_10",
    )
    setup_project(project, binlog_url, "postgresql", pg_url, batch_size=3)
    run_ok(project)
    for i in range(1, 5):
        execute(engine, f"UPDATE items SET name = 'old {i}' WHERE id = {i}")
    execute(engine, "ALTER TABLE items MODIFY n bigint, ADD COLUMN note text")
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


def test_each_shape_is_followed_where_it_came_though_the_table_changed_again_since(
    project, binlog_url, pg_url
):
    """The table changed twice before the run: the first new shape's types are told from the
    binlog alone (the table's declared types are already the second's)."""
    engine, dst = engine_of(binlog_url), engine_of(pg_url)
    execute(
        engine,
        "CREATE TABLE items (id int PRIMARY KEY, name varchar(10), n int) DEFAULT CHARSET=utf8mb4",
        "INSERT INTO items VALUES (1, 'one', 1)",
    )
    setup_project(project, binlog_url, "postgresql", pg_url)
    run_ok(project)
    execute(
        engine,
        "ALTER TABLE items MODIFY name varchar(40), ADD COLUMN d decimal(9,3), ADD COLUMN at datetime(3)",
        "UPDATE items SET name = 'forty at most', d = 1.5, at = '2026-01-02 03:04:05.678' WHERE id = 1",
        "ALTER TABLE items MODIFY name varchar(80)",
        "INSERT INTO items VALUES (2, 'eighty at most', 2, 2.25, NULL)",
    )
    task = run_ok(project)
    assert sorted((c["column"], c["change"], c["after"]) for c in task["schema_changes"]) == [
        ("at", "add", "timestamp"),
        ("d", "add", "numeric(9,3)"),
        ("name", "widen", "varchar(40)"),  # the first new shape's, told from the binlog
        ("name", "widen", "varchar(80)"),
    ]
    assert columns(dst)["name"] == "character varying(80)" and columns(dst)["d"] == "numeric(9,3)"
    same(engine, dst, "id, name, n, d, at")
