"""Version 2: per-task change detection (watermark pointers, row digests), and the host and
pid of a lock's holder, so a lock left by a killed process can be recognised."""

from __future__ import annotations

import sqlalchemy as sa


def migrate(conn: sa.Connection) -> None:
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
