"""`GET /api/v1/jobs/{name}/verify` (a read key) compares; `POST` (an operate key) with
`repair` also writes the differences in a run recorded in the history."""

from __future__ import annotations

import sqlite3
import time

from runner import services


def test_verify_and_repair_through_the_api(api):
    assert services.run(api.project.ws, "sync")["status"] == "succeeded"
    equal = api.get("/api/v1/jobs/sync/verify", params={"task": "items"})
    assert equal.status_code == 200, equal.text
    assert equal.json()["exit_code"] == 0 and equal.json()["tasks"][0]["status"] == "equal"

    with sqlite3.connect(api.project.root / "dst.db") as db:
        db.execute("DELETE FROM items WHERE id IN (2, 5)")
    found = api.get("/api/v1/jobs/sync/verify", params={"task": "items", "sample": 1}).json()
    assert found["exit_code"] == 2
    assert (found["tasks"][0]["missing"], found["tasks"][0]["samples"]["missing"]) == (2, [2])

    whole = api.get("/api/v1/jobs/sync/verify").json()  # its keyless task cannot be compared
    assert whole["exit_code"] == 1
    assert [t["status"] for t in whole["tasks"]] == ["different", "not_verified"]

    refused = api.post("/api/v1/jobs/sync/verify", key="read", json={"tasks": ["items"], "repair": True})
    assert refused.status_code == 403
    repaired = api.post("/api/v1/jobs/sync/verify", json={"tasks": ["items"], "repair": True})
    assert repaired.status_code == 200, repaired.text
    body = repaired.json()
    assert body["exit_code"] == 0 and body["repair"]["tasks"][0]["inserted"] == 2
    run = api.get(f"/api/v1/runs/{body['repair']['run_id']}").json()
    assert run["options"] == {"tasks": ["items"], "repair": True}
    assert api.get("/api/v1/jobs/sync/verify", params={"task": "items"}).json()["exit_code"] == 0
    assert api.get("/api/v1/jobs/nope/verify").status_code == 404


def test_verifies_at_once_are_bounded_and_the_rest_of_the_api_keeps_answering(project, monkeypatch):
    """Each verify holds a thread of the pool every route shares until it ends: a read key
    sending many (here held up by a writer's lock on the source) would leave none for the
    other routes. Past MAX_VERIFIES a verify is refused with 429 at once."""
    import threading

    import httpx

    from runner.api.app import create_app
    from runner.api.deps import MAX_VERIFIES
    from runner.api.server import HttpServer
    from tests.api.conftest import make_api_project
    from tests.api.test_page import free_port

    keys = make_api_project(project, monkeypatch)
    assert services.run(project.ws, "sync")["status"] == "succeeded"
    port = free_port()
    server = HttpServer(create_app(project.ws, None), "127.0.0.1", port)
    server.start()
    base, auth = f"http://127.0.0.1:{port}/api/v1", {"Authorization": f"Bearer {keys['read']}"}
    writer = sqlite3.connect(project.root / "src.db", isolation_level=None)
    writer.execute("BEGIN EXCLUSIVE")  # readers of the source wait for it
    answers: list[int] = []

    def verify() -> None:
        answers.append(httpx.get(f"{base}/jobs/sync/verify?task=items", headers=auth, timeout=60).status_code)

    held = [threading.Thread(target=verify) for _ in range(MAX_VERIFIES)]
    try:
        for thread in held:
            thread.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _running(server) < MAX_VERIFIES:
            time.sleep(0.05)
        one_more = httpx.get(f"{base}/jobs/sync/verify?task=items", headers=auth, timeout=5)
        assert one_more.status_code == 429, one_more.text
        assert f"{MAX_VERIFIES} verifies are running" in one_more.json()["error"]
        assert httpx.get(f"{base}/jobs/sync", headers=auth, timeout=5).status_code == 200
    finally:
        writer.execute("ROLLBACK")
        writer.close()
        for thread in held:
            thread.join(60)
        server.stop()
    assert answers == [200] * MAX_VERIFIES


def _running(server) -> int:
    """Verifies holding a slot now."""
    from runner.api.deps import MAX_VERIFIES

    slots = getattr(server.server.config.app.state.context, "verifies", None)
    return MAX_VERIFIES - slots._value if slots is not None else MAX_VERIFIES
