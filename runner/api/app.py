"""The HTTP API (`/api/v1`) and the status page (`/`), over the same `runner.service` functions
as the CLI. Definitions stay in git: the API acts on runs, and a change to a job or task it is
sent is written back to git (committed, then applied), never kept beside it.

Every `/api/v1` request is checked by `Guard` before its body is read: a key (`runner.api.auth`),
its scope, a body of at most `MAX_BODY` bytes. The page holds no data and asks for a key,
which the browser keeps. Errors are JSON: `{"error": message}` plus `field` (and `problems`,
each with its field) where a request's content is wrong; 404 for an unknown job, run or
connection, 409 for a job already running (or not running, for a cancel) or a change that
cannot be written back to git now.
Under `runner serve` the API is read-only: only the daemon starts runs.

Each resource's routes are a router in `runner.api.routes`; `create_app` composes them behind
`Guard` and the error handlers (`runner.api.errors`).
"""

from __future__ import annotations

import json
import threading

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runner import services
from runner.api.auth import READS, AuthError, KeyRing
from runner.api.deps import MAX_STREAMS, Context, RunStarter
from runner.api.errors import HANDLERS
from runner.api.listings import Listings
from runner.api.routes import agent, connections, jobs, page, pointers, runs, tasks, verify
from runner.errors import StateUnavailable

MAX_BODY = 1 << 20  # bytes of a request body: a job spec is a few KB
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
ROUTERS = (agent, connections, jobs, tasks, pointers, runs, verify, page)  # the OpenAPI document's order


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
    ws: services.Workspace,
    runner: RunStarter | None = None,
    allow_adhoc: bool = False,
    review_branch: str | None = None,
) -> FastAPI:
    """The app; `runner` is None under `runner serve` (read-only). Ad-hoc runs run any SQL
    on any applied connection: they are refused unless `allow_adhoc`. With `review_branch`,
    job and task changes are committed there for review, never applied."""
    keys = KeyRing(ws)
    listings = Listings()
    app = FastAPI(
        title="runner",
        version=agent.package_version(),
        description=(
            "Jobs, runs, history and logs of a runner daemon. Every /api/v1 route needs "
            "`Authorization: SharedKey <key>` or `Bearer <key>` (`runner keys create`); scope `read` "
            "may GET, `operate` may also act on runs and change jobs and tasks (written back to git)."
        ),
        docs_url=None,  # Swagger UI and ReDoc load from a CDN: /openapi.json is the document
        redoc_url=None,
    )
    app.state.context = Context(
        ws, runner, allow_adhoc, keys, listings, threading.BoundedSemaphore(MAX_STREAMS), review_branch
    )
    app.add_middleware(Guard, keys=keys, listings=listings, read_only=runner is None)
    for exception, handler in HANDLERS.items():
        app.add_exception_handler(exception, handler)
    for module in ROUTERS:
        app.include_router(module.router)
    return app
