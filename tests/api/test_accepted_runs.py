"""A run accepted with 202 always resolves: it is recorded as queued when accepted, and its
record says why when it never starts (the daemon stopped, the job vanished, the process that
accepted it died); a run that cannot be recorded is not accepted."""

from __future__ import annotations

import subprocess
import sys
import time

from fastapi.testclient import TestClient

from runner import services
from runner.api.app import create_app
from runner.daemon.logs import DaemonLog
from runner.daemon.main import Daemon, DaemonOptions
from tests.api.conftest import Api, make_api_project


def api_with(project, ws: services.Workspace, keys: dict[str, str], workers: int) -> tuple[Api, Daemon]:
    daemon = Daemon(ws, DaemonOptions(workers=workers, watch=False), log=DaemonLog(as_json=True))
    client = TestClient(create_app(ws, daemon))
    return Api(project, client, daemon, keys), daemon


def test_a_run_waiting_for_a_worker_when_the_daemon_stops_says_it_never_started(project, monkeypatch):
    keys = make_api_project(project, monkeypatch)
    monkeypatch.setenv("RUNNER_BATCH_DELAY", "0.1")  # sync: 20 batches, about two seconds
    api, daemon = api_with(project, project.ws, keys, workers=1)
    first = api.post("/api/v1/jobs/sync/runs")
    assert first.status_code == 202
    waiting = api.post("/api/v1/jobs/after/runs")  # no free worker: it waits
    assert waiting.status_code == 202
    run_id = waiting.json()["run_id"]
    queued = api.get(f"/api/v1/runs/{run_id}")
    assert queued.status_code == 200 and queued.json()["status"] == "queued"
    assert queued.json()["trigger"].startswith("api (key operate-key)")

    daemon.executor.stop()  # SIGTERM: nothing new starts, the run going on is cancelled
    daemon.executor.cancel_all("cancelled: the daemon is stopping")
    daemon.executor.shutdown(wait=True)
    record = api.get(f"/api/v1/runs/{run_id}").json()
    assert record["status"] == "not_started"
    assert record["error"] in ("the daemon is stopping", "the daemon stopped before a worker was free")
    assert api.get(f"/api/v1/runs/{first.json()['run_id']}").json()["status"] == "cancelled"


def test_a_run_whose_process_died_before_it_started_reads_not_started(project, monkeypatch):
    make_api_project(project, monkeypatch)
    code = (
        "from pathlib import Path; from runner import services; from runner.changes.task import RunOptions;"
        f"services.record_queued(services.Workspace(Path({str(project.root)!r})), 'default/sync', "
        "'20260101T000000.000-abcdef', 'api (key k)', RunOptions())"
    )
    subprocess.run([sys.executable, "-c", code], check=True)  # accepted, then the process ended
    record = services.run_record(project.ws, "20260101T000000.000-abcdef")
    assert record["status"] == "not_started"
    assert record["error"] == "the daemon stopped before the run started"


def test_a_run_that_cannot_be_recorded_is_not_accepted(project, monkeypatch, tmp_path):
    keys = make_api_project(project, monkeypatch)
    (tmp_path / "a-file").write_text("")
    ws = services.Workspace(project.root, history_dir=tmp_path / "a-file" / "history")
    api, daemon = api_with(project, ws, keys, workers=1)
    answer = api.post("/api/v1/jobs/sync/runs")
    assert answer.status_code == 503 and answer.headers["content-type"] == "application/json"
    assert answer.json()["error"].startswith(f"the history folder {tmp_path / 'a-file' / 'history'}")
    assert "cannot be written" in answer.json()["error"] and "run_id" not in answer.json()
    time.sleep(0.2)
    assert daemon.executor.idle()
    daemon.executor.shutdown()
    ws.close()


def test_a_run_accepted_before_the_store_was_deleted_says_why_it_never_started(project, monkeypatch):
    keys = make_api_project(project, monkeypatch)
    monkeypatch.setenv("RUNNER_BATCH_DELAY", "0.1")
    api, daemon = api_with(project, project.ws, keys, workers=1)
    assert api.post("/api/v1/jobs/sync/runs").status_code == 202
    waiting = api.post("/api/v1/jobs/after/runs")
    assert waiting.status_code == 202
    (project.root / ".runner" / "state.db").unlink()  # while it waits for the worker
    deadline = time.monotonic() + 30
    while not daemon.executor.idle() and time.monotonic() < deadline:
        time.sleep(0.1)
    record = services.run_record(project.ws, waiting.json()["run_id"])
    assert record["status"] == "not_started"
    assert record["error"].startswith("the state store cannot be used")
    daemon.executor.shutdown()
