"""The HTTP API (`/api/v1`) and the status page (`/`), over the same `runner.service` functions
as the CLI. Definitions stay in git: the API reads them and acts on runs, never edits them.

Every `/api/v1` request is checked by `Guard` before its body is read: a key (`runner.api.auth`),
its scope, a body of at most `MAX_BODY` bytes. The page holds no data and asks for a key,
which the browser keeps. Errors are JSON: `{"error": message}` plus `field` (and `problems`,
each with its field) where a request's content is wrong; 404 for an unknown job, run or
connection, 409 for a job already running (or not running, for a cancel).
Under `runner serve` the API is read-only: only the daemon starts runs.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal, Protocol

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response, StreamingResponse
from fastapi.security import APIKeyHeader
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runner import service
from runner.api.auth import READS, AuthError, Key, KeyRing
from runner.api.errors import ERRORS, HANDLERS
from runner.api.listings import Listings
from runner.api.models import AdhocRunRequest, PointerRequest, RunRequest
from runner.engine.changes import RunOptions
from runner.errors import StateUnavailable

STATIC = Path(__file__).parent / "static"
MAX_BODY = 1 << 20  # bytes of a request body: a job spec is a few KB
MAX_STREAMS = 32  # live tails open at once
KEEP_ALIVE_SECONDS = 10.0  # a comment line in a quiet live tail, so proxies keep it open
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class RunStarter(Protocol):
    """What starts runs: the daemon (`runner daemon --http`)."""

    def start_run(
        self, job: str, options: RunOptions, trigger: str, adhoc: dict[str, Any] | None = None
    ) -> str: ...


def _version() -> str:
    try:
        return version("runner")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
        return "unknown"


def _ref(name: str, namespace: str | None) -> str:
    return f"{namespace}/{name}" if namespace else name


class Guard:
    """ASGI middleware in front of everything: `/api/v1` requests are refused before their
    body is read unless they carry a valid key whose scope allows them (and, under
    `runner serve`, only reads); bodies are capped at `MAX_BODY`; writes forget the cached
    listings once done. Every response gets headers against caching and sniffing, the page
    a content security policy."""

    def __init__(self, app: ASGIApp, keys: KeyRing, listings: Listings, read_only: bool):
        self.app, self.keys, self.listings, self.read_only = app, keys, listings, read_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        extra = [(b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff")]
        if not path.startswith("/api/"):
            extra = [(k.lower().encode(), v.encode()) for k, v in PAGE_HEADERS.items()]
        headers = dict(scope["headers"])
        if path.startswith("/api/v1"):
            try:
                if sum(name == b"authorization" for name, _ in scope["headers"]) > 1:
                    raise AuthError(400, "send one Authorization header, not several")
                key = self.keys.check(headers.get(b"authorization", b"").decode("latin-1") or None, method)
                if self.read_only and method not in READS:
                    raise AuthError(
                        403,
                        "this server is read-only (runner serve): use runner daemon --http to act on runs",
                    )
                if int(headers.get(b"content-length", b"0") or 0) > MAX_BODY:
                    raise AuthError(413, f"the request body is over {MAX_BODY} bytes")
            except AuthError as exc:
                await _refuse(exc, send)
                return
            except StateUnavailable as exc:  # the keys cannot be read
                await _refuse(AuthError(503, str(exc)), send)
                return
            except ValueError:
                await _refuse(AuthError(400, "Content-Length is not a number"), send)
                return
            scope.setdefault("state", {})["key"] = key
            receive = _capped(receive)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            if path.startswith("/api/v1") and method not in READS:
                self.listings.forget()


def _capped(receive: Receive) -> Receive:
    """A body sent in chunks without a Content-Length stops at `MAX_BODY` too."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > MAX_BODY:
                raise HTTPException(413, f"the request body is over {MAX_BODY} bytes")
        return message

    return wrapped


async def _refuse(exc: AuthError, send: Send) -> None:
    body = json.dumps({"error": exc.message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff")]
    if exc.status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="runner"'))
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def create_app(ws: service.Workspace, runner: RunStarter | None = None, allow_adhoc: bool = False) -> FastAPI:
    """The app; `runner` is None under `runner serve` (read-only). Ad-hoc runs run any SQL
    on any applied connection: they are refused unless `allow_adhoc`."""
    keys = KeyRing(ws)
    listings = Listings()
    streams = threading.BoundedSemaphore(MAX_STREAMS)
    app = FastAPI(
        title="runner",
        version=_version(),
        description=(
            "Jobs, runs, history and logs of a runner daemon. Every /api/v1 route needs "
            "`Authorization: SharedKey <key>` or `Bearer <key>` (`runner keys create`); scope `read` "
            "may GET, `operate` may also act on runs."
        ),
        docs_url=None,  # Swagger UI and ReDoc load from a CDN: /openapi.json is the document
        redoc_url=None,
    )
    app.add_middleware(Guard, keys=keys, listings=listings, read_only=runner is None)
    scheme = APIKeyHeader(name="Authorization", description="`SharedKey <key>` or `Bearer <key>`")

    async def key_of(request: Request, _: str = Security(scheme)) -> Key:  # async: no thread per request
        return request.state.key  # checked by Guard; `scheme` documents it in the OpenAPI document

    for exception, handler in HANDLERS.items():
        app.add_exception_handler(exception, handler)

    api = APIRouter(prefix="/api/v1", responses=ERRORS)

    def starter() -> RunStarter:
        assert runner is not None  # Guard refused every write under `runner serve`
        return runner

    def by(key: Key) -> str:
        return f"api key {key.name}"

    # --- agent -------------------------------------------------------------------------

    @api.get("/version", tags=["agent"])
    def get_version(key: Key = Security(key_of)) -> dict[str, Any]:
        return {"version": _version(), "api": "v1"}

    @api.get("/status", tags=["agent"])
    async def get_status(key: Key = Security(key_of)) -> Response:
        """Running or paused, the jobs running now, the state's revision and git commit."""

        def agent() -> dict[str, Any]:
            info = service.status(ws)
            return {k: v for k, v in info.items() if k != "jobs"} | {
                "mode": "daemon" if runner is not None else "serve",
                "adhoc_runs": allow_adhoc and runner is not None,
                "jobs": len(info["jobs"]),
                "running": [j["job"] for j in info["jobs"] if j["running"]],
            }

        return await listings.get(("agent",), agent)

    @api.post("/pause", tags=["agent"])
    def pause(key: Key = Security(key_of)) -> dict[str, Any]:
        return service.pause(ws, True, by(key))

    @api.post("/unpause", tags=["agent"])
    def unpause(key: Key = Security(key_of)) -> dict[str, Any]:
        return service.pause(ws, False, by(key))

    # --- connections -------------------------------------------------------------------

    @api.get("/connections", tags=["connections"])
    async def list_connections(key: Key = Security(key_of)) -> Response:
        """Metadata only (type, host, database, the jobs using it): never a secret."""
        return await listings.get(("connections",), lambda: service.connections(ws))

    @api.get("/connections/{name}", tags=["connections"])
    def get_connection(
        name: str, namespace: str | None = None, key: Key = Security(key_of)
    ) -> dict[str, Any]:
        found = service.find(ws, "Connection", _ref(name, namespace))
        return next(c for c in service.connections(ws) if c["connection"] == found.ref)

    # --- jobs --------------------------------------------------------------------------

    @api.get("/jobs", tags=["jobs"])
    async def list_jobs(key: Key = Security(key_of)) -> Response:
        """Each job's schedule, next run, last run, run going on, suspension, pending update."""
        return await listings.get(("jobs",), lambda: service.status(ws)["jobs"])

    @api.get("/jobs/{name}", tags=["jobs"])
    def get_job(name: str, namespace: str | None = None, key: Key = Security(key_of)) -> dict[str, Any]:
        """The applied spec, its revision and source file, its status and tasks."""
        ref = _ref(name, namespace)
        info = service.describe(ws, "Job", ref)
        job_ref = f"{info['namespace']}/{info['name']}"
        summary = next(j for j in service.status(ws)["jobs"] if j["job"] == job_ref)
        return info | {"status": summary, "tasks": service.tasks(ws, ref)}

    @api.post("/jobs/{name}/suspend", tags=["jobs"])
    def suspend(name: str, namespace: str | None = None, key: Key = Security(key_of)) -> dict[str, Any]:
        return service.suspend(ws, _ref(name, namespace), True, by(key))

    @api.post("/jobs/{name}/resume", tags=["jobs"])
    def resume(name: str, namespace: str | None = None, key: Key = Security(key_of)) -> dict[str, Any]:
        return service.suspend(ws, _ref(name, namespace), False, by(key))

    @api.get("/jobs/{name}/tasks", tags=["tasks"])
    async def list_tasks(name: str, namespace: str | None = None, key: Key = Security(key_of)) -> Response:
        return await listings.get(
            ("tasks", name, namespace), lambda: service.tasks(ws, _ref(name, namespace))
        )

    @api.get("/jobs/{name}/pointers", tags=["pointers"])
    def get_pointers(
        name: str, namespace: str | None = None, key: Key = Security(key_of)
    ) -> list[dict[str, Any]]:
        return service.pointer_show(ws, _ref(name, namespace))

    @api.put("/jobs/{name}/pointers/{task}", tags=["pointers"])
    def set_pointer(
        name: str, task: str, body: PointerRequest, namespace: str | None = None, key: Key = Security(key_of)
    ) -> dict[str, Any]:
        """Set a watermark task's pointer (409 while the job runs)."""
        return service.pointer_set(ws, _ref(name, namespace), task, body.value, by(key))

    # --- runs --------------------------------------------------------------------------

    @api.post("/jobs/{name}/runs", tags=["runs"], status_code=202)
    def start_run(
        name: str, body: RunRequest | None = None, namespace: str | None = None, key: Key = Security(key_of)
    ) -> dict[str, Any]:
        """Start a run now, optionally of some tasks or with resync (409 when it is running)."""
        body = body or RunRequest()
        job = service.find(ws, "Job", _ref(name, namespace))
        service.check_tasks(ws, job.ref, body.tasks)  # an unknown task is a 404 now, not a failed run later
        options = RunOptions(tasks=body.tasks, resync=body.resync)
        run_id = starter().start_run(job.ref, options, f"api (key {key.name})")
        return {"run_id": run_id, "job": job.ref, "status": "started"}

    @api.post("/jobs/{name}/cancel", tags=["runs"], status_code=202)
    def cancel(name: str, namespace: str | None = None, key: Key = Security(key_of)) -> dict[str, Any]:
        """Stop the job's run at its next batch boundary (409 when it is not running)."""
        return service.cancel(ws, _ref(name, namespace), by(key))

    @api.get("/jobs/{name}/runs", tags=["runs"])
    async def job_runs(
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
        return await listings.get(
            ("runs", name, namespace, limit, filter, task),
            lambda: service.runs(ws, _ref(name, namespace), limit, task, changed_only=filter == "changes"),
        )

    def adhoc_allowed() -> None:
        """Ad-hoc runs off: said before the body is validated (a dependency runs first)."""
        if not allow_adhoc:
            raise AuthError(403, "ad-hoc runs are off: the daemon allows them with --allow-adhoc")

    @api.post("/runs", tags=["runs"], status_code=202, dependencies=[Depends(adhoc_allowed)])
    def start_adhoc(body: AdhocRunRequest, key: Key = Security(key_of)) -> dict[str, Any]:
        """Run a job spec once without applying it (when the daemon allows ad-hoc runs: they run
        any SQL on any applied connection). Its spec is kept in its history record."""
        spec = body.spec.model_dump(mode="json", exclude_unset=True)
        job, _ = service.adhoc_job(body.name, spec, body.namespace)
        service.check_adhoc(ws, job, body.tasks)
        options = RunOptions(tasks=body.tasks, resync=body.resync)
        run_id = starter().start_run(job.ref, options, f"ad-hoc (key {key.name})", adhoc=spec)
        return {"run_id": run_id, "job": job.ref, "status": "started"}

    @api.get("/runs/{run_id}", tags=["runs"])
    def get_run(run_id: str, key: Key = Security(key_of)) -> dict[str, Any]:
        return {k: v for k, v in service.run_record(ws, run_id).items() if k not in ("path", "log")}

    @api.get("/runs/{run_id}/log", tags=["runs"])
    def get_log(
        run_id: str,
        after: int = Query(
            0, ge=0, description="Lines before this one are left out (to follow a run's log)."
        ),
        level: Literal["debug", "info", "warning", "error"] | None = Query(
            None, description="At this level or above."
        ),
        key: Key = Security(key_of),
    ) -> dict[str, Any]:
        return service.log_since(ws, run_id, after, level)

    @api.get(
        "/runs/{run_id}/log/stream",
        tags=["runs"],
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}, "description": "Server-sent events"}},
    )
    async def stream_log(run_id: str, request: Request, key: Key = Security(key_of)) -> StreamingResponse:
        """The run's log as server-sent events (`id` = line number), line by line, until the
        run ends (a live tail); a comment every 10 s keeps a quiet stream open. It ends when
        the key is revoked. At most 32 streams are open at once (429 beyond)."""
        await run_in_threadpool(service.log_since, ws, run_id)  # 404 before the stream starts
        if not streams.acquire(blocking=False):
            raise HTTPException(429, f"{MAX_STREAMS} live tails are open; try again later")
        header = request.headers.get("authorization")

        async def events() -> AsyncIterator[str]:
            try:
                after, quiet = 0, time.monotonic()
                while True:
                    part = await run_in_threadpool(service.log_since, ws, run_id, after)
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

    app.include_router(api)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/app.js", include_in_schema=False)
    def script() -> FileResponse:
        return FileResponse(STATIC / "app.js", media_type="text/javascript")

    return app
