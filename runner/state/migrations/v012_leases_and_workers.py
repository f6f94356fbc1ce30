"""Version 11: scale-out. Locks become leases (`expires_at`, renewed by the holder's heartbeat,
so a lock held by a process on another host that died is taken over once it expires); the
cron slots fired per job, unique, so a new scheduler never fires a slot its predecessor fired;
the run requests handed to workers, so a new scheduler follows the runs of the old one; and
the workers, each with its heartbeat."""

from __future__ import annotations

import sqlalchemy as sa


def migrate(conn: sa.Connection) -> None:
    conn.exec_driver_sql("ALTER TABLE locks ADD COLUMN expires_at VARCHAR(40)")
    v11 = sa.MetaData()
    sa.Table(
        "fired_slots",
        v11,
        sa.Column("namespace", sa.String(63), primary_key=True),
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("slot", sa.String(40), primary_key=True),
        sa.Column("fired_at", sa.String(40), nullable=False),
        sa.Column("fired_by", sa.String(300), nullable=False),
    )
    sa.Table(
        "run_requests",
        v11,
        sa.Column("run_id", sa.String(40), primary_key=True),
        sa.Column("job", sa.String(127), nullable=False),
        sa.Column("request", sa.Text, nullable=False),
        sa.Column("sent_at", sa.String(40), nullable=False),
    )
    sa.Table(
        "workers",
        v11,
        sa.Column("name", sa.String(300), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started_at", sa.String(40), nullable=False),
        sa.Column("heartbeat_at", sa.String(40), nullable=False),
        sa.Column("concurrency", sa.Integer, nullable=False),
        sa.Column("broker", sa.String(300), nullable=False),
    )
    v11.create_all(conn)
