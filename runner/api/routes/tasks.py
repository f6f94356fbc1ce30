"""A job's tasks, with each one's strategy and state."""

from __future__ import annotations

from fastapi import Request, Security
from fastapi.responses import Response

from runner import services
from runner.api.auth import Key
from runner.api.deps import context, key_of, ref, resource

router = resource("tasks")


@router.get("/jobs/{name}/tasks")
async def list_tasks(
    request: Request, name: str, namespace: str | None = None, key: Key = Security(key_of)
) -> Response:
    ctx = context(request)
    ws = ctx.ws
    return await ctx.listings.get(
        ("tasks", name, namespace), lambda: services.tasks(ws, ref(name, namespace), expand=False)
    )
