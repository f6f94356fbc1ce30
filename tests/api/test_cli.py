"""`runner keys` and `runner serve` from the command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx
from typer.testing import CliRunner

from runner.cli.app import app
from tests.api.test_page import free_port
from tests.conftest import TWO_SQLITE


def cli(project, *args):
    return CliRunner().invoke(app, ["--dir", str(project.root), *args])


def test_keys_are_shown_once_and_stored_as_hashes(project):
    assert cli(project, "apply").exit_code == 0  # keys live in the state store apply creates
    created = cli(project, "keys", "create", "ci-bot", "--scope", "operate")
    assert created.exit_code == 0
    key = created.stdout.strip()
    assert key.startswith("rk_") and len(key) == 46
    assert "shown once" in created.stderr
    listed = json.loads(cli(project, "keys", "list", "--format", "json").stdout)
    assert [(k["name"], k["scope"]) for k in listed] == [("ci-bot", "operate")]
    assert key not in cli(project, "keys", "list").stdout
    assert key.encode() not in (project.root / ".runner/state.db").read_bytes()
    again = cli(project, "keys", "create", "ci-bot")
    assert again.exit_code == 1 and "exists" in again.stderr
    assert cli(project, "keys", "create", "Bad Name").exit_code == 1
    assert cli(project, "keys", "create", "x", "--scope", "admin").exit_code == 2
    assert cli(project, "keys", "revoke", "ci-bot").stdout == "key 'ci-bot' revoked\n"
    assert cli(project, "keys", "revoke", "ci-bot").exit_code == 1


def test_serve_answers_reads_and_stops_on_sigterm(project):
    project.write("connections.d/c.yaml", TWO_SQLITE)
    assert cli(project, "apply").exit_code == 0
    key = cli(project, "keys", "create", "viewer").stdout.strip()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNNER_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", "--dir", str(project.root), "serve", "--http", str(port)],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                response = httpx.get(
                    f"http://127.0.0.1:{port}/api/v1/status", headers={"Authorization": f"SharedKey {key}"}
                )
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
                time.sleep(0.1)
        assert response.json()["mode"] == "serve" and response.json()["revision"] == 1
        refused = httpx.post(
            f"http://127.0.0.1:{port}/api/v1/pause", headers={"Authorization": f"Bearer {key}"}
        )
        assert refused.status_code == 403
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0


def test_a_bad_bind_address_is_an_error(project):
    result = cli(project, "serve", "--http", "localhost:http")
    assert result.exit_code == 1 and "expected PORT or HOST:PORT" in result.stderr
