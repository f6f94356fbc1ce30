"""`runner run`: history files, failures, the per-job lock, and the bundled demo end to end."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading

import pytest
from typer.testing import CliRunner

from runner import services
from runner.cli.app import app
from runner.errors import JobBusy, NotFound
from runner.state import locks
from tests.conftest import REPO


def make_source(path, rows: int = 25) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE items (id INTEGER, name TEXT, price NUMERIC(8,2))")
    db.executemany("INSERT INTO items VALUES (?,?,?)", [(i, f"item {i}", f"{i}.50") for i in range(rows)])
    db.commit()
    db.close()


@pytest.fixture
def sqlite_job(project):
    make_source(project.root / "src.db")
    project.connection("src", "sqlite", "sqlite:///src.db")
    project.connection("dst", "sqlite", "sqlite:///out/dst.db")
    project.job(
        "copy",
        "src",
        "dst",
        """
        - {name: items, read: {table: items}, write: {table: items}}
        - {name: missing, read: {table: nope}, write: {table: nope}}
        - {name: later, read: {query: "SELECT count(*) AS n FROM items"}, write: {table: counts}}
        """,
        extra="  batch_size: 10\n",
    )
    services.apply(project.ws)
    return project


def test_history_file_records_every_task(sqlite_job):
    record = services.run(sqlite_job.ws, "copy")
    path = sqlite_job.ws.history / "default" / "copy" / f"{record['run_id']}.json"
    assert record["path"] == str(path)
    on_disk = json.loads(path.read_text())
    assert on_disk["status"] == "failed" and on_disk["revision"] == 1
    assert on_disk["job"] == "copy" and on_disk["namespace"] == "default"
    assert on_disk["source"] == "default/src" and on_disk["target"] == "default/dst"
    assert on_disk["started_at"] < on_disk["finished_at"] and on_disk["seconds"] >= 0
    assert on_disk["error"] == "task missing: table 'nope' not found (connection 'default/src')"
    tasks = {t["name"]: t for t in on_disk["tasks"]}
    assert (tasks["items"]["status"], tasks["items"]["rows_read"], tasks["items"]["rows_written"]) == (
        "succeeded",
        25,
        25,
    )
    assert tasks["items"]["columns"] == [
        {"name": "id", "type": "bigint"},  # a SQLite INTEGER holds 64 bits
        {"name": "name", "type": "text"},
        {"name": "price", "type": "decimal(8,2)"},
    ]
    assert tasks["missing"]["status"] == "failed"
    assert tasks["later"]["status"] == "skipped" and tasks["later"]["rows_read"] == 0
    assert (on_disk["rows_read"], on_disk["rows_written"]) == (25, 25)
    # the first task committed; its table holds exactly the source rows
    db = sqlite3.connect(sqlite_job.root / "out" / "dst.db")
    assert db.execute("SELECT count(*), sum(price) FROM items").fetchone() == (25, 312.5)
    db.close()


def test_successful_run_and_rerun_replace_without_duplicates(sqlite_job):
    sqlite_job.job(
        "copy",
        "src",
        "dst",
        """
        - {name: items, read: {table: items}, write: {table: items}}
        - name: counts
          read: {query: "SELECT count(*) AS n, max(name) AS top FROM items"}
          write: {table: counts}
        """,
        extra="  batch_size: 10\n",
    )
    services.apply(sqlite_job.ws)
    for _ in range(2):
        record = services.run(sqlite_job.ws, "copy")
        assert record["status"] == "succeeded" and record["error"] is None
    db = sqlite3.connect(sqlite_job.root / "out" / "dst.db")
    assert db.execute("SELECT count(*) FROM items").fetchone() == (25,)
    assert db.execute("SELECT n, top FROM counts").fetchall() == [(25, "item 9")]
    db.close()
    runs = services.runs(sqlite_job.ws, "copy")
    assert [r["status"] for r in runs] == ["succeeded", "succeeded"]
    assert runs[0]["run_id"] > runs[1]["run_id"]  # newest first


def test_a_handed_out_run_waits_for_the_lock_its_previous_run_is_releasing(sqlite_job):
    """A scheduler hands out a job's next run to a worker (`once`) as soon as the previous run's
    record says it ended, which that run writes just before it releases the job's lock: started
    at once on another worker, the next run found the lock held and was recorded `not_started`
    (a cron slot lost, seen in CI after a broker restart). It now waits for the lock a while."""
    store = sqlite_job.ws.store()
    name = locks.job_lock("default/copy")
    lock_id = store.locks.acquire(name, timeout=0)
    releasing = threading.Timer(0.5, store.locks.release, (name, lock_id))
    releasing.start()
    try:
        record = services.run(sqlite_job.ws, "copy", once=True)
    finally:
        releasing.join()
    assert record["tasks"][0]["name"] == "items" and record["tasks"][0]["status"] == "succeeded"
    db = sqlite3.connect(sqlite_job.root / "out" / "dst.db")
    assert db.execute("SELECT count(*) FROM items").fetchone() == (25,)
    db.close()


def test_a_running_job_is_not_started_twice(sqlite_job):
    store = sqlite_job.ws.store()
    lock_id = store.locks.acquire(locks.job_lock("default/copy"), timeout=0)
    with pytest.raises(JobBusy, match="job default/copy is already running"):
        services.run(sqlite_job.ws, "copy")
    store.locks.release(locks.job_lock("default/copy"), lock_id)
    assert (
        not list((sqlite_job.ws.history / "default" / "copy").glob("*.json"))
        if (sqlite_job.ws.history / "default" / "copy").exists()
        else True
    )


def test_run_of_a_job_that_is_not_applied(sqlite_job):
    with pytest.raises(NotFound, match="run `runner apply` first"):
        services.run(sqlite_job.ws, "ghost")


def test_cli_run_exit_code_and_history_table(sqlite_job, monkeypatch):
    monkeypatch.chdir(sqlite_job.root)
    cli = CliRunner()
    result = cli.invoke(app, ["--dir", str(sqlite_job.root), "run", "copy"])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith("run ") and ": failed in " in lines[0]
    assert lines[1].startswith(
        "  task items (full): succeeded, 25 rows read → 25 inserted, 0 updated, 0 deleted, 0 unchanged "
        "in items"
    )
    assert lines[-1].startswith("history: ")
    table = cli.invoke(app, ["--dir", str(sqlite_job.root), "history", "copy"])
    assert table.exit_code == 0 and "failed" in table.stdout
    as_json = json.loads(
        cli.invoke(app, ["--dir", str(sqlite_job.root), "history", "copy", "-f", "json"]).stdout
    )
    assert len(as_json) == 1 and as_json[0]["tasks"][0]["rows_written"] == 25


def test_demo_job_copies_every_row(demo_project, monkeypatch):
    """What `make demo` does, on a copy of the bundled definitions."""
    monkeypatch.chdir(demo_project.root)
    cli = CliRunner()
    base = ["--dir", str(demo_project.root)]
    assert cli.invoke(app, [*base, "validate"]).exit_code == 0
    assert cli.invoke(app, [*base, "apply"]).exit_code == 0
    result = cli.invoke(app, [*base, "run", "shop-to-warehouse"])
    assert result.exit_code == 0, result.stdout
    src = sqlite3.connect(demo_project.root / "demo" / "data" / "shop.db")
    dst = sqlite3.connect(demo_project.root / "demo" / "data" / "warehouse.db")
    for table, columns in (
        ("customers", "id, name, city, vip, created_at"),
        ("orders", "id, customer_id, status, amount, note, ordered_at, updated_at"),
    ):
        query = f"SELECT {columns} FROM {table} ORDER BY id"
        assert src.execute(query).fetchall() == dst.execute(query).fetchall()
    assert dst.execute("SELECT count(*) FROM orders WHERE _deleted_at IS NOT NULL").fetchone() == (0,)
    assert dst.execute("SELECT count(*) FROM daily_revenue").fetchone()[0] > 300
    assert cli.invoke(app, [*base, "run", "customer-stats"]).exit_code == 0  # the job that follows it
    assert (
        dst.execute("SELECT count(*), sum(orders) FROM customer_stats").fetchone()
        == dst.execute(
            "SELECT count(DISTINCT customer_id), count(*) FROM orders WHERE status <> 'returned'"
        ).fetchone()
    )
    # the sync_all job: every shop table as raw_*, each by the rule (hash by key, watermark on updated_at)
    result = cli.invoke(app, [*base, "run", "shop-snapshot"])
    assert result.exit_code == 0, result.stdout
    assert "task customers (hash): succeeded" in result.stdout
    assert "task orders (watermark): succeeded" in result.stdout
    for table in ("customers", "orders"):
        query = "SELECT * FROM {} ORDER BY id"
        assert (
            src.execute(query.format(table)).fetchall()
            == dst.execute(query.format(f"raw_{table}")).fetchall()
        )


def test_demo_source_script_is_deterministic(tmp_path):
    for name in ("a.db", "b.db"):
        subprocess.run(
            [sys.executable, str(REPO / "demo" / "make_source.py"), str(tmp_path / name), "500"],
            check=True,
            capture_output=True,
        )
    a, b = (sqlite3.connect(tmp_path / n) for n in ("a.db", "b.db"))
    assert a.execute("SELECT * FROM orders").fetchall() == b.execute("SELECT * FROM orders").fetchall()


def test_missing_sqlite_source_file_is_an_error_and_is_not_created(project):
    project.connection("src", "sqlite", "sqlite:///typo/sorce.db")
    project.connection("dst", "sqlite", "sqlite:///out/dst.db")
    project.job("copy", "src", "dst", "- {name: t, read: {table: a}, write: {table: b}}")
    services.apply(project.ws)
    record = services.run(project.ws, "copy")
    assert record["status"] == "failed" and "sorce.db does not exist" in record["error"]
    assert not (project.root / "typo").exists()


def test_debug_shows_where_a_task_failed(sqlite_job, monkeypatch):
    monkeypatch.chdir(sqlite_job.root)
    cli = CliRunner()
    plain = cli.invoke(app, ["--dir", str(sqlite_job.root), "run", "copy"])
    assert plain.exit_code == 1 and "Traceback" not in plain.stderr and "task traceback" not in plain.stderr
    debug = cli.invoke(app, ["--debug", "--dir", str(sqlite_job.root), "run", "copy"])
    assert debug.exit_code == 1
    shown = debug.stderr.split("task missing:\n", 1)[1]
    assert shown.startswith("Traceback (most recent call last):")
    assert "table 'nope' not found" in shown and "runner/connectors/" in shown
    # and the run log keeps it, at debug level, for a run started elsewhere (the daemon, the API)
    log = services.log_since(sqlite_job.ws, services.runs(sqlite_job.ws, "copy")[0]["run_id"], level="debug")
    (entry,) = [e for e in log["lines"] if e["message"] == "task traceback"]
    assert entry["level"] == "debug" and entry["task"] == "missing"


def test_cli_state_url_error_is_a_message_not_a_traceback(project):
    result = CliRunner().invoke(app, ["--dir", str(project.root), "--state", "foo", "get", "jobs"])
    assert result.exit_code == 1 and result.stderr.startswith("error: the state store URL cannot be parsed")
