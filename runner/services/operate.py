"""Operating the runner: cancel, suspend, pause, and the status of jobs and the daemon.

What reads the store imports the store's modules where it runs: `runtime_switches` is asked by
every `plan`, which in a new folder has no store and loads no SQLAlchemy."""

from __future__ import annotations

import datetime as dt
from typing import Any

from runner.connectors.changelog import recorded_lag
from runner.definitions.validate import (
    resolve_reference,
)
from runner.errors import (
    NotFound,
    StoreMissing,
)
from runner.history.records import QUEUED
from runner.workspace import Workspace, find

PAUSED = "paused"  # the settings key of `runner pause`


def cancel(ws: Workspace, ref: str, by: str | None = None) -> dict[str, Any]:
    """Ask a running job to stop at its next batch boundary, in whichever process runs it (also
    a job deleted from the definitions while its run goes on, or an ad-hoc run)."""
    from runner.state import locks
    from runner.state.database import utcnow

    try:
        job_ref = find(ws, "Job", ref).ref
    except NotFound:
        running = [ref for ref, lock in ws.store().locks.jobs().items() if lock.alive]
        matches = [r for r in running if r == ref or ("/" not in ref and r.endswith(f"/{ref}"))]
        if len(matches) != 1:
            raise
        job_ref = matches[0]
    held = ws.store().locks.request_cancel(locks.job_lock(job_ref), f"{by or locks.holder()} at {utcnow()}")
    return {"job": job_ref, "run_id": held.run_id, "holder": held.holder}


def suspend(ws: Workspace, ref: str, suspended: bool = True, by: str | None = None) -> dict[str, Any]:
    """Suspend (or resume) a job: the daemon's cron and triggers skip it until it is resumed.
    A runtime switch in the state store, not a change to the definitions in git."""
    from runner.state import locks

    job = find(ws, "Job", ref)
    changed = ws.store().switches.set_suspended(job.namespace, job.name, suspended, by or locks.holder())
    return {"job": job.ref, "suspended": suspended, "changed": changed}


def pause(ws: Workspace, paused: bool = True, by: str | None = None) -> dict[str, Any]:
    """Stop (or resume) all scheduling by the daemon; running jobs finish."""
    from runner.state import locks

    ws.store().switches.set_setting(PAUSED, paused, by or locks.holder())
    return paused_info(ws)


def paused_info(ws: Workspace) -> dict[str, Any]:
    stored = ws.reader().switches.setting(PAUSED)
    if not stored or not stored[0]:
        return {"paused": False}
    return {"paused": True, "since": stored[1], "by": stored[2]}


def runtime_switches(ws: Workspace) -> dict[str, Any]:
    """What operators switched at runtime (not in git): suspended jobs and the pause."""
    try:
        suspended = ws.reader().switches.suspended()
    except StoreMissing:  # a new folder: nothing was switched yet
        return {"paused": False, "suspended": []}
    return paused_info(ws) | {
        "suspended": [
            {"job": f"{ns}/{name}", "since": since, "by": by}
            for (ns, name), (since, by) in sorted(suspended.items())
        ]
    }


def status(ws: Workspace, now: dt.datetime | None = None) -> dict[str, Any]:
    """Every applied job with its schedule, next run, last run, the run going on now,
    whether it is suspended and whether an applied update waits for the running run to end."""
    from runner.runs.index import recent_runs
    from runner.runs.records import run_summary, with_live_status
    from runner.services.catalog import consuming_lags, next_fire_times
    from runner.state import locks

    store = ws.reader()
    problem = store.db.check()
    if problem:  # what the store says now cannot be trusted: say only that
        return {
            "state_store": {"healthy": False, "error": problem},
            "daemon": None,
            "paused": None,
            "revision": None,
            "git_commit": None,
            "jobs": [],
        }
    running = {ref: lock for ref, lock in store.locks.jobs().items() if lock.alive}
    suspended = store.switches.suspended()
    paused = paused_info(ws)
    daemon = store.locks.info(locks.DAEMON)
    latest = store.objects.latest_revision()
    jobs = []
    applied = store.objects.all("Job")
    keys = {(o.namespace, o.name) for o in applied}
    for ref in sorted(set(running) - {o.ref for o in applied}):  # deleted (or ad-hoc) while it runs
        namespace, _, name = ref.partition("/")
        lock = running[ref]
        jobs.append(
            {
                "job": ref,
                "schedule": None,
                "after": [],
                "next_run": None,
                "last_run": None,
                "running": {"run_id": lock.run_id, "since": lock.acquired_at, "holder": lock.holder},
                "suspended": None,
                "pending_update": False,
                "revision": None,
                "applied": False,
            }
        )
    for job in applied:
        spec = job.document["spec"]
        lock = running.get(job.ref)
        recent = [with_live_status(ws, r) for r in recent_runs(ws, job.namespace, job.name, 2)]
        last = next((r for r in recent if r.get("status") not in ("running", QUEUED)), None)
        current = next((r for r in recent if lock and r["run_id"] == lock.run_id), None)
        switch = suspended.get((job.namespace, job.name))
        schedule = spec.get("schedule")
        jobs.append(
            {
                "job": job.ref,
                "schedule": schedule,
                "after": [  # as the daemon reads them: namespace/name
                    {
                        "job": "/".join(resolve_reference(t["job"], job.namespace, keys) or ("?", t["job"])),
                        "when": t.get("when", "succeeded"),
                    }
                    for t in spec.get("after", [])
                ],
                "next_run": (next_fire_times(schedule, 1, now) or [None])[0]
                if schedule and not switch and not paused["paused"]
                else None,
                "last_run": run_summary(last) if last else None,
                "running": {"run_id": lock.run_id, "since": lock.acquired_at, "holder": lock.holder}
                if lock
                else None,
                "suspended": {"since": switch[0], "by": switch[1]} if switch else None,
                "pending_update": bool(
                    current and current.get("revision", job.revision_id) < job.revision_id
                ),
                "revision": job.revision_id,
                "applied": True,
                "inactive_tasks": [t["name"] for t in spec.get("tasks", []) if t.get("active") is False],
                "cdc_lag": _cdc_lag(ws, job.namespace, job.name, spec),
                "continuous": spec.get("continuous"),
                # a continuous job's lag is what waits in its broker now (`runner tasks` too)
                "messages_lag": consuming_lags(ws, job) if spec.get("continuous") else [],
            }
        )
    return {
        "state_store": {"healthy": True, "error": None},
        "daemon": {"holder": daemon.holder, "since": daemon.acquired_at} if daemon and daemon.alive else None,
        **paused,
        "revision": latest.id if latest else None,
        "git_commit": latest.git_commit if latest else None,
        "jobs": jobs,
    }


def _cdc_lag(ws: Workspace, namespace: str, job: str, spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Each cdc task's lag as its last run measured it (status connects to no source)."""
    cdc = [
        t["name"]
        for t in spec.get("tasks") or []
        if isinstance(t, dict) and (t.get("changes") or {}).get("strategy") == "cdc"
    ]
    if not cdc:
        return []
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    states = {s.task: s for s in ws.reader().tasks.states(namespace, job)}
    found = [recorded_lag(name, states[name].pointer, now) for name in cdc if name in states]
    return [lag for lag in found if lag is not None]
