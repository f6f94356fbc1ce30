"""The HTTP API (`/api/v1`) and the status page (`/`), over the same `runner.service` functions
as the CLI. Definitions stay in git: the API reads them and acts on runs, never edits them.

Every `/api/v1` route needs a key (`runner.api.auth`); the page itself holds no data and asks
for a key, which the browser keeps. Errors are JSON: `{"error": message}` plus `field` (or
`problems`, each with its field) where a request's content is wrong; 404 for an unknown job,
run or connection, 409 for a job already running (or not running, for a cancel).
Under `runner serve` the API is read-only: only the daemon starts runs.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal, Protocol

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from runner import service
from runner.api.auth import AuthError, Key, KeyRing
from runner.definitions.models import JobSpec, Name
from runner.engine.changes import RunOptions
from runner.errors import DefinitionsInvalid, JobBusy, NotFound, NotRunning, RunnerError

STATIC = Path(__file__).parent / "static"
FRESH_SECONDS = 0.5  # how long a listing is reused: dashboards poll it, many at once


class Listings:
    """Listings (jobs, status, a job's runs and tasks, connections) computed and encoded once
    and reused for `FRESH_SECONDS`, so fifty dashboards polling cost about what one does. Any
    write through the API forgets them, so a client sees its own change at once. Their routes
    run on the event loop: a hit costs no thread; a miss (a few ms of state store and history
    files, twice a second at most) is computed right there."""

    def __init__(self) -> None:
        self._cache: dict[tuple[Any, ...], tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...], compute: Callable[[], Any]) -> Response:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
        if hit is None or now - hit[0] >= FRESH_SECONDS:
            body = json.dumps(compute(), ensure_ascii=False, default=str).encode()
            hit = (now, body)
            with self._lock:
                if len(self._cache) > 1000:  # many distinct queries: start again rather than grow
                    self._cache.clear()
                self._cache[key] = hit
        return Response(hit[1], media_type="application/json")

    def forget(self) -> None:
        with self._lock:
            self._cache.clear()


class RunStarter(Protocol):
    """What starts runs: the daemon (`runner daemon --http`)."""

    def start_run(
        self, job: str, options: RunOptions, trigger: str, adhoc: dict[str, Any] | None = None
    ) -> str: ...


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunRequest(Body):
    tasks: list[Name] | None = Field(None, description="Run only these tasks (all when left out).")
    resync: bool = Field(False, description="Forget pointers and digests first: read everything again.")


class AdhocRunRequest(RunRequest):
    name: Name = Field(description="The name its run is recorded under in the history.")
    namespace: Name = "default"
    spec: JobSpec = Field(description="A job's spec, as in jobs.d/; it is run once, never applied.")


class PointerRequest(Body):
    value: str | None = Field(
        description="The new pointer (as `runner pointer set` takes it), or null to clear it."
    )


def _version() -> str:
    try:
        return version("runner")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
        return "unknown"


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def _ref(name: str, namespace: str | None) -> str:
    return f"{namespace}/{name}" if namespace else name


def create_app(ws: service.Workspace, runner: RunStarter | None = None) -> FastAPI:
    """The app; `runner` is None under `runner serve` (read-only)."""
    keys = KeyRing(ws)
    listings = Listings()
    app = FastAPI(
        title="runner",
        version=_version(),
        description=(
            "Jobs, runs, history and logs of a runner daemon. Every /api/v1 route needs "
            "`Authorization: SharedKey <key>` or `Bearer <key>` (`runner keys create`)."
        ),
    )

    async def authorized(request: Request) -> Key:  # on the event loop: no thread per check
        key = keys.check(request.headers.get("authorization"), request.method)
        if runner is None and request.method not in ("GET", "HEAD"):
            raise AuthError(
                403, "this server is read-only (runner serve): use runner daemon --http to act on runs"
            )
        request.state.key = key  # runs it starts name it in their history
        if request.method not in ("GET", "HEAD"):
            listings.forget()
        return key

    @app.exception_handler(AuthError)
    def auth_error(_: Request, exc: AuthError) -> JSONResponse:
        headers = {"WWW-Authenticate": 'Bearer realm="runner"'} if exc.status == 401 else None
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"field": ".".join(str(p) for p in e["loc"] if p != "body"), "message": e["msg"]}
            for e in exc.errors()
        ]
        first = problems[0] if problems else {"field": "", "message": "invalid request"}
        return _error(422, first["message"], field=first["field"], problems=problems)

    @app.exception_handler(RunnerError)
    def runner_error(_: Request, exc: RunnerError) -> JSONResponse:
        if isinstance(exc, DefinitionsInvalid):
            problems = [
                {"field": p.location.field, "message": p.message, "hint": p.hint} for p in exc.problems
            ]
            return _error(422, problems[0]["message"], field=problems[0]["field"], problems=problems)
        status = 404 if isinstance(exc, NotFound) else 409 if isinstance(exc, JobBusy | NotRunning) else 400
        return _error(status, str(exc))

    api = APIRouter(prefix="/api/v1", dependencies=[Depends(authorized)])

    def starter() -> RunStarter:
        assert runner is not None  # `authorized` refused every write under `runner serve`
        return runner

    # --- agent -------------------------------------------------------------------------

    @api.get("/version", tags=["agent"])
    def get_version() -> dict[str, Any]:
        return {"version": _version(), "api": "v1"}

    @api.get("/status", tags=["agent"])
    async def get_status() -> Response:
        """Running or paused, the jobs running now, the state's revision and git commit."""

        def agent() -> dict[str, Any]:
            info = service.status(ws)
            return {k: v for k, v in info.items() if k != "jobs"} | {
                "mode": "daemon" if runner is not None else "serve",
                "jobs": len(info["jobs"]),
                "running": [j["job"] for j in info["jobs"] if j["running"]],
            }

        return listings.get(("agent",), agent)

    @api.post("/pause", tags=["agent"])
    def pause() -> dict[str, Any]:
        return service.pause(ws, True)

    @api.post("/unpause", tags=["agent"])
    def unpause() -> dict[str, Any]:
        return service.pause(ws, False)

    # --- connections -------------------------------------------------------------------

    @api.get("/connections", tags=["connections"])
    async def list_connections() -> Response:
        """Metadata only (type, host, database, the jobs using it): never a secret."""
        return listings.get(("connections",), lambda: service.connections(ws))

    @api.get("/connections/{name}", tags=["connections"])
    def get_connection(name: str, namespace: str | None = None) -> dict[str, Any]:
        found = service.find(ws, "Connection", _ref(name, namespace))
        return next(c for c in service.connections(ws) if c["connection"] == found.ref)

    # --- jobs --------------------------------------------------------------------------

    @api.get("/jobs", tags=["jobs"])
    async def list_jobs() -> Response:
        """Each job's schedule, next run, last run, run going on, suspension, pending update."""
        return listings.get(("jobs",), lambda: service.status(ws)["jobs"])

    @api.get("/jobs/{name}", tags=["jobs"])
    def get_job(name: str, namespace: str | None = None) -> dict[str, Any]:
        """The applied spec, its revision and source file, its status and tasks."""
        ref = _ref(name, namespace)
        info = service.describe(ws, "Job", ref)
        summary = next(
            j for j in service.status(ws)["jobs"] if j["job"] == f"{info['namespace']}/{info['name']}"
        )
        return info | {"status": summary, "tasks": service.tasks(ws, ref)}

    @api.post("/jobs/{name}/suspend", tags=["jobs"])
    def suspend(name: str, namespace: str | None = None) -> dict[str, Any]:
        return service.suspend(ws, _ref(name, namespace), True)

    @api.post("/jobs/{name}/resume", tags=["jobs"])
    def resume(name: str, namespace: str | None = None) -> dict[str, Any]:
        return service.suspend(ws, _ref(name, namespace), False)

    @api.get("/jobs/{name}/tasks", tags=["tasks"])
    async def list_tasks(name: str, namespace: str | None = None) -> Response:
        return listings.get(("tasks", name, namespace), lambda: service.tasks(ws, _ref(name, namespace)))

    @api.get("/jobs/{name}/pointers", tags=["pointers"])
    def get_pointers(name: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return service.pointer_show(ws, _ref(name, namespace))

    @api.put("/jobs/{name}/pointers/{task}", tags=["pointers"])
    def set_pointer(
        name: str, task: str, body: PointerRequest, namespace: str | None = None
    ) -> dict[str, Any]:
        """Set a watermark task's pointer (409 while the job runs)."""
        return service.pointer_set(ws, _ref(name, namespace), task, body.value)

    # --- runs --------------------------------------------------------------------------

    @api.post("/jobs/{name}/runs", tags=["runs"], status_code=202)
    def start_run(
        name: str, request: Request, body: RunRequest | None = None, namespace: str | None = None
    ) -> dict[str, Any]:
        """Start a run now, optionally of some tasks or with resync (409 when it is running)."""
        body = body or RunRequest()
        job = service.find(ws, "Job", _ref(name, namespace))
        options = RunOptions(tasks=body.tasks, resync=body.resync)
        service.check_tasks(ws, job.ref, body.tasks)  # an unknown task is a 404 now, not a failed run later
        run_id = starter().start_run(job.ref, options, f"api (key {request.state.key.name})")
        return {"run_id": run_id, "job": job.ref, "status": "started"}

    @api.post("/jobs/{name}/cancel", tags=["runs"], status_code=202)
    def cancel(name: str, namespace: str | None = None) -> dict[str, Any]:
        """Stop the job's run at its next batch boundary (409 when it is not running)."""
        return service.cancel(ws, _ref(name, namespace))

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
    ) -> Response:
        return listings.get(
            ("runs", name, namespace, limit, filter, task),
            lambda: service.runs(ws, _ref(name, namespace), limit, task, changed_only=filter == "changes"),
        )

    @api.post("/runs", tags=["runs"], status_code=202)
    def start_adhoc(body: AdhocRunRequest, request: Request) -> dict[str, Any]:
        """Run a job spec once without applying it; its run is in the history under its name."""
        spec = body.spec.model_dump(mode="json", exclude_unset=True)
        job, _ = service.adhoc_job(body.name, spec, body.namespace)
        service.check_adhoc_connections(ws, job)
        options = RunOptions(tasks=body.tasks, resync=body.resync)
        run_id = starter().start_run(job.ref, options, f"ad-hoc (key {request.state.key.name})", adhoc=spec)
        return {"run_id": run_id, "job": job.ref, "status": "started"}

    @api.get("/runs/{run_id}", tags=["runs"])
    def get_run(run_id: str) -> dict[str, Any]:
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
    ) -> dict[str, Any]:
        return service.log_since(ws, run_id, after, level)

    @api.get("/runs/{run_id}/log/stream", tags=["runs"])
    def stream_log(run_id: str) -> StreamingResponse:
        """The run's log as server-sent events, line by line, until the run ends (a live tail)."""
        service.log_since(ws, run_id)  # 404 before the stream starts

        def events() -> Iterator[str]:
            after = 0
            while True:
                part = service.log_since(ws, run_id, after)
                for line in part["lines"]:
                    yield f"data: {json.dumps(line, ensure_ascii=False)}\n\n"
                after = part["next"]
                if not part["running"]:
                    yield "event: end\ndata: {}\n\n"
                    return
                time.sleep(0.25)

        return StreamingResponse(events(), media_type="text/event-stream")

    app.include_router(api)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    return app
