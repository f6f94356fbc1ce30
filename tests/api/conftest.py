"""The API app on a real folder and state store, with the daemon object that starts runs
(its loop is not running: the tests drive it through the API), and one key per scope."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from runner import services
from runner.api.app import create_app
from runner.daemon.logs import DaemonLog
from runner.daemon.main import Daemon, DaemonOptions
from tests.conftest import TWO_SQLITE
from tests.daemon.conftest import WATERMARK, job_yaml, make_source

SECRET = "pg-S3cret-value-9f2"  # the password behind ${env:API_TEST_PASSWORD}
WAREHOUSE = """
apiVersion: runner/v1
kind: Connection
metadata: {name: warehouse, namespace: team}
spec: {type: postgresql, url: "postgresql://loader:${env:API_TEST_PASSWORD}@127.0.0.1:5432/wh?sslmode=disable"}
"""


class Api:
    def __init__(self, project: Any, client: TestClient, daemon: Daemon | None, keys: dict[str, str]):
        self.project = project
        self.client = client
        self.daemon = daemon
        self.keys = keys

    def auth(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[key]}"}

    def get(self, path: str, key: str = "read", **kwargs: Any) -> Any:
        return self.client.get(path, headers={"Authorization": f"Bearer {self.keys[key]}"}, **kwargs)

    def post(self, path: str, key: str = "operate", **kwargs: Any) -> Any:
        return self.client.post(path, headers={"Authorization": f"SharedKey {self.keys[key]}"}, **kwargs)

    def put(self, path: str, key: str = "operate", **kwargs: Any) -> Any:
        return self.client.put(path, headers={"Authorization": f"Bearer {self.keys[key]}"}, **kwargs)


def make_api_project(project: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("API_TEST_PASSWORD", SECRET)
    project.write("connections.d/c.yaml", TWO_SQLITE)
    project.write("connections.d/team/warehouse.yaml", WAREHOUSE)
    project.write(
        "jobs.d/sync.yaml",
        job_yaml("sync", WATERMARK + "- {name: copy, read: {table: items}, write: {table: items_copy}}\n"),
    )
    project.write("jobs.d/after.yaml", job_yaml("after", extra="  after: [{job: sync}]\n"))
    make_source(project.root)
    services.apply(project.ws)
    return {scope: services.keys_create(project.ws, f"{scope}-key", scope) for scope in ("read", "operate")}


@pytest.fixture
def api(project, monkeypatch) -> Iterator[Api]:
    keys = make_api_project(project, monkeypatch)
    daemon = Daemon(project.ws, DaemonOptions(workers=2, watch=False), log=DaemonLog(as_json=True))
    with TestClient(create_app(project.ws, daemon, allow_adhoc=True)) as client:
        yield Api(project, client, daemon, keys)
    daemon.executor.cancel_all("the test ended")
    daemon.executor.shutdown()


@pytest.fixture
def read_only_api(project, monkeypatch) -> Iterator[Api]:
    keys = make_api_project(project, monkeypatch)
    with TestClient(create_app(project.ws, None)) as client:
        yield Api(project, client, None, keys)


COMMENTED = """\
# the nightly copy: keep the comments
apiVersion: runner/v1
kind: Job
metadata: {name: commented}
spec:
  source: src
  target: dst
  batch_size: 10   # small batches
  tasks:
    # the first task
    - name: one
      read: {table: items}
      write: {table: one}
    # the second task
    - name: two
      read: {table: items}
      write: {table: two}
"""


def git(root: Any, *args: str) -> str:
    """git in the test's folder, with no user or system configuration read."""
    import subprocess

    done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True)
    return done.stdout


@pytest.fixture
def git_api(api: Api, monkeypatch: pytest.MonkeyPatch) -> Api:
    """The API on a folder that is a git work tree with everything committed (the state
    store, history and databases ignored), and a job with comments to edit."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    root = api.project.root
    (root / ".gitignore").write_text(".runner/\n*.db\n*.log\n")
    (root / "jobs.d/commented.yaml").write_text(COMMENTED)
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.name", "Dana Human")
    git(root, "config", "user.email", "dana@example.org")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "the definitions")
    services.apply(api.project.ws)
    return api
