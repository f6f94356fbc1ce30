"""Tasks switched off (`active: false`, CData's Is_Active): defined, kept with their pointer, and
skipped by every run; `--task` refuses them; plan, describe, tasks, status and the API show them."""

from __future__ import annotations

import json
import sqlite3

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from runner import services
from runner.api.app import create_app
from runner.cli.app import app
from runner.daemon.logs import DaemonLog
from runner.daemon.main import Daemon, DaemonOptions
from runner.errors import InvalidValue

TASKS = """
- {name: items, read: {table: items}, write: {table: items, keys: [id]},
   changes: {strategy: watermark, column: id}}
- {name: copy, read: {table: items}, write: {table: items_copy}}
"""


def make_source(path, rows: range) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT)")
    db.executemany("INSERT INTO items VALUES (?, ?)", [(i, f"item {i}") for i in rows])
    db.commit()
    db.close()


def rows(path, table: str) -> int:
    db = sqlite3.connect(path)
    try:
        return db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        db.close()


def tables(path) -> set[str]:
    db = sqlite3.connect(path)
    try:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        db.close()


@pytest.fixture
def job(project):
    make_source(project.root / "src.db", range(10))
    project.connection("src", "sqlite", "sqlite:///src.db")
    project.connection("dst", "sqlite", "sqlite:///dst.db")
    project.job("copy", "src", "dst", TASKS)
    services.apply(project.ws)
    return project


def switch(project, task: str, active: bool) -> None:
    text = TASKS.replace(f"{{name: {task}, ", f"{{name: {task}, active: {str(active).lower()}, ")
    project.job("copy", "src", "dst", text)
    services.apply(project.ws)


def test_an_inactive_task_is_skipped_and_keeps_its_pointer(job):
    first = services.run(job.ws, "copy")
    assert first["status"] == "succeeded" and rows(job.root / "dst.db", "items") == 10
    switch(job, "items", False)
    make_source(job.root / "src.db", range(10, 15))
    record = services.run(job.ws, "copy")
    assert record["status"] == "succeeded"
    by_name = {t["name"]: t for t in record["tasks"]}
    assert by_name["items"]["status"] == "inactive" and by_name["items"]["rows_read"] == 0
    assert "active: false" in by_name["items"]["note"]
    assert by_name["copy"]["status"] == "succeeded" and by_name["copy"]["rows_read"] == 15
    assert rows(job.root / "dst.db", "items") == 10  # untouched
    pointer = {p["task"]: p["pointer"] for p in services.pointer_show(job.ws, "copy")}["items"]
    assert pointer["value"] == "9"  # kept as the last real run left it
    log = services.logs(job.ws, record["run_id"])
    assert any(e["message"] == "task inactive (active: false): skipped" and e["task"] == "items" for e in log)
    # `tasks` shows it switched off, with the last run that ran it
    listed = {t["task"]: t for t in services.tasks(job.ws, "copy")}
    assert listed["items"]["active"] is False and listed["items"]["last_run"]["run_id"] == first["run_id"]
    # switched on again, it goes on from its pointer: only the new rows are read
    switch(job, "items", True)
    again = services.run(job.ws, "copy")
    items = next(t for t in again["tasks"] if t["name"] == "items")
    assert (items["status"], items["rows_read"], items["inserted"]) == (
        "succeeded",
        6,
        5,
    )  # 9 again, inclusive
    assert rows(job.root / "dst.db", "items") == 15


def test_run_task_refuses_an_inactive_task(job, monkeypatch):
    switch(job, "items", False)
    with pytest.raises(InvalidValue, match=r"task 'items' is switched off \(active: false\)"):
        services.run(job.ws, "copy", services.RunOptions(tasks=["items"]))
    monkeypatch.chdir(job.root)
    result = CliRunner().invoke(app, ["--dir", str(job.root), "run", "copy", "--task", "items"])
    assert result.exit_code == 1
    assert "task 'items' is switched off (active: false), and a run never runs it" in result.output
    assert not (job.ws.history / "default" / "copy").exists()  # refused before any run began
    assert services.run(job.ws, "copy", services.RunOptions(tasks=["copy"]))["status"] == "succeeded"


def test_a_job_whose_tasks_are_all_inactive_runs_nothing_and_says_so(project):
    # no source file at all: a run that connected would fail
    project.connection("src", "sqlite", "sqlite:///src.db")
    project.connection("dst", "sqlite", "sqlite:///dst.db")
    project.job("idle", "src", "dst", "- {name: t, read: {table: a}, write: {table: b}, active: false}")
    _, warnings = services.check(project.ws)
    assert [str(w) for w in warnings] == [
        f"{project.root}/jobs.d/idle.yaml:7:3: spec.tasks: every task of the job is switched off "
        "(active: false): its runs do nothing (hint: set active: true on the tasks to run, or remove the job)"
    ]
    services.apply(project.ws)
    record = services.run(project.ws, "idle")
    assert record["status"] == "succeeded" and record["rows_read"] == 0
    assert [(t["name"], t["status"]) for t in record["tasks"]] == [("t", "inactive")]
    messages = [e["message"] for e in services.logs(project.ws, record["run_id"])]
    assert "every task of the job is inactive (active: false): nothing to run" in messages
    assert not any(m.startswith("connecting") for m in messages)
    assert not (project.root / "dst.db").exists()


@pytest.mark.parametrize("off", ["0", '"no"', '"false"'])
def test_the_warning_knows_every_way_to_switch_a_task_off(project, off):
    # the task model reads these as false, so every run skips the task: validate says so too
    project.connection("src", "sqlite", "sqlite:///src.db")
    project.connection("dst", "sqlite", "sqlite:///dst.db")
    project.job(
        "idle", "src", "dst", f"- {{name: t, read: {{table: a}}, write: {{table: b}}, active: {off}}}"
    )
    _, warnings = services.check(project.ws)
    assert [w.message for w in warnings] == [
        "every task of the job is switched off (active: false): its runs do nothing"
    ]
    services.apply(project.ws)
    record = services.run(project.ws, "idle")
    assert [(t["name"], t["status"]) for t in record["tasks"]] == [("t", "inactive")]


def test_plan_describe_tasks_status_and_run_show_inactive_tasks(job, monkeypatch):
    monkeypatch.chdir(job.root)
    cli = CliRunner()
    text = TASKS.replace("{name: copy, ", "{name: copy, active: false, ")
    job.job("copy", "src", "dst", text)
    plan = cli.invoke(app, ["--dir", str(job.root), "plan"])
    assert plan.exit_code == 0
    assert "      (inactive: copy: every run skips them)" in plan.stdout
    assert "      + spec.tasks[1].active: false" in plan.stdout
    services.apply(job.ws)
    describe = cli.invoke(app, ["--dir", str(job.root), "describe", "job", "copy"])
    assert "  inactive:    copy (active: false: every run skips them)" in describe.stdout
    run = cli.invoke(app, ["--dir", str(job.root), "run", "copy"])
    assert run.exit_code == 0
    assert "  task copy: inactive: switched off (active: false): skipped by every run" in run.stdout
    assert "items_copy" not in tables(job.root / "dst.db")
    tasks = cli.invoke(app, ["--dir", str(job.root), "tasks", "copy"], terminal_width=200)
    assert "copy (inactive)" in tasks.stdout
    listed = json.loads(cli.invoke(app, ["--dir", str(job.root), "tasks", "copy", "-f", "json"]).stdout)
    assert [(t["task"], t["active"], t["last_run"]) for t in listed][1] == ("copy", False, None)
    status = cli.invoke(app, ["--dir", str(job.root), "status"], terminal_width=250)
    assert "1 task(s) inactive" in status.stdout
    as_json = json.loads(cli.invoke(app, ["--dir", str(job.root), "status", "-f", "json"]).stdout)
    assert as_json["jobs"][0]["inactive_tasks"] == ["copy"]


def test_the_api_lists_inactive_tasks_and_refuses_to_run_one(job):
    switch(job, "copy", False)
    key = services.keys_create(job.ws, "ops", "operate")
    headers = {"Authorization": f"Bearer {key}"}
    with TestClient(create_app(job.ws, None)) as client:
        listed = client.get("/api/v1/jobs/copy/tasks", headers=headers).json()
        assert [(t["task"], t["active"]) for t in listed] == [("items", True), ("copy", False)]
    services.check_tasks(job.ws, "copy", ["items"])
    with pytest.raises(InvalidValue) as refused:
        services.check_tasks(job.ws, "copy", ["copy"])
    assert refused.value.field == "tasks"


def test_the_api_refuses_a_run_of_an_inactive_task_with_422(job):
    switch(job, "copy", False)
    key = services.keys_create(job.ws, "ops", "operate")
    headers = {"Authorization": f"Bearer {key}"}
    daemon = Daemon(job.ws, DaemonOptions(workers=1, watch=False), log=DaemonLog(as_json=True))
    try:
        with TestClient(create_app(job.ws, daemon)) as client:
            refused = client.post("/api/v1/jobs/copy/runs", json={"tasks": ["copy"]}, headers=headers)
            assert refused.status_code == 422
            assert refused.json()["field"] == "tasks"
            assert "task 'copy' is switched off (active: false)" in refused.json()["error"]
    finally:
        daemon.executor.shutdown()
    assert not (job.ws.history / "default" / "copy").exists()
