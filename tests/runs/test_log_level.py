"""A job's `log_level`: the run log keeps the lines at that level and above, and whatever the
level the lines the history reads back (a task's counts after each commit) and a failed task's
traceback."""

from __future__ import annotations

import sqlite3

import pytest

from runner import services
from runner.changes.task import COMMITTED, TRACEBACK, WINDOW_DONE
from runner.history import files as history


def _run(project, level: str | None) -> list[dict]:
    db = sqlite3.connect(project.root / "src.db")
    db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
    db.executemany("INSERT INTO items VALUES (?, ?)", [(i, f"item {i}") for i in range(25)])
    db.commit()
    db.close()
    project.connection("src", "sqlite", "sqlite:///src.db")
    project.connection("dst", "sqlite", "sqlite:///dst.db")
    tasks = """
    - {name: items, read: {table: items}, write: {table: items, keys: [id]}}
    - {name: missing, read: {table: nope}, write: {table: nope}}
    """
    extra = "  batch_size: 10\n  on_error: continue\n" + (f"  log_level: {level}\n" if level else "")
    project.job("copy", "src", "dst", tasks, extra=extra)
    services.apply(project.ws)
    record = services.run(project.ws, "copy")
    assert record["status"] == "failed" and record["rows_written"] == 25
    return history.read_log(history.find_log(project.ws.history, record["run_id"]))


def test_a_warning_level_log_keeps_no_info_line_and_every_error(project):
    log = _run(project, "warning")
    kept = [(e["level"], e["message"]) for e in log if e["message"] not in (COMMITTED, TRACEBACK)]
    assert kept == [
        ("error", "task failed: table 'nope' not found (connection 'default/src')"),
        ("error", "run failed"),
    ]
    # the lines the history and `--debug` read back stay
    assert [e["rows_read"] for e in log if e["message"] == COMMITTED][-1:] == [25]
    assert [e["task"] for e in log if e["message"] == TRACEBACK] == ["missing"]


@pytest.mark.parametrize("level", [None, "info", "debug"])
def test_info_is_the_default_and_keeps_the_info_lines(project, level):
    log = _run(project, level)
    assert {e["level"] for e in log if e["message"] not in (COMMITTED, TRACEBACK)} == {"info", "error"}
    assert [e["message"] for e in log][:1] == ["run started"]
    assert any(e["message"] == "task succeeded" for e in log)


def test_a_warning_level_log_keeps_a_backfills_windows(project):
    db = sqlite3.connect(project.root / "src.db")
    db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, seq INTEGER)")
    db.executemany("INSERT INTO items VALUES (?, ?)", [(i, i) for i in range(30)])
    db.commit()
    db.close()
    project.connection("src", "sqlite", "sqlite:///src.db")
    project.connection("dst", "sqlite", "sqlite:///dst.db")
    task = (
        "- {name: items, read: {table: items}, write: {table: items, keys: [id]},"
        " changes: {strategy: watermark, column: seq, start: 0, window: 10}}"
    )
    project.job("copy", "src", "dst", task, extra="  log_level: warning\n")
    services.apply(project.ws)
    record = services.run(project.ws, "copy")
    assert record["status"] == "succeeded"
    log = history.read_log(history.find_log(project.ws.history, record["run_id"]))
    assert [e["level"] for e in log if e["message"] not in (COMMITTED, WINDOW_DONE)] == []
    logged = [(e["from"], e["to"]) for e in log if e["message"] == WINDOW_DONE]
    assert logged[:2] == [("0", "10"), ("10", "20")]
    assert logged == [(w["from"], w["to"]) for w in record["tasks"][0]["windows"]]
