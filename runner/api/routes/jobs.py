"""Jobs: their listing, one job's spec and status, suspending and resuming it; and creating,
replacing and deleting one, written back to git (`runner.services.writeback`)."""

from __future__ import annotations

from typing import Any

from fastapi import Body, Request, Security
from fastapi.responses import Response

from runner import services
from runner.api.auth import Key
from runner.api.deps import BRANCH, by, context, key_of, ref, resource

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


# --- changes, written back to git ---------------------------------------------------------

JOB_BODY = Body(
    description=(
        "A job's definition as in jobs.d/ (apiVersion and kind may be left out), as JSON. "
        "Validated with the whole definitions folder; 422 with each problem's file, line and field."
    ),
    examples=[
        {
            "metadata": {"name": "orders"},
            "spec": {
                "source": "shop",
                "target": "warehouse",
                "tasks": [{"name": "orders", "read": {"table": "orders"}, "write": {"table": "orders"}}],
            },
        }
    ],
)


@router.post("/jobs", status_code=201)
def create_job(
    request: Request,
    body: dict[str, Any] = JOB_BODY,
    namespace: str | None = None,
    branch: str | None = BRANCH,
    key: Key = Security(key_of),
) -> dict[str, Any]:
    """A new job: `jobs.d/<name>.yaml` (`jobs.d/<namespace>/<name>.yaml`), committed with the
    key's name as the author, then applied. The answer holds the definition and the commit."""
    ctx = context(request)
    author = services.api_author(key.name)
    return services.create_job(ctx.ws, body, namespace, author, by(key), ctx.branch(branch), unreviewed=True)


@router.put("/jobs/{name}")
def replace_job(
    request: Request,
    name: str,
    body: dict[str, Any] = JOB_BODY,
    namespace: str | None = None,
    branch: str | None = BRANCH,
    key: Key = Security(key_of),
) -> dict[str, Any]:
    """Replace a job's definition, edited in place in its file: what did not change keeps its
    comments and layout. 409 while the job runs."""
    ctx = context(request)
    author = services.api_author(key.name)
    return services.replace_job(
        ctx.ws, ref(name, namespace), body, author, by(key), ctx.branch(branch), unreviewed=True
    )


@router.delete("/jobs/{name}")
def delete_job(
    request: Request,
    name: str,
    namespace: str | None = None,
    branch: str | None = BRANCH,
    key: Key = Security(key_of),
) -> dict[str, Any]:
    """Remove a job's document from its file (the file, when nothing else is in it). 409 while
    the job runs."""
    ctx = context(request)
    return services.delete_job(
        ctx.ws, ref(name, namespace), services.api_author(key.name), by(key), ctx.branch(branch)
    )
