"""Operating cdc tasks: `runner status` shows each one's lag as its last run measured it,
loudly past `changes.max_lag`; `runner tasks` asks the source for the lag now."""

from __future__ import annotations

from typer.testing import CliRunner

from runner import services
from runner.cli.app import app
from tests.cdc.test_postgresql_cdc import create_items, execute, run_ok, setup_project, source_engine


def test_status_and_tasks_show_the_lag_and_warn_past_max_lag(project, cdc_url, pg_url):
    engine = source_engine(cdc_url)
    create_items(engine, 5)
    setup_project(project, cdc_url, pg_url, extra=", max_lag: 1")  # one byte: always past it
    record = services.run(project.ws, "sync")
    assert record["status"] == "succeeded", record["error"]
    log = services.logs(project.ws, record["run_id"])
    (warning,) = [e for e in log if e.get("level") == "warning"]
    assert warning["message"].startswith("LAG: the source keeps ")
    assert "past changes.max_lag (1)" in warning["message"]

    (job,) = services.status(project.ws)["jobs"]
    (lag,) = job["cdc_lag"]
    assert lag["task"] == "items" and lag["over_max_lag"] and lag["retained_bytes"] > 1
    assert lag["slot"].startswith("runner_sync_items_")

    runner = CliRunner()
    shown = runner.invoke(app, ["--dir", str(project.root), "status"])
    assert shown.exit_code == 0, shown.output
    assert "warning: job default/sync, task 'items': the source keeps" in shown.output
    assert "past max_lag 1 bytes" in shown.output

    execute(engine, "INSERT INTO items SELECT g, 'more', g, NULL, NULL FROM generate_series(100, 200) g")
    (task,) = services.tasks(project.ws, "sync")
    assert task["lag"]["exists"] and task["lag"]["lag_bytes"] > 0  # asked of the source now
    assert 0 <= task["lag"]["lag_seconds"] < 600  # the insert's commit, a moment ago
    tasks = runner.invoke(app, ["--dir", str(project.root), "tasks", "sync", "--format", "json"])
    assert tasks.exit_code == 0 and '"lag_bytes"' in tasks.output
    text = runner.invoke(app, ["--dir", str(project.root), "tasks", "sync"], env={"COLUMNS": "250"})
    assert "(lsn), LAG PAST max_lag 1 bytes: lag " in text.output, text.output
    assert "oldest change not applied" in text.output
    run_ok(project)
    (task,) = services.tasks(project.ws, "sync")
    assert task["lag"]["lag_bytes"] < 1024  # caught up (the log moves on by a few records)
    assert task["lag"]["lag_seconds"] == 0  # nothing of the table's pending


def test_connections_test_checks_the_log_settings(project, cdc_url, pg_url):
    """The shared server runs wal_level=replica: its test says what to change; the private one passes."""
    project.connection("src", "postgresql", cdc_url)
    project.connection("shared", "postgresql", pg_url)
    for name in ("src", "shared"):
        project.job(
            f"from-{name}",
            name,
            "shared",
            "- {name: items, read: {table: items}, write: {table: items, keys: [id]}, "
            "changes: {strategy: cdc}}",
        )
    results = {r["connection"]: r for r in services.connections_test(project.ws)}
    (log,) = [c for c in results["default/src"]["checks"] if c["check"] == "log"]
    assert log["ok"] is True
    (log,) = [c for c in results["default/shared"]["checks"] if c["check"] == "log"]
    assert log["ok"] is False and "wal_level is 'replica'; set it to 'logical'" in log["detail"]


def test_a_quiet_table_lets_its_slot_move_on_past_other_tables_changes(project, cdc_url, pg_url):
    """The position passes other tables' changes too: a slot that moved only with its own
    table's changes would keep the whole server's log while the table is quiet."""
    engine = source_engine(cdc_url)
    create_items(engine, 5)
    execute(engine, "CREATE TABLE noise (id int PRIMARY KEY, payload text)")
    setup_project(project, cdc_url, pg_url)
    run_ok(project)
    execute(engine, "INSERT INTO noise SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g")
    before = services.tasks(project.ws, "sync")[0]["lag"]["lag_bytes"]
    assert before > 4_000_000  # the other table's rows are in the log behind the slot
    task = run_ok(project)
    assert task["rows_read"] == 0
    assert services.tasks(project.ws, "sync")[0]["lag"]["lag_bytes"] < 100_000
