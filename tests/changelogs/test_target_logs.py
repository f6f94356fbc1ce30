"""A sync job with a target that also keeps its runs' changes as change logs (`change_log`
beside `target`): its own target and a writer following its change logs both end equal to the
source, round after round of inserts, updates and deletes; the logs are ordinary Parquet; and
kill -9 at each step of a commit (the log sealed, the target committed, the pointer and index
stored together) loses nothing and logs nothing twice."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from runner import services
from tests.changelogs.helpers import SYNC, change_shop, make_shop, rows, run, sqlite_url, writer
from tests.changelogs.test_kill import kill_at
from tests.conftest import PG_ADMIN, _fresh_database

TABLES = ("customers", "orders")
TEXT = ("name", "city", "note")
COLUMNS = {"customers": ("name", "city", "score"), "orders": ("customer", "total", "note")}


def _project(project, target_url: str, batch_size: int = 10_000):
    make_shop(project.root / "src.db", customers=40)
    project.connection("src", "sqlite", "sqlite:///src.db")
    project.connection("tgt", *target_url)
    project.connection("copy", "sqlite", "sqlite:///copy.db")
    project.write("jobs.d/sync.yaml", SYNC.format(target="tgt", batch_size=batch_size))
    project.write("jobs.d/w.yaml", writer("w", "copy", batch_size=7, job="sync"))
    services.apply(project.ws)
    return project


def _equal(project, *urls: str) -> None:
    src = sqlite_url(project.root / "src.db")
    for url in urls:
        for table in TABLES:
            assert rows(url, table) == rows(src, table), (url, table)


def _positions_once(project) -> None:
    """Each task's indexed change logs hold each position once, from 1 with no gap."""
    listed = services.changes(project.ws, "sync")["change_logs"]
    for task in TABLES:
        mine = sorted((e["first_position"], e["last_position"]) for e in listed if e["task"] == task)
        for (_, last), (first, _) in zip(mine, mine[1:], strict=False):
            assert first == last + 1, (task, mine)


@pytest.mark.parametrize("target", ["sqlite", "postgresql"])
def test_a_job_with_a_target_and_change_logs_feeds_a_writer_round_after_round(project, target, request):
    url = sqlite_url(project.root / "tgt.db") if target == "sqlite" else request.getfixturevalue("pg_url")
    _project(project, (target, "sqlite:///tgt.db" if target == "sqlite" else url))
    copy = sqlite_url(project.root / "copy.db")
    run(project.ws, "sync")
    run(project.ws, "w")
    _equal(project, url, copy)
    for round_ in (1, 2, 3, 4):
        change_shop(project.root / "src.db", round_)
        run(project.ws, "sync")
        if round_ != 2:  # the writer misses a round and catches up
            run(project.ws, "w")
            _equal(project, url, copy)
    listed = services.changes(project.ws, "sync")["change_logs"]
    last = [e for e in listed if e["task"] == "customers"][-1]
    table = pq.read_table(last["file"])  # an ordinary Parquet file
    assert table.schema.names == ["_op", "_position", "id", "name", "city", "score"]
    ops = table.column("_op").to_pylist()
    assert ops.count("delete") == last["deletes"] == 2 and ops.count("upsert") == last["upserts"]
    # keep_files: 2 once the writer applied them all
    assert all(sum(e["task"] == t for e in listed) <= 2 for t in TABLES)
    _positions_once(project)
    again = run(project.ws, "w")
    assert all(t["rows_read"] == 0 for t in again["tasks"])


@pytest.mark.parametrize("point", ["changelog_renamed", "target_committed", "committed", "stored"])
def test_a_job_with_a_target_killed_at_each_step_of_a_commit_logs_each_change_once(project, tmp_path, point):
    """`stored` is the writer's own checkpoint: the sync job's run goes through it only when
    killed at the others; here it means the writer killed after it stored its position."""
    _project(project, ("sqlite", "sqlite:///tgt.db"), batch_size=9)
    url, copy = sqlite_url(project.root / "tgt.db"), sqlite_url(project.root / "copy.db")
    run(project.ws, "sync")
    run(project.ws, "w")
    for round_ in (1, 2):
        change_shop(project.root / "src.db", round_)
        if point == "stored":
            run(project.ws, "sync")
            kill_at(project.root, "w", point, tmp_path)
        else:
            kill_at(project.root, "sync", point, tmp_path)  # mid-way: hash commits a chunk at a time
            run(project.ws, "w")  # applies only what is indexed
            run(project.ws, "sync")
        run(project.ws, "w")
        _equal(project, url, copy)
        _positions_once(project)
    folder = project.root / ".runner/changelogs/default/sync/customers"
    listed = {Path(e["file"]).name for e in services.changes(project.ws, "sync")["change_logs"]}
    assert {p.name for p in folder.iterdir()} <= listed  # what a kill left unindexed is swept


def test_a_watermark_job_with_a_target_logs_each_batch_with_its_pointer(project):
    make_shop(project.root / "src.db", customers=25)
    project.connection("src", "sqlite", "sqlite:///src.db")
    project.connection("tgt", "sqlite", "sqlite:///tgt.db")
    project.connection("copy", "sqlite", "sqlite:///copy.db")
    project.write(
        "jobs.d/sync.yaml",
        "apiVersion: runner/v1\nkind: Job\nmetadata: {name: sync}\nspec:\n  source: src\n  target: tgt\n"
        "  batch_size: 4\n  change_log: {}\n  tasks:\n"
        "    - {name: orders, read: {table: orders}, write: {table: orders, keys: [id]},"
        " changes: {strategy: watermark, column: id}}\n",
    )
    project.write("jobs.d/w.yaml", writer("w", "copy", tasks=("orders",), job="sync"))
    services.apply(project.ws)
    src, copy = sqlite_url(project.root / "src.db"), sqlite_url(project.root / "copy.db")
    first = run(project.ws, "sync")
    run(project.ws, "w")
    assert rows(copy, "orders") == rows(src, "orders") == rows(sqlite_url(project.root / "tgt.db"), "orders")
    db = sqlite3.connect(project.root / "src.db")
    db.executemany("INSERT INTO orders VALUES (?, 1, 7, 'late')", [(i,) for i in range(100, 110)])
    db.commit()
    db.close()
    run(project.ws, "sync")
    run(project.ws, "w")
    assert rows(copy, "orders") == rows(src, "orders")
    listed = services.changes(project.ws, "sync")["change_logs"]
    assert [e["rows"] for e in listed if e["run_id"] == first["run_id"]] == [50]  # 13 commits, one file
    # the ten new rows, and the row at the pointer, which a watermark reads again (its merge
    # finds it unchanged; a writer upserts it again, as it is)
    assert sum(e["rows"] for e in listed) == 61


@pytest.fixture
def pg_source_url() -> Iterator[str]:
    """A second fresh PostgreSQL database: the source of a PostgreSQL to PostgreSQL job."""
    yield from _fresh_database(
        "PostgreSQL",
        PG_ADMIN,
        'CREATE DATABASE "{name}"',
        'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
        isolation_level="AUTOCOMMIT",
    )


def _mirror(sqlite_path: Path, url: str) -> None:
    """The PostgreSQL source made to hold what the SQLite shop holds (its round of changes)."""
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    lite = sqlite3.connect(sqlite_path)
    try:
        with engine.begin() as conn:
            for table, columns in COLUMNS.items():
                typed = ", ".join(f"{c} {'text' if c in TEXT else 'integer'}" for c in columns)
                conn.exec_driver_sql(f"CREATE TABLE IF NOT EXISTS {table} (id integer PRIMARY KEY, {typed})")
                found = lite.execute(f"SELECT * FROM {table}").fetchall()
                keys = [r[0] for r in found]
                conn.execute(sa.text(f"DELETE FROM {table} WHERE NOT (id = ANY(:k))"), {"k": keys})
                update = ", ".join(f"{c} = excluded.{c}" for c in columns)
                upsert = f"INSERT INTO {table} VALUES (%s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET "
                conn.exec_driver_sql(upsert + update, found)
    finally:
        lite.close()
        engine.dispose()


def test_a_postgresql_to_postgresql_job_logs_its_changes_not_comparing_inside_the_target(
    project, pg_url, pg_source_url
):
    """PostgreSQL to PostgreSQL compares rows inside the target without digests or pointer
    (nothing for an index to ride on): a job keeping change logs compares by digests instead."""
    make_shop(project.root / "shop.db", customers=40)
    _mirror(project.root / "shop.db", pg_source_url)
    project.connection("src", "postgresql", pg_source_url)
    project.connection("tgt", "postgresql", pg_url)
    project.connection("copy", "sqlite", "sqlite:///copy.db")
    project.write("jobs.d/sync.yaml", SYNC.format(target="tgt", batch_size=10_000))
    project.write("jobs.d/w.yaml", writer("w", "copy", job="sync"))
    services.apply(project.ws)
    copy = sqlite_url(project.root / "copy.db")
    for round_ in (0, 1, 2):
        if round_:
            change_shop(project.root / "shop.db", round_)
            _mirror(project.root / "shop.db", pg_source_url)
        run(project.ws, "sync")
        run(project.ws, "w")
        for table in TABLES:
            assert rows(copy, table) == rows(pg_source_url, table) == rows(pg_url, table), table
    assert any(e["deletes"] for e in services.changes(project.ws, "sync")["change_logs"])
