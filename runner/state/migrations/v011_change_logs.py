"""Version 11: the index of the change logs a reader job keeps (one file per run, task and
commit), in the order writers apply them."""

from __future__ import annotations

import sqlalchemy as sa


def migrate(conn: sa.Connection) -> None:
    v11 = sa.MetaData()
    sa.Table(
        "change_logs",
        v11,
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
    v11.create_all(conn)
