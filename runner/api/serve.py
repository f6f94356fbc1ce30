"""The API put together with its server: beside a daemon (which starts the runs it accepts),
or on its own, read-only. The CLI calls these; the daemon never imports the API."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from runner import services
from runner.api.app import create_app
from runner.api.deps import RunStarter
from runner.api.server import HttpServer, parse_bind


def start_beside(
    ws: services.Workspace,
    runs: RunStarter,
    bind: str,
    allow_adhoc: bool,
    log: Callable[..., Any],
    review_branch: str | None = None,
) -> HttpServer:
    """Serve the API and status page on a thread of this process; `runs` starts the runs it
    accepts (the daemon). Returns the running server (`stop()` ends it)."""
    host, port = parse_bind(bind)
    # Runs and requests share the interpreter: hand it over every 1 ms (Python's default is
    # 5 ms), so a request waits less behind a run's Python work.
    sys.setswitchinterval(0.001)
    server = HttpServer(create_app(ws, runs, allow_adhoc, review_branch), host, port)
    server.start(warn=lambda text: log("warning", text))
    log("info", "serving the API and status page", url=f"http://{host}:{port}/")
    return server


def serve_read_only(ws: services.Workspace, bind: str) -> None:
    """Serve the API (read-only) and the status page, without scheduling, until SIGTERM/SIGINT."""
    host, port = parse_bind(bind)
    ws.store()  # a bad state store URL is an error now, not on the first request
    HttpServer(create_app(ws, None), host, port).serve_forever()
