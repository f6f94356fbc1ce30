"""`runner verify`: an applied sync job's source and target compared task by task as they are
now (`runner.changes.verify`), and on request repaired by a run that writes only the
differences, recorded in the history like any run."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from runner.changes.task import RunOptions
from runner.changes.verify import SAMPLE, NotVerifiable, TaskReport, verify_task
from runner.connectors import registry
from runner.definitions import secrets
from runner.definitions.sync_all import SyncAllJobSpec
from runner.errors import NotFound, RunnerError
from runner.jobs.sync import sync_spec
from runner.runs.jobs import check_task_names, job_and_connections
from runner.runs.lifecycle import run
from runner.state import locks
from runner.workspace import Workspace

EQUAL, DIFFERENT, ERROR = 0, 2, 1  # the exit codes of `runner verify`


def verify(
    ws: Workspace, ref: str, tasks: list[str] | None = None, repair: bool = False, sample: int = SAMPLE
) -> dict[str, Any]:
    """Compare an applied sync job's tasks (or `tasks` of them; a sync_all job's: its tables
    now); with `repair`, then run the job's tasks that differ as a repair run
    (`RunOptions.repair`), which compares again under the job's lock and writes the rows that
    differ. Returns the report: per task what was
    found (`changes.verify.TaskReport`), the repair run's id and counts, and `exit_code`
    (0 equal or repaired, 2 differences left, 1 a task could not be verified or repaired).

    Raises:
        NotFound: the job, or a task named, is not applied.
        RunnerError: the job's type has no tasks with tables; a connection cannot be opened.
    """
    job, applied, ends = job_and_connections(ws, ref)
    if isinstance(applied, SyncAllJobSpec):  # its tables now, each a task, as its next run would make them
        from runner.jobs import sync_all  # loaded for the one job type that needs it

        found = sync_all.expand(applied, sync_all.source_tables(applied, ends["source"], ws.root), set())
        unknown = sorted(set(tasks or ()) - {t.name for t in found.tasks})
        if unknown:
            names = ", ".join(t.name for t in found.tasks) or "none"
            raise NotFound(
                f"job {job.ref} has no task {', '.join(map(repr, unknown))} (its tables make: {names})"
            )
        spec = applied.as_sync(found.tasks)
    else:
        spec = sync_spec(applied, job.ref)
        if spec.reader or spec.writer:
            raise RunnerError(
                f"job {job.ref} is a {'reader' if spec.reader else 'writer'}: verify compares a job's "
                "source and target tables, which a reader or a writer does not have both of (not in yet)"
            )
        check_task_names(spec, f"job {job.ref}", tasks)
    held = ws.store().locks.info(locks.job_lock(job.ref))
    reports: list[TaskReport] = []
    opened = []
    try:
        for end in ("source", "target"):
            opened.append(registry.open_connector(*ends[end], ws.root))
            opened[-1].check_connection()
        source, target = opened
        for stated in spec.tasks:
            if tasks and stated.name not in tasks:
                continue
            task = spec.resolved(stated)
            if not task.active:
                reports.append(TaskReport(task.name, task.read.describe(), task.write.describe(), "inactive"))
                continue
            try:
                reports.append(verify_task(source, target, task, spec.batch_size, sample))
            except RunnerError as exc:
                failed = TaskReport(task.name, task.read.describe(), task.write.describe())
                failed.status = "not_verified" if isinstance(exc, NotVerifiable) else "failed"
                failed.error = secrets.redact(str(exc))
                reports.append(failed)
    finally:
        for connector in opened:
            connector.close()
    result: dict[str, Any] = {
        "job": job.ref,
        "source": ends["source"][0],
        "target": ends["target"][0],
        "equal": all(r.status in ("equal", "inactive") for r in reports),
        "tasks": [asdict(r) | {"differences": r.differences} for r in reports],
    }
    if held is not None and held.alive:
        result["note"] = (
            f"the job was running meanwhile (run {held.run_id}): rows it had not committed yet "
            "may show as differences"
        )
    differing = [r for r in reports if r.status == "different"]
    if repair and differing:
        record = run(ws, job.ref, RunOptions(tasks=[r.task for r in differing], repair=True))
        result["repair"] = {
            "run_id": record["run_id"],
            "status": record["status"],
            "error": record.get("error"),
            "path": record.get("path"),
            "tasks": [
                {k: t.get(k) for k in ("name", "status", "inserted", "updated", "deleted", "note", "error")}
                for t in record.get("tasks", [])
            ],
        }
    result["exit_code"] = exit_code(reports, result.get("repair"))
    return result


def exit_code(reports: list[TaskReport], repair: dict[str, Any] | None) -> int:
    """0: every task equal (or repaired); 2: differences left (found without `--repair`, or
    extra rows a repair keeps under `deletes: ignore`); 1: a task could not be compared, or
    its repair failed."""
    if any(r.status in ("failed", "not_verified") for r in reports):
        return ERROR
    differing = [r for r in reports if r.status == "different"]
    if not differing:
        return EQUAL
    if repair is None:
        return DIFFERENT
    if repair["status"] != "succeeded":
        return ERROR
    kept = any(r.extra and r.deletes == "ignore" for r in differing)
    return DIFFERENT if kept else EQUAL
