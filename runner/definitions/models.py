"""Pydantic models of the definitions: the user-facing contract.

Every model forbids unknown fields, and a field exists here only when the engine honours it.
Connection specs come from the kind modules (`runner.connectors`): each subclasses
`ConnectionSpec` with its own `type` literal, so only implemented kinds validate.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from runner.definitions import secrets
from runner.definitions.templates import check_syntax

API_VERSION = "runner/v1"
HINT = "\nhint: "  # a validator's message may end with a hint, split off into Problem.hint
NAME_PATTERN = r"^[a-z0-9]([a-z0-9_.-]{0,61}[a-z0-9])?$"

Name = Annotated[
    str,
    Field(
        pattern=NAME_PATTERN,
        description=(
            "Lower-case letters, digits, '-', '_' and '.', starting and ending with a letter or digit; "
            "at most 63 characters."
        ),
    ),
]


class StrictModel(BaseModel):
    """Unknown fields are errors: a typo must never be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Metadata(StrictModel):
    name: Name = Field(description="Unique per kind and namespace.")
    namespace: Name | None = Field(
        None,
        description=(
            "Defaults to the sub-folder of jobs.d/ or connections.d/ the file is in, else 'default'."
        ),
    )
    labels: dict[str, str] = Field(default_factory=dict, description="Free-form key/value tags.")
    description: str = Field("", description="What this object is for, for humans.")


class ConnectionSpec(StrictModel):
    """Fields every connection has; kind modules subclass it with a `type` literal and the
    fields of their kind."""

    type: str = Field(description="The kind of system.")


class UrlConnectionSpec(ConnectionSpec):
    """A connection reached through a URL (the database kinds)."""

    url: str = Field(
        description=(
            "SQLAlchemy-style URL. Secrets are referenced, never written out: ${env:NAME} or "
            "${file:path} (relative to the definitions folder)."
        )
    )

    @field_validator("url")
    @classmethod
    def _references_only(cls, url: str) -> str:
        problems = secrets.check_references(url)
        if problems:
            raise ValueError("; ".join(problems))
        where = secrets.literal_password(url)
        if where:
            raise ValueError(
                f"the URL holds a literal {where}{HINT}reference the secret instead, e.g. "
                "postgresql://user:${env:SHOP_PASSWORD}@host/db or ${file:secrets/shop}"
            )
        return url


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


class ReadSpec(StrictModel):
    """What a task reads from the source: a whole table, or the rows of a query."""

    table: str | None = Field(None, min_length=1, description="Table to read, optionally `schema.table`.")
    query: str | None = Field(
        None, min_length=1, description="A SELECT whose rows are read, in the source's SQL."
    )
    deleted_keys_query: str | None = Field(
        None,
        description=(
            "With `changes.strategy: watermark`: a SELECT returning the keys (in `write.keys` order) of "
            "rows deleted in the source, instead of comparing every key (DataZen's DeletedRecordsSQL)."
        ),
    )
    unmapped_types: Literal["error", "text", "json"] = Field(
        "error",
        description=(
            "Columns of a type runner cannot map (an array, an enum, an interval, MariaDB's ENUM, SET "
            "or BIT): `error` fails the task naming every such column before anything is written; "
            "`text` reads each as the source's text of its value, `json` as JSON (PostgreSQL: "
            "`to_jsonb`, so an array is a JSON array; MariaDB: a JSON string)."
        ),
    )

    @model_validator(mode="after")
    def _one_of(self) -> ReadSpec:
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of 'table' or 'query'")
        return self


class WriteSpec(StrictModel):
    """Where a task writes in the target."""

    table: str = Field(
        min_length=1,
        description=(
            "Target table, optionally `schema.table`; created when missing (with a primary key on "
            "`keys`), with the source's column types mapped to the target's dialect."
        ),
    )
    keys: list[str] = Field(
        default_factory=list,
        description=(
            "Columns that identify a row. With keys, rows are upserted (only changed rows are "
            "written); without, the target's rows are replaced on every run."
        ),
    )
    soft_delete_column: str = Field(
        "_deleted_at", description="With `deletes: soft`: the timestamp column set when a row is deleted."
    )
    upsert_script: str | None = Field(
        None,
        description=(
            "Instead of runner's merge: a Jinja template of one SQL statement run for every changed "
            "row, e.g. `INSERT INTO {{ table }} ({{ columns|map('ident')|join(', ') }}) VALUES "
            "({% for c in columns %}{{ bind(c) }}{{ ', ' if not loop.last }}{% endfor %}) ON CONFLICT …`. "
            "Context: table (quoted), columns, keys, values (names), bind(name), filter ident. "
            "Values are bound parameters, never text in the SQL."
        ),
    )
    delete_script: str | None = Field(
        None,
        description="With upsert_script and deletes: propagate: the statement run for every deleted key "
        "(context as upsert_script, over the key columns).",
    )

    @field_validator("upsert_script", "delete_script")
    @classmethod
    def _template(cls, source: str | None) -> str | None:
        if source is not None:
            problem = check_syntax(source)
            if problem:
                raise ValueError(problem)
        return source

    @field_validator("keys")
    @classmethod
    def _unique_keys(cls, keys: list[str]) -> list[str]:
        if len(set(keys)) != len(keys):
            raise ValueError("a key column is named twice")
        return keys


DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|seconds?|m|min|minutes?|h|hours?|d|days?)?\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DURATION_HELP = "a number of seconds or e.g. '90s', '5m', '2h', '1d'"


def seconds(value: float | str) -> float:
    """A duration field's value in seconds (units of a numeric column for `lookback`)."""
    if isinstance(value, str):
        match = DURATION.match(value)
        if match is None:
            raise ValueError(f"invalid duration {value!r}; use {DURATION_HELP}")
        return float(match[1]) * _UNIT_SECONDS[(match[2] or "s")[0]]
    return float(value)


def _positive_duration(value: float | str) -> float | str:
    if seconds(value) <= 0:
        raise ValueError("must be more than 0 seconds")
    return value


Duration = Annotated[float | str, AfterValidator(_positive_duration)]


class ServerConnectionSpec(UrlConnectionSpec):
    """A connection to a database server (not a file): a server that does not answer is given
    up on after `connect_timeout`, instead of hanging the run."""

    connect_timeout: Duration = Field(
        10.0,
        description=(
            "How long to wait for the server to accept a connection and answer its handshake "
            f"({DURATION_HELP}); then the run fails (retried by the daemon when `retry` is set)."
        ),
    )


class ChangesSpec(StrictModel):
    """How a task finds what changed in the source since the last run."""

    strategy: Literal["full", "watermark", "hash"] = Field(
        "full",
        description=(
            "full: read every row (with keys, write only what differs); watermark: read rows whose "
            "`column` is at or past the stored pointer; hash: compare a digest per key, computed "
            "in the source, with the digests of the last run."
        ),
    )
    column: str | None = Field(
        None, description="With watermark: a timestamp, date or increasing number column of the source."
    )
    lookback: float | str = Field(
        0,
        description=(
            "With watermark: re-read this far behind the pointer, for rows committed late with an "
            "older value: a number (seconds for time columns, units for numeric ones) or '5m', '2h', '1d'."
        ),
    )

    @field_validator("lookback")
    @classmethod
    def _duration(cls, value: float | str) -> float | str:
        if seconds(value) < 0:
            raise ValueError("lookback cannot be negative")
        return value

    def lookback_amount(self) -> float:
        """Seconds (or units of a numeric column) to step back from the pointer."""
        return seconds(self.lookback)

    @model_validator(mode="after")
    def _column_for_watermark(self) -> ChangesSpec:
        if self.strategy == "watermark" and not self.column:
            raise ValueError("strategy 'watermark' needs 'column'")
        if self.strategy != "watermark" and (self.column or self.lookback):
            raise ValueError("'column' and 'lookback' only apply to strategy 'watermark'")
        return self


class Task(StrictModel):
    """One stream: a source table or query copied into one target table."""

    name: Name = Field(description="Unique within the job; names the task in history.")
    read: ReadSpec
    write: WriteSpec
    changes: ChangesSpec = Field(default_factory=ChangesSpec)
    deletes: Literal["ignore", "propagate", "soft"] = Field(
        "ignore",
        description=(
            "Rows gone from the source: ignore (keep them), propagate (delete them in the target), "
            "soft (set write.soft_delete_column). Needs write.keys."
        ),
    )

    @model_validator(mode="after")
    def _needs_keys(self) -> Task:
        keyless = not self.write.keys
        if keyless and self.changes.strategy != "full":
            raise ValueError(
                f"strategy {self.changes.strategy!r} needs write.keys: a row read again must update "
                "its copy, never be written twice"
            )
        if keyless and self.deletes != "ignore":
            raise ValueError(f"deletes: {self.deletes} needs write.keys to know which rows are gone")
        if self.read.deleted_keys_query is not None and (
            self.changes.strategy != "watermark" or self.deletes == "ignore"
        ):
            raise ValueError(
                "read.deleted_keys_query applies to strategy 'watermark' with deletes propagate or soft"
            )
        if self.deletes == "soft" and self.write.soft_delete_column in self.write.keys:
            raise ValueError("write.soft_delete_column cannot be a key column")
        self._check_scripts()
        return self

    def _check_scripts(self) -> None:
        write, strategy = self.write, self.changes.strategy
        if write.delete_script and not write.upsert_script:
            raise ValueError("write.delete_script goes with write.upsert_script")
        if not write.upsert_script:
            return
        if self.deletes == "soft":
            raise ValueError("with scripts, deletes are propagate (through delete_script) or ignore")
        if self.deletes == "propagate":
            if not write.delete_script:
                raise ValueError("deletes: propagate with write.upsert_script needs write.delete_script")
            if strategy == "full" or (strategy == "watermark" and not self.read.deleted_keys_query):
                raise ValueError(
                    "a delete script needs the deleted keys listed: use strategy 'hash', or 'watermark' with "
                    "read.deleted_keys_query (a script's target cannot be compared key by key)"
                )


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
    source: str = Field(
        min_length=1,
        description=("Connection to read from: `name` (same namespace, else 'default') or `namespace/name`."),
    )
    target: str = Field(min_length=1, description="Connection to write to, named as `source` is.")
    schedule: Schedule | None = Field(
        None, description=("When the daemon fires the job; `runner describe` shows the next fire times.")
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


class Envelope(StrictModel):
    """The parts every definition shares, checked before its spec."""

    apiVersion: Literal["runner/v1"] = Field(description="Format version of the definition.")  # noqa: N815
    kind: Literal["Connection", "Job"]
    metadata: Metadata
    spec: dict = Field(description="Depends on kind.")
