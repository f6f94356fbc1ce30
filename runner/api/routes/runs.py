"""Runs: starting one (of an applied job, or ad hoc), cancelling it, a job's runs, a run's
record and log, and the log as a live tail."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import Depends, Query, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse
from starlette.exceptions import HTTPException

from runner import services
from runner.api.auth import AuthError, Key
from runner.api.deps import MAX_STREAMS, by, context, key_of, ref, resource
from runner.api.models import AdhocRunRequest, RunRequest

KEEP_ALIVE_SECONDS = 10.0  # a comment line in a quiet live tail, so proxies keep it open

router = resource("runs")


@router.post("/jobs/{name}/runs", status_code=202)
def start_run(
    request: Request,
    name: str,
    body: RunRequest | None = None,
    namespace: str | None = None,
    key: Key = Security(key_of),
) -> dict[str, Any]:
    """Start a run now, optionally of some tasks, with resync or recreate (409 when it is running)."""
    ctx = context(request)
    ws = ctx.ws
    body = body or RunRequest()
    job = services.find(ws, "Job", ref(name, namespace))
    services.check_tasks(ws, job.ref, body.tasks)  # an unknown task is a 404 now, not a failed run later
    options = services.RunOptions(tasks=body.tasks, resync=body.resync, recreate=body.recreate)
    run_id = ctx.starter().start_run(job.ref, options, f"api (key {key.name})")
    return {"run_id": run_id, "job": job.ref, "status": "started"}


@router.post("/jobs/{name}/cancel", status_code=202)
def cancel(
    request: Request, name: str, namespace: str | None = None, key: Key = Security(key_of)
) -> dict[str, Any]:
    """Stop the job's run at its next batch boundary (409 when it is not running)."""
    ws = context(request).ws
    return services.cancel(ws, ref(name, namespace), by(key))


@router.get("/jobs/{name}/runs")
async def job_runs(
    request: Request,
    name: str,
    namespace: str | None = None,
    limit: int = Query(20, ge=1, le=1000),
    filter: Literal["changes", "all"] = Query(  # noqa: A002 - DataZen's name for it
        "changes",
        description="changes: leave out runs that succeeded without writing a row; all: every run.",
    ),
    task: str | None = Query(None, description="One task's result in each run that ran it."),
    key: Key = Security(key_of),
) -> Response:
    ctx = context(request)
    ws = ctx.ws
    return await ctx.listings.get(
        ("runs", name, namespace, limit, filter, task),
        lambda: services.runs(ws, ref(name, namespace), limit, task, changed_only=filter == "changes"),
    )


async def adhoc_allowed(request: Request) -> None:
    """Ad-hoc runs off: said before the body is validated (a dependency runs first)."""
    if not context(request).allow_adhoc:
        raise AuthError(403, "ad-hoc runs are off: the daemon allows them with --allow-adhoc")


@router.post("/runs", status_code=202, dependencies=[Depends(adhoc_allowed)])
def start_adhoc(request: Request, body: AdhocRunRequest, key: Key = Security(key_of)) -> dict[str, Any]:
    """Run a job spec once without applying it (when the daemon allows ad-hoc runs: they run
    any SQL on any applied connection). Its spec is kept in its history record."""
    ctx = context(request)
    ws = ctx.ws
    spec = body.spec
    job, parsed, _ = services.adhoc_job(ws, body.name, spec, body.namespace)
    services.check_adhoc(ws, job, parsed, body.tasks)
    options = services.RunOptions(tasks=body.tasks, resync=body.resync, recreate=body.recreate)
    run_id = ctx.starter().start_run(job.ref, options, f"ad-hoc (key {key.name})", adhoc=spec)
    return {"run_id": run_id, "job": job.ref, "status": "started"}


@router.get("/runs/{run_id}")
def get_run(request: Request, run_id: str, key: Key = Security(key_of)) -> dict[str, Any]:
    ws = context(request).ws
    return {k: v for k, v in services.run_record(ws, run_id).items() if k not in ("path", "log")}


@router.get("/runs/{run_id}/log")
def get_log(
    request: Request,
    run_id: str,
    after: int = Query(0, ge=0, description="Lines before this one are left out (to follow a run's log)."),
    level: Literal["debug", "info", "warning", "error"] | None = Query(
        None, description="At this level or above."
    ),
    key: Key = Security(key_of),
) -> dict[str, Any]:
    ws = context(request).ws
    return services.log_since(ws, run_id, after, level)


@router.get(
    "/runs/{run_id}/log/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "Server-sent events"}},
)
async def stream_log(run_id: str, request: Request, key: Key = Security(key_of)) -> StreamingResponse:
    """The run's log as server-sent events (`id` = line number), line by line, until the
    run ends (a live tail); a comment every 10 s keeps a quiet stream open. It ends when
    the key is revoked. At most 32 streams are open at once (429 beyond)."""
    ctx = context(request)
    ws, keys, streams = ctx.ws, ctx.keys, ctx.streams
    await run_in_threadpool(services.log_since, ws, run_id)  # 404 before the stream starts
    if not streams.acquire(blocking=False):
        raise HTTPException(429, f"{MAX_STREAMS} live tails are open; try again later")
    header = request.headers.get("authorization")

    async def events() -> AsyncIterator[str]:
        try:
            after, quiet = 0, time.monotonic()
            while True:
                part = await run_in_threadpool(services.log_since, ws, run_id, after)
                for line in part["lines"]:
                    yield f"id: {after}\ndata: {json.dumps(line, ensure_ascii=False)}\n\n"
                    after += 1
                    quiet = time.monotonic()
                after = part["next"]
                if not part["running"]:
                    yield "event: end\ndata: {}\n\n"
                    return
                try:
                    keys.check(header, "GET")
                except AuthError:
                    yield 'event: end\ndata: {"error": "the key was revoked"}\n\n'
                    return
                if time.monotonic() - quiet >= KEEP_ALIVE_SECONDS:
                    yield ": keep-alive\n\n"
                    quiet = time.monotonic()
                await asyncio.sleep(0.25)
        finally:
            streams.release()

    return StreamingResponse(events(), media_type="text/event-stream")
