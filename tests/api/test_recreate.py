"""The API's run request with `recreate`: the job's tables dropped and loaded whole, once."""

from __future__ import annotations

import sqlite3

from runner import services
from tests.api.test_api import wait_run


def dst_columns(api, table: str) -> list[str]:
    with sqlite3.connect(api.project.root / "dst.db") as db:
        return [r[1] for r in db.execute(f"PRAGMA table_info({table})")]


def test_a_run_request_with_recreate_drops_and_reloads_once(api):
    assert services.run(api.project.ws, "sync")["status"] == "succeeded"
    with sqlite3.connect(api.project.root / "dst.db") as db:
        db.execute("ALTER TABLE items ADD COLUMN by_hand INTEGER")
    started = api.post("/api/v1/jobs/sync/runs", json={"recreate": True, "tasks": ["items"]})
    assert started.status_code == 202
    record = wait_run(api, started.json()["run_id"])
    assert record["status"] == "succeeded" and record["options"]["recreate"] is True
    (task,) = record["tasks"]
    assert task["before_run"] == "recreate" and task["inserted"] == task["rows_read"] > 0
    assert "by_hand" not in dst_columns(api, "items")
    again = wait_run(api, api.post("/api/v1/jobs/sync/runs", json={"tasks": ["items"]}).json()["run_id"])
    assert again["tasks"][0]["before_run"] is None and again["tasks"][0]["inserted"] == 0
    refused = api.post("/api/v1/jobs/sync/runs", json={"recreate": "yes"})
    assert refused.status_code == 422
