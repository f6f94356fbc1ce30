"""The `sync` job type's run: open its connections, run its tasks with their strategy.

Tasks run in order on one source and one target connection, or with `parallel: N` up to N
at a time, each task on connections of its own (a connection is never shared by two threads).
After a failed task the run stops (`on_error: stop`: tasks not started are skipped) or goes on
(`on_error: continue`); the history says which tasks failed. A task switched off (`active:
false`) is not run: the history lists it as `inactive`.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from runner.changes import split
from runner.changes.strategies import run_task
from runner.changes.task import TRACEBACK, Locate, Log, Progress, RunOptions, TaskResult, TaskRun
from runner.connectors import registry
from runner.connectors.base import Connector
from runner.definitions import secrets
from runner.definitions.changelogs import CHANGE_LOG_END
from runner.definitions.jobs import JobSpec, SyncJobSpec
from runner.definitions.tasks import Task
from runner.errors import Cancelled, RunnerError, TransientError
from runner.jobs import changelogs
from runner.state.store import StateStore
from runner.streams.cancel import CancelToken

if TYPE_CHECKING:  # imported by a job with change logs only (`runner.jobs.changelogs`)
    from runner.connectors.changelog_files import ChangeLogTarget

Ends = tuple[Connector, Connector, Connector | None]  # source, target, the job's change logs beside it
INACTIVE_NOTE = "switched off (active: false): skipped by every run"


def _failed(result: TaskResult, exc: BaseException) -> None:
    text = str(exc) if isinstance(exc, RunnerError) else f"{type(exc).__name__}: {exc}"
    result.status, result.error = "failed", secrets.redact(text)
    result.failure = failure_class(exc)


def failure_class(exc: BaseException) -> str:
    """ "transient" for what may pass by itself (a refused or lost connection, a deadlock, a
    timeout: the connectors raise `TransientError` for their drivers' such errors), else
    "terminal" (bad SQL, a missing table, bad data: a retry fails the same way)."""
    return "transient" if isinstance(exc, TransientError | ConnectionError | TimeoutError) else "terminal"


def sync_spec(spec: JobSpec, ref: str) -> SyncJobSpec:
    """`spec` as a sync job's, for what only a sync job has: tasks with tables, strategies and
    pointers.

    Raises:
        RunnerError: the job is of another type.
    """
    if not isinstance(spec, SyncJobSpec):
        raise RunnerError(
            f"job {ref} is of type {spec.type!r}: only a sync job's tasks have tables and pointers"
        )
    return spec


def _one_writer(connection: dict[str, Any]) -> bool:
    """Whether a target takes one writer at a time: parallel tasks would only wait for each
    other's lock."""
    kind = registry.kind(connection.get("type", ""))
    return kind is not None and kind.capabilities.one_writer


def run_job(
    spec: SyncJobSpec,
    connections: dict[str, tuple[str, dict[str, Any]]],
    base_dir: Path,
    *,
    store: StateStore,
    namespace: str,
    job: str,
    run_id: str,
    options: RunOptions,
    log: Log,
    **rest: Any,
) -> list[TaskResult]:
    """Run the job's tasks (`_run_tasks`); the retention of its change logs after them (a
    reader's, or a job's with a target and `change_log`: `runner.jobs.changelogs`)."""
    open_end = changelogs.opener(spec, store, f"{namespace}/{job}", run_id)
    results = _run_tasks(
        spec,
        connections,
        base_dir,
        store=store,
        namespace=namespace,
        job=job,
        run_id=run_id,
        options=options,
        log=log,
        open_end=open_end,
        **rest,
    )
    logs = connections.get(CHANGE_LOG_END) or (connections["target"] if spec.reader else None)
    if logs is not None and not options.dry_run:
        from runner.connectors.changelog_files import ChangeLogSpec
        from runner.connectors.files.location import failure

        tasks = [t.model_dump(mode="json", exclude_unset=True) for t in spec.tasks]
        try:  # what a run wrote stands whatever retention meets: it tries again after the next
            folder = ChangeLogSpec.model_validate(logs[1]).open_folder(base_dir)
            try:
                changelogs.retention(spec, store, f"{namespace}/{job}", tasks, folder, log)
            finally:
                folder.close()
        except RunnerError as exc:
            log("warning", f"change-log retention stopped: {exc}")
        except Exception as exc:  # noqa: BLE001 - each location's library raises its own
            log("warning", f"change-log retention stopped: {failure('in the change-log folder', exc)}")
    return results


def _run_tasks(
    spec: SyncJobSpec,
    connections: dict[str, tuple[str, dict[str, Any]]],
    base_dir: Path,
    *,
    store: StateStore,
    namespace: str,
    job: str,
    run_id: str,
    options: RunOptions,
    log: Log,
    on_task: Callable[[TaskResult], None] | None = None,
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
    locate: Locate | None = None,
    open_end: changelogs.OpenEnd = registry.open_connector,
) -> list[TaskResult]:
    """Run the job's tasks (or `options.tasks` of them) in order, or `spec.parallel` at a time.

    A cancelled run stops at a batch boundary: the task being run ends `cancelled`, the tasks
    not started stay `skipped`.

    Args:
        connections: `"source"`/`"target"` -> (connection ref, applied spec).
        on_task: called after each task, e.g. to rewrite the history file (from several
            threads when tasks run in parallel).
        locate: where a field of the job's definition is, for errors about the task's fields.
        open_end: opens an end (`changelogs.opener`).
    """
    # each chosen task with the job-wide options it does not override (`SyncJobSpec.resolved`:
    # its table named with the job's schema and prefix, its before_run), and its position in
    # `spec.tasks` (where its fields are defined); one timestamp for the run (history mode's)
    started = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    picked = [
        (pos, spec.resolved(t))
        for pos, t in enumerate(spec.tasks)
        if not options.tasks or t.name in options.tasks
    ]
    chosen = [t for _, t in picked]
    positions = {id(t): pos for pos, t in picked}
    results = [TaskResult(t.name, t.read.describe(), t.write.describe(), t.changes.strategy) for t in chosen]
    for task, result in zip(chosen, results, strict=True):
        if not task.active:
            result.status, result.note = "inactive", INACTIVE_NOTE
            log("info", "task inactive (active: false): skipped", task=task.name)
    tasks = [(i, t) for i, t in enumerate(chosen) if t.active]
    if not tasks:
        log("info", "every task of the job is inactive (active: false): nothing to run", tasks=len(chosen))
        return results
    stop = threading.Event()  # set by a failure under on_error: stop, or a cancel

    def task_run(task: Task, ends: Ends) -> TaskRun:
        run = TaskRun(
            task,
            namespace,
            job,
            ends[0],
            ends[1],
            spec.batch_size,
            store,
            options,
            run_id,
            log,
            progress,
            cancel,
            locate,
            positions[id(task)],
            spec.tasks[positions[id(task)]],
            started,
            spec.table_changes(task),
            cast("ChangeLogTarget | None", ends[2]),
        )
        run.fork = lambda: _forked(connections, base_dir, log, open_end, lambda ends: task_run(task, ends))
        return run

    def one(i: int, task: Task, ends: Ends) -> None:
        if stop.is_set():
            return
        results[i] = _run_task(task_run(task, ends), log)
        if on_task:
            on_task(results[i])
        if results[i].status == "cancelled" or (results[i].status == "failed" and spec.on_error == "stop"):
            stop.set()

    parallel = spec.parallel
    if parallel > 1 and _one_writer(connections["target"][1]):
        log(
            "warning",
            "the target takes one writer at a time: the tasks run one after another",
            parallel=parallel,
        )
        parallel = 1
    if parallel == 1 or len(tasks) == 1:
        with _connected(connections, base_dir, results[tasks[0][0]], log, open_end) as ends:
            if ends is not None:
                for i, task in tasks:
                    one(i, task, ends)
        return results

    def own_connections(i: int, task: Task) -> None:
        if stop.is_set():
            return
        with _connected(connections, base_dir, results[i], log, open_end) as ends:
            if ends is None:
                if spec.on_error == "stop":
                    stop.set()
                if on_task:
                    on_task(results[i])
                return
            one(i, task, ends)

    with ThreadPoolExecutor(min(parallel, len(tasks)), thread_name_prefix=f"{job}-task") as pool:
        for future in [pool.submit(own_connections, i, task) for i, task in tasks]:
            future.result()
    return results


@contextmanager
def _connected(
    connections: dict[str, tuple[str, dict[str, Any]]],
    base_dir: Path,
    result: TaskResult,
    log: Log,
    open_end: changelogs.OpenEnd,
) -> Iterator[Ends | None]:
    """The source and target connectors, and the job's change logs when it keeps them beside a
    target, closed on exit; None (with `result` failed) when one cannot be opened."""
    opened: list[Connector] = []
    try:
        try:
            for end in ("source", "target", CHANGE_LOG_END):
                if end not in connections:
                    continue
                ref = connections[end][0]
                opened.append(open_end(*connections[end], base_dir))
                started = time.perf_counter()
                log("info", f"connecting to the {end}", connection=ref)
                opened[-1].check_connection()
                seconds = round(time.perf_counter() - started, 3)
                log("info", f"connected to the {end}", connection=ref, seconds=seconds)
        except RunnerError as exc:
            _failed(result, exc)
            log("error", result.error or "", task=result.name)
            yield None
            return
        yield opened[0], opened[1], opened[2] if len(opened) > 2 else None
    finally:
        for connector in opened:
            connector.close()


@contextmanager
def _forked(
    connections: dict[str, tuple[str, dict[str, Any]]],
    base_dir: Path,
    log: Log,
    open_end: changelogs.OpenEnd,
    make: Callable[[Ends], TaskRun],
) -> Iterator[TaskRun]:
    """A task's run on connections of its own (`TaskRun.fork`), closed on exit.

    Raises:
        RunnerError: an end cannot be opened.
    """
    result = TaskResult("", "", "")
    with _connected(connections, base_dir, result, log, open_end) as ends:
        if ends is None:
            raise RunnerError(result.error or "cannot connect")
        yield make(ends)


def help_split(
    spec: SyncJobSpec,
    connections: dict[str, tuple[str, dict[str, Any]]],
    base_dir: Path,
    *,
    store: StateStore,
    namespace: str,
    job: str,
    run_id: str,
    task: str,
    log: Log,
    cancel: CancelToken,
) -> int:
    """Help the run `run_id` with its split task `task` (`runner.changes.split`): take its
    pending key ranges until none is left, on connections of this process; returns how many
    ranges this call ran."""
    positions = {t.name: pos for pos, t in enumerate(spec.tasks)}
    resolved = spec.resolved(spec.tasks[positions[task]])
    state = store.tasks.state(namespace, job, task)

    def make(ends: Ends) -> TaskRun:
        return TaskRun(
            resolved,
            namespace,
            job,
            ends[0],
            ends[1],
            spec.batch_size,
            store,
            RunOptions(),
            run_id,
            log,
            cancel=cancel,
            index=positions[task],
            stated=spec.tasks[positions[task]],
            table_changes=spec.table_changes(resolved),
        )

    with _forked(connections, base_dir, log, registry.open_connector, make) as run:
        return split.work(run, f"{namespace}/{job}", state.id)


def _run_task(run: TaskRun, log: Log) -> TaskResult:
    task = run.task
    log("info", "task started", task=task.name, strategy=task.changes.strategy)
    started = time.perf_counter()
    try:
        run_task(run)
        run.result.status = "succeeded"
    except Cancelled as exc:
        run.result.status, run.result.error = "cancelled", str(exc)
        run.drop_uncommitted()
    except Exception as exc:  # noqa: BLE001 - a run records every failure in its history
        _failed(run.result, exc)
        run.drop_uncommitted()
        # for `--debug` and whoever reads the run log: where it failed (redacted like every line)
        log("debug", TRACEBACK, task=task.name, traceback="".join(traceback.format_exception(exc)))
    finally:
        run.close_streams()
    result = run.result
    result.seconds = round(time.perf_counter() - started, 3)
    result.read_seconds = round(result.read_seconds, 3)
    result.write_seconds = round(max(result.seconds - result.read_seconds, 0.0), 3)
    if result.status == "failed":
        log("error", f"task failed: {result.error}", task=task.name)
    elif result.status == "cancelled":
        log("warning", f"task stopped at a batch boundary: {result.error}", task=task.name)
    else:
        log(
            "info",
            "task succeeded",
            task=task.name,
            rows_read=result.rows_read,
            inserted=result.inserted,
            updated=result.updated,
            upserted=result.upserted,
            deleted=result.deleted,
            unchanged=result.unchanged,
            **({"filtered": result.filtered} if result.filtered else {}),
            pointer=result.pointer_after,
        )
    return result
