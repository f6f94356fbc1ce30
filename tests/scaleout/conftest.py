"""A cluster on loopback: `runner daemon --executor celery` and `runner worker` subprocesses
over a real broker (RabbitMQ or Redis), with a private PostgreSQL database as the state store,
a queue of their own, and SQLite sources and targets in a shared folder."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runner import services
from tests.conftest import _unreachable

BROKERS = {
    "rabbitmq": os.environ.get("RUNNER_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672//"),
    "redis": os.environ.get("RUNNER_TEST_REDIS_BROKER", "redis://127.0.0.1:6379/0"),
}
LEASE = "6"  # seconds: a killed worker's run (and a killed scheduler) is taken over this soon
ROWS, BATCH = 60, 10


class Proc:
    """A runner subprocess whose stderr (JSON lines) goes to a file the test reads."""

    def __init__(self, root: Path, name: str, args: list[str], env: dict[str, str]):
        self.name = name
        self.log_path = root / f"{name}.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runner", "--dir", str(root), *args],
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            env=env,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # Celery's own lines
        return out

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 30) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode


def wait_until(what: str, check: Callable[[], Any], timeout: float, procs: list[Proc]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    logs = "\n".join(f"--- {p.name}\n{p.log_path.read_text()[-3000:]}" for p in procs)
    pytest.fail(f"timed out waiting for {what}\n{logs}")


def broker_reachable(url: str) -> None:
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:  # noqa: BLE001 - any failure to reach it is a skip
        _unreachable(f"broker {url.split('@')[-1]}", exc)


def delete_queue(url: str, queue: str) -> None:
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=3) as conn:
            conn.default_channel.queue_delete(queue)
    except Exception:  # noqa: BLE001, S110 - already gone
        pass


class Cluster:
    def __init__(self, root: Path, state: str, broker: str):
        self.root = root
        self.state = state
        self.broker = broker
        self.queue = f"runner-test-{uuid.uuid4().hex[:10]}"
        self.procs: list[Proc] = []
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RUNNER_")} | {
            "RUNNER_STATE": state,
            "RUNNER_BROKER": broker,
            "RUNNER_LEASE_SECONDS": LEASE,
            "RUNNER_BATCH_DELAY": "0.1",  # a run takes about a second: long enough to be cut
        }
        self.ws = services.Workspace(root, state_url=state)

    def jobs(self, count: int, cron: str, pause: float = 0) -> list[str]:
        """`count` jobs, each a SQLite source of its own to a target of its own on `cron`; with
        `pause`, each run first sleeps that long (a `before` event), so that runs are going on
        when the test strikes."""
        (self.root / "jobs.d").mkdir(parents=True, exist_ok=True)
        (self.root / "connections.d").mkdir(parents=True, exist_ok=True)
        names = [f"job{i:02}" for i in range(count)]
        docs = []
        for name in names:
            with sqlite3.connect(self.root / f"{name}-src.db") as db:
                db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, seq INTEGER NOT NULL, v TEXT)")
                db.executemany(
                    "INSERT INTO items VALUES (?, ?, ?)", [(i, i, f"v{i}") for i in range(1, ROWS + 1)]
                )
            for end in ("src", "dst"):
                docs.append(
                    f"apiVersion: runner/v1\nkind: Connection\nmetadata: {{name: {name}-{end}}}\n"
                    f'spec: {{type: sqlite, url: "sqlite:///{name}-{end}.db"}}\n'
                )
            (self.root / "jobs.d" / f"{name}.yaml").write_text(
                f"apiVersion: runner/v1\nkind: Job\nmetadata: {{name: {name}}}\nspec:\n"
                f"  source: {name}-src\n  target: {name}-dst\n  batch_size: {BATCH}\n"
                f'  schedule: {{cron: "{cron}"}}\n'
                + (f'  events: {{before: [{{command: [sleep, "{pause}"]}}]}}\n' if pause else "")
                + "  tasks:\n"
                "    - {name: items, read: {table: items}, write: {table: items, keys: [id]},"
                " changes: {strategy: watermark, column: seq}}\n"
            )
        (self.root / "connections.d" / "all.yaml").write_text("---\n".join(docs))
        return names

    def grow(self, names: list[str], step: int) -> None:
        """New source rows, so that every run has something to copy."""
        for name in names:
            with sqlite3.connect(self.root / f"{name}-src.db", timeout=30) as db:
                top = db.execute("SELECT max(id) FROM items").fetchone()[0]
                db.executemany(
                    "INSERT INTO items VALUES (?, ?, ?)",
                    [(i, i, f"v{i}") for i in range(top + 1, top + step + 1)],
                )

    def daemon(self, *args: str) -> Proc:
        n = sum(p.name.startswith("daemon") for p in self.procs) + 1
        args_ = ["daemon", "--executor", "celery", "--broker", "${env:RUNNER_BROKER}", "--queue", self.queue]
        args_ += ["--standby", "--poll", "0.2", "--no-watch", *args]
        proc = Proc(self.root, f"daemon{n}", args_, self.env)
        self.procs.append(proc)
        return proc

    def worker(self, concurrency: int = 2) -> Proc:
        n = sum(p.name.startswith("worker") for p in self.procs) + 1
        args = ["worker", "--broker", "${env:RUNNER_BROKER}", "--queue", self.queue, "-c", str(concurrency)]
        proc = Proc(self.root, f"worker{n}", args, self.env)
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.procs:
            proc.stop(timeout=15)
        self.ws.close()
        delete_queue(self.broker, self.queue)


@pytest.fixture(params=sorted(BROKERS))
def cluster(request, tmp_path, pg_url) -> Iterator[Cluster]:
    broker = BROKERS[request.param]
    broker_reachable(broker)
    c = Cluster(tmp_path / "cluster", pg_url.replace("postgresql+psycopg://", "postgresql://"), broker)
    c.root.mkdir()
    yield c
    c.close()


@pytest.fixture
def rabbit_cluster(tmp_path, pg_url) -> Iterator[Cluster]:
    """One broker is enough where the broker is not what is tested."""
    broker_reachable(BROKERS["rabbitmq"])
    c = Cluster(
        tmp_path / "cluster", pg_url.replace("postgresql+psycopg://", "postgresql://"), BROKERS["rabbitmq"]
    )
    c.root.mkdir()
    yield c
    c.close()
