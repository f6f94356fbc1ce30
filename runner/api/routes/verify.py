"""Verify: a job's source and target compared (`runner verify`), and on request repaired.

A verify scans the job's tables on both sides and holds one of the threads every route shares
until it ends: at most `MAX_VERIFIES` run at once (429 beyond), so a read key cannot take the
whole pool (every other route would wait) nor load the databases without bound."""

from __future__ import annotations

from typing import Any

from fastapi import Query, Request, Security
from fastapi.concurrency import run_in_threadpool
from pydantic import Field
from starlette.exceptions import HTTPException

from runner import services
from runner.api.auth import Key
from runner.api.deps import MAX_VERIFIES, Context, context, key_of, ref, resource
from runner.api.models import Body
from runner.definitions.models import Name

router = resource("verify")


class VerifyRequest(Body):
    tasks: list[Name] | None = Field(None, description="Verify only these tasks (all when left out).")
    repair: bool = Field(
        False,
        description="Then write the differing rows (and delete extra ones under deletes: propagate or "
        "soft) in a run of their own, recorded in the history (`runner verify --repair`).",
    )
    sample: int = Field(10, ge=0, le=1000, description="Keys listed per kind of difference.")


@router.get("/jobs/{name}/verify")
async def verify(
    request: Request,
    name: str,
    namespace: str | None = None,
    task: list[Name] | None = Query(None, description="Verify only these tasks."),
    sample: int = Query(10, ge=0, le=1000, description="Keys listed per kind of difference."),
    key: Key = Security(key_of),
) -> dict[str, Any]:
    """Compare the job's source and target as they are now; `exit_code` 0 equal, 2 different,
    1 a task could not be compared (the report says why)."""
    ctx = context(request)
    return await _bounded(ctx, services.verify, ctx.ws, ref(name, namespace), task or None, False, sample)


@router.post("/jobs/{name}/verify")
async def verify_and_repair(
    request: Request,
    name: str,
    body: VerifyRequest | None = None,
    namespace: str | None = None,
    key: Key = Security(key_of),
) -> dict[str, Any]:
    """Compare, and with `repair` write the differences in a run of their own (its `run_id` in
    `repair`; 409 when the job is running)."""
    ctx = context(request)
    body = body or VerifyRequest()
    job = ref(name, namespace)
    return await _bounded(ctx, services.verify, ctx.ws, job, body.tasks, body.repair, body.sample)


async def _bounded(ctx: Context, verify: Any, *args: Any) -> dict[str, Any]:
    """`verify(*args)` on a thread, when fewer than MAX_VERIFIES run; else a 429."""
    if not ctx.verifies.acquire(blocking=False):
        raise HTTPException(429, f"{MAX_VERIFIES} verifies are running; try again when one has ended")
    try:
        return await run_in_threadpool(verify, *args)
    finally:
        ctx.verifies.release()
