"""Job specs: the fields every job type has (what the run lifecycle and the daemon read), and
the `sync` job type's spec (its tasks)."""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo
from typing import Any, ClassVar, Generic, Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator

from runner.definitions import destination
from runner.definitions.changelogs import ChangeLogOptions, JobSource
from runner.definitions.events import Events, LogLevel, Notification
from runner.definitions.models import DURATION_HELP, Duration, StrictModel, seconds
from runner.definitions.needs import Need, Needs
from runner.definitions.schema_changes import (
    DEFAULT_SCHEMA_CHANGES,
    DROP_COLUMNS_HELP,
    SCHEMA_CHANGES_HELP,
    TRUNCATE_STRINGS_HELP,
    SchemaChanges,
    TableChanges,
    check_drop_columns,
    resolve,
)
from runner.definitions.tasks import (
    TIMEZONE_HELP,
    BeforeRun,
    ChangesSpec,
    R,
    ReadModel,
    Task,
    W,
    WriteModel,
    check_timezone,
    check_window_start,
)
from runner.definitions.windows import WINDOW_HELP, parse_start, parse_window

FieldPath = tuple[str | int, ...]

DEFAULT_JOB_TYPE = "sync"  # a job without `type`: every definition written before job types
CONTINUOUS_STRATEGIES = ("messages", "cdc")  # the strategies a task of a continuous job may have


@functools.lru_cache(maxsize=4096)
def cron_fields(cron: str) -> tuple[list[Any], ...] | None:
    """The expanded fields of a valid 5- or 6-field cron expression, else None. Cached: a
    folder of 1,000 jobs holds few distinct expressions, and croniter's parse is ~1 ms."""
    from croniter import CroniterError, croniter  # imported when a schedule is checked

    if len(cron.split()) not in (5, 6):
        return None
    try:
        return tuple(croniter(cron).expanded)
    except (CroniterError, ValueError, KeyError):
        return None


_CRON_FIELDS = (
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day", "1-31"),
    ("month", "1-12 or jan-dec"),
    ("weekday", "0-7 or sun-sat"),
    ("seconds", "0-59"),
)


def _bad_cron_field(cron: str) -> str | None:
    """Which field of a 5- or 6-field expression croniter refuses, and what it takes: so
    `61 * * * *` is not told it lacks fields. None when each field alone is fine."""
    from croniter import CroniterError, croniter

    parts = cron.split()
    if len(parts) not in (5, 6):
        return None
    for i, part in enumerate(parts):
        alone = ["*"] * len(parts)
        alone[i] = part
        try:
            croniter(" ".join(alone))
        except (CroniterError, ValueError, KeyError):
            name, values = _CRON_FIELDS[i]
            return f"the {name} field {part!r} is not valid (it takes {values}, lists, ranges and */steps)"
    return None


@functools.lru_cache(maxsize=4096)
def cron_problem(cron: str) -> str | None:
    """Why `cron` is no valid schedule (malformed, or never fires), or None."""
    from croniter import CroniterBadDateError, croniter

    if cron_fields(cron) is None:
        field = _bad_cron_field(cron)
        if field is not None:
            return f"invalid cron expression {cron!r}: {field}"
        return (
            f"invalid cron expression {cron!r}; expected 5 fields (minute hour "
            "day month weekday) or 6 with seconds last"
        )
    try:
        croniter(cron, dt.datetime(2000, 1, 1)).get_next(dt.datetime)
    except CroniterBadDateError:
        return f"cron expression {cron!r} never fires (no such date)"
    return None


class Schedule(StrictModel):
    cron: str = Field(
        description=("Cron expression: 5 fields (minute hour day month weekday), or 6 with seconds last.")
    )
    timezone: str = Field("UTC", description="IANA time zone the cron expression is read in.")

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, cron: str) -> str:
        problem = cron_problem(cron)
        if problem:
            raise ValueError(problem)
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


class Continuous(StrictModel):
    """The daemon keeps a run of the job going (a consuming job: drain, commit, repeat) instead
    of firing it on a schedule; a run that ends is started again, after a failure once the
    backoff has passed."""

    max_latency: Duration = Field(
        "5s",
        description="A message is committed to the target at most this long after it was taken "
        "from the broker (a logged change, after it was read from the log: `cdc` reads the log "
        f"again every half of it): a batch not full by then is committed as it is ({DURATION_HELP}).",
    )
    backoff: Duration = Field(5, description="Wait before starting a failed run again; twice that after two.")
    max_delay: Duration = Field(300, description="The longest wait before starting a failed run again.")

    @model_validator(mode="after")
    def _ordered(self) -> Continuous:
        if seconds(self.max_delay) < seconds(self.backoff):
            raise ValueError("max_delay is shorter than backoff")
        return self

    def delay(self, failures: int) -> float:
        """Seconds to wait after the `failures`-th failed run in a row."""
        return min(seconds(self.backoff) * 2 ** (failures - 1), seconds(self.max_delay))


class JobSpec(StrictModel):
    """The fields every job type has: the run lifecycle resolves `source` and `target` and
    enforces `timeout`, the daemon reads `schedule`, `after` and `retry`. Each job type
    subclasses it with a `type` literal and its own fields (see `SyncJobSpec`)."""

    type: str = Field(DEFAULT_JOB_TYPE, description="The job type.")
    # True for a type whose tasks are found when it runs (a sync_all job's tables): a run
    # limited to some tasks is checked then, not against `task_names()`
    expands_at_run: ClassVar[bool] = False
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
    # --- around the run: events, notifications, the run log's level (runner.runs.events) ---
    events: Events | None = Field(
        None,
        description=(
            "SQL statements or commands run before the tasks (a failing one fails the run) and after "
            "them (a failing one is logged and listed; the run's status stays). Dry and limited runs "
            "run none."
        ),
    )
    notify: list[Notification] = Field(
        default_factory=list,
        description=(
            "Emails and webhooks sent when a run ends; one that cannot be delivered never fails the run."
        ),
    )
    log_level: LogLevel = Field(
        "info",
        description=(
            "The lowest level the run log keeps: debug, info or warning (errors are always kept, and "
            "the lines the history relies on)."
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

    @classmethod
    def for_kinds(cls, read: type[ReadModel], write: type[WriteModel]) -> type[JobSpec]:
        """This type's model for a job whose source's kind reads tasks with `read` and whose
        target's kind writes them with `write` (`SyncJobSpec`'s tasks); a type whose tasks
        are not stated (or which has none) is its own model whatever the kinds."""
        return cls

    def task_names(self) -> list[str]:
        """The names of the job's tasks, in `spec.tasks` order: what a run may be limited to
        (`--task`) and what must be unique. A job type without tasks has none."""
        return []

    def inactive_tasks(self) -> list[str]:
        """The names of the tasks switched off (`active: false`): every run skips them."""
        return []

    def needs(self, task_needs: Needs) -> list[Need]:
        """What the job asks of its connections' kinds, each at its field below `spec` (what
        `runner validate` checks against the kinds' declared capabilities)."""
        return []

    def field_problems(self) -> list[tuple[FieldPath, str]]:
        """Problems of a job-wide option together with its tasks' own (`validate` locates
        each at its path below `spec`); a model's own validators see only one level."""
        return []


# the strategies whose changes a job with a target can keep as change logs: each change is a
# row merged (`stage`) or a key deleted (`stage_keys` then `delete_listed`), never a truncate
# or a delete of what is missing, and committed before the task's pointer or digests are stored
# in the state store, the change log's index entry in that same transaction
# (`runner.connectors.changelog_kept`)
LOGGED_STRATEGIES = ("hash", "watermark", "cdc")
# why the others cannot keep them
UNLOGGED_WHY = {
    "full": "a full task empties its table (without keys) or deletes the rows it did not read inside "
    "the database, so its deletes are never keys a change log can hold, and it stores no position "
    "for the change log's index to be written with; strategy hash reads every row too and logs its "
    "changes",
    "messages": "a messages task's position is the broker's acknowledgement, which cannot be taken in "
    "one transaction with the change log's index: a kill between the two would leave the changes "
    "out of the log or list them twice",
}


def _step_problems_of(spec: SyncJobSpec) -> list[tuple[FieldPath, str]]:
    """What a reader or a writer step cannot be (`SyncJobSpec._step_problems`)."""
    problems: list[tuple[FieldPath, str]] = []
    if spec.writer:
        if spec.target is None:
            problems.append(
                (("target",), "a writer (source: {job: …}) needs a target connection to apply to")
            )
        if spec.change_log is not None:
            problems.append(
                (("change_log",), "a writer keeps no change logs of its own (not in yet): only a reader does")
            )
        for i, task in enumerate(spec.tasks):
            if not task.write.keys:
                problems.append(
                    (
                        ("tasks", i, "write", "keys"),
                        "a writer merges its reader's changes by key: give write.keys",
                    )
                )
            if "changes" in task.model_fields_set:
                problems.append(
                    (
                        ("tasks", i, "changes"),
                        "a writer applies its reader's change logs in order: 'changes' does not apply",
                    )
                )
    elif spec.target is not None and spec.change_log is not None:
        for i, task in enumerate(spec.tasks):
            strategy = task.changes.strategy
            if strategy not in LOGGED_STRATEGIES:
                problems.append(
                    (
                        ("tasks", i, "changes", "strategy"),
                        f"a job with a target keeps change logs of tasks of strategy hash, watermark or "
                        f"cdc, not {strategy!r}: {UNLOGGED_WHY.get(strategy, 'it has no change to log')}",
                    )
                )
            elif strategy == "watermark" and task.deletes != "ignore":
                problems.append(
                    (
                        ("tasks", i, "deletes"),
                        "a watermark task of a job with a target and change logs takes deletes: ignore "
                        "(the deletes it finds by comparing keys are not in its change logs yet); use "
                        "strategy hash to log deletes",
                    )
                )
    return problems


class JobRead(StrictModel):
    """Job-wide defaults of the tasks' `read` (a task's own value wins)."""

    timezone: str | None = Field(None, description=TIMEZONE_HELP)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, zone: str | None) -> str | None:
        return check_timezone(zone)


class JobChanges(StrictModel):
    """Job-wide defaults of the watermark tasks' `changes` (a task's own value wins; tasks of
    other strategies ignore them)."""

    start: str | int | float | None = Field(
        None,
        description="Where each watermark task without a pointer starts reading (a task's `changes.start`).",
    )
    window: str | int | float | None = Field(
        None, description=f"Each watermark task reads its backlog one window at a time: {WINDOW_HELP}."
    )

    @field_validator("start", mode="before")
    @classmethod
    def _start(cls, value: object) -> object:
        return None if value is None else parse_start(value)

    @field_validator("window")
    @classmethod
    def _window(cls, value: object) -> object:
        if value is not None:
            parse_window(value)
        return value

    @model_validator(mode="after")
    def _pair(self) -> JobChanges:
        if self.window is not None and self.start is not None:
            check_window_start(self.window, self.start)
        return self


class SyncJobSpec(JobSpec, Generic[R, W]):
    """The `sync` job type: its tasks copy what they read from the source (tables or queries of
    a SQL source) to the target (its tables, a broker's messages), each with its change
    strategy. Generic in the kinds' task models (`for_kinds`): unparametrised, the SQL kinds'."""

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
    source: str | JobSource = Field(  # type: ignore[assignment]  # a writer's source is a job
        description=(
            "Connection to read from: `name` (same namespace, else 'default') or `namespace/name`; "
            "or `{job: name}`: a reader job, whose change logs this job applies in order (a writer)."
        ),
    )
    target: str | None = Field(  # type: ignore[assignment]  # a reader has none
        None,
        min_length=1,
        description=(
            "Connection to write to, named as `source` is. Without one, the job is a reader: it keeps "
            "its runs' changes as change-log files (`change_log`) for writer jobs to apply."
        ),
    )
    tasks: list[Task[R, W]] = Field(min_length=1, description="Run in order, or `parallel` at a time.")
    parallel: int = Field(
        1,
        ge=1,
        le=32,
        description=(
            "Tasks run side by side, each with its own connections; 1 runs them one after another. "
            "Into a SQLite target (one writer at a time) they always run one after another."
        ),
    )
    continuous: Continuous | None = Field(
        None,
        description="Run without end in the daemon (no `schedule`): the job's one task, consuming a "
        "broker (`changes.strategy: messages`) or a table's log (`changes.strategy: cdc`), goes on past "
        "a drained queue or the log's end, committing what came at least every `max_latency`; the "
        "daemon starts it again when it fails (after a backoff), and stops it when it stops, the job "
        "is suspended or its definition changes.",
    )
    schema_changes: SchemaChanges = Field(
        DEFAULT_SCHEMA_CHANGES, description=f"{SCHEMA_CHANGES_HELP} A task may set its own."
    )
    drop_columns: bool = Field(False, description=f"{DROP_COLUMNS_HELP} A task may set its own.")
    truncate_strings: bool = Field(False, description=f"{TRUNCATE_STRINGS_HELP} A task may set its own.")

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

    read: JobRead | None = Field(
        None, description="Defaults of every task's `read` (e.g. `timezone`); a task's own value wins."
    )
    changes: JobChanges | None = Field(
        None,
        description="Defaults of the watermark tasks' `changes` (`start`, `window`); a task's own wins.",
    )
    change_log: ChangeLogOptions | None = Field(
        None,
        description=(
            "Keep the runs' changes as change-log files for writer jobs (`source: {job: name}`): where "
            "and for how long. A reader (a job without a target) keeps only them; a job with a target "
            "keeps them beside its target (tasks of strategy hash, or watermark with deletes: ignore). "
            "One Parquet file per run and task (per commit of a long run), with an `_op` column "
            "(upsert or delete) and a `_position` column (the order writers apply them in)."
        ),
    )

    # `schema` is BaseModel's (deprecated) method: the field is `schema_`, named `schema` in YAML
    model_config = ConfigDict(serialize_by_alias=True)

    @field_validator("schema_", "table_prefix")
    @classmethod
    def _one_name(cls, value: str | None) -> str | None:
        if value and "." in value:
            raise ValueError(f"{value!r} has a '.': a schema or a prefix is part of one name")
        return value

    @field_validator("drop_columns")
    @classmethod
    def _drop_needs_changes(cls, drop: bool, info: ValidationInfo) -> bool:
        check_drop_columns(drop, info.data.get("schema_changes"))
        return drop

    @classmethod
    def for_kinds(cls, read: type[ReadModel], write: type[WriteModel]) -> type[JobSpec]:
        return cls[read, write]  # type: ignore[index]  # pydantic caches each parametrisation

    @classmethod
    def model_parametrized_name(cls, params: tuple[type[Any], ...]) -> str:
        return cls.__name__  # one sync job model per schema (`Task.model_parametrized_name`)

    def _step_problems(self) -> list[tuple[FieldPath, str]]:
        return _step_problems_of(self)

    def table_changes(self, task: Task) -> TableChanges:
        """What `task` may change in its target table (its own settings, else the job's)."""
        return resolve(self, task)

    def task_names(self) -> list[str]:
        return [task.name for task in self.tasks]

    def inactive_tasks(self) -> list[str]:
        return [task.name for task in self.tasks if not task.active]

    def needs(self, task_needs: Needs) -> list[Need]:
        found = [
            Need(need.end, need.capability, ("tasks", i, *need.path), need.why)
            for i, task in enumerate(self.tasks)
            for need in task_needs(task)
        ]
        if self.before_run in ("truncate", "recreate") and any(t.before_run is None for t in self.tasks):
            why = f"before_run: {self.before_run} empties or drops the target tables"
            found.append(Need("target", "table_lifecycle", ("before_run",), why))
        return found

    @property
    def reader(self) -> bool:
        """A job with a source and no target: it only keeps change logs."""
        return self.target is None and not self.writer

    @property
    def writer(self) -> bool:
        """A job whose source is another job: it applies that job's change logs."""
        return isinstance(self.source, JobSource)

    def resolved(self, task: Task) -> Task:
        """`task` with the job-wide defaults it does not override filled in: the one place a
        task's effective `read.timezone`, `changes.start` and `changes.window` are decided, and
        its table and `before_run` (`runner.definitions.destination`). A writer's task applies
        its reader's change logs as a stream of changes (strategy `messages`)."""
        task = destination.resolved_task(task, self.schema_, self.table_prefix, self.before_run)
        if self.writer:
            return task.model_copy(update={"changes": ChangesSpec(strategy="messages")})
        zone = self.read.timezone if self.read else None
        read = task.read if zone is None else task.read.with_zone(zone)
        changes = task.changes
        if changes.strategy == "watermark" and self.changes is not None:
            start, window = changes.backfill(self.changes.start, self.changes.window)
            changes = changes.model_copy(update={"start": start, "window": window})
        if read is task.read and changes is task.changes:
            return task
        return task.model_copy(update={"read": read, "changes": changes})

    def field_problems(self) -> list[tuple[FieldPath, str]]:
        problems: list[tuple[FieldPath, str]] = [*self._continuous_problems(), *self._step_problems()]
        for i, task in enumerate(self.tasks):  # a split needs one key to cut into ranges
            keys = task.write.keys or []
            if task.changes.split is not None and len(keys) != 1:
                problems.append(
                    (
                        ("tasks", i, "changes", "split"),
                        "a split cuts the table by its key: write.keys must name one (integer) column, "
                        f"not {len(keys)}",
                    )
                )
        for i, task in enumerate(self.tasks):  # a step naming a column it cannot have
            problems.extend((("tasks", i, *path), message) for path, message in task.transform_problems())
        for i, task in enumerate(self.tasks):  # a history task under the job's truncate or recreate
            if task.before_run is None:
                try:
                    task.check_history(self.before_run)
                except ValueError as exc:
                    problems.append((("before_run",), f"task {task.name!r} (tasks[{i}]): {exc}"))
        job = self.changes or JobChanges()
        if (job.start is not None or job.window is not None) and not any(
            t.changes.strategy == "watermark" for t in self.tasks
        ):
            field = "window" if job.window is not None else "start"
            problems.append(
                (
                    ("changes", field),
                    f"no task of this job uses strategy 'watermark': '{field}' applies to none",
                )
            )
        for i, task in enumerate(self.tasks):
            own = task.changes
            if own.strategy != "watermark":
                continue
            start, window = own.backfill(job.start, job.window)
            window_at: FieldPath = (
                ("tasks", i, "changes", "window") if own.window is not None else ("changes", "window")
            )
            if window is not None and start is None:
                problems.append(
                    (
                        window_at,
                        f"task {task.name!r}: a window needs a start ('changes.start'), where the first "
                        "window begins",
                    )
                )
            elif window is not None and (own.window is None) != (own.start is None):
                try:  # one of the two is the job's: the pair was not checked together yet
                    check_window_start(window, start)
                except ValueError as exc:
                    problems.append((window_at, f"task {task.name!r}: {exc}"))
        return problems

    def _continuous_problems(self) -> list[tuple[FieldPath, str]]:
        """A continuous job consumes one broker, or follows one table's log, without end: one
        task (a run's tasks go one after another, and this one never ends; a cdc task has its
        own slot, so each table is a job of its own), strategy `messages` or `cdc`, no cron."""
        if self.continuous is None:
            return []
        for other in ("schedule", "timeout", "retry"):
            if getattr(self, other) is not None:
                return [
                    (
                        ("continuous",),
                        f"a continuous job runs all the time and starts again by itself: leave '{other}' out",
                    )
                ]
        if len(self.tasks) != 1:
            return [
                (
                    ("continuous",),
                    f"a continuous job has one task (it runs without end); this one has {len(self.tasks)}: "
                    "make a job of each",
                )
            ]
        if self.tasks[0].changes.strategy not in CONTINUOUS_STRATEGIES:
            return [
                (
                    ("tasks", 0, "changes", "strategy"),
                    "a continuous job's task consumes a broker (changes.strategy 'messages') or follows "
                    "a table's log (changes.strategy 'cdc')",
                )
            ]
        return []
