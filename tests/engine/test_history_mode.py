"""History mode (`write.history`, SCD type 2) on every target dialect and with every change
strategy: an update closes the current version and opens one, a delete closes it, an unchanged
row is untouched, and each run's versions start (and end) at the run's one timestamp. A run
killed after a commit and run again opens no duplicate version."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from runner import services
from runner.changes.task import RunOptions
from tests.engine.conftest import Database
from tests.engine.test_crash import kill_at

SOURCE = "CREATE TABLE items (id INTEGER PRIMARY KEY, name VARCHAR(20), updated_at INTEGER)"
CHANGES = {
    "full": "{strategy: full}",
    "watermark": "{strategy: watermark, column: updated_at}",
    "hash": "{strategy: hash}",
}


def execute(db: Database, *statements: tuple[str, tuple]) -> None:
    with db.cursor() as c:
        for sql, params in statements:
            c.execute(sql.replace("?", db.mark), params) if params else c.execute(sql)


def upsert(db: Database, *rows: tuple[int, str, int]) -> None:
    execute(db, *((("DELETE FROM items WHERE id = ?"), (r[0],)) for r in rows))
    execute(db, *(("INSERT INTO items VALUES (?, ?, ?)", r) for r in rows))


def delete(db: Database, *ids: int) -> None:
    execute(db, *(("DELETE FROM items WHERE id = ?", (i,)) for i in ids))


def stamp(value: Any) -> dt.datetime | None:
    if value is None or isinstance(value, dt.datetime):
        return value
    return dt.datetime.fromisoformat(value)


def versions(db: Database, table: str = "dim_items") -> list[tuple]:
    """(id, name, valid_from, valid_to, current) of every version, in key and time order."""
    rows = db.fetch(
        f"SELECT id, name, _valid_from, _valid_to, _current FROM {table} ORDER BY id, _valid_from"
    )
    return [(i, n, stamp(f), stamp(t), bool(c)) for i, n, f, t, c in rows]


def run(project) -> tuple[dict[str, Any], dt.datetime]:
    record = services.run(project.ws, "sync")
    assert record["status"] == "succeeded", record["error"]
    task = record["tasks"][0]
    return task, dt.datetime.fromisoformat(task["valid_from"])


def counts(task: dict[str, Any]) -> tuple[int, int, int, int]:
    return task["inserted"], task["updated"], task["deleted"], task["unchanged"]


def history_job(
    project, db: Database, strategy: str, history: str = "true", extra: str = "", into: Database | None = None
) -> None:
    project.connection("db", db.dialect, db.url)
    if into is not None:
        project.connection("dst", into.dialect, into.url)
    project.job(
        "sync",
        "db",
        "dst" if into is not None else "db",
        f"""
        - name: items
          read: {{table: items}}
          write: {{table: dim_items, keys: [id], history: {history}}}
          changes: {CHANGES[strategy]}
          deletes: propagate
        """,
        extra=extra,
    )
    services.apply(project.ws)


@pytest.mark.parametrize("strategy", ["full", "watermark", "hash"])
def test_every_version_is_kept_over_three_rounds(project, target, strategy):
    execute(target, (SOURCE, ()))
    upsert(target, (1, "a", 1), (2, "b", 1), (3, "c", 1), (4, "d", 1))
    history_job(project, target, strategy)

    task, t1 = run(project)  # round 1: four new rows
    assert counts(task) == (4, 0, 0, 0)
    assert versions(target) == [(i, n, t1, None, True) for i, n in enumerate("abcd", 1)]

    upsert(target, (2, "b2", 2), (5, "e", 2))  # round 2: an update, an insert, a delete
    delete(target, 3)
    task, t2 = run(project)
    assert t2 > t1
    assert counts(task) == (1, 1, 1, 2)
    if strategy == "hash" and target.dialect == "postgresql":  # compared inside the target
        run_id = services.runs(project.ws, "sync")[0]["run_id"]
        lines = services.log_since(project.ws, run_id)["lines"]
        assert any(line["message"] == "rows compared inside the target" for line in lines)
    assert versions(target) == [
        (1, "a", t1, None, True),
        (2, "b", t1, t2, False),
        (2, "b2", t2, None, True),
        (3, "c", t1, t2, False),
        (4, "d", t1, None, True),
        (5, "e", t2, None, True),
    ]

    upsert(target, (2, "b3", 3), (3, "c again", 3))  # round 3: updated again, a key back
    delete(target, 4)
    task, t3 = run(project)
    assert counts(task)[:3] == (1, 1, 1)  # unchanged: a watermark reads only rows at its pointer
    assert versions(target) == [
        (1, "a", t1, None, True),
        (2, "b", t1, t2, False),
        (2, "b2", t2, t3, False),
        (2, "b3", t3, None, True),
        (3, "c", t1, t2, False),
        (3, "c again", t3, None, True),
        (4, "d", t1, t3, False),
        (5, "e", t2, None, True),
    ]

    before = versions(target)
    task, _ = run(project)  # nothing changed: nothing written
    assert counts(task)[:3] == (0, 0, 0)
    assert versions(target) == before


def test_column_names_are_configurable(project, make_database):
    db = make_database("sqlite", "db")
    execute(db, (SOURCE, ()))
    upsert(db, (1, "a", 1))
    history_job(project, db, "full", "{valid_from: since, valid_to: until, current: is_current}")
    run(project)
    upsert(db, (1, "b", 2))
    _, t2 = run(project)
    rows = db.fetch("SELECT id, name, until IS NULL, is_current FROM dim_items ORDER BY since")
    assert rows == [(1, "a", 0, 0), (1, "b", 1, 1)]
    assert db.fetch("SELECT count(*) FROM dim_items WHERE since = until")[0][0] == 0


def test_a_table_made_without_history_is_refused(project, make_database):
    db = make_database("sqlite", "db")
    execute(
        db, (SOURCE, ()), ("CREATE TABLE dim_items (id INTEGER PRIMARY KEY, name TEXT, updated_at INT)", ())
    )
    upsert(db, (1, "a", 1))
    history_job(project, db, "full")
    record = services.run(project.ws, "sync")
    assert record["status"] == "failed"
    assert "has no column '_valid_from', '_valid_to', '_current'" in record["error"]
    assert "--recreate" in record["error"]
    record = services.run(project.ws, "sync", RunOptions(recreate=True))  # starts its history afresh
    assert record["status"] == "succeeded", record["error"]
    assert record["tasks"][0]["before_run"] == "recreate"
    assert [v[:2] + v[3:] for v in versions(db)] == [(1, "a", None, True)]


@pytest.mark.parametrize("strategy", ["watermark", "hash"])
def test_a_run_killed_after_a_commit_opens_no_duplicate_version(
    project, tmp_path, make_database, target, strategy
):
    db, dst = make_database("sqlite", "db"), target  # a SQLite source file apart from the target's
    execute(db, (SOURCE, ()))
    upsert(db, *[(i, f"row {i}", 1) for i in range(1, 21)])
    history_job(project, db, strategy, extra="  batch_size: 3\n", into=dst)
    run(project)
    upsert(db, *[(i, f"new {i}", 2) for i in range(1, 21)])  # every row changed
    project.ws.close()
    kill_at(project, "committed", tmp_path)  # one batch closed and opened, then killed
    task, t3 = run(project)
    rows = versions(dst)
    current = [r for r in rows if r[4]]
    assert [(r[0], r[1]) for r in current] == [(i, f"new {i}") for i in range(1, 21)]
    assert len(rows) == 40  # one old and one new version a key, none twice
    assert all(r[3] is None for r in current)
    assert sum(1 for r in rows if r[2] == t3) < 20  # the killed run's versions were kept, not redone


def test_the_demo_keeps_customer_history(demo_project, monkeypatch):
    """jobs.d/customer-history.yaml on the bundled demo: every customer once, then a move to
    another city closes a version and opens one; `runner tasks` shows history mode."""
    import sqlite3

    from typer.testing import CliRunner

    from runner.cli.app import app

    monkeypatch.chdir(demo_project.root)
    cli, base = CliRunner(), ["--dir", str(demo_project.root)]
    assert cli.invoke(app, [*base, "apply"]).exit_code == 0
    first = cli.invoke(app, [*base, "run", "customer-history"])
    assert first.exit_code == 0, first.stdout
    assert "in hist_customers" in first.stdout and "history: versions from " in first.stdout
    shop = sqlite3.connect(demo_project.root / "demo" / "data" / "shop.db")
    customers = shop.execute("SELECT count(*) FROM customers").fetchone()[0]
    with shop:
        shop.execute("UPDATE customers SET city = 'Elsewhere' WHERE id = 7")
    assert cli.invoke(app, [*base, "run", "customer-history"]).exit_code == 0
    warehouse = sqlite3.connect(demo_project.root / "demo" / "data" / "warehouse.db")
    assert warehouse.execute("SELECT count(*), sum(_current) FROM hist_customers").fetchone() == (
        customers + 1,
        customers,
    )
    assert warehouse.execute(
        "SELECT city = 'Elsewhere', _current, _valid_to IS NULL FROM hist_customers WHERE id = 7 "
        "ORDER BY _valid_from"
    ).fetchall() == [(0, 0, 0), (1, 1, 1)]
    tasks = cli.invoke(app, [*base, "tasks", "customer-history"])
    assert "hash, deletes propagate, history" in tasks.stdout


def test_a_source_column_named_like_a_history_column_is_refused_before_writing(project, make_database):
    db = make_database("sqlite", "db")
    execute(db, ("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, _current INT)", ()))
    history_job(project, db, "full")
    record = services.run(project.ws, "sync")
    assert record["status"] == "failed"
    assert "spec.tasks[0].write.history: column '_current' is one of the source's columns" in record["error"]
    assert db.fetch("SELECT name FROM sqlite_master WHERE name = 'dim_items'") == []
