"""The API's token never leaks: not in an error (even when the API echoes it back), a run log,
a history file or the state store, whichever way it is sent (a bearer token, basic auth, an API
key in a header or in the URL's query, an OAuth2 client secret and the tokens it buys)."""

from __future__ import annotations

import base64
import json
import urllib.parse
from pathlib import Path

import pytest

from runner import services
from runner.errors import DefinitionsInvalid
from tests.http.server import CLIENT_SECRET, TOKEN

AUTH = {
    "bearer": {"type": "bearer", "token": "${env:API_TOKEN}"},
    "basic": {"type": "basic", "username": "robot", "password": "${env:API_TOKEN}"},
    "key_header": {"type": "api_key", "name": "X-API-Key", "in": "header", "value": "${env:API_TOKEN}"},
    "key_query": {"type": "api_key", "name": "api_key", "in": "query", "value": "${env:API_TOKEN}"},
    "oauth": {
        "type": "oauth2",
        "token_url": "TOKEN_URL",
        "client_id": "robot",
        "client_secret": "${env:CLIENT_SECRET}",
    },
}


def _forms(value: str) -> list[bytes]:
    return [
        value.encode(),
        base64.b64encode(f"robot:{value}".encode()),
        urllib.parse.quote(value).encode(),
    ]


def _leaks(root: Path, values: list[str]) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path}: {v!r}" for value in values for v in _forms(value) if v in data]
    return found


@pytest.mark.parametrize("auth", sorted(AUTH))
def test_no_secret_reaches_errors_logs_history_or_state(api, project, monkeypatch, auth):
    monkeypatch.setenv("CLIENT_SECRET", CLIENT_SECRET)
    api.auth = auth
    spec = {
        "type": "http",
        "base_url": f"{api.base}/api",
        "auth": json.loads(json.dumps(AUTH[auth]).replace("TOKEN_URL", f"{api.base}/oauth/token")),
    }
    head = "apiVersion: runner/v1\nkind: Connection\nmetadata: {name: %s}\n"
    project.write("connections.d/api.yaml", head % "api" + f"spec: {json.dumps(spec)}\n")
    project.connection("lite", "sqlite", "sqlite:///out.db")
    echoed = json.dumps({"error": "bad request", "you_sent": TOKEN, "auth": f"Bearer {TOKEN}"})
    api.fault("/next", 400, "after", 20, body=echoed)
    task = {
        "name": "items",
        "read": {
            "path": "/next",
            "records": "data",
            "paginate": {"style": "next_link", "path": "links.next"},
            "columns": {"id": "bigint", "name": "text"},
        },
        "write": {"table": "items", "keys": ["id"]},
    }
    job = {"source": "api", "target": "lite", "tasks": [task]}
    project.write(
        "jobs.d/pull.yaml",
        f"apiVersion: runner/v1\nkind: Job\nmetadata: {{name: pull}}\nspec: {json.dumps(job)}\n",
    )
    services.apply(project.ws)
    record = services.run(project.ws, "pull")
    assert record["status"] == "failed"
    error = record["tasks"][0]["error"]
    assert "400 Bad Request" in error and "***" in error, error
    assert "after=20" in error  # the URL is shown, its secrets blanked
    if auth == "key_query":
        assert "api_key=***" in error
    assert TOKEN not in error and CLIENT_SECRET not in error
    assert [r.query.get("after") for r in api.requests][:3] == [None, "10", "20"]  # it did sign in
    project.ws.close()
    assert _leaks(project.root, [TOKEN, CLIENT_SECRET] + [f"at-{n}-x9y8" for n in range(1, 4)]) == []


def test_a_secret_written_out_is_refused_with_its_place(project):
    project.write(
        "connections.d/api.yaml",
        "apiVersion: runner/v1\nkind: Connection\nmetadata: {name: api}\nspec:\n  type: http\n"
        "  base_url: https://api.example.com\n  auth: {type: bearer, token: abc123}\n",
    )
    with pytest.raises(DefinitionsInvalid) as caught:
        services.validate(project.ws)
    problems = caught.value.problems
    assert len(problems) == 1
    text = str(problems[0])
    assert "connections.d/api.yaml:7" in text and "spec.auth.token:" in text and "abc123" not in text


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"base_url": "https://u:p@api.example.com"}, "holds no user or password"),
        ({"base_url": "https://api.example.com/?key=${env:K}"}, "holds no secret"),
        (
            {"base_url": "http://api.example.com", "auth": {"type": "bearer", "token": "${env:T}"}},
            "in the clear",
        ),
        ({"base_url": "https://api.example.com", "headers": {"Authorization": "Bearer x"}}, "go in 'auth'"),
    ],
)
def test_connections_that_would_expose_a_secret_are_refused(spec, message):
    from pydantic import ValidationError

    from runner.connectors.http.connection import HttpConnection

    with pytest.raises(ValidationError, match=message):
        HttpConnection.model_validate({"type": "http", **spec})


def test_an_api_key_in_the_query_does_not_reach_python_logging(api, mem, sync, caplog):
    """httpx logs every request's URL at INFO: in a process whose logging takes INFO (a host
    application, `--debug` tooling), an API key sent as a parameter would be written out."""
    import logging

    from tests.http.test_source import a_task

    caplog.set_level(logging.DEBUG)
    api.auth = "key_query"
    spec = {"type": "http", "base_url": f"{api.base}/api", "auth": AUTH["key_query"]}
    (result,) = sync(spec, mem.spec, [a_task()])
    assert result.status == "succeeded", result.error
    assert len(api.requests) == 5 and TOKEN not in caplog.text
    assert urllib.parse.quote(TOKEN) not in caplog.text


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"max_retry_wait": "365d"}, "max_retry_wait is at most 1h"),
        ({"timeout": "30d"}, "timeout is at most 1h"),
        ({"rate_limit": 0.0001}, "rate_limit is at least 1/3600"),
    ],
)
def test_waits_no_cancel_reaches_are_bounded(extra, message):
    """A definition making runner sleep (or read) for days would hold the worker and the
    job's lock: a cancel is seen between batches, not in a sleep."""
    from pydantic import ValidationError

    from runner.connectors.http.connection import HttpConnection

    with pytest.raises(ValidationError, match=message):
        HttpConnection.model_validate({"type": "http", "base_url": "https://api.example.com", **extra})
    HttpConnection.model_validate({"type": "http", "base_url": "https://api.example.com", "timeout": "1h"})


@pytest.mark.parametrize("header", ["X-Api-Key", "X-Auth-Token", "Private-Token", "X-Client-Secret"])
def test_a_credential_written_into_a_connection_header_is_refused(project, header):
    """README: no secret may be written into a header. Only Authorization and Cookie were
    refused, so `headers: {X-Api-Key: …}` kept an API key in git, the state store and
    `describe`; a header named for a credential is refused as a webhook's is, without echoing
    it, and an ordinary header still goes."""
    project.write(
        "connections.d/api.yaml",
        "apiVersion: runner/v1\nkind: Connection\nmetadata: {name: api}\nspec:\n  type: http\n"
        f"  base_url: https://api.example.com\n  headers: {{Accept-Language: en, {header}: k-8812-live}}\n",
    )
    with pytest.raises(DefinitionsInvalid) as caught:
        services.validate(project.ws)
    (problem,) = caught.value.problems
    text = str(problem)
    assert "connections.d/api.yaml:7:3: spec.headers: " in text, text
    assert f"headers.{header}: credentials go in 'auth'" in text and "k-8812-live" not in text
    project.write(
        "connections.d/api.yaml",
        "apiVersion: runner/v1\nkind: Connection\nmetadata: {name: api}\nspec:\n  type: http\n"
        "  base_url: https://api.example.com\n  headers: {Accept-Language: en, X-Request-Source: runner}\n",
    )
    assert [d.ref for d in services.validate(project.ws)] == ["default/api"]


def test_a_secret_echoed_url_encoded_is_redacted_too(project, monkeypatch):
    """A token endpoint that echoes the form it was sent quotes the client secret URL-encoded
    (`+` as %2B, `/` as %2F): that form is blanked as the raw one is."""
    import http.server
    import threading

    secret = "cs/Echo+S3cret==x"
    monkeypatch.setenv("CLIENT_SECRET", secret)

    class Echo(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            answer = json.dumps({"error": "invalid_request", "received": body.decode()}).encode()
            self.send_response(400)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        auth = AUTH["oauth"] | {"token_url": f"{base}/oauth/token"}
        spec = {"type": "http", "base_url": f"{base}/api", "auth": auth}
        head = "apiVersion: runner/v1\nkind: Connection\nmetadata: {name: api}\n"
        project.write("connections.d/api.yaml", head + f"spec: {json.dumps(spec)}\n")
        project.connection("lite", "sqlite", "sqlite:///out.db")
        task = {
            "name": "items",
            "read": {"path": "/items", "records": "data", "columns": {"id": "bigint"}},
            "write": {"table": "items", "keys": ["id"]},
        }
        job = {"source": "api", "target": "lite", "tasks": [task]}
        project.write(
            "jobs.d/pull.yaml",
            f"apiVersion: runner/v1\nkind: Job\nmetadata: {{name: pull}}\nspec: {json.dumps(job)}\n",
        )
        services.apply(project.ws)
        record = services.run(project.ws, "pull")
    finally:
        server.shutdown()
        server.server_close()
    error = record["tasks"][0]["error"]
    assert "gave no access token (400)" in error and "client_secret=***" in error, error
    encoded = [
        urllib.parse.quote_plus(secret),
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote(secret),
    ]
    assert not any(form in error for form in encoded)
    project.ws.close()
    written = b"".join(p.read_bytes() for p in project.root.rglob("*") if p.is_file())
    assert not [form for form in [secret, *encoded] if form.encode() in written]
