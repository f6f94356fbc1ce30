"""The facade the CLI (and later the daemon and HTTP API) calls: validate, plan, apply, get,
describe, run, history. Every command is one function here, so tests call the same code."""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from croniter import croniter
from pydantic import Field, TypeAdapter, create_model

from runner.definitions import secrets
from runner.definitions.load import DEFAULT_NAMESPACE, load_folder
from runner.definitions.models import API_VERSION, JobSpec, Metadata, StrictModel
from runner.definitions.validate import Definition, check_document, resolve_reference, validate_documents
from runner.engine import pointers, registry
from runner.engine.changes import Progress, RunOptions, TaskResult
from runner.engine.run import run_job
from runner.errors import DefinitionsInvalid, JobBusy, LockTimeout, NotFound, Problem, RunnerError
from runner.history import files as history
from runner.plan.apply import apply_plan
from runner.plan.diff import Plan, diff
from runner.state.store import APPLY_LOCK, AppliedObject, Lock, StateStore, utcnow

DEFAULT_LOCK_TIMEOUT = 60.0


@dataclass
class Workspace:
    """Where definitions, state and history live. Defaults: the state store is
    `<dir>/.runner/state.db`, history files are under `<dir>/.runner/history/`."""

    root: Path
    state_url: str | None = None
    history_dir: Path | None = None
    _store: StateStore | None = field(default=None, repr=False)

    @classmethod
    def from_env(
        cls, root: str | None = None, state: str | None = None, history_dir: str | None = None
    ) -> Workspace:
        folder = Path(root or os.environ.get("RUNNER_DIR") or ".")
        state = state or os.environ.get("RUNNER_STATE")
        hist = history_dir or os.environ.get("RUNNER_HISTORY")
        return cls(folder, state, Path(hist) if hist else None)

    @property
    def state(self) -> str:
        return self.state_url or f"sqlite:///{(self.root / '.runner' / 'state.db').resolve()}"

    @property
    def history(self) -> Path:
        return self.history_dir or self.root / ".runner" / "history"

    def store(self) -> StateStore:
        if self._store is None:
            self._store = StateStore(self.state)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


# --- validate / plan / apply ---------------------------------------------------------------


def load(ws: Workspace) -> tuple[list[Definition], list[Problem]]:
    """Every definition below the folder, and every problem found on the way."""
    docs, problems = load_folder(ws.root)
    definitions, invalid = validate_documents(docs, registry.connection_models())
    return definitions, problems + invalid


def validate(ws: Workspace) -> list[Definition]:
    """Raises DefinitionsInvalid with all problems when any file is wrong."""
    definitions, problems = load(ws)
    if problems:
        raise DefinitionsInvalid(problems)
    return definitions


def plan(ws: Workspace) -> Plan:
    """The changes `apply` would make. Only valid definitions are ever planned: with any
    problem nothing is planned, so a broken file can never plan a deletion."""
    definitions = validate(ws)
    store = ws.store()
    latest = store.latest_revision()
    return diff(definitions, store.objects(), latest.id if latest else None, store.state_digest())


def save_plan(p: Plan, path: Path) -> None:
    try:
        path.write_text(json.dumps(p.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    except OSError as exc:
        raise RunnerError(f"cannot write the plan to {path}: {exc.strerror}") from None


def read_plan(path: Path) -> Plan:
    try:
        return Plan.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RunnerError(f"{path}: not a readable plan file ({exc})") from None


@dataclass
class ApplyResult:
    plan: Plan
    revision: int | None


def apply(
    ws: Workspace, plan_file: Path | None = None, lock_timeout: float = DEFAULT_LOCK_TIMEOUT
) -> ApplyResult:
    """Validate, plan and apply in one transaction under the apply lock; with `plan_file`,
    apply exactly that saved plan, or refuse when the state changed since it was made."""
    store = ws.store()
    saved = read_plan(plan_file) if plan_file else None
    if saved is not None:  # a plan file is data from outside: check what it would store
        models = registry.connection_models()
        problems = [
            p
            for c in saved.changes
            if c.after is not None and c.action in ("create", "update")
            for p in check_document(c.after, f"{plan_file} ({c.kind} {c.ref})", models)
        ]
        if problems:
            raise DefinitionsInvalid(problems)
    with store.locked(APPLY_LOCK, lock_timeout):
        p = saved or plan(ws)
        return ApplyResult(p, apply_plan(store, p, ws.root))


def force_unlock(ws: Workspace, lock_id: str) -> Lock:
    return ws.store().force_unlock(lock_id)


# --- applied state -------------------------------------------------------------------------


def find(ws: Workspace, kind: str, ref: str) -> AppliedObject:
    """`namespace/name`, or a bare name: in 'default', else in the one namespace that has it."""
    objects = ws.store().objects(kind)
    if "/" in ref:
        namespace, _, name = ref.partition("/")
        matches = [o for o in objects if (o.namespace, o.name) == (namespace, name)]
    else:
        matches = [o for o in objects if o.name == ref]
        if len(matches) > 1:
            matches = [o for o in matches if o.namespace == DEFAULT_NAMESPACE] or matches
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise NotFound(f"no {kind.lower()} {ref!r} in the applied state (run `runner apply` first?)")
    raise NotFound(
        f"{kind.lower()} {ref!r} is ambiguous: "
        + ", ".join(o.ref for o in matches)
        + "; name it as namespace/name"
    )


def get(ws: Workspace, kind: str) -> list[AppliedObject]:
    return ws.store().objects(kind)


def next_fire_times(
    schedule: dict[str, Any] | None, count: int = 3, now: dt.datetime | None = None
) -> list[str]:
    if not schedule:
        return []
    import zoneinfo

    tz = zoneinfo.ZoneInfo(schedule.get("timezone", "UTC"))
    cron = croniter(schedule["cron"], (now or dt.datetime.now(dt.UTC)).astimezone(tz))
    return [cron.get_next(dt.datetime).isoformat() for _ in range(count)]


def describe(ws: Workspace, kind: str, ref: str) -> dict[str, Any]:
    obj = find(ws, kind, ref)
    rev = ws.store().revision(obj.revision_id)
    out: dict[str, Any] = {
        "kind": obj.kind,
        "namespace": obj.namespace,
        "name": obj.name,
        "file": obj.file,
        "line": obj.line,
        "revision": {
            "id": rev.id,
            "applied_at": rev.applied_at,
            "user": rev.user,
            "git_commit": rev.git_commit,
            "git_dirty": rev.git_dirty,
        },
        "document": obj.document,
    }
    if kind == "Job":
        out["next_runs"] = next_fire_times(obj.document["spec"].get("schedule"))
        out["last_runs"] = [
            _run_summary(r) for r in history.list_runs(ws.history, obj.namespace, obj.name, 5)
        ]
    return out


# --- runs ----------------------------------------------------------------------------------


def _run_summary(record: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "run_id",
        "status",
        "started_at",
        "finished_at",
        "seconds",
        "rows_read",
        "rows_written",
        "error",
        "path",
    )
    return {k: record.get(k) for k in keys}


def _job_and_connections(
    ws: Workspace, ref: str
) -> tuple[AppliedObject, JobSpec, dict[str, tuple[str, dict[str, Any]]]]:
    store = ws.store()
    job = find(ws, "Job", ref)
    spec = JobSpec.model_validate(job.document["spec"])
    connections = {(o.namespace, o.name): o for o in store.objects("Connection")}
    ends: dict[str, tuple[str, dict[str, Any]]] = {}
    for end in ("source", "target"):
        key = resolve_reference(getattr(spec, end), job.namespace, set(connections))
        if key is None:
            raise NotFound(f"job {job.ref}: connection {getattr(spec, end)!r} is not applied")
        ends[end] = (f"{key[0]}/{key[1]}", connections[key].document["spec"])
    return job, spec, ends


def run(
    ws: Workspace,
    ref: str,
    options: RunOptions | None = None,
    progress: Progress | None = None,
    on_log: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run an applied job now and write its history file and run log; returns the history record.

    Raises:
        NotFound: the job (or a task named in `options.tasks`) is not applied.
        JobBusy: the job is running in another process.
    """
    options = options or RunOptions()
    store = ws.store()
    job, spec, ends = _job_and_connections(ws, ref)
    unknown = sorted(set(options.tasks or ()) - {t.name for t in spec.tasks})
    if unknown:
        raise NotFound(
            f"job {job.ref} has no task {', '.join(map(repr, unknown))} "
            f"(tasks: {', '.join(t.name for t in spec.tasks)})"
        )
    try:
        lock_id = store.acquire(f"job:{job.ref}", timeout=0)
    except LockTimeout:
        held = store.lock_info(f"job:{job.ref}")
        who = f"{held.holder} since {held.acquired_at}, lock id {held.lock_id}" if held else "another process"
        raise JobBusy(
            f"job {job.ref} is already running ({who}); if that process is gone, release its lock "
            f"with `runner force-unlock {held.lock_id if held else 'LOCK_ID'}`"
        ) from None
    try:
        return _execute(ws, job, spec, ends, options, progress, on_log)
    finally:
        store.release(f"job:{job.ref}", lock_id)


def _execute(
    ws: Workspace,
    job: AppliedObject,
    spec: JobSpec,
    ends: dict[str, tuple[str, dict[str, Any]]],
    options: RunOptions,
    progress: Progress | None,
    on_log: Callable[[dict[str, Any]], None] | None,
) -> dict[str, Any]:
    run_id = history.new_run_id()
    path = history.run_path(ws.history, job.namespace, job.name, run_id)
    log = history.RunLog(history.log_path(ws.history, job.namespace, job.name, run_id), on_log)
    record: dict[str, Any] = {
        "run_id": run_id,
        "job": job.name,
        "namespace": job.namespace,
        "revision": job.revision_id,
        "source": ends["source"][0],
        "target": ends["target"][0],
        "options": {k: v for k, v in asdict(options).items() if v},
        "status": "running",
        "started_at": utcnow(),
        "finished_at": None,
        "seconds": None,
        "rows_read": 0,
        "rows_written": 0,
        "tasks": [],
        "error": None,
        "log": str(log.path),
    }
    history.write_atomic(path, record)
    log("info", "run started", job=job.ref, revision=job.revision_id, **record["options"])
    started = dt.datetime.now(dt.UTC)
    done: list[TaskResult] = []

    def on_task(result: TaskResult) -> None:
        done.append(result)
        record["tasks"] = [task_dict(r) for r in done]
        history.write_atomic(path, record)

    try:
        results = run_job(
            spec,
            ends,
            ws.root,
            store=ws.store(),
            namespace=job.namespace,
            job=job.name,
            run_id=run_id,
            options=options,
            log=log,
            on_task=on_task,
            progress=progress,
        )
    except BaseException as exc:  # the record must never stay "running" for a run that ended
        interrupted = isinstance(exc, KeyboardInterrupt)
        error = "interrupted" if interrupted else secrets.redact(f"{type(exc).__name__}: {exc}")
        record.update(status="cancelled" if interrupted else "failed", error=error, finished_at=utcnow())
        history.write_atomic(path, record)
        log("warning" if interrupted else "error", f"run ended: {error}")
        raise
    failed = [r for r in results if r.status == "failed"]
    record.update(
        status="failed" if failed else "succeeded",
        finished_at=utcnow(),
        seconds=round((dt.datetime.now(dt.UTC) - started).total_seconds(), 3),
        rows_read=sum(r.rows_read for r in results),
        rows_written=sum(r.rows_written for r in results),
        tasks=[task_dict(r) for r in results],
        failed_tasks=[r.name for r in failed],
        error="; ".join(f"task {r.name}: {r.error}" for r in failed) or None,
    )
    history.write_atomic(path, record)
    log("error" if failed else "info", f"run {record['status']}", seconds=record["seconds"])
    record["path"] = str(path)
    return record


def task_dict(result: TaskResult) -> dict[str, Any]:
    return asdict(result) | {"rows_written": result.rows_written}


# --- pointers and logs ---------------------------------------------------------------------


def pointer_show(ws: Workspace, ref: str) -> list[dict[str, Any]]:
    """Every task of a job with its stored pointer."""
    job, spec, _ = _job_and_connections(ws, ref)
    states = {s.task: s for s in ws.store().task_states(job.namespace, job.name)}
    out = []
    for task in spec.tasks:
        state = states.get(task.name)
        current = state.pointer if state and state.watermark_column == task.changes.column else None
        out.append(
            {
                "task": task.name,
                "strategy": task.changes.strategy,
                "column": task.changes.column,
                "pointer": current,
                "updated_at": state.updated_at if state and current else None,
                "by": state.run_id if state and current else None,
            }
        )
    return out


def pointer_set(ws: Workspace, ref: str, task_name: str, value: str | None) -> dict[str, Any]:
    """Set a watermark task's pointer (None clears it: the next run reads everything), as
    DataZen's settspointer does; the change is recorded in the job's pointer log."""
    job, spec, _ = _job_and_connections(ws, ref)
    task = next((t for t in spec.tasks if t.name == task_name), None)
    if task is None:
        raise NotFound(f"job {job.ref} has no task {task_name!r}")
    if task.changes.strategy != "watermark":
        raise RunnerError(
            f"task {task_name!r} uses strategy {task.changes.strategy!r}; only watermark tasks have a pointer"
        )
    store = ws.store()
    state = store.task_state(job.namespace, job.name, task.name)
    old = state.pointer if state.watermark_column == task.changes.column else None
    try:
        new = pointers.parse(value, old) if value is not None else None
    except ValueError as exc:
        raise RunnerError(str(exc)) from None
    by = f"set by {StateStore.holder()}"
    store.set_pointer(state.id, task.changes.column, new, by)
    history.RunLog(history.pointer_log_path(ws.history, job.namespace, job.name))(
        "info", "pointer set", task=task.name, old=old, new=new, by=by
    )
    return {"task": task.name, "old": old, "new": new}


def logs(ws: Workspace, run_or_job: str, last: bool = False) -> list[dict[str, Any]]:
    """The lines of a run's log: by run id, or the last run of a job with `last`."""
    if last:
        job = find(ws, "Job", run_or_job)
        newest = history.list_runs(ws.history, job.namespace, job.name, 1)
        if not newest:
            raise NotFound(f"job {job.ref} has no runs yet")
        run_or_job = newest[0]["run_id"]
    path = history.find_log(ws.history, run_or_job)
    if path is None:
        raise NotFound(f"no run log for run {run_or_job!r}")
    return history.read_log(path)


def runs(ws: Workspace, ref: str, limit: int | None = None) -> list[dict[str, Any]]:
    job = find(ws, "Job", ref)
    return history.list_runs(ws.history, job.namespace, job.name, limit)


# --- JSON Schema ---------------------------------------------------------------------------


def json_schema() -> dict[str, Any]:
    """JSON Schema of a definition document, from the models and the registered types."""
    models = tuple(registry.connection_models().values())
    common = {"apiVersion": (Literal["runner/v1"], ...), "metadata": (Metadata, ...)}
    connection = create_model(
        "ConnectionDefinition",
        __base__=StrictModel,
        kind=(Literal["Connection"], ...),
        spec=(Annotated[Union[models], Field(discriminator="type")], ...),  # noqa: UP007
        **common,
    )  # type: ignore[call-overload]
    job = create_model(
        "JobDefinition", __base__=StrictModel, kind=(Literal["Job"], ...), spec=(JobSpec, ...), **common
    )  # type: ignore[call-overload]
    adapter = TypeAdapter(Annotated[Union[connection, job], Field(discriminator="kind")])  # noqa: UP007
    schema = adapter.json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"runner definition ({API_VERSION})"
    return schema


SCHEMA_FILE = "runner.v1.json"


def write_schemas(out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / SCHEMA_FILE
    path.write_text(json.dumps(json_schema(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path
