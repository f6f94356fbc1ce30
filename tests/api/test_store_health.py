"""A state store deleted or corrupted under a running process is noticed: `/status` and the
daemon's log say so, the API answers JSON errors, no run is accepted, and no command creates
a fresh empty store where one was expected (only `apply` into a new folder creates one)."""

from __future__ import annotations

import json
import time

from typer.testing import CliRunner

from runner.api.auth import CACHE_SECONDS
from runner.api.listings import FRESH_SECONDS
from runner.cli.app import app
from tests.daemon import conftest as daemon_fixtures
from tests.daemon.conftest import job_yaml

daemon_project = daemon_fixtures.daemon_project


def cli(project, *args: str):
    return CliRunner().invoke(app, ["--dir", str(project.root), *args])


def test_no_command_creates_a_fresh_store_where_one_was_expected(daemon_project):
    p = daemon_project
    p.write("jobs.d/sync.yaml", job_yaml("sync"))
    db = p.root / ".runner" / "state.db"
    plan = cli(p, "plan", "--detailed-exitcode")  # a new folder: planned against nothing
    assert plan.exit_code == 2 and "create" in plan.stdout and not db.exists()
    assert cli(p, "status").exit_code == 1 and not db.exists()
    assert cli(p, "apply").exit_code == 0 and db.exists()
    assert cli(p, "run", "sync").exit_code == 0
    p.ws.close()
    db.unlink()
    for args in (("status",), ("run", "sync"), ("keys", "list"), ("history", "sync"), ("plan",)):
        result = cli(p, *args)
        assert result.exit_code == 1, args
        assert f"no state store at {db}" in result.stderr and "Traceback" not in result.stderr, args
        assert not db.exists(), args
    applied = cli(p, "apply")  # the history holds runs: the store was expected
    assert applied.exit_code == 1 and "holds runs: the store was expected" in applied.stderr
    assert not db.exists()


def test_a_corrupted_store_is_a_message_not_a_traceback(daemon_project):
    p = daemon_project
    p.write("jobs.d/sync.yaml", job_yaml("sync"))
    assert cli(p, "apply").exit_code == 0
    db = p.root / ".runner" / "state.db"
    db.write_bytes(b"this is not a database" * 100)
    result = cli(p, "status")
    assert result.exit_code == 1 and "the state store cannot be opened" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_api_reports_a_deleted_store_and_accepts_no_run(api):
    db = api.project.root / ".runner" / "state.db"
    assert api.get("/api/v1/status").json()["state_store"] == {"healthy": True, "error": None}
    db.unlink()
    time.sleep(FRESH_SECONDS)  # the listing cached before
    status = api.get("/api/v1/status")
    assert status.status_code == 200
    assert status.json()["state_store"] == {
        "healthy": False,
        "error": f"the state store file {db} was deleted",
    }
    started = api.post("/api/v1/jobs/sync/runs")
    assert started.status_code == 503 and started.headers["content-type"] == "application/json"
    assert started.json()["error"].startswith(f"the state store file {db} was deleted")
    paused = api.post("/api/v1/pause")  # a write into the deleted file
    assert paused.status_code == 503 and "the state store cannot be used" in paused.json()["error"]
    assert not list((api.project.root / ".runner" / "history").glob("*/*/*.json"))


def test_the_api_reports_a_corrupted_store(api):
    db = api.project.root / ".runner" / "state.db"
    with db.open("r+b") as f:  # in place: the same file, garbage in it
        f.write(b"garbage" * 4096)
    time.sleep(CACHE_SECONDS)  # the keys read before: now they cannot be read
    for path in ("/api/v1/status", "/api/v1/jobs/sync/runs", "/api/v1/version"):
        answer = api.get(path)
        assert answer.status_code == 503 and answer.headers["content-type"] == "application/json"
        assert "the state store cannot be used: file is not a database" in answer.json()["error"]


def test_the_daemon_logs_a_deleted_store_and_runs_nothing(daemon_project):
    p = daemon_project
    p.write("jobs.d/sync.yaml", job_yaml("sync", extra='  schedule: {cron: "* * * * * *"}\n'))
    d = p.start()
    d.wait_for(lambda e: e["event"] == "run succeeded")
    (p.root / ".runner" / "state.db").unlink()
    gone = d.wait_for(lambda e: e["event"].startswith("the state store cannot be used"))
    assert gone["level"] == "error" and gone["error"].endswith("state.db was deleted")
    index = d.events().index(gone)
    time.sleep(2)
    assert not [e for e in d.events()[index:] if e["event"] == "run started"]
    assert d.stop() == 0
    assert not (p.root / ".runner" / "state.db").exists()
    assert "Traceback" not in d.log_path.read_text()
    assert json.loads(d.log_path.read_text().splitlines()[-1])["event"] == "daemon stopped"
