"""A hash task's first load into an empty table between two dialects (PostgreSQL to MariaDB)
goes the way `full` goes (copied inside the databases), then records the source's digests
read in the snapshot the copy read; the next run applies exactly the changes since."""

from __future__ import annotations

from decimal import Decimal

import pytest
import sqlalchemy as sa

from runner import services
from runner.changes import task as changes
from runner.connectors.registry import open_connector
from runner.definitions.tasks import ReadSpec
from tests.engine.test_crash import kill_at
from tests.engine.test_fast_paths import messages

ROWS = 50_000


def rows_of(url: str, table: str) -> list[tuple]:
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(f"SELECT id, name, amount FROM {table} ORDER BY id").all()
    engine.dispose()
    return [(int(i), n, None if a is None else Decimal(a)) for i, n, a in rows]


def setup(project, pg_url: str, maria_url: str) -> sa.Engine:
    source = sa.create_engine(pg_url, poolclass=sa.NullPool)
    with source.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE src (id integer PRIMARY KEY, name text, amount numeric(12,2))")
        conn.exec_driver_sql(
            f"INSERT INTO src SELECT g, 'row ' || g, g / 7.0 FROM generate_series(1, {ROWS}) g"
        )
    project.connection("src", "postgresql", pg_url)
    project.connection("dst", "mariadb", maria_url)
    project.job(
        "sync",
        "src",
        "dst",
        """
        - name: t
          read: {table: src}
          write: {table: dst, keys: [id]}
          changes: {strategy: hash}
          deletes: propagate
        """,
        extra="  batch_size: 5000\n",
    )
    services.apply(project.ws)
    return source


def change(source: sa.Engine) -> None:
    with source.begin() as conn:
        conn.exec_driver_sql("UPDATE src SET name = 'changed' WHERE id IN (7, 20000, 49999)")
        conn.exec_driver_sql("DELETE FROM src WHERE id IN (1, 30000)")
        conn.exec_driver_sql("INSERT INTO src VALUES (60001, 'new', 1.5), (60002, NULL, NULL)")


def test_first_load_copied_then_changes_applied(project, pg_url, maria_url, monkeypatch):
    monkeypatch.setattr(changes, "NOTE_SECONDS", 0)  # every step of a long phase logs its progress
    source = setup(project, pg_url, maria_url)
    first = services.run(project.ws, "sync")
    assert first["status"] == "succeeded", first["error"]
    said = messages(project, first)
    assert "copied inside the databases, no row through Python" in said
    assert f"copying: {ROWS:,} rows so far" in said
    assert "reading the copied rows' digests" in said
    assert (
        "recording digests: 5,000 rows so far" in said and f"recording digests: {ROWS:,} rows so far" in said
    )
    assert "digests recorded" in said
    assert first["tasks"][0]["inserted"] == ROWS
    assert rows_of(maria_url, "dst") == rows_of(pg_url, "src")
    change(source)
    second = services.run(project.ws, "sync")
    assert second["status"] == "succeeded", second["error"]
    task = second["tasks"][0]
    assert (task["inserted"], task["updated"], task["deleted"]) == (2, 3, 2)
    assert task["unchanged"] == ROWS - 3 - 2
    assert rows_of(maria_url, "dst") == rows_of(pg_url, "src")


@pytest.mark.parametrize("point", ["read", "committed"])
def test_first_load_killed_then_rerun(project, pg_url, maria_url, tmp_path, point):
    """Killed before the copy commits, or after it and before the digests are recorded: the
    next run compares every key (the digests are marked pending) and the target ends equal."""
    source = setup(project, pg_url, maria_url)
    project.ws.close()
    kill_at(project, point, tmp_path)
    change(source)
    record = services.run(project.ws, "sync")
    assert record["status"] == "succeeded", record["error"]
    assert rows_of(maria_url, "dst") == rows_of(pg_url, "src")
    with source.begin() as conn:
        conn.exec_driver_sql("UPDATE src SET amount = 0 WHERE id = 100")
        conn.exec_driver_sql("DELETE FROM src WHERE id = 200")
    again = services.run(project.ws, "sync")
    assert again["status"] == "succeeded", again["error"]
    task = again["tasks"][0]
    assert (task["inserted"], task["updated"], task["deleted"]) == (0, 1, 1)
    assert rows_of(maria_url, "dst") == rows_of(pg_url, "src")


def test_reads_share_a_snapshot(pg_url, tmp_path):
    """Inside `snapshot`, every read of the connector sees the rows as they were when it
    began, even through connections opened after a change was committed."""
    engine = sa.create_engine(pg_url, poolclass=sa.NullPool)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE src (id integer PRIMARY KEY, name text)")
        conn.exec_driver_sql("INSERT INTO src VALUES (1, 'before')")
    connector = open_connector("src", {"type": "postgresql", "url": pg_url}, tmp_path)
    spec = ReadSpec(table="src")

    def names() -> list:
        stream = connector.read(spec, 10)
        return [row[1] for batch in stream.batches for row in batch]

    try:
        with connector.snapshot():
            with engine.begin() as conn:
                conn.exec_driver_sql("UPDATE src SET name = 'after'")
                conn.exec_driver_sql("INSERT INTO src VALUES (2, 'new')")
            assert names() == ["before"]
            assert names() == ["before"]  # a second connection too
        assert sorted(names()) == ["after", "new"]
    finally:
        connector.close()
    engine.dispose()
