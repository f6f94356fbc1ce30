"""`runner validate` on http jobs: what an API source or target cannot honour is a located
error before anything runs."""

from __future__ import annotations

import json

import pytest

from runner import services
from runner.connectors import registry
from runner.errors import DefinitionsInvalid
from tests.http.conftest import http_spec

READ = {"path": "/items", "columns": {"id": "bigint", "updated_at": "timestamptz"}}


def _problems(project, source: str, target: str, task: dict) -> list[str]:
    api = {
        "type": "http",
        "base_url": "https://api.example.com",
        "auth": {"type": "bearer", "token": "${env:T}"},
    }
    head = "apiVersion: runner/v1\nkind: Connection\nmetadata: {name: %s}\nspec: %s\n"
    project.write("connections.d/api.yaml", head % ("api", json.dumps(api)))
    project.connection("lite", "sqlite", "sqlite:///x.db")
    job = {"source": source, "target": target, "tasks": [task]}
    project.write(
        "jobs.d/j.yaml", f"apiVersion: runner/v1\nkind: Job\nmetadata: {{name: j}}\nspec: {json.dumps(job)}\n"
    )
    try:
        services.validate(project.ws)
    except DefinitionsInvalid as exc:
        return [str(p) for p in exc.problems]
    return []


@pytest.mark.parametrize(
    "changes, read, message",
    [
        ({"strategy": "watermark", "column": "updated_at"}, READ, "use {{ since }} in read.params"),
        (
            {"strategy": "watermark", "column": "id", "start": "2024-01-01"},
            {**READ, "params": {"s": "{{ since }}"}},
            "start",
        ),
        ({"strategy": "hash"}, READ, "digests"),
        ({"strategy": "full"}, {"path": "https://evil.example/x", "content_column": "doc"}, "relative"),
        (
            {"strategy": "full"},
            {"path": "/x", "columns": {"id": "bigint"}, "content_column": "doc"},
            "exactly one",
        ),
        (
            {"strategy": "full"},
            {**READ, "params": {"offset": 1}, "paginate": {"style": "offset"}},
            "paginator's own",
        ),
    ],
)
def test_a_read_an_api_cannot_serve_is_refused(project, changes, read, message):
    task = {"name": "t", "read": read, "write": {"table": "t", "keys": ["id"]}, "changes": changes}
    problems = _problems(project, "api", "lite", task)
    assert any(message in p for p in problems), problems
    assert all("jobs.d/j.yaml:" in p for p in problems)


@pytest.mark.parametrize(
    "write, message",
    [
        ({"path": "/c/{{ row.id", "keys": ["id"]}, "invalid template"),
        ({"path": "/c", "keys": ["id"], "success": [200, 503]}, "503 is no success"),
        ({"path": "/c", "keys": ["id"], "headers": {"runner-op": "x"}}, "runner's own"),
    ],
)
def test_a_write_an_api_cannot_serve_is_refused(project, write, message):
    task = {"name": "t", "read": {"table": "t"}, "write": write}
    problems = _problems(project, "lite", "api", task)
    assert any(message in p for p in problems), problems


def test_connections_test_reaches_the_api(api, tmp_path):
    kind = registry.kind("http")
    assert kind is not None and kind.test is not None
    said = kind.test("api", kind.spec.model_validate(http_spec(api)), tmp_path)
    assert said.startswith(f"{api.base}/api answered ")


def test_a_read_template_naming_an_unknown_value_is_refused():
    from pydantic import ValidationError

    from runner.connectors.http.reading import HttpRead

    with pytest.raises(ValidationError, match="'sinse' is unknown here"):
        HttpRead.model_validate({"path": "/x", "params": {"s": "{{ sinse }}"}, "content_column": "doc"})


def test_a_credential_written_into_a_tasks_params_or_headers_is_refused(project):
    """README: no secret may be written into a header or a parameter. A task's
    `params: {api_key: …}` and `headers: {X-Auth-Token: …}` were accepted, keeping the key in
    git and the state store; they are refused at their field, without echoing the value, while
    a cursor named `page_token` and a filter named `author` still go."""
    params = {"api_key": "k-5521-live", "page_token": "{{ since }}", "author": "octocat"}
    read = {**READ, "params": params}
    task = {"name": "t", "read": read, "write": {"table": "t", "keys": ["id"]}}
    (problem,) = _problems(project, "api", "lite", task)
    assert (
        "jobs.d/j.yaml:" in problem
        and "spec.tasks[0].read.params: params.api_key: no secrets here" in problem
    )
    assert "k-5521-live" not in problem
    write = {
        "path": "/c",
        "keys": ["id"],
        "headers": {"X-Auth-Token": "k-5521-live", "x-region": "{{ row.id }}"},
    }
    (problem,) = _problems(project, "lite", "api", {"name": "t", "read": {"table": "t"}, "write": write})
    assert (
        "spec.tasks[0].write.headers: headers.X-Auth-Token: credentials go in the connection's auth"
        in problem
    )
    assert "k-5521-live" not in problem
