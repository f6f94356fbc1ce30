"""Reader and writer steps (DataZen's JobReader and JobWriter): a sync job with a source and no
target is a reader, which keeps each run's changes as change-log files; a job whose source is
another job (`source: {job: name}`) is a writer, which applies that job's change logs in order.

The two ends that are not connections get task models of their own here, under names no
connection type can take (`READER_END`, `WRITER_END`): a reader's task writes only its keys
(`ChangeLogWrite`), a writer's task reads one task of its reader (`ChangeLogRead`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import Field, model_validator

from runner.definitions.models import StrictModel
from runner.definitions.needs import Need
from runner.definitions.tasks import ReadModel, Task, WriteModel

# the end types of a reader's target (its change logs) and of a writer's source (another job's):
# a `:` no connection type has, so `kinds.job_model` finds them among the task models only
READER_END = "change-log:target"
WRITER_END = "change-log:source"
CHANGE_LOG_END = "change_log"  # a job with a target: its change logs, an end beside source and target
DEFAULT_FOLDER = "changelogs"  # below the workspace's `.runner/`, when a reader names no folder


class JobSource(StrictModel):
    """Another job as a writer's source: its change logs, applied in order."""

    job: str = Field(
        min_length=1,
        description=(
            "The job whose change logs this job applies: `name` (same namespace, else 'default') or "
            "`namespace/name`. A reader (no target), or a job with a target and `change_log`."
        ),
    )


class ChangeLogOptions(StrictModel):
    """Where a reader keeps its change logs and for how long."""

    connection: str | None = Field(
        None,
        min_length=1,
        description="A `files` connection whose folder holds the change logs (one of connection or path).",
    )
    path: str | None = Field(
        None,
        min_length=1,
        description=(
            "A folder for the change logs, relative to the definitions folder (default: "
            "`.runner/changelogs/` beside the state store)."
        ),
    )
    keep_days: int | None = Field(
        None,
        ge=1,
        description=(
            "After each run, remove change logs older than this many days (never one a writer "
            "has not applied yet, nor a task's newest)."
        ),
    )
    keep_files: int | None = Field(
        None,
        ge=1,
        description=(
            "After each run, keep only this many newest change logs per task (never removing one a "
            "writer has not applied yet)."
        ),
    )

    @model_validator(mode="after")
    def _one_folder(self) -> ChangeLogOptions:
        if self.connection is not None and self.path is not None:
            raise ValueError("give connection or path, not both")
        return self


class ChangeLogRead(ReadModel):
    """What a writer's task reads: one task of its reader job, by the task's name or by the
    table that task reads."""

    table: str = Field(
        min_length=1,
        description=(
            "A task of the reader job, named by its name or by the table it reads (`read.table`): "
            "its change logs are applied in order."
        ),
    )

    def describe(self) -> str:
        return self.table


class ChangeLogWrite(WriteModel):
    """What a reader's task writes: its changes, as change-log files; the keys say which
    columns a delete holds and what a writer merges by."""

    keys: list[str] = Field(
        default_factory=list,
        description=(
            "Columns that identify a row: a delete in the change log holds them, and writers merge "
            "by them. Strategies other than `full`, and deletes, need them."
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _only_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and set(data) - {"keys"}:
            extra = ", ".join(sorted(set(data) - {"keys"}))
            raise ValueError(
                f"a job without a target is a reader: its tasks keep change logs and take only write.keys "
                f"(not {extra}); to write into a table, give spec.target"
            )
        return data

    def describe(self) -> str:
        return "change log"

    def unmerged_by(self) -> str:
        return "a reader's change log"

    def needs(self, task: Task) -> list[Need]:
        return []  # the change-log target writes whatever a strategy hands it


def is_writer(spec: dict[str, Any]) -> bool:
    """Whether a job spec (as stated) names another job as its source."""
    return isinstance(spec.get("source"), dict)


def is_reader(spec: dict[str, Any]) -> bool:
    """Whether a job spec (as stated) is a sync job with a source and no target."""
    return spec.get("type", "sync") == "sync" and "target" not in spec and not is_writer(spec)


def keeps_change_logs(spec: dict[str, Any]) -> bool:
    """Whether a job spec (as stated) keeps change logs a writer can follow: a reader, or a sync
    job with a target and `change_log`."""
    if is_reader(spec):
        return True
    sync = spec.get("type", "sync") == "sync"
    return sync and not is_writer(spec) and isinstance(spec.get("change_log"), dict)


def reader_task(tasks: list[dict[str, Any]], wanted: str) -> dict[str, Any] | None:
    """The reader's task (as stated) a writer's `read.table` names: by its name, else by the
    table it reads."""
    for task in tasks:
        if isinstance(task, dict) and task.get("name") == wanted:
            return task
    for task in tasks:
        read = task.get("read") if isinstance(task, dict) else None
        if isinstance(read, dict) and read.get("table") == wanted:
            return task
    return None


@dataclass(frozen=True)
class EndModels:
    """The task models of a reader's or a writer's end that is not a connection (a
    `kinds.TaskModels`): what validation and a run parse the job's tasks with."""

    read: type[ReadModel] = ReadModel
    write: type[WriteModel] = WriteModel
    roles: frozenset[str] = frozenset({"source", "target"})


END_MODELS = {
    READER_END: EndModels(write=ChangeLogWrite),
    WRITER_END: EndModels(read=ChangeLogRead),
}


def step_ends(spec: Any) -> dict[str, str]:
    """A sync job spec's ends that are not connections (`READER_END`, `WRITER_END`)."""
    if not isinstance(spec, dict) or spec.get("type", "sync") != "sync":
        return {}
    if is_writer(spec):
        return {"source": WRITER_END}
    if "target" not in spec:
        return {"target": READER_END}
    return {}
