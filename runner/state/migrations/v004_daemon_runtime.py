"""Version 4: the daemon's runtime state: the run holding a job's lock and a request to cancel
it, suspended jobs, settings (the pause), and the last cron slot fired per job (so a restart
knows which slots it missed)."""

from __future__ import annotations

import sqlalchemy as sa


def migrate(conn: sa.Connection) -> None:
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
