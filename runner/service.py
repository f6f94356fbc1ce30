"""The facade the CLI (and later the daemon and HTTP API) calls: validate, plan, apply, get,
describe, run, history. Every command is one function here, so tests call the same code."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from secrets import token_urlsafe
from typing import Annotated, Any, Literal, Union

from pydantic import ValidationError

from runner.changes.task import COMMITTED, Progress, RunOptions, TaskResult
from runner.connectors import registry
from runner.definitions import secrets
from runner.definitions.load import DEFAULT_NAMESPACE, Document, PathKey, format_path, load_folder, load_text
from runner.definitions.models import API_VERSION, NAME_PATTERN, JobSpec, Metadata, StrictModel, seconds
from runner.definitions.validate import (
    Definition,
    check_document,
    resolve_reference,
    validate_documents,
    warnings_of,
)
from runner.errors import (
    DefinitionsInvalid,
    HistoryUnwritable,
    InvalidValue,
    JobBusy,
    Location,
    LockTimeout,
    NameTaken,
    NotFound,
    Problem,
    RunnerError,
    StateError,
    StoreMissing,
)
from runner.history import files as history
from runner.jobs.sync import capability_check, failure_class, run_job
from runner.plan.apply import apply_plan
from runner.plan.diff import Plan, diff
from runner.state.store import APPLY_LOCK, EMPTY_STATE, AppliedObject, Lock, StateStore, utcnow
from runner.streams import pointers
from runner.streams.cancel import CancelToken

DEFAULT_LOCK_TIMEOUT = 60.0
ADHOC_FILE = "(ad-hoc)"  # an ad-hoc job's `file`: it was never in jobs.d/


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

    def store(self, create: bool = False) -> StateStore:
        """The state store. Only `apply` (and the daemon, which applies) may `create` it, and
        only in a new folder: where runs are in the history a store was expected, and a new
        empty one would run every job from scratch as if it had never run."""
        if self._store is None:
            try:
                self._store = StateStore(self.state, create=False)
            except StoreMissing as exc:
                if create and not self.has_runs():
                    self._store = StateStore(self.state)
                elif create:
                    raise StoreMissing(
                        f"{exc}, but {self.history} holds runs: the store was expected. Restore it "
                        "from a backup; to start afresh, move the history folder away first"
                    ) from None
                else:
                    raise StoreMissing(
                        f"{exc}: `runner apply` creates one in a new folder; if it was deleted, "
                        "restore it from a backup"
                    ) from None
        return self._store

    def has_runs(self) -> bool:
        """Whether the history holds any run (then a state store was expected)."""
        return self.history.is_dir() and next(self.history.glob("*/*/*.json"), None) is not None

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


# --- validate / plan / apply ---------------------------------------------------------------


def validate(ws: Workspace) -> list[Definition]:
    """Raises DefinitionsInvalid with all problems when any file is wrong."""
    return check(ws)[0]


def check(ws: Workspace) -> tuple[list[Definition], list[Problem]]:
    """Every definition and the warnings about them (valid, but likely not meant: a cron that
    fires every second). Raises DefinitionsInvalid with all problems, and the warnings, when
    any file is wrong."""
    docs, problems = load_folder(ws.root)
    definitions, invalid = validate_documents(docs, registry.connection_models(), ws.root, capability_check())
    warnings = warnings_of(docs)
    if problems or invalid:
        raise DefinitionsInvalid(problems + invalid, warnings)
    return definitions, sorted(warnings, key=lambda p: p.location)


def plan(ws: Workspace) -> Plan:
    """The changes `apply` would make. Only valid definitions are ever planned: with any
    problem nothing is planned, so a broken file can never plan a deletion."""
    definitions = validate(ws)
    try:
        store = ws.store()
    except StoreMissing:
        if ws.has_runs():
            raise
        return diff(definitions, [], None, EMPTY_STATE)  # a new folder: everything is created
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
    ws: Workspace,
    plan_file: Path | None = None,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    planned: Plan | None = None,
) -> ApplyResult:
    """Validate, plan and apply in one transaction under the apply lock; with `plan_file` (or a
    plan made in this process, `planned`), apply exactly that plan, or refuse when the state
    changed since it was made."""
    store = ws.store(create=True)
    saved = read_plan(plan_file) if plan_file else planned
    if plan_file is not None and saved is not None:  # data from outside: check what it would store
        models = registry.connection_models()
        problems = [
            p
            for c in saved.changes
            if c.after is not None and c.action in ("create", "update")
            for p in check_document(c.after, f"{plan_file} ({c.kind} {c.ref})", models, ws.root)
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
    from croniter import croniter  # only where schedules are shown: not on `runner run`'s path

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
        schedule = obj.document["spec"].get("schedule")
        if schedule:
            from runner.daemon.schedule import describe_cron  # croniter: not on `runner run`'s path

            out["schedule"] = {"timezone": "UTC"} | schedule | {"in_words": describe_cron(schedule["cron"])}
        out["next_runs"] = next_fire_times(schedule)
        out["last_runs"] = [_run_summary(_with_mode(r)) for r in recent_runs(ws, obj.namespace, obj.name, 5)]
    return out


# --- runs ----------------------------------------------------------------------------------


def _run_summary(record: dict[str, Any]) -> dict[str, Any]:
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


def _job_and_connections(
    ws: Workspace, ref: str
) -> tuple[AppliedObject, JobSpec, dict[str, tuple[str, dict[str, Any]]]]:
    job = find(ws, "Job", ref)
    spec = JobSpec.model_validate(job.document["spec"])
    return job, spec, _connections_of(ws, job, spec)


def _connections_of(
    ws: Workspace, job: AppliedObject, spec: JobSpec
) -> dict[str, tuple[str, dict[str, Any]]]:
    """`source`/`target` -> (connection ref, applied spec)."""
    connections = {(o.namespace, o.name): o for o in ws.store().objects("Connection")}
    ends: dict[str, tuple[str, dict[str, Any]]] = {}
    for end in ("source", "target"):
        key = resolve_reference(getattr(spec, end), job.namespace, set(connections))
        if key is None:
            raise NotFound(f"job {job.ref}: connection {getattr(spec, end)!r} is not applied")
        ends[end] = (f"{key[0]}/{key[1]}", connections[key].document["spec"])
    return ends


def run(
    ws: Workspace,
    ref: str,
    options: RunOptions | None = None,
    progress: Progress | None = None,
    on_log: Callable[[dict[str, Any]], None] | None = None,
    cancel: CancelToken | None = None,
    on_start: Callable[[str], None] | None = None,
    trigger: str = "manual",
    run_id: str | None = None,
) -> dict[str, Any]:
    """Run an applied job now and write its history file and run log; returns the history record.

    The run stops at its next batch boundary when `cancel` is set, when `runner cancel` asks
    (through the job's lock in the state store), or when the job's `timeout` passes.
    `on_start` gets the run id once the job's lock is held; `trigger` says in the history why
    the run started (manual, cron, a job trigger, a retry).

    Raises:
        NotFound: the job (or a task named in `options.tasks`) is not applied.
        JobBusy: the job is running in another process.
    """
    job, spec, ends = _job_and_connections(ws, ref)
    return _run_locked(ws, job, spec, ends, options, progress, on_log, cancel, on_start, trigger, run_id)


def run_adhoc(
    ws: Workspace,
    name: str,
    spec: dict[str, Any],
    namespace: str = DEFAULT_NAMESPACE,
    options: RunOptions | None = None,
    cancel: CancelToken | None = None,
    trigger: str = "ad-hoc",
    run_id: str | None = None,
) -> dict[str, Any]:
    """Run a job spec once without applying it (DataZen's dynamic jobs): validated by the same
    models, on applied connections; its run is in the history under `namespace/name`, and it
    holds that name's lock, so it never runs beside an applied job of the same name.

    Raises:
        DefinitionsInvalid: the spec or its name is invalid (with the field of each problem).
        NotFound: a connection it names is not applied.
    """
    job, parsed = adhoc_job(name, spec, namespace)
    ends = _connections_of(ws, job, parsed)
    return _run_locked(ws, job, parsed, ends, options, None, None, cancel, None, trigger, run_id)


ADHOC_ONLY_ONCE = ("schedule", "after", "retry")  # the daemon's fields: an ad-hoc run runs once, now


def adhoc_job(
    name: str, spec: dict[str, Any], namespace: str = DEFAULT_NAMESPACE
) -> tuple[AppliedObject, JobSpec]:
    """An ad-hoc job's spec checked as a definition in jobs.d/ would be."""
    metadata = {"name": name, "namespace": namespace}
    document = {"apiVersion": API_VERSION, "kind": "Job", "metadata": metadata, "spec": spec}
    problems = check_document(document, "ad-hoc job", registry.connection_models())
    problems += [
        Problem(
            Location("ad-hoc job", field=f"spec.{field}"),
            f"'{field}' does not apply to an ad-hoc run: it runs once, now",
        )
        for field in ADHOC_ONLY_ONCE
        if field in spec
    ]
    if problems:
        raise DefinitionsInvalid(problems)
    return AppliedObject("Job", namespace, name, document, "", ADHOC_FILE, 0, 0), JobSpec.model_validate(spec)


def check_tasks(ws: Workspace, ref: str, tasks: list[str] | None) -> None:
    """Raise NotFound when `tasks` names a task the applied job does not have."""
    job = find(ws, "Job", ref)
    names = [t["name"] for t in job.document["spec"]["tasks"]]
    unknown = sorted(set(tasks or ()) - set(names))
    if unknown:
        raise NotFound(
            f"job {job.ref} has no task {', '.join(map(repr, unknown))} (tasks: {', '.join(names)})"
        )


def check_adhoc(ws: Workspace, job: AppliedObject, tasks: list[str] | None) -> None:
    """An ad-hoc job may not take an applied job's name (it would share its pointers and
    digests), nor name a task it does not have or a connection that is not applied."""
    try:
        applied = ws.store().get("Job", job.namespace, job.name)
    except NotFound:
        applied = None
    if applied is not None:
        raise NameTaken(
            f"job {job.ref} is applied: an ad-hoc run takes a name of its own (its pointers and digests "
            "are kept under it)"
        )
    names = [t["name"] for t in job.document["spec"]["tasks"]]
    unknown = sorted(set(tasks or ()) - set(names))
    if unknown:
        raise NotFound(
            f"the ad-hoc job has no task {', '.join(map(repr, unknown))} (tasks: {', '.join(names)})"
        )
    _connections_of(ws, job, JobSpec.model_validate(job.document["spec"]))


def _run_locked(
    ws: Workspace,
    job: AppliedObject,
    spec: JobSpec,
    ends: dict[str, tuple[str, dict[str, Any]]],
    options: RunOptions | None,
    progress: Progress | None,
    on_log: Callable[[dict[str, Any]], None] | None,
    cancel: CancelToken | None,
    on_start: Callable[[str], None] | None,
    trigger: str,
    run_id: str | None,
) -> dict[str, Any]:
    options = options or RunOptions()
    store = ws.store()
    unknown = sorted(set(options.tasks or ()) - {t.name for t in spec.tasks})
    if unknown:
        raise NotFound(
            f"job {job.ref} has no task {', '.join(map(repr, unknown))} "
            f"(tasks: {', '.join(t.name for t in spec.tasks)})"
        )
    history.check_space(ws.history)
    run_id = run_id or history.new_run_id()
    try:
        lock_id = store.acquire(job_lock(job.ref), timeout=0, run_id=run_id)
    except LockTimeout:
        held = store.lock_info(job_lock(job.ref))
        who = f"{held.holder} since {held.acquired_at}, lock id {held.lock_id}" if held else "another process"
        raise JobBusy(
            f"job {job.ref} is already running ({who}); if that process is gone, release its lock "
            f"with `runner force-unlock {held.lock_id if held else 'LOCK_ID'}`"
        ) from None
    token = cancel or CancelToken()
    token.poll = lambda: store.cancel_requested(lock_id)
    timer = None
    if spec.timeout is not None:
        limit = seconds(spec.timeout)
        timer = threading.Timer(limit, token.cancel, (f"timed out after {spec.timeout}",), {"failed": True})
        timer.daemon = True
        timer.start()
    try:
        if on_start:
            on_start(run_id)
        return _execute(ws, job, spec, ends, run_id, options, progress, on_log, token, trigger)
    finally:
        if timer is not None:
            timer.cancel()
        store.release(job_lock(job.ref), lock_id)


def job_lock(ref: str) -> str:
    """The lock a job's run holds: one run of a job at a time, across processes."""
    return f"job:{ref}"


def _execute(
    ws: Workspace,
    job: AppliedObject,
    spec: JobSpec,
    ends: dict[str, tuple[str, dict[str, Any]]],
    run_id: str,
    options: RunOptions,
    progress: Progress | None,
    on_log: Callable[[dict[str, Any]], None] | None,
    cancel: CancelToken,
    trigger: str,
) -> dict[str, Any]:
    path = history.run_path(ws.history, job.namespace, job.name, run_id)
    first = not path.parent.is_dir()  # the job's first run: its index is complete from the start
    log = history.RunLog(history.log_path(ws.history, job.namespace, job.name, run_id), on_log)
    record = _new_record(
        run_id,
        job.namespace,
        job.name,
        options,
        trigger,
        "running",
        started_at=utcnow(),
        revision=job.revision_id,
        source=ends["source"][0],
        target=ends["target"][0],
        **({"adhoc_spec": job.document["spec"]} if job.file == ADHOC_FILE else {}),  # what it ran, for audit
        log=str(log.path),
    )
    try:  # nothing is touched yet: a history that cannot take the run refuses it now
        spare = history.reserve(path)
    except OSError as exc:
        raise HistoryUnwritable(
            f"the history folder {ws.history} cannot be written: {exc.strerror}"
        ) from None
    try:
        history.write_atomic(path, record)
        _index(ws, record, first)
    except OSError as exc:
        spare.unlink(missing_ok=True)
        raise HistoryUnwritable(
            f"the history folder {ws.history} cannot be written: {exc.strerror}"
        ) from None
    log("info", "run started", job=job.ref, revision=job.revision_id, trigger=trigger, **record["options"])
    started = dt.datetime.now(dt.UTC)
    done: dict[str, TaskResult] = {}
    writing = threading.Lock()  # tasks may end in parallel threads

    def on_task(result: TaskResult) -> None:
        with writing:
            done[result.name] = result
            record["tasks"] = [task_dict(r, options.dry_run) for r in done.values()]
            with suppress(OSError):  # a full disk: the final record, written into the reserve, has it
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
            cancel=cancel,
            locate=_locator(ws, job),
        )
    except BaseException as exc:  # the record must never stay "running" for a run that ended
        interrupted = isinstance(exc, KeyboardInterrupt)
        error = "interrupted" if interrupted else secrets.redact(f"{type(exc).__name__}: {exc}")
        record.update(_with_committed(record))
        record.update(status="cancelled" if interrupted else "failed", error=error, finished_at=utcnow())
        if not interrupted:
            record["failure"] = failure_class(exc)
        with suppress(HistoryUnwritable):  # the run's own error says more
            _write_final(ws, path, record, spare, log)
        log("warning" if interrupted else "error", f"run ended: {error}")
        raise
    failed = [r for r in results if r.status == "failed"]
    cancelled = any(r.status == "cancelled" for r in results)
    if cancelled:
        status = "failed" if cancel.failed else "cancelled"
        error = "; ".join([f"task {r.name}: {r.error}" for r in failed] + [cancel.reason or "cancelled"])
    else:
        status = "failed" if failed else "succeeded"
        error = "; ".join(f"task {r.name}: {r.error}" for r in failed) or None
    # a run's failure is terminal when any task's is (a retry would fail that task again); a
    # timeout is transient (the next run may be quicker)
    classes = {r.failure for r in failed}
    failure = None if status != "failed" else "terminal" if "terminal" in classes else "transient"
    would_write = sum(r.rows_written for r in results)
    record.update(
        status=status,
        finished_at=utcnow(),
        seconds=round((dt.datetime.now(dt.UTC) - started).total_seconds(), 3),
        rows_read=sum(r.rows_read for r in results),
        rows_written=0 if options.dry_run else would_write,
        **({"rows_would_write": would_write} if options.dry_run else {}),
        tasks=[task_dict(r, options.dry_run) for r in results],
        failed_tasks=[r.name for r in failed],
        error=error,
        failure=failure,
    )
    _write_final(ws, path, record, spare, log)
    level = {"succeeded": "info", "cancelled": "warning"}.get(status, "error")
    log(level, f"run {status}", seconds=record["seconds"], error=error)
    record["path"] = str(path)
    return record


def _write_final(ws: Workspace, path: Path, record: dict[str, Any], spare: Path, log: history.RunLog) -> None:
    """Write a run's last record into the space its reserve held (a run that filled the disk
    still says how it ended and what it committed), and say whether its log lost lines.

    Raises:
        HistoryUnwritable: even so, the record could not be written.
    """
    if log.error:
        record["log_error"] = log.error
    spare.unlink(missing_ok=True)
    try:
        history.write_atomic(path, record)
    except OSError as exc:
        _index(ws, record)  # the index at least says how it ended
        raise HistoryUnwritable(
            f"run {record['run_id']} {record['status']} ({record['rows_written']} rows written), but "
            f"its record {path} could not be written: {exc.strerror}"
        ) from None
    _index(ws, record)


def _index(ws: Workspace, record: dict[str, Any], first: bool = False) -> None:
    """Put a run in the history's index (`first`: the job's first run, so its index is
    complete); the file stays the record, so an index that cannot be written (the state store
    away: reported on its own) never fails the run."""
    with suppress(StateError):
        ws.store().index_runs([{k: v for k, v in record.items() if k != "path"}])
        if first:
            ws.store().mark_runs_indexed(record["namespace"], record["job"])


RUNS_PAGE = 100  # run ids read from the index at a time


def _ensure_indexed(ws: Workspace, namespace: str, job: str) -> None:
    """Index a job's history files once (those written before the index existed)."""
    store = ws.store()
    if store.runs_indexed(namespace, job) or not (ws.history / namespace / job).is_dir():
        return  # (no runs yet: nothing to write, so a listing never waits for the store's write lock)
    batch: list[dict[str, Any]] = []
    for record in history.iter_runs(ws.history, namespace, job):
        if record.get("run_id") and record.get("namespace") == namespace and record.get("job") == job:
            batch.append({k: v for k, v in record.items() if k != "path"})
        if len(batch) >= 500:
            store.index_runs(batch)
            batch = []
    store.index_runs(batch)
    store.mark_runs_indexed(namespace, job)


def job_runs(
    ws: Workspace, namespace: str, job: str, changed_only: bool = False, task: str | None = None
) -> Iterator[dict[str, Any]]:
    """A job's run records, newest first, read one file at a time as the index lists them:
    a listing reads only the files it shows. `changed_only` and `task` filter in the index."""
    _ensure_indexed(ws, namespace, job)
    before = None
    while True:
        ids = ws.store().run_ids(namespace, job, RUNS_PAGE, changed_only, task, before)
        for run_id in ids:
            try:
                yield history.read_run(history.run_path(ws.history, namespace, job, run_id))
            except (OSError, ValueError):  # deleted by hand, or being replaced: skip it
                continue
        if len(ids) < RUNS_PAGE:
            return
        before = ids[-1]


def recent_runs(ws: Workspace, namespace: str, job: str, limit: int) -> list[dict[str, Any]]:
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
    _ensure_indexed(ws, namespace, job)
    store = ws.store()
    index = store.run_index(namespace, job)
    keep = set(store.last_task_runs(namespace, job).values())
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
    store.forget_runs(gone)
    return gone


def _locator(ws: Workspace, job: AppliedObject) -> Callable[[PathKey], Location]:
    """Where a field of the applied job is defined: its own line while the job's file still
    holds the definition that was applied, else the line the definition started on. The file
    is read only when an error needs it."""
    found: list[Document | None] = []

    def document() -> Document | None:
        if not found:
            docs: list[Document] = []
            if job.file != ADHOC_FILE:
                with suppress(OSError, UnicodeDecodeError):
                    docs, _ = load_text((ws.root / job.file).read_text(encoding="utf-8"), job.file)
            found.append(next((d for d in docs if _same_job(d, job)), None))
        return found[0]

    def locate(path: PathKey) -> Location:
        doc = document()
        if doc is not None:
            return doc.locate(path)
        return Location(job.file, job.line, field=format_path(path))

    return locate


def _same_job(doc: Document, job: AppliedObject) -> bool:
    data, meta = doc.data, doc.data.get("metadata")
    if data.get("kind") != "Job" or not isinstance(meta, dict) or meta.get("name") != job.name:
        return False
    try:
        spec = JobSpec.model_validate(data.get("spec"))
    except ValidationError:
        return False
    return spec.model_dump(mode="json", exclude_unset=True) == job.document["spec"]


def task_dict(result: TaskResult, dry_run: bool = False) -> dict[str, Any]:
    """A task's result as the history keeps it; in a dry run its counts are what it would
    have written (`rows_would_write`), and `rows_written` is 0: nothing was."""
    if dry_run:
        return asdict(result) | {"rows_written": 0, "rows_would_write": result.rows_written}
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


MAX_POINTER = 1000  # characters of a pointer given by hand


def pointer_set(
    ws: Workspace, ref: str, task_name: str, value: str | None, by: str | None = None
) -> dict[str, Any]:
    """Set a watermark task's pointer (None clears it: the next run reads everything), as
    DataZen's settspointer does; the change is recorded in the job's pointer log. It holds the
    job's lock meanwhile: a run cannot start between the check and the write."""
    job, spec, _ = _job_and_connections(ws, ref)
    task = next((t for t in spec.tasks if t.name == task_name), None)
    if task is None:
        raise NotFound(f"job {job.ref} has no task {task_name!r}")
    if task.changes.strategy != "watermark":
        raise RunnerError(
            f"task {task_name!r} uses strategy {task.changes.strategy!r}; only watermark tasks have a pointer"
        )
    if value is not None and len(value) > MAX_POINTER:
        raise InvalidValue(f"a pointer is at most {MAX_POINTER} characters", "value")
    store = ws.store()
    try:
        lock_id = store.acquire(job_lock(job.ref), timeout=0)
    except LockTimeout:
        held = store.lock_info(job_lock(job.ref))
        holder = held.holder if held else "another process"
        raise JobBusy(
            f"job {job.ref} is running ({holder}); set its pointer when the run has ended"
        ) from None
    try:
        state = store.task_state(job.namespace, job.name, task.name)
        old = state.pointer if state.watermark_column == task.changes.column else None
        try:
            new = pointers.parse(value, old) if value is not None else None
        except ValueError as exc:
            raise InvalidValue(str(exc), "value") from None
        by = f"set by {by or StateStore.holder()}"
        store.set_pointer(state.id, task.changes.column, new, by)
    finally:
        store.release(job_lock(job.ref), lock_id)
    history.RunLog(history.pointer_log_path(ws.history, job.namespace, job.name))(
        "info", "pointer set", task=task.name, old=old, new=new, by=by
    )
    return {"task": task.name, "old": old, "new": new}


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
        for record in map(_with_mode, job_runs(ws, job.namespace, job.name, changed_only)):
            if changed_only and record.get("status") == "succeeded" and not record.get("rows_written"):
                continue  # a dry run changed nothing either
            out.append(_with_live_status(ws, record))
            if limit and len(out) >= limit:
                break
        return out
    spec = JobSpec.model_validate(job.document["spec"])
    if task not in {t.name for t in spec.tasks}:
        raise NotFound(f"job {job.ref} has no task {task!r} (tasks: {', '.join(t.name for t in spec.tasks)})")
    out = []
    for record in map(_with_mode, job_runs(ws, job.namespace, job.name, task=task)):
        result = next((t for t in record.get("tasks", []) if t.get("name") == task), None)
        if changed_only and result and result.get("status") == "succeeded" and not _written(result):
            continue
        if result is not None:
            out.append(
                {"run_id": record["run_id"], "started_at": record["started_at"], "mode": record["mode"]}
                | result
            )
            if limit and len(out) >= limit:
                break
    return out


def _written(task: dict[str, Any]) -> int:
    if "rows_written" in task:
        return int(task["rows_written"] or 0)
    return sum(task.get(k) or 0 for k in ("inserted", "updated", "upserted", "deleted"))


def run_record(ws: Workspace, run_id: str) -> dict[str, Any]:
    """One run's history record, by id."""
    path = history.find_run(ws.history, run_id)
    if path is None:
        raise NotFound(f"no run {run_id!r}")
    return _with_live_status(ws, history.read_run(path))


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


def _with_live_status(ws: Workspace, record: dict[str, Any]) -> dict[str, Any]:
    """A record that says `running` while no live process holds the job's lock for it was
    left by a process that died (kill -9, a crash): it reads `interrupted`. One that says
    `queued` while the process that accepted it is gone reads `not_started`."""
    record = _with_mode(record)
    if record.get("status") == QUEUED:
        by = record.get("queued_by") or {}
        lock = Lock("", "", "", "", by.get("host"), by.get("pid"))
        if lock.alive:
            return record
        return record | {"status": NOT_STARTED, "error": "the daemon stopped before the run started"}
    if record.get("status") != "running":
        return record
    held = ws.store().lock_info(job_lock(f"{record['namespace']}/{record['job']}"))
    if held is not None and held.run_id == record["run_id"] and held.alive:
        return record
    error = "the process running it ended without finishing it"
    return _with_committed(record) | {"status": "interrupted", "error": error}


def _with_committed(record: dict[str, Any]) -> dict[str, Any]:
    """A record cut short, with what its tasks had committed (from the run log's lines after
    each commit) in place of the counts of tasks that never ended."""
    ended = {t.get("name") for t in record.get("tasks", [])}
    cut = [
        {"name": name, "status": "interrupted", **counts}
        | {"rows_written": sum(counts[k] for k in ("inserted", "updated", "upserted", "deleted"))}
        for name, counts in history.committed_counts(Path(record.get("log") or ""), COMMITTED).items()
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


QUEUED, NOT_STARTED = "queued", "not_started"


def _new_record(
    run_id: str,
    namespace: str,
    job: str,
    options: RunOptions,
    trigger: str,
    status: str,
    started_at: str | None,
    **fields: Any,
) -> dict[str, Any]:
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


def record_queued(ws: Workspace, ref: str, run_id: str, trigger: str, options: RunOptions) -> dict[str, Any]:
    """Record a run accepted but not started yet (the API answered 202 with its id), so the id
    resolves whatever happens next: the run's start overwrites it, or `record_not_started`
    says why it never started.

    Raises:
        HistoryUnwritable: the record cannot be written; the run must not be accepted.
    """
    namespace, _, name = ref.partition("/")
    record = _new_record(
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
        _index(ws, record, first)
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
        _index(ws, record)


def _with_mode(record: dict[str, Any]) -> dict[str, Any]:
    """A record written before runs had a `mode` gets it from its options; a dry run's counts
    there moved to `rows_would_write`, as a new record has them."""
    if "mode" in record:
        return record
    mode = run_mode(record.get("options") or {})
    if mode != "dry-run":
        return record | {"mode": mode}
    tasks = [t | {"rows_written": 0, "rows_would_write": _written(t)} for t in record.get("tasks", [])]
    return record | {
        "mode": mode,
        "rows_written": 0,
        "rows_would_write": record.get("rows_written") or 0,
        "tasks": tasks,
    }


def mark_interrupted(ws: Workspace, record: dict[str, Any]) -> dict[str, Any] | None:
    """Rewrite a `running` record whose process died as `interrupted`, so the history says
    how it ended; None when the run is in fact still going on."""
    live = _with_live_status(ws, record)
    if live["status"] != "interrupted":
        return None
    path = Path(record["path"])
    stored = {k: v for k, v in live.items() if k != "path"} | {"finished_at": None}
    history.write_atomic(path, stored)
    _index(ws, stored)
    return stored


# --- operating: cancel, suspend, pause, status, daemon --------------------------------------


def daemon(ws: Workspace, **options: Any) -> int:
    """Run the daemon until SIGTERM/SIGINT (options: `runner.daemon.main.DaemonOptions`)."""
    from runner.daemon.main import Daemon, DaemonOptions  # the daemon's modules need this one

    runner_daemon = Daemon(ws, DaemonOptions(**options))
    runner_daemon.install_signal_handlers()
    code = runner_daemon.run()
    if runner_daemon.abandoned:
        # Python would wait at exit for the worker threads of the runs cut by a third signal;
        # their job locks name a dead process once this one is gone, so the next start takes them.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)
    return code


def serve(ws: Workspace, bind: str) -> None:
    """Serve the API (read-only) and the status page, without scheduling, until SIGTERM/SIGINT."""
    from runner.api.app import create_app
    from runner.api.server import HttpServer, parse_bind

    host, port = parse_bind(bind)
    ws.store()  # a bad state store URL is an error now, not on the first request
    HttpServer(create_app(ws, None), host, port).serve_forever()


PAUSED = "paused"  # the settings key of `runner pause`


def cancel(ws: Workspace, ref: str, by: str | None = None) -> dict[str, Any]:
    """Ask a running job to stop at its next batch boundary, in whichever process runs it (also
    a job deleted from the definitions while its run goes on, or an ad-hoc run)."""
    try:
        job_ref = find(ws, "Job", ref).ref
    except NotFound:
        running = [lock.name.removeprefix("job:") for lock in ws.store().locks("job:") if lock.alive]
        matches = [r for r in running if r == ref or ("/" not in ref and r.endswith(f"/{ref}"))]
        if len(matches) != 1:
            raise
        job_ref = matches[0]
    held = ws.store().request_cancel(job_lock(job_ref), f"{by or StateStore.holder()} at {utcnow()}")
    return {"job": job_ref, "run_id": held.run_id, "holder": held.holder}


def suspend(ws: Workspace, ref: str, suspended: bool = True, by: str | None = None) -> dict[str, Any]:
    """Suspend (or resume) a job: the daemon's cron and triggers skip it until it is resumed.
    A runtime switch in the state store, not a change to the definitions in git."""
    job = find(ws, "Job", ref)
    changed = ws.store().set_suspended(job.namespace, job.name, suspended, by or StateStore.holder())
    return {"job": job.ref, "suspended": suspended, "changed": changed}


def pause(ws: Workspace, paused: bool = True, by: str | None = None) -> dict[str, Any]:
    """Stop (or resume) all scheduling by the daemon; running jobs finish."""
    ws.store().set_setting(PAUSED, paused, by or StateStore.holder())
    return paused_info(ws)


def paused_info(ws: Workspace) -> dict[str, Any]:
    stored = ws.store().setting(PAUSED)
    if not stored or not stored[0]:
        return {"paused": False}
    return {"paused": True, "since": stored[1], "by": stored[2]}


DAEMON_LOCK = "daemon"  # held by the one daemon of a state store


def runtime_switches(ws: Workspace) -> dict[str, Any]:
    """What operators switched at runtime (not in git): suspended jobs and the pause."""
    try:
        suspended = ws.store().suspended()
    except StoreMissing:  # a new folder: nothing was switched yet
        return {"paused": False, "suspended": []}
    return paused_info(ws) | {
        "suspended": [
            {"job": f"{ns}/{name}", "since": since, "by": by}
            for (ns, name), (since, by) in sorted(suspended.items())
        ]
    }


def status(ws: Workspace, now: dt.datetime | None = None) -> dict[str, Any]:
    """Every applied job with its schedule, next run, last run, the run going on now,
    whether it is suspended and whether an applied update waits for the running run to end."""
    store = ws.store()
    problem = store.check()
    if problem:  # what the store says now cannot be trusted: say only that
        return {
            "state_store": {"healthy": False, "error": problem},
            "daemon": None,
            "paused": None,
            "revision": None,
            "git_commit": None,
            "jobs": [],
        }
    running = {lock.name.removeprefix("job:"): lock for lock in store.locks("job:") if lock.alive}
    suspended = store.suspended()
    paused = paused_info(ws)
    daemon = store.lock_info(DAEMON_LOCK)
    latest = store.latest_revision()
    jobs = []
    applied = store.objects("Job")
    keys = {(o.namespace, o.name) for o in applied}
    for ref in sorted(set(running) - {o.ref for o in applied}):  # deleted (or ad-hoc) while it runs
        namespace, _, name = ref.partition("/")
        lock = running[ref]
        jobs.append(
            {
                "job": ref,
                "schedule": None,
                "after": [],
                "next_run": None,
                "last_run": None,
                "running": {"run_id": lock.run_id, "since": lock.acquired_at, "holder": lock.holder},
                "suspended": None,
                "pending_update": False,
                "revision": None,
                "applied": False,
            }
        )
    for job in applied:
        spec = job.document["spec"]
        lock = running.get(job.ref)
        recent = [_with_live_status(ws, r) for r in recent_runs(ws, job.namespace, job.name, 2)]
        last = next((r for r in recent if r.get("status") not in ("running", QUEUED)), None)
        current = next((r for r in recent if lock and r["run_id"] == lock.run_id), None)
        switch = suspended.get((job.namespace, job.name))
        schedule = spec.get("schedule")
        jobs.append(
            {
                "job": job.ref,
                "schedule": schedule,
                "after": [  # as the daemon reads them: namespace/name
                    {
                        "job": "/".join(resolve_reference(t["job"], job.namespace, keys) or ("?", t["job"])),
                        "when": t.get("when", "succeeded"),
                    }
                    for t in spec.get("after", [])
                ],
                "next_run": (next_fire_times(schedule, 1, now) or [None])[0]
                if schedule and not switch and not paused["paused"]
                else None,
                "last_run": _run_summary(last) if last else None,
                "running": {"run_id": lock.run_id, "since": lock.acquired_at, "holder": lock.holder}
                if lock
                else None,
                "suspended": {"since": switch[0], "by": switch[1]} if switch else None,
                "pending_update": bool(
                    current and current.get("revision", job.revision_id) < job.revision_id
                ),
                "revision": job.revision_id,
                "applied": True,
            }
        )
    return {
        "state_store": {"healthy": True, "error": None},
        "daemon": {"holder": daemon.holder, "since": daemon.acquired_at} if daemon and daemon.alive else None,
        **paused,
        "revision": latest.id if latest else None,
        "git_commit": latest.git_commit if latest else None,
        "jobs": jobs,
    }


def tasks(ws: Workspace, ref: str) -> list[dict[str, Any]]:
    """A job's tasks, each with its last run (the newest run that ran it) and its pointer."""
    job = find(ws, "Job", ref)
    spec = JobSpec.model_validate(job.document["spec"])
    pointers_by_task = {p["task"]: p["pointer"] for p in pointer_show(ws, ref)}
    last: dict[str, dict[str, Any]] = {}
    wanted = {t.name for t in spec.tasks}
    _ensure_indexed(ws, job.namespace, job.name)
    for name, run_id in ws.store().last_task_runs(job.namespace, job.name).items():
        if name not in wanted:
            continue
        try:
            record = _with_mode(
                history.read_run(history.run_path(ws.history, job.namespace, job.name, run_id))
            )
        except (OSError, ValueError):
            continue
        result = next((t for t in record.get("tasks", []) if t.get("name") == name), None)
        if result is not None:
            last[name] = {
                "run_id": record["run_id"],
                "started_at": record["started_at"],
                "mode": record["mode"],
            } | result
    return [
        {
            "task": t.name,
            "source": t.read.table or "query",
            "target": t.write.table,
            "strategy": t.changes.strategy,
            "deletes": t.deletes,
            "pointer": pointers_by_task.get(t.name),
            "last_run": last.get(t.name),
        }
        for t in spec.tasks
    ]


# --- API keys and connection metadata ------------------------------------------------------

KEY_SCOPES = ("read", "operate")


def key_hash(key: str) -> str:
    """Keys are 256 random bits: a plain sha256 is enough to keep them out of the store."""
    return hashlib.sha256(key.encode()).hexdigest()


def keys_create(ws: Workspace, name: str, scope: str) -> str:
    """A new API key, returned once; only its hash is stored."""
    if not re.fullmatch(NAME_PATTERN, name):
        raise RunnerError(f"invalid key name {name!r}: lower-case letters, digits, '-', '_' and '.'")
    if scope not in KEY_SCOPES:
        raise RunnerError(f"unknown scope {scope!r}; use {' or '.join(KEY_SCOPES)}")
    key = f"rk_{token_urlsafe(32)}"
    ws.store().add_api_key(name, key_hash(key), scope, StateStore.holder())
    return key


def keys_list(ws: Workspace) -> list[dict[str, str]]:
    return [{k: v for k, v in row.items() if k != "key_hash"} for row in ws.store().api_keys()]


def keys_revoke(ws: Workspace, name: str) -> None:
    ws.store().revoke_api_key(name)


def _plain(value: Any) -> Any:
    """A URL part as written, or None when it is (or holds) a secret reference."""
    return None if value is None or secrets.REFERENCE_PLACEHOLDER in str(value) else value


def connections(ws: Workspace) -> list[dict[str, Any]]:
    """Applied connections without their secrets: type, host, port, database, user (when
    written out, not referenced), and which jobs use each."""
    store = ws.store()
    conns = store.objects("Connection")
    keys = {(c.namespace, c.name) for c in conns}
    users: dict[tuple[str, str], set[str]] = {}
    for job in store.objects("Job"):
        for end in ("source", "target"):
            key = resolve_reference(job.document["spec"][end], job.namespace, keys)
            if key is not None:
                users.setdefault(key, set()).add(job.ref)
    out = []
    for c in conns:
        spec = c.document["spec"]
        try:
            url = secrets.parse_masked(spec["url"])
        except (KeyError, ValueError):  # a kind without a URL (memory), or one that cannot be parsed
            url = None
        out.append(
            {
                "connection": c.ref,
                "type": spec["type"],
                "host": _plain(url.host) if url else None,
                "port": _plain(url.port) if url else None,
                "database": _plain(url.database) if url else None,
                "user": _plain(url.username) if url else None,
                "used_by": sorted(users.get((c.namespace, c.name), set())),
                "revision": c.revision_id,
                "file": c.file,
                "line": c.line,
                "description": c.document["metadata"].get("description", ""),
            }
        )
    return out


# --- connections: test and discover ----------------------------------------------------------


def _folder_connections(ws: Workspace) -> tuple[list[Definition], list[Definition], int]:
    """Connections and jobs defined in the folder (not the applied state: a connection is
    tested while it is written, before it is applied), and how many problems the folder has."""
    docs, problems = load_folder(ws.root)
    definitions, invalid = validate_documents(docs, registry.connection_models(), ws.root)
    connections = [d for d in definitions if d.kind == "Connection"]
    return connections, [d for d in definitions if d.kind == "Job"], len(problems) + len(invalid)


def _pick(connections: list[Definition], ref: str, problems: int) -> Definition:
    """`namespace/name`, or a bare name: in 'default', else in the one namespace that has it."""
    if "/" in ref:
        matches = [c for c in connections if c.ref == ref]
    else:
        matches = [c for c in connections if c.name == ref]
        if len(matches) > 1:
            matches = [c for c in matches if c.namespace == DEFAULT_NAMESPACE] or matches
    if len(matches) == 1:
        return matches[0]
    if matches:
        names = ", ".join(c.ref for c in matches)
        raise NotFound(f"connection {ref!r} is ambiguous: {names}; name it as namespace/name")
    note = f" ({problems} problem(s) in the definitions: see `runner validate`)" if problems else ""
    raise NotFound(f"no valid connection {ref!r} in connections.d/{note}")


def _open_sql(ws: Workspace, conn: Definition) -> Any:
    """An SQL connector of a connection from the folder (secrets resolved now, never shown)."""
    from runner.connectors.sql.base import SqlConnector

    connector = registry.open_connector(conn.ref, conn.spec.model_dump(mode="json"), ws.root)
    if not isinstance(connector, SqlConnector):
        connector.close()
        raise RunnerError(f"connection {conn.ref}: type {conn.spec.type!r} cannot be tested or discovered")
    return connector


def connections_test(ws: Workspace, ref: str | None = None) -> list[dict[str, Any]]:
    """Test every connection of the folder (or the one named): connect, report the server's
    version, and check what the jobs using it need: that the tables and queries they read can
    be read, and that a table (and a staging table) can be created where they write, in a
    transaction rolled back. `ok` is False when any check failed; messages are redacted.

    Raises:
        NotFound: `ref` names no valid connection of the folder.
    """
    from runner.connectors.sql import probe

    connections, jobs, problems = _folder_connections(ws)
    chosen = [_pick(connections, ref, problems)] if ref else connections
    keys = {(c.namespace, c.name) for c in connections}
    usage = {c.ref: probe.Usage() for c in chosen}
    for job in jobs:
        spec = job.spec
        assert isinstance(spec, JobSpec)
        for end in ("source", "target"):
            key = resolve_reference(getattr(spec, end), job.namespace, keys)
            used = usage.get(f"{key[0]}/{key[1]}") if key else None
            if used is None:
                continue
            if end == "source":
                used.reads.extend(t.read for t in spec.tasks)
            else:
                used.writes.extend(t.write.table for t in spec.tasks)
    results = []
    for conn in chosen:
        version: str | None = None
        try:
            connector = _open_sql(ws, conn)
        except RunnerError as exc:
            checks = [probe.Check("connect", False, str(exc))]
        else:
            try:
                version, checks = probe.test(connector, usage[conn.ref])
            finally:
                connector.close()
        results.append(
            {
                "connection": conn.ref,
                "type": conn.spec.type,
                "file": conn.file,
                "line": conn.line,
                "ok": all(c.ok is not False for c in checks),
                "server": version,
                "checks": [asdict(c) | {"detail": secrets.redact(c.detail)} for c in checks],
            }
        )
    return results


def discover(ws: Workspace, ref: str, schema: str | None = None) -> dict[str, Any]:
    """The tables of a connection's schema (its default one unless `schema`), with columns,
    their types as runner maps them and primary keys, and a task list to paste into a job:
    one task per table (see `runner.connectors.sql.probe.tasks_for`).

    Raises:
        NotFound: `ref` names no valid connection of the folder.
        TerminalError: the connection or the schema cannot be read (redacted).
    """
    from runner.connectors.sql import probe

    connections, _, problems = _folder_connections(ws)
    conn = _pick(connections, ref, problems)
    connector = _open_sql(ws, conn)
    try:
        tables = probe.discover(connector, schema)
    finally:
        connector.close()
    return {
        "connection": conn.ref,
        "type": conn.spec.type,
        "schema": schema,
        "tables": [asdict(t) for t in tables],
        "tasks": probe.tasks_for(tables),
    }


# --- JSON Schema ---------------------------------------------------------------------------


def json_schema() -> dict[str, Any]:
    """JSON Schema of a definition document, from the models and the registered types."""
    from pydantic import Field, TypeAdapter, create_model  # ~35 ms of import no run needs

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
