"""The cdc strategy on MariaDB: a consistent snapshot, then every kind of change from the
row-based binlog, into real targets (SQLite, and the shared PostgreSQL), compared row by row
with the source, on a private MariaDB server writing a binlog (`binlog_url`)."""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
import threading
import time
import uuid
from decimal import Decimal

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from runner import services
from runner.cli.app import app
from tests.engine.test_crash import kill_at

COLUMNS = "id, name, amount, stamp, doc"


def engine_of(url: str) -> sa.Engine:
    return sa.create_engine(url, poolclass=sa.NullPool, isolation_level="AUTOCOMMIT")


def execute(engine: sa.Engine, *statements: str) -> None:
    with engine.connect() as conn:
        for sql in statements:
            conn.exec_driver_sql(sql)


def source_rows(engine: sa.Engine) -> list[tuple]:
    """The source's rows in key order, in the terms the targets are compared in."""
    with engine.connect() as conn:
        found = conn.exec_driver_sql(f"SELECT {COLUMNS} FROM items ORDER BY id").all()
    return [(i, n, a, s, _doc(d)) for i, n, a, s, d in found]


def _doc(value):
    import json

    return None if value is None else json.loads(value) if isinstance(value, str) else value


def pg_rows(engine: sa.Engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql(f"SELECT {COLUMNS} FROM items ORDER BY id")]


def sqlite_rows(path) -> list[tuple]:
    db = sqlite3.connect(path)
    try:
        found = db.execute(f"SELECT {COLUMNS} FROM items ORDER BY id").fetchall()
    finally:
        db.close()
    return [
        (
            i,
            n,
            None if a is None else Decimal(str(a)).quantize(Decimal("0.01")),
            None if s is None else dt.datetime.fromisoformat(s),
            _doc(d),
        )
        for i, n, a, s, d in found
    ]


def target_rows(project, target: str, pg_url: str) -> list[tuple]:
    return pg_rows(engine_of(pg_url)) if target == "postgresql" else sqlite_rows(project.root / "dst.db")


def copy_into_mariadb(project, url: str, maria_url: str, table: str, read: str = "") -> None:
    """A `cdc` job copying `table` (its `read` options after the table's name) into the shared
    MariaDB server, applied and run once."""
    project.connection("src", "mariadb", url)
    project.connection("dst", "mariadb", maria_url)
    project.job(
        "sync",
        "src",
        "dst",
        f"- {{name: {table}, read: {{table: {table}{read}}}, write: {{table: {table}, keys: [id]}}, "
        "changes: {strategy: cdc}, deletes: propagate}",
    )
    services.apply(project.ws)
    run_ok(project)


def setup_project(
    project, url: str, target: str, pg_url: str, batch_size: int = 1000, extra: str = ""
) -> None:
    project.connection("src", "mariadb", url)
    if target == "postgresql":
        project.connection("dst", "postgresql", pg_url)
    else:
        project.connection("dst", "sqlite", "sqlite:///dst.db")
    project.job(
        "sync",
        "src",
        "dst",
        f"""
        - name: items
          read: {{table: items}}
          write: {{table: items, keys: [id]}}
          changes: {{strategy: cdc{extra}}}
          deletes: propagate
        """,
        extra=f"  batch_size: {batch_size}\n",
    )
    services.apply(project.ws)


def create_items(engine: sa.Engine, rows: int = 20) -> None:
    execute(
        engine,
        "CREATE TABLE items (id int PRIMARY KEY, name text, amount decimal(12,2), stamp datetime(6), "
        "doc json)",
        f"INSERT INTO items SELECT seq, CONCAT('item ', seq), seq * 1.5, "
        f"TIMESTAMP '2026-01-01 00:00:00' + INTERVAL seq HOUR, JSON_OBJECT('n', seq) FROM seq_1_to_{rows}",
    )


def run_ok(project, **options) -> dict:
    record = services.run(project.ws, "sync", services.RunOptions(**options))
    assert record["status"] == "succeeded", record["error"]
    return record["tasks"][0]


@pytest.mark.parametrize("target", ["sqlite", "postgresql"])
def test_snapshot_then_every_kind_of_change_over_several_runs(project, binlog_url, pg_url, target):
    engine = engine_of(binlog_url)
    create_items(engine)
    setup_project(project, binlog_url, target, pg_url)

    first = run_ok(project)
    assert first["inserted"] == 20
    assert first["pointer_after"]["type"] == "lsn" and "@binlog." in first["pointer_after"]["value"]
    assert target_rows(project, target, pg_url) == source_rows(engine)

    execute(
        engine,
        "INSERT INTO items VALUES (21, 'new ✓', 7.25, '2026-02-01 10:00:00.5', '{\"a\": [1, 2]}')",
        "UPDATE items SET name = 'changed', amount = NULL WHERE id = 2",
        "UPDATE items SET id = 100, name = 'moved' WHERE id = 3",  # a changed key
        "DELETE FROM items WHERE id = 4",
        "UPDATE items SET name = 'twice' WHERE id = 5",
        "UPDATE items SET name = 'three times' WHERE id = 5",
        "INSERT INTO items VALUES (22, 'gone again', 1, NULL, NULL)",
        "DELETE FROM items WHERE id = 22",
    )
    second = run_ok(project)
    assert target_rows(project, target, pg_url) == source_rows(engine)
    assert second["deleted"] >= 2 and second["inserted"] >= 2

    nothing = run_ok(project)
    assert (nothing["rows_read"], nothing["inserted"], nothing["updated"], nothing["deleted"]) == (0, 0, 0, 0)

    execute(
        engine,
        "START TRANSACTION",
        "INSERT INTO items SELECT seq, 'bulk', seq, NULL, NULL FROM seq_200_to_600",
        "UPDATE items SET amount = amount + 1 WHERE id <= 300",
        "DELETE FROM items WHERE id BETWEEN 400 AND 420",
        "COMMIT",
    )
    run_ok(project)
    assert target_rows(project, target, pg_url) == source_rows(engine)

    execute(engine, "TRUNCATE TABLE items", "INSERT INTO items VALUES (1, 'after truncate', 1, NULL, NULL)")
    run_ok(project)
    assert target_rows(project, target, pg_url) == source_rows(engine)
    assert len(source_rows(engine)) == 1


def test_a_transaction_larger_than_a_batch_and_other_tables_changes(project, binlog_url, pg_url):
    """One transaction of many batches goes into the target in pieces, committed once; other
    tables' changes in the log are passed over (and the position moves past them)."""
    engine = engine_of(binlog_url)
    create_items(engine, 10)
    execute(engine, "CREATE TABLE noise (id int PRIMARY KEY, payload text)")
    setup_project(project, binlog_url, "postgresql", pg_url, batch_size=7)
    run_ok(project)
    execute(
        engine,
        "START TRANSACTION",
        "INSERT INTO items SELECT seq, CONCAT('bulk ', seq), seq, NULL, NULL FROM seq_11_to_400",
        "INSERT INTO noise SELECT seq, REPEAT('x', 100) FROM seq_1_to_300",
        "UPDATE items SET amount = amount + 1 WHERE id <= 200",
        "UPDATE items SET id = id + 1000 WHERE id BETWEEN 100 AND 150",
        "DELETE FROM items WHERE id BETWEEN 300 AND 320",
        "COMMIT",
    )
    task = run_ok(project)
    assert pg_rows(engine_of(pg_url)) == source_rows(engine)
    assert task["rows_read"] == 390 + 200 + 2 * 51 + 21  # a changed key: a delete and an upsert
    before = task["pointer_after"]["value"]
    execute(engine, "INSERT INTO noise SELECT seq, 'y' FROM seq_1000_to_1100")
    quiet = run_ok(project)
    assert quiet["rows_read"] == 0
    assert quiet["pointer_after"]["value"] != before  # moved on past the other table's changes


def test_writers_during_the_snapshot_are_neither_lost_nor_doubled(project, binlog_url, pg_url, monkeypatch):
    """The snapshot is read in batches, slowed down, while a writer changes the table: its
    changes come through the binlog exactly once, after the snapshot's position."""
    engine = engine_of(binlog_url)
    create_items(engine, 200)
    setup_project(project, binlog_url, "sqlite", pg_url, batch_size=10)
    monkeypatch.setenv("RUNNER_BATCH_DELAY", "0.03")
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
    monkeypatch.delenv("RUNNER_BATCH_DELAY")
    run_ok(project)
    assert sqlite_rows(project.root / "dst.db") == source_rows(engine)


def churn(engine: sa.Engine, round_: int) -> None:
    """Many transactions: inserts, updates, a changed key and deletes."""
    base = 1000 * round_
    for i in range(12):
        execute(
            engine,
            f"INSERT INTO items VALUES ({base + i}, 'r{round_} {i}', {i}, NULL, '{{\"r\": {round_}}}')",
        )
    execute(
        engine,
        f"UPDATE items SET name = CONCAT(name, ' upd{round_}') WHERE id MOD 3 = 0",
        f"UPDATE items SET id = id + 500 WHERE id = {base + 1}",
        f"DELETE FROM items WHERE id MOD 7 = {round_ % 7}",
    )


@pytest.mark.parametrize("point", ["read", "write", "committed", "stored"])
def test_kill_anywhere_then_rerun(project, binlog_url, pg_url, tmp_path, point):
    """Invariant 1: a run killed with SIGKILL at a fault point (in the snapshot, or while
    changes are applied), then run again, leaves the target equal to the source."""
    engine = engine_of(binlog_url)
    create_items(engine, 40)
    setup_project(project, binlog_url, "postgresql", pg_url, batch_size=5)
    project.ws.close()
    dst = engine_of(pg_url)

    kill_at(project, point, tmp_path)  # killed in the snapshot
    churn(engine, 1)
    record = services.run(project.ws, "sync")
    assert record["status"] == "succeeded", record["error"]
    assert pg_rows(dst) == source_rows(engine)
    project.ws.close()

    churn(engine, 2)
    kill_at(project, point, tmp_path)  # killed while applying changes
    churn(engine, 3)
    execute(
        engine,
        "TRUNCATE TABLE items",
        "INSERT INTO items SELECT seq, 'again', seq, NULL, NULL FROM seq_1_to_9",
    )
    churn(engine, 4)
    kill_at(project, point, tmp_path)  # and again, past a truncate
    record = services.run(project.ws, "sync")
    assert record["status"] == "succeeded", record["error"]
    assert pg_rows(dst) == source_rows(engine)
    again = services.run(project.ws, "sync")["tasks"][0]
    assert (again["rows_read"], again["inserted"], again["updated"], again["deleted"]) == (0, 0, 0, 0)


KINDS = (
    "CREATE TABLE kinds (id int PRIMARY KEY, b blob, vb varbinary(20), t text, v varchar(20), c char(3), "
    "d decimal(12,3), dt datetime(6), ts timestamp(3) NULL, da date, tm time(2), j json, f float, "
    "db double, u int unsigned, bu bigint unsigned, flag tinyint(1), y year, bi bigint, si smallint, "
    "mi mediumint unsigned, uu uuid, e enum('a','b'))"
)
KIND_VALUES = (
    "({id}, x'00ff', x'0102ff', 'ü ✓ \"q\"\ttab', 'vv', 'ab', -12.345, '2026-01-02 03:04:05.123456', "
    "'2026-01-02 03:04:05.5', '2026-02-28', '-12:30:00.25', '{{\"a\": [1, null]}}', 1.5, 0.1, 4000000000, "
    "18446744073709551615, 1, 2026, -9000000000, -5, 16000000, '{uuid}', 'b')"
)


def test_values_of_every_kind_come_through_the_binlog_as_a_read_gives_them(project, binlog_url, maria_url):
    """Blobs, texts, decimals, date-times, JSON, unsigned and negative times: the binlog's values
    land in the target as the snapshot's read put them there (a MariaDB target compared with
    the source by the server's own text of each value)."""
    engine = engine_of(binlog_url)
    execute(
        engine,
        KINDS,
        "INSERT INTO kinds VALUES " + KIND_VALUES.format(id=1, uuid=uuid.uuid4()),
        "INSERT INTO kinds VALUES " + KIND_VALUES.format(id=5, uuid=uuid.uuid4()),  # the snapshot's alone
    )
    copy_into_mariadb(project, binlog_url, maria_url, "kinds", ", unmapped_types: text")
    execute(
        engine,
        "INSERT INTO kinds VALUES " + KIND_VALUES.format(id=2, uuid=uuid.uuid4()),
        "INSERT INTO kinds (id, tm, t) VALUES (3, '-00:00:00.5', NULL)",
        "INSERT INTO kinds (id, tm, ts) VALUES (4, '838:59:59', '2038-01-19 03:14:07.999')",
        "UPDATE kinds SET f = 3.25, t = NULL, b = x'', j = '[]', tm = '-00:00:01' WHERE id = 1",
    )
    # every type's table map agrees with the table's declared types: no change of shape seen
    assert run_ok(project)["schema_changes"] == []
    text = (
        "SELECT id, HEX(b), HEX(vb), t, v, c, CAST(d AS CHAR), CAST(dt AS CHAR), "
        "CAST(CAST(ts AS DATETIME(6)) AS CHAR), CAST(da AS CHAR), CAST(CAST(tm AS TIME(6)) AS CHAR), "
        "JSON_COMPACT(j), CAST(f AS DOUBLE), db, "
        "CAST(u AS CHAR), CAST(bu AS CHAR), flag, y, bi, si, mi, CAST(uu AS CHAR), CAST(e AS CHAR) "
        "FROM kinds ORDER BY id"
    )
    with engine.connect() as conn, engine_of(maria_url).connect() as target:
        conn.exec_driver_sql("SET time_zone = '+00:00'")
        expected = conn.exec_driver_sql(text).all()
        target.exec_driver_sql("SET time_zone = '+00:00'")
        assert target.exec_driver_sql(text).all() == expected
    assert len(expected) == 5


def test_values_ending_in_zero_bytes_come_through_the_binlog_whole(project, binlog_url, maria_url):
    """The binlog keeps a fixed-width binary value (a `binary(n)`, a `uuid`) without its
    trailing zero bytes: a UUID ending in 00 (one in 256) failed the run, and a `binary(4)`
    came through shorter than the snapshot's read gave it."""
    engine = engine_of(binlog_url)
    execute(
        engine,
        "CREATE TABLE bins (id int PRIMARY KEY, fb binary(4), uu uuid)",
        "INSERT INTO bins VALUES (1, x'01000000', 'a1b2c3d4-0000-4000-8000-000000000000')",
    )
    copy_into_mariadb(project, binlog_url, maria_url, "bins")
    execute(
        engine,
        "INSERT INTO bins VALUES (2, x'02000000', '00000000-0000-4000-8000-000000000100')",
        "INSERT INTO bins VALUES (3, x'00000000', 'ffffffff-ffff-4fff-bfff-ff0000000000')",
        "UPDATE bins SET fb = x'0a0b0000', uu = 'a1b2c3d4-0000-4000-8000-0000000a0000' WHERE id = 1",
    )
    run_ok(project)
    text = "SELECT id, HEX(fb), CAST(uu AS CHAR) FROM bins ORDER BY id"
    with engine.connect() as conn, engine_of(maria_url).connect() as target:
        expected = conn.exec_driver_sql(text).all()
        assert target.exec_driver_sql(text).all() == expected
    assert [r[1] for r in expected] == ["0A0B0000", "02000000", "00000000"]


SIX = [
    "::",
    "::1",
    "::2",
    "::0.1.0.0",
    "::1.2.3.4",
    "::ffff:1.2.3.4",
    "::ffff:0.0.0.0",
    "::ffff:0:1.2.3.4",
    "2001:db8:0:0:1:0:0:1",
    "1:0:0:1:0:0:0:1",
    "fe80::1:0",
]


def test_types_read_as_text_come_through_the_binlog_as_the_servers_text(project, binlog_url, maria_url):
    """inet4, inet6 and set columns are read as the server's text (`unmapped_types: text`):
    their binlog values (bytes without trailing zeros, a Python set, None for an empty set) land
    as that same text, not as NULL or Python's rendering of bytes (`b'\\\\x0a…'`) or a set's
    members sorted by name. A bit(n) column is read as its n 0s and 1s both ways: its bytes as
    text would turn 0xff into '?'."""
    engine = engine_of(binlog_url)
    execute(
        engine,
        "CREATE TABLE addrs (id int PRIMARY KEY, i4 inet4, i6 inet6, s set('c', 'a', 'b'), b bit(10))",
        "INSERT INTO addrs VALUES (100, '10.0.0.1', '::1', 'a,c', b'1111111111'), "
        "(101, NULL, NULL, NULL, b'0011111111')",  # 101: as the snapshot read it
    )
    copy_into_mariadb(project, binlog_url, maria_url, "addrs", ", unmapped_types: text")
    execute(
        engine,
        *(
            f"INSERT INTO addrs VALUES ({i}, '{four}', '{six}', '{members}', {bits})"
            for i, (six, four, members, bits) in enumerate(
                zip(
                    SIX,
                    ["0.0.0.0", "192.168.1.0", "1.2.3.4"] * 4,
                    ["a,c", "b,c", "a,b,c", "c"] * 3,
                    ["b'0'", "b'1000000000'", "b'0000000001'", "b'1111111111'", "NULL"] * 3,
                    strict=False,
                ),
                1,
            )
        ),
        "UPDATE addrs SET i4 = '0.0.0.0', s = 'b,c' WHERE id = 100",
        "INSERT INTO addrs (id, s) VALUES (20, ''), (21, NULL)",  # an empty set is not NULL
    )
    run_ok(project)
    with engine.connect() as conn, engine_of(maria_url).connect() as target:
        expected = conn.exec_driver_sql(
            "SELECT id, CAST(i4 AS CHAR), CAST(i6 AS CHAR), CAST(s AS CHAR), LPAD(BIN(b), 10, '0') "
            "FROM addrs ORDER BY id"
        ).all()
        assert target.exec_driver_sql("SELECT id, i4, i6, s, b FROM addrs ORDER BY id").all() == expected
    assert [r[2] for r in expected[:4]] == ["::", "::1", "::2", "::0.1.0.0"]
    assert expected[-2][1:] == ("0.0.0.0", "::1", "c,b", "1111111111")
    assert expected[-1][4] == "0011111111"
    assert [r[3] for r in expected if r[0] in (20, 21)] == ["", None]
    assert [r[4] for r in expected[:5]] == ["0000000000", "1000000000", "0000000001", "1111111111", None]


def test_a_server_without_row_binlog_says_what_to_set(project, binlog_url, binlog_maria, maria_url, pg_url):
    """The private server switched to MIXED: the first run and `connections test` name the
    setting; the shared server (no binlog) names log_bin."""
    engine = engine_of(binlog_url)
    create_items(engine, 3)
    setup_project(project, binlog_url, "postgresql", pg_url)
    admin = engine_of(binlog_maria.admin_url)
    execute(admin, "SET GLOBAL binlog_format = 'MIXED'")
    try:
        record = services.run(project.ws, "sync")
        results = {r["connection"]: r for r in services.connections_test(project.ws)}
    finally:
        execute(admin, "SET GLOBAL binlog_format = 'ROW'")
    assert record["status"] == "failed"
    assert "binlog_format is MIXED; set it to ROW" in record["error"]
    (log,) = [c for c in results["default/src"]["checks"] if c["check"] == "log"]
    assert log["ok"] is False and "binlog_format is MIXED; set it to ROW" in log["detail"]

    engine_of(maria_url)  # the shared server writes no binlog
    create_items(engine_of(maria_url), 3)
    project.connection("src", "mariadb", maria_url)
    services.apply(project.ws)
    record = services.run(project.ws, "sync")
    assert record["status"] == "failed"
    assert "log_bin is OFF; start the server with log_bin" in record["error"]
    (log,) = [
        c
        for c in {r["connection"]: r for r in services.connections_test(project.ws)}["default/src"]["checks"]
        if c["check"] == "log"
    ]
    assert log["ok"] is False and "binlog_format = ROW" in log["detail"]


def purge_to_current(admin: sa.Engine) -> None:
    """PURGE BINARY LOGS TO the current file; the server keeps a file until its binlog
    checkpoint passed it (a moment after FLUSH), so it is asked until the others are gone."""
    deadline = time.monotonic() + 60
    with admin.connect() as conn:
        (current, *_), *_ = conn.exec_driver_sql("SHOW MASTER STATUS").all()
        while True:
            conn.exec_driver_sql(f"PURGE BINARY LOGS TO '{current}'")
            if [r[0] for r in conn.exec_driver_sql("SHOW BINARY LOGS")] == [current]:
                return
            assert time.monotonic() < deadline, "the server kept its older binlogs"
            time.sleep(0.2)


def test_a_purged_position_is_a_clear_error_and_resync_recovers(project, binlog_url, binlog_maria, pg_url):
    engine = engine_of(binlog_url)
    create_items(engine, 10)
    setup_project(project, binlog_url, "postgresql", pg_url)
    run_ok(project)
    admin = engine_of(binlog_maria.admin_url)
    execute(engine, "DELETE FROM items WHERE id = 3", "UPDATE items SET name = 'lost' WHERE id = 4")
    execute(admin, "FLUSH BINARY LOGS")
    execute(engine, "INSERT INTO items VALUES (50, 'later', 1, NULL, NULL)")
    execute(admin, "FLUSH BINARY LOGS")
    purge_to_current(admin)
    record = services.run(project.ws, "sync")
    assert record["status"] == "failed"
    assert "no longer holds the task's position" in record["error"]
    assert "--resync" in record["error"]
    record = services.run(project.ws, "sync", services.RunOptions(resync=True))
    assert record["status"] == "succeeded", record["error"]
    assert pg_rows(engine_of(pg_url)) == source_rows(engine)
    assert record["tasks"][0]["deleted"] == 1  # the snapshot's comparison found the row gone


def test_status_and_tasks_show_the_lag(project, binlog_url, pg_url):
    engine = engine_of(binlog_url)
    create_items(engine, 5)
    setup_project(project, binlog_url, "postgresql", pg_url, extra=", max_lag: 1")
    run_ok(project)
    (job,) = services.status(project.ws)["jobs"]
    (lag,) = job["cdc_lag"]
    assert lag["task"] == "items" and lag["lag_bytes"] == 0
    execute(engine, "INSERT INTO items SELECT seq, 'more', seq, NULL, NULL FROM seq_100_to_200")
    (task,) = services.tasks(project.ws, "sync")
    assert task["lag"]["exists"] and task["lag"]["lag_bytes"] > 0  # asked of the source now
    assert task["lag"]["over_max_lag"]
    assert 0 <= task["lag"]["lag_seconds"] < 600
    run_ok(project)
    (task,) = services.tasks(project.ws, "sync")
    assert task["lag"]["lag_bytes"] == 0 and task["lag"]["lag_seconds"] == 0


def test_a_user_without_replication_privileges_is_told_what_to_grant(
    project, binlog_url, binlog_maria, pg_url
):
    engine = engine_of(binlog_url)
    create_items(engine, 3)
    url = sa.make_url(binlog_url)
    user = f"cdc_{uuid.uuid4().hex[:8]}"
    admin = engine_of(binlog_maria.admin_url)
    execute(
        admin, f"CREATE USER '{user}'@'127.0.0.1'", f"GRANT ALL ON `{url.database}`.* TO '{user}'@'127.0.0.1'"
    )
    try:
        setup_project(
            project, url.set(username=user).render_as_string(hide_password=False), "postgresql", pg_url
        )
        record = services.run(project.ws, "sync")
        assert record["status"] == "failed"
        assert f"GRANT BINLOG MONITOR ON *.* TO '{user}'@'127.0.0.1'" in record["error"]
        assert f"GRANT REPLICATION SLAVE ON *.* TO '{user}'@'127.0.0.1'" in record["error"]
        execute(admin, f"GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO '{user}'@'127.0.0.1'")
        run_ok(project)
        execute(engine, "DELETE FROM items WHERE id = 2")
        run_ok(project)
        assert pg_rows(engine_of(pg_url)) == source_rows(engine)
    finally:
        execute(admin, f"DROP USER '{user}'@'127.0.0.1'")


def test_a_server_restart_between_runs(project, binlog_url, binlog_maria, pg_url):
    """A restart starts a new binlog file; the GTID position finds its place in it."""
    engine = engine_of(binlog_url)
    create_items(engine, 10)
    setup_project(project, binlog_url, "postgresql", pg_url)
    run_ok(project)
    execute(engine, "UPDATE items SET name = 'before restart' WHERE id = 1", "DELETE FROM items WHERE id = 2")
    binlog_maria.restart()
    execute(engine, "INSERT INTO items VALUES (50, 'after restart', 1, NULL, NULL)")
    run_ok(project)
    assert pg_rows(engine_of(pg_url)) == source_rows(engine)


def test_dry_run_changes_nothing(project, binlog_url, pg_url):
    engine, dst = engine_of(binlog_url), engine_of(pg_url)
    create_items(engine, 5)
    setup_project(project, binlog_url, "postgresql", pg_url)
    dry = services.run(project.ws, "sync", services.RunOptions(dry_run=True))
    assert dry["status"] == "succeeded", dry["error"]
    assert dry["tasks"][0]["inserted"] == 5 and dry["tasks"][0]["pointer_after"] is None
    run_ok(project)
    execute(engine, "DELETE FROM items WHERE id = 1")
    dry = services.run(project.ws, "sync", services.RunOptions(dry_run=True))
    assert dry["tasks"][0]["deleted"] == 1
    assert len(pg_rows(dst)) == 5
    assert run_ok(project)["deleted"] == 1
    assert pg_rows(dst) == source_rows(engine)


def test_deleting_the_job_drops_nothing_and_forgets_the_position(project, binlog_url, pg_url):
    engine = engine_of(binlog_url)
    create_items(engine, 3)
    setup_project(project, binlog_url, "postgresql", pg_url)
    run_ok(project)
    (project.root / "jobs.d" / "sync.yaml").unlink()
    (said,) = services.log_releases(project.ws, services.plan(project.ws))
    assert "slot" in said and "replication slot" not in said  # MariaDB keeps none: nothing to drop
    assert said.startswith("job default/sync: forgets the stored log position of task 'items'")
    shown = CliRunner().invoke(app, ["--dir", str(project.root), "plan"], env={"COLUMNS": "250"})
    assert "forgets the stored log position of task 'items'" in shown.output
    assert "drops replication slot" not in shown.output
    result = services.apply(project.ws)
    (line,) = result.released
    assert (
        line
        == "job default/sync, task 'items': forgot its stored log position (the source keeps no slot for it)"
    )
    setup_project(project, binlog_url, "postgresql", pg_url)  # the same job again: a new snapshot
    execute(engine, "DELETE FROM items WHERE id = 1")
    task = run_ok(project)
    assert task["pointer_before"] is None and task["deleted"] == 1
    assert pg_rows(engine_of(pg_url)) == source_rows(engine)


def test_a_lost_binlog_connection_stops_the_run_and_the_next_resumes(
    project, binlog_url, binlog_maria, pg_url
):
    """The reader's connection lost mid-read (its dump thread KILLed on the server, again and
    again): the run stops as transient (not connected again behind its back), the next run
    reads from the last position stored, and the target ends equal to the source."""
    engine = engine_of(binlog_url)
    create_items(engine, 50)
    setup_project(project, binlog_url, "postgresql", pg_url, batch_size=5)
    run_ok(project)
    for round_ in range(20):  # many transactions, each updating the same rows to new values
        execute(
            engine,
            "START TRANSACTION",
            *[
                f"UPDATE items SET amount = {round_ * 100 + i}, "
                f"name = CONCAT('r{round_}', REPEAT('x', 2000)) WHERE id = {i}"
                for i in range(1, 51)
            ],
            "COMMIT",
        )
    admin = engine_of(binlog_maria.admin_url)
    stop = threading.Event()
    killed: list[int] = []

    def kill_readers() -> None:
        while not stop.is_set():
            with admin.connect() as conn:
                for row in conn.exec_driver_sql("SHOW PROCESSLIST").all():
                    if row[4] == "Binlog Dump" and row[0] not in killed:
                        with contextlib.suppress(sa.exc.DBAPIError):
                            conn.exec_driver_sql(f"KILL {int(row[0])}")
                        killed.append(row[0])
            time.sleep(0.2)

    killer = threading.Thread(target=kill_readers)
    killer.start()
    try:
        record = services.run(project.ws, "sync")
    finally:
        stop.set()
        killer.join()
    if record["status"] != "succeeded":  # a kill landed while the run read (it usually does)
        assert "the binlog connection of connection 'default/src' was lost" in record["error"], record[
            "error"
        ]
    run_ok(project)
    assert pg_rows(engine_of(pg_url)) == source_rows(engine)
    assert run_ok(project)["rows_read"] == 0


def test_a_continuous_job_follows_the_binlog_in_the_daemon(project, binlog_url):
    """A continuous cdc job from MariaDB in a real `runner daemon`: waves of changes reach the
    target while its one run goes on."""
    from tests.cdc.test_cdc_continuous import _until
    from tests.daemon.conftest import Daemon

    engine = engine_of(binlog_url)
    create_items(engine, 30)
    project.connection("src", "mariadb", binlog_url)
    project.connection("dst", "sqlite", "sqlite:///dst.db")
    project.job(
        "sync",
        "src",
        "dst",
        "- {name: items, read: {table: items}, write: {table: items, keys: [id]}, "
        "changes: {strategy: cdc}, deletes: propagate}",
        extra="  batch_size: 50\n  continuous: {max_latency: 1s, backoff: 1s, max_delay: 4s}\n",
    )

    def same() -> bool:
        try:
            return sqlite_rows(project.root / "dst.db") == source_rows(engine)
        except sqlite3.OperationalError:  # not made yet
            return False

    daemon = Daemon(project.root)
    try:
        daemon.wait_for(
            lambda e: e["event"] == "run started" and e.get("trigger") == "continuous", timeout=60
        )
        _until(same)
        for wave in range(3):
            execute(
                engine,
                f"INSERT INTO items VALUES ({100 + wave}, 'wave', {wave}, NULL, NULL)",
                f"UPDATE items SET name = 'wave {wave}' WHERE id MOD 5 = {wave}",
                f"DELETE FROM items WHERE id = {10 + wave}",
            )
            _until(same)
        assert len(daemon.matching("run started")) == 1  # one run, going on
    finally:
        daemon.close()
