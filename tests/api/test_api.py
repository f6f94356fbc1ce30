"""The HTTP API over a real folder, state store and runs: keys and scopes on every route,
no secret in any response, runs started, followed and cancelled, ad-hoc runs, errors."""

from __future__ import annotations

import json
import time

from fastapi.testclient import TestClient

from runner import services
from runner.api.app import create_app
from tests.api.conftest import SECRET
from tests.daemon.conftest import ROWS, runner_cli

EXPECTED = {
    ("GET", "/api/v1/version"),
    ("GET", "/api/v1/status"),
    ("POST", "/api/v1/pause"),
    ("POST", "/api/v1/unpause"),
    ("GET", "/api/v1/connections"),
    ("GET", "/api/v1/connections/{name}"),
    ("GET", "/api/v1/jobs"),
    ("GET", "/api/v1/jobs/{name}"),
    ("POST", "/api/v1/jobs/{name}/suspend"),
    ("POST", "/api/v1/jobs/{name}/resume"),
    ("GET", "/api/v1/jobs/{name}/tasks"),
    ("GET", "/api/v1/jobs/{name}/pointers"),
    ("PUT", "/api/v1/jobs/{name}/pointers/{task}"),
    ("POST", "/api/v1/jobs/{name}/runs"),
    ("GET", "/api/v1/jobs/{name}/runs"),
    ("POST", "/api/v1/jobs/{name}/cancel"),
    ("GET", "/api/v1/jobs/{name}/verify"),
    ("POST", "/api/v1/jobs/{name}/verify"),
    ("POST", "/api/v1/runs"),
    ("GET", "/api/v1/runs/{run_id}"),
    ("GET", "/api/v1/runs/{run_id}/log"),
    ("GET", "/api/v1/runs/{run_id}/log/stream"),
    ("POST", "/api/v1/jobs"),
    ("PUT", "/api/v1/jobs/{name}"),
    ("DELETE", "/api/v1/jobs/{name}"),
    ("POST", "/api/v1/jobs/{name}/tasks"),
    ("PUT", "/api/v1/jobs/{name}/tasks/{task}"),
    ("DELETE", "/api/v1/jobs/{name}/tasks/{task}"),
    ("POST", "/api/v1/jobs/{name}/tasks/{task}/move"),
    ("POST", "/api/v1/jobs/{name}/tasks/{task}/off"),
    ("POST", "/api/v1/jobs/{name}/tasks/{task}/on"),
}


def routes(app) -> list[tuple[str, str]]:
    """Every operation the OpenAPI document describes."""
    return sorted((method.upper(), path) for path, ops in app.openapi()["paths"].items() for method in ops)


def concrete(path: str, run_id: str) -> str:
    name = "src" if path.startswith("/api/v1/connections") else "sync"
    return path.replace("{name}", name).replace("{task}", "items").replace("{run_id}", run_id)


def wait_run(api, run_id: str, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = api.get(f"/api/v1/runs/{run_id}")
        if response.status_code == 200 and response.json()["status"] not in ("queued", "running"):
            return response.json()
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not end")


def test_every_route_needs_a_valid_key_and_the_right_scope(api):
    run_id = services.run(api.project.ws, "sync")["run_id"]
    found = routes(api.client.app)
    assert set(found) == EXPECTED
    writes = 0
    for method, path in found:
        url = concrete(path, run_id)
        for header in (
            None,
            "Bearer nope",
            "Basic " + api.keys["operate"],
            "SharedKey",
            "Bearer rk_" + "x" * 43,
        ):
            headers = {"Authorization": header} if header else {}
            response = api.client.request(method, url, headers=headers)
            assert response.status_code == 401, (method, url, header, response.text)
            assert response.json()["error"] and response.headers["www-authenticate"].startswith("Bearer")
        read = api.client.request(method, url, headers={"Authorization": f"SharedKey {api.keys['read']}"})
        if method == "GET":
            assert read.status_code == 200, (method, url, read.text)
        else:
            writes += 1
            assert read.status_code == 403, (method, url, read.text)
            assert read.json() == {"error": "key 'read-key' has scope 'read': it can only read (GET)"}
    assert writes == 18
    assert services.status(api.project.ws)["paused"] is False  # the refused writes did nothing
    assert services.status(api.project.ws)["jobs"][1]["suspended"] is None


def test_a_revoked_key_is_refused(api):
    assert api.get("/api/v1/version").status_code == 200
    services.keys_revoke(api.project.ws, "read-key")
    time.sleep(1.1)  # keys are re-read once a second
    assert api.get("/api/v1/version").status_code == 401


def test_no_secret_in_any_response(api):
    record = services.run(api.project.ws, "sync")
    bodies = []
    for method, path in routes(api.client.app):
        if method == "GET" and "stream" not in path:
            bodies.append(api.get(concrete(path, record["run_id"])).text)
    bodies.append(api.get("/api/v1/connections/warehouse", params={"namespace": "team"}).text)
    bodies.append(api.client.get("/openapi.json").text)
    bodies.append(api.client.get("/").text)
    text = "\n".join(bodies)
    assert SECRET not in text
    assert "API_TEST_PASSWORD" not in text  # not even which variable holds it
    for row in api.project.ws.store().keys.all():
        assert row["key_hash"] not in text
    for key in api.keys.values():
        assert key not in text
    (warehouse,) = [c for c in api.get("/api/v1/connections").json() if c["connection"] == "team/warehouse"]
    assert warehouse == warehouse | {
        "type": "postgresql",
        "host": "127.0.0.1",
        "port": 5432,
        "database": "wh",
    }
    assert warehouse["user"] == "loader" and warehouse["used_by"] == []
    assert api.get("/api/v1/connections/src").json()["used_by"] == ["default/after", "default/sync"]


def test_start_follow_and_list_runs(api):
    started = api.post("/api/v1/jobs/sync/runs")
    assert started.status_code == 202
    run_id = started.json()["run_id"]
    record = wait_run(api, run_id)
    assert record["status"] == "succeeded" and record["trigger"] == "api (key operate-key)"
    assert record["rows_written"] == 2 * ROWS
    # a second run of some tasks only: the watermark finds nothing new, the full copy rewrites
    again = api.post("/api/v1/jobs/sync/runs", json={"tasks": ["items"]}).json()["run_id"]
    assert wait_run(api, again)["tasks"][0]["unchanged"] == 1
    runs = api.get("/api/v1/jobs/sync/runs").json()  # by default, runs that changed nothing are hidden
    assert [r["run_id"] for r in runs] == [run_id]
    every = api.get("/api/v1/jobs/sync/runs", params={"filter": "all", "limit": 1}).json()
    assert [r["run_id"] for r in every] == [again]
    per_task = api.get("/api/v1/jobs/sync/runs", params={"task": "copy", "filter": "all"}).json()
    assert [(r["run_id"], r["name"]) for r in per_task] == [(run_id, "copy")]
    tasks = api.get("/api/v1/jobs/sync/tasks").json()
    assert [(t["task"], t["last_run"]["run_id"]) for t in tasks] == [("items", again), ("copy", run_id)]

    log = api.get(f"/api/v1/runs/{run_id}/log").json()
    assert log["running"] is False and log["lines"][0]["message"] == "run started"
    assert api.get(f"/api/v1/runs/{run_id}/log", params={"after": log["next"]}).json()["lines"] == []
    warnings = api.get(f"/api/v1/runs/{run_id}/log", params={"level": "warning"}).json()["lines"]
    assert all(line["level"] in ("warning", "error") for line in warnings)
    with api.client.stream(
        "GET", f"/api/v1/runs/{run_id}/log/stream", headers={"Authorization": f"Bearer {api.keys['read']}"}
    ) as stream:
        events = [json.loads(line[6:]) for line in stream.iter_lines() if line.startswith('data: {"')]
    assert [e["message"] for e in events] == [line["message"] for line in log["lines"]]

    job = api.get("/api/v1/jobs/sync").json()
    assert job["status"]["last_run"]["run_id"] == again and job["file"] == "jobs.d/sync.yaml"
    assert job["document"]["spec"]["tasks"][0]["name"] == "items" and len(job["tasks"]) == 2
    assert api.get("/api/v1/jobs").json()[1]["job"] == "default/sync"


def test_a_running_job_is_409_and_cancel_stops_it(api, monkeypatch):
    monkeypatch.setenv("RUNNER_BATCH_DELAY", "0.1")  # a run of two seconds, in this process's workers
    run_id = api.post("/api/v1/jobs/sync/runs").json()["run_id"]
    deadline = time.monotonic() + 10
    while api.get(f"/api/v1/runs/{run_id}").status_code == 404 and time.monotonic() < deadline:
        time.sleep(0.02)
    busy = api.post("/api/v1/jobs/sync/runs")
    assert busy.status_code == 409 and "already running" in busy.json()["error"]
    pointer = api.put("/api/v1/jobs/sync/pointers/items", json={"value": "5"})
    assert pointer.status_code == 409
    status = api.get("/api/v1/status").json()
    assert status["running"] == ["default/sync"] and status["mode"] == "daemon"
    cancel = api.post("/api/v1/jobs/sync/cancel")
    assert cancel.status_code == 202 and cancel.json()["run_id"] == run_id
    record = wait_run(api, run_id)
    assert record["status"] == "cancelled"
    assert api.post("/api/v1/jobs/sync/cancel").status_code == 409  # nothing runs now


def test_pointers_switches_and_pause(api):
    services.run(api.project.ws, "sync")
    assert api.get("/api/v1/jobs/sync/pointers").json()[0]["pointer"]["value"] == str(ROWS)
    changed = api.put("/api/v1/jobs/sync/pointers/items", json={"value": "50"}).json()
    assert changed["new"]["value"] == "50"
    invalid = api.put("/api/v1/jobs/sync/pointers/items", json={"value": "x"})
    assert invalid.status_code == 422 and invalid.json()["field"] == "value", invalid.text  # as documented
    assert api.put("/api/v1/jobs/sync/pointers/copy", json={"value": "1"}).status_code == 400
    assert api.put("/api/v1/jobs/sync/pointers/nope", json={"value": "1"}).status_code == 404
    assert api.post("/api/v1/jobs/sync/suspend").json()["suspended"] is True
    assert api.get("/api/v1/jobs/sync").json()["status"]["suspended"]["by"]
    assert api.post("/api/v1/jobs/sync/resume").json()["changed"] is True
    assert api.post("/api/v1/pause").json()["paused"] is True
    assert api.get("/api/v1/status").json()["paused"] is True
    assert api.post("/api/v1/unpause").json() == {"paused": False}


def test_adhoc_runs_are_validated_and_recorded_under_their_name(api):
    spec = {
        "source": "src",
        "target": "dst",
        "tasks": [
            {
                "name": "once",
                "read": {"query": "SELECT id, v FROM items WHERE id <= 7"},
                "write": {"table": "adhoc"},
            }
        ],
    }
    started = api.post("/api/v1/runs", json={"name": "one-off", "spec": spec})
    assert started.status_code == 202, started.text
    record = wait_run(api, started.json()["run_id"])
    assert record["status"] == "succeeded" and record["job"] == "one-off" and record["rows_written"] == 7
    assert record["trigger"] == "ad-hoc (key operate-key)"
    listed = api.get("/api/v1/jobs/one-off/runs", params={"filter": "all"}).json()
    assert [r["run_id"] for r in listed] == [record["run_id"]]  # in the history under its name
    assert services.get(api.project.ws, "Job")[0].name == "after"  # nothing was applied

    bad = api.post("/api/v1/runs", json={"name": "x", "spec": spec | {"shedule": {}}})
    assert bad.status_code == 422 and bad.json()["field"] == "spec.shedule"
    dup = api.post("/api/v1/runs", json={"name": "x", "spec": spec | {"tasks": spec["tasks"] * 2}})
    assert dup.status_code == 422 and dup.json()["error"] == "two tasks are named 'once'"
    nowhere = api.post("/api/v1/runs", json={"name": "x", "spec": spec | {"source": "gone"}})
    assert nowhere.status_code == 404 and "connection 'gone' is not applied" in nowhere.json()["error"]
    upper = api.post("/api/v1/runs", json={"name": "Not A Name", "spec": spec})
    assert upper.status_code == 422 and upper.json()["field"] == "name"


def test_errors_are_json_with_status(api):
    assert api.get("/api/v1/jobs/nope").status_code == 404
    assert api.get("/api/v1/jobs/nope").json() == {
        "error": "no job 'nope' in the applied state (run `runner apply` first?)"
    }
    assert api.get("/api/v1/runs/20990101T000000.000-abcdef").status_code == 404
    assert api.get("/api/v1/runs/..%2F..%2Fetc").status_code == 404
    assert api.get("/api/v1/connections/nope").status_code == 404
    assert api.get("/api/v1/jobs/..", params={"namespace": ".."}).status_code == 404
    assert api.get("/api/v1/jobs/..%2F..%2Fetc/runs").status_code == 404
    assert api.get("/api/v1/jobs/../runs".replace("..", "%2E%2E")).status_code in (404, 405)
    assert api.get("/api/v1/jobs/..%2F..%2Fetc/runs").status_code == 404
    assert api.get("/api/v1/jobs/sync/runs", params={"limit": 0}).json()["field"] == "query.limit"
    unknown_task = api.post("/api/v1/jobs/sync/runs", json={"tasks": ["nope"]})
    assert unknown_task.status_code == 404 and "has no task 'nope'" in unknown_task.json()["error"]
    extra = api.post("/api/v1/jobs/sync/runs", json={"resync": True, "bogus": 1})
    assert extra.status_code == 422 and extra.json()["field"] == "bogus"


def test_serve_is_read_only(read_only_api):
    api = read_only_api
    assert api.get("/api/v1/status").json()["mode"] == "serve"
    refused = api.post("/api/v1/jobs/sync/runs")
    assert refused.status_code == 403 and "read-only" in refused.json()["error"]
    assert api.post("/api/v1/pause").status_code == 403
    assert services.status(api.project.ws)["paused"] is False


def test_the_openapi_document_describes_every_route(api):
    assert set(routes(api.client.app)) == EXPECTED
    assert api.client.get("/openapi.json").json()["info"]["title"] == "runner"


def test_adhoc_runs_take_their_own_name_are_off_unless_allowed_and_are_recorded(api, project):
    spec = {
        "source": "src",
        "target": "dst",
        "tasks": [{"name": "t", "read": {"table": "items"}, "write": {"table": "x"}}],
    }
    services.run(project.ws, "sync")
    before = services.pointer_show(project.ws, "sync")
    taken = api.post("/api/v1/runs", json={"name": "sync", "spec": spec})
    assert taken.status_code == 409 and "an ad-hoc run takes a name of its own" in taken.json()["error"]
    assert services.pointer_show(project.ws, "sync") == before
    unknown = api.post("/api/v1/runs", json={"name": "mine", "spec": spec, "tasks": ["nope"]})
    assert unknown.status_code == 404 and "has no task 'nope'" in unknown.json()["error"]
    scheduled = api.post(
        "/api/v1/runs", json={"name": "mine", "spec": spec | {"schedule": {"cron": "* * * * *"}}}
    )
    assert scheduled.status_code == 422 and scheduled.json()["field"] == "spec.schedule"
    twice = api.post("/api/v1/runs", json={"name": "mine", "spec": spec, "tasks": ["t", "t"]})
    assert twice.status_code == 422 and twice.json()["field"] == "tasks"
    run_id = api.post("/api/v1/runs", json={"name": "mine", "spec": spec}).json()["run_id"]
    record = wait_run(api, run_id)
    assert record["adhoc_spec"] == spec and record["status"] == "succeeded"

    with TestClient(create_app(project.ws, api.daemon)) as off:  # the daemon's default
        refused = off.post("/api/v1/runs", json={"name": "mine", "spec": spec}, headers=api.auth("operate"))
    assert refused.status_code == 403 and "--allow-adhoc" in refused.json()["error"]


def test_bodies_are_refused_before_they_are_read(api):
    big = b"x" * (2 << 20)
    headers = {"content-type": "application/json"}
    assert api.client.post("/api/v1/runs", content=big, headers=headers).status_code == 401
    too_big = api.client.post("/api/v1/runs", content=big, headers=headers | api.auth("operate"))
    assert too_big.status_code == 413 and "over" in too_big.json()["error"]


def test_actions_name_the_key_and_responses_carry_safe_headers(api):
    assert api.post("/api/v1/jobs/sync/suspend").status_code == 200
    (job,) = [j for j in api.get("/api/v1/jobs").json() if j["job"] == "default/sync"]
    assert job["suspended"]["by"] == "api key operate-key"  # seen at once, though listings are cached
    assert api.post("/api/v1/pause").json()["by"] == "api key operate-key"
    response = api.get("/api/v1/jobs")
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"
    page = api.client.get("/")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert '<script src="/app.js">' in page.text and api.client.get("/app.js").status_code == 200
    long = api.put("/api/v1/jobs/sync/pointers/items", json={"value": "9" * 5000})
    assert long.status_code == 422 and long.json()["field"] == "value"
    assert api.post("/api/v1/jobs/sync/runs", json={"resync": "yes"}).status_code == 422
    nowhere = api.get("/api/v1/nope")
    assert nowhere.status_code == 404 and "error" in nowhere.json()


def test_the_openapi_document_states_the_key_and_the_errors(api):
    doc = api.client.get("/openapi.json").json()
    (scheme,) = doc["components"]["securitySchemes"].values()
    assert scheme == scheme | {"type": "apiKey", "in": "header", "name": "Authorization"}
    jobs = doc["paths"]["/api/v1/jobs/{name}"]["get"]
    assert jobs["security"] and {"401", "403", "404", "409", "422"} <= set(jobs["responses"])
    stream = doc["paths"]["/api/v1/runs/{run_id}/log/stream"]["get"]["responses"]["200"]["content"]
    assert "text/event-stream" in stream
    assert api.client.get("/docs").status_code == 404  # no page that needs a CDN


def test_a_listing_missed_by_many_requests_at_once_is_computed_once():
    import asyncio

    from runner.api.listings import Listings

    calls: list[int] = []

    def compute():
        calls.append(1)
        time.sleep(0.05)
        return {"jobs": len(calls)}

    async def many():
        listings = Listings()
        responses = await asyncio.gather(*(listings.get(("jobs",), compute) for _ in range(50)))
        return {r.body for r in responses}

    assert asyncio.run(many()) == {b'{"jobs": 1}'} and len(calls) == 1


def test_dry_runs_are_marked_in_runs_and_jobs(read_only_api):
    api = read_only_api
    services.run(api.project.ws, "sync", services.RunOptions(dry_run=True))
    (run,) = api.get("/api/v1/jobs/sync/runs?filter=all").json()
    assert (run["mode"], run["rows_written"], run["rows_would_write"]) == ("dry-run", 0, 2 * ROWS)  # 2 tasks
    assert api.get("/api/v1/jobs/sync/runs").json() == []  # by default: runs that changed something
    jobs = {j["job"]: j for j in api.get("/api/v1/jobs").json()}
    assert jobs["default/sync"]["last_run"]["mode"] == "dry-run"
    assert api.get(f"/api/v1/runs/{run['run_id']}").json()["mode"] == "dry-run"


def test_two_authorization_headers_are_refused(api):
    """Guard and the live tail would each read a different one of them."""
    good, bad = f"Bearer {api.keys['read']}", "Bearer rk_not-a-key"
    for pair in ([good, bad], [bad, good], [good, good]):
        response = api.client.get("/api/v1/jobs", headers=[("Authorization", v) for v in pair])
        assert response.status_code == 400, (pair, response.text)
        assert response.json() == {"error": "send one Authorization header, not several"}


def test_a_body_with_thousands_of_wrong_fields_gets_a_short_422(api):
    body = {"resync": True} | {f"k{i}": 1 for i in range(80_000)}
    response = api.post("/api/v1/jobs/sync/runs", json=body)
    assert response.status_code == 422 and len(response.content) < 10_000
    problems = response.json()["problems"]
    assert len(problems) == 21 and problems[0]["field"] == "k0"
    assert problems[-1] == {"field": "", "message": "and 79980 more problem(s) not listed"}


def test_a_run_id_of_5000_characters_is_a_json_404(api):
    services.run(api.project.ws, "sync")  # a history folder with a job's runs to look in
    for path in ("/api/v1/runs/{}", "/api/v1/runs/{}/log", "/api/v1/runs/{}/log/stream"):
        response = api.get(path.format("2" * 5000))
        assert response.status_code == 404 and "no run" in response.json()["error"], response.text


def test_serving_beyond_loopback_is_warned_about(project):
    from runner.api.server import exposure_warning

    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        assert exposure_warning(host) is None
    for host in ("0.0.0.0", "::", "192.0.2.1", "example.org"):
        assert "plain HTTP" in (exposure_warning(host) or "")
    # 192.0.2.1 is on no machine (TEST-NET-1): the bind fails after the warning
    services.apply(project.ws)  # a folder with a state store, which `serve` reads
    result = runner_cli(project.root, "serve", "--http", "192.0.2.1:8080")
    assert result.returncode == 1 and "cannot serve HTTP on 192.0.2.1:8080" in result.stderr
    assert "warning: serving plain HTTP on 192.0.2.1, beyond this machine" in result.stderr


def test_an_unexpected_error_is_a_json_500(api, project):
    broken = project.ws.history / "default" / "sync" / "20990101T000000.000-abcdef.json"
    broken.parent.mkdir(parents=True, exist_ok=True)
    broken.write_text("{not json")
    with TestClient(create_app(project.ws, api.daemon), raise_server_exceptions=False) as client:
        response = client.get(f"/api/v1/runs/{broken.stem}", headers=api.auth("read"))
    assert response.status_code == 500 and response.headers["content-type"] == "application/json"
    assert response.json() == {"error": "internal error (JSONDecodeError); the server's log has the details"}


def test_an_adhoc_runs_unknown_field_gets_did_you_mean(api):
    task = {"name": "t", "read": {"table": "items"}, "write": {"table": "x"}}
    spec = {"source": "src", "target": "dst", "tasks": [task]}
    bad = api.post("/api/v1/runs", json={"name": "x", "spec": spec | {"shedule": {}}})
    assert bad.status_code == 422 and bad.json()["field"] == "spec.shedule"
    assert bad.json()["error"] == "unknown field 'shedule' (hint: did you mean 'schedule'?)"
    assert bad.json()["problems"][0]["hint"] == "did you mean 'schedule'?"
    typo = api.post("/api/v1/jobs/sync/runs", json={"resyns": True})
    assert typo.json()["error"] == "unknown field 'resyns' (hint: did you mean 'resync'?)"


def test_adhoc_runs_off_is_said_before_the_body_is_checked(api, project):
    with TestClient(create_app(project.ws, api.daemon)) as off:
        for body in ({"name": "x", "spec": {"shedule": 1}}, {}, {"name": "Not A Name"}):
            refused = off.post("/api/v1/runs", json=body, headers=api.auth("operate"))
            assert refused.status_code == 403 and "--allow-adhoc" in refused.json()["error"], refused.text


READER_WRITER = """
apiVersion: runner/v1
kind: Connection
metadata: {name: logs}
spec: {type: files, path: logs}
---
apiVersion: runner/v1
kind: Job
metadata: {name: reader}
spec:
  source: src
  change_log: {connection: logs}
  tasks: [{name: items, read: {table: items}, write: {keys: [id]}, changes: {strategy: hash}}]
---
apiVersion: runner/v1
kind: Job
metadata: {name: writer}
spec:
  source: {job: reader}
  target: dst
  tasks: [{name: items, read: {table: items}, write: {table: items_applied, keys: [id]}}]
"""


def test_connections_list_reader_and_writer_jobs(read_only_api):
    """A reader has no target and a writer's source is a job, not a connection: the
    connections listing (as the demo's shop-changes jobs have them) names who uses what."""
    api = read_only_api
    api.project.write("jobs.d/changelogs.yaml", READER_WRITER)
    services.apply(api.project.ws)
    listed = api.get("/api/v1/connections")
    assert listed.status_code == 200, listed.text
    used_by = {c["connection"]: c["used_by"] for c in listed.json()}
    assert used_by["default/src"] == ["default/after", "default/reader", "default/sync"]
    assert used_by["default/dst"] == ["default/after", "default/sync", "default/writer"]
    assert used_by["default/logs"] == ["default/reader"]
    one = api.get("/api/v1/connections/logs")
    assert one.status_code == 200 and one.json()["used_by"] == ["default/reader"]
