"""An API that answers to harm: a body too big or a gzip bomb, a body dripped a byte at a time,
a Retry-After runner cannot read, a body its Content-Encoding does not decode, JSON nested too
deep, pages without end. Each fails the task with a clear error (or ends it), in bounded memory
and time; none crashes the run with an exception from httpx or json.

The server is a raw socket on loopback, so that it can send what no framework would."""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

MAX_BODY = 16 * 1024 * 1024  # runner.connectors.http.client.MAX_BODY

Send = Callable[[socket.socket, bytes], None]


def answer(status: str, body: bytes, **headers: str) -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
    head += "".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in headers.items())
    return head.encode("latin-1") + b"\r\n" + body


@contextlib.contextmanager
def raw_api(send: Send) -> Iterator[str]:
    """A server on 127.0.0.1 that reads each request's head and calls `send(connection, head)`."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                head += chunk
            with contextlib.suppress(OSError):
                send(conn, head)

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        listener.close()


def run(sync: Any, mem: Any, base: str, **connection: Any) -> Any:
    spec = {"type": "http", "base_url": base, "retries": 0, **connection}
    task = {
        "name": "items",
        "read": {"path": "/items", "columns": {"id": "bigint"}},
        "write": {"table": "items", "keys": ["id"]},
        "changes": {"strategy": "full"},
    }
    (result,) = sync(spec, mem.spec, [task])
    return result


def test_a_body_over_the_cap_fails_the_task(sync, mem):
    body = b"[" + b" " * (MAX_BODY + 10) + b"]"  # valid JSON: no records, only too big
    with raw_api(lambda conn, _: conn.sendall(answer("200 OK", body))) as base:
        result = run(sync, mem, base)
    assert result.status == "failed"
    assert "over 16 MiB" in result.error and "ask for smaller pages" in result.error


def test_a_gzip_bomb_is_stopped_at_the_cap(sync, mem):
    bomb = gzip.compress(b"[" + b" " * (MAX_BODY * 2) + b"]", 9)  # a few kB on the wire
    assert len(bomb) < MAX_BODY // 100
    reply = answer("200 OK", bomb, Content_Type="application/json", Content_Encoding="gzip")
    with raw_api(lambda conn, _: conn.sendall(reply)) as base:
        result = run(sync, mem, base)
    assert result.status == "failed"
    assert "over 16 MiB (decompressed)" in result.error


def test_a_body_it_cannot_decompress_fails_with_a_clear_error(sync, mem):
    reply = answer("200 OK", b"not gzip at all", Content_Encoding="gzip")
    with raw_api(lambda conn, _: conn.sendall(reply)) as base:
        result = run(sync, mem, base)
    assert result.status == "failed"
    assert "Content-Encoding 'gzip' does not decode" in result.error


def test_a_body_dripped_a_byte_at_a_time_times_out(sync, mem):
    """Each byte comes well within the timeout, the whole body long after it."""
    body = b'[{"id": 1}, {"id": 2}]' + b" " * 30

    def drip(conn: socket.socket, _: bytes) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
        for byte in body:
            conn.sendall(bytes([byte]))
            time.sleep(0.3)

    with raw_api(drip) as base:
        result = run(sync, mem, base, timeout="2s")
    assert result.status == "failed"
    assert "took longer than 2s" in result.error
    assert mem.rows("items") == []


def test_a_retry_after_float_cannot_read_is_a_plain_backoff(sync, mem):
    """`²` is a digit to Python's `str.isdigit`, but no number to `float`."""
    reply = answer("429 Too Many Requests", b"{}", Retry_After="\u00b2")
    with raw_api(lambda conn, _: conn.sendall(reply)) as base:
        result = run(sync, mem, base)
    assert result.status == "failed"
    assert "429 Too Many Requests" in result.error and "1 attempt(s)" in result.error


def test_a_retry_after_of_a_year_fails_at_once(sync, mem):
    reply = answer("503 Service Unavailable", b"{}", Retry_After=str(365 * 24 * 3600))
    with raw_api(lambda conn, _: conn.sendall(reply)) as base:
        result = run(sync, mem, base, retries=3, max_retry_wait="2s")
    assert result.status == "failed"
    assert "Retry-After longer than 2s" in result.error


@pytest.mark.parametrize(
    "link",
    [
        "http://127.0.0.1:99999/items",  # no port
        "/items\x00x",  # a control character
        "http://[::1/items",  # a broken address
        "/" + "a" * 70_000,  # longer than httpx sends
        "file:///etc/passwd",
        "http://someone:pw@127.0.0.1:PORT/items",  # credentials of the API's choosing
        "//example.com/items",
    ],
)
def test_a_next_link_runner_cannot_or_must_not_follow_fails_the_task(sync, mem, link):
    def send(conn: socket.socket, head: bytes) -> None:
        port = conn.getsockname()[1]
        body = json.dumps({"data": [{"id": 1}], "next": link.replace("PORT", str(port))}).encode()
        conn.sendall(answer("200 OK", body) if b"/items " in head else answer("404 Not Found", b"{}"))

    with raw_api(send) as base:
        spec = {"type": "http", "base_url": base, "retries": 0}
        task = {
            "name": "items",
            "read": {
                "path": "/items",
                "records": "data",
                "columns": {"id": "bigint"},
                "paginate": {"style": "next_link", "path": "next"},
            },
            "write": {"table": "items", "keys": ["id"]},
            "changes": {"strategy": "full"},
        }
        (result,) = sync(spec, mem.spec, [task])
    assert result.status == "failed" and result.failure == "terminal", result.error
    assert "the API links to" in result.error


def test_json_nested_too_deep_fails_the_task_with_a_clear_error(sync, mem):
    body = b"[" * 100_000 + b"]" * 100_000
    with raw_api(lambda conn, _: conn.sendall(answer("200 OK", body))) as base:
        result = run(sync, mem, base)
    assert result.status == "failed" and result.failure == "terminal"
    assert "page 1" in result.error and "nested too deep" in result.error


def test_a_page_that_is_not_json_names_its_content_type(sync, mem):
    reply = answer("200 OK", b"<html><body>Sign in</body></html>", Content_Type="text/html")
    with raw_api(lambda conn, _: conn.sendall(reply)) as base:
        result = run(sync, mem, base)
    assert result.status == "failed" and "not JSON" in result.error
    assert "Content-Type text/html" in result.error and "<html><body>Sign in" in result.error


def test_a_redirect_is_not_followed_and_says_where_it_went(sync, mem):
    seen: list[bytes] = []

    def send(conn: socket.socket, head: bytes) -> None:
        seen.append(head)
        conn.sendall(answer("302 Found", b"", Location="https://other.example/v2/items?token=abc"))

    with raw_api(send) as base:
        result = run(sync, mem, base)
    assert len([h for h in seen if h.startswith(b"GET /items ")]) == 1  # and the connection check
    assert result.status == "failed" and "302 Found" in result.error
    assert "a redirect to https://other.example/v2/items: runner follows none" in result.error
    assert "token=abc" not in result.error


def test_endless_pages_without_records_stop(sync, mem):
    """No record, ever, and always a new next link: no batch would reach the engine, which
    cancels a run (or ends it at its job's timeout) between batches."""
    count = [0]

    def send(conn: socket.socket, head: bytes) -> None:
        count[0] += head.startswith(b"GET /items")
        body = json.dumps({"data": [], "next": f"/items?after={count[0]}"}).encode()
        conn.sendall(answer("200 OK", body))

    with raw_api(send) as base:
        spec = {"type": "http", "base_url": base, "retries": 0}
        task = {
            "name": "items",
            "read": {
                "path": "/items",
                "records": "data",
                "columns": {"id": "bigint"},
                "paginate": {"style": "next_link", "path": "next"},
            },
            "write": {"table": "items", "keys": ["id"]},
            "changes": {"strategy": "full"},
        }
        (result,) = sync(spec, mem.spec, [task])
        assert result.status == "failed" and "100 pages in a row without a record" in result.error
        assert count[0] == 101


@pytest.mark.parametrize(
    "path, message",
    [
        (
            "/items{% for a in range(10) %}{% for b in range(10**5) %}{% endfor %}{% endfor %}",
            "exceeds 10,000",
        ),
        (
            "/items{% for a in range(10**4) %}{% for b in range(10**4) %}{% endfor %}{% endfor %}",
            "rendering took longer than 5 s",
        ),
    ],
)
def test_a_read_path_template_that_would_not_end_fails_the_task(sync, mem, path, message):
    """A definition, not the API, is the attacker: 10^8 turns of a loop held the worker."""
    with raw_api(lambda conn, _: conn.sendall(answer("200 OK", b"[]"))) as base:
        spec = {"type": "http", "base_url": base, "retries": 0}
        task = {
            "name": "items",
            "read": {"path": path, "columns": {"id": "bigint"}},
            "write": {"table": "items", "keys": ["id"]},
            "changes": {"strategy": "full"},
        }
        (result,) = sync(spec, mem.spec, [task])
    assert result.status == "failed" and result.error.startswith("read.path: "), result.error
    assert message in result.error


@pytest.mark.parametrize(
    "size, message",
    [(5_000, "twice; stopping a loop"), (1_000_000, "cannot be sent with its parameters")],
)
def test_a_huge_cursor_fails_the_task_with_a_short_error(sync, mem, size, message):
    cursor = "c" * size
    body = json.dumps({"data": [{"id": 1}], "meta": {"next": cursor}}).encode()
    with raw_api(lambda conn, _: conn.sendall(answer("200 OK", body))) as base:
        spec = {"type": "http", "base_url": base, "retries": 0}
        task = {
            "name": "items",
            "read": {
                "path": "/items",
                "records": "data",
                "columns": {"id": "bigint"},
                "paginate": {"style": "cursor", "path": "meta.next"},
            },
            "write": {"table": "items", "keys": ["id"]},
            "changes": {"strategy": "full"},
        }
        (result,) = sync(spec, mem.spec, [task])
    assert result.status == "failed" and message in result.error, result.error[:300]
    assert len(result.error) < 1000


@pytest.mark.parametrize("expires_in", ["-100", "NaN", "0", "true"])
def test_a_token_lifetime_that_makes_no_sense_is_taken_as_an_hour(sync, mem, monkeypatch, expires_in):
    """A token taken as expired at once was asked for again before every request."""
    monkeypatch.setenv("CLIENT_SECRET", "s3cret")
    tokens = []

    def send(conn: socket.socket, head: bytes) -> None:
        if head.startswith(b"POST /token"):
            tokens.append(head)
            body = b'{"access_token": "at-1", "expires_in": %s}' % expires_in.encode()
            conn.sendall(answer("200 OK", body))
        else:
            conn.sendall(answer("200 OK", b'[{"id": 1}]'))

    with raw_api(send) as base:
        auth = {
            "type": "oauth2",
            "token_url": f"{base}/token",
            "client_id": "r",
            "client_secret": "${env:CLIENT_SECRET}",
        }
        result = run(sync, mem, base, auth=auth)
    assert result.status == "succeeded", result.error
    assert len(tokens) == 1  # for the connection check and the page
