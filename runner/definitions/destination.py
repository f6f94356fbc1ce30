"""Where a task writes and what happens to its table before a run, resolved in one place from
the job's and the task's fields: a job-wide destination `schema` and `table_prefix` (CData
Sync's Destination_Schema and Table_Name_Prefix) and `before_run` (Truncate_Table_Data,
Drop_Table). Every job type with tasks into tables resolves them here, so a `sync` job and a
`sync_all` job name their tables the same way."""

from __future__ import annotations

from runner.definitions.tasks import BeforeRun, Task

KEEP: BeforeRun = "keep"


def target_table(table: str, schema: str | None, prefix: str = "") -> str:
    """The table a task writes: `prefix` before the table's name; `schema` when the task's
    table names none (a task's own schema wins).

    >>> target_table("orders", "dw", "src_"), target_table("raw.orders", "dw", "src_")
    ('dw.src_orders', 'raw.src_orders')
    """
    own, _, name = table.rpartition(".")
    where = own or schema
    return f"{where}.{prefix}{name}" if where else f"{prefix}{name}"


def before_run(job: BeforeRun | None, task: BeforeRun | None) -> BeforeRun:
    """The task's `before_run`, else the job's, else keep."""
    return task or job or KEEP


def resolved_task(task: Task, schema: str | None, prefix: str, job_before_run: BeforeRun | None) -> Task:
    """`task` as it runs: its table named by `target_table`, its `before_run` set."""
    write = task.write.model_copy(update={"table": target_table(task.write.table, schema, prefix)})
    return task.model_copy(update={"write": write, "before_run": before_run(job_before_run, task.before_run)})
