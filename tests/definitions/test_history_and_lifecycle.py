"""History mode and table lifecycle options that the engine cannot honour are located
`runner validate` errors; the job-wide destination `schema`, `table_prefix` and `before_run`
resolve in one place."""

from __future__ import annotations

import pytest

from runner import services
from runner.definitions.destination import before_run
from runner.definitions.jobs import SyncJobSpec
from runner.definitions.tasks import target_table
from runner.errors import DefinitionsInvalid
from tests.conftest import TWO_SQLITE
from tests.definitions.test_capabilities import MEMORY


def located(project) -> list[str]:
    with pytest.raises(DefinitionsInvalid) as info:
        services.validate(project.ws)
    return [str(p) for p in info.value.problems]


@pytest.mark.parametrize(
    ("task", "message"),
    [
        (
            "{name: t, read: {table: a}, write: {table: b, history: true}}",
            "write.history needs write.keys: a version belongs to a key",
        ),
        (
            "{name: t, read: {table: a}, write: {table: b, keys: [id], history: true, upsert_script: 'x'}}",
            "write.history keeps versions through runner's merge, not write.upsert_script",
        ),
        (
            "{name: t, read: {table: a}, write: {table: b, keys: [id], history: true}, before_run: truncate}",
            "before_run: truncate with write.history would throw the versions away",
        ),
        (
            "{name: t, read: {table: a}, write: {table: b, keys: [id], history: true}, before_run: recreate}",
            "before_run: recreate with write.history would throw the versions away",
        ),
        (
            "{name: t, read: {table: a}, write: {table: b, keys: [id], history: true}, deletes: soft}",
            "in history mode a delete closes the current version; use deletes: propagate",
        ),
        (
            "{name: t, read: {table: a}, write: {table: b, keys: [id], history: {valid_from: id}}}",
            "write.history column 'id' is one of write.keys",
        ),
        (
            "{name: t, read: {table: a}, write: {table: b, keys: [id], history: {current: x, valid_to: x}}}",
            "valid_from, valid_to and current name three different columns",
        ),
    ],
)
def test_history_mode_refuses_what_it_cannot_honour(project, task, message):
    project.write("connections.d/all.yaml", TWO_SQLITE)
    path = project.job("copy", "src", "dst", f"- {task}")
    (line,) = located(project)
    assert line.startswith(f"{path}:8:")
    assert ": spec.tasks[0]" in line
    assert message in line


def test_a_job_wide_truncate_with_a_history_task_is_located_at_the_job(project):
    project.write("connections.d/all.yaml", TWO_SQLITE)
    path = project.job(
        "copy",
        "src",
        "dst",
        """
        - {name: plain, read: {table: a}, write: {table: b}}
        - {name: dim, read: {table: a}, write: {table: c, keys: [id], history: true}}
        - {name: kept, read: {table: a}, write: {table: d, keys: [id], history: true}, before_run: keep}
        """,
        extra="  before_run: truncate\n",
    )
    (line,) = located(project)
    assert line.startswith(f"{path}:7:3: spec.before_run: task 'dim' (tasks[1]): before_run: truncate with ")


def test_before_run_on_a_target_that_cannot_is_refused_at_the_field(project):
    project.write("connections.d/all.yaml", MEMORY)
    path = project.job(
        "copy",
        "db",
        "mem",
        "- {name: t, read: {table: a}, write: {table: b, keys: [id]}, before_run: truncate}",
    )
    (line,) = located(project)
    assert line.startswith(f"{path}:8:")
    assert "spec.tasks[0].before_run: before_run: truncate empties or drops the target table" in line
    assert "which cannot (table_lifecycle)" in line


def test_history_on_a_target_that_cannot_is_refused_at_the_field(project):
    project.write("connections.d/all.yaml", MEMORY)
    project.job(
        "copy", "db", "mem", "- {name: t, read: {table: a}, write: {table: b, keys: [id], history: true}}"
    )
    (line,) = located(project)
    assert "spec.tasks[0].write.history: write.history keeps every version" in line
    assert "which cannot (history)" in line


@pytest.mark.parametrize("bad", ["schema: 'a.b'", "table_prefix: 'x.'", "before_run: drop"])
def test_job_wide_destination_fields_are_checked(project, bad):
    project.write("connections.d/all.yaml", TWO_SQLITE)
    path = project.job(
        "copy", "src", "dst", "- {name: t, read: {table: a}, write: {table: b}}", extra=f"  {bad}\n"
    )
    (line,) = located(project)
    assert line.startswith(f"{path}:7:3: spec.{bad.split(':')[0]}: ")


def test_schema_prefix_and_before_run_resolve_in_one_place():
    assert target_table("orders", None) == "orders"
    assert target_table("orders", "dw", "stg_") == "dw.stg_orders"
    assert target_table("raw.orders", "dw", "stg_") == "raw.stg_orders"  # the task's schema wins
    assert target_table("orders", None, "stg_") == "stg_orders"
    assert before_run(None, None) == "keep"
    assert before_run("truncate", None) == "truncate"
    assert before_run("truncate", "keep") == "keep"  # the task's own value wins
    spec = SyncJobSpec.model_validate(
        {
            "source": "s",
            "target": "t",
            "schema": "dw",
            "table_prefix": "stg_",
            "before_run": "truncate",
            "tasks": [
                {"name": "a", "read": {"table": "a"}, "write": {"table": "a"}},
                {"name": "b", "read": {"table": "b"}, "write": {"table": "raw.b"}, "before_run": "recreate"},
            ],
        }
    )
    assert [(t.write.table, t.before_run) for t in map(spec.resolved, spec.tasks)] == [
        ("dw.stg_a", "truncate"),
        ("raw.stg_b", "recreate"),
    ]
    assert spec.model_dump(mode="json", exclude_unset=True)["schema"] == "dw"  # its YAML name


def test_a_job_wide_before_run_on_a_target_that_cannot_is_located_at_the_job_field(project):
    project.write("connections.d/all.yaml", MEMORY)
    path = project.job(
        "copy",
        "db",
        "mem",
        "- {name: t, read: {table: a}, write: {table: b, keys: [id]}}",
        extra="  before_run: recreate\n",
    )
    (line,) = located(project)
    assert line.startswith(f"{path}:7:3: spec.before_run: before_run: recreate empties or drops")


def test_plan_shows_the_options_as_written(project):
    from runner.cli.render.definitions import plan_text

    project.write("connections.d/all.yaml", TWO_SQLITE)
    project.job("copy", "src", "dst", "- {name: t, read: {table: a}, write: {table: b, keys: [id]}}")
    services.apply(project.ws)
    project.job(
        "copy",
        "src",
        "dst",
        """
        - {name: t, read: {table: a}, write: {table: b, keys: [id], history: true}, before_run: keep}
        - name: u
          read: {table: a}
          write: {table: c, keys: [id], history: {current: now}}
          before_run: keep
        """,
        extra="  schema: main\n  table_prefix: stg_\n  before_run: truncate\n",
    )
    text = plan_text(services.plan(project.ws).to_dict())
    assert "+ spec.tasks[0].write.history: true" in text
    assert '+ spec.tasks[1].write.history.current: "now"' in text
    assert '+ spec.schema: "main"' in text and '+ spec.table_prefix: "stg_"' in text
    assert '+ spec.before_run: "truncate"' in text
