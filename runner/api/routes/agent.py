"""The agent itself: its version, its status, pausing every schedule."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import Request, Security
from fastapi.responses import Response

from runner import services
from runner.api.auth import Key
from runner.api.deps import by, context, key_of, resource

router = resource("agent")


def package_version() -> str:
    try:
        return version("runner")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
        return "unknown"


@router.get("/version")
def get_version(key: Key = Security(key_of)) -> dict[str, Any]:
    return {"version": package_version(), "api": "v1"}


@router.get("/status")
async def get_status(request: Request, key: Key = Security(key_of)) -> Response:
    """Running or paused, the jobs running now, the state's revision and git commit."""
    ctx = context(request)
    ws = ctx.ws

    def agent() -> dict[str, Any]:
        info = services.status(ws)
        return {k: v for k, v in info.items() if k != "jobs"} | {
            "mode": "daemon" if ctx.runner is not None else "serve",
            "adhoc_runs": ctx.allow_adhoc and ctx.runner is not None,
            "jobs": len(info["jobs"]),
            "running": [j["job"] for j in info["jobs"] if j["running"]],
        }

    return await ctx.listings.get(("agent",), agent)


@router.post("/pause")
def pause(request: Request, key: Key = Security(key_of)) -> dict[str, Any]:
    ws = context(request).ws
    return services.pause(ws, True, by(key))


@router.post("/unpause")
def unpause(request: Request, key: Key = Security(key_of)) -> dict[str, Any]:
    ws = context(request).ws
    return services.pause(ws, False, by(key))
