"""Version 13: the key ranges of a split full copy (`changes.split`), each committed on its
own by whichever worker took it: what is done survives a worker's crash, so the range it held
is run again alone and the task completes once every range is done."""

from __future__ import annotations

import sqlalchemy as sa


def migrate(conn: sa.Connection) -> None:
    v13 = sa.MetaData()
    sa.Table(
        "task_ranges",
        v13,
        sa.Column("task_id", sa.Integer, primary_key=True),
        sa.Column("idx", sa.Integer, primary_key=True),
        sa.Column("low", sa.BigInteger),
        sa.Column("high", sa.BigInteger),
        sa.Column("planned_by", sa.String(40), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("done_by", sa.String(300)),
        sa.Column("result", sa.Text),
        sa.Column("updated_at", sa.String(40), nullable=False),
    )
    v13.create_all(conn)
