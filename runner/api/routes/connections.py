"""Applied connections: metadata only (type, host, database, the jobs using it), never a secret."""

from __future__ import annotations

from typing import Any

from fastapi import Request, Security
from fastapi.responses import Response

from runner import services
from runner.api.auth import Key
from runner.api.deps import context, key_of, ref, resource

router = resource("connections")


@router.get("/connections")
async def list_connections(request: Request, key: Key = Security(key_of)) -> Response:
    """Metadata only (type, host, database, the jobs using it): never a secret."""
    ctx = context(request)
    ws = ctx.ws
    return await ctx.listings.get(("connections",), lambda: services.connections(ws))


@router.get("/connections/{name}")
def get_connection(
    request: Request, name: str, namespace: str | None = None, key: Key = Security(key_of)
) -> dict[str, Any]:
    ws = context(request).ws
    found = services.find(ws, "Connection", ref(name, namespace))
    return next(c for c in services.connections(ws) if c["connection"] == found.ref)
