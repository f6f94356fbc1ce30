"""The request bodies of the API, shared by the routes and named in the OpenAPI document."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from runner import services
from runner.definitions.models import Name


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # "yes" is not a boolean


class RunRequest(Body):
    tasks: list[Name] | None = Field(None, description="Run only these tasks (all when left out).")
    resync: bool = Field(False, description="Forget pointers and digests first: read everything again.")
    recreate: bool = Field(
        False, description="Drop each task's target table first and load it whole (`runner run --recreate`)."
    )

    @field_validator("tasks")
    @classmethod
    def _once_each(cls, tasks: list[str] | None) -> list[str] | None:
        if tasks is not None and len(set(tasks)) != len(tasks):
            raise ValueError("a task is named twice")
        return tasks


class AdhocRunRequest(RunRequest):
    name: Name = Field(
        description="Its own name (not an applied job's): its history and pointers are kept under it."
    )
    namespace: Name = "default"
    spec: dict[str, Any] = Field(
        description=(
            "A job's spec as in jobs.d/ (schemas/runner.v1.json), without schedule, after or retry; "
            "run once. Its tasks are checked against the kinds of the applied connections it names, "
            "so an object here, checked when the request comes, and a 422 names the field."
        )
    )


class PointerRequest(Body):
    value: str | None = Field(
        description="The new pointer (as `runner pointer set` takes it), or null to clear it.",
        max_length=services.MAX_POINTER,
    )


class MoveRequest(Body):
    """Where a task goes: one of `position`, `before` or `after`."""

    position: int | None = Field(None, ge=1, description="Its new place, 1 being first.")
    before: Name | None = Field(None, description="Just before this task.")
    after: Name | None = Field(None, description="Just after this task.")
