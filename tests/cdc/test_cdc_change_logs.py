"""A cdc job with a target keeps change logs beside it (`change_log`), and a writer job follows
them into a table of its own: the log is indexed for exactly what the target committed and the
stored position passed, in the state store's one transaction, so a run killed -9 anywhere
(before the target commits, after it, after the position is stored) and run again leaves the
writer's table equal to the source, nothing lost, nothing logged twice. A truncate, which a
change log cannot hold, stops the task with what to do."""

from __future__ import annotations

import pytest

from runner import services
from tests.cdc.test_cdc_crash import churn
from tests.cdc.test_postgresql_cdc import create_items, execute, rows, source_engine
from tests.engine.test_crash import kill_at

JOB = """
apiVersion: runner/v1
kind: Job
metadata: {name: sync}
spec:
  source: src
  target: dst
  batch_size: 5
  change_log: {path: logs, keep_files: 2}
  tasks:
    - name: items
      read: {table: public.items}
      write: {table: items, keys: [id]}
      changes: {strategy: cdc}
      deletes: propagate
"""
WRITER = """
apiVersion: runner/v1
kind: Job
metadata: {name: w}
spec:
  source: {job: sync}
  target: dst
  batch_size: 7
  tasks:
    - {name: items, read: {table: items}, write: {table: items_copy, keys: [id]}, deletes: propagate}
"""


@pytest.fixture
def cdc_project(project, cdc_url, pg_url):
    engine = source_engine(cdc_url)
    create_items(engine, 30)
    project.connection("src", "postgresql", cdc_url)
    project.connection("dst", "postgresql", pg_url)
    project.write("jobs.d/sync.yaml", JOB)
    project.write("jobs.d/w.yaml", WRITER)
    services.apply(project.ws)
    return project, engine, source_engine(pg_url)


def _ok(project, job: str) -> dict:
    record = services.run(project.ws, job)
    assert record["status"] == "succeeded", record["error"]
    return record


def _followed(project, engine, dst) -> None:
    """The job's target and the writer's table both equal the source; the change log's positions
    run on with no gap and no repeat."""
    assert rows(dst) == rows(engine)
    assert rows(dst, "items_copy") == rows(engine)
    entries = services.changes(project.ws, "sync")["change_logs"]
    for before, after in zip(entries, entries[1:], strict=False):
        assert after["first_position"] == before["last_position"] + 1


def test_a_cdc_job_keeps_change_logs_a_writer_follows(cdc_project):
    project, engine, dst = cdc_project
    first = _ok(project, "sync")["tasks"][0]
    assert first["upserted"] + first["inserted"] == 30
    _ok(project, "w")
    _followed(project, engine, dst)
    (snapshot,) = services.changes(project.ws, "sync")["change_logs"]
    assert (snapshot["upserts"], snapshot["deletes"]) == (30, 0)
    for round_ in (1, 2):
        churn(engine, round_)
        _ok(project, "sync")
        _ok(project, "w")
        _followed(project, engine, dst)
    last = services.changes(project.ws, "sync")["change_logs"][-1]
    assert last["deletes"] > 0  # deletes from the log are logged as deletes
    again = _ok(project, "sync")["tasks"][0]
    assert again["rows_read"] == 0
    assert services.changes(project.ws, "sync")["change_logs"][-1] == last  # nothing new logged


@pytest.mark.parametrize("point", ["changelog_renamed", "target_committed", "stored"])
def test_a_cdc_job_killed_anywhere_logs_each_change_once(cdc_project, tmp_path, point):
    project, engine, dst = cdc_project
    project.ws.close()
    kill_at(project, point, tmp_path)  # in the snapshot
    _ok(project, "sync")
    _ok(project, "w")
    _followed(project, engine, dst)
    churn(engine, 1)
    project.ws.close()
    kill_at(project, point, tmp_path)  # while applying the log's changes
    churn(engine, 2)
    _ok(project, "sync")
    _ok(project, "w")
    _followed(project, engine, dst)
    assert _ok(project, "w")["tasks"][0]["rows_read"] == 0


def test_a_truncate_stops_a_cdc_task_keeping_change_logs(cdc_project):
    project, engine, dst = cdc_project
    _ok(project, "sync")
    execute(engine, "TRUNCATE items")
    record = services.run(project.ws, "sync")
    assert record["status"] == "failed"
    assert "was truncated in the source: a change log holds upserts and deletes by key" in record["error"]
    assert len(rows(dst)) == 30  # nothing of it applied
