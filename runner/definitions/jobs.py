"""Job specs: the fields every job type has (what the run lifecycle and the daemon read), and
the `sync` job type's spec (its tasks)."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from runner.definitions import destination
from runner.definitions.models import DURATION_HELP, Duration, StrictModel, seconds
from runner.definitions.tasks import BeforeRun, Task

DEFAULT_JOB_TYPE = "sync"  # a job without `type`: every definition written before job types


class Schedule(StrictModel):
    cron: str = Field(
        description=("Cron expression: 5 fields (minute hour day month weekday), or 6 with seconds last.")
    )
    timezone: str = Field("UTC", description="IANA time zone the cron expression is read in.")

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, cron: str) -> str:
        from croniter import CroniterBadDateError, croniter  # imported when a schedule is checked

        fields = cron.split()
        if len(fields) not in (5, 6) or not croniter.is_valid(cron):
            raise ValueError(
                f"invalid cron expression {cron!r}; expected 5 fields (minute hour "
                "day month weekday) or 6 with seconds last"
            )
        try:
            croniter(cron, dt.datetime(2000, 1, 1)).get_next(dt.datetime)
        except CroniterBadDateError:
            raise ValueError(f"cron expression {cron!r} never fires (no such date)") from None
        return cron

    @field_validator("timezone")
    @classmethod
    def _valid_timezone(cls, tz: str) -> str:
        try:
            zoneinfo.ZoneInfo(tz)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {tz!r}; use an IANA name such as 'Europe/Berlin' or 'UTC'"
            ) from None
        return tz


class Trigger(StrictModel):
    """Run the job after another job's run ends (DataZen's job triggers)."""

    job: str = Field(
        min_length=1,
        description="The job to follow: `name` (same namespace, else 'default') or `namespace/name`.",
    )
    when: Literal["succeeded", "failed", "finished"] = Field(
        "succeeded", description="Which ends fire the trigger: succeeded, failed, or finished (either)."
    )


class Retry(StrictModel):
    """A failed run is tried again after `backoff`, then twice that, up to `max_delay`."""

    attempts: int = Field(ge=2, le=100, description="Runs in all, the first one included.")
    backoff: Duration = Field(10, description=f"Wait before the second run: {DURATION_HELP}.")
    max_delay: Duration = Field(600, description="The longest wait between two runs.")

    @model_validator(mode="after")
    def _ordered(self) -> Retry:
        if seconds(self.max_delay) < seconds(self.backoff):
            raise ValueError("max_delay is shorter than backoff")
        return self

    def delay(self, failures: int) -> float:
        """Seconds to wait after the `failures`-th failed run."""
        return min(seconds(self.backoff) * 2 ** (failures - 1), seconds(self.max_delay))


class JobSpec(StrictModel):
    """The fields every job type has: the run lifecycle resolves `source` and `target` and
    enforces `timeout`, the daemon reads `schedule`, `after` and `retry`. Each job type
    subclasses it with a `type` literal and its own fields (see `SyncJobSpec`)."""

    type: str = Field(DEFAULT_JOB_TYPE, description="The job type.")
    source: str = Field(
        min_length=1,
        description=("Connection to read from: `name` (same namespace, else 'default') or `namespace/name`."),
    )
    target: str = Field(min_length=1, description="Connection to write to, named as `source` is.")
    schedule: Schedule | None = Field(
        None, description=("When the daemon fires the job; `runner describe` shows the next fire times.")
    )
    after: list[Trigger] = Field(
        default_factory=list,
        description="The daemon runs this job when one of these jobs ends as stated (a job trigger).",
    )
    retry: Retry | None = Field(
        None, description="The daemon runs a failed run again, waiting longer each time."
    )
    timeout: Duration | None = Field(
        None,
        description=(
            f"A run still going after this long ({DURATION_HELP}) is cancelled at its next batch "
            "boundary and counts as failed."
        ),
    )

    @field_validator("after")
    @classmethod
    def _unique_triggers(cls, after: list[Trigger]) -> list[Trigger]:
        seen: set[tuple[str, str]] = set()
        for trigger in after:
            if (trigger.job, trigger.when) in seen:
                raise ValueError(f"trigger after {trigger.job!r} when {trigger.when!r} is listed twice")
            seen.add((trigger.job, trigger.when))
        return after

    def task_names(self) -> list[str]:
        """The names of the job's tasks, in `spec.tasks` order: what a run may be limited to
        (`--task`) and what must be unique. A job type without tasks has none."""
        return []


class SyncJobSpec(JobSpec):
    """The `sync` job type: its tasks copy tables or queries of the source into tables of the
    target, each with its change strategy."""

    type: Literal["sync"] = Field(
        DEFAULT_JOB_TYPE,
        description="The job type; `sync` (the default) copies each task's table or query into the target.",
    )
    batch_size: int = Field(
        10_000,
        ge=1,
        le=1_000_000,
        description=("Rows per batch from reader to writer; bounds the memory a run holds."),
    )
    on_error: Literal["stop", "continue"] = Field(
        "stop", description="After a failed task: stop the run, or continue with the next task."
    )
    tasks: list[Task] = Field(min_length=1, description="Run in order, or `parallel` at a time.")
    parallel: int = Field(
        1,
        ge=1,
        le=32,
        description=(
            "Tasks run side by side, each with its own connections; 1 runs them one after another. "
            "Into a SQLite target (one writer at a time) they always run one after another."
        ),
    )

    schema_: str | None = Field(
        None,
        alias="schema",
        min_length=1,
        description=(
            "Target schema (MariaDB: database) of every task whose write.table names none; "
            "created when missing where the target has schemas to make (PostgreSQL)."
        ),
    )
    table_prefix: str = Field(
        "",
        description="Put before the name of every task's target table, e.g. `stg_`.",
    )
    before_run: BeforeRun | None = Field(
        None,
        description=(
            "Every task's `before_run` unless it sets its own: keep (the default), truncate or recreate."
        ),
    )

    # `schema` is BaseModel's (deprecated) method: the field is `schema_`, named `schema` in YAML
    model_config = ConfigDict(serialize_by_alias=True)

    @model_validator(mode="after")
    def _history_kept(self) -> SyncJobSpec:
        for i, task in enumerate(self.tasks):
            if task.before_run is None:
                try:
                    task.check_history(self.before_run)
                except ValueError as exc:
                    raise ValueError(f"tasks[{i}] ({task.name}) takes the job's {exc}") from None
        return self

    @field_validator("schema_", "table_prefix")
    @classmethod
    def _one_name(cls, value: str | None) -> str | None:
        if value and "." in value:
            raise ValueError(f"{value!r} has a '.': a schema or a prefix is part of one name")
        return value

    def task_names(self) -> list[str]:
        return [task.name for task in self.tasks]

    def resolved_tasks(self) -> list[Task]:
        """The tasks as they run: tables named with the job's `schema` and `table_prefix`,
        `before_run` set (`runner.definitions.destination`)."""
        return [
            destination.resolved_task(t, self.schema_, self.table_prefix, self.before_run) for t in self.tasks
        ]
