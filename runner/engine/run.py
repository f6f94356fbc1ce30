"""Run a job: open its connections, run its tasks in order with their strategy.

After a failed task the run stops (`on_error: stop`) or goes on with the next task
(`on_error: continue`); the history says which tasks failed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runner.definitions import secrets
from runner.definitions.models import JobSpec
from runner.engine import registry
from runner.engine.changes import Log, Progress, RunOptions, TaskResult, TaskRun, strategies
from runner.engine.connector import Connector
from runner.errors import RunnerError
from runner.state.store import StateStore


def _failed(result: TaskResult, exc: BaseException) -> None:
    text = str(exc) if isinstance(exc, RunnerError) else f"{type(exc).__name__}: {exc}"
    result.status, result.error = "failed", secrets.redact(text)


def run_job(
    spec: JobSpec,
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
) -> list[TaskResult]:
    """Run the job's tasks (or `options.tasks` of them) in order.

    Args:
        connections: `"source"`/`"target"` -> (connection ref, applied spec).
        on_task: called after each task, e.g. to rewrite the history file.
    """
    tasks = [t for t in spec.tasks if not options.tasks or t.name in options.tasks]
    results = [TaskResult(t.name, t.read.table or "query", t.write.table, t.changes.strategy) for t in tasks]
    opened: list[Connector] = []
    try:
        try:
            for end in ("source", "target"):
                opened.append(registry.open_connector(*connections[end], base_dir))
        except RunnerError as exc:
            _failed(results[0], exc)
            log("error", results[0].error or "", task=results[0].name)
            return results
        source, target = opened
        for i, task in enumerate(tasks):
            run = TaskRun(
                task, namespace, job, source, target, spec.batch_size, store, options, run_id, log, progress
            )
            log("info", "task started", task=task.name, strategy=task.changes.strategy)
            started = time.perf_counter()
            try:
                strategies()[task.changes.strategy](run)
                run.result.status = "succeeded"
            except Exception as exc:  # noqa: BLE001 - a run records every failure in its history
                _failed(run.result, exc)
            finally:
                run.close_streams()
            result = run.result
            result.seconds = round(time.perf_counter() - started, 3)
            result.read_seconds = round(result.read_seconds, 3)
            result.write_seconds = round(max(result.seconds - result.read_seconds, 0.0), 3)
            results[i] = result
            if result.status == "failed":
                log("error", f"task failed: {result.error}", task=task.name)
            else:
                log(
                    "info",
                    "task succeeded",
                    task=task.name,
                    rows_read=result.rows_read,
                    inserted=result.inserted,
                    updated=result.updated,
                    deleted=result.deleted,
                    unchanged=result.unchanged,
                    pointer=result.pointer_after,
                )
            if on_task:
                on_task(result)
            if result.status == "failed" and spec.on_error == "stop":
                break
        return results
    finally:
        for connector in opened:
            connector.close()
