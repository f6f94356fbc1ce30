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
from collections.abc import AsyncIterator, Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal, Protocol

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runner import services
from runner.api.auth import READS, AuthError, Key, KeyRing
from runner.definitions.errors import describe, model_in
from runner.definitions.models import JobSpec, Name
from runner.errors import (
    DefinitionsInvalid,
    HistoryUnwritable,
    InvalidValue,
    JobBusy,
    NameTaken,
    NotFound,
    NotRunning,
    RunnerError,
    StateUnavailable,
)

STATIC = Path(__file__).parent / "static"
FRESH_SECONDS = 0.5  # how long a listing is reused: dashboards poll it, many at once
MAX_BODY = 1 << 20  # bytes of a request body: a job spec is a few KB
MAX_STREAMS = 32  # live tails open at once
MAX_PROBLEMS = 20  # listed in a 422: a body with thousands of wrong keys gets a short answer
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
        self, job: str, options: services.RunOptions, trigger: str, adhoc: dict[str, Any] | None = None
    ) -> str: ...


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # "yes" is not a boolean


class RunRequest(Body):
    tasks: list[Name] | None = Field(None, description="Run only these tasks (all when left out).")
    resync: bool = Field(False, description="Forget pointers and digests first: read everything again.")

    @field_validator("tasks")
    @classmethod
    def _once_each(cls, tasks: list[str] | None) -> list[str] | None:
        if tasks is not None and len(set(tasks)) != len(tasks):
            raise ValueError("a task is named twice")
        return tasks


class AdhocRunRequest(RunRequest):
    name: Name = Field(
        description="Its own name (not an applied job's): its history and pointers are kept under it."
    )
    namespace: Name = "default"
    spec: JobSpec = Field(
        description="A job's spec as in jobs.d/, without schedule, after or retry; run once."
    )


class PointerRequest(Body):
    value: str | None = Field(
        description="The new pointer (as `runner pointer set` takes it), or null to clear it.",
        max_length=services.MAX_POINTER,
    )


class Error(BaseModel):
    error: str
    field: str | None = None
    problems: list[dict[str, Any]] | None = None


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Error, "description": "No valid key"},
    403: {"model": Error, "description": "The key's scope does not allow it, or the server is read-only"},
    404: {"model": Error, "description": "No such job, run, connection or task"},
    409: {"model": Error, "description": "The job is running (or, to cancel, is not)"},
    422: {"model": Error, "description": "The request is invalid: `field` says where"},
}


def _version() -> str:
    try:
        return version("runner")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
        return "unknown"


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def _capped_list(problems: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first MAX_PROBLEMS problems, and a last one saying how many more there are."""
    if len(problems) <= MAX_PROBLEMS:
        return problems
    more = len(problems) - MAX_PROBLEMS
    return [*problems[:MAX_PROBLEMS], {"field": "", "message": f"and {more} more problem(s) not listed"}]


def _ref(name: str, namespace: str | None) -> str:
    return f"{namespace}/{name}" if namespace else name


class Listings:
    """Listings (jobs, status, a job's runs and tasks, connections) computed and encoded once
    and reused for `FRESH_SECONDS`, so fifty dashboards polling cost about what one does. A
    write through the API forgets them when it is done (`Guard`), so its client sees its own
    change. A hit is served on the event loop; a miss is computed on a thread, once: requests
    that miss meanwhile wait for that computation instead of starting their own."""

    def __init__(self) -> None:
        self._cache: dict[tuple[Any, ...], tuple[float, bytes]] = {}
        self._computing: dict[tuple[Any, ...], asyncio.Future[bytes]] = {}

    async def get(self, key: tuple[Any, ...], compute: Callable[[], Any]) -> Response:
        hit = self._cache.get(key)
        if hit is not None and time.monotonic() - hit[0] < FRESH_SECONDS:
            return Response(hit[1], media_type="application/json")
        pending = self._computing.get(key)
        if pending is not None:
            return Response(await asyncio.shield(pending), media_type="application/json")
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._computing[key] = future
        try:
            started = time.monotonic()
            value = await run_in_threadpool(compute)
            body = json.dumps(value, ensure_ascii=False, default=str).encode()
            if len(self._cache) > 1000:  # many distinct queries: start again rather than grow
                self._cache.clear()
            self._cache[key] = (started, body)
            future.set_result(body)
            return Response(body, media_type="application/json")
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no warning when nobody else waited
            raise
        finally:
            del self._computing[key]

    def forget(self) -> None:
        self._cache.clear()


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


def create_app(
    ws: services.Workspace, runner: RunStarter | None = None, allow_adhoc: bool = False
) -> FastAPI:
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

    @app.exception_handler(AuthError)
    def refused(_: Request, exc: AuthError) -> JSONResponse:
        return _error(exc.status, exc.message)

    @app.exception_handler(RequestValidationError)
    def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        body_field = getattr(request.scope.get("route"), "body_field", None)
        model = model_in(body_field.field_info.annotation) if body_field is not None else None
        problems = []
        for e in exc.errors():
            loc = tuple(e["loc"])
            problem = {"field": ".".join(str(p) for p in loc if p != "body"), "message": e["msg"]}
            if model is not None and loc[:1] == ("body",):  # worded as the CLI words a file's
                problem["message"], hint = describe(e, model, loc[1:])
                if hint:
                    problem["hint"] = hint
            problems.append(problem)
        first = problems[0] if problems else {"field": "", "message": "invalid request"}
        message = f"{first['message']} (hint: {first['hint']})" if first.get("hint") else first["message"]
        return _error(422, message, field=first["field"], problems=_capped_list(problems))

    @app.exception_handler(HTTPException)
    def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    def unexpected(_: Request, exc: Exception) -> JSONResponse:
        return _error(500, f"internal error ({type(exc).__name__}); the server's log has the details")

    @app.exception_handler(RunnerError)
    def runner_error(_: Request, exc: RunnerError) -> JSONResponse:
        if isinstance(exc, DefinitionsInvalid):
            problems = [
                {"field": p.location.field, "message": p.message, "hint": p.hint} for p in exc.problems
            ]
            first = problems[0]
            return _error(422, first["message"], field=first["field"], problems=_capped_list(problems))
        if isinstance(exc, InvalidValue):
            return _error(422, str(exc), field=exc.field)
        if isinstance(exc, StateUnavailable | HistoryUnwritable):  # the server's storage, not the request
            return _error(503, str(exc))
        conflict = isinstance(exc, JobBusy | NotRunning | NameTaken)
        return _error(404 if isinstance(exc, NotFound) else 409 if conflict else 400, str(exc))

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
            info = services.status(ws)
            return {k: v for k, v in info.items() if k != "jobs"} | {
                "mode": "daemon" if runner is not None else "serve",
                "adhoc_runs": allow_adhoc and runner is not None,
                "jobs": len(info["jobs"]),
                "running": [j["job"] for j in info["jobs"] if j["running"]],
            }

        return await listings.get(("agent",), agent)

    @api.post("/pause", tags=["agent"])
    def pause(key: Key = Security(key_of)) -> dict[str, Any]:
        return services.pause(ws, True, by(key))

    @api.post("/unpause", tags=["agent"])
    def unpause(key: Key = Security(key_of)) -> dict[str, Any]:
        return services.pause(ws, False, by(key))

    # --- connections -------------------------------------------------------------------

    @api.get("/connections", tags=["connections"])
    async def list_connections(key: Key = Security(key_of)) -> Response:
        """Metadata only (type, host, database, the jobs using it): never a secret."""
        return await listings.get(("connections",), lambda: services.connections(ws))

    @api.get("/connections/{name}", tags=["connections"])
    def get_connection(
        name: str, namespace: str | None = None, key: Key = Security(key_of)
    ) -> dict[str, Any]:
        found = services.find(ws, "Connection", _ref(name, namespace))
        return next(c for c in services.connections(ws) if c["connection"] == found.ref)

    # --- jobs --------------------------------------------------------------------------

    @api.get("/jobs", tags=["jobs"])
    async def list_jobs(key: Key = Security(key_of)) -> Response:
        """Each job's schedule, next run, last run, run going on, suspension, pending update."""
        return await listings.get(("jobs",), lambda: services.status(ws)["jobs"])

    @api.get("/jobs/{name}", tags=["jobs"])
    def get_job(name: str, namespace: str | None = None, key: Key = Security(key_of)) -> dict[str, Any]:
        """The applied spec, its revision and source file, its status and tasks."""
        ref = _ref(name, namespace)
        info = services.describe(ws, "Job", ref)
        job_ref = f"{info['namespace']}/{info['name']}"
        summary = next(j for j in services.status(ws)["jobs"] if j["job"] == job_ref)
        return info | {"status": summary, "tasks": services.tasks(ws, ref)}

    @api.post("/jobs/{name}/suspend", tags=["jobs"])
    def suspend(name: str, namespace: str | None = None, key: Key = Security(key_of)) -> dict[str, Any]:
        return services.suspend(ws, _ref(name, namespace), True, by(key))

    @api.post("/jobs/{name}/resume", tags=["jobs"])
    def resume(name: str, namespace: str | None = None, key: Key = Security(key_of)) -> dict[str, Any]:
        return services.suspend(ws, _ref(name, namespace), False, by(key))

    @api.get("/jobs/{name}/tasks", tags=["tasks"])
    async def list_tasks(name: str, namespace: str | None = None, key: Key = Security(key_of)) -> Response:
        return await listings.get(
            ("tasks", name, namespace), lambda: services.tasks(ws, _ref(name, namespace))
        )

    @api.get("/jobs/{name}/pointers", tags=["pointers"])
    def get_pointers(
        name: str, namespace: str | None = None, key: Key = Security(key_of)
    ) -> list[dict[str, Any]]:
        return services.pointer_show(ws, _ref(name, namespace))

    @api.put("/jobs/{name}/pointers/{task}", tags=["pointers"])
    def set_pointer(
        name: str, task: str, body: PointerRequest, namespace: str | None = None, key: Key = Security(key_of)
    ) -> dict[str, Any]:
        """Set a watermark task's pointer (409 while the job runs)."""
        return services.pointer_set(ws, _ref(name, namespace), task, body.value, by(key))

    # --- runs --------------------------------------------------------------------------

    @api.post("/jobs/{name}/runs", tags=["runs"], status_code=202)
    def start_run(
        name: str, body: RunRequest | None = None, namespace: str | None = None, key: Key = Security(key_of)
    ) -> dict[str, Any]:
        """Start a run now, optionally of some tasks or with resync (409 when it is running)."""
        body = body or RunRequest()
        job = services.find(ws, "Job", _ref(name, namespace))
        services.check_tasks(ws, job.ref, body.tasks)  # an unknown task is a 404 now, not a failed run later
        options = services.RunOptions(tasks=body.tasks, resync=body.resync)
        run_id = starter().start_run(job.ref, options, f"api (key {key.name})")
        return {"run_id": run_id, "job": job.ref, "status": "started"}

    @api.post("/jobs/{name}/cancel", tags=["runs"], status_code=202)
    def cancel(name: str, namespace: str | None = None, key: Key = Security(key_of)) -> dict[str, Any]:
        """Stop the job's run at its next batch boundary (409 when it is not running)."""
        return services.cancel(ws, _ref(name, namespace), by(key))

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
            lambda: services.runs(ws, _ref(name, namespace), limit, task, changed_only=filter == "changes"),
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
        job, _ = services.adhoc_job(body.name, spec, body.namespace)
        services.check_adhoc(ws, job, body.tasks)
        options = services.RunOptions(tasks=body.tasks, resync=body.resync)
        run_id = starter().start_run(job.ref, options, f"ad-hoc (key {key.name})", adhoc=spec)
        return {"run_id": run_id, "job": job.ref, "status": "started"}

    @api.get("/runs/{run_id}", tags=["runs"])
    def get_run(run_id: str, key: Key = Security(key_of)) -> dict[str, Any]:
        return {k: v for k, v in services.run_record(ws, run_id).items() if k not in ("path", "log")}

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
        return services.log_since(ws, run_id, after, level)

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

    app.include_router(api)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/app.js", include_in_schema=False)
    def script() -> FileResponse:
        return FileResponse(STATIC / "app.js", media_type="text/javascript")

    return app
