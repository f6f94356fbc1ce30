"""Events before and after a run (`spec.events`): SQL on the job's source or target, commands
with the run's facts in their environment, what a failing one does, and dry runs."""

from __future__ import annotations

import json
import sqlite3
import sys
import textwrap

import pytest
import sqlalchemy as sa

from runner import services
from runner.history import files as history

PY = sys.executable


def _seed(path, rows: int = 5) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
    db.executemany("INSERT INTO items VALUES (?, ?)", [(i, f"item {i}") for i in range(rows)])
    db.commit()
    db.close()


def _job(project, events: str, target_url: str = "sqlite:///dst.db", extra: str = "") -> None:
    _seed(project.root / "src.db")
    project.connection("src", "sqlite", "sqlite:///src.db")
    project.connection("dst", target_url.split(":")[0].split("+")[0], target_url)
    project.job(
        "copy",
        "src",
        "dst",
        "- {name: items, read: {table: items}, write: {table: items, keys: [id]}}",
        extra="  events:\n" + textwrap.indent(textwrap.dedent(events).strip("\n"), "    ") + "\n" + extra,
    )
    services.apply(project.ws)


def _log(project, record) -> list[dict]:
    return history.read_log(history.find_log(project.ws.history, record["run_id"]))


def _script(project, name: str, body: str) -> str:
    path = project.root / name
    path.write_text(textwrap.dedent(body))
    return name


def test_sql_events_run_on_the_target_before_and_after_the_tasks(project):
    _job(
        project,
        """
        before:
          - connection: target
            sql:
              - CREATE TABLE IF NOT EXISTS audit (what TEXT, n INTEGER)
              - INSERT INTO audit VALUES ('before', (SELECT count(*) FROM sqlite_master WHERE name = 'items'))
        after:
          - connection: target
            sql: "INSERT INTO audit SELECT 'after', count(*) FROM items"
          - {connection: source, sql: "DELETE FROM items WHERE id < 2", when: succeeded}
          - {connection: source, sql: "DELETE FROM items", when: failed}
        """,
    )
    record = services.run(project.ws, "copy")
    assert record["status"] == "succeeded"
    with sqlite3.connect(project.root / "dst.db") as db:
        assert db.execute("SELECT what, n FROM audit ORDER BY what DESC").fetchall() == [
            ("before", 0),  # before the task created the table
            ("after", 5),
        ]
    with sqlite3.connect(project.root / "src.db") as db:
        assert db.execute("SELECT count(*) FROM items").fetchone() == (3,)  # `when: failed` did not run
    events = [(e["phase"], e["index"], e["what"], e["status"], e.get("rows_affected")) for e in record["events"]]
    assert events == [
        ("before", 0, "sql on target", "succeeded", [-1, 1]),
        ("after", 0, "sql on target", "succeeded", [1]),
        ("after", 1, "sql on source", "succeeded", [2]),
    ]
    on_disk = json.loads(project.ws.history.joinpath("default", "copy", f"{record['run_id']}.json").read_text())
    assert on_disk["events"] == record["events"]
    log = _log(project, record)
    statements = [e["sql"] for e in log if e["message"] == "event statement"]
    assert statements[1].startswith("INSERT INTO audit VALUES ('before'")
    assert [e["rows_affected"] for e in log if e["message"] == "event statement done"] == [-1, 1, 1, 2]
    messages = [e["message"] for e in log]
    assert messages.index("before-event succeeded") < messages.index("task started")
    assert messages.index("task succeeded") < messages.index("after-event started")
