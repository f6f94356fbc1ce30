"""Tables of the state store and the migrations that build them.

Migrations are an ordered list of functions, each run in the transaction that records its
version, so a store is never half-migrated (SQLite and PostgreSQL both have transactional
DDL). We do not use Alembic: its script directory, env.py and ini file would ship inside the
package for a handful of tables, and its import costs start-up time on every CLI call; the
version table below is the part of it we need. A migration never imports the current table
definitions: it states the DDL of its own version.
"""

from __future__ import annotations

from collections.abc import Callable

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


def _v1(conn: sa.Connection) -> None:
    """Objects, revisions and locks."""
    v1 = sa.MetaData()
    sa.Table(
        "revisions",
        v1,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("applied_at", sa.String(40), nullable=False),
        sa.Column("user", sa.String(200), nullable=False),
        sa.Column("git_commit", sa.String(64)),
        sa.Column("git_dirty", sa.Boolean),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
    )
    sa.Table(
        "objects",
        v1,
        sa.Column("kind", sa.String(20), primary_key=True),
        sa.Column("namespace", sa.String(63), primary_key=True),
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("file", sa.String(1000), nullable=False),
        sa.Column("line", sa.Integer, nullable=False),
        sa.Column("revision_id", sa.Integer, nullable=False),
    )
    sa.Table(
        "locks",
        v1,
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("lock_id", sa.String(32), nullable=False, unique=True),
        sa.Column("holder", sa.String(300), nullable=False),
        sa.Column("acquired_at", sa.String(40), nullable=False),
    )
    v1.create_all(conn)


def _v2(conn: sa.Connection) -> None:
    """Per-task change detection (watermark pointers, row digests); the host and pid of a
    lock's holder, so a lock left by a killed process can be recognised."""
    v2 = sa.MetaData()
    sa.Table(
        "task_state",
        v2,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("namespace", sa.String(63), nullable=False),
        sa.Column("job", sa.String(63), nullable=False),
        sa.Column("task", sa.String(63), nullable=False),
        sa.Column("watermark_column", sa.String(200)),
        sa.Column("pointer", sa.Text),
        sa.Column("updated_at", sa.String(40), nullable=False),
        sa.Column("run_id", sa.String(40)),
        sa.UniqueConstraint("namespace", "job", "task"),
    )
    sa.Table(
        "row_digests",
        v2,
        sa.Column("task_id", sa.Integer, primary_key=True),
        sa.Column("key_hash", sa.String(32), primary_key=True),
        sa.Column("row_hash", sa.String(32), nullable=False),
        sa.Column("key_value", sa.Text, nullable=False),
    )
    v2.create_all(conn)
    conn.exec_driver_sql("ALTER TABLE locks ADD COLUMN host VARCHAR(255)")
    conn.exec_driver_sql("ALTER TABLE locks ADD COLUMN pid INTEGER")


def _v3(conn: sa.Connection) -> None:
    """A hash task's mark for a run that stopped before recording its digests."""
    conn.exec_driver_sql("ALTER TABLE task_state ADD COLUMN digests_pending BOOLEAN NOT NULL DEFAULT FALSE")


def _v4(conn: sa.Connection) -> None:
    """The daemon's runtime state: the run holding a job's lock and a request to cancel it,
    suspended jobs, settings (pause), and the last cron slot fired per job."""
    conn.exec_driver_sql("ALTER TABLE locks ADD COLUMN run_id VARCHAR(40)")
    conn.exec_driver_sql("ALTER TABLE locks ADD COLUMN cancel_requested VARCHAR(300)")
    v4 = sa.MetaData()
    sa.Table(
        "job_switches",
        v4,
        sa.Column("namespace", sa.String(63), primary_key=True),
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("suspended_at", sa.String(40), nullable=False),
        sa.Column("suspended_by", sa.String(300), nullable=False),
    )
    sa.Table(
        "settings",
        v4,
        sa.Column("key", sa.String(63), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("updated_at", sa.String(40), nullable=False),
        sa.Column("updated_by", sa.String(300), nullable=False),
    )
    sa.Table(
        "schedule_marks",
        v4,
        sa.Column("namespace", sa.String(63), primary_key=True),
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("last_slot", sa.String(40), nullable=False),
    )
    v4.create_all(conn)


def _v5(conn: sa.Connection) -> None:
    """Keys of the HTTP API (a hash and a scope each)."""
    v5 = sa.MetaData()
    sa.Table(
        "api_keys",
        v5,
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("scope", sa.String(20), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("created_by", sa.String(300), nullable=False),
    )
    v5.create_all(conn)


def _v6(conn: sa.Connection) -> None:
    """The schedule a cron mark was made for, so an edited schedule starts afresh."""
    conn.exec_driver_sql("ALTER TABLE schedule_marks ADD COLUMN schedule VARCHAR(300)")


def _v7(conn: sa.Connection) -> None:
    """The index of the history files (filled from the files on first use of each job)."""
    v7 = sa.MetaData()
    sa.Table(
        "runs",
        v7,
        sa.Column("run_id", sa.String(40), primary_key=True),
        sa.Column("namespace", sa.String(63), nullable=False),
        sa.Column("job", sa.String(63), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("started_at", sa.String(40)),
        sa.Column("rows_written", sa.BigInteger, nullable=False),
        sa.Index("runs_by_job", "namespace", "job", "run_id"),
    )
    sa.Table(
        "run_tasks",
        v7,
        sa.Column("run_id", sa.String(40), primary_key=True),
        sa.Column("task", sa.String(63), primary_key=True),
        sa.Column("namespace", sa.String(63), nullable=False),
        sa.Column("job", sa.String(63), nullable=False),
        sa.Index("run_tasks_by_task", "namespace", "job", "task", "run_id"),
    )
    sa.Table(
        "runs_indexed",  # the jobs whose history files are all in the index
        v7,
        sa.Column("namespace", sa.String(63), primary_key=True),
        sa.Column("job", sa.String(63), primary_key=True),
    )
    v7.create_all(conn)


def _v8(conn: sa.Connection) -> None:
    """Row digests stored compactly, about half the size (a hash task keeps one per source
    row: 2M rows took 328 MB): each md5 as 16 bytes rather than 32 hex characters, and in
    SQLite in the primary key's B-tree alone (WITHOUT ROWID) rather than a table and an index
    that both hold the key hashes. The digests are converted, not dropped: dropping them would
    make the next run of every hash task compare every row again."""
    postgresql = conn.dialect.name == "postgresql"
    if postgresql:  # the new table's primary key index takes the old one's name
        conn.exec_driver_sql("ALTER INDEX row_digests_pkey RENAME TO row_digests_v6_pkey")
        unhex = "decode({}, 'hex')"
    else:
        conn.connection.driver_connection.create_function(  # type: ignore[union-attr]
            "runner_unhex", 1, bytes.fromhex, deterministic=True
        )
        unhex = "runner_unhex({})"
    conn.exec_driver_sql("ALTER TABLE row_digests RENAME TO row_digests_v6")
    v7 = sa.MetaData()
    sa.Table(
        "row_digests",
        v7,
        sa.Column("task_id", sa.Integer, primary_key=True),
        sa.Column("key_hash", sa.LargeBinary(16), primary_key=True),
        sa.Column("row_hash", sa.LargeBinary(16), nullable=False),
        sa.Column("key_value", sa.Text, nullable=False),
        sqlite_with_rowid=False,
    )
    v7.create_all(conn)
    conn.exec_driver_sql(
        "INSERT INTO row_digests (task_id, key_hash, row_hash, key_value) SELECT task_id, "
        f"{unhex.format('key_hash')}, {unhex.format('row_hash')}, key_value FROM row_digests_v6"
    )
    conn.exec_driver_sql("DROP TABLE row_digests_v6")


MIGRATIONS: list[Callable[[sa.Connection], None]] = [_v1, _v2, _v3, _v4, _v5, _v6, _v7, _v8]
LATEST = len(MIGRATIONS)
