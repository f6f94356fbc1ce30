"""The live tables of the state store: what the code reads and writes today.

The migrations that build them, version by version, are in `runner.state.migrations`, and
never import these definitions. A change here goes with a new migration there.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

schema_version = sa.Table(
    "runner_schema",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.String(40), nullable=False),
)

revisions = sa.Table(
    "revisions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("applied_at", sa.String(40), nullable=False),
    sa.Column("user", sa.String(200), nullable=False),
    sa.Column("git_commit", sa.String(64)),
    sa.Column("git_dirty", sa.Boolean),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("summary", sa.Text, nullable=False),  # JSON: counts and changed objects
)

objects = sa.Table(
    "objects",
    metadata,
    sa.Column("kind", sa.String(20), primary_key=True),
    sa.Column("namespace", sa.String(63), primary_key=True),
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("document", sa.Text, nullable=False),  # canonical JSON; secrets only as references
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("file", sa.String(1000), nullable=False),
    sa.Column("line", sa.Integer, nullable=False),
    sa.Column("revision_id", sa.Integer, nullable=False),  # revision that last changed it
)

locks = sa.Table(
    "locks",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("lock_id", sa.String(32), nullable=False, unique=True),
    sa.Column("holder", sa.String(300), nullable=False),
    sa.Column("acquired_at", sa.String(40), nullable=False),
    sa.Column("host", sa.String(255)),  # with pid: a lock whose process died on this host is stale
    sa.Column("pid", sa.Integer),
    sa.Column("run_id", sa.String(40)),  # a job's lock: the run holding it
    sa.Column("cancel_requested", sa.String(300)),  # "by user@host at …": stop at the next batch
    sa.Column("expires_at", sa.String(40)),  # the lease: taken over once passed, unless renewed
)

# Runtime switches: operators' decisions, recorded in the state, not in git.
job_switches = sa.Table(
    "job_switches",
    metadata,
    sa.Column("namespace", sa.String(63), primary_key=True),
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("suspended_at", sa.String(40), nullable=False),
    sa.Column("suspended_by", sa.String(300), nullable=False),
)

settings = sa.Table(
    "settings",
    metadata,
    sa.Column("key", sa.String(63), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),  # JSON
    sa.Column("updated_at", sa.String(40), nullable=False),
    sa.Column("updated_by", sa.String(300), nullable=False),
)

# Keys of the HTTP API: only a hash of each is kept; the key itself is shown once.
api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),  # sha256 hex of the key
    sa.Column("scope", sa.String(20), nullable=False),  # read | operate
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("created_by", sa.String(300), nullable=False),
)

# The daemon's scheduler: the last cron slot each job was fired for, so a restart knows
# whether a slot was missed while it was down.
schedule_marks = sa.Table(
    "schedule_marks",
    metadata,
    sa.Column("namespace", sa.String(63), primary_key=True),
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("last_slot", sa.String(40), nullable=False),
    sa.Column("schedule", sa.String(300)),  # "cron|timezone" the slot belongs to: a new one starts afresh
)


task_state = sa.Table(
    "task_state",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("namespace", sa.String(63), nullable=False),
    sa.Column("job", sa.String(63), nullable=False),
    sa.Column("task", sa.String(63), nullable=False),
    sa.Column("watermark_column", sa.String(200)),  # the column the pointer belongs to
    sa.Column("pointer", sa.Text),  # JSON {"type": ..., "value": ...}: exact, never a float
    sa.Column("updated_at", sa.String(40), nullable=False),
    sa.Column("run_id", sa.String(40)),  # the run (or "set by user@host") that last moved it
    # a hash run between writing the target and recording its digests: the next run compares every key
    sa.Column("digests_pending", sa.Boolean, nullable=False, server_default=sa.false()),
    # truncate | recreate: the table is to be emptied or dropped and loaded whole (until it is)
    sa.Column("reload_pending", sa.String(20)),
    sa.Column("source_columns", sa.Text),  # JSON: the source's columns at the last run (schema changes)
    sa.UniqueConstraint("namespace", "job", "task"),
)

row_digests = sa.Table(
    "row_digests",
    metadata,
    sa.Column("task_id", sa.Integer, primary_key=True),
    sa.Column("key_hash", sa.LargeBinary(16), primary_key=True),  # md5 of the key (bytes order = hex order)
    sa.Column("row_hash", sa.LargeBinary(16), nullable=False),  # md5 of the row
    sa.Column("key_value", sa.Text, nullable=False),  # JSON of the key, to delete it in the target
    sqlite_with_rowid=False,  # the primary key's B-tree holds the rows: no second copy of the keys
)


# An index of the history files (the files stay the record): which runs a job has, newest
# first, with what the listings filter on, so a listing reads only the files it shows.
runs = sa.Table(
    "runs",
    metadata,
    sa.Column("run_id", sa.String(40), primary_key=True),
    sa.Column("namespace", sa.String(63), nullable=False),
    sa.Column("job", sa.String(63), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("started_at", sa.String(40)),  # None while queued
    sa.Column("rows_written", sa.BigInteger, nullable=False),
    sa.Index("runs_by_job", "namespace", "job", "run_id"),
)

run_tasks = sa.Table(  # the tasks each run ran: a task's last run without reading the files
    "run_tasks",
    metadata,
    sa.Column("run_id", sa.String(40), primary_key=True),
    sa.Column("task", sa.String(63), primary_key=True),
    sa.Column("namespace", sa.String(63), nullable=False),
    sa.Column("job", sa.String(63), nullable=False),
    sa.Index("run_tasks_by_task", "namespace", "job", "task", "run_id"),
)


runs_indexed = sa.Table(
    "runs_indexed",
    metadata,
    sa.Column("namespace", sa.String(63), primary_key=True),
    sa.Column("job", sa.String(63), primary_key=True),
)


# The change logs a reader job keeps (`runner.connectors.changelog_files`): one file per run,
# task and commit; `first_position` numbers a task's changes in the order writers apply them.
change_logs = sa.Table(
    "change_logs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("namespace", sa.String(63), nullable=False),
    sa.Column("job", sa.String(63), nullable=False),
    sa.Column("task", sa.String(63), nullable=False),
    sa.Column("run_id", sa.String(40), nullable=False),
    sa.Column("part", sa.Integer, nullable=False),
    sa.Column("first_position", sa.BigInteger, nullable=False),
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("upserts", sa.BigInteger, nullable=False),
    sa.Column("deletes", sa.BigInteger, nullable=False),
    sa.Column("file", sa.String(2000), nullable=False),
    sa.Column("bytes", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.UniqueConstraint("namespace", "job", "task", "first_position"),
    sa.Index("change_logs_by_run", "run_id"),
)


# Scale-out (`runner.state.cluster`): the cron slots fired per job, once each whoever fires them;
# the run requests handed to workers and not ended yet; the workers and their heartbeats.
fired_slots = sa.Table(
    "fired_slots",
    metadata,
    sa.Column("namespace", sa.String(63), primary_key=True),
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("slot", sa.String(40), primary_key=True),
    sa.Column("fired_at", sa.String(40), nullable=False),
    sa.Column("fired_by", sa.String(300), nullable=False),
)

run_requests = sa.Table(
    "run_requests",
    metadata,
    sa.Column("run_id", sa.String(40), primary_key=True),
    sa.Column("job", sa.String(127), nullable=False),  # namespace/name
    sa.Column("request", sa.Text, nullable=False),  # JSON: trigger, attempt, options
    sa.Column("sent_at", sa.String(40), nullable=False),
)

workers = sa.Table(
    "workers",
    metadata,
    sa.Column("name", sa.String(300), primary_key=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started_at", sa.String(40), nullable=False),
    sa.Column("heartbeat_at", sa.String(40), nullable=False),
    sa.Column("concurrency", sa.Integer, nullable=False),
    sa.Column("broker", sa.String(300), nullable=False),  # redacted: scheme, host and port only
)

# A split full copy's key ranges (`runner.changes.split`): [low, high) of the task's integer key
# (None: open), pending until the worker that ran it committed it; `result` is its counts (JSON).
# Who runs a range now is the holder of its lease (`locks.range_lock`).
task_ranges = sa.Table(
    "task_ranges",
    metadata,
    sa.Column("task_id", sa.Integer, primary_key=True),  # task_state.id
    sa.Column("idx", sa.Integer, primary_key=True),
    sa.Column("low", sa.BigInteger),
    sa.Column("high", sa.BigInteger),
    sa.Column("planned_by", sa.String(40), nullable=False),  # the run that cut the ranges
    sa.Column("status", sa.String(20), nullable=False),  # pending | done | failed
    sa.Column("done_by", sa.String(300)),  # the worker (lock holder) that committed or failed it
    sa.Column("result", sa.Text),  # JSON: rows_read, inserted, updated, deleted, seconds, error
    sa.Column("updated_at", sa.String(40), nullable=False),
)
