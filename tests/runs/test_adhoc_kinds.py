"""An ad-hoc run's tasks take the models of its connections' kinds, as an applied job's do: a
folder's task (`files`, `format`) runs ad hoc, and a table's task on that folder is refused."""

from __future__ import annotations

import sqlite3

import pytest

from runner import services
from runner.errors import DefinitionsInvalid

FOLDER = "apiVersion: runner/v1\nkind: Connection\nmetadata: {name: in}\nspec: {type: files, path: in}\n"


@pytest.fixture
def folder_project(project):
    project.connection("dst", "sqlite", "sqlite:///dst.db")
    project.write("connections.d/in.yaml", FOLDER)
    (project.root / "in").mkdir()
    (project.root / "in/x.csv").write_text("id,name\n7,Ana\n8,Bo\n")
    services.apply(project.ws)
    return project


def test_an_adhoc_run_reads_a_folder_with_its_kinds_task(folder_project):
    spec = {
        "source": "in",
        "target": "dst",
        "tasks": [{"name": "t", "read": {"files": "*.csv", "format": "csv"}, "write": {"table": "people"}}],
    }
    record = services.run_adhoc(folder_project.ws, "once", spec)
    assert record["status"] == "succeeded", record.get("error")
    with sqlite3.connect(folder_project.root / "dst.db") as db:
        assert db.execute("SELECT id, name FROM people ORDER BY id").fetchall() == [(7, "Ana"), (8, "Bo")]


def test_an_adhoc_tables_task_on_a_folder_is_refused_with_its_field(folder_project):
    spec = {
        "source": "in",
        "target": "dst",
        "tasks": [{"name": "t", "read": {"table": "x"}, "write": {"table": "y"}}],
    }
    with pytest.raises(DefinitionsInvalid) as info:
        services.run_adhoc(folder_project.ws, "once", spec)
    assert info.value.problems[0].location.field.startswith("spec.tasks[0].read")
    assert (
        not (folder_project.root / "dst.db").exists()
        or not sqlite3.connect(folder_project.root / "dst.db")
        .execute("SELECT name FROM sqlite_master WHERE name = 'y'")
        .fetchall()
    )
