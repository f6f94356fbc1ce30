"""Version 10: the source's columns at a task's last run, so that the next run tells a change of
the source (a column added, a type widened or narrowed, a column gone) from a target that was
made different on purpose (`runner.connectors.sql.evolve`)."""

from __future__ import annotations

import sqlalchemy as sa


def migrate(conn: sa.Connection) -> None:
    conn.exec_driver_sql("ALTER TABLE task_state ADD COLUMN source_columns TEXT")
