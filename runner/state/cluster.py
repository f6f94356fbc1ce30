"""The state a cluster of daemons and workers shares (scale-out): the cron slots fired, each
once whoever fires it; the run requests handed to workers and not ended yet, so whichever
daemon leads follows them to their end; and the workers with their heartbeats.

A unique key on (job, slot) is what makes "never fired twice" hold even when two daemons
both believe they lead for a moment (one whose lease was taken over while the store was out
of its reach): the second insert of a slot is refused, and that daemon does not fire it.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from runner.state import schema
from runner.state.database import Concern, utcnow


@dataclass(frozen=True)
class Worker:
    name: str
    host: str
    pid: int
    started_at: str
    heartbeat_at: str
    concurrency: int
    broker: str


class ClusterReader(Concern):
    def fired(self, namespace: str, name: str) -> list[str]:
        """The slots fired for a job, oldest first."""
        table = schema.fired_slots
        query = sa.select(table.c.slot).where((table.c.namespace == namespace) & (table.c.name == name))
        with self.db.read() as conn:
            return list(conn.execute(query.order_by(table.c.slot)).scalars())

    def requests(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """Run id -> (job, request) of the runs handed to workers and not ended yet."""
        table = schema.run_requests
        with self.db.read() as conn:
            rows = conn.execute(sa.select(table).order_by(table.c.sent_at)).all()
        return {r.run_id: (r.job, json.loads(r.request)) for r in rows}

    def workers(self) -> list[Worker]:
        table = schema.workers
        with self.db.read() as conn:
            rows = conn.execute(sa.select(table).order_by(table.c.name)).all()
        return [
            Worker(r.name, r.host, r.pid, r.started_at, r.heartbeat_at, r.concurrency, r.broker) for r in rows
        ]


class Cluster(ClusterReader):
    def claim_slots(self, slots: list[tuple[str, str, str]], by: str) -> set[tuple[str, str, str]]:
        """Record (namespace, name, slot) as fired, in one transaction; returns those recorded
        now (a slot already recorded, by this daemon or another, is left out: not to fire)."""
        if not slots:
            return set()
        table = schema.fired_slots
        # the store's own dialect only: importing PostgreSQL's (with its async drivers' modules)
        # cost every command that opens a SQLite store ~0.05 s
        if self.db.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        now = utcnow()
        rows = [
            {"namespace": ns, "name": name, "slot": slot, "fired_at": now, "fired_by": by}
            for ns, name, slot in slots
        ]
        # one statement for the lot (a slot of 500 jobs), atomic against another daemon's:
        # the rows it returns are the ones inserted here
        returned = (table.c.namespace, table.c.name, table.c.slot)
        claim = insert(table).on_conflict_do_nothing().returning(*returned)
        with self.db.write() as conn:
            return {(r.namespace, r.name, r.slot) for r in conn.execute(claim, rows)}

    def forget_slots(self, before: dt.datetime) -> None:
        """Drop the record of slots fired before `before` (a mark per job keeps the last one)."""
        table = schema.fired_slots
        with self.db.write() as conn:
            conn.execute(table.delete().where(table.c.fired_at < before.isoformat(timespec="microseconds")))

    def add_request(self, run_id: str, job: str, request: dict[str, Any]) -> None:
        with self.db.write() as conn:
            conn.execute(
                schema.run_requests.insert().values(
                    run_id=run_id, job=job, request=json.dumps(request), sent_at=utcnow()
                )
            )

    def end_request(self, run_id: str) -> None:
        table = schema.run_requests
        with self.db.write() as conn:
            conn.execute(table.delete().where(table.c.run_id == run_id))

    def beat(self, worker: Worker) -> None:
        """Register a worker or renew its heartbeat."""
        table = schema.workers
        with self.db.write() as conn:
            renewed = conn.execute(
                table.update().where(table.c.name == worker.name).values(heartbeat_at=utcnow())
            ).rowcount
            if not renewed:
                conn.execute(table.insert().values(**{**worker.__dict__, "heartbeat_at": utcnow()}))

    def leave(self, name: str) -> None:
        table = schema.workers
        with self.db.write() as conn:
            conn.execute(table.delete().where(table.c.name == name))

    def forget_workers(self, silent_since: dt.datetime) -> list[str]:
        """Drop the workers whose last heartbeat is older than `silent_since` (gone for good)."""
        table = schema.workers
        cutoff = silent_since.isoformat(timespec="microseconds")
        with self.db.write() as conn:
            names = list(conn.execute(sa.select(table.c.name).where(table.c.heartbeat_at < cutoff)).scalars())
            conn.execute(table.delete().where(table.c.heartbeat_at < cutoff))
        return names


@dataclass(frozen=True)
class KeyRange:
    """One range [low, high) of a split task's integer key (None: open on that side)."""

    idx: int
    low: int | None
    high: int | None
    planned_by: str  # the run that cut the ranges
    status: str  # pending | done | failed
    done_by: str | None = None
    result: dict[str, Any] | None = None


class Ranges(Concern):
    """A split full copy's key ranges (`runner.changes.split`)."""

    def of(self, task_id: int) -> list[KeyRange]:
        table = schema.task_ranges
        with self.db.read() as conn:
            query = sa.select(table).where(table.c.task_id == task_id).order_by(table.c.idx)
            rows = conn.execute(query).all()
        return [
            KeyRange(r.idx, r.low, r.high, r.planned_by, r.status, r.done_by, json.loads(r.result or "null"))
            for r in rows
        ]

    def plan(self, task_id: int, bounds: list[tuple[int | None, int | None]], run_id: str) -> None:
        """Record a task's ranges, every one pending (those of an earlier plan dropped)."""
        table = schema.task_ranges
        now = utcnow()
        with self.db.write() as conn:
            conn.execute(table.delete().where(table.c.task_id == task_id))
            for idx, (low, high) in enumerate(bounds):
                conn.execute(
                    table.insert().values(
                        task_id=task_id,
                        idx=idx,
                        low=low,
                        high=high,
                        planned_by=run_id,
                        status="pending",
                        updated_at=now,
                    )
                )

    def retry(self, task_id: int) -> int:
        """Set a task's failed ranges pending again (a new run resuming the split)."""
        table = schema.task_ranges
        with self.db.write() as conn:
            where = (table.c.task_id == task_id) & (table.c.status == "failed")
            update = table.update().where(where).values(status="pending", updated_at=utcnow())
            return conn.execute(update).rowcount

    def finish(self, task_id: int, idx: int, status: str, by: str, result: dict[str, Any]) -> bool:
        """Record a range done (committed) or failed; False when it was not pending any more
        (done by another worker, or the ranges cut again meanwhile): nothing recorded."""
        table = schema.task_ranges
        with self.db.write() as conn:
            where = (table.c.task_id == task_id) & (table.c.idx == idx) & (table.c.status == "pending")
            return bool(
                conn.execute(
                    table.update()
                    .where(where)
                    .values(status=status, done_by=by, result=json.dumps(result), updated_at=utcnow())
                ).rowcount
            )

    def forget(self, task_id: int) -> None:
        """Drop a task's ranges once every one is done (the run's record keeps them)."""
        table = schema.task_ranges
        with self.db.write() as conn:
            conn.execute(table.delete().where(table.c.task_id == task_id))
