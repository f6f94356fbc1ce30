"""A run cut short by kill -9, whoever started it: its record says what the target had
committed, and the daemon's next start runs it again (README: "Schedule")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from runner import services
from tests.daemon.conftest import BATCH, ROWS, job_yaml, rows_of

TWO_TASKS = """
- name: items
  read: {table: items}
  write: {table: items, keys: [id]}
  changes: {strategy: watermark, column: seq}
- name: other
  read: {table: items}
  write: {table: other, keys: [id]}
  changes: {strategy: watermark, column: seq}
"""


def start_cli_run(root: Path, *args: str, pause: Path | None = None) -> subprocess.Popen[str]:
    """`runner run sync` in a process of its own; with `pause`, it stops at the fourth batch
    read (three read, at least two committed and recorded) and creates that file."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RUNNER_")}
    environ["RUNNER_BATCH_DELAY"] = "0.1"
    if pause is not None:
        environ |= {"RUNNER_PAUSE_AT": "read#4", "RUNNER_PAUSE_FILE": str(pause)}
    return subprocess.Popen(
        [sys.executable, "-m", "runner", "--dir", str(root), "run", "sync", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=environ,
    )


def kill_when_paused(proc: subprocess.Popen[str], pause: Path, target: Path) -> int:
    """kill -9 the run once it has paused (so the kill never lands between a commit and the
    log line the record counts from); the rows the target then holds."""
    deadline = time.monotonic() + 30
    while not pause.exists():
        assert proc.poll() is None, "the run ended before it paused"
        assert time.monotonic() < deadline, "the run never paused"
        time.sleep(0.02)
    proc.kill()
    proc.wait(10)
    return len(rows_of(target))


def test_a_killed_cli_run_says_what_it_committed_and_the_daemon_runs_it_again(daemon_project):
    p = daemon_project
    p.write("jobs.d/sync.yaml", job_yaml("sync", TWO_TASKS))
    services.apply(p.ws)
    pause = p.root / "paused"
    proc = start_cli_run(p.root, "--task", "items", pause=pause)
    written = kill_when_paused(proc, pause, p.root / "dst.db")
    assert 2 * BATCH <= written < ROWS

    killed = services.runs(p.ws, "sync")[0]
    assert killed["status"] == "interrupted"
    assert killed["rows_written"] == written and killed["rows_read"] >= written
    (task,) = killed["tasks"]
    assert task["name"] == "items" and task["status"] == "interrupted" and task["inserted"] == written

    d = p.start()
    rerun = d.wait_for(lambda e: e["event"] == "running once to catch up")
    assert rerun["reason"] == f"catch-up: run {killed['run_id']} was interrupted"
    d.wait_for(lambda e: e["event"] == "run succeeded")
    assert d.stop() == 0
    runs = services.runs(p.ws, "sync")
    assert [r["status"] for r in runs] == ["succeeded", "interrupted"]
    assert runs[0]["options"] == {"tasks": ["items"]}  # the same tasks, no more
    assert runs[0]["tasks"][0]["inserted"] == ROWS - written  # resumed from the pointer
    assert rows_of(p.root / "src.db") == rows_of(p.root / "dst.db")
    on_disk = json.loads(Path(killed["path"]).read_text())
    assert on_disk["status"] == "interrupted" and on_disk["rows_written"] == written


def test_a_killed_dry_run_is_not_run_again(daemon_project):
    p = daemon_project
    p.write("jobs.d/sync.yaml", job_yaml("sync"))
    services.apply(p.ws)
    proc = start_cli_run(p.root, "--dry-run")
    deadline = time.monotonic() + 30
    while not services.runs(p.ws, "sync") and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.kill()
    proc.wait(10)
    assert services.runs(p.ws, "sync")[0]["status"] == "interrupted"
    d = p.start()
    d.wait_for(lambda e: e["event"] == "daemon started")
    time.sleep(1.5)
    assert d.stop() == 0
    assert not d.matching("running once to catch up")
    assert [r["status"] for r in services.runs(p.ws, "sync")] == ["interrupted"]
