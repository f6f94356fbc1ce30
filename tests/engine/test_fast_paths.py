"""Copies made inside the databases (PostgreSQL binary COPY piped through, SQLite ATTACH +
INSERT … SELECT) give the same rows as batches, step aside when they cannot, and keep the
pointer behind what is committed when killed."""

from __future__ import annotations

import sqlite3

import pytest
import sqlalchemy as sa

from runner import services
from runner.connectors.sql.fastpath import FastPath
from runner.transfer.registry import FAST_PATHS
from tests.engine.test_crash import kill_at


def test_the_fast_paths_are_one_registry_keyed_by_pair():
    """Each pair's fast path is found by (source kind, target kind); any other pair has none
    (its rows go in batches), and a pair registered twice is refused."""
    assert set(FAST_PATHS) == {
        ("postgresql", "postgresql"),
        ("sqlite", "sqlite"),
        ("postgresql", "mariadb"),
        ("files", "postgresql"),  # a CSV file copied in by PostgreSQL's COPY
        ("postgresql", "files"),  # a table into Parquet files through Arrow, no row in Python
    }
    assert FAST_PATHS.find(("mariadb", "postgresql")) is None
    with pytest.raises(ValueError, match="already registered"):
        FAST_PATHS.register(("sqlite", "sqlite"), FastPath())


def messages(project, record) -> list[str]:
    return [entry["message"] for entry in services.logs(project.ws, record["run_id"])]


@pytest.mark.parametrize("keys", ["[]", "[id]"])
def test_postgresql_binary_copy(project, pg_url, keys):
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE src (id int PRIMARY KEY, name varchar(20), amount numeric(12,2), "
            "at timestamptz, doc jsonb, raw bytea)"
        )
        conn.exec_driver_sql(
            "INSERT INTO src SELECT g, 'näme ' || g, g / 7.0, now(), jsonb_build_object('g', g), "
            "'\\x00ff'::bytea FROM generate_series(1, 2000) g"
        )
        conn.exec_driver_sql("INSERT INTO src VALUES (0, NULL, NULL, NULL, NULL, NULL)")
    project.connection("db", "postgresql", pg_url)
    project.job(
        "sync", "db", "db", f"- {{name: t, read: {{table: src}}, write: {{table: dst, keys: {keys}}}}}"
    )
    services.apply(project.ws)
    record = services.run(project.ws, "sync")
    assert record["status"] == "succeeded", record["error"]
    assert "copied inside the databases, no row through Python" in messages(project, record)
    assert record["tasks"][0]["rows_read"] == 2001
    with engine.connect() as conn:
        diff = "(SELECT * FROM src EXCEPT SELECT * FROM dst) UNION ALL "
        diff += "(SELECT * FROM dst EXCEPT SELECT * FROM src)"
        assert conn.exec_driver_sql(diff).all() == []
        assert conn.exec_driver_sql("SELECT count(*) FROM dst").scalar() == 2001
    engine.dispose()


def test_postgresql_copy_steps_aside_for_other_target_types(project, pg_url):
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE src (id int, name text)")
        conn.exec_driver_sql("INSERT INTO src VALUES (1, 'short'), (2, 'far too long')")
        conn.exec_driver_sql("CREATE TABLE dst (id bigint, name varchar(5))")
    engine.dispose()
    project.connection("db", "postgresql", pg_url)
    project.job("sync", "db", "db", "- {name: t, read: {table: src}, write: {table: dst}}")
    services.apply(project.ws)
    record = services.run(project.ws, "sync")
    assert record["error"] == (
        "task t: row 2 of its batch: column 'name': value too long for type character varying(5)"
    )


def test_sqlite_attach_copy_keeps_stored_values(project, tmp_path):
    src = tmp_path / "src.db"
    db = sqlite3.connect(src)
    db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, amount NUMERIC(12,2), at TIMESTAMP, note TEXT)")
    db.executemany(
        "INSERT INTO items VALUES (?, ?, ?, ?)",
        [(i, f"{i}.25", f"2026-01-01 00:00:{i % 60:02d}.123456", None if i % 3 else "ß") for i in range(500)],
    )
    db.commit()
    db.close()
    project.connection("src", "sqlite", f"sqlite:///{src}")
    project.connection("dst", "sqlite", f"sqlite:///{tmp_path / 'dst.db'}")
    project.job("sync", "src", "dst", "- {name: t, read: {table: items}, write: {table: items}}")
    services.apply(project.ws)
    record = services.run(project.ws, "sync")
    assert "copied inside the databases, no row through Python" in messages(project, record)
    query = "SELECT id, amount, typeof(amount), at, note FROM items ORDER BY id"
    a, b = sqlite3.connect(src), sqlite3.connect(tmp_path / "dst.db")
    assert a.execute(query).fetchall() == b.execute(query).fetchall()
    # a target table of the same columns in another order: copied by name, not by position
    b.execute("DROP TABLE items")
    b.execute("CREATE TABLE items (note TEXT, at TIMESTAMP, amount NUMERIC(12,2), id INTEGER PRIMARY KEY)")
    b.commit()
    record = services.run(project.ws, "sync")
    assert "copied inside the databases, no row through Python" in messages(project, record)
    assert a.execute(query).fetchall() == b.execute(query).fetchall()


def test_one_sqlite_file_as_source_and_target_runs_again(project, tmp_path, monkeypatch):
    """A job copying a table into another of the same SQLite file, the source holding more
    rows than a batch: every run after the first failed with "database is locked" (after the
    busy timeout), as the target's schema check committed a transaction that wrote nothing while
    the read of the source held the file; now one that wrote nothing is rolled back."""
    monkeypatch.setattr("runner.connectors.sql.sqlite.BUSY_TIMEOUT", 2.0)  # fail fast if it regresses
    path = tmp_path / "one.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")
    db.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"n{i}") for i in range(500)])
    db.commit()
    project.connection("db", "sqlite", f"sqlite:///{path}")
    project.job(
        "same", "db", "db", "- {name: t, read: {table: t}, write: {table: t_copy}}", "  batch_size: 100\n"
    )
    services.apply(project.ws)
    for _ in range(3):
        record = services.run(project.ws, "same")
        assert record["status"] == "succeeded", record["error"]
        assert db.execute("SELECT count(*), sum(id) FROM t_copy").fetchone() == (500, 124_750)
    db.close()


def test_mariadb_without_local_infile_falls_back_to_inserts(project, maria_url, tmp_path):
    admin = sa.create_engine(maria_url)
    with admin.connect() as conn:
        before = conn.exec_driver_sql("SELECT @@GLOBAL.local_infile").scalar()
        conn.exec_driver_sql("SET GLOBAL local_infile = 0")
    try:
        src = tmp_path / "src.db"
        db = sqlite3.connect(src)
        db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, note TEXT, raw BLOB)")
        db.executemany(
            "INSERT INTO items VALUES (?, ?, ?)", [(i, f"tab\there {i}", b"\x00\xff") for i in range(50)]
        )
        db.commit()
        db.close()
        project.connection("src", "sqlite", f"sqlite:///{src}")
        project.connection("dst", "mariadb", maria_url)
        project.job(
            "sync", "src", "dst", "- {name: t, read: {table: items}, write: {table: items, keys: [id]}}"
        )
        services.apply(project.ws)
        record = services.run(project.ws, "sync")
        assert record["status"] == "succeeded", record["error"]
        with admin.connect() as conn:
            rows = conn.exec_driver_sql("SELECT id, note, raw FROM items ORDER BY id").all()
        assert [tuple(r) for r in rows] == [(i, f"tab\there {i}", b"\x00\xff") for i in range(50)]
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"SET GLOBAL local_infile = {int(before)}")
        admin.dispose()


@pytest.mark.parametrize("point", ["read", "write", "committed"])
def test_postgresql_watermark_first_load_killed_anywhere_then_rerun(project, pg_url, tmp_path, point):
    """A watermark task's first load into an empty table is copied inside PostgreSQL in one
    transaction: a run killed before or after its commit (its pointer not yet recorded) and
    run again, then a round of changes, leave the target equal to the source, deletes
    included, and the pointer at the highest value."""
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE src (id integer PRIMARY KEY, name text, at timestamp);"
            "INSERT INTO src SELECT g, 'row ' || g, '2026-01-01'::timestamp + g * interval '1 s' "
            "FROM generate_series(1, 300) g"
        )
    project.connection("db", "postgresql", pg_url)
    project.job(
        "sync",
        "db",
        "db",
        """
        - name: t
          read: {table: src}
          write: {table: dst, keys: [id]}
          changes: {strategy: watermark, column: at}
          deletes: propagate
        """,
    )
    services.apply(project.ws)
    project.ws.close()
    kill_at(project, point, tmp_path)

    def check() -> None:
        with engine.connect() as conn:
            diff = conn.exec_driver_sql(
                "(SELECT * FROM src EXCEPT SELECT * FROM dst) UNION ALL "
                "(SELECT * FROM dst EXCEPT SELECT * FROM src)"
            ).all()
            assert diff == []
            highest = conn.exec_driver_sql("SELECT max(at) FROM src").scalar_one()
        assert services.pointer_show(project.ws, "sync")[0]["pointer"]["value"] == highest.isoformat()

    record = services.run(project.ws, "sync")
    assert record["status"] == "succeeded", record["error"]
    copied = "copied inside the databases, no row through Python" in messages(project, record)
    assert copied == (point != "committed")  # after a commit the table is no longer empty
    check()
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "UPDATE src SET name = 'changed', at = at + interval '1 day' WHERE mod(id, 7) = 0"
        )
        conn.exec_driver_sql("DELETE FROM src WHERE id IN (3, 150)")
        conn.exec_driver_sql("INSERT INTO src VALUES (301, 'new', '2026-02-01')")
    second = services.run(project.ws, "sync")["tasks"][0]
    assert (second["inserted"], second["updated"], second["deleted"]) == (1, 42, 2)
    check()
    engine.dispose()


@pytest.mark.parametrize("point", ["read", "write", "committed"])
def test_postgresql_watermark_round_copied_killed_anywhere_then_rerun(project, pg_url, tmp_path, point):
    """A round past the pointer between two PostgreSQL tables is copied inside the databases
    into the staging table and merged in one transaction: two rounds killed before or after
    their commit and run again leave the target equal to the source (updates, inserts, rows
    tied at the pointer, a NULL watermark, deletes), the pointer at the highest value, and a
    run after that changes nothing."""
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE src (id bigint PRIMARY KEY, name text, amount numeric(12,2), at timestamp);"
            "INSERT INTO src SELECT g, 'row ' || g, g / 7.0, '2026-01-01'::timestamp + g * interval '1 s' "
            "FROM generate_series(1, 400) g"
        )
    project.connection("db", "postgresql", pg_url)
    project.job(
        "sync",
        "db",
        "db",
        """
        - name: t
          read: {table: src}
          write: {table: dst, keys: [id]}
          changes: {strategy: watermark, column: at}
          deletes: propagate
        """,
        extra="  batch_size: 50\n",
    )
    services.apply(project.ws)
    assert services.run(project.ws, "sync")["status"] == "succeeded"
    project.ws.close()

    def change(rnd: int) -> None:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                f"UPDATE src SET name = 'round {rnd}', at = '2026-03-0{rnd}' WHERE mod(id, 9) = {rnd}"
            )
            conn.exec_driver_sql(f"DELETE FROM src WHERE id IN ({10 + rnd}, {200 + rnd})")
            conn.exec_driver_sql(
                f"INSERT INTO src VALUES ({400 + rnd}, 'new', 1.5, '2026-03-0{rnd}'), "
                f"({500 + rnd}, 'no time', 2.5, NULL)"
            )

    change(1)
    kill_at(project, point, tmp_path)
    change(2)
    kill_at(project, point, tmp_path)
    record = services.run(project.ws, "sync")
    assert record["status"] == "succeeded", record["error"]
    assert "copied inside the databases, no row through Python" in messages(project, record)
    with engine.connect() as conn:
        diff = conn.exec_driver_sql(
            "(SELECT * FROM src EXCEPT SELECT * FROM dst) UNION ALL "
            "(SELECT * FROM dst EXCEPT SELECT * FROM src)"
        ).all()
        assert diff == []
        assert conn.exec_driver_sql("SELECT count(*) FROM dst").scalar_one() == 400 - 4 + 4
    assert services.pointer_show(project.ws, "sync")[0]["pointer"]["value"] == "2026-03-02T00:00:00"
    again = services.run(project.ws, "sync")["tasks"][0]
    assert (again["inserted"], again["updated"], again["deleted"]) == (0, 0, 0)
    engine.dispose()
