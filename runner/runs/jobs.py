"""Which job a run runs and on which connections: an applied job's spec as its type's model,
an ad-hoc job's checked as a definition in jobs.d/ would be (its tasks against the kinds of
the applied connections it names), and the tasks a run may be limited to."""

from __future__ import annotations

from typing import Any

from runner.definitions import secrets
from runner.definitions.changelogs import (
    CHANGE_LOG_END,
    DEFAULT_FOLDER,
    READER_END,
    WRITER_END,
    keeps_change_logs,
    step_ends,
)
from runner.definitions.jobs import JobSpec
from runner.definitions.load import DEFAULT_NAMESPACE, format_path, resolve_reference
from runner.definitions.models import API_VERSION
from runner.errors import DefinitionsInvalid, InvalidValue, Location, NameTaken, NotFound, Problem
from runner.jobs import types as job_types
from runner.state.objects import AppliedObject
from runner.workspace import Workspace, find

ADHOC_FILE = "(ad-hoc)"  # an ad-hoc job's `file`: it was never in jobs.d/


def job_and_connections(
    ws: Workspace, ref: str
) -> tuple[AppliedObject, JobSpec, dict[str, tuple[str, dict[str, Any]]]]:
    """An applied job, its spec as its type's model (its tasks as its connections' kinds'
    models), and its applied connections."""
    job = find(ws, "Job", ref)
    connections = connections_of(ws, job)
    return job, job_types.parse(job.document["spec"], _types(connections)), connections


def parse_applied(ws: Workspace, job: AppliedObject) -> JobSpec:
    """An applied job's spec as its type's model, its tasks' `read` and `write` as the models
    of its applied connections' kinds (the SQL kinds' where a connection is not applied)."""
    return job_types.parse(job.document["spec"], applied_ends(ws, job))


def applied_ends(ws: Workspace, job: AppliedObject) -> dict[str, str]:
    """`source`/`target` -> the type of the applied connection it names (where applied)."""
    return _types(connections_of(ws, job, missing_ok=True))


def connections_of(
    ws: Workspace,
    job: AppliedObject,
    *,
    missing_ok: bool = False,
    applied: list[AppliedObject] | None = None,
) -> dict[str, tuple[str, dict[str, Any]]]:
    """`source`/`target` -> (connection ref, applied spec), and `change_log` -> a job with a
    target's change logs (`READER_END`) when it keeps them; an end whose connection is not
    applied is left out with `missing_ok`, else raises NotFound. `applied`: the applied
    objects read already (`runner.runs.admission`), else they are read from the store."""
    objects = applied if applied is not None else ws.store().objects.all("Connection")
    connections = {(o.namespace, o.name): o for o in objects if o.kind == "Connection"}
    ends: dict[str, tuple[str, dict[str, Any]]] = {}
    spec = job.document["spec"]
    for end, kind in step_ends(spec).items():  # a reader's change logs, a writer's reader
        ends[end] = _step_end(ws, job, kind, connections, missing_ok, applied)
    for end in ("source", "target"):
        if end in ends:
            continue
        ref = job.document["spec"].get(end, "")
        key = resolve_reference(ref, job.namespace, set(connections))
        if key is None and missing_ok:
            continue
        if key is None:
            raise NotFound(f"job {job.ref}: connection {ref!r} is not applied")
        ends[end] = (f"{key[0]}/{key[1]}", connections[key].document["spec"])
    if "target" in spec and keeps_change_logs(spec):  # a job with a target keeps them beside it
        ends[CHANGE_LOG_END] = _step_end(ws, job, READER_END, connections, missing_ok, applied)
    return ends


def _step_end(
    ws: Workspace,
    job: AppliedObject,
    kind: str,
    connections: dict[tuple[str, str], Any],
    missing_ok: bool,
    applied: list[AppliedObject] | None,
) -> tuple[str, dict[str, Any]]:
    """A reader's target (where its change logs go) or a writer's source (its reader job and
    where that one's change logs are), as an end of kind `READER_END` or `WRITER_END`."""
    spec = job.document["spec"]
    if kind == WRITER_END:
        objects = applied if applied is not None else ws.store().objects.all("Job")
        jobs = {(o.namespace, o.name): o for o in objects if o.kind == "Job"}
        ref = spec["source"]["job"]
        key = resolve_reference(ref, job.namespace, set(jobs))
        if key is None and not missing_ok:
            raise NotFound(f"job {job.ref}: its source, job {ref!r}, is not applied")
        reader = f"{key[0]}/{key[1]}" if key else ref
        place = change_log_place(ws, jobs[key], connections, missing_ok) if key else {}
        return reader, {"type": WRITER_END, "job": reader, **place}
    place = change_log_place(ws, job, connections, missing_ok)
    return f"change logs of {job.ref}", {"type": READER_END, **place}


def change_log_place(
    ws: Workspace, job: AppliedObject, connections: dict[tuple[str, str], Any], missing_ok: bool = False
) -> dict[str, Any]:
    """Where a job's change logs are (`ChangeLogSpec`'s fields): `folder`, a folder on this
    machine, or `location`, the spec of the files connection of a folder on an FTP or SFTP
    server (and `connection`, its name). `connections`: the applied ones by (namespace, name).

    Raises:
        NotFound: its `change_log.connection` is not applied (unless `missing_ok`).
    """
    options = job.document["spec"].get("change_log") or {}
    folder = ws.root / ".runner" / DEFAULT_FOLDER
    if options.get("path"):
        folder = ws.root / options["path"]
    elif options.get("connection"):
        key = resolve_reference(options["connection"], job.namespace, set(connections))
        if key is None and not missing_ok:
            raise NotFound(f"job {job.ref}: connection {options['connection']!r} is not applied")
        if key is not None:
            files = connections[key].document["spec"]
            if files.get("protocol", "local") != "local":
                return {"location": files, "connection": f"{key[0]}/{key[1]}"}
            folder = ws.root / files.get("path", "")
    return {"folder": str(folder.resolve())}


def _types(connections: dict[str, tuple[str, dict[str, Any]]]) -> dict[str, str]:
    """`source`/`target` -> the connection's type."""
    return {end: spec.get("type", "") for end, (_, spec) in connections.items() if end != CHANGE_LOG_END}


ADHOC_ONLY_ONCE = ("schedule", "after", "retry")  # the daemon's fields: an ad-hoc run runs once, now
# what only a reviewed definition may ask for: a command on the runner's machine, SQL beyond the
# tasks', a notification resolving secrets (a header `${env:ANY}`) and sending them to any URL;
# nor may any other field reference a secret (a mask's salt)
ADHOC_REVIEWED_ONLY = ("events", "notify")


def adhoc_job(
    ws: Workspace, name: str, spec: dict[str, Any], namespace: str = DEFAULT_NAMESPACE
) -> tuple[AppliedObject, JobSpec, dict[str, tuple[str, dict[str, Any]]]]:
    """An ad-hoc job's spec checked as a definition in jobs.d/ would be, its tasks against the
    kinds of the applied connections it names (a queue's task is no table's); with those
    connections.

    Raises:
        DefinitionsInvalid: the spec or its name is invalid (with the field of each problem).
        NotFound: a connection it names is not applied.
    """
    metadata = {"name": name, "namespace": namespace}
    document = {"apiVersion": API_VERSION, "kind": "Job", "metadata": metadata, "spec": spec}
    job = AppliedObject("Job", namespace, name, document, "", ADHOC_FILE, 0, 0)
    valid_ends = isinstance(spec.get("source", ""), str) and isinstance(spec.get("target", ""), str)
    ends = connections_of(ws, job, missing_ok=True) if valid_ends else {}
    # validation of a whole document: an ad-hoc job's only (an applied job's was at apply)
    from runner.definitions.validate import check_document

    problems = check_document(document, "ad-hoc job", **job_types.registered_models(), ends=_types(ends))
    problems += [
        Problem(
            Location("ad-hoc job", field=f"spec.{field}"),
            f"'{field}' does not apply to an ad-hoc run: it runs once, now",
        )
        for field in ADHOC_ONLY_ONCE
        if field in spec
    ]
    problems += [
        Problem(
            Location("ad-hoc job", field=f"spec.{field}"),
            f"'{field}' is not accepted in an ad-hoc run: commands, SQL events and notifications "
            "(which resolve secrets) come only from definitions in jobs.d/",
        )
        for field in ADHOC_REVIEWED_ONLY
        if field in spec
    ]
    reviewed = {k: v for k, v in spec.items() if k not in ADHOC_REVIEWED_ONLY}  # refused above
    problems += [
        Problem(
            Location("ad-hoc job", field=format_path(path)),
            f"{ref}: an ad-hoc run resolves no secret (a mask's salt of a password would write digests "
            "keyed with it); secret references come only from definitions in jobs.d/",
        )
        for path, ref in secrets.references_in(reviewed, ("spec",))
    ]
    if problems:
        raise DefinitionsInvalid(problems)
    ends = connections_of(ws, job)  # a connection not applied: NotFound
    return job, job_types.parse(spec, _types(ends)), ends


def check_tasks(ws: Workspace, ref: str, tasks: list[str] | None) -> None:
    """Raise NotFound when `tasks` names a task the applied job does not have, InvalidValue
    when it names one switched off."""
    job = find(ws, "Job", ref)
    check_task_names(parse_applied(ws, job), f"job {job.ref}", tasks)


def check_task_names(spec: JobSpec, what: str, tasks: list[str] | None) -> None:
    """What a run limited to `tasks` may run: tasks the job has (a job whose tasks are found
    when it runs checks them then) and that are not switched off.

    Raises:
        NotFound: a task the job does not have.
        InvalidValue: a task switched off (`active: false`): a run never runs it.
    """
    if not tasks or spec.expands_at_run:
        return
    names = spec.task_names()
    unknown = sorted(set(tasks) - set(names))
    if unknown:
        raise NotFound(f"{what} has no task {', '.join(map(repr, unknown))} (tasks: {', '.join(names)})")
    inactive = [name for name in spec.inactive_tasks() if name in tasks]
    if inactive:
        raise InvalidValue(
            f"{what}: task {', '.join(map(repr, inactive))} is switched off (active: false), and a run never "
            "runs it; set active: true (or remove the line) and apply to run it",
            "tasks",
        )


def check_adhoc(ws: Workspace, job: AppliedObject, spec: JobSpec, tasks: list[str] | None) -> None:
    """An ad-hoc job may not take an applied job's name (it would share its pointers and
    digests), nor name a task it does not have."""
    try:
        applied = ws.store().objects.get("Job", job.namespace, job.name)
    except NotFound:
        applied = None
    if applied is not None:
        raise NameTaken(
            f"job {job.ref} is applied: an ad-hoc run takes a name of its own (its pointers and digests "
            "are kept under it)"
        )
    check_task_names(spec, "the ad-hoc job", tasks)
