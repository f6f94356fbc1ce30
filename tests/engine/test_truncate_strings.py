"""`truncate_strings` cuts a string longer than its target column to the column's length in
characters (as the target counts them: 'ä' is one), counts the cuts per column in the task's
history and warns in the log; off, a PostgreSQL or MariaDB target refuses the value naming its
row (tests/engine/test_bad_data.py) and a SQLite one keeps it whole (SQLite does not enforce a
declared length)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from runner import services
from tests.engine.conftest import DIALECTS, Database

ROWS = [(1, "ok"), (2, "toolong"), (3, "ääääääää"), (4, None)]


def setup(project, target: Database, job_wide: bool | None, task: bool | None) -> None:
    db = sqlite3.connect(project.root / "src.db")
    db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name VARCHAR(5))")
    db.executemany("INSERT INTO items VALUES (?, ?)", ROWS)
    db.commit()
    db.close()
    project.connection("src", "sqlite", f"sqlite:///{project.root / 'src.db'}")
    project.connection("dst", target.dialect, target.url)
    extra = f"  truncate_strings: {str(job_wide).lower()}\n" if job_wide is not None else ""
    own = f"  truncate_strings: {str(task).lower()}\n" if task is not None else ""
    project.job(
        "load",
        "src",
        "dst",
        f"""
        - name: items
          read: {{table: items}}
          write: {{table: copy, keys: [id]}}
        {own}""",
        extra=extra,
    )
    services.apply(project.ws)


@pytest.fixture(params=DIALECTS, ids=[f"to-{d}" for d in DIALECTS])
def target(request, make_database) -> Database:
    return make_database(request.param, "target")


@pytest.mark.parametrize(("job_wide", "task"), [(True, None), (False, True)], ids=["job", "task"])
def test_strings_are_cut_to_the_column_and_counted(project, target, job_wide, task):
    setup(project, target, job_wide, task)
    record = services.run(project.ws, "load")
    assert record["status"] == "succeeded", record["error"]
    got = [tuple(r) for r in target.fetch("SELECT id, name FROM copy ORDER BY id")]
    assert got == [(1, "ok"), (2, "toolo"), (3, "äääää"), (4, None)]
    assert record["tasks"][0]["truncated"] == {"name": 2}
    lines = [json.loads(line) for line in Path(record["log"]).read_text().splitlines()]
    (warning,) = [e for e in lines if e["level"] == "warning"]
    assert warning["message"] == "strings longer than the target column are cut to 5 characters"
    assert (warning["task"], warning["column"]) == ("items", "name")
    again = services.run(project.ws, "load")  # the cut rows are cut again, and then unchanged
    assert again["tasks"][0]["truncated"] == {"name": 2} and again["tasks"][0]["unchanged"] == 4


@pytest.mark.parametrize("task", [None, False])
def test_off_keeps_the_located_error(project, target, task):
    setup(project, target, True if task is False else None, task)
    record = services.run(project.ws, "load")
    if target.dialect == "sqlite":  # SQLite keeps the whole string under any declared length
        assert record["status"] == "succeeded"
        assert target.fetch("SELECT name FROM copy WHERE id = 2") == [("toolong",)]
    else:
        assert record["status"] == "failed"
        assert record["error"].startswith("task items: row with key id=2: column 'name': ")
    assert record["tasks"][0]["truncated"] == {}
