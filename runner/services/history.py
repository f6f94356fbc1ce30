"""Runs as the history has them: listings, one run's record with its live status, and run logs."""

from __future__ import annotations

import re
from typing import Any

from runner.definitions.load import DEFAULT_NAMESPACE
from runner.definitions.models import NAME_PATTERN
from runner.errors import (
    NotFound,
)
from runner.history import files as history
from runner.history.records import QUEUED
from runner.runs.index import job_runs, recent_runs
from runner.runs.jobs import parse_applied
from runner.runs.records import with_live_status, with_mode, written
from runner.state.objects import AppliedObject
from runner.workspace import Workspace, find


def logs(ws: Workspace, run_or_job: str, last: bool = False) -> list[dict[str, Any]]:
    """The lines of a run's log: by run id, or the last run of a job with `last`."""
    if last:
        job = find(ws, "Job", run_or_job)
        newest = recent_runs(ws, job.namespace, job.name, 1)
        if not newest:
            raise NotFound(f"job {job.ref} has no runs yet")
        run_or_job = newest[0]["run_id"]
    path = history.find_log(ws.history, run_or_job)
    if path is None:
        raise NotFound(f"no run log for run {run_or_job!r}")
    return history.read_log(path)


def runs(
    ws: Workspace, ref: str, limit: int | None = None, task: str | None = None, changed_only: bool = False
) -> list[dict[str, Any]]:
    """A job's runs, newest first; with `task`, that task's result in each run that ran it.
    `changed_only` leaves out runs that succeeded without writing a row (DataZen's default
    history filter). A name that is not applied but has runs (an ad-hoc job's, a deleted job's)
    lists them too."""
    try:
        job = find(ws, "Job", ref)
    except NotFound:
        namespace, _, name = ref.rpartition("/")
        namespace = namespace or DEFAULT_NAMESPACE
        named = all(re.fullmatch(NAME_PATTERN, part) for part in (namespace, name))
        if task is not None or not named or not (ws.history / namespace / name).is_dir():
            raise
        job = AppliedObject("Job", namespace, name, {}, "", "", 0, 0)
    if task is None:
        out = []
        for record in map(with_mode, job_runs(ws, job.namespace, job.name, changed_only)):
            if changed_only and record.get("status") == "succeeded" and not record.get("rows_written"):
                continue  # a dry run changed nothing either
            out.append(with_live_status(ws, record))
            if limit and len(out) >= limit:
                break
        return out
    spec = parse_applied(ws, job)
    names = spec.task_names()
    if task not in names and not spec.expands_at_run:  # a sync_all job's tables: the index knows them
        raise NotFound(f"job {job.ref} has no task {task!r} (tasks: {', '.join(names)})")
    out = []
    for record in map(with_mode, job_runs(ws, job.namespace, job.name, task=task)):
        result = next((t for t in record.get("tasks", []) if t.get("name") == task), None)
        if changed_only and result and result.get("status") == "succeeded" and not written(result):
            continue
        if result is not None:
            out.append(
                {"run_id": record["run_id"], "started_at": record["started_at"], "mode": record["mode"]}
                | result
            )
            if limit and len(out) >= limit:
                break
    return out


def run_record(ws: Workspace, run_id: str) -> dict[str, Any]:
    """One run's history record, by id."""
    path = history.find_run(ws.history, run_id)
    if path is None:
        raise NotFound(f"no run {run_id!r}")
    return with_live_status(ws, history.read_run(path))


LEVELS = {"debug": 0, "info": 1, "warning": 2, "error": 3}


def log_since(ws: Workspace, run_id: str, after: int = 0, level: str | None = None) -> dict[str, Any]:
    """A run's log lines from line `after` on (to follow a running run's log), at `level` or
    above; `next` is where the next call starts, `running` whether more may come."""
    path = history.find_log(ws.history, run_id)
    if path is None:
        if history.find_run(ws.history, run_id) and run_record(ws, run_id)["status"] == QUEUED:
            return {"run_id": run_id, "lines": [], "next": 0, "running": True}  # its log comes
        raise NotFound(f"no run log for run {run_id!r}")
    entries = history.read_log(path)
    lines = entries[after:]
    if level is not None:
        lines = [e for e in lines if LEVELS.get(e.get("level", "info"), 1) >= LEVELS[level]]
    running = run_record(ws, run_id)["status"] in ("running", QUEUED)
    return {"run_id": run_id, "lines": lines, "next": len(entries), "running": running}
