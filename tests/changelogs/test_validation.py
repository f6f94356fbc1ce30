"""What `runner validate` refuses of reader and writer steps, each at its file, line and field:
a writer's source that does not exist or keeps no change logs, a writer's task its reader does
not have, a writer without a target or keys, change logs asked of a job with a target."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from runner import services
from runner.cli.app import app
from runner.errors import DefinitionsInvalid

CONNECTIONS = """
apiVersion: runner/v1
kind: Connection
metadata: {name: src}
spec: {type: sqlite, url: "sqlite:///src.db"}
---
apiVersion: runner/v1
kind: Connection
metadata: {name: dst}
spec: {type: sqlite, url: "sqlite:///dst.db"}
"""
READER = """
apiVersion: runner/v1
kind: Job
metadata: {name: reader}
spec:
  source: src
  tasks:
    - {name: customers, read: {table: main.customers}, write: {keys: [id]}, changes: {strategy: hash}}
---
apiVersion: runner/v1
kind: Job
metadata: {name: copy}
spec:
  source: src
  target: dst
  tasks:
    - {name: customers, read: {table: customers}, write: {table: customers}}
"""


def problems(project, writer: str) -> list[str]:
    """Each problem as `file:line: field: message` (the file relative to the folder)."""
    project.write("connections.d/all.yaml", CONNECTIONS)
    project.write("jobs.d/reader.yaml", READER)
    project.write("jobs.d/writer.yaml", writer)
    with pytest.raises(DefinitionsInvalid) as info:
        services.validate(project.ws)
    found = []
    for p in info.value.problems:
        where = Path(p.location.file).relative_to(project.root)
        found.append(f"{where}:{p.location.line}: {p.location.field}: {p.message}")
    return found


def test_a_reader_and_its_writer_are_valid_by_task_name_or_table(project):
    project.write("connections.d/all.yaml", CONNECTIONS)
    project.write("jobs.d/reader.yaml", READER)
    project.write(
        "jobs.d/writer.yaml",
        """
        apiVersion: runner/v1
        kind: Job
        metadata: {name: w}
        spec:
          source: {job: reader}
          target: dst
          tasks:
            - {name: a, read: {table: main.customers}, write: {table: a, keys: [id]}, deletes: propagate}
        """,
    )
    services.validate(project.ws)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("nope", "jobs.d/writer.yaml:5: spec.source.job: job 'nope' does not exist"),
        ("copy", "jobs.d/writer.yaml:5: spec.source.job: job 'copy' keeps no change logs"),
    ],
)
def test_a_writer_s_source_is_a_reader_that_exists(project, source, message):
    found = problems(
        project,
        f"""
        apiVersion: runner/v1
        kind: Job
        metadata: {{name: w}}
        spec:
          source: {{job: {source}}}
          target: dst
          tasks:
            - {{name: a, read: {{table: customers}}, write: {{table: a, keys: [id]}}}}
        """,
    )
    assert len(found) == 1 and found[0].startswith(message), found


def test_a_writer_s_tasks_name_tasks_of_its_reader_once(project):
    found = problems(
        project,
        """
        apiVersion: runner/v1
        kind: Job
        metadata: {name: w}
        spec:
          source: {job: reader}
          target: dst
          tasks:
            - {name: a, read: {table: orders}, write: {table: a, keys: [id]}}
            - {name: b, read: {table: customers}, write: {table: b, keys: [id]}}
            - {name: c, read: {table: main.customers}, write: {table: c, keys: [id]}}
        """,
    )
    assert found == [
        "jobs.d/writer.yaml:8: spec.tasks[0].read.table: job 'reader' has no task 'orders' "
        "(by name or table)",
        "jobs.d/writer.yaml:10: spec.tasks[2].read.table: tasks[1] applies task 'customers' of job 'reader' "
        "already: a writer applies each of its reader's tasks once",
    ]


def test_a_writer_needs_a_target_and_keys_and_states_no_strategy(project):
    found = problems(
        project,
        """
        apiVersion: runner/v1
        kind: Job
        metadata: {name: w}
        spec:
          source: {job: reader}
          change_log: {keep_files: 3}
          tasks:
            - {name: a, read: {table: customers}, write: {table: a}, changes: {strategy: full}}
        """,
    )
    assert any("spec.target: a writer (source: {job: …}) needs a target connection" in p for p in found), (
        found
    )
    assert any(
        p.startswith("jobs.d/writer.yaml:6: spec.change_log: a writer keeps no change logs") for p in found
    )
    assert any(": spec.tasks[0].write.keys: a writer merges its reader's changes by key" in p for p in found)
    assert any(
        ": spec.tasks[0].changes: a writer applies its reader's change logs in order" in p for p in found
    )


def test_change_logs_of_a_job_with_a_target_are_refused_where_not_implemented(project):
    found = problems(
        project,
        """
        apiVersion: runner/v1
        kind: Job
        metadata: {name: w}
        spec:
          source: src
          target: dst
          change_log: {keep_days: 7}
          tasks:
            - {name: a, read: {table: customers}, write: {table: a}}
            - name: b
              read: {table: customers}
              write: {table: b, keys: [id]}
              changes: {strategy: watermark, column: id}
              deletes: propagate
            - name: c
              read: {table: customers}
              write: {table: c, keys: [id]}
              changes: {strategy: hash}
              deletes: propagate
        """,
    )
    assert found == [
        "jobs.d/writer.yaml:9: spec.tasks[0].changes.strategy: a job with a target keeps change logs of "
        "tasks of strategy hash, watermark or cdc, not 'full': a full task empties its table (without keys) "
        "or deletes the rows it did not read inside the database, so its deletes are never keys a change log "
        "can hold, and it stores no position for the change log's index to be written with; strategy hash "
        "reads every row too and logs its changes",
        "jobs.d/writer.yaml:14: spec.tasks[1].deletes: a watermark task of a job with a target and change "
        "logs takes deletes: ignore (the deletes it finds by comparing keys are not in its change logs yet); "
        "use strategy hash to log deletes",
    ]


def test_a_messages_task_keeps_no_change_logs_and_a_cdc_task_does(project):
    project.write(
        "connections.d/more.yaml",
        """
        apiVersion: runner/v1
        kind: Connection
        metadata: {name: rabbit}
        spec: {type: rabbitmq, host: 127.0.0.1}
        ---
        apiVersion: runner/v1
        kind: Connection
        metadata: {name: pg}
        spec: {type: postgresql, url: "postgresql+psycopg://u@127.0.0.1/db"}
        """,
    )
    project.write(
        "jobs.d/cdc.yaml",
        """
        apiVersion: runner/v1
        kind: Job
        metadata: {name: follow}
        spec:
          source: pg
          target: dst
          change_log: {keep_files: 3}
          tasks:
            - name: a
              read: {table: public.items}
              write: {table: items, keys: [id]}
              changes: {strategy: cdc}
              deletes: propagate
        """,
    )
    found = problems(
        project,
        """
        apiVersion: runner/v1
        kind: Job
        metadata: {name: w}
        spec:
          source: rabbit
          target: dst
          change_log: {keep_days: 7}
          tasks:
            - name: a
              read: {queue: q, columns: {id: bigint}}
              write: {table: a, keys: [id]}
              changes: {strategy: messages}
        """,
    )
    assert found == [
        "jobs.d/writer.yaml:12: spec.tasks[0].changes.strategy: a job with a target keeps change logs of "
        "tasks of strategy hash, watermark or cdc, not 'messages': a messages task's position is the "
        "broker's acknowledgement, which cannot be taken in one transaction with the change log's index: "
        "a kill between the two would leave the changes out of the log or list them twice",
    ]


def test_a_writer_may_follow_a_job_with_a_target_and_change_logs(project):
    project.write("connections.d/all.yaml", CONNECTIONS)
    project.write(
        "jobs.d/writer.yaml",
        """
        apiVersion: runner/v1
        kind: Job
        metadata: {name: copy}
        spec:
          source: src
          target: dst
          change_log: {keep_files: 3}
          tasks:
            - {name: c, read: {table: customers}, write: {table: c, keys: [id]}, changes: {strategy: hash}}
        ---
        apiVersion: runner/v1
        kind: Job
        metadata: {name: w}
        spec:
          source: {job: copy}
          target: dst
          tasks:
            - {name: c, read: {table: c}, write: {table: c2, keys: [id]}}
        """,
    )
    services.validate(project.ws)  # raises DefinitionsInvalid with any problem


def test_a_reader_s_change_log_connection_is_a_files_connection(project):
    found = problems(
        project,
        """
        apiVersion: runner/v1
        kind: Job
        metadata: {name: w}
        spec:
          source: src
          change_log: {connection: dst}
          tasks:
            - {name: a, read: {table: customers}, write: {keys: [id]}}
        """,
    )
    assert found == [
        "jobs.d/writer.yaml:6: spec.change_log.connection: connection 'dst' is of type 'sqlite': change logs "
        "are kept in a 'files' connection's folder"
    ]


def test_validate_exits_1_naming_the_field(project):
    problems(
        project,
        """
        apiVersion: runner/v1
        kind: Job
        metadata: {name: w}
        spec:
          source: {job: ghost}
          target: dst
          tasks: [{name: a, read: {table: customers}, write: {table: a, keys: [id]}}]
        """,
    )
    result = CliRunner().invoke(app, ["--dir", str(project.root), "validate"])
    assert result.exit_code == 1
    assert "jobs.d/writer.yaml:5:12: spec.source.job: job 'ghost' does not exist" in result.output
