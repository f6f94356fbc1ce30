"""Workers across machines (`runner worker`): their registration and heartbeats in the state
store, and the listing `runner workers` shows (with the runs each holds a job lease for)."""

from __future__ import annotations

import datetime as dt
import os
import socket
from typing import Any

from runner.state import locks
from runner.state.cluster import Worker
from runner.state.database import utcnow
from runner.workspace import Workspace


def register_worker(ws: Workspace, concurrency: int, broker: str) -> Worker:
    """Register this process as a worker (named as the leases it takes name their holder)."""
    now = utcnow()
    worker = Worker(locks.holder(), socket.gethostname(), os.getpid(), now, now, concurrency, broker)
    ws.store().cluster.beat(worker)
    return worker


def worker_heartbeat(ws: Workspace, worker: Worker) -> None:
    ws.store().cluster.beat(worker)


def unregister_worker(ws: Workspace, worker: Worker) -> None:
    ws.store().cluster.leave(worker.name)


def workers(ws: Workspace) -> list[dict[str, Any]]:
    """Every registered worker with its last heartbeat, whether it is alive (a heartbeat
    within a lease's length) and the runs it holds a job's lease for now. A worker silent
    for a day is forgotten."""
    store = ws.store()
    store.cluster.forget_workers(dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
    fresh = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=locks.LEASE_SECONDS)).isoformat()
    held = store.locks.jobs()
    out = []
    for w in store.cluster.workers():
        runs = [
            {
                "job": job,
                "run_id": lock.run_id,
                "since": lock.acquired_at,
                "cancel_requested": lock.cancel_requested,
            }
            for job, lock in held.items()
            if lock.holder == w.name and lock.alive
        ]
        out.append(
            {
                "name": w.name,
                "host": w.host,
                "pid": w.pid,
                "started_at": w.started_at,
                "heartbeat_at": w.heartbeat_at,
                "alive": w.heartbeat_at >= fresh,
                "concurrency": w.concurrency,
                "broker": w.broker,
                "runs": runs,
            }
        )
    return out
