"""`GET /api/v1/jobs/{name}/verify` (a read key) compares; `POST` (an operate key) with
`repair` also writes the differences in a run recorded in the history."""

from __future__ import annotations

import sqlite3

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
