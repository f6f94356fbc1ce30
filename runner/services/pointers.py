"""Watermark pointers shown and set by hand (`runner pointer`), under the job's lock so a
running job never sees its pointer move."""

from __future__ import annotations

from typing import Any

from runner.definitions.jobs import JobSpec
from runner.definitions.sync_all import SyncAllJobSpec
from runner.errors import (
    InvalidValue,
    JobBusy,
    LockTimeout,
    NotFound,
    RunnerError,
)
from runner.history import files as history
from runner.jobs.sync import sync_spec
from runner.runs.jobs import job_and_connections
from runner.state import locks, tasks
from runner.state.objects import AppliedObject
from runner.streams import pointers
from runner.workspace import Workspace


def pointer_show(ws: Workspace, ref: str) -> list[dict[str, Any]]:
    """Every task of a job with its stored pointer."""
    job, parsed, _ = job_and_connections(ws, ref)
    states = {s.task: s for s in ws.reader().tasks.states(job.namespace, job.name)}
    if isinstance(parsed, SyncAllJobSpec):  # its tasks are the tables it ran: those with a state
        return [
            {
                "task": s.task,
                "strategy": "watermark" if s.watermark_column else None,
                "column": s.watermark_column,
                "pointer": s.pointer,
                "updated_at": s.updated_at if s.pointer else None,
                "by": s.run_id if s.pointer else None,
            }
            for s in states.values()
        ]
    spec = sync_spec(parsed, job.ref)
    out = []
    for task in spec.tasks:
        state = states.get(task.name)
        current = state.pointer if state and state.watermark_column == task.changes.column else None
        out.append(
            {
                "task": task.name,
                "strategy": spec.resolved(task).changes.strategy,  # a writer's: messages
                "column": task.changes.column,
                "pointer": current,
                "updated_at": state.updated_at if state and current else None,
                "by": state.run_id if state and current else None,
            }
        )
    return out


MAX_POINTER = 1000  # characters of a pointer given by hand


def pointer_set(
    ws: Workspace, ref: str, task_name: str, value: str | None, by: str | None = None
) -> dict[str, Any]:
    """Set a watermark task's pointer (None clears it: the next run reads everything), as
    DataZen's settspointer does; the change is recorded in the job's pointer log. It holds the
    job's lock meanwhile: a run cannot start between the check and the write."""
    job, parsed, _ = job_and_connections(ws, ref)
    column = _watermark_column(ws, job, parsed, task_name)
    if value is not None and len(value) > MAX_POINTER:
        raise InvalidValue(f"a pointer is at most {MAX_POINTER} characters", "value")
    store = ws.store()
    try:
        lock_id = store.locks.acquire(locks.job_lock(job.ref), timeout=0)
    except LockTimeout:
        held = store.locks.info(locks.job_lock(job.ref))
        holder = held.holder if held else "another process"
        raise JobBusy(
            f"job {job.ref} is running ({holder}); set its pointer when the run has ended"
        ) from None
    try:
        state = store.tasks.state(job.namespace, job.name, task_name)
        old = state.pointer if state.watermark_column == column else None
        try:
            new = pointers.parse(value, old) if value is not None else None
        except ValueError as exc:
            raise InvalidValue(str(exc), "value") from None
        by = f"{tasks.SET_BY_HAND}{by or locks.holder()}"
        store.tasks.set_pointer(state.id, column, new, by)
    finally:
        store.locks.release(locks.job_lock(job.ref), lock_id)
    history.RunLog(history.pointer_log_path(ws.history, job.namespace, job.name))(
        "info", "pointer set", task=task_name, old=old, new=new, by=by
    )
    return {"task": task_name, "old": old, "new": new}


def _watermark_column(ws: Workspace, job: AppliedObject, spec: JobSpec, task_name: str) -> str:
    """The watermark column of a job's task: a sync job's task states it; a sync_all job's
    table task has the one its last run read by (its state says which).

    Raises:
        NotFound: no such task.
        RunnerError: the task is not a watermark task: it has no pointer.
    """
    if isinstance(spec, SyncAllJobSpec):
        states = {s.task: s for s in ws.reader().tasks.states(job.namespace, job.name)}
        if task_name not in states:
            raise NotFound(
                f"job {job.ref} has no task {task_name!r} that has run (tables: {', '.join(states)})"
            )
        column = states[task_name].watermark_column
        if column is None:
            raise RunnerError(
                f"task {task_name!r} is not read by watermark; only watermark tasks have a pointer"
            )
        return column
    task = next((t for t in sync_spec(spec, job.ref).tasks if t.name == task_name), None)
    if task is None:
        raise NotFound(f"job {job.ref} has no task {task_name!r}")
    if task.changes.strategy != "watermark" or task.changes.column is None:
        raise RunnerError(
            f"task {task_name!r} uses strategy {task.changes.strategy!r}; only watermark tasks have a pointer"
        )
    return task.changes.column
