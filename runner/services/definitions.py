"""The desired state: validate the folder, plan the change, apply it under the apply lock,
and the JSON Schema of definitions built from the registries."""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from runner.connectors import registry
from runner.definitions.load import load_folder, lost_definitions
from runner.definitions.models import API_VERSION, Envelope, Metadata, StrictModel
from runner.definitions.validate import (
    Definition,
    check_document,
    job_ends,
    resolve_reference,
    validate_documents,
    warnings_of,
)
from runner.errors import (
    DefinitionsInvalid,
    Problem,
    RunnerError,
    StoreMissing,
)
from runner.jobs.types import capability_check, job_models, registered_models
from runner.jobs.types import parse as parse_job
from runner.plan.diff import Plan, diff
from runner.plan.releases import releases
from runner.state import EMPTY_STATE
from runner.workspace import Workspace

if TYPE_CHECKING:  # the rest of the engine and the store are imported by what uses them:
    # `validate` and a new folder's `plan` load no SQLAlchemy
    from runner.plan.data import DataPlan
    from runner.state.locks import Lock
    from runner.state.store import StateReader, StateStore

DEFAULT_LOCK_TIMEOUT = 60.0


@contextmanager
def _uncollected() -> Iterator[None]:
    """Python's cycle collector paused while a folder is loaded, validated and planned: a burst
    of allocations bounded by the folder's limits (`MAX_DEFINITIONS`, `MAX_FILE_BYTES`) whose
    objects nearly all live on, so each collection it would set off walks a growing heap for
    nothing (~0.2 s of a 1,000-file folder's `plan`). Reference counting frees as ever, and the
    collector runs again after (also in the daemon, whose other threads it pauses that long)."""
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


def validate(ws: Workspace) -> list[Definition]:
    """Raises DefinitionsInvalid with all problems when any file is wrong."""
    return check(ws)[0]


def check(ws: Workspace) -> tuple[list[Definition], list[Problem]]:
    """Every definition and the warnings about them (valid, but likely not meant: a cron that
    fires every second). Raises DefinitionsInvalid with all problems, and the warnings, when
    any file is wrong."""
    with _uncollected():
        docs, problems = load_folder(ws.root)
        definitions, invalid = validate_documents(
            docs,
            base_dir=ws.root,
            **registered_models(),
            capabilities=capability_check(),
            partial=lost_definitions(problems),
        )
        warnings = warnings_of(docs)
    if problems or invalid:
        raise DefinitionsInvalid(problems + invalid, warnings)
    return definitions, sorted(warnings, key=lambda p: p.location)


def plan(ws: Workspace) -> Plan:
    """The changes `apply` would make. Only valid definitions are ever planned: with any
    problem nothing is planned, so a broken file can never plan a deletion."""
    definitions = validate(ws)
    try:
        store = ws.reader()
    except StoreMissing:
        if ws.has_runs():
            raise
        with _uncollected():
            return diff(definitions, [], None, EMPTY_STATE)  # a new folder: everything is created
    latest = store.objects.latest_revision()
    applied = store.objects.all()
    with _uncollected():
        return diff(definitions, applied, latest.id if latest else None, store.objects.state_digest())


def expansions(ws: Workspace, p: Plan) -> dict[str, dict[str, Any]]:
    """What each sync_all job the plan creates, updates or keeps expands to now (`runner plan
    --expand`): its source's tables, each as a task (`new` when it never ran), and the tables
    it ran that are gone. The source is read with the folder's connection definitions (those
    the plan would apply); this is the one part of a plan that connects to anything.

    Raises:
        RunnerError: a source cannot be read (unreachable, no such schema).
    """
    from runner.definitions.sync_all import SyncAllJobSpec  # here: only --expand reads a source
    from runner.jobs import sync_all

    connections = {
        (c.namespace, c.name): c.after["spec"]
        for c in p.changes
        if c.kind == "Connection" and c.after is not None and c.action != "delete"
    }
    try:
        reader = ws.reader()
    except StoreMissing:
        reader = None
    found: dict[str, dict[str, Any]] = {}
    for c in p.changes:
        if c.kind != "Job" or c.after is None or c.action == "delete":
            continue
        types = {key: spec.get("type", "") for key, spec in connections.items()}
        spec = parse_job(c.after["spec"], job_ends(c.after["spec"], c.namespace, types))
        if not isinstance(spec, SyncAllJobSpec):
            continue
        key = resolve_reference(spec.source, c.namespace, set(connections))
        if key is None:  # validated plans name connections that exist
            continue
        source = (f"{key[0]}/{key[1]}", connections[key])
        tables = sync_all.source_tables(spec, source, ws.root)
        known = sync_all.known_tasks(reader, c.namespace, c.name) if reader is not None else set()
        found[c.ref] = {
            "source": source[0],
            "schema": spec.source_schema,
            "tables": sync_all.expand(spec, tables, known).rows(spec),
        }
    return found


def plan_data(
    ws: Workspace,
    p: Plan,
    *,
    unchanged: bool = False,
    timeout: float = 60.0,
    jobs: list[str] | None = None,
) -> DataPlan:
    """What the next run of each job `p` creates or updates (with `unchanged`, of every job)
    would do to the data (`runner plan --data`): each task dry-run from the folder's
    definitions on the folder's connections, against the applied pointers and digests, with
    nothing written anywhere (`runner.plan.data`). The state store is only read, and not
    needed: in a new folder every task runs as a first run.

    Raises:
        RunnerError: a job names a connection the folder does not define.
    """
    try:
        reader = ws.reader()
    except StoreMissing:
        if ws.has_runs():
            raise
        reader = None
    from runner.plan import data  # here: only --data runs tasks

    return data.plan_data(p, ws.root, reader, unchanged=unchanged, timeout=timeout, jobs=jobs)


def save_plan(p: Plan, path: Path) -> None:
    try:
        path.write_text(json.dumps(p.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    except OSError as exc:
        raise RunnerError(f"cannot write the plan to {path}: {exc.strerror}") from None


def read_plan(path: Path) -> Plan:
    try:
        return Plan.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RunnerError(f"{path}: not a readable plan file ({exc})") from None


@dataclass
class ApplyResult:
    plan: Plan
    revision: int | None
    released: list[str] = field(default_factory=list)  # the cdc slots dropped (`release_logs`)


def log_releases(ws: Workspace, p: Plan) -> list[str]:
    """What applying `p` lets go of in the sources: each cdc task's slot and publication it
    deletes (or, for a source that keeps no slot, the stored position it forgets)."""
    if not releases(p):  # nothing let go of (a new folder has no store to read)
        return []
    return [f"job {r.namespace}/{r.job}: {r.text()}" for r in releases(p, _applied_types(ws.reader()))]


def _applied_types(store: StateReader) -> dict[tuple[str, str], str]:
    """(namespace, name) -> type of every applied connection: where a deleted task's log lives."""
    return {
        (o.namespace, o.name): o.document["spec"].get("type", "") for o in store.objects.all("Connection")
    }


def apply(
    ws: Workspace,
    plan_file: Path | None = None,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    planned: Plan | None = None,
) -> ApplyResult:
    """Validate, plan and apply in one transaction under the apply lock; with `plan_file` (or a
    plan made in this process, `planned`), apply exactly that plan, or refuse when the state
    changed since it was made."""
    from runner.plan.apply import apply_plan, release_logs
    from runner.state import locks

    store = ws.store(create=True)
    saved = read_plan(plan_file) if plan_file else planned
    if plan_file is not None and saved is not None:  # data from outside: check what it would store
        registered = registered_models()
        types = _connection_types(store, saved)
        problems = [
            p
            for c in saved.changes
            if c.after is not None and c.action in ("create", "update")
            for p in check_document(
                c.after,
                f"{plan_file} ({c.kind} {c.ref})",
                base_dir=ws.root,
                **registered,
                ends=job_ends(c.after.get("spec"), c.namespace, types) if c.kind == "Job" else None,
            )
        ]
        if problems:
            raise DefinitionsInvalid(problems)
    with store.locks.locked(locks.APPLY, lock_timeout):
        p = saved or plan(ws)
        gone = releases(p, _applied_types(store))
        # the sources as they were: a slot lives where the deleted task read
        before = (
            {(o.namespace, o.name): o.document["spec"] for o in store.objects.all("Connection")}
            if gone
            else {}
        )
        revision = apply_plan(store, p, ws.root)
    released = release_logs(gone, before, ws.root, store) if revision is not None else []
    return ApplyResult(p, revision, released)


def _connection_types(store: StateStore, plan: Plan) -> dict[tuple[str, str], str]:
    """(namespace, name) -> type of every connection once `plan` is applied."""
    types = {
        (o.namespace, o.name): o.document["spec"].get("type", "") for o in store.objects.all("Connection")
    }
    for c in plan.changes:
        if c.kind == "Connection" and c.after is not None:
            types[(c.namespace, c.name)] = c.after["spec"].get("type", "")
        elif c.kind == "Connection":
            types.pop((c.namespace, c.name), None)
    return types


def force_unlock(ws: Workspace, lock_id: str) -> Lock:
    return ws.store().locks.force_unlock(lock_id)


def _by_type(models: list[type[StrictModel]]) -> Any:
    """One spec model per registered type, told apart by `type` (one alone needs no union)."""
    from pydantic import Field

    if len(models) == 1:
        return models[0]
    return Annotated[Union[tuple(models)], Field(discriminator="type")]  # noqa: UP007


def json_schema() -> dict[str, Any]:
    """JSON Schema of a definition document: the connection specs of the registered kinds and
    the job specs of the registered job types, each with every field's description."""
    from pydantic import Field, TypeAdapter, create_model  # ~35 ms of import no run needs

    connections = _by_type(list(registry.connection_models().values()))
    kinds = registry.endpoint_kinds().values()
    # a task's `read` and `write` are any kind's (validation picks its connections' kinds')
    reads = Union[tuple(dict.fromkeys(k.read for k in kinds))]  # noqa: UP007
    writes = Union[tuple(dict.fromkeys(k.write for k in kinds))]  # noqa: UP007
    jobs = _by_type([model.for_kinds(reads, writes) for model in job_models().values()])
    common = {
        "apiVersion": (Literal["runner/v1"], Envelope.model_fields["apiVersion"]),
        "metadata": (Metadata, Field(description="Names the object: its name, namespace and labels.")),
    }
    connection = create_model(
        "ConnectionDefinition",
        __base__=StrictModel,
        kind=(Literal["Connection"], Field(description="A system jobs read from or write to.")),
        spec=(connections, Field(description="Its settings: `type` says which fields it has.")),
        **common,
    )  # type: ignore[call-overload]
    job = create_model(
        "JobDefinition",
        __base__=StrictModel,
        kind=(Literal["Job"], Field(description="What is copied from a source connection to a target.")),
        spec=(
            jobs,
            Field(description="Its settings: `type` (`sync` when left out) says which fields it has."),
        ),
        **common,
    )  # type: ignore[call-overload]
    adapter = TypeAdapter(Annotated[Union[connection, job], Field(discriminator="kind")])  # noqa: UP007
    schema = _generic_names(adapter.json_schema())
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"runner definition ({API_VERSION})"
    return schema


def _generic_names(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema's generic models (a task, a sync job: generic in the kinds' task models) by
    their own names, as editors show them, not by their parameters'."""
    renames = {
        name: name.split("_", 1)[0]
        for name in schema.get("$defs", {})
        if name.split("_", 1)[0] in ("Task", "SyncJobSpec") and "_" in name
    }
    text = json.dumps(schema)
    for old, new in renames.items():
        text = text.replace(f'"#/$defs/{old}"', f'"#/$defs/{new}"')
    renamed = json.loads(text)
    renamed["$defs"] = {renames.get(k, k): v for k, v in renamed["$defs"].items()}
    return renamed


SCHEMA_FILE = "runner.v1.json"


def write_schemas(out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / SCHEMA_FILE
    path.write_text(json.dumps(json_schema(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path
