"""Runtime switches: operators' decisions recorded in the state, not in git (suspended jobs,
settings such as the pause), and the daemon's cron marks (the last slot each job was fired for,
so a restart knows whether a slot was missed while it was down)."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from runner.state import schema
from runner.state.database import Concern, utcnow


class SwitchesReader(Concern):
    """What `runner status` and the daemon read."""

    def suspended(self) -> dict[tuple[str, str], tuple[str, str]]:
        """(namespace, name) -> (since, by) of every suspended job."""
        with self.db.read() as conn:
            return {
                (r.namespace, r.name): (r.suspended_at, r.suspended_by)
                for r in conn.execute(sa.select(schema.job_switches))
            }

    def setting(self, key: str) -> tuple[Any, str, str] | None:
        """(value, updated_at, updated_by), or None when never set."""
        table = schema.settings
        with self.db.read() as conn:
            row = conn.execute(sa.select(table).where(table.c.key == key)).first()
        return (json.loads(row.value), row.updated_at, row.updated_by) if row else None

    def schedule_marks(self) -> dict[tuple[str, str], tuple[str, str | None]]:
        """(namespace, name) -> (the last cron slot the daemon fired the job for, ISO in UTC;
        the schedule it was fired by, "cron|timezone")."""
        with self.db.read() as conn:
            return {
                (r.namespace, r.name): (r.last_slot, r.schedule)
                for r in conn.execute(sa.select(schema.schedule_marks))
            }


class Switches(SwitchesReader):
    def set_suspended(self, namespace: str, name: str, suspended: bool, by: str) -> bool:
        """Suspend or resume a job; returns whether that changed anything."""
        table = schema.job_switches
        where = (table.c.namespace == namespace) & (table.c.name == name)
        with self.db.write() as conn:
            was = conn.execute(sa.select(table.c.name).where(where)).first() is not None
            if suspended and not was:
                conn.execute(
                    table.insert().values(
                        namespace=namespace, name=name, suspended_at=utcnow(), suspended_by=by
                    )
                )
            elif not suspended and was:
                conn.execute(table.delete().where(where))
        return was != suspended

    def set_setting(self, key: str, value: Any, by: str) -> None:
        table = schema.settings
        with self.db.write() as conn:
            conn.execute(table.delete().where(table.c.key == key))
            conn.execute(
                table.insert().values(key=key, value=json.dumps(value), updated_at=utcnow(), updated_by=by)
            )

    def claim_setting(self, key: str, value: Any, by: str) -> Any:
        """Set `key` to `value` unless it is set already; returns the value it holds then. Of
        processes racing to set it first (a cluster's members starting together), one wins and
        every one gets the winner's value; none fails on the others' insert."""
        table = schema.settings
        try:
            with self.db.write() as conn:
                row = {"key": key, "value": json.dumps(value), "updated_at": utcnow(), "updated_by": by}
                conn.execute(table.insert().values(**row))
            return value
        except sa.exc.IntegrityError:
            found = self.setting(key)
            if found is None:  # set and removed meanwhile: nothing removes it, but never loop
                raise
            return found[0]

    def forget_schedule_marks(self, keep: set[tuple[str, str]]) -> None:
        """Drop the marks of jobs no longer scheduled, so a job defined again later starts afresh."""
        table, gone = schema.schedule_marks, set(self.schedule_marks()) - keep
        if not gone:
            return
        with self.db.write() as conn:
            for namespace, name in gone:
                conn.execute(table.delete().where((table.c.namespace == namespace) & (table.c.name == name)))

    def set_schedule_mark(self, namespace: str, name: str, slot: str, schedule: str | None = None) -> None:
        self.set_schedule_marks([(namespace, name, slot, schedule)])

    def set_schedule_marks(self, marks: list[tuple[str, str, str, str | None]]) -> None:
        """(namespace, name, slot, schedule) of many jobs in one transaction: an apply of many
        scheduled jobs costs one commit, not one per job."""
        if not marks:
            return
        table = schema.schedule_marks
        # the store's own dialect only, as `Cluster.claim_slots`: PostgreSQL's (with its async
        # drivers' modules) cost every command that opens a SQLite store ~0.02 s
        if self.db.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        insert = dialect_insert(table)
        upsert = insert.on_conflict_do_update(
            index_elements=[table.c.namespace, table.c.name],
            set_={"last_slot": insert.excluded.last_slot, "schedule": insert.excluded.schedule},
        )
        with self.db.write() as conn:  # one statement for the lot (a slot's 500 jobs)
            conn.execute(
                upsert, [{"namespace": n, "name": j, "last_slot": s, "schedule": c} for n, j, s, c in marks]
            )


def delete_job(conn: sa.Connection, namespace: str, name: str) -> None:
    """Drop a job's suspension and cron mark in the caller's transaction (an apply that deletes
    the job): a job created again later starts afresh."""
    for runtime in (schema.job_switches, schema.schedule_marks):
        named = (runtime.c.namespace == namespace) & (runtime.c.name == name)
        conn.execute(runtime.delete().where(named))
