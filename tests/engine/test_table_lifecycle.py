"""Table lifecycle on every target dialect: `before_run: truncate` and `recreate` before each
run (a watermark or hash task then reads everything), `runner run --recreate` once (CLI and
API), a kill between the drop and the load followed by a complete reload, and the job-wide
destination `schema` and `table_prefix`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from runner import services
from runner.changes.task import RunOptions
from runner.cli.app import app
from tests.conftest import REPO
from tests.engine.conftest import Database
from tests.engine.test_history_mode import SOURCE, delete, execute, upsert

WATERMARK = "{strategy: watermark, column: updated_at}"


def rows(db: Database, table: str) -> list[tuple]:
    return [tuple(r) for r in db.fetch(f"SELECT id, name, updated_at FROM {table} ORDER BY id")]


def columns(db: Database, table: str) -> list[str]:
    with db.cursor() as c:
        c.execute(f"SELECT * FROM {table} WHERE 1 = 0")
        names = [d[0] for d in c.description]
        c.fetchall()
    return names


def make_job(project, db: Database, changes: str = WATERMARK, task_extra: str = "", extra: str = "") -> None:
    project.connection("db", db.dialect, db.url)
    project.job(
        "sync",
        "db",
        "db",
        f"""
        - name: items
          read: {{table: items}}
          write: {{table: copy_items, keys: [id]}}
          changes: {changes}
          {task_extra}
        """,
        extra=extra,
    )
    services.apply(project.ws)


def succeeded(record: dict) -> dict:
    assert record["status"] == "succeeded", record["error"]
    return record["tasks"][0]


def task_state(project):
    (state,) = project.ws.store().tasks.states("default", "sync")
    return project.ws.store().tasks.state("default", "sync", state.task)


def test_truncate_before_each_run_reads_everything(project, target):
    """A watermark task that ignores deletes: emptied before each run and read whole (its
    pointer forgotten first), the target holds exactly the source every time."""
    execute(target, (SOURCE, ()))
    upsert(target, (1, "a", 1), (2, "b", 1), (3, "c", 1))
    make_job(project, target, extra="  before_run: truncate\n")
    task = succeeded(services.run(project.ws, "sync"))
    assert (task["before_run"], task["inserted"]) == ("truncate", 3)
    delete(target, 2)  # deletes: ignore would keep it; the truncate does not
    task = succeeded(services.run(project.ws, "sync"))
    assert (task["before_run"], task["rows_read"], task["inserted"]) == ("truncate", 2, 2)
    assert task["pointer_before"] is None  # read from the start
    assert rows(target, "copy_items") == rows(target, "items")
    state = task_state(project)
    assert state.reload_pending is None and state.pointer is not None


def test_recreate_before_each_run_drops_the_table(project, target):
    execute(target, (SOURCE, ()))
    upsert(target, (1, "a", 1), (2, "b", 1))
    make_job(project, target, "{strategy: hash}", task_extra="before_run: recreate")
    succeeded(services.run(project.ws, "sync"))
    execute(target, ("ALTER TABLE copy_items ADD COLUMN by_hand INTEGER", ()))
    upsert(target, (2, "b2", 2))
    task = succeeded(services.run(project.ws, "sync"))
    assert (task["before_run"], task["inserted"], task["updated"]) == ("recreate", 2, 0)  # read whole
    assert "by_hand" not in columns(target, "copy_items")
    assert rows(target, "copy_items") == rows(target, "items")


def test_recreate_once_from_the_cli(project, make_database, monkeypatch):
    db = make_database("sqlite", "db")
    execute(db, (SOURCE, ()))
    upsert(db, (1, "a", 1))
    make_job(project, db)
    succeeded(services.run(project.ws, "sync"))
    execute(db, ("ALTER TABLE copy_items ADD COLUMN by_hand INTEGER", ()))
    monkeypatch.chdir(project.root)
    result = CliRunner().invoke(app, ["--dir", str(project.root), "run", "sync", "--recreate", "-f", "json"])
    assert result.exit_code == 0, result.output
    assert '"before_run": "recreate"' in result.output and '"recreate": true' in result.output
    assert "by_hand" not in columns(db, "copy_items")
    assert rows(db, "copy_items") == [(1, "a", 1)]
    task = succeeded(services.run(project.ws, "sync"))  # once: the next run keeps the table
    assert task["before_run"] is None and task["rows_read"] == 1  # and reads from its pointer
    help_text = CliRunner().invoke(app, ["run", "--help"]).output
    assert "--recreate" in help_text


def test_recreate_with_a_dry_run_changes_nothing(project, make_database):
    db = make_database("sqlite", "db")
    execute(db, (SOURCE, ()))
    upsert(db, (1, "a", 1))
    make_job(project, db)
    succeeded(services.run(project.ws, "sync"))
    execute(db, ("ALTER TABLE copy_items ADD COLUMN by_hand INTEGER", ()))
    record = services.run(project.ws, "sync", RunOptions(recreate=True, dry_run=True))
    assert succeeded(record)["before_run"] is None
    assert "by_hand" in columns(db, "copy_items")
    assert task_state(project).pointer is not None


def kill_after_drop(project, tmp_path: Path, *args: str) -> None:
    """`runner run sync ARGS` killed (SIGKILL) right after a task's table was emptied or dropped."""
    flag = tmp_path / "paused"
    flag.unlink(missing_ok=True)
    env = {
        **os.environ,
        "RUNNER_PAUSE_AT": "emptied",
        "RUNNER_PAUSE_FILE": str(flag),
        "PYTHONPATH": str(REPO),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", "--dir", str(project.root), "run", "sync", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while not flag.exists():
        if proc.poll() is not None:
            pytest.fail(f"the run ended before the drop: {proc.stderr.read().decode()}")  # type: ignore[union-attr]
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the run never dropped the table")
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()  # type: ignore[union-attr]


@pytest.mark.parametrize("how", ["--recreate", "truncate"])
def test_a_kill_after_the_drop_is_followed_by_a_complete_reload(project, target, tmp_path, how):
    """Killed between the drop (or truncate) and the load, the table is empty or gone; the next
    plain run, whatever its options, does it again and reads everything (the pointer of the
    run before would have said the table was complete)."""
    execute(target, (SOURCE, ()))
    upsert(target, *[(i, f"row {i}", 1) for i in range(1, 11)])
    make_job(project, target, task_extra=f"before_run: {how}" if how == "truncate" else "")
    succeeded(services.run(project.ws, "sync"))
    assert task_state(project).pointer is not None
    project.ws.close()
    if how == "truncate":
        kill_after_drop(project, tmp_path)
        make_job(project, target)  # the job no longer truncates: the pending reload still does
    else:
        kill_after_drop(project, tmp_path, "--recreate")
    state = task_state(project)
    assert (
        state.reload_pending == ("recreate" if how == "--recreate" else "truncate") and state.pointer is None
    )
    record = services.run(project.ws, "sync")
    task = succeeded(record)
    assert task["before_run"] == state.reload_pending and task["rows_read"] == 10
    assert rows(target, "copy_items") == rows(target, "items")
    assert task_state(project).reload_pending is None
    log = services.log_since(project.ws, record["run_id"], level="warning")["lines"]
    assert any("a run stopped before loading the table" in line["message"] for line in log)


def test_job_wide_schema_and_prefix(project, target):
    if target.dialect == "postgresql":
        schema, own = "dw", "public"
    elif target.dialect == "mariadb":
        schema = own = sa.make_url(target.url).database  # a MariaDB schema is a database
    else:
        schema = own = "main"  # a SQLite schema is an attached file
    execute(target, (SOURCE, ()))
    upsert(target, (1, "a", 1))
    project.connection("db", target.dialect, target.url)
    project.job(
        "sync",
        "db",
        "db",
        f"""
        - {{name: plain, read: {{table: items}}, write: {{table: items, keys: [id]}}}}
        - {{name: own, read: {{table: items}}, write: {{table: {own}.mine, keys: [id]}}}}
        """,
        extra=f"  schema: {schema}\n  table_prefix: stg_\n",
    )
    services.apply(project.ws)
    record = services.run(project.ws, "sync")
    assert record["status"] == "succeeded", record["error"]
    assert [t["target"] for t in record["tasks"]] == [f"{schema}.stg_items", f"{own}.stg_mine"]
    assert rows(target, f"{schema}.stg_items") == rows(target, f"{own}.stg_mine") == [(1, "a", 1)]


def warnings_of(project, record: dict) -> list[str]:
    return [e["message"] for e in services.logs(project.ws, record["run_id"]) if e["level"] == "warning"]


@pytest.mark.parametrize("changes", [WATERMARK, "{strategy: hash}"])
def test_a_target_table_dropped_by_hand_is_loaded_whole_again(project, target, changes):
    """A watermark or hash task whose target table was dropped by hand, or whose write.table
    now names a new one, would create it and write only what changed since its last run: the
    pointer and digests are forgotten and every row is read (as --resync), saying so; a dry run
    counts it so and forgets nothing."""
    execute(target, (SOURCE, ()))
    upsert(target, (1, "a", 1), (2, "b", 1), (3, "c", 1))
    make_job(project, target, changes, task_extra="deletes: propagate")
    succeeded(services.run(project.ws, "sync"))
    execute(target, ("DROP TABLE copy_items", ()))
    upsert(target, (2, "b2", 2))
    dry = services.run(project.ws, "sync", RunOptions(dry_run=True))
    assert (succeeded(dry)["rows_read"], succeeded(dry)["inserted"]) == (3, 3)
    assert task_state(project).pointer is not None or "hash" in changes  # nothing forgotten
    record = services.run(project.ws, "sync")
    assert (succeeded(record)["rows_read"], succeeded(record)["inserted"]) == (3, 3)
    assert rows(target, "copy_items") == rows(target, "items")
    # PostgreSQL to PostgreSQL, a hash task compares with the target itself: it keeps nothing
    remembers = not (target.dialect == "postgresql" and "hash" in changes)
    assert warnings_of(project, record) == remembers * [
        "the target table copy_items is not there (dropped, or write.table names a new one): the "
        "task's pointer and digests would leave it without the rows read before; every row is read "
        "(as with --resync)"
    ]
    upsert(target, (3, "c2", 3))
    task = succeeded(services.run(project.ws, "sync"))  # incremental again
    assert (task["inserted"], task["updated"]) == (0, 1)
    assert task["rows_read"] == (3 if "hash" in changes else 2)  # from the pointer on
    assert rows(target, "copy_items") == rows(target, "items")

    project.job(  # the same task into a new table
        "sync",
        "db",
        "db",
        f"- {{name: items, read: {{table: items}}, write: {{table: items_copy, keys: [id]}}, "
        f"changes: {changes}, deletes: propagate}}",
    )
    services.apply(project.ws)
    task = succeeded(services.run(project.ws, "sync"))
    assert (task["rows_read"], task["inserted"]) == (3, 3)
    assert rows(target, "items_copy") == rows(target, "items")
