"""`runner status`, `runner tasks`, `runner history --task` and the runtime switches, through
the CLI on a real folder and state store."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from runner import services
from runner.cli.app import app
from tests.conftest import TWO_SQLITE
from tests.daemon.conftest import ROWS, WATERMARK, job_yaml, make_source

TWO_TASKS = WATERMARK + "- {name: copy, read: {table: items}, write: {table: items_copy}}\n"


def cli(project, *args):
    return CliRunner().invoke(app, ["--dir", str(project.root), *args])


def setup(project):
    project.write("connections.d/c.yaml", TWO_SQLITE)
    project.write(
        "jobs.d/sync.yaml",
        job_yaml("sync", TWO_TASKS, '  schedule: {cron: "0 3 * * *", timezone: Asia/Tokyo}\n'),
    )
    project.write("jobs.d/next.yaml", job_yaml("next", extra="  after: [{job: sync, when: finished}]\n"))
    make_source(project.root)
    assert cli(project, "apply").exit_code == 0


def test_status_lists_jobs_with_schedule_last_run_and_switches(project):
    setup(project)
    assert cli(project, "run", "sync").exit_code == 0
    info = json.loads(cli(project, "status", "--format", "json").stdout)
    assert info["daemon"] is None and info["paused"] is False and info["revision"] == 1
    jobs = {j["job"]: j for j in info["jobs"]}
    sync = jobs["default/sync"]
    assert sync["next_run"].endswith("T03:00:00+09:00")
    assert sync["last_run"]["status"] == "succeeded" and sync["last_run"]["rows_written"] == 2 * ROWS
    assert sync["running"] is None and sync["suspended"] is None and sync["pending_update"] is False
    assert jobs["default/next"]["after"] == [{"job": "default/sync", "when": "finished"}]
    assert jobs["default/next"]["last_run"] is None

    assert cli(project, "suspend", "sync").stdout == "default/sync suspended\n"
    assert cli(project, "suspend", "sync").stdout == "default/sync was already suspended\n"
    assert cli(project, "pause").exit_code == 0
    info = json.loads(cli(project, "status", "--format", "json").stdout)
    assert info["paused"] is True and info["by"]
    sync = next(j for j in info["jobs"] if j["job"] == "default/sync")
    assert sync["suspended"]["by"] and sync["next_run"] is None
    text = cli(project, "status").stdout
    assert "daemon: not running" in text and "scheduling: paused" in text and "suspended" in text
    plan = json.loads(cli(project, "plan", "--format", "json").stdout)
    assert plan["runtime"]["paused"] is True
    assert [s["job"] for s in plan["runtime"]["suspended"]] == ["default/sync"]
    assert cli(project, "resume", "sync").exit_code == 0 and cli(project, "unpause").exit_code == 0
    assert "Scheduling is paused" not in cli(project, "plan").stdout
    assert cli(project, "suspend", "nope").exit_code == 1


def test_tasks_and_a_tasks_history(project):
    setup(project)
    assert cli(project, "run", "sync").exit_code == 0
    assert cli(project, "run", "sync", "--task", "copy").exit_code == 0
    rows = json.loads(cli(project, "tasks", "sync", "--format", "json").stdout)
    assert [(r["task"], r["strategy"]) for r in rows] == [("items", "watermark"), ("copy", "full")]
    items, copy = rows
    assert items["pointer"]["value"] == str(ROWS)
    runs = services.runs(project.ws, "sync")
    assert items["last_run"]["run_id"] == runs[1]["run_id"]  # not run by the second run
    assert copy["last_run"]["run_id"] == runs[0]["run_id"]
    assert "Tasks of sync" in cli(project, "tasks", "sync").stdout

    history = json.loads(cli(project, "history", "sync", "--task", "copy", "--format", "json").stdout)
    assert [h["run_id"] for h in history] == [r["run_id"] for r in runs]
    assert all(h["name"] == "copy" and h["inserted"] == ROWS for h in history)
    only_items = json.loads(cli(project, "history", "sync", "--task", "items", "-f", "json").stdout)
    assert [h["inserted"] for h in only_items] == [ROWS]
    assert "Runs of task copy of sync" in cli(project, "history", "sync", "--task", "copy").stdout
    bad = cli(project, "history", "sync", "--task", "nope")
    assert bad.exit_code == 1 and "has no task 'nope'" in bad.stderr


def test_cancel_of_a_job_that_is_not_running_says_so(project):
    setup(project)
    result = cli(project, "cancel", "sync")
    assert result.exit_code == 1 and "default/sync is not running" in result.stderr


def test_run_ids_sort_by_start_time_within_a_second():
    import datetime as dt

    from runner.history.files import new_run_id

    t = dt.datetime(2026, 11, 23, 4, 17, 6, 999_000, tzinfo=dt.UTC)
    ids = [new_run_id(t + dt.timedelta(milliseconds=ms)) for ms in (-998, -1, 0, 1)]
    assert ids == sorted(ids) and len({i[:19] for i in ids}) == 4


def test_a_job_deleted_while_it_runs_is_listed_and_can_be_cancelled(project):
    import threading
    import time

    from runner.streams.cancel import CancelToken

    setup(project)
    records: list[dict] = []
    started = threading.Event()

    def progress(task, rows):
        started.set()
        time.sleep(0.05)

    worker = threading.Thread(
        target=lambda: records.append(
            services.run(
                services.Workspace(project.root), "sync", progress=progress, cancel=CancelToken(interval=0)
            )
        )
    )
    worker.start()
    assert started.wait(20)
    (project.root / "jobs.d/sync.yaml").unlink()
    (project.root / "jobs.d/next.yaml").unlink()
    assert cli(project, "apply").exit_code == 0
    info = json.loads(cli(project, "status", "--format", "json").stdout)
    (row,) = info["jobs"]
    assert row["job"] == "default/sync" and row["applied"] is False and row["running"]["run_id"]
    assert cli(project, "cancel", "sync").exit_code == 0
    worker.join(30)
    assert records[0]["status"] == "cancelled"


def test_deleting_a_job_forgets_its_suspension(project):
    setup(project)
    assert cli(project, "suspend", "sync").exit_code == 0
    sync = (project.root / "jobs.d/sync.yaml").read_text()
    (project.root / "jobs.d/sync.yaml").unlink()
    (project.root / "jobs.d/next.yaml").unlink()
    assert cli(project, "apply").exit_code == 0
    assert services.runtime_switches(project.ws)["suspended"] == []
    (project.root / "jobs.d/sync.yaml").write_text(sync)
    assert cli(project, "apply").exit_code == 0
    assert json.loads(cli(project, "status", "--format", "json").stdout)["jobs"][0]["suspended"] is None


def test_pause_with_an_unusable_state_store_is_an_error_not_a_traceback(project):
    result = CliRunner().invoke(app, ["--dir", str(project.root), "--state", "foo://x", "pause"])
    assert result.exit_code == 1 and result.stderr.startswith("error: ")


def test_history_of_a_name_not_applied_is_read_only_for_plain_names(project):
    setup(project)
    import pytest

    from runner.errors import NotFound

    for ref in ("..", "../..", "default/..", "x/../y", "nope"):
        with pytest.raises(NotFound):
            services.runs(project.ws, ref)
