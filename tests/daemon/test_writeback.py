"""A real `runner daemon --http` and changes written back to git: a job created through its
API runs at once; a change committed to a branch for review is applied by the daemon when a
human merges it (the watcher sees the merge in the work tree)."""

from __future__ import annotations

import socket
import time

import httpx

from runner import services
from tests.api.conftest import git
from tests.api.test_page import free_port
from tests.daemon.conftest import job_yaml, rows_of


def job(name: str) -> dict:
    task = {"name": "items", "read": {"table": "items"}, "write": {"table": name, "keys": ["id"]}}
    return {"metadata": {"name": name}, "spec": {"source": "src", "target": "dst", "tasks": [task]}}


def test_the_daemon_runs_a_job_made_through_its_api_and_applies_a_merged_review_branch(
    daemon_project, monkeypatch
):
    p = daemon_project
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    p.write("jobs.d/sync.yaml", job_yaml("sync"))
    p.write(".gitignore", ".runner/\n*.db\n*.log\n")
    git(p.root, "init", "-q", "-b", "main")
    git(p.root, "config", "user.name", "Dana Human")
    git(p.root, "config", "user.email", "dana@example.org")
    git(p.root, "add", "-A")
    git(p.root, "commit", "-qm", "the definitions")
    services.apply(p.ws)
    key = services.keys_create(p.ws, "deployer", "operate")
    p.ws.close()
    port = free_port()
    d = p.start("--http", str(port))
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline and d.proc.poll() is None
            time.sleep(0.1)
    api = httpx.Client(base_url=f"http://127.0.0.1:{port}/api/v1", headers={"Authorization": f"Bearer {key}"})

    created = api.post("/jobs", json=job("fresh"), timeout=60)
    assert created.status_code == 201, created.text
    assert created.json()["commit"] == git(p.root, "rev-parse", "HEAD").strip()
    started = api.post("/jobs/fresh/runs", json={}, timeout=60)
    assert started.status_code == 202, started.text
    d.wait_for(lambda e: e["event"] == "run succeeded" and e["job"] == "default/fresh", timeout=60)
    assert rows_of(p.root / "dst.db", "fresh") == rows_of(p.root / "src.db")

    review = api.post("/jobs?branch=review/later", json=job("later"), timeout=60)
    assert review.status_code == 201 and review.json()["applied"] is False
    time.sleep(1.5)  # longer than the daemon's debounce: the branch is not in the work tree
    assert "later" not in [o.name for o in services.get(p.ws, "Job")]
    git(p.root, "merge", "-q", "--ff-only", "review/later")
    d.wait_for(lambda e: e["event"] == "applied" and "create Job default/later" in e["changed"], timeout=60)
    assert (
        git(p.root, "log", "-1", "--format=%an|%s").strip()
        == "runner API key deployer|Create job default/later"
    )
    api.close()
    assert d.stop() == 0
