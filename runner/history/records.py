"""A run's record: the JSON history file of one run, typed. Records stay plain dicts (the file
is their source of truth, read back by other releases), described here as `TypedDict`s so
every field the history keeps is named once, with its meaning. New fields may be added;
none is removed or renamed."""

from __future__ import annotations

from typing import Any, Literal, TypedDict

QUEUED, NOT_STARTED = "queued", "not_started"
Status = Literal["queued", "running", "succeeded", "failed", "cancelled", "not_started"]
Failure = Literal["transient", "terminal"]  # a retry may pass / would fail the same way
Mode = Literal["normal", "dry-run", "limited"]


class TaskRecord(TypedDict, total=False):
    """One task of a run (`changes.task.TaskResult` as the history keeps it)."""

    name: str
    source: str  # the table read, or "query"
    target: str
    strategy: str
    # succeeded | failed | skipped | cancelled | interrupted (cut by a kill) | inactive (switched
    # off: `active: false`) | dropped_in_source (a sync_all job's table gone from the source)
    status: str
    rows_read: int
    inserted: int
    updated: int
    upserted: int
    deleted: int
    unchanged: int
    filtered: int  # rows read that a filter of the task's transforms dropped (never written)
    rows_written: int  # 0 in a dry run ...
    rows_would_write: int  # ... which counts here what it would have written
    pointer_before: dict[str, str] | None
    pointer_after: dict[str, str] | None
    read_seconds: float
    write_seconds: float
    seconds: float
    columns: list[dict[str, str]]
    error: str | None
    failure: Failure | None
    # the target table's changes as the source's columns changed: column, change (add | widen |
    # drop), before, after (types), ddl, applied (False: a dry run's, which would be made)
    schema_changes: list[dict[str, Any]]
    truncated: dict[str, int]  # strings cut to their target column's length, per column
    before_run: str | None  # truncate | recreate: what was done to the target table first
    valid_from: str | None  # history mode: the run's timestamp, of the versions it opened or closed
    note: str | None  # why an inactive task did not run; what became of a table dropped in the source
    windows: list[dict[str, Any]]  # a backfill's windows read in the run: from, to (exclusive), rows
    # a split copy's key ranges (`changes.split`): range, from, to (exclusive; None: open), status,
    # by (the worker that committed it), rows_read, seconds, run_id (an earlier run's), error
    ranges: list[dict[str, Any]]


class EventRecord(TypedDict, total=False):
    """One event of a run (`spec.events`) as it ran: `runner.runs.events`."""

    phase: Literal["before", "after"]
    index: int  # its place in `spec.events.before` / `after`
    what: str  # `sql on target`, `command ./hooks/done.sh`
    status: str  # succeeded | failed | skipped (a dry or limited run runs none)
    seconds: float
    exit_code: int | None  # a command's; None when it was stopped at its timeout
    rows_affected: list[int]  # an SQL event's, per statement (-1: the driver did not say)
    error: str
    failure: Failure  # of a failed one (a before-event's is the run's)


class NotificationRecord(TypedDict, total=False):
    """One notification of a run (`spec.notify`): `runner.runs.notify`."""

    channel: Literal["email", "webhook"]
    to: list[str]  # an email's recipients
    url: str  # a webhook's
    status: str  # sent | failed (logged as a warning; the run's status stays)
    error: str


class RunRecord(TypedDict, total=False):
    """One run of a job, from the moment it is queued or started to its end."""

    run_id: str
    job: str
    namespace: str
    options: dict[str, Any]  # the run options that were set (tasks, resync, recreate, dry_run, limit)
    mode: Mode
    trigger: str  # manual, cron <slot>, after <job> <status>, retry N of M, api (key k), ad-hoc
    status: Status
    queued_at: str
    queued_by: dict[str, Any]  # host and pid of the process that accepted it
    started_at: str | None
    finished_at: str | None
    seconds: float | None
    revision: int  # the applied revision of the job it ran
    source: str  # connection refs
    target: str
    adhoc_spec: dict[str, Any]  # what an ad-hoc run ran, for audit
    log: str  # the run log's path
    log_error: str  # why the log lost lines, if it did
    rows_read: int
    rows_written: int
    rows_would_write: int
    tasks: list[TaskRecord]
    failed_tasks: list[str]
    error: str | None
    failure: Failure | None
    events: list[EventRecord]  # the job's before- and after-events, as they ran
    notifications: list[NotificationRecord]  # sent after the record was first written as ended
    path: str  # where the record is (added when read, never written)
