"""The parts every definition shares: the envelope, names, metadata, durations, and the base of
connection specs.

Every model forbids unknown fields, and a field exists only when the engine honours it. The
specs are per kind and per job type: connection kinds subclass `ConnectionSpec` in their own
modules (`runner.connectors`), and job types subclass `JobSpec` (`runner.definitions.jobs`), so
only what is registered validates.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

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
    """Unknown fields are errors: a typo must never be silently ignored. A model's validator is
    built when it first validates (`defer_build`), not when its module is imported: a run
    builds its job's model, not every kind's and every generic's (~0.05 s of each start)."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


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
    """The one field every connection has. Each kind subclasses it with a `type` literal and its
    own fields (the SQL kinds a `url`), so no field validates for a kind that ignores it."""

    type: str = Field(description="The kind of system.")


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


class Envelope(StrictModel):
    """The parts every definition shares, checked before its spec."""

    apiVersion: Literal["runner/v1"] = Field(description="Format version of the definition.")  # noqa: N815
    kind: Literal["Connection", "Job"]
    metadata: Metadata
    spec: dict = Field(description="Depends on kind.")
