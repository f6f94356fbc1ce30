"""Where a task writes and what happens to its table before a run, resolved in one place from
the job's and the task's fields: a job-wide destination `schema` and `table_prefix` (CData
Sync's Destination_Schema and Table_Name_Prefix, applied by the write model of a kind with
tables: `WriteSpec.with_destination`) and `before_run` (Truncate_Table_Data, Drop_Table).
Every job type with tasks into tables resolves them here, so a `sync` job and a `sync_all`
job name their tables the same way."""

from __future__ import annotations

from runner.definitions.tasks import BeforeRun, Task

KEEP: BeforeRun = "keep"


def before_run(job: BeforeRun | None, task: BeforeRun | None) -> BeforeRun:
    """The task's `before_run`, else the job's, else keep."""
    return task or job or KEEP


def resolved_task(task: Task, schema: str | None, prefix: str, job_before_run: BeforeRun | None) -> Task:
    """`task` as it runs: its table named by `target_table` (its kind has tables), its
    `before_run` set."""
    write = task.write.with_destination(schema, prefix)
    return task.model_copy(update={"write": write, "before_run": before_run(job_before_run, task.before_run)})
