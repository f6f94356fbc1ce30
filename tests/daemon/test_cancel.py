"""Cancel, timeout and parallel tasks of one run, in process (the daemon's tests drive them
from other processes). A cancelled run stops at a batch boundary: whole batches committed,
the pointer at the last of them, and the next run goes on from there without loss."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa

from runner import services
from runner.changes.task import RunOptions
from runner.errors import JobBusy
from runner.streams.cancel import CancelToken
from tests.conftest import TWO_SQLITE
from tests.daemon.conftest import BATCH, ROWS, WATERMARK, make_source, rows_of


def target_rows(project, table="items"):
    return rows_of(project.root / "dst.db", table)


def setup_job(project, tasks=WATERMARK, extra=""):
    project.write("connections.d/c.yaml", TWO_SQLITE)
    project.job("sync", "src", "dst", tasks, extra=f"  batch_size: {BATCH}\n{extra}")
    make_source(project.root, ("items", "more", "most") if "more" in tasks else ("items",))
    services.apply(project.ws)


def cancel_after(token, batches, reason="cancelled by the test"):
    def progress(task, rows):
        if rows >= batches * BATCH:
            token.cancel(reason)

    return progress


def test_cancel_stops_at_a_batch_boundary_and_the_next_run_resumes(project):
    setup_job(project)
    token = CancelToken()
    record = services.run(project.ws, "sync", cancel=token, progress=cancel_after(token, 3))
    assert record["status"] == "cancelled"
    assert record["error"] == "cancelled by the test"
    (task,) = record["tasks"]
    assert task["status"] == "cancelled" and task["inserted"] == 3 * BATCH
    assert [r[0] for r in target_rows(project)] == list(range(1, 3 * BATCH + 1))  # whole batches only
    (pointer,) = services.pointer_show(project.ws, "sync")
    assert pointer["pointer"]["value"] == str(3 * BATCH)  # the last committed row, not the one read after

    again = services.run(project.ws, "sync")
    assert again["status"] == "succeeded"
    assert again["tasks"][0]["inserted"] == ROWS - 3 * BATCH  # nothing written twice
    assert again["tasks"][0]["unchanged"] == 1  # the row at the pointer, read again
    assert target_rows(project) == [(i, i, f"v{i}") for i in range(1, ROWS + 1)]


def test_a_full_keyed_task_cancelled_rolls_back_its_one_transaction(project):
    setup_job(project, "- {name: items, read: {table: items}, write: {table: items, keys: [id]}}")
    services.run(project.ws, "sync")
    with sqlite3.connect(project.root / "src.db") as db:
        db.execute("UPDATE items SET v = 'changed'")
    token = CancelToken()
    token.cancel("cancelled by the test")  # stops after the copy into the stage, before the merge
    record = services.run(project.ws, "sync", cancel=token)
    assert record["status"] == "cancelled"
    assert target_rows(project) == [(i, i, f"v{i}") for i in range(1, ROWS + 1)]  # all or nothing
    assert services.run(project.ws, "sync")["tasks"][0]["updated"] == ROWS


def test_runner_cancel_from_another_process_reaches_the_run(project):
    """`runner cancel` marks the job's lock in the state store; the run polls it."""
    setup_job(project)
    other = services.Workspace(project.root)  # its own state store connection, as another process has
    asked: list[dict] = []

    def progress(task, rows):
        if rows == 2 * BATCH:
            asked.append(services.cancel(other, "sync"))

    record = services.run(project.ws, "sync", cancel=CancelToken(interval=0), progress=progress)
    other.close()
    assert asked[0]["run_id"] == record["run_id"]
    assert record["status"] == "cancelled"
    assert record["error"].startswith("cancelled by ") and " pid " in record["error"]
    assert len(target_rows(project)) == 2 * BATCH
    with pytest.raises(Exception, match="is not running"):
        services.cancel(project.ws, "sync")  # nothing runs now: nothing to cancel


def test_a_run_past_its_timeout_is_cancelled_and_counts_as_failed(project):
    setup_job(project, extra="  timeout: 0.3\n")
    record = services.run(project.ws, "sync", progress=lambda task, rows: time.sleep(0.05))
    assert record["status"] == "failed"
    assert record["error"] == "timed out after 0.3"
    written = len(target_rows(project))
    assert 0 < written < ROWS and written % BATCH == 0
    (pointer,) = services.pointer_show(project.ws, "sync")
    assert pointer["pointer"]["value"] == str(written)


PARALLEL = "\n".join(
    f"- {{name: {t}, read: {{table: {t}}}, write: {{table: {t}, keys: [id]}}, "
    "changes: {strategy: watermark, column: seq}}"
    for t in ("items", "more", "most")
)


def started_before_any_ended(project, record) -> list[str]:
    log = services.logs(project.ws, record["run_id"])
    events = [(e["message"], e.get("task")) for e in log if e["message"].startswith("task ")]
    first_end = next(i for i, (message, _) in enumerate(events) if message == "task succeeded")
    return sorted(task for message, task in events[:first_end] if message == "task started")


def test_parallel_tasks_run_side_by_side_on_their_own_connections(project, pg_url):
    project.write("connections.d/c.yaml", TWO_SQLITE.split("---")[0])
    project.connection("dst", "postgresql", pg_url)
    project.job("sync", "src", "dst", PARALLEL, extra=f"  batch_size: {BATCH}\n  parallel: 3\n")
    make_source(project.root, ("items", "more", "most"))
    services.apply(project.ws)
    record = services.run(project.ws, "sync", progress=lambda task, rows: time.sleep(0.02))
    assert record["status"] == "succeeded"
    assert sorted(t["name"] for t in record["tasks"]) == ["items", "more", "most"]
    engine = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"), poolclass=sa.NullPool)
    with engine.connect() as conn:
        for table in ("items", "more", "most"):
            rows = conn.exec_driver_sql(f"SELECT id, seq, v FROM {table} ORDER BY id").all()
            assert [tuple(r) for r in rows] == [(i, i, f"v{i}") for i in range(1, ROWS + 1)]
    engine.dispose()
    assert started_before_any_ended(project, record) == ["items", "more", "most"]


def test_parallel_tasks_into_sqlite_run_one_after_another(project):
    setup_job(project, PARALLEL, extra="  parallel: 3\n")
    record = services.run(project.ws, "sync")
    assert record["status"] == "succeeded"
    assert started_before_any_ended(project, record) == ["items"]
    log = services.logs(project.ws, record["run_id"])
    assert any("one writer at a time" in e["message"] for e in log)
    for table in ("items", "more", "most"):
        assert target_rows(project, table) == [(i, i, f"v{i}") for i in range(1, ROWS + 1)]


def test_pointer_set_is_refused_while_the_job_runs(project):
    setup_job(project)
    refused: list[str] = []

    def progress(task, rows):
        if rows == BATCH:
            with pytest.raises(JobBusy) as info:
                services.pointer_set(services.Workspace(project.root), "sync", "items", "5")
            refused.append(str(info.value))

    assert services.run(project.ws, "sync", RunOptions(), progress=progress)["status"] == "succeeded"
    assert "is running" in refused[0]


def _committed(project) -> bool:
    try:
        return bool(target_rows(project))
    except sqlite3.OperationalError:  # the table is not there yet
        return False


def test_ctrl_c_stops_a_terminal_run_at_a_batch_boundary(project):
    setup_job(project)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RUNNER_")} | {
        "RUNNER_BATCH_DELAY": "0.05"
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", "--dir", str(project.root), "run", "sync"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environ,
    )
    deadline = time.monotonic() + 20
    while not _committed(project) and time.monotonic() < deadline:  # a batch in, however loaded the machine
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert "stopping at the next batch boundary" in stderr
    record = services.runs(project.ws, "sync")[0]
    assert record["status"] == "cancelled"
    assert record["error"] == "interrupted (SIGINT): stopped at a batch boundary"
    written = len(target_rows(project))
    assert 0 < written < ROWS and written % BATCH == 0
