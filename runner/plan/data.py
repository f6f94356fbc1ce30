"""What the next run of each planned job would do to the data (`runner plan --data`): per task,
the rows it would insert, update and delete and the DDL it would run, found by the task's own
dry run (the same change detection and merge as `runner run --dry-run`, rolled back).

A plan is made before anything is applied, so this runs the folder's definitions (the plan's
documents), not the applied ones, on the folder's connections, and it must leave everything as
it found it: no state store row is made (a new job has none yet, and `PlannedState` reads a
task's pointer and digests without creating them), no pointer or digest moves, no table is
created (a dry run counts every row read as an insert into a missing table, and names the
CREATE TABLE it would run), no before/after event runs.

Bounded in time: the plan's `timeout` is shared by its tasks, each given an equal part of what
is left (a quick task leaves its part to the next ones). A task still running at the end of
its part is stopped at its next batch boundary, and its counts so far are reported marked
`estimate` (at least that many); a task with no time left is not counted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

from runner.changes.task import RunOptions, TaskResult
from runner.definitions import secrets
from runner.definitions.jobs import SyncJobSpec
from runner.definitions.tasks import Task
from runner.definitions.validate import job_ends, resolve_reference
from runner.errors import RunnerError
from runner.jobs.types import JOB_TYPES
from runner.jobs.types import parse as parse_job
from runner.plan.diff import Plan
from runner.state.store import StateReader, StateStore
from runner.state.tasks import Tasks, TaskState
from runner.streams.cancel import CancelToken

DEFAULT_TIMEOUT = 60.0  # seconds for the whole `plan --data`, shared by its tasks
MIN_SLICE = 0.5  # a task with less time than this left is not started
OUT_OF_TIME = "plan --data: out of time"
DATA_FORMAT = "runner-plan-data/1"


class PlannedTasks:
    """A task's state as a run would find it, read and never written: the applied state's
    pointer, digests and source columns where the task ran before, an empty state where it did
    not (a new job). A dry run writes nothing here; any write is a bug, refused."""

    def __init__(self, reader: StateReader | None):
        # `Tasks` over a read-only database: its reads, and a database that refuses writes
        self._tasks = Tasks(reader.db) if reader is not None else None

    def state(self, namespace: str, job: str, task: str) -> TaskState:
        found = self._tasks.find(namespace, job, task) if self._tasks is not None else None
        return found or TaskState(0, namespace, job, task, None, None, "", None)  # id 0 has nothing

    def states(self, namespace: str, job: str) -> list[TaskState]:
        return self._tasks.states(namespace, job) if self._tasks is not None else []

    def source_columns(self, task_id: int) -> list[dict[str, Any]] | None:
        return self._tasks.source_columns(task_id) if self._tasks is not None and task_id else None

    def has_digests(self, task_id: int) -> bool:
        return self._tasks.has_digests(task_id) if self._tasks is not None and task_id else False

    def digests(self, task_id: int, batch_size: int) -> Iterator[tuple[str, str, str]]:
        if self._tasks is None or not task_id:
            return iter(())
        return self._tasks.digests(task_id, batch_size)

    # What a run records: a dry run calls none of it; one that did would be a bug, refused.
    def _refused(self, name: str) -> Any:
        raise RunnerError(f"plan --data would change the state store ({name}); nothing was changed")

    def set_pointer(self, *args: Any) -> None:
        self._refused("set_pointer")

    def set_source_columns(self, *args: Any) -> None:
        self._refused("set_source_columns")

    def set_digests_pending(self, *args: Any) -> None:
        self._refused("set_digests_pending")

    def write_digests(self, *args: Any) -> None:
        self._refused("write_digests")

    def forget(self, *args: Any) -> None:
        self._refused("forget")

    def begin_reload(self, *args: Any) -> None:
        self._refused("begin_reload")

    def end_reload(self, *args: Any) -> None:
        self._refused("end_reload")

    def remove(self, *args: Any) -> None:
        self._refused("remove")


class PlannedState:
    """What a dry run is given as its state store: only `tasks`, read-only (`PlannedTasks`)."""

    def __init__(self, reader: StateReader | None):
        self.tasks = PlannedTasks(reader)


@dataclass
class TaskData:
    """What one task's next run would do."""

    job: str  # namespace/name
    action: str  # the job's in the plan: create | update | unchanged | connection changed
    task: str
    status: str  # counted | estimate | failed | inactive | not_counted | dropped_in_source
    strategy: str = "-"
    source: str = ""
    target: str = ""
    rows_read: int = 0
    inserted: int = 0
    updated: int = 0
    upserted: int = 0
    deleted: int = 0
    unchanged: int = 0
    ddl: list[dict[str, Any]] = field(default_factory=list)  # each: change, column, before, after, ddl
    before_run: str | None = None  # truncate | recreate: done first, the counts are the table's as it is
    note: str | None = None
    error: str | None = None
    seconds: float = 0.0

    @property
    def estimate(self) -> bool:
        return self.status == "estimate"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"estimate": self.estimate}


@dataclass
class DataPlan:
    timeout: float
    tasks: list[TaskData] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def estimated(self) -> bool:
        return any(t.status in ("estimate", "not_counted") for t in self.tasks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": DATA_FORMAT,
            "timeout": self.timeout,
            "seconds": round(self.seconds, 3),
            "estimated": self.estimated,
            "tasks": [t.to_dict() for t in self.tasks],
        }


@dataclass
class _Unit:
    """One dry run: a sync job's task (`tasks` one name), or a whole job of another type."""

    ref: str
    namespace: str
    name: str
    action: str
    spec: Any
    ends: dict[str, tuple[str, dict[str, Any]]]
    tasks: list[str] | None


def plan_data(
    plan: Plan,
    base_dir: Path,
    reader: StateReader | None,
    *,
    unchanged: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    jobs: list[str] | None = None,
) -> DataPlan:
    """Dry-run every task of each job the plan creates or updates, or whose source or target
    connection it creates or updates (and with `unchanged`, of the other jobs it keeps), and
    say what its next run would do.

    Args:
        reader: the applied state (None in a new folder): where tasks' pointers and digests are.
        timeout: seconds for all of it (see the module's docstring).
        jobs: only these jobs (`namespace/name`, or `name` in any namespace).
    """
    started = time.monotonic()
    out = DataPlan(timeout)
    units: list[_Unit] = []
    for unit, skipped in _units(plan, unchanged, jobs):
        if unit is not None:
            units.append(unit)
        out.tasks.extend(skipped)
    state = cast(StateStore, PlannedState(reader))
    for i, unit in enumerate(units):
        left = timeout - (time.monotonic() - started)
        share = left / (len(units) - i)
        if share < MIN_SLICE:
            out.tasks.extend(_not_counted(unit))
            continue
        out.tasks.extend(_dry_run(unit, base_dir, state, share))
    out.seconds = time.monotonic() - started
    return out


def _units(
    plan: Plan, unchanged: bool, jobs: list[str] | None
) -> Iterator[tuple[_Unit | None, list[TaskData]]]:
    connections = {
        (c.namespace, c.name): c.after["spec"]
        for c in plan.changes
        if c.kind == "Connection" and c.after is not None and c.action != "delete"
    }
    changed = {
        (c.namespace, c.name)
        for c in plan.changes
        if c.kind == "Connection" and c.action in ("create", "update")
    }
    for c in plan.changes:
        if c.kind != "Job" or c.after is None or c.action == "delete":
            continue
        if jobs and c.ref not in jobs and c.name not in jobs:
            continue
        types = {key: conn.get("type", "") for key, conn in connections.items()}
        spec = parse_job(c.after["spec"], job_ends(c.after["spec"], c.namespace, types))
        if isinstance(spec, SyncJobSpec) and (spec.reader or spec.writer):
            if c.action != "unchanged" or unchanged:
                yield None, [_step_not_counted(c.ref, c.action, spec, task) for task in spec.tasks]
            continue
        ends: dict[str, tuple[str, dict[str, Any]]] = {}
        keys = []
        for end in ("source", "target"):
            key = resolve_reference(getattr(spec, end), c.namespace, set(connections))
            if key is None:  # a validated plan names connections that exist
                raise RunnerError(f"job {c.ref}: connection {getattr(spec, end)!r} is not in the folder")
            ends[end] = (f"{key[0]}/{key[1]}", connections[key])
            keys.append(key)
        action = c.action
        if action == "unchanged" and changed.intersection(keys):
            action = "connection changed"  # the same job on another database: counted as a changed one
        elif action == "unchanged" and not unchanged:
            continue
        if not isinstance(spec, SyncJobSpec):  # its tasks are known when it runs (sync_all)
            yield _Unit(c.ref, c.namespace, c.name, action, spec, ends, None), []
            continue
        for task in spec.tasks:
            skipped = _skipped(task)
            if skipped is not None:
                resolved = spec.resolved(task)
                status, note = skipped
                counts = TaskData(
                    c.ref,
                    action,
                    task.name,
                    status,
                    task.changes.strategy,
                    resolved.read.describe(),
                    resolved.write.describe(),
                    note=note,
                )
                yield None, [counts]
                continue
            yield _Unit(c.ref, c.namespace, c.name, action, spec, ends, [task.name]), []


def _step_not_counted(ref: str, action: str, spec: SyncJobSpec, task: Task) -> TaskData:
    """A reader's or a writer's task: its change logs are not counted by a dry run (not in yet)."""
    resolved = spec.resolved(task)
    what = "a reader's change logs" if spec.reader else "a writer's change logs to apply"
    return TaskData(
        ref,
        action,
        task.name,
        "not_counted",
        resolved.changes.strategy,
        resolved.read.describe(),
        resolved.write.describe(),
        note=f"{what} are not counted by plan --data",
    )


def _skipped(task: Task) -> tuple[str, str] | None:
    """(status, note) of a task a dry run leaves alone: switched off, or consuming messages."""
    if task.changes.strategy == "messages":  # a dry run would take messages off the queue
        return "not_counted", "consumes a broker's messages: counting them would take them off the queue"
    if not task.active:
        return "inactive", "switched off (active: false): the run skips it"
    return None


def _not_counted(unit: _Unit) -> list[TaskData]:
    names = unit.tasks or ["*"]
    return [
        TaskData(
            unit.ref,
            unit.action,
            name,
            "not_counted",
            note=f"{OUT_OF_TIME}: not counted (raise --data-timeout)",
        )
        for name in names
    ]


def _dry_run(unit: _Unit, base_dir: Path, state: StateStore, seconds: float) -> list[TaskData]:
    """Run one unit dry with `seconds` to do it; its tasks' results as `TaskData`."""
    token = CancelToken()
    timer = threading.Timer(seconds, token.cancel, (f"{OUT_OF_TIME} after {seconds:.1f} s",))
    timer.daemon = True
    notes: list[str] = []

    def log(level: str, message: str, **fields: Any) -> None:
        if level in ("warning", "error") and not message.startswith("task failed"):
            notes.append(message)

    timer.start()
    started = time.monotonic()
    try:
        results = JOB_TYPES.get(unit.spec.type).run(
            unit.spec,
            unit.ends,
            base_dir,
            store=state,
            namespace=unit.namespace,
            job=unit.name,
            run_id="plan-data",
            options=RunOptions(tasks=unit.tasks, dry_run=True),
            log=log,
            cancel=token,
        )
    except Exception as exc:  # noqa: BLE001 - the job could not start (a sync_all source that cannot be listed)
        text = str(exc) if isinstance(exc, RunnerError) else f"{type(exc).__name__}: {exc}"
        return [
            TaskData(unit.ref, unit.action, name, "failed", error=secrets.redact(text))
            for name in unit.tasks or ["*"]
        ]
    finally:
        timer.cancel()
    elapsed = round(time.monotonic() - started, 3)
    return [_task_data(unit, r, token, notes, elapsed if unit.tasks else r.seconds) for r in results]


def _task_data(unit: _Unit, r: TaskResult, token: CancelToken, notes: list[str], seconds: float) -> TaskData:
    status = {"succeeded": "counted", "cancelled": "estimate"}.get(r.status, r.status)
    note = r.note
    if r.status == "cancelled":
        note = f"{token.reason}: counts so far (at least these; deletes are found at the end)"
    elif r.status == "skipped" and token.reason:
        status, note = "not_counted", f"{token.reason}: not counted"
    elif notes and r.status == "succeeded":
        note = "; ".join(dict.fromkeys(notes))
    return TaskData(
        unit.ref,
        unit.action,
        r.name,
        status,
        r.strategy,
        r.source,
        r.target,
        r.rows_read,
        r.inserted,
        r.updated,
        r.upserted,
        r.deleted,
        r.unchanged,
        [_ddl(c) for c in r.schema_changes],
        r.before_run or unit_before_run(unit, r.name),
        note,
        None if r.status == "cancelled" else r.error,
        seconds,
    )


def _ddl(change: dict[str, Any]) -> dict[str, Any]:
    return {k: change.get(k) for k in ("change", "column", "before", "after", "ddl")}


def unit_before_run(unit: _Unit, task: str) -> str | None:
    """A task's `before_run` (its own or the job's), when it empties or drops the table first:
    the dry run counts against the table as it is, the run against an empty one."""
    if not isinstance(unit.spec, SyncJobSpec):
        return None
    for t in unit.spec.tasks:
        if t.name == task:
            doing = unit.spec.resolved(t).before_run
            return doing if doing in ("truncate", "recreate") else None
    return None
