"""Pydantic models of the definitions: the user-facing contract.

Every model forbids unknown fields, and a field exists here only when the engine honours it.
Connection specs come from the kind modules (`runner.engine.kinds`): each subclasses
`ConnectionSpec` with its own `type` literal, so only implemented kinds validate.
"""

from __future__ import annotations

import zoneinfo
from typing import Annotated, Literal

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from runner.definitions import secrets

API_VERSION = "runner/v1"
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
    """Fields every connection has; kind modules subclass it with a `type` literal."""

    type: str = Field(description="The kind of system.")
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
                f"the URL holds a literal {where}; reference the secret instead, e.g. "
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
        fields = cron.split()
        if len(fields) not in (5, 6) or not croniter.is_valid(cron):
            raise ValueError(
                f"invalid cron expression {cron!r}; expected 5 fields (minute hour "
                "day month weekday) or 6 with seconds last"
            )
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

    table: str | None = Field(None, description="Table to read, optionally `schema.table`.")
    query: str | None = Field(None, description="A SELECT whose rows are read, in the source's SQL.")

    @model_validator(mode="after")
    def _one_of(self) -> ReadSpec:
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of 'table' or 'query'")
        return self


class WriteSpec(StrictModel):
    """Where a task writes in the target."""

    table: str = Field(
        description=(
            "Target table, optionally `schema.table`; created when missing, with the source's "
            "column types mapped to the target's dialect. Its rows are replaced on every run."
        )
    )


class Task(StrictModel):
    """One stream: a source table or query copied into one target table."""

    name: Name = Field(description="Unique within the job; names the task in history.")
    read: ReadSpec
    write: WriteSpec


class JobSpec(StrictModel):
    source: str = Field(
        description=("Connection to read from: `name` (same namespace, else 'default') or `namespace/name`.")
    )
    target: str = Field(description="Connection to write to, named as `source` is.")
    schedule: Schedule | None = Field(
        None, description=("When the daemon fires the job; `runner describe` shows the next fire times.")
    )
    batch_size: int = Field(
        10_000,
        ge=1,
        le=1_000_000,
        description=("Rows per batch from reader to writer; bounds the memory a run holds."),
    )
    tasks: list[Task] = Field(min_length=1, description="Run in order, each in its own transaction.")

    @field_validator("tasks")
    @classmethod
    def _unique_task_names(cls, tasks: list[Task]) -> list[Task]:
        seen: set[str] = set()
        for task in tasks:
            if task.name in seen:
                raise ValueError(f"two tasks are named {task.name!r}")
            seen.add(task.name)
        return tasks


class Envelope(StrictModel):
    """The parts every definition shares, checked before its spec."""

    apiVersion: Literal["runner/v1"] = Field(description="Format version of the definition.")  # noqa: N815
    kind: Literal["Connection", "Job"]
    metadata: Metadata
    spec: dict = Field(description="Depends on kind.")
