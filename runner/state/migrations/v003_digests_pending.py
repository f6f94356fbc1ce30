"""Version 3: a hash task's mark for a run that stopped between writing the target and
recording its digests, so the next run compares every key instead of trusting them."""

from __future__ import annotations

import sqlalchemy as sa


def migrate(conn: sa.Connection) -> None:
    conn.exec_driver_sql("ALTER TABLE task_state ADD COLUMN digests_pending BOOLEAN NOT NULL DEFAULT FALSE")
