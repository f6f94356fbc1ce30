"""A `running` record's live status: read as `interrupted` only when its file still says
running once no process holds the job's lock for it (a run that ends between a reader's read
of its record and of the lock is not mistaken for a dead one)."""

from __future__ import annotations

import sqlite3

from runner import services
from runner.history import files as history
from runner.runs.records import with_live_status


def _succeeded(project) -> dict:
    with sqlite3.connect(project.root / "src.db") as db:
        db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
        db.executemany("INSERT INTO items VALUES (?, ?)", [(i, f"item {i}") for i in range(5)])
    project.connection("src", "sqlite", "sqlite:///src.db")
    project.connection("dst", "sqlite", "sqlite:///dst.db")
    project.job("copy", "src", "dst", "- {name: items, read: {table: items}, write: {table: items}}")
    services.apply(project.ws)
    record = services.run(project.ws, "copy")
    assert record["status"] == "succeeded"
    return record


def test_a_record_read_while_running_whose_run_has_since_ended_reads_as_it_ended(project):
    record = _succeeded(project)
    stale = record | {"status": "running", "finished_at": None}  # read just before the run ended
    assert with_live_status(project.ws, stale)["status"] == "succeeded"


def test_a_running_record_with_no_lock_holder_reads_interrupted(project):
    record = _succeeded(project)
    path = history.find_run(project.ws.history, record["run_id"])
    history.write_atomic(path, history.read_run(path) | {"status": "running", "finished_at": None})
    live = with_live_status(project.ws, history.read_run(path))
    assert live["status"] == "interrupted"
    assert live["error"] == "the process running it ended without finishing it"
