"""Run a job's tasks: for each, stream the source's rows into the target table.

Tasks run in order. Each task's write is one transaction in the target, so a failed or
killed task leaves the target table as it was before the task started.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from runner.definitions import secrets
from runner.definitions.models import JobSpec, Task
from runner.engine import registry
from runner.engine.connector import Batch, Connector
from runner.errors import RunnerError

TaskStatus = Literal["succeeded", "failed", "skipped"]


@dataclass
class TaskResult:
    name: str
    source: str  # table name, or "query"
    target: str
    status: TaskStatus = "skipped"
    rows_read: int = 0
    rows_written: int = 0
    seconds: float = 0.0
    columns: list[dict[str, str]] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _counted(batches: Iterator[Batch], result: TaskResult) -> Iterator[Batch]:
    for batch in batches:
        result.rows_read += len(batch)
        yield batch


def run_task(task: Task, source: Connector, target: Connector, batch_size: int) -> TaskResult:
    result = TaskResult(task.name, task.read.table or "query", task.write.table)
    started = time.perf_counter()
    try:
        stream = source.read(task.read, batch_size)
        result.columns = [{"name": c.name, "type": str(c.type)} for c in stream.columns]
        result.rows_written = target.replace(
            task.write.table, stream.columns, _counted(stream.batches, result)
        )
        result.status = "succeeded"
    except RunnerError as exc:
        result.status, result.error = "failed", secrets.redact(str(exc))
    except Exception as exc:  # noqa: BLE001 - a run records every failure in its history
        result.status, result.error = "failed", secrets.redact(f"{type(exc).__name__}: {exc}")
    result.seconds = round(time.perf_counter() - started, 3)
    return result


def run_job(
    spec: JobSpec,
    connections: dict[str, tuple[str, dict[str, Any]]],
    base_dir: Path,
    on_task: Callable[[TaskResult], None] | None = None,
) -> list[TaskResult]:
    """Run every task of a job in order; after a failed task the rest are skipped.

    Args:
        connections: `"source"`/`"target"` -> (connection ref, applied spec).
        on_task: called after each task, e.g. to update the history file.
    """
    results = [TaskResult(t.name, t.read.table or "query", t.write.table) for t in spec.tasks]
    opened: list[Connector] = []
    try:
        try:
            source = registry.open_connector(*connections["source"], base_dir)
            opened.append(source)
            target = registry.open_connector(*connections["target"], base_dir)
            opened.append(target)
        except RunnerError as exc:
            results[0].status, results[0].error = "failed", secrets.redact(str(exc))
            return results
        for i, task in enumerate(spec.tasks):
            results[i] = run_task(task, source, target, spec.batch_size)
            if on_task:
                on_task(results[i])
            if results[i].status == "failed":
                break
        return results
    finally:
        for connector in opened:
            connector.close()
