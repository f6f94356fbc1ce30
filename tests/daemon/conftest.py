"""A real `runner daemon` subprocess on a temporary folder, and a SQLite job for it to run."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runner import services
from tests.conftest import TWO_SQLITE

ROWS, BATCH = 200, 10
WATERMARK = """
- name: items
  read: {table: items}
  write: {table: items, keys: [id]}
  changes: {strategy: watermark, column: seq}
"""


def make_source(root: Path, tables: tuple[str, ...] = ("items",), rows: int = ROWS) -> None:
    with sqlite3.connect(root / "src.db") as db:
        for table in tables:
            db.execute(
                f"CREATE TABLE IF NOT EXISTS {table} (id INTEGER PRIMARY KEY, seq INTEGER NOT NULL, v TEXT)"
            )
            db.executemany(
                f"INSERT OR REPLACE INTO {table} VALUES (?, ?, ?)",
                [(i, i, f"v{i}") for i in range(1, rows + 1)],
            )


def rows_of(db_file: Path, table: str = "items") -> list[tuple]:
    with sqlite3.connect(db_file) as db:
        return db.execute(f"SELECT id, seq, v FROM {table} ORDER BY id").fetchall()


def job_yaml(name: str, tasks: str = WATERMARK, extra: str = "") -> str:
    body = "\n".join("    " + line for line in tasks.strip("\n").splitlines())
    return (
        f"apiVersion: runner/v1\nkind: Job\nmetadata: {{name: {name}}}\nspec:\n"
        f"  source: src\n  target: dst\n  batch_size: {BATCH}\n{extra}  tasks:\n{body}\n"
    )


def seed_missed_slot(ws: services.Workspace, job: str, ago: dt.timedelta = dt.timedelta(days=800)) -> None:
    """Stand in for downtime: the job's last fired slot lies in the past, so the daemon finds
    a missed slot at start (instead of the test waiting for the wall clock)."""
    slot = dt.datetime.now(dt.UTC) - ago
    ws.store().switches.set_schedule_mark("default", job, slot.isoformat())


class Daemon:
    """`runner daemon` in a subprocess, its JSON log lines in a file the test reads."""

    count = 0

    def __init__(self, root: Path, *args: str, env: dict[str, str] | None = None):
        Daemon.count += 1
        self.root = root
        self.log_path = root / f"daemon-{Daemon.count}.log"
        self._log = self.log_path.open("w")
        cmd = [sys.executable, "-m", "runner", "--dir", str(root), "daemon"]
        cmd += ["--debounce", "0.2", "--settle", "1", "--poll", "0.2", "--grace", "10", *args]
        environ = {k: v for k, v in os.environ.items() if not k.startswith("RUNNER_")} | (env or {})
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self._log, env=environ)

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"event": "not json", "line": line})
        return out

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 20, after: int = 0
    ) -> dict[str, Any]:
        """The first event (from index `after`) that matches; fails with the log on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events()[after:]:
                if predicate(event):
                    return event
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        pytest.fail(
            f"no such event in the daemon's log (exit {self.proc.poll()}):\n{self.log_path.read_text()}"
        )

    def matching(self, event: str, **fields: Any) -> list[dict[str, Any]]:
        return [
            e for e in self.events() if e["event"] == event and all(e.get(k) == v for k, v in fields.items())
        ]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


@pytest.fixture
def daemon_project(project) -> Iterator[Any]:
    """A folder with two SQLite connections and a source table; `start()` launches daemons
    that are killed at the end of the test whatever happens."""
    project.write("connections.d/c.yaml", TWO_SQLITE)
    make_source(project.root)
    started: list[Daemon] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Daemon:
        d = Daemon(project.root, *args, env=env)
        started.append(d)
        return d

    project.start = start
    yield project
    for d in started:
        d.close()


def runner_cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RUNNER_")}
    return subprocess.run(
        [sys.executable, "-m", "runner", "--dir", str(root), *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
    )
