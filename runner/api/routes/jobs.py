"""Applied jobs: their listing, one job's spec and status, suspending and resuming it."""

from __future__ import annotations

from typing import Any

from fastapi import Request, Security
from fastapi.responses import Response

from runner import services
from runner.api.auth import Key
from runner.api.deps import by, context, key_of, ref, resource

router = resource("jobs")


@router.get("/jobs")
async def list_jobs(request: Request, key: Key = Security(key_of)) -> Response:
    """Each job's schedule, next run, last run, run going on, suspension, pending update."""
    ctx = context(request)
    ws = ctx.ws
    return await ctx.listings.get(("jobs",), lambda: services.status(ws)["jobs"])


@router.get("/jobs/{name}")
def get_job(
    request: Request, name: str, namespace: str | None = None, key: Key = Security(key_of)
) -> dict[str, Any]:
    """The applied spec, its revision and source file, its status and tasks."""
    ws = context(request).ws
    job = ref(name, namespace)
    info = services.describe(ws, "Job", job)
    job_ref = f"{info['namespace']}/{info['name']}"
    summary = next(j for j in services.status(ws)["jobs"] if j["job"] == job_ref)
    return info | {"status": summary, "tasks": services.tasks(ws, job, expand=False)}


@router.post("/jobs/{name}/suspend")
def suspend(
    request: Request, name: str, namespace: str | None = None, key: Key = Security(key_of)
) -> dict[str, Any]:
    ws = context(request).ws
    return services.suspend(ws, ref(name, namespace), True, by(key))


@router.post("/jobs/{name}/resume")
def resume(
    request: Request, name: str, namespace: str | None = None, key: Key = Security(key_of)
) -> dict[str, Any]:
    ws = context(request).ws
    return services.suspend(ws, ref(name, namespace), False, by(key))
