"""Version 7: an index of the history files (filled from the files on first use of each job),
so a listing reads only the run files it shows."""

from __future__ import annotations

import sqlalchemy as sa


def migrate(conn: sa.Connection) -> None:
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
