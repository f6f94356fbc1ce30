"""Run records: the history JSON of a run as it is queued, started, ended, or found
interrupted, with the fields listings show (mode, live status, what was committed)."""

from __future__ import annotations

import os
import socket
from dataclasses import asdict
from pathlib import Path
from typing import Any

from runner.changes.task import COMMITTED, WINDOW_DONE, RunOptions, TaskResult
from runner.errors import (
    HistoryUnwritable,
)
from runner.history import files as history
from runner.history.records import NOT_STARTED, QUEUED, RunRecord, TaskRecord
from runner.runs.index import index_run
from runner.state import locks
from runner.state.database import utcnow
from runner.state.locks import Lock
from runner.workspace import Workspace


def run_summary(record: RunRecord) -> RunRecord:
    keys = (
        "run_id",
        "status",
        "mode",
        "started_at",
        "finished_at",
        "seconds",
        "rows_read",
        "rows_written",
        "rows_would_write",
        "error",
        "path",
    )
    return {k: record.get(k) for k in keys}


def run_mode(options: dict[str, Any]) -> str:
    """`limited` (a test run of at most N rows a task, always dry), `dry-run` (counts what
    would change, writes nothing) or `normal`, from a run's options: history, status and the
    page show it, so such runs are never taken for real ones."""
    if options.get("limit") is not None:
        return "limited"
    return "dry-run" if options.get("dry_run") else "normal"


def task_dict(result: TaskResult, dry_run: bool = False) -> TaskRecord:
    """A task's result as the history keeps it; in a dry run its counts are what it would
    have written (`rows_would_write`), and `rows_written` is 0: nothing was."""
    if dry_run:
        return asdict(result) | {"rows_written": 0, "rows_would_write": result.rows_written}
    return asdict(result) | {"rows_written": result.rows_written}


def with_committed(record: RunRecord) -> RunRecord:
    """A record cut short, with what its tasks had committed (from the run log's lines after
    each commit) in place of the counts of tasks that never ended."""
    ended = {t.get("name") for t in record.get("tasks", [])}
    log = Path(record.get("log") or "")
    windows = history.logged_lists(log, WINDOW_DONE, ("from", "to", "rows"))
    cut = [
        {"name": name, "status": "interrupted", **counts}
        | {"rows_written": sum(counts[k] for k in ("inserted", "updated", "upserted", "deleted"))}
        | ({"windows": windows[name]} if name in windows else {})
        for name, counts in history.committed_counts(log, COMMITTED).items()
        if name not in ended
    ]
    if not cut:
        return record
    tasks = [*record.get("tasks", []), *cut]
    return record | {
        "tasks": tasks,
        "rows_read": sum(t.get("rows_read") or 0 for t in tasks),
        "rows_written": sum(t.get("rows_written") or 0 for t in tasks),
    }


def new_record(
    run_id: str,
    namespace: str,
    job: str,
    options: RunOptions,
    trigger: str,
    status: str,
    started_at: str | None,
    **fields: Any,
) -> RunRecord:
    """A run's first history record: one shape for a run accepted (queued) and one started,
    with what only one of them knows in `fields`."""
    return {
        "run_id": run_id,
        "job": job,
        "namespace": namespace,
        "options": {k: v for k, v in asdict(options).items() if v},
        "mode": run_mode(asdict(options)),
        "trigger": trigger,
        "status": status,
        "started_at": started_at,
        "finished_at": None,
        "seconds": None,
        "rows_read": 0,
        "rows_written": 0,
        "tasks": [],
        "error": None,
        **fields,
    }


def record_queued(ws: Workspace, ref: str, run_id: str, trigger: str, options: RunOptions) -> RunRecord:
    """Record a run accepted but not started yet (the API answered 202 with its id), so the id
    resolves whatever happens next: the run's start overwrites it, or `record_not_started`
    says why it never started.

    Raises:
        HistoryUnwritable: the record cannot be written; the run must not be accepted.
    """
    namespace, _, name = ref.partition("/")
    record = new_record(
        run_id,
        namespace,
        name,
        options,
        trigger,
        QUEUED,
        started_at=None,
        queued_at=utcnow(),
        queued_by={"host": socket.gethostname(), "pid": os.getpid()},
    )
    path = history.run_path(ws.history, namespace, name, run_id)
    first = not path.parent.is_dir()
    try:
        history.write_atomic(path, record)
        index_run(ws, record, first)
    except OSError as exc:
        raise HistoryUnwritable(
            f"the history folder {ws.history} cannot be written ({exc.strerror}): no run starts"
        ) from None
    return record


def record_not_started(ws: Workspace, ref: str, run_id: str, reason: str) -> None:
    """Turn a queued run's record into one that says why it never started. Left alone when
    the run started after all (its own record is there)."""
    namespace, _, name = ref.partition("/")
    path = history.run_path(ws.history, namespace, name, run_id)
    try:
        record = history.read_run(path)
    except (OSError, ValueError):
        return
    if record.get("status") == QUEUED:
        record = {k: v for k, v in record.items() if k != "path"}
        record |= {"status": NOT_STARTED, "error": reason, "finished_at": utcnow()}
        history.write_atomic(path, record)
        index_run(ws, record)


def with_mode(record: RunRecord) -> RunRecord:
    """A record written before runs had a `mode` gets it from its options; a dry run's counts
    there moved to `rows_would_write`, as a new record has them."""
    if "mode" in record:
        return record
    mode = run_mode(record.get("options") or {})
    if mode != "dry-run":
        return record | {"mode": mode}
    tasks = [t | {"rows_written": 0, "rows_would_write": written(t)} for t in record.get("tasks", [])]
    return record | {
        "mode": mode,
        "rows_written": 0,
        "rows_would_write": record.get("rows_written") or 0,
        "tasks": tasks,
    }


def mark_interrupted(ws: Workspace, record: RunRecord) -> RunRecord | None:
    """Rewrite a `running` record whose process died as `interrupted`, so the history says
    how it ended; None when the run is in fact still going on."""
    live = with_live_status(ws, record)
    if live["status"] != "interrupted":
        return None
    path = Path(record["path"])
    stored = {k: v for k, v in live.items() if k != "path"} | {"finished_at": None}
    history.write_atomic(path, stored)
    index_run(ws, stored)
    return stored


def interrupt_holder(ws: Workspace, lock: Lock) -> RunRecord | None:
    """Record as interrupted the run that held `lock`, a job's lock taken over from a holder
    that is gone (its lease expired, on whatever host it ran); None when there was no such
    run, or its record already says how it ended."""
    job = locks.job_of(lock.name)
    if job is None or not lock.run_id:
        return None
    path = history.run_path(ws.history, *job.split("/", 1), lock.run_id)
    try:
        record = history.read_run(path)
    except (OSError, ValueError):
        return None
    if record.get("status") != "running":
        return None
    return mark_interrupted(ws, record | {"path": str(path)})


def written(task: TaskRecord) -> int:
    if "rows_written" in task:
        return int(task["rows_written"] or 0)
    return sum(task.get(k) or 0 for k in ("inserted", "updated", "upserted", "deleted"))


def with_live_status(ws: Workspace, record: RunRecord) -> RunRecord:
    """A record that says `running` while no live process holds the job's lock for it was
    left by a process that died (kill -9, a crash): it reads `interrupted`. One that says
    `queued` while the process that accepted it is gone reads `not_started`."""
    record = with_mode(record)
    if record.get("status") == QUEUED:
        by = record.get("queued_by") or {}
        lock = Lock("", "", "", "", by.get("host"), by.get("pid"))
        if lock.alive:
            return record
        return record | {"status": NOT_STARTED, "error": "the daemon stopped before the run started"}
    if record.get("status") != "running":
        return record
    held = ws.reader().locks.info(locks.job_lock(f"{record['namespace']}/{record['job']}"))
    if held is not None and held.run_id == record["run_id"] and held.alive:
        return record
    try:  # the run may have ended between the record's read and the lock's: its file says
        path = history.run_path(ws.history, record["namespace"], record["job"], record["run_id"])
        now = history.read_run(path)
    except (OSError, ValueError):
        now = record
    if now.get("status") != "running":
        return with_mode(now) | ({"path": record["path"]} if "path" in record else {})
    error = "the process running it ended without finishing it"
    return with_committed(record) | {"status": "interrupted", "error": error}
