"""What is applied: objects by kind, a job or connection described, a job's tasks, the
connections with where they are used."""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from runner.changes.cdc import live_lag
from runner.connectors.base import ConsumingSource
from runner.definitions import secrets
from runner.definitions.changelogs import WRITER_END
from runner.definitions.jobs import JobSpec, SyncJobSpec
from runner.definitions.sync_all import SyncAllJobSpec
from runner.definitions.tasks import WriteSpec
from runner.definitions.validate import (
    resolve_reference,
)
from runner.errors import RunnerError
from runner.history import files as history
from runner.jobs import changelogs, sync_all
from runner.jobs.sync import sync_spec
from runner.runs.index import ensure_indexed, recent_runs
from runner.runs.jobs import connections_of, parse_applied
from runner.runs.records import run_summary, with_mode
from runner.services.pointers import pointer_show
from runner.state.objects import AppliedObject
from runner.workspace import Workspace, find


def get(ws: Workspace, kind: str) -> list[AppliedObject]:
    return ws.reader().objects.all(kind)


def next_fire_times(
    schedule: dict[str, Any] | None, count: int = 3, now: dt.datetime | None = None
) -> list[str]:
    if not schedule:
        return []
    import zoneinfo

    tz = zoneinfo.ZoneInfo(schedule.get("timezone", "UTC"))
    from croniter import croniter  # only where schedules are shown: not on `runner run`'s path

    cron = croniter(schedule["cron"], (now or dt.datetime.now(dt.UTC)).astimezone(tz))
    return [cron.get_next(dt.datetime).isoformat() for _ in range(count)]


def describe(ws: Workspace, kind: str, ref: str) -> dict[str, Any]:
    obj = find(ws, kind, ref)
    rev = ws.reader().objects.revision(obj.revision_id)
    out: dict[str, Any] = {
        "kind": obj.kind,
        "namespace": obj.namespace,
        "name": obj.name,
        "file": obj.file,
        "line": obj.line,
        "revision": {
            "id": rev.id,
            "applied_at": rev.applied_at,
            "user": rev.user,
            "git_commit": rev.git_commit,
            "git_dirty": rev.git_dirty,
        },
        "document": obj.document,
    }
    if kind == "Job":
        schedule = obj.document["spec"].get("schedule")
        if schedule:
            from runner.runs.schedule import describe_cron  # croniter: not on `runner run`'s path

            out["schedule"] = {"timezone": "UTC"} | schedule | {"in_words": describe_cron(schedule["cron"])}
        spec = parse_applied(ws, obj)
        out["around"] = around_the_run(spec)
        out["next_runs"] = next_fire_times(schedule)
        if isinstance(spec, SyncJobSpec):  # what each task may change in its target table
            out["table_changes"] = {
                t.name: spec.table_changes(t).describe() for t in spec.tasks if isinstance(t.write, WriteSpec)
            }
            # each task's transforms in words, in the order its rows go through them
            out["transforms"] = {
                t.name: [s.summary() for s in t.transforms] for t in spec.tasks if t.transforms
            }
        out["last_runs"] = [run_summary(with_mode(r)) for r in recent_runs(ws, obj.namespace, obj.name, 5)]
    return out


def around_the_run(spec: JobSpec) -> dict[str, Any]:
    """A job's events, notifications and log level in a line each, for `describe`."""
    events = spec.events
    before = [f"before: {e.what}" for e in events.before] if events else []
    after = [f"after ({e.when}): {e.what}" for e in events.after] if events else []
    notify = [
        f"email to {', '.join(n.email.to)} via {n.email.connection} ({n.when})"
        if n.email
        else f"webhook {n.webhook.url if n.webhook else ''} ({n.when})"
        for n in spec.notify
    ]
    return {"log_level": spec.log_level, "events": before + after, "notify": notify}


def tasks(ws: Workspace, ref: str, expand: bool = True) -> list[dict[str, Any]]:
    """A job's tasks, each with its last run (the newest run that ran it) and its pointer.

    A sync_all job's tasks are the tables of its source schema: with `expand` the source is
    asked for them now (each marked `new`, `known`, or `dropped_in_source`); without (the API's
    listings, which must not connect to a source on every poll), the tasks that ran before."""
    job = find(ws, "Job", ref)
    parsed = parse_applied(ws, job)
    if isinstance(parsed, SyncAllJobSpec):
        return _table_tasks(ws, job, parsed, expand)
    if not isinstance(parsed, SyncJobSpec):
        return _ran_tasks(ws, job)
    spec = sync_spec(parsed, job.ref)
    pointers_by_task = {p["task"]: p["pointer"] for p in pointer_show(ws, ref)}
    last = _last_runs(ws, job, {t.name for t in spec.tasks})
    lags = _live_lags(ws, job, spec) if expand else {}
    return [
        {
            "task": t.name,
            "source": t.read.describe(),
            "target": t.write.describe(),  # a table with the job's schema and table_prefix
            "strategy": t.changes.strategy,
            "deletes": t.deletes,
            "history": isinstance(t.write, WriteSpec) and t.write.history is not None,
            "before_run": t.before_run,
            "active": t.active,
            **(spec.table_changes(t).describe() if isinstance(t.write, WriteSpec) else {}),
            "start": t.changes.start,  # with the job's defaults (`SyncJobSpec.resolved`)
            "window": t.changes.window,
            "timezone": t.read.zone,
            "pointer": pointers_by_task.get(t.name),
            "last_run": last.get(t.name),
        }
        | ({"lag": lags[t.name]} if t.name in lags else {})
        for t in (spec.resolved(task) for task in spec.tasks)
    ]


def consuming_lags(ws: Workspace, job: AppliedObject) -> list[dict[str, Any]]:
    """A continuous job's lag now (`runner status`): each task's messages waiting, asked of
    the broker, or why it cannot say."""
    spec = sync_spec(parse_applied(ws, job), job.ref)
    return [{"task": name, **lag} for name, lag in _live_lags(ws, job, spec).items()]


def _live_lags(ws: Workspace, job: AppliedObject, spec: SyncJobSpec) -> dict[str, dict[str, Any]]:
    """Each cdc task's lag now (its slot's), and each consuming task's (the messages waiting),
    asked of the job's source; an error in its place when the source cannot say."""
    resolved = (spec.resolved(t) for t in spec.tasks)  # a writer's tasks consume change logs
    cdc = [t for t in resolved if t.changes.strategy in ("cdc", "messages")]
    if not cdc:
        return {}
    ref, source_spec = connections_of(ws, job)["source"]
    try:
        source = changelogs.opener(spec, ws.store(), job.ref, "tasks")(ref, source_spec, ws.root)
    except RunnerError as exc:
        return {t.name: {"error": str(exc)} for t in cdc}
    lags: dict[str, dict[str, Any]] = {}
    pointers = {s.task: s.pointer for s in ws.reader().tasks.states(job.namespace, job.name)}
    # a writer's tasks consume its reader's change logs, not a broker's messages: said so
    unit = {"unit": "changes"} if source_spec.get("type") == WRITER_END else {}
    try:
        for t in cdc:
            try:
                if t.changes.strategy == "messages":
                    waiting = cast(ConsumingSource, source).waiting(t.read)
                    lags[t.name] = {"messages_waiting": waiting, **unit}
                else:
                    pointer = pointers.get(t.name)  # a source that keeps no position (MariaDB) needs it
                    lags[t.name] = live_lag(source, job.namespace, job.name, t, pointer)
            except RunnerError as exc:
                lags[t.name] = {"error": str(exc)}
    finally:
        source.close()
    return lags


def _last_runs(ws: Workspace, job: AppliedObject, wanted: set[str]) -> dict[str, dict[str, Any]]:
    """Task -> its result in the newest run that ran it, with the run's id, start and mode."""
    last: dict[str, dict[str, Any]] = {}
    ensure_indexed(ws, job.namespace, job.name)
    for name, run_id in ws.reader().runs.last_by_task(job.namespace, job.name).items():
        if name not in wanted:
            continue
        try:
            record = with_mode(
                history.read_run(history.run_path(ws.history, job.namespace, job.name, run_id))
            )
        except (OSError, ValueError):
            continue
        result = next((t for t in record.get("tasks", []) if t.get("name") == name), None)
        if result is not None:
            last[name] = {
                "run_id": record["run_id"],
                "started_at": record["started_at"],
                "mode": record["mode"],
            } | result
    return last


def _ran_tasks(ws: Workspace, job: AppliedObject) -> list[dict[str, Any]]:
    """The tasks of a job whose run makes them (load_folder: a table per group of files): those
    its runs ran, each as its newest run left it; such a job keeps no pointer."""
    ensure_indexed(ws, job.namespace, job.name)
    last = _last_runs(ws, job, set(ws.reader().runs.last_by_task(job.namespace, job.name)))
    return [
        {
            "task": name,
            "source": run.get("source"),
            "target": run.get("target"),
            "strategy": run.get("strategy"),
            "active": True,
            "pointer": None,
            "last_run": run,
        }
        for name, run in sorted(last.items())
    ]


def _table_tasks(
    ws: Workspace, job: AppliedObject, spec: SyncAllJobSpec, expand: bool
) -> list[dict[str, Any]]:
    """A sync_all job's tasks: the tables it expands to now (`expand`), or those it ran."""
    states = {s.task: s for s in ws.reader().tasks.states(job.namespace, job.name)}
    if expand:
        tables = sync_all.source_tables(spec, connections_of(ws, job)["source"], ws.root)
        rows = sync_all.expand(spec, tables, set(states)).rows(spec)
    else:
        last = _last_runs(ws, job, set(states))
        rows = [
            {
                "task": name,
                "source": last.get(name, {}).get("source"),
                "target": last.get(name, {}).get("target"),
                "strategy": last.get(name, {}).get("strategy"),
                "column": states[name].watermark_column,
                "keys": [],
                "deletes": spec.deletes,
                "state": "known",
            }
            for name in sorted(states)
        ]
    last = _last_runs(ws, job, {r["task"] for r in rows})
    for row in rows:
        state = states.get(row["task"])
        current = state is not None and row["column"] and state.watermark_column == row["column"]
        row["active"] = True
        row["pointer"] = state.pointer if current and state else None
        row["last_run"] = last.get(row["task"])
        if row["source"] is None and row["last_run"]:  # a table gone: where it was copied from and to
            row["source"], row["target"] = row["last_run"].get("source"), row["last_run"].get("target")
    return rows


def _plain(value: Any) -> Any:
    """A URL part as written, or None when it is (or holds) a secret reference."""
    return None if value is None or secrets.REFERENCE_PLACEHOLDER in str(value) else value


def _connection_refs(spec: dict[str, Any]) -> list[str]:
    """The connections a job's spec names: its `source` and `target` when they are names (a
    reader has no target, a writer's source is its reader job) and a reader's
    `change_log.connection`."""
    log = spec.get("change_log")
    refs = [spec.get("source"), spec.get("target"), log.get("connection") if isinstance(log, dict) else None]
    return [ref for ref in refs if isinstance(ref, str)]


def connections(ws: Workspace) -> list[dict[str, Any]]:
    """Applied connections without their secrets: type, host, port, database, user (when
    written out, not referenced), and which jobs use each."""
    store = ws.reader()
    conns = store.objects.all("Connection")
    keys = {(c.namespace, c.name) for c in conns}
    users: dict[tuple[str, str], set[str]] = {}
    for job in store.objects.all("Job"):
        for ref in _connection_refs(job.document["spec"]):
            key = resolve_reference(ref, job.namespace, keys)
            if key is not None:
                users.setdefault(key, set()).add(job.ref)
    out = []
    for c in conns:
        spec = c.document["spec"]
        try:
            url = secrets.parse_masked(spec["url"]) if "url" in spec else None  # a kind without a URL
        except ValueError:
            url = None
        out.append(
            {
                "connection": c.ref,
                "type": spec["type"],
                "host": _plain(url.host) if url else None,
                "port": _plain(url.port) if url else None,
                "database": _plain(url.database) if url else None,
                "user": _plain(url.username) if url else None,
                "used_by": sorted(users.get((c.namespace, c.name), set())),
                "revision": c.revision_id,
                "file": c.file,
                "line": c.line,
                "description": c.document["metadata"].get("description", ""),
            }
        )
    return out
