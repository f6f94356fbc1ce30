"""The cdc strategy on PostgreSQL: a snapshot, then every kind of change from the log, into
real targets (SQLite, and the shared PostgreSQL), compared row by row with the source."""

from __future__ import annotations

import sqlite3
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
    project,
    url: str,
    target: str,
    batch_size: int = 1000,
    deletes: str = "propagate",
    extra: str = "",
    target_type: str = "postgresql",
) -> None:
    project.connection("src", "postgresql", url)
    project.connection("dst", target_type, target)
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
        "CREATE TABLE items (id int PRIMARY KEY, name text, amount numeric(12,2), stamp timestamp, "
        "doc jsonb)",
        f"INSERT INTO items SELECT g, 'item ' || g, g * 1.5, '2026-01-01'::timestamp + g * interval "
        f"'1 hour', jsonb_build_object('n', g) FROM generate_series(1, {rows}) g",
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


def test_a_transaction_of_many_changes_in_small_batches(project, cdc_url, pg_url):
    """One transaction larger than many batches goes into the target in pieces, committed once."""
    engine, dst = source_engine(cdc_url), source_engine(pg_url)
    create_items(engine, 10)
    setup_project(project, cdc_url, pg_url, batch_size=7)
    run_ok(project)
    execute(
        engine,
        "BEGIN",
        "INSERT INTO items SELECT g, 'bulk ' || g, g, NULL, NULL FROM generate_series(11, 400) g",
        "UPDATE items SET amount = amount + 1 WHERE id <= 200",
        "UPDATE items SET id = id + 1000 WHERE id BETWEEN 100 AND 150",
        "DELETE FROM items WHERE id BETWEEN 300 AND 320",
        "COMMIT",
    )
    task = run_ok(project)
    assert rows(dst) == rows(engine)
    assert task["rows_read"] == 390 + 200 + 2 * 51 + 21  # a changed key: a delete and an upsert


@pytest.mark.parametrize("target", ["postgresql", "sqlite"])
def test_writers_during_the_snapshot_are_neither_lost_nor_doubled(
    project, cdc_url, pg_url, monkeypatch, target
):
    """Changes committed while the first snapshot is read arrive through the log exactly once:
    into PostgreSQL the snapshot is copied inside the databases (in the slot's snapshot too),
    into SQLite it goes through runner in batches, slowed down so the writer runs meanwhile."""
    import threading

    engine = source_engine(cdc_url)
    create_items(engine, 200)
    if target == "postgresql":
        setup_project(project, cdc_url, pg_url, batch_size=10)
    else:
        setup_project(project, cdc_url, "sqlite:///dst.db", batch_size=10, target_type="sqlite")
    monkeypatch.setenv("RUNNER_BATCH_DELAY", "0.03")  # a snapshot in batches takes about a second
    stop = threading.Event()
    done: list[int] = []

    def write() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            execute(
                engine,
                f"INSERT INTO items VALUES ({10_000 + i}, 'during', {i}, NULL, NULL)",
                f"UPDATE items SET amount = {i} WHERE id = {1 + i % 200}",
                f"DELETE FROM items WHERE id = {200 - i % 150}",
            )
        done.append(i)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        record = services.run(project.ws, "sync")
    finally:
        stop.set()
        writer.join()
    assert record["status"] == "succeeded", record["error"]
    assert done[0] > 5  # the writer really ran during the first run
    copied = any(
        e["message"].startswith("copied inside the databases")
        for e in services.logs(project.ws, record["run_id"])
    )
    assert copied == (target == "postgresql")
    monkeypatch.delenv("RUNNER_BATCH_DELAY")
    run_ok(project)
    query = "SELECT id, name, amount FROM items ORDER BY id"
    with engine.connect() as conn:
        expected = [(i, n, Decimal(str(a))) for i, n, a in conn.exec_driver_sql(query)]
    if target == "postgresql":
        found = rows(source_engine(pg_url))
        assert [(r[0], r[1], r[2]) for r in found] == expected
    else:
        db = sqlite3.connect(project.root / "dst.db")
        got = [(i, n, Decimal(str(a)).quantize(Decimal("0.01"))) for i, n, a in db.execute(query)]
        db.close()
        assert got == expected


def test_a_server_restart_between_runs(project, cdc_url, pg_url, logical_pg):
    engine, dst = source_engine(cdc_url), source_engine(pg_url)
    create_items(engine, 10)
    setup_project(project, cdc_url, pg_url)
    run_ok(project)
    execute(engine, "UPDATE items SET name = 'before restart' WHERE id = 1", "DELETE FROM items WHERE id = 2")
    logical_pg.restart()
    execute(engine, "INSERT INTO items VALUES (50, 'after restart', 1, NULL, NULL)")
    run_ok(project)
    assert rows(dst) == rows(engine)


def test_a_dropped_slot_is_a_clear_error_and_resync_recovers(project, cdc_url, pg_url):
    engine, dst = source_engine(cdc_url), source_engine(pg_url)
    create_items(engine, 10)
    setup_project(project, cdc_url, pg_url)
    slot = run_ok(project)["pointer_after"]["slot"]
    execute(engine, f"SELECT pg_drop_replication_slot('{slot}')", "DELETE FROM items WHERE id = 3")
    record = services.run(project.ws, "sync")
    assert record["status"] == "failed"
    assert f"the replication slot '{slot}' of task 'items' is gone" in record["error"]
    assert "--resync" in record["error"]
    record = services.run(project.ws, "sync", services.RunOptions(resync=True))
    assert record["status"] == "succeeded", record["error"]
    assert rows(dst) == rows(engine)
    assert record["tasks"][0]["deleted"] == 1  # the snapshot's comparison found the row gone


def test_a_target_table_dropped_by_hand_is_snapshotted_again(project, cdc_url, pg_url):
    """The target table dropped: the slot's position would leave it with the changes since
    only, so the task starts again from a snapshot (as --resync), saying so."""
    engine, dst = source_engine(cdc_url), source_engine(pg_url)
    create_items(engine, 10)
    setup_project(project, cdc_url, pg_url)
    run_ok(project)
    execute(dst, "DROP TABLE items")
    execute(engine, "UPDATE items SET name = 'changed' WHERE id = 4")
    record = run_ok(project)
    assert (record["rows_read"], record["inserted"]) == (10, 10)
    assert rows(dst) == rows(engine)
    execute(engine, "DELETE FROM items WHERE id = 5")
    assert run_ok(project)["deleted"] == 1  # from the new slot's position on
    assert rows(dst) == rows(engine)


def test_a_server_without_logical_decoding_says_what_to_change(project, pg_url, tmp_path):
    """The shared server runs wal_level=replica: the first run names the setting to change."""
    engine = source_engine(pg_url)
    create_items(engine, 3)
    setup_project(project, pg_url, pg_url)
    record = services.run(project.ws, "sync")
    assert record["status"] == "failed"
    assert "wal_level is 'replica'; set it to 'logical'" in record["error"]


def test_keys_other_than_the_replica_identity_are_refused(project, cdc_url, pg_url):
    engine = source_engine(cdc_url)
    execute(engine, "CREATE TABLE items (id int PRIMARY KEY, code text NOT NULL, name text)")
    project.connection("src", "postgresql", cdc_url)
    project.connection("dst", "postgresql", pg_url)
    project.job(
        "sync",
        "src",
        "dst",
        "- {name: items, read: {table: items}, write: {table: items, keys: [code]}, "
        "changes: {strategy: cdc}, deletes: propagate}",
    )
    services.apply(project.ws)
    record = services.run(project.ws, "sync")
    assert record["status"] == "failed"
    assert "write.keys (code) are not the replica identity of table 'items' (id)" in record["error"]
    execute(
        engine,
        "ALTER TABLE items REPLICA IDENTITY FULL",
        "INSERT INTO items VALUES (1, 'a', 'x')",
    )
    assert run_ok(project)["inserted"] == 1
    execute(engine, "UPDATE items SET code = 'b' WHERE id = 1")  # the key changes: the old row goes
    run_ok(project)
    with source_engine(pg_url).connect() as conn:
        assert conn.exec_driver_sql("SELECT code, name FROM items").all() == [("b", "x")]


def test_dry_run_changes_nothing(project, cdc_url, pg_url):
    engine, dst = source_engine(cdc_url), source_engine(pg_url)
    create_items(engine, 5)
    setup_project(project, cdc_url, pg_url)
    dry = services.run(project.ws, "sync", services.RunOptions(dry_run=True))
    assert dry["status"] == "succeeded", dry["error"]
    assert dry["tasks"][0]["inserted"] == 5
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM pg_replication_slots").scalar() == 0
    run_ok(project)
    execute(engine, "DELETE FROM items WHERE id = 1")
    dry = services.run(project.ws, "sync", services.RunOptions(dry_run=True))
    assert dry["tasks"][0]["deleted"] == 1
    assert len(rows(dst)) == 5
    assert run_ok(project)["deleted"] == 1
    assert rows(dst) == rows(engine)


def test_values_of_every_kind_come_through_the_log_as_a_read_gives_them(project, cdc_url, pg_url):
    """The log's text is loaded by psycopg's own loaders per column type: the target gets the
    values a read of the table gives (unmapped types as their text), snapshot or change alike."""
    engine, dst = source_engine(cdc_url), source_engine(pg_url)
    values = (
        "(%d, '\\x00ff'::bytea, gen_random_uuid(), '2026-03-01 10:00:00.123456+02', true, 1.25::real, "
        "0.1::double precision, ARRAY[1, 2, 3], interval '1 day 2 hours', 'ü ✓ \"quoted\"\tand tab', "
        "'{\"k\": [1, null]}'::json, DATE '2026-02-28', TIME '23:59:59.5', 'infinity'::timestamp)"
    )
    execute(
        engine,
        "CREATE TABLE kinds (id int PRIMARY KEY, b bytea, u uuid, tz timestamptz, flag boolean, r real, "
        "d double precision, arr int[], iv interval, t text, j json, day date, tm time, ts timestamp)",
        "INSERT INTO kinds VALUES " + values % 1,
    )
    project.connection("src", "postgresql", cdc_url)
    project.connection("dst", "postgresql", pg_url)
    project.job(
        "sync",
        "src",
        "dst",
        "- {name: kinds, read: {table: kinds, unmapped_types: text}, write: {table: kinds, keys: [id]}, "
        "changes: {strategy: cdc}, deletes: propagate}",
    )
    services.apply(project.ws)
    run_ok(project)
    execute(
        engine,
        "INSERT INTO kinds VALUES " + values % 2,
        "UPDATE kinds SET r = 3.5, t = NULL, arr = ARRAY[4] WHERE id = 1",
    )
    run_ok(project)
    query = (
        "SELECT id, b, u, tz, flag, r, d, arr::text, iv::text, t, j::text, day, tm, ts::text "
        "FROM kinds ORDER BY id"
    )
    with engine.connect() as conn, dst.connect() as target:
        assert target.exec_driver_sql(query).all() == conn.exec_driver_sql(query).all()


def test_a_partitioned_table_is_followed_through_its_partitions(project, cdc_url, pg_url):
    engine, dst = source_engine(cdc_url), source_engine(pg_url)
    execute(
        engine,
        "CREATE TABLE items (id int PRIMARY KEY, name text, amount numeric(12,2), stamp timestamp, "
        "doc jsonb) PARTITION BY RANGE (id)",
        "CREATE TABLE items_low PARTITION OF items FOR VALUES FROM (0) TO (100)",
        "CREATE TABLE items_high PARTITION OF items FOR VALUES FROM (100) TO (1000)",
        "INSERT INTO items SELECT g, 'p' || g, g, NULL, NULL FROM generate_series(95, 105) g",
    )
    setup_project(project, cdc_url, pg_url)
    run_ok(project)
    execute(
        engine,
        "UPDATE items SET name = 'moved', id = 150 WHERE id = 96",  # across partitions
        "DELETE FROM items WHERE id = 104",
        "INSERT INTO items VALUES (5, 'low', 1, NULL, NULL), (500, 'high', 2, NULL, NULL)",
    )
    run_ok(project)
    assert rows(dst) == rows(engine)


def test_source_and_target_in_one_database(project, cdc_url):
    """The slot is made before the target's writer opens: creating a slot waits for every open
    transaction of the server, which would be the writer's own."""
    engine = source_engine(cdc_url)
    create_items(engine, 30)
    project.connection("db", "postgresql", cdc_url)
    project.job(
        "sync",
        "db",
        "db",
        "- {name: items, read: {table: items}, write: {table: copy.items, keys: [id]}, "
        "changes: {strategy: cdc}, deletes: propagate}",
    )
    services.apply(project.ws)
    run_ok(project)
    execute(engine, "UPDATE items SET name = 'same server' WHERE id < 10", "DELETE FROM items WHERE id = 20")
    run_ok(project)
    assert rows(engine, "copy.items") == rows(engine)


def test_a_large_value_an_update_left_unchanged(project, cdc_url, pg_url):
    """The log leaves out a TOASTed value an update did not change: with REPLICA IDENTITY FULL
    it is taken from the old row; without, the task stops saying what to change."""
    engine, dst = source_engine(cdc_url), source_engine(pg_url)
    big = "(SELECT string_agg(md5(g::text), '') FROM generate_series(1, 400) g)"
    create_items(engine, 3)
    execute(engine, f"UPDATE items SET name = {big} WHERE id = 1")
    setup_project(project, cdc_url, pg_url)
    run_ok(project)
    execute(engine, "UPDATE items SET amount = 99 WHERE id = 1")
    record = services.run(project.ws, "sync")
    assert record["status"] == "failed"
    assert "left column 'name' (a large value) unchanged" in record["error"]
    assert "REPLICA IDENTITY FULL, then run with --resync" in record["error"]
    execute(engine, "ALTER TABLE items REPLICA IDENTITY FULL")
    assert services.run(project.ws, "sync", services.RunOptions(resync=True))["status"] == "succeeded"
    execute(engine, "UPDATE items SET amount = 100 WHERE id = 1")
    task = run_ok(project)
    assert task["updated"] == 1
    assert rows(dst) == rows(engine)


def test_deletes_go_to_the_target_in_key_order(project, cdc_url, pg_url, monkeypatch):
    """The keys a round deletes are staged sorted (the target's key index walked forwards, each
    page read once), not in the log's order."""
    from runner.connectors.sql.writer import SqlWriter

    engine, dst = source_engine(cdc_url), source_engine(pg_url)
    create_items(engine)
    setup_project(project, cdc_url, pg_url)
    run_ok(project)
    staged: list[list] = []
    stage_keys = SqlWriter.stage_keys
    monkeypatch.setattr(
        SqlWriter, "stage_keys", lambda w, keys: (staged.append(list(keys)), stage_keys(w, keys))
    )
    execute(engine, *(f"DELETE FROM items WHERE id = {i}" for i in (17, 3, 11, 5, 20)))
    assert run_ok(project)["deleted"] == 5
    assert rows(dst) == rows(engine)
    assert staged == [[(3,), (5,), (11,), (17,), (20,)]]
