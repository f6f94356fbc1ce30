"""The checks that depend on what the packages above register: a document's spec model by its
`spec.type` (a connection kind, a job type), a job's model by the kinds of its connections
(each task's `read` and `write` are theirs), and `${file:}` references in whatever fields a
kind has. `definitions` imports none of those packages: the caller hands the models in."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel

from runner.definitions import secrets
from runner.definitions.jobs import JobSpec
from runner.definitions.load import Document
from runner.definitions.models import ConnectionSpec
from runner.definitions.tasks import ReadModel, ReadSpec, WriteModel, WriteSpec
from runner.errors import Problem


class TaskModels(Protocol):
    """What validation needs of a connection kind beyond its spec model (a registered `Kind`
    has it): the models of a task's `read` when the kind is the job's source, and of its
    `write` when it is the target."""

    @property
    def read(self) -> type[ReadModel]: ...

    @property
    def write(self) -> type[WriteModel]: ...

    @property
    def roles(self) -> frozenset[str]:
        """What a connection of the kind may be: `source`/`target` of a job, `mail`."""
        ...


def model_of(
    doc: Document, models: Mapping[str, type[BaseModel]], what: str, default: str | None
) -> type[BaseModel] | Problem:
    """The model `spec.type` names, or the located problem of a type missing or unknown."""
    type_name = doc.data["spec"].get("type", default)
    if isinstance(type_name, str) and type_name in models:
        return models[type_name]
    message = "required field is missing" if type_name is None else f"unknown {what} {str(type_name)!r}"
    return Problem(doc.locate(("spec", "type")), message, f"known types: {', '.join(sorted(models))}")


def connection_type(doc: Document) -> str:
    """A connection document's `spec.type` as it states it ("" when it states none)."""
    spec = doc.data.get("spec")
    type_name = spec.get("type") if isinstance(spec, dict) else None
    return type_name if isinstance(type_name, str) else ""


def job_model(
    model: type[JobSpec], ends: Mapping[str, str], task_models: Mapping[str, TaskModels]
) -> type[JobSpec]:
    """A job type's model for a job whose connections are of the kinds `ends` gives
    (`source`/`target` -> connection type): its tasks' `read` validate with the source kind's
    model and `write` with the target kind's, so a field validates only for a kind that honours
    it. An end unknown (not given, a connection missing or of an unknown type) keeps the SQL
    kinds' model, whose problems then say what a table's task would need."""
    source, target = task_models.get(ends.get("source", "")), task_models.get(ends.get("target", ""))
    return model.for_kinds(source.read if source else ReadSpec, target.write if target else WriteSpec)


def secret_file_problems(doc: Document, spec: ConnectionSpec, base_dir: Path) -> list[Problem]:
    """`${file:}` references in any of a connection's fields (a kind's own, not only a SQL
    URL) that point outside the folders secrets may be read from."""
    return [
        Problem(doc.locate(("spec", *path)), message)
        for path, value in secrets.strings_in(spec.model_dump(mode="json"))
        for message in secrets.file_problems(value, base_dir)
    ]
