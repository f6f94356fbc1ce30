"""A job's tasks, with each one's strategy and state; and adding, replacing, deleting, moving
and switching off a task, written back to git (`runner.services.writeback`)."""

from __future__ import annotations

from typing import Any

from fastapi import Body, Query, Request, Security
from fastapi.responses import Response

from runner import services
from runner.api.auth import Key
from runner.api.deps import BRANCH, by, context, key_of, ref, resource
from runner.api.models import MoveRequest

router = resource("tasks")

TASK_BODY = Body(
    description="A task as in a job's spec.tasks, as JSON (a replaced task keeps its name when left out).",
    examples=[{"name": "orders", "read": {"table": "orders"}, "write": {"table": "orders", "keys": ["id"]}}],
)


@router.get("/jobs/{name}/tasks")
async def list_tasks(
    request: Request, name: str, namespace: str | None = None, key: Key = Security(key_of)
) -> Response:
    ctx = context(request)
    ws = ctx.ws
    return await ctx.listings.get(
        ("tasks", name, namespace), lambda: services.tasks(ws, ref(name, namespace), expand=False)
    )


@router.post("/jobs/{name}/tasks", status_code=201)
def add_task(
    request: Request,
    name: str,
    body: dict[str, Any] = TASK_BODY,
    position: int | None = Query(None, description="Where the task goes, 1 being first (default: last)."),
    namespace: str | None = None,
    branch: str | None = BRANCH,
    key: Key = Security(key_of),
) -> dict[str, Any]:
    """Add a task to a job, committed and applied (409 while the job runs)."""
    ctx = context(request)
    author = services.api_author(key.name)
    return services.add_task(
        ctx.ws, ref(name, namespace), body, position, author, by(key), ctx.branch(branch), unreviewed=True
    )


@router.put("/jobs/{name}/tasks/{task}")
def replace_task(
    request: Request,
    name: str,
    task: str,
    body: dict[str, Any] = TASK_BODY,
    namespace: str | None = None,
    branch: str | None = BRANCH,
    key: Key = Security(key_of),
) -> dict[str, Any]:
    """Replace a task, edited in place (409 while the job runs)."""
    ctx = context(request)
    author = services.api_author(key.name)
    return services.replace_task(
        ctx.ws, ref(name, namespace), task, body, author, by(key), ctx.branch(branch), unreviewed=True
    )


@router.delete("/jobs/{name}/tasks/{task}")
def delete_task(
    request: Request,
    name: str,
    task: str,
    namespace: str | None = None,
    branch: str | None = BRANCH,
    key: Key = Security(key_of),
) -> dict[str, Any]:
    """Remove a task from its job with the comment lines above it (409 while the job runs)."""
    ctx = context(request)
    author = services.api_author(key.name)
    return services.delete_task(
        ctx.ws, ref(name, namespace), task, author, by(key), ctx.branch(branch), unreviewed=True
    )


@router.post("/jobs/{name}/tasks/{task}/move")
def move_task(
    request: Request,
    name: str,
    task: str,
    body: MoveRequest,
    namespace: str | None = None,
    branch: str | None = BRANCH,
    key: Key = Security(key_of),
) -> dict[str, Any]:
    """Move a task (its place is the order the job runs its tasks in), with its comments."""
    ctx = context(request)
    return services.move_task(
        ctx.ws,
        ref(name, namespace),
        task,
        body.position,
        body.before,
        body.after,
        services.api_author(key.name),
        by(key),
        ctx.branch(branch),
        unreviewed=True,
    )


@router.post("/jobs/{name}/tasks/{task}/off")
def switch_off(
    request: Request,
    name: str,
    task: str,
    namespace: str | None = None,
    branch: str | None = BRANCH,
    key: Key = Security(key_of),
) -> dict[str, Any]:
    """Switch a task off (`active: false`, CData's Is_Active): kept, with its pointer, and
    skipped by every run."""
    ctx = context(request)
    author = services.api_author(key.name)
    return services.switch_task(
        ctx.ws, ref(name, namespace), task, False, author, by(key), ctx.branch(branch), unreviewed=True
    )


@router.post("/jobs/{name}/tasks/{task}/on")
def switch_on(
    request: Request,
    name: str,
    task: str,
    namespace: str | None = None,
    branch: str | None = BRANCH,
    key: Key = Security(key_of),
) -> dict[str, Any]:
    """Switch a task on again (its `active: false` line goes); it goes on from its pointer."""
    ctx = context(request)
    author = services.api_author(key.name)
    return services.switch_task(
        ctx.ws, ref(name, namespace), task, True, author, by(key), ctx.branch(branch), unreviewed=True
    )
