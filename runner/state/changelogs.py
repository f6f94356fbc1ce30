"""The index of the change logs reader jobs keep: which files a task's changes are in, in the
order writers apply them. A file is indexed only once it is complete and synced, so whatever
the index lists a writer can read; a file it does not list was never part of a change log."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from runner.state import schema
from runner.state.database import Concern


@dataclass(frozen=True)
class ChangeLogFile:
    """One indexed change-log file: the changes of a task numbered `first_position` up to
    `last_position`, written by one commit (`part`) of a run."""

    id: int
    namespace: str
    job: str
    task: str
    run_id: str
    part: int
    first_position: int
    rows: int
    upserts: int
    deletes: int
    file: str
    bytes: int
    created_at: str

    @property
    def last_position(self) -> int:
        return self.first_position + self.rows - 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "task": self.task,
            "part": self.part,
            "first_position": self.first_position,
            "last_position": self.last_position,
            "rows": self.rows,
            "upserts": self.upserts,
            "deletes": self.deletes,
            "file": self.file,
            "bytes": self.bytes,
            "created_at": self.created_at,
        }


def _file(row: Any) -> ChangeLogFile:
    return ChangeLogFile(**{name: getattr(row, name) for name in ChangeLogFile.__dataclass_fields__})


class ChangeLogsReader(Concern):
    """What listings and writers read."""

    def of_job(self, namespace: str, job: str) -> list[ChangeLogFile]:
        """A job's change logs, each task's in order (tasks by name)."""
        c = schema.change_logs
        query = (
            sa.select(c)
            .where((c.c.namespace == namespace) & (c.c.job == job))
            .order_by(c.c.task, c.c.first_position)
        )
        with self.db.read() as conn:
            return [_file(row) for row in conn.execute(query)]

    def of_run(self, run_id: str) -> list[ChangeLogFile]:
        """The change logs one run wrote, by task and part."""
        c = schema.change_logs
        query = sa.select(c).where(c.c.run_id == run_id).order_by(c.c.task, c.c.part)
        with self.db.read() as conn:
            return [_file(row) for row in conn.execute(query)]

    def after(self, namespace: str, job: str, task: str, position: int) -> list[ChangeLogFile]:
        """A task's change logs holding changes past `position` (0: every one kept), in order."""
        c = schema.change_logs
        query = (
            sa.select(c)
            .where(
                (c.c.namespace == namespace)
                & (c.c.job == job)
                & (c.c.task == task)
                & (c.c.first_position + c.c.rows - 1 > position)
            )
            .order_by(c.c.first_position)
        )
        with self.db.read() as conn:
            return [_file(row) for row in conn.execute(query)]

    def next_position(self, namespace: str, job: str, task: str) -> int:
        """The position a task's next change takes (1 for its first): retention always keeps a
        task's newest file, so the numbering never starts again."""
        c = schema.change_logs
        query = sa.select(sa.func.max(c.c.first_position + c.c.rows)).where(
            (c.c.namespace == namespace) & (c.c.job == job) & (c.c.task == task)
        )
        with self.db.read() as conn:
            return int(conn.execute(query).scalar() or 1)


class ChangeLogs(ChangeLogsReader):
    """What a reader's run records and its retention removes."""

    def add(self, entry: dict[str, Any], conn: sa.Connection | None = None) -> int:
        """Index a complete, synced file (in `conn`'s transaction, if given); returns its id."""
        if conn is not None:
            result = conn.execute(schema.change_logs.insert().values(**entry))
            return int(result.inserted_primary_key[0])
        with self.db.write() as own:
            return self.add(entry, own)

    def extend(self, id: int, changes: dict[str, Any], conn: sa.Connection | None = None) -> None:
        """Record that an indexed file now holds more changes (`rows`, `upserts`, `deletes`,
        `bytes`): a run's later commit rewrote it with the earlier ones first."""
        c = schema.change_logs
        if conn is not None:
            conn.execute(c.update().where(c.c.id == id).values(**changes))
            return
        with self.db.write() as own:
            self.extend(id, changes, own)

    def remove(self, ids: list[int]) -> None:
        c = schema.change_logs
        with self.db.write() as conn:
            for i in range(0, len(ids), 500):
                conn.execute(c.delete().where(c.c.id.in_(ids[i : i + 500])))
