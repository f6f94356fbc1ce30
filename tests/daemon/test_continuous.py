"""A continuous consuming job in a real `runner daemon` subprocess, on the RabbitMQ of this
machine: messages published over time reach the target within the latency bound (generous: the
machine is shared), nothing is lost when the daemon is killed -9 mid-stream and started again,
suspend stops the run and resume starts it, a failing run is started again after a backoff, and
the daemon stops it cleanly. Timings are bounds a loaded machine meets, not measurements."""

from __future__ import annotations

import json
import signal
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runner import services
from runner.errors import DefinitionsInvalid
from tests.conftest import rabbitmq_connection
from tests.daemon.conftest import runner_cli

ARRIVE = (
    60.0  # seconds a message may take to reach the target on a loaded machine (bound: 1 s + a run's start)
)


@pytest.fixture
def queue() -> Iterator[tuple[str, Callable[[int, str], None], Callable[[], int]]]:
    """A fresh queue; how to publish `{"id", "note"}` to it; how many messages wait in it."""
    connection = rabbitmq_connection()
    channel = connection.channel()
    name = f"runner-continuous-{uuid.uuid4().hex[:12]}"
    channel.queue_declare(name)
    lock = threading.Lock()

    def publish(id_: int, note: str) -> None:
        with lock:
            channel.basic_publish("", name, json.dumps({"id": id_, "note": note}).encode())

    def waiting() -> int:
        with lock:
            return channel.queue_declare(name, passive=True).method.message_count

    yield name, publish, waiting
    channel.queue_delete(name)
    connection.close()


def _define(project, queue: str, read: dict[str, Any] | None = None, continuous: str = "") -> None:
    head = "apiVersion: runner/v1\nkind: Connection\nmetadata: {name: %s}\n"
    project.write("connections.d/mq.yaml", head % "mq" + 'spec: {type: rabbitmq, host: "127.0.0.1"}\n')
    if not (project.root / "connections.d" / "c.yaml").exists():  # daemon_project's has dst
        project.write(
            "connections.d/dst.yaml", head % "dst" + 'spec: {type: sqlite, url: "sqlite:///dst.db"}\n'
        )
    task = {
        "name": "orders",
        "read": {
            "queue": queue,
            "columns": {"id": "bigint", "note": "text"},
            "max_wait": "0.5s",
            **(read or {}),
        },
        "write": {"table": "orders", "keys": ["id"]},
        "changes": {"strategy": "messages"},
    }
    settings = continuous or "{max_latency: 1s, backoff: 1s, max_delay: 4s}"
    project.job(
        "orders", "mq", "dst", f"- {json.dumps(task)}", extra=f"  batch_size: 20\n  continuous: {settings}\n"
    )


def _rows(root: Path) -> dict[int, str]:
    try:
        with sqlite3.connect(root / "dst.db") as db:
            return dict(db.execute("SELECT id, note FROM orders").fetchall())
    except sqlite3.OperationalError:  # the table is made by the first batch
        return {}


def _until(check: Callable[[], bool], timeout: float = ARRIVE) -> float:
    """Seconds until `check` held; fails after `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(0.05)
    pytest.fail(f"not within {timeout} s")


def test_messages_arrive_while_they_come_and_a_killed_daemon_loses_none(daemon_project, queue):
    p = daemon_project
    name, publish, waiting = queue
    _define(p, name)
    daemon = p.start()
    daemon.wait_for(lambda e: e["event"] == "run started" and e.get("trigger") == "continuous")
    expected: dict[int, str] = {}
    for wave in range(3):  # published over time, each wave arrives while the run goes on
        for i in range(1, 6):
            publish(wave * 10 + i, f"wave {wave}")
            expected[wave * 10 + i] = f"wave {wave}"
        _until(lambda: _rows(p.root) == expected)
        time.sleep(0.3)
    assert len(daemon.matching("run started")) == 1  # one run, going on

    info = services.status(p.ws)
    (job,) = info["jobs"]
    assert job["continuous"]["max_latency"] == "1s" and job["running"] is not None
    assert job["messages_lag"] == [{"task": "orders", "messages_waiting": 0}]
    shown = runner_cli(p.root, "status")
    assert "continuous (max latency 1s)" in shown.stdout and "orders: 0 messages waiting" in shown.stdout, (
        shown
    )

    # a stream published while the daemon is killed -9 and started again: each id once, none lost
    stream = list(range(1000, 1400))
    done = threading.Event()

    def produce() -> None:
        for i in stream:
            publish(i, f"stream {i}")
            time.sleep(0.005)
        done.set()

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        _until(lambda: any(i >= 1000 for i in _rows(p.root)))
        daemon.proc.kill()
        daemon.proc.wait(10)
    finally:
        producer.join()
    expected.update({i: f"stream {i}" for i in stream})
    assert len(_rows(p.root)) < len(expected)  # killed mid-stream
    again = p.start()
    again.wait_for(lambda e: e["event"] == "run started" and e.get("trigger") == "continuous")
    _until(lambda: _rows(p.root) == expected)
    _until(lambda: waiting() == 0)  # every message acknowledged once committed

    assert again.stop(signal.SIGTERM, timeout=60) == 0  # stops at once, not after the grace
    assert again.matching("stopping a continuous run", reason="the daemon is stopping")
    assert not again.matching("running once to catch up")  # the continuous run is the one to go on
    assert services.runs(p.ws, "orders")[-1]["status"] == "interrupted"  # the killed one
    newest = services.runs(p.ws, "orders")[0]
    assert newest["status"] == "cancelled" and newest["trigger"] == "continuous"
    assert _rows(p.root) == expected


def test_suspend_stops_the_run_and_resume_starts_it_again(daemon_project, queue):
    p = daemon_project
    name, publish, waiting = queue
    _define(p, name)
    daemon = p.start()
    daemon.wait_for(lambda e: e["event"] == "run started" and e.get("trigger") == "continuous")
    assert runner_cli(p.root, "suspend", "orders").returncode == 0
    daemon.wait_for(
        lambda e: e["event"] == "stopping a continuous run" and e["reason"] == "the job is suspended"
    )
    daemon.wait_for(lambda e: e["event"] == "run cancelled")
    for i in range(1, 4):
        publish(i, "while suspended")
    time.sleep(1.5)
    assert waiting() == 3 and _rows(p.root) == {}
    assert runner_cli(p.root, "resume", "orders").returncode == 0
    _until(lambda: _rows(p.root) == {i: "while suspended" for i in range(1, 4)})
    assert daemon.stop() == 0


def test_a_failing_run_starts_again_after_a_backoff(daemon_project, queue):
    p = daemon_project
    _define(p, f"runner-missing-{uuid.uuid4().hex[:8]}")  # no such queue: each run fails
    daemon = p.start()
    first = daemon.wait_for(lambda e: e["event"] == "continuous run starts again after a backoff")
    second = daemon.wait_for(
        lambda e: (
            e["event"] == "continuous run starts again after a backoff" and e["seconds"] > first["seconds"]
        )
    )
    assert (first["seconds"], second["seconds"]) == (1.0, 2.0)  # the backoff doubles
    assert daemon.stop() == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("  schedule: {cron: '* * * * *'}\n", "leave 'schedule' out"),
        ("  retry: {attempts: 3}\n", "leave 'retry' out"),
    ],
)
def test_a_continuous_job_is_checked(project, extra, message):
    _define(project, "q")
    path = project.root / "jobs.d" / "orders.yaml"
    path.write_text(path.read_text().replace("  batch_size: 20\n", "  batch_size: 20\n" + extra))
    with pytest.raises(DefinitionsInvalid) as info:
        services.validate(project.ws)
    (problem,) = info.value.problems
    assert problem.location.field == "spec.continuous" and message in problem.message


def test_a_continuous_job_has_one_consuming_task(project):
    project.connection("src", "sqlite", "sqlite:///src.db")
    project.connection("dst", "sqlite", "sqlite:///dst.db")
    task = "- {name: t, read: {table: a}, write: {table: b, keys: [id]}}"
    project.job("j", "src", "dst", task, extra="  continuous: {max_latency: 2s}\n")
    with pytest.raises(DefinitionsInvalid) as info:
        services.validate(project.ws)
    (problem,) = info.value.problems
    assert problem.location.field == "spec.tasks[0].changes.strategy"
    assert "a continuous job's task consumes a broker" in problem.message


def test_the_supervisor_backs_off_after_failures_and_restarts_at_once_what_it_stopped():
    from runner.daemon.continuous import Supervisor

    spec = {"continuous": {"max_latency": "2s", "backoff": 1, "max_delay": 8}, "tasks": []}
    s = Supervisor()
    assert s.set_jobs({"default/a": spec, "default/cron": {"schedule": {"cron": "* * * * *"}}}) == set()
    (request,) = s.due(0.0, busy=[], held=set())
    assert (request.job, request.trigger, request.options.continuous) == ("default/a", "continuous", 2.0)
    s.running.add("default/a")
    assert s.due(0.0, busy=["default/a"], held=set()) == []
    assert [s.ended("default/a", "failed", 3.0, 10.0) for _ in range(5)] == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert s.due(17.9, busy=[], held=set()) == [] and len(s.due(18.0, busy=[], held=set())) == 1
    assert s.ended("default/a", "failed", 60.0, 20.0) == 1.0  # ran well for long: the count starts again
    assert s.held({"default/a"}, paused=False) == []  # not running now
    s.running.add("default/a")
    assert s.held({"default/a"}, paused=False) == [("default/a", "the job is suspended")]
    assert s.set_jobs({"default/a": {**spec, "batch_size": 5}}) == {"default/a"}  # changed
    s.stop("default/a")
    assert s.ended("default/a", "cancelled", 1.0, 30.0) == 0.0 and len(s.due(30.0, busy=[], held=set())) == 1
    assert s.set_jobs({}) == {"default/a"} and s.due(40.0, busy=[], held=set()) == []
