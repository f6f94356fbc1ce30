"""What an `operate` key may not do through the API's write-back without a review: add or
change a job's events (a command runs on the daemon's machine; SQL runs on its connections)
or notifications (a webhook resolves secret references and sends them where its URL says).
Ad-hoc runs refuse them for the same reason; a change committed to a review branch carries
them, as a change made by hand does."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from runner import services
from tests.api.conftest import SECRET, git
from tests.api.test_api import wait_run
from tests.api.test_writeback import job


class _Catcher(http.server.BaseHTTPRequestHandler):
    seen: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        length = int(self.headers.get("Content-Length") or 0)
        self.seen.append(f"{self.path} {dict(self.headers)} {self.rfile.read(length).decode()}")
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def catcher() -> Iterator[tuple[str, list[str]]]:
    """A webhook receiver on loopback: what an attacker's server would get."""
    seen: list[str] = []
    handler = type("Catcher", (_Catcher,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def test_an_api_key_cannot_add_a_command_that_the_daemon_runs(git_api):
    root = git_api.project.root
    head = git(root, "rev-parse", "HEAD")
    proof = root / "pwned"
    events = {"before": [{"command": ["touch", str(proof)]}]}
    created = git_api.post("/api/v1/jobs", json=job("pwn", events=events))
    assert created.status_code == 403, created.text
    assert "spec.events" in created.json()["error"] and "?branch=" in created.json()["error"]
    assert created.json()["field"] == "spec.events"
    assert git(root, "rev-parse", "HEAD") == head and not (root / "jobs.d/pwn.yaml").exists()
    replaced = git_api.put("/api/v1/jobs/commented", json=job("commented", events=events))
    assert replaced.status_code == 403, replaced.text
    assert git(root, "rev-parse", "HEAD") == head
    assert "events" not in services.describe(git_api.project.ws, "Job", "commented")["document"]["spec"]
    started = git_api.post("/api/v1/jobs/commented/runs")
    assert started.status_code == 202
    wait_run(git_api, started.json()["run_id"])
    assert not proof.exists()


def test_an_api_key_cannot_send_a_secret_to_a_webhook_of_its_choosing(git_api, catcher):
    root = git_api.project.root
    url, seen = catcher
    hook = {"url": f"{url}/hook", "headers": {"X-Token": "${env:API_TEST_PASSWORD}"}}
    notify = [{"webhook": hook, "when": "always"}]
    created = git_api.post("/api/v1/jobs", json=job("leak", notify=notify))
    assert created.status_code == 403, created.text
    assert created.json()["field"] == "spec.notify"
    assert not (root / "jobs.d/leak.yaml").exists()
    replaced = git_api.put("/api/v1/jobs/commented", json=job("commented", notify=notify))
    assert replaced.status_code == 403, replaced.text
    started = git_api.post("/api/v1/jobs/commented/runs")
    wait_run(git_api, started.json()["run_id"])
    assert not any(SECRET in s for s in seen) and seen == []


def test_for_review_on_a_branch_they_are_committed_and_not_applied(git_api):
    root = git_api.project.root
    events = {"before": [{"command": ["true"]}]}
    response = git_api.post("/api/v1/jobs?branch=review/pwn", json=job("pwn", events=events))
    assert response.status_code == 201, response.text
    assert response.json()["applied"] is False
    assert "command" in git(root, "show", "review/pwn:jobs.d/pwn.yaml")
    assert "pwn" not in [o.name for o in services.get(git_api.project.ws, "Job")]


def test_a_job_whose_events_stay_as_they_were_is_replaced(git_api):
    """A script that replaces a job whole, sending its reviewed events back unchanged, or
    changing its tasks, is not refused; nor is dropping them (nothing runs any more)."""
    root = git_api.project.root
    events = {"after": [{"command": ["true"]}]}
    text = (
        (root / "jobs.d/commented.yaml")
        .read_text()
        .replace("  batch_size: 10", "  events: {after: [{command: ['true']}]}\n  batch_size: 10")
    )
    (root / "jobs.d/commented.yaml").write_text(text)
    git(root, "commit", "-qam", "an after-event, by hand")
    services.apply(git_api.project.ws)
    document = job("commented", events=events, batch_size=30)
    response = git_api.put("/api/v1/jobs/commented", json=document)
    assert response.status_code == 200, response.text
    added = git_api.post(
        "/api/v1/jobs/commented/tasks", json={**job("x")["spec"]["tasks"][0], "name": "four"}
    )
    assert added.status_code == 201, added.text
    changed = git_api.put(
        "/api/v1/jobs/commented", json=job("commented", events={"after": [{"command": ["id"]}]})
    )
    assert changed.status_code == 403, changed.text
    removed = git_api.put("/api/v1/jobs/commented", json=job("commented", batch_size=30))
    assert removed.status_code == 200, removed.text
    assert "events" not in (root / "jobs.d/commented.yaml").read_text()


MASKED = {
    "name": "masked",
    "read": {"table": "items"},
    "write": {"table": "masked", "keys": ["id"]},
    "transforms": [{"type": "mask", "column": "v", "salt": "${env:API_TEST_PASSWORD}"}],
}


def test_an_api_key_cannot_key_digests_with_a_secret_of_its_choosing(git_api):
    """A mask's salt of `${env:DB_PASSWORD}` on a column whose values the key knows would write
    HMACs keyed with that password: guessed at offline. The API adds no secret reference."""
    root = git_api.project.root
    head = git(root, "rev-parse", "HEAD")
    added = git_api.post("/api/v1/jobs/commented/tasks", json=MASKED)
    assert added.status_code == 403, added.text
    assert added.json()["field"] == "spec.tasks[2].transforms[0].salt"
    assert "${env:API_TEST_PASSWORD} is a secret the job did not read" in added.json()["error"]
    created = git_api.post(
        "/api/v1/jobs", json=job("masked") | {"spec": job("masked")["spec"] | {"tasks": [MASKED]}}
    )
    assert created.status_code == 403, created.text
    replaced = git_api.put("/api/v1/jobs/commented/tasks/one", json=MASKED | {"name": "one"})
    assert replaced.status_code == 403, replaced.text
    assert git(root, "rev-parse", "HEAD") == head and not (root / "jobs.d/masked.yaml").exists()
    adhoc = git_api.post(
        "/api/v1/runs", json={"name": "one-off", "spec": job("x")["spec"] | {"tasks": [MASKED]}}
    )
    assert adhoc.status_code == 422, adhoc.text
    assert adhoc.json()["field"] == "spec.tasks[0].transforms[0].salt"
    reviewed = git_api.post("/api/v1/jobs/commented/tasks?branch=review/mask", json=MASKED)
    assert reviewed.status_code == 201, reviewed.text


def test_a_salt_the_job_holds_already_may_be_used_again(git_api):
    root = git_api.project.root
    text = (
        (root / "jobs.d/commented.yaml")
        .read_text()
        .replace(
            "      write: {table: one}\n",
            "      write: {table: one, keys: [id]}\n"
            "      transforms: [{type: mask, column: v, salt: '${env:API_TEST_PASSWORD}'}]\n",
        )
    )
    (root / "jobs.d/commented.yaml").write_text(text)
    git(root, "commit", "-qam", "a masked column, by hand")
    added = git_api.post("/api/v1/jobs/commented/tasks", json=MASKED)
    assert added.status_code == 201, added.text


def test_a_job_moved_to_another_namespace_is_checked_as_a_new_one(git_api):
    """A replaced job may state another namespace: it is then compared with nothing, not let
    through for want of its old name."""
    root = git_api.project.root
    head = git(root, "rev-parse", "HEAD")
    document = job("commented", events={"before": [{"command": ["touch", str(root / "pwned")]}]})
    document["metadata"]["namespace"] = "elsewhere"
    moved = git_api.put("/api/v1/jobs/commented", json=document)
    assert moved.status_code == 403, moved.text
    assert git(root, "rev-parse", "HEAD") == head and not (root / "pwned").exists()
