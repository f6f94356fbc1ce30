"""Version 9: a task's table to be loaded again (`before_run` truncate or recreate, `runner run
--recreate`), recorded before the table is emptied or dropped and cleared once the load
committed, so a run killed in between (MariaDB commits a DROP by itself) is followed by one
that does it again and reads everything, never by one that trusts a pointer."""

from __future__ import annotations

import sqlalchemy as sa


def migrate(conn: sa.Connection) -> None:
    conn.exec_driver_sql("ALTER TABLE task_state ADD COLUMN reload_pending VARCHAR(20)")
