"""A REST API on loopback for the `http` kind's tests and benchmark: the same records behind
each pagination style, signing in by each auth, faults on demand (a 5xx once, a 429 with
Retry-After, a 4xx), and endpoints a task writes to that keep every request they receive.

Run in a thread (`serve`) by the tests, or as a process (`python -m tests.http.server PORT N`)
by the benchmark."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

TOKEN = "tok-Sup3r-S3cret-9f8e7d"  # what the tests' API accepts; must never leak
CLIENT_SECRET = "cs-Cl13nt-S3cret-4b3a"
START = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def record(i: int, stamp: dt.datetime | None = None) -> dict[str, Any]:
    at = stamp or START + dt.timedelta(minutes=i)
    return {
        "id": i,
        "name": f'item {i} ✓ "quoted"',
        "price": f"{i % 1000}.{i % 100:02d}",
        "updated_at": at.isoformat().replace("+00:00", "Z"),
        "customer": {"address": {"city": f"city {i % 7}"}, "tags": ["a", "b"]},
    }


@dataclass
class Fault:
    path: str
    param: str | None  # the query parameter that picks the request (None: any)
    value: str | None
    status: int
    times: int = 1
    headers: dict[str, str] = field(default_factory=dict)
    body: str = '{"error": "injected"}'


@dataclass
class Received:
    method: str
    path: str  # as sent, percent-escapes kept
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Api:
    """The API's state; tests change it between runs."""

    def __init__(self, count: int = 0):
        self.records: dict[int, dict[str, Any]] = {i: record(i) for i in range(1, count + 1)}
        self.auth: str | None = "bearer"  # bearer | basic | key_header | key_query | oauth | None
        self.faults: list[Fault] = []
        self.requests: list[Received] = []  # every request to a reading endpoint
        self.received: list[Received] = []  # every request to a writing endpoint
        self.stored: dict[str, Any] = {}  # what the writing endpoints keep, by the id in the path
        self.reject: dict[str, tuple[int, str]] = {}  # id -> status, body
        self.tokens_issued = 0
        self.revoked: set[str] = set()
        self.keep_requests = True
        self.frozen: list[dict[str, Any]] | None = None  # the benchmark's records, sorted once
        self.base = ""
        self.lock = threading.Lock()

    def fault(
        self, path: str, status: int, param: str | None = None, value: Any = None, **extra: Any
    ) -> None:
        self.faults.append(Fault(path, param, None if value is None else str(value), status, **extra))

    def touch(self, ids: list[int], stamp: dt.datetime) -> None:
        for i in ids:
            self.records[i] = record(i, stamp) | {"name": f"item {i} changed"}

    # --- serving -------------------------------------------------------------------------

    def signed_in(self, headers: dict[str, str], query: dict[str, str]) -> bool:
        auth = headers.get("authorization", "")
        if self.auth is None:
            return True
        if self.auth == "bearer":
            return auth == f"Bearer {TOKEN}"
        if self.auth == "basic":
            return auth == "Basic " + base64.b64encode(f"robot:{TOKEN}".encode()).decode()
        if self.auth == "key_header":
            return headers.get("x-api-key") == TOKEN
        if self.auth == "key_query":
            return query.get("api_key") == TOKEN
        if self.auth == "oauth":
            return auth.startswith("Bearer at-") and auth[7:] not in self.revoked
        return False

    def page(self, path: str, query: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        since = query.get("updated_since")
        if self.frozen is not None and since is None:
            rows = self.frozen
        else:
            rows = [r for r in self.records.values() if since is None or r["updated_at"] >= since]
            rows.sort(key=lambda r: r["id"])
        name = path.rsplit("/", 1)[-1]
        if name == "next":
            after, limit = int(query.get("after", 0)), int(query.get("limit", 10))
            chunk = [r for r in rows if r["id"] > after][:limit]
            more = chunk and chunk[-1]["id"] < rows[-1]["id"]
            nxt = {**query, "after": str(chunk[-1]["id"])} if more else None
            link = f"{path}?{urllib.parse.urlencode(nxt)}" if nxt else None
            return 200, {}, {"data": chunk, "links": {"next": link}}
        if name == "link":
            after, limit = int(query.get("after", 0)), int(query.get("limit", 10))
            chunk = [r for r in rows if r["id"] > after][:limit]
            headers = {}
            if chunk and chunk[-1]["id"] < rows[-1]["id"]:
                nxt = urllib.parse.urlencode({**query, "after": str(chunk[-1]["id"])})
                headers["Link"] = f'<{self.base}{path}?{nxt}>; rel="next", <{self.base}{path}>; rel="first"'
            return 200, headers, chunk
        if name == "pages":
            number, size = int(query.get("page", 1)), int(query.get("per_page", 10))
            return 200, {}, {"items": rows[(number - 1) * size : number * size], "page": number}
        if name == "offset":
            offset, limit = int(query.get("offset", 0)), int(query.get("limit", 10))
            return 200, {}, rows[offset : offset + limit]
        if name == "cursor":
            after = int(base64.b64decode(query["cursor"]).decode()) if query.get("cursor") else 0
            chunk = [r for r in rows if r["id"] > after][:10]
            more = chunk and chunk[-1]["id"] < rows[-1]["id"]
            cursor = base64.b64encode(str(chunk[-1]["id"]).encode()).decode() if more else None
            return 200, {}, {"results": chunk, "meta": {"next_cursor": cursor}}
        if name == "stored":  # what the writing endpoints keep, as pages of `{page}`
            number = int(query.get("page", 1))
            kept = [self.stored[k] for k in sorted(self.stored, key=lambda k: int(k) if k.isdigit() else k)]
            return 200, {}, {"items": kept[(number - 1) * 10 : number * 10]}
        return 404, {}, {"error": f"no endpoint {path}"}

    def write(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        ident = urllib.parse.unquote(path.split("/customers", 1)[1].lstrip("/"))
        if ident in self.reject:
            status, text = self.reject[ident]
            return status, {"error": text}
        if method == "DELETE":
            self.stored.pop(ident, None)
            return 204, None
        document = json.loads(body) if body else None
        key = ident or str(document.get("id")) if isinstance(document, dict) else ident
        self.stored[key] = document
        return (201 if method == "POST" else 200), {"ok": True}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        raw = scope["raw_path"].decode()
        query = dict(urllib.parse.parse_qsl(scope["query_string"].decode(), keep_blank_values=True))
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        method, path = scope["method"], scope["path"]
        seen = Received(method, raw, query, headers, body)
        status, extra, answer = self.answer(method, path, query, headers, body, seen)
        payload = b"" if answer is None else json.dumps(answer).encode()
        out = [(b"content-type", b"application/json")] + [(k.encode(), v.encode()) for k, v in extra.items()]
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": payload})

    def answer(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        headers: dict[str, str],
        body: bytes,
        seen: Received,
    ) -> tuple[int, dict[str, str], Any]:
        with self.lock:
            if path == "/oauth/token":
                form = dict(urllib.parse.parse_qsl(body.decode()))
                if form.get("client_id") != "robot" or form.get("client_secret") != CLIENT_SECRET:
                    return 401, {}, {"error": "invalid_client"}
                self.tokens_issued += 1
                return 200, {}, {"access_token": f"at-{self.tokens_issued}-x9y8", "expires_in": 3600}
            writing = "/customers" in path
            if (self.keep_requests or writing) and path != "/api":  # not `runner`'s connection check
                (self.received if writing else self.requests).append(seen)
            if not self.signed_in(headers, query):
                return 401, {}, {"error": "sign in first", "echo": headers.get("authorization", "")[:4]}
            for fault in self.faults:
                if (
                    fault.times > 0
                    and path.endswith(fault.path)
                    and (fault.param is None or query.get(fault.param) == fault.value)
                ):
                    fault.times -= 1
                    return fault.status, fault.headers, json.loads(fault.body)
            if writing:
                status, answer = self.write(method, seen.path, body)
                return status, {}, answer
            return self.page(path, query)


@contextlib.contextmanager
def serve(api: Api, tls: tuple[str, str] | None = None) -> Iterator[str]:
    """Serve `api` on 127.0.0.1 on a free port in a thread (with `tls`, a certificate and key
    file: over https); yields its base URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    certs = {"ssl_certfile": tls[0], "ssl_keyfile": tls[1]} if tls else {}
    config = uvicorn.Config(api, log_level="warning", lifespan="off", access_log=False, **certs)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test API did not start")
        time.sleep(0.01)
    api.base = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    try:
        yield api.base
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


if __name__ == "__main__":  # the benchmark's API: python -m tests.http.server PORT RECORDS
    import uvicorn

    served = Api(int(sys.argv[2]))
    served.auth = "bearer"
    served.keep_requests = False
    served.frozen = sorted(served.records.values(), key=lambda r: r["id"])
    served.base = f"http://127.0.0.1:{sys.argv[1]}"
    uvicorn.run(served, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
