"""`schema_changes`, `drop_columns` and `truncate_strings`: job-wide with a per-task override
resolved in one place (`SyncJobSpec.table_changes`), contradictions refused by `runner
validate` at their field, and shown by `runner describe` and `runner tasks`."""

from __future__ import annotations

import pytest

from runner import services
from runner.definitions.jobs import SyncJobSpec
from runner.definitions.schema_changes import TableChanges
from runner.errors import DefinitionsInvalid, Problem

SQLITE = """
apiVersion: runner/v1
kind: Connection
metadata: {name: db}
spec: {type: sqlite, url: "sqlite:///db.db"}
"""
MEMORY = """
apiVersion: runner/v1
kind: Connection
metadata: {name: mem}
spec: {type: memory, store: shop}
"""


def problems(project) -> list[Problem]:
    with pytest.raises(DefinitionsInvalid) as info:
        services.validate(project.ws)
    return info.value.problems


def spec(job: dict, *tasks: dict) -> SyncJobSpec:
    base = {"name": "t", "read": {"table": "a"}, "write": {"table": "b", "keys": ["id"]}}
    return SyncJobSpec.model_validate(
        {"source": "s", "target": "t", "tasks": [base | t | {"name": f"t{i}"} for i, t in enumerate(tasks)]}
        | job
    )


def test_a_tasks_own_value_wins_else_the_jobs():
    job = spec(
        {"schema_changes": "add", "truncate_strings": True},
        {},
        {"schema_changes": "off"},
        {"schema_changes": "add_and_widen", "drop_columns": True, "truncate_strings": False},
    )
    assert [job.table_changes(t) for t in job.tasks] == [
        TableChanges(add=True, widen=False, drop=False, truncate_strings=True),
        TableChanges(add=False, widen=False, drop=False, truncate_strings=True),
        TableChanges(add=True, widen=True, drop=True, truncate_strings=False),
    ]
    default = spec({}, {})
    assert default.table_changes(default.tasks[0]) == TableChanges(add=True, widen=True)
    # a job that drops columns, and a task that alters nothing: that task drops nothing either
    off = spec({"drop_columns": True}, {"schema_changes": "off"})
    assert off.table_changes(off.tasks[0]).drop is False


@pytest.mark.parametrize("where", ["job", "task"])
def test_drop_columns_with_schema_changes_off_is_refused_where_it_is_written(project, where):
    project.write("connections.d/db.yaml", SQLITE)
    own = "  schema_changes: 'off'\n  drop_columns: true\n"
    task_own = "  schema_changes: 'off'\n          drop_columns: true\n"
    path = project.job(
        "sync",
        "db",
        "db",
        f"""
        - name: items
          read: {{table: items}}
          write: {{table: copy, keys: [id]}}
        {task_own if where == "task" else ""}""",
        extra=own if where == "job" else "",
    )
    (p,) = problems(project)
    field, line = ("spec.drop_columns", 8) if where == "job" else ("spec.tasks[0].drop_columns", 12)
    assert str(p) == (
        f"{path}:{line}:{3 if where == 'job' else 7}: {field}: drop_columns needs schema_changes add or "
        "add_and_widen (off alters nothing)"
    )


def test_a_scripted_task_refuses_them(project):
    project.write("connections.d/db.yaml", SQLITE)
    path = project.job(
        "sync",
        "db",
        "db",
        """
        - name: items
          read: {table: items}
          write:
            table: copy
            keys: [id]
            upsert_script: "INSERT INTO {{ table }} VALUES ({{ bind('id') }})"
          truncate_strings: true
        """,
    )
    (p,) = problems(project)
    assert str(p) == (
        f"{path}:14:7: spec.tasks[0].truncate_strings: truncate_strings does not apply to "
        "write.upsert_script, which decides what the target holds"
    )


def test_a_target_that_cannot_alter_tables_refuses_a_tasks_own_setting(project):
    project.write("connections.d/all.yaml", SQLITE + "---" + MEMORY)
    path = project.job(
        "sync",
        "db",
        "mem",
        """
        - name: items
          read: {table: items}
          write: {table: copy, keys: [id]}
          truncate_strings: true
        """,
    )
    (p,) = problems(project)
    assert str(p).startswith(f"{path}:11:7: spec.tasks[0].truncate_strings: truncate_strings changes")
    assert "the target connection 'mem' is of type 'memory', which cannot (alter_tables)" in p.message


def test_describe_and_tasks_show_them(project):
    project.write("connections.d/db.yaml", SQLITE)
    project.job(
        "sync",
        "db",
        "db",
        """
        - name: items
          read: {table: items}
          write: {table: copy, keys: [id]}
          truncate_strings: true
        - name: other
          read: {table: other}
          write: {table: other_copy}
        """,
        extra="  schema_changes: add\n  drop_columns: true\n",
    )
    services.apply(project.ws)
    info = services.describe(project.ws, "Job", "sync")
    assert info["table_changes"] == {
        "items": {"schema_changes": "add", "drop_columns": True, "truncate_strings": True},
        "other": {"schema_changes": "add", "drop_columns": True, "truncate_strings": False},
    }
    from runner.cli.render.objects import describe_text

    assert "  task items:  schema_changes add, drop_columns, truncate_strings" in describe_text(info)
    rows = services.tasks(project.ws, "sync")
    assert (rows[1]["schema_changes"], rows[1]["drop_columns"], rows[1]["truncate_strings"]) == (
        "add",
        True,
        False,
    )
