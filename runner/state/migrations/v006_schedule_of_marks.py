"""Version 6: the schedule a cron mark was made for ("cron|timezone"), so an edited schedule
starts afresh instead of catching up on slots of the old one."""

from __future__ import annotations

import sqlalchemy as sa


def migrate(conn: sa.Connection) -> None:
    conn.exec_driver_sql("ALTER TABLE schedule_marks ADD COLUMN schedule VARCHAR(300)")
