"""The job types by name: what a job's `spec.type` may say. Each is one module in `runner.jobs`
with its run, over a spec model (a `JobSpec` subclass); adding one is a module and a line here,
as a change strategy is (`sync_all` registers itself, imported when first asked for: a `sync`
run never loads it; `sync`'s run is named, imported when a job first runs, so validating a
folder loads no engine). Validation and the JSON Schema take the spec models from here, and the
run lifecycle runs a job through its type."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runner.changes.strategies import task_needs
from runner.connectors import registry
from runner.definitions.changelogs import END_MODELS
from runner.definitions.jobs import DEFAULT_JOB_TYPE, JobSpec, SyncJobSpec
from runner.definitions.needs import CapabilityCheck
from runner.definitions.tasks import ReadSpec, WriteSpec
from runner.registry import Registry, load

if TYPE_CHECKING:
    from runner.changes.task import TaskResult

# Called as `run(spec, connections, base_dir, *, store, namespace, job, run_id, options, log,
# on_task, progress, cancel, locate)`: see `runner.jobs.sync.run_job`.
RunJob = Callable[..., "list[TaskResult]"]


@dataclass(frozen=True)
class JobType:
    """A job type: the model its `spec` validates with, and the function that runs it (or its
    `module:function`, imported when a job of the type first runs)."""

    spec: type[JobSpec]
    runs: RunJob | str

    @property
    def run(self) -> RunJob:
        return load(self.runs) if isinstance(self.runs, str) else self.runs


JOB_TYPES: Registry[str, JobType] = Registry(
    "job type", {"sync_all": "runner.jobs.sync_all", "load_folder": "runner.jobs.load_folder"}
)
JOB_TYPES.register("sync", JobType(SyncJobSpec, "runner.jobs.sync:run_job"))


def job_models() -> dict[str, type[JobSpec]]:
    """Job type name -> spec model: what validation and the JSON Schema are given."""
    return {name: job_type.spec for name, job_type in JOB_TYPES.items().items()}


def registered_models() -> dict[str, Any]:
    """What validation takes from the registries (the definitions import neither): connection
    and task models by connection type, job spec models by job type; as keyword arguments of
    `validate_documents` and `check_document`. Each is a mapping that imports a kind's or a
    job type's module when it is looked up: a folder of SQLite sync jobs imports no other."""
    return {
        "connection_types": registry.lookups()[0],
        "task_models": registry.kinds(),
        "job_types": JOB_TYPES.view(lambda job_type: job_type.spec),
    }


def capability_check() -> CapabilityCheck:
    """What `runner validate` checks each task with: the kinds' declared capabilities (each
    kind's module imported when looked up) and the strategies' needs (the definitions import
    neither)."""
    return CapabilityCheck(registry.lookups()[1], task_needs)


def parse(spec: Mapping[str, Any], ends: Mapping[str, str] | None = None) -> JobSpec:
    """A job spec (a mapping as applied) as its type's model (`sync` when it states no type),
    its tasks' `read` and `write` as the models of the kinds `ends` gives (`source`/`target` ->
    connection type; an end not given, or of a kind without a connector, has the SQL kinds').

    Raises:
        TerminalError: the type is not registered (the message lists the known ones).
        ValidationError: the spec does not fit its type's model.
    """
    model = JOB_TYPES.get(spec.get("type", DEFAULT_JOB_TYPE)).spec
    if ends:
        source, target = _end_kind(ends.get("source", "")), _end_kind(ends.get("target", ""))
        read, write = source.read if source else ReadSpec, target.write if target else WriteSpec
        # unparametrised, a model validates the SQL kinds' tasks already (R's and W's defaults):
        # the same values without building its parametrised class (~20 ms of a SQL job's run;
        # `validate` keeps it: its hints walk the fields' annotations, which it spells out)
        if (read, write) != (ReadSpec, WriteSpec):
            model = model.for_kinds(read, write)
    return model.model_validate(spec)


def _end_kind(name: str) -> Any:
    """A change log's end model, or the kind's with a connector (only its own module imported:
    a run need not import every kind's), or None."""
    if name in END_MODELS:
        return END_MODELS[name]
    found = registry.kind(name)
    return found if found is not None and found.endpoint else None
