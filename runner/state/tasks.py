"""Change detection state, per task of a job: a watermark task's pointer, a hash task's row
digests (and its mark for a run that stopped before recording them). A pointer or a digest is
recorded only after the target committed what it describes, so a run that dies resumes from
what is really there."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from runner.state import schema
from runner.state.database import Concern, Database, utcnow

SET_BY_HAND = "set by "  # how a pointer set by `runner pointer set` names who set it (`run_id`)


@dataclass(frozen=True)
class TaskState:
    id: int
    namespace: str
    job: str
    task: str
    watermark_column: str | None
    pointer: dict[str, Any] | None
    updated_at: str
    run_id: str | None
    digests_pending: bool = False
    reload_pending: str | None = None  # truncate | recreate, not yet followed by a committed load


class TasksReader(Concern):
    """What `runner pointer show` and `runner tasks` read."""

    def states(self, namespace: str, job: str) -> list[TaskState]:
        t = schema.task_state
        with self.db.read() as conn:
            rows = conn.execute(
                sa.select(t).where((t.c.namespace == namespace) & (t.c.job == job)).order_by(t.c.task)
            ).all()
        return [
            TaskState(
                r.id,
                namespace,
                job,
                r.task,
                r.watermark_column,
                json.loads(r.pointer) if r.pointer else None,
                r.updated_at,
                r.run_id,
            )
            for r in rows
        ]

    def find(self, namespace: str, job: str, task: str) -> TaskState | None:
        """A task's state with its marks, None before its first run (a dry run of a job not
        applied yet reads it without making it: `runner plan --data`)."""
        t = schema.task_state
        key = (t.c.namespace == namespace) & (t.c.job == job) & (t.c.task == task)
        with self.db.read() as conn:
            row = conn.execute(sa.select(t).where(key)).first()
        return _state(row, namespace, job, task) if row is not None else None


def _state(row: Any, namespace: str, job: str, task: str) -> TaskState:
    pointer = json.loads(row.pointer) if row.pointer else None
    return TaskState(
        row.id,
        namespace,
        job,
        task,
        row.watermark_column,
        pointer,
        row.updated_at,
        row.run_id,
        bool(row.digests_pending),
        row.reload_pending,
    )


class Tasks(TasksReader):
    """What a run reads and records as it goes, and what `runner pointer set` changes."""

    def __init__(self, db: Database):
        super().__init__(db)
        self.riders: dict[int, list[Callable[[sa.Connection], None]]] = {}

    def with_next_position(self, task_id: int, write: Callable[[sa.Connection], None]) -> None:
        """Make `write` in the transaction that next stores the task's pointer or digests: what
        must be recorded together with them (a change log's index entry, which writers then
        apply, exactly when the task's changes are past the pointer and not read again)."""
        self.riders.setdefault(task_id, []).append(write)

    def _ride(self, conn: sa.Connection, task_id: int) -> None:
        for write in self.riders.pop(task_id, []):
            write(conn)

    def state(self, namespace: str, job: str, task: str) -> TaskState:
        """A task's pointer and digest id, created on first use."""
        t = schema.task_state
        key = (t.c.namespace == namespace) & (t.c.job == job) & (t.c.task == task)
        # read first: a run asks often and the row is there but the first time; the store's
        # write lock (one commit each, hundreds of runs in a daemon) only to make it
        with self.db.read() as conn:
            row = conn.execute(sa.select(t).where(key)).first()
        if row is not None:
            return _state(row, namespace, job, task)
        with self.db.write() as conn:
            row = conn.execute(sa.select(t).where(key)).first()
            if row is None:
                conn.execute(t.insert().values(namespace=namespace, job=job, task=task, updated_at=utcnow()))
                row = conn.execute(sa.select(t).where(key)).one()
        return _state(row, namespace, job, task)

    def set_pointer(
        self, task_id: int, column: str | None, pointer: dict[str, Any] | None, by: str, ride: bool = True
    ) -> None:
        """Record a task's pointer; called only after the target committed what it covers.
        `ride=False`: the pointer is not moved (a note added to it), so what rides on the next
        move (`with_next_position`) waits for it."""
        t = schema.task_state
        with self.db.write() as conn:
            conn.execute(
                t.update()
                .where(t.c.id == task_id)
                .values(
                    watermark_column=column,
                    pointer=json.dumps(pointer) if pointer else None,
                    updated_at=utcnow(),
                    run_id=by,
                )
            )
            if ride:
                self._ride(conn, task_id)

    def source_columns(self, task_id: int) -> list[dict[str, Any]] | None:
        """The source's columns (name and type) at the task's last run; None before the first."""
        t = schema.task_state
        with self.db.read() as conn:
            found = conn.execute(sa.select(t.c.source_columns).where(t.c.id == task_id)).scalar()
        return json.loads(found) if found else None

    def set_source_columns(self, task_id: int, columns: list[dict[str, Any]]) -> None:
        """Record the source's columns once the target table follows them."""
        t = schema.task_state
        text = json.dumps(columns)
        with self.db.read() as conn:  # most runs find them as they were: no commit for that
            if conn.execute(sa.select(t.c.source_columns).where(t.c.id == task_id)).scalar() == text:
                return
        with self.db.write() as conn:
            conn.execute(t.update().where(t.c.id == task_id).values(source_columns=text))

    def set_digests_pending(self, task_id: int, pending: bool) -> None:
        """Mark a hash task whose target may hold rows its digests do not describe yet."""
        t = schema.task_state
        with self.db.read() as conn:  # already so (every run of a settled task): no commit for that
            found = conn.execute(sa.select(t.c.digests_pending).where(t.c.id == task_id)).first()
        if found is not None and bool(found[0]) == pending:
            return
        with self.db.write() as conn:
            conn.execute(t.update().where(t.c.id == task_id).values(digests_pending=pending))

    def forget(self, task_id: int) -> None:
        """Drop a task's pointer and digests: its next run reads everything (a resync)."""
        with self.db.write() as conn:
            conn.execute(schema.row_digests.delete().where(schema.row_digests.c.task_id == task_id))
            conn.execute(
                schema.task_state.update()
                .where(schema.task_state.c.id == task_id)
                .values(pointer=None, watermark_column=None, updated_at=utcnow())
            )

    def begin_reload(self, task_id: int, action: str) -> None:
        """Before a task's table is emptied or dropped (`action`): forget its pointer and
        digests and mark the reload pending, in one transaction, so the next run reads
        everything and does `action` again until `end_reload`."""
        with self.db.write() as conn:
            conn.execute(schema.row_digests.delete().where(schema.row_digests.c.task_id == task_id))
            conn.execute(
                schema.task_state.update()
                .where(schema.task_state.c.id == task_id)
                .values(
                    pointer=None,
                    watermark_column=None,
                    digests_pending=False,
                    reload_pending=action,
                    updated_at=utcnow(),
                )
            )

    def end_reload(self, task_id: int) -> None:
        """The reload committed: the table holds the source (`begin_reload`)."""
        t = schema.task_state
        with self.db.write() as conn:
            conn.execute(t.update().where(t.c.id == task_id).values(reload_pending=None))

    def remove(self, task_id: int) -> None:
        """Drop a task's state altogether (pointer, digests and the task's row): a sync_all
        job's table gone from the source, so a table created again under its name starts from
        scratch and the gone table is reported once."""
        with self.db.write() as conn:
            conn.execute(schema.row_digests.delete().where(schema.row_digests.c.task_id == task_id))
            conn.execute(schema.task_state.delete().where(schema.task_state.c.id == task_id))

    def has_digests(self, task_id: int) -> bool:
        """Whether any digest of the task is stored."""
        d = schema.row_digests
        query = sa.select(d.c.task_id).where(d.c.task_id == task_id).limit(1)
        with self.db.read() as conn:
            return conn.execute(query).first() is not None

    def digests(self, task_id: int, batch_size: int) -> Iterator[tuple[str, str, str]]:
        """(key_hash, row_hash, key_value) of a task in ASCII order of key_hash. Read a page
        at a time in short transactions (keyset pagination): a long read would hold SQLite's
        lock against the digests the same run writes meanwhile."""
        d = schema.row_digests
        after = b""
        while True:
            query = (
                sa.select(d.c.key_hash, d.c.row_hash, d.c.key_value)
                .where((d.c.task_id == task_id) & (d.c.key_hash > after))
                .order_by(d.c.key_hash)  # bytes in their order: the order of their hex
                .limit(batch_size)
            )
            with self.db.read() as conn:
                page = conn.execute(query).all()
            for row in page:
                yield row[0].hex(), row[1].hex(), row[2]
            if len(page) < batch_size:
                return
            after = page[-1][0]

    def write_digests(self, task_id: int, upserts: list[tuple[str, str, str]], deletes: list[str]) -> None:
        """Record digests (md5 hex, stored as their 16 bytes) after the target committed the
        rows they describe."""
        d = schema.row_digests
        unhex = bytes.fromhex
        with self.db.write() as conn:
            for i in range(0, len(deletes), 500):
                chunk = [unhex(k) for k in deletes[i : i + 500]]
                conn.execute(d.delete().where((d.c.task_id == task_id) & d.c.key_hash.in_(chunk)))
            if upserts:  # the driver's executemany: SQLAlchemy's per-row processing cost more
                mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
                conn.exec_driver_sql(
                    "INSERT INTO row_digests (task_id, key_hash, row_hash, key_value) "
                    f"VALUES ({mark}, {mark}, {mark}, {mark}) ON CONFLICT (task_id, key_hash) "
                    "DO UPDATE SET row_hash = excluded.row_hash, key_value = excluded.key_value",
                    [(task_id, unhex(k), unhex(r), v) for k, r, v in upserts],
                )
            self._ride(conn, task_id)


def delete_job(conn: sa.Connection, namespace: str, job: str) -> None:
    """Drop a job's task state and digests in the caller's transaction (an apply that deletes
    the job): a job created again later starts from scratch."""
    ts = schema.task_state
    mine = (ts.c.namespace == namespace) & (ts.c.job == job)
    ids = sa.select(ts.c.id).where(mine).scalar_subquery()
    conn.execute(schema.row_digests.delete().where(schema.row_digests.c.task_id.in_(ids)))
    conn.execute(ts.delete().where(mine))
