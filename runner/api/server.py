"""Serve the API with uvicorn on a thread of the daemon's process, so the API sees the
daemon's executor (to start runs) and stops with it."""

from __future__ import annotations

import asyncio
import ipaddress
import signal
import sys
import threading
import time
from collections.abc import Callable

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from runner.errors import RunnerError

DEFAULT_HOST = "127.0.0.1"
MAX_HEADER_BYTES = 16 * 1024  # request line and headers; a key and a browser's headers need ~2 KiB
HEADER_SECONDS = 5.0  # to send them: a client sends them at once, a slow one holds a connection


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol (its C parser: about 1.5 times the requests a second of
    the pure-Python h11), bounding what a request sends before the app sees it. httptools
    itself takes headers of any size, so the bytes of a request's head are counted as they
    arrive: past MAX_HEADER_BYTES the client gets a 431 and is closed, and a request whose
    headers have not all arrived HEADER_SECONDS after its first byte (or the connection's
    start) gets a 408 and is closed. Both act before any of the app runs, so neither a flood
    of headers nor a client dribbling a line every few seconds holds memory or a connection
    for long."""

    header_seconds = HEADER_SECONDS
    _header_timer: asyncio.TimerHandle | None = None
    _in_head = True  # a request's headers are arriving (or, on a new connection, none has begun)
    _head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer = self.loop.call_later(self.header_seconds, self._too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _refuse(self, status: bytes, text: bytes) -> None:
        self._disarm()
        self.transport.write(
            b"HTTP/1.1 %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (status, len(text), text)
        )
        self.transport.close()

    def _too_slow(self) -> None:
        self._header_timer = None
        if self._in_head and not self.transport.is_closing():
            self.logger.warning("dropped a client slower than %g s to send its headers", self.header_seconds)
            self._refuse(b"408 Request Timeout", b"the request's headers took too long to arrive")

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return
        super().data_received(data)
        if self._in_head and not self.transport.is_closing():  # counted once the parser has seen it
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEADER_BYTES:
                self.logger.warning("refused a request whose headers exceed %d bytes", MAX_HEADER_BYTES)
                self._refuse(b"431 Request Header Fields Too Large", b"the request's headers are too large")

    def on_headers_complete(self) -> None:
        self._in_head, self._head_bytes = False, 0
        self._disarm()
        super().on_headers_complete()

    def on_message_begin(self) -> None:
        """The first byte of a request (on a kept-alive connection: of the next one)."""
        super().on_message_begin()
        self._in_head, self._head_bytes = True, 0
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_seconds, self._too_slow)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


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


def exposure_warning(host: str) -> str | None:
    """A warning when `host` is not a loopback address: the API speaks plain HTTP, so keys
    and data would cross the network readable by anyone on the way."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return None
    return (
        f"serving plain HTTP on {host}, beyond this machine: API keys and data cross the network "
        "unencrypted; bind 127.0.0.1 and put a TLS proxy in front"
    )


class HttpServer:
    def __init__(self, app: FastAPI, host: str, port: int):
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            http=GuardedHttpToolsProtocol,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="runner-http", daemon=True)

    def start(self, timeout: float = 10, warn: Callable[[str], None] | None = None) -> None:
        """Start serving; raises RunnerError when the address cannot be bound. A bind beyond
        loopback is warned about through `warn` (default: stderr)."""
        warning = exposure_warning(self.server.config.host)
        if warning:
            (warn or (lambda text: print(f"warning: {text}", file=sys.stderr, flush=True)))(warning)
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
