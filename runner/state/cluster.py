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
from sqlalchemy.dialects import postgresql, sqlite

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
        insert = (postgresql if self.db.engine.dialect.name == "postgresql" else sqlite).insert(table)
        claimed = set()
        with self.db.write() as conn:
            now = utcnow()
            for namespace, name, slot in slots:
                row = {"namespace": namespace, "name": name, "slot": slot, "fired_at": now, "fired_by": by}
                if conn.execute(insert.values(row).on_conflict_do_nothing()).rowcount:
                    claimed.add((namespace, name, slot))
        return claimed

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
