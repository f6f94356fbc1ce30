"""The history's index in the state store: run ids by job and task, so a listing reads only
the files it shows, and old runs can be pruned."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import suppress
from itertools import islice
from typing import Any

from runner.errors import (
    StateError,
)
from runner.history import files as history
from runner.history.records import QUEUED, RunRecord
from runner.workspace import Workspace


def index_run(ws: Workspace, record: RunRecord, first: bool = False) -> None:
    """Put a run in the history's index (`first`: the job's first run, so its index is
    complete); the file stays the record, so an index that cannot be written (the state store
    away: reported on its own) never fails the run."""
    with suppress(StateError):
        ws.store().runs.add([{k: v for k, v in record.items() if k != "path"}])
        if first:
            ws.store().runs.mark_indexed(record["namespace"], record["job"])


RUNS_PAGE = 100  # run ids read from the index at a time


def ensure_indexed(ws: Workspace, namespace: str, job: str) -> None:
    """Index a job's history files once (those written before the index existed)."""
    if ws.reader().runs.indexed(namespace, job) or not (ws.history / namespace / job).is_dir():
        return  # (no runs yet: nothing to write, so a listing never waits for the store's write lock)
    store = ws.store()
    batch: list[dict[str, Any]] = []
    for record in history.iter_runs(ws.history, namespace, job):
        if record.get("run_id") and record.get("namespace") == namespace and record.get("job") == job:
            batch.append({k: v for k, v in record.items() if k != "path"})
        if len(batch) >= 500:
            store.runs.add(batch)
            batch = []
    store.runs.add(batch)
    store.runs.mark_indexed(namespace, job)


def job_runs(
    ws: Workspace, namespace: str, job: str, changed_only: bool = False, task: str | None = None
) -> Iterator[RunRecord]:
    """A job's run records, newest first, read one file at a time as the index lists them:
    a listing reads only the files it shows. `changed_only` and `task` filter in the index."""
    ensure_indexed(ws, namespace, job)
    before = None
    while True:
        ids = ws.reader().runs.ids(namespace, job, RUNS_PAGE, changed_only, task, before)
        for run_id in ids:
            try:
                yield history.read_run(history.run_path(ws.history, namespace, job, run_id))
            except (OSError, ValueError):  # deleted by hand, or being replaced: skip it
                continue
        if len(ids) < RUNS_PAGE:
            return
        before = ids[-1]


def recent_runs(ws: Workspace, namespace: str, job: str, limit: int) -> list[RunRecord]:
    return list(islice(job_runs(ws, namespace, job), limit))


def prune_history(
    ws: Workspace,
    namespace: str,
    job: str,
    keep_runs: int | None = None,
    keep_days: float | None = None,
    now: dt.datetime | None = None,
) -> list[str]:
    """Delete a job's old runs (record and log): those neither among the newest `keep_runs`
    nor started within `keep_days`. Always kept: the last run of each task (what `tasks`
    shows) and runs not ended (running, queued). Returns the ids deleted."""
    if keep_runs is None and keep_days is None:
        return []
    ensure_indexed(ws, namespace, job)
    store = ws.store()
    index = store.runs.all(namespace, job)
    keep = set(store.runs.last_by_task(namespace, job).values())
    keep |= {run_id for run_id, status, _ in index if status in ("running", QUEUED)}
    if keep_runs is not None:
        keep |= {run_id for run_id, _, _ in index[:keep_runs]}
    if keep_days is not None:
        cutoff = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(days=keep_days)
        keep |= {r for r, _, started in index if not started or dt.datetime.fromisoformat(started) >= cutoff}
    gone = [run_id for run_id, _, _ in index if run_id not in keep]
    for run_id in gone:
        history.run_path(ws.history, namespace, job, run_id).unlink(missing_ok=True)
        history.log_path(ws.history, namespace, job, run_id).unlink(missing_ok=True)
    store.runs.forget(gone)
    return gone
