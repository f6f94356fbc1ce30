"""Serve the API with uvicorn on a thread of the daemon's process, so the API sees the
daemon's executor (to start runs) and stops with it."""

from __future__ import annotations

import signal
import threading
import time

import uvicorn
from fastapi import FastAPI

from runner.errors import RunnerError

DEFAULT_HOST = "127.0.0.1"


def parse_bind(text: str) -> tuple[str, int]:
    """`PORT`, `HOST:PORT` or `[IPv6]:PORT`; the host defaults to 127.0.0.1 (loopback only)."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]") if sep else DEFAULT_HOST
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not 0 < number < 65536 or not host:
        raise RunnerError(f"--http {text!r}: expected PORT or HOST:PORT, e.g. 127.0.0.1:8080")
    return host, number


class HttpServer:
    def __init__(self, app: FastAPI, host: str, port: int):
        config = uvicorn.Config(
            app, host=host, port=port, log_level="warning", access_log=False, lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="runner-http", daemon=True)

    def start(self, timeout: float = 10) -> None:
        """Start serving; raises RunnerError when the address cannot be bound."""
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                config = self.server.config
                raise RunnerError(f"cannot serve HTTP on {config.host}:{config.port} (address in use?)")
            time.sleep(0.02)

    def serve_forever(self) -> None:
        """Serve until SIGTERM/SIGINT, then stop and return (`runner serve` exits 0)."""
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        self.start()
        stop.wait()
        self.stop()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
