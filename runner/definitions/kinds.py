"""The checks that depend on what the packages above register: a document's spec model by its
`spec.type` (a connection kind, a job type), each task's `read` and `write` by the kinds of its
job's connections, and `${file:}` references in whatever fields a kind has. `definitions`
imports none of those packages: the caller hands the models in."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from runner.definitions import secrets
from runner.definitions.errors import problems_from
from runner.definitions.jobs import DEFAULT_JOB_TYPE, JobSpec
from runner.definitions.load import Document
from runner.definitions.models import ConnectionSpec
from runner.errors import Problem


class TaskModels(Protocol):
    """What validation needs of a connection kind beyond its spec model (a registered `Kind`
    has it): the models of a task's `read` when the kind is the job's source, and of its
    `write` when it is the target."""

    @property
    def read(self) -> type[BaseModel]: ...

    @property
    def write(self) -> type[BaseModel]: ...

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


def task_problems(
    doc: Document,
    ends: Mapping[str, str],
    task_models: Mapping[str, TaskModels],
    job_types: Mapping[str, type[JobSpec]],
    reported: set[Problem],
) -> list[Problem]:
    """Each task's `read` against its source kind's read model and `write` against its target
    kind's write model, so a field validates only for a kind that honours it. A problem already
    `reported` (by the job's own model: the SQL kinds' models are the task's) is not repeated;
    the tasks of a job of an unknown type are not looked at (the type is reported)."""
    spec = doc.data.get("spec")
    type_name = spec.get("type", DEFAULT_JOB_TYPE) if isinstance(spec, dict) else None
    if not isinstance(spec, dict) or not isinstance(type_name, str) or type_name not in job_types:
        return []
    tasks = spec.get("tasks")
    problems: list[Problem] = []
    for i, task in enumerate(tasks if isinstance(tasks, list) else []):
        for field, end in (("read", "source"), ("write", "target")):
            kind = task_models.get(ends.get(end, ""))
            if kind is None or not isinstance(task, dict) or field not in task:
                continue
            model: type[BaseModel] = getattr(kind, field)
            try:
                model.model_validate(task[field])
            except ValidationError as exc:
                found = problems_from(exc, doc, model, ("spec", "tasks", i, field))
                problems.extend(p for p in found if p not in reported)
    return problems


def secret_file_problems(doc: Document, spec: ConnectionSpec, base_dir: Path) -> list[Problem]:
    """`${file:}` references in any of a connection's fields (a kind's own, not only a SQL
    URL) that point outside the folders secrets may be read from."""
    problems: list[Problem] = []

    def walk(value: Any, path: tuple[str | int, ...]) -> None:
        if isinstance(value, str):
            where = doc.locate(("spec", *path))
            problems.extend(Problem(where, message) for message in secrets.file_problems(value, base_dir))
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, (*path, key))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, (*path, index))

    walk(spec.model_dump(mode="json"), ())
    return problems
