"""The HTTP server against raw sockets: what a client may send before the app sees it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from runner.api.server import HEADER_SECONDS, MAX_HEADER_BYTES
from runner.cli.app import app
from tests.api.test_page import free_port
from tests.conftest import TWO_SQLITE


@pytest.fixture
def served(project) -> Iterator[tuple[int, str, subprocess.Popen[str]]]:
    """`runner serve` on a loopback port: (port, a read key, the process)."""
    project.write("connections.d/c.yaml", TWO_SQLITE)
    cli = CliRunner()
    assert cli.invoke(app, ["--dir", str(project.root), "apply"]).exit_code == 0
    key = cli.invoke(app, ["--dir", str(project.root), "keys", "create", "viewer"]).stdout.strip()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNNER_")}
    cmd = [sys.executable, "-m", "runner", "--dir", str(project.root), "serve", "--http", str(port)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
    yield port, key, proc
    proc.send_signal(signal.SIGTERM)
    proc.wait(20)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def status(port: int, key: str, sock: socket.socket | None = None) -> bytes:
    own = sock is None
    sock = sock or socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"GET /api/v1/status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\r\n".encode())
    answer = sock.recv(65536)
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(65536)
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.lower().split(b"\r\n")
    length = next(int(h.split(b":")[1]) for h in lines if h.startswith(b"content-length"))
    while len(body) < length:
        body += sock.recv(65536)
    if own:
        sock.close()
    return answer


def test_huge_headers_are_refused_before_the_app_runs(served):
    port, key, proc = served
    before = rss_mb(proc.pid)
    line = b"X-Pad: " + b"a" * 8185 + b"\r\n"  # 8 KiB a line; 2,500 lines are 20 MB
    for _ in range(4):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\n")
            sent = 0
            try:
                for _ in range(2500):
                    sock.sendall(line)
                    sent += len(line)
            except (BrokenPipeError, ConnectionResetError):
                pass
            assert sent < 2500 * len(line), "the server read 20 MB of headers"  # socket buffers hold a few MB
            try:
                answer = sock.recv(4096)
            except ConnectionResetError:
                answer = b""
            assert answer == b"" or answer.startswith(b"HTTP/1.1 431"), answer
    assert rss_mb(proc.pid) - before < 50
    started = time.monotonic()
    assert status(port, key).startswith(b"HTTP/1.1 200")
    assert time.monotonic() - started < 2
    assert MAX_HEADER_BYTES <= 64 * 1024


def test_a_client_dribbling_headers_is_dropped(served):
    port, key, _ = served
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        assert status(port, key, sock).startswith(b"HTTP/1.1 200")  # on a kept-alive connection too
        started = time.monotonic()
        sock.sendall(b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\n")
        answer = b""
        for i in range(20):
            time.sleep(1)
            try:
                sock.sendall(f"X-Line-{i}: still typing\r\n".encode())
            except (BrokenPipeError, ConnectionResetError):
                break
            sock.settimeout(0.01)
            try:
                answer = sock.recv(4096)
            except TimeoutError:
                continue
            break
        assert answer.startswith(b"HTTP/1.1 408") or answer == b"", answer
        assert time.monotonic() - started < HEADER_SECONDS + 2.5


def test_a_request_with_headers_and_a_body_in_one_packet_is_served(served):
    """The head is counted only while it arrives: a body in the same packet is not head."""
    port, key, _proc = served
    body = b'{"resync": fals' + b" " * 60_000 + b"}"  # bigger than MAX_HEADER_BYTES, invalid JSON
    request = (
        f"POST /api/v1/jobs/nope/runs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = sock.recv(4096)
    assert not answer.startswith(b"HTTP/1.1 431"), answer
    assert answer.startswith(b"HTTP/1.1 4"), answer  # the app's own answer (a read key may not run)
