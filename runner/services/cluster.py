"""Workers across machines (`runner worker`): their registration and heartbeats in the state
store, the listing `runner workers` shows (with the runs each holds a job lease for), and the
check that every member of a cluster records runs in one shared history folder.

Why a shared folder for the history and the run logs (and not the state store): the JSON files
stay the record (the state store indexes them), `runner logs --follow` tails a file as it is
written, and a run's log can be as long as its run; a folder on a shared mount (NFS, SMB, a
cloud file share) gives every daemon, worker, `runner history` and the API the same files
with no new storage code. The state store holds a random id that the folder holds too, so a
worker pointed at a local folder by mistake refuses to start instead of hiding its runs.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import uuid
from pathlib import Path
from typing import Any

from runner.errors import RunnerError
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
    within a lease's length), the runs it holds a job's lease for now and the key ranges of
    split copies it runs (for its own runs or another worker's). A worker silent for a day is
    forgotten."""
    store = ws.store()
    store.cluster.forget_workers(dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
    fresh = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=locks.LEASE_SECONDS)).isoformat()
    held = store.locks.jobs()
    ranges = store.locks.ranges()
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
        split = [
            {"job": job, "run_id": lock.run_id, "task": task, "range": idx, "since": lock.acquired_at}
            for (job, task, idx), lock in ranges.items()
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
                "ranges": split,
            }
        )
    return out


HISTORY_ID_FILE = ".runner-cluster-id"  # in the history folder: the id the state store holds too
HISTORY_ID = "history_folder_id"  # its settings key


def _create_id_file(path: Path, value: str) -> str:
    """Write `value` as the folder's id unless another process wrote one first (the file is
    complete before it appears: linked from a file of this process's own); the id it holds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    own = path.with_name(f".{path.name}.{uuid.uuid4().hex}")  # hosts sharing the folder share pids
    own.write_text(value + "\n", encoding="utf-8")
    try:
        os.link(own, path)
    except FileExistsError:
        value = path.read_text(encoding="utf-8").strip()
    except OSError:  # a share without hard links: renamed in whole instead (the last racer's)
        own.replace(path)
        return value
    finally:
        own.unlink(missing_ok=True)
    return value


def check_shared_history(ws: Workspace) -> None:
    """Make sure this process records runs where the rest of its cluster does: the history
    folder holds the id the state store holds. The first member of a cluster sets both.

    Raises:
        RunnerError: the folder is not the cluster's (no id, or another one).
    """
    store = ws.store(create=True)
    path = ws.history / HISTORY_ID_FILE
    stored = store.switches.setting(HISTORY_ID)  # before the file: an id is stored only after
    on_disk = path.read_text(encoding="utf-8").strip() if path.is_file() else None  # its file is
    if stored is None:  # the first member sets both; of members starting together, one wins each
        if on_disk is None:
            on_disk = _create_id_file(path, uuid.uuid4().hex)
        stored = (store.switches.claim_setting(HISTORY_ID, on_disk, locks.holder()),)
    if on_disk != stored[0]:
        found = "missing" if on_disk is None else "another"
        raise RunnerError(
            f"the history folder {ws.history} is not the one the other daemons and workers of this "
            f"state store record runs in (its {HISTORY_ID_FILE} is {found}); point every member of the "
            "cluster at one shared folder (--history or RUNNER_HISTORY "
            "on a shared mount), so that every run is in `runner history` and `runner logs`"
        )
