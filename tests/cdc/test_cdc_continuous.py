"""A continuous cdc job in a real `runner daemon` subprocess, on a private PostgreSQL with
`wal_level=logical`: changes made over time reach the target while the one run goes on, a
daemon killed -9 mid-stream and started again leaves the target equal to the source (nothing
lost, nothing applied twice), and the daemon stops the run cleanly. Timings are generous bounds
a loaded machine meets, not measurements."""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from runner import services
from runner.errors import DefinitionsInvalid
from tests.daemon.conftest import Daemon, runner_cli

ARRIVE = 90.0  # seconds a change may take to reach the target on a loaded machine (bound: 1 s + a start)


def _source(engine: sa.Engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql("SELECT id, n, note FROM items ORDER BY id")]


def _target(root: Path) -> list[tuple]:
    try:
        with sqlite3.connect(root / "dst.db") as db:
            return db.execute("SELECT id, n, note FROM items ORDER BY id").fetchall()
    except sqlite3.OperationalError:  # made by the snapshot
        return []


def _until(check: Callable[[], bool], timeout: float = ARRIVE) -> None:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return
        time.sleep(0.1)
    pytest.fail(f"not within {timeout} s")


@pytest.fixture
def daemons(project) -> Iterator[Callable[[], Daemon]]:
    started: list[Daemon] = []

    def start() -> Daemon:
        started.append(Daemon(project.root))
        return started[-1]

    yield start
    for d in started:
        d.close()


def test_changes_arrive_while_they_come_and_a_killed_daemon_loses_and_doubles_none(project, cdc_url, daemons):
    engine = sa.create_engine(cdc_url, poolclass=sa.NullPool, isolation_level="AUTOCOMMIT")

    def execute(*statements: str) -> None:
        with engine.begin() as conn:
            for sql in statements:
                conn.exec_driver_sql(sql)

    execute(
        "CREATE TABLE items (id int PRIMARY KEY, n int NOT NULL, note text)",
        "INSERT INTO items SELECT g, 0, 'first' FROM generate_series(1, 50) g",
    )
    project.connection("src", "postgresql", cdc_url)
    project.connection("dst", "sqlite", "sqlite:///dst.db")
    project.job(
        "items",
        "src",
        "dst",
        "- {name: items, read: {table: public.items}, write: {table: items, keys: [id]}, "
        "changes: {strategy: cdc}, deletes: propagate}",
        extra="  batch_size: 50\n  continuous: {max_latency: 1s, backoff: 1s, max_delay: 4s}\n",
    )
    daemon = daemons()
    daemon.wait_for(lambda e: e["event"] == "run started" and e.get("trigger") == "continuous", timeout=60)
    _until(lambda: _target(project.root) == _source(engine))  # the snapshot

    for wave in range(3):  # made over time: each wave arrives while the one run goes on
        execute(
            f"INSERT INTO items VALUES ({100 + wave}, {wave}, 'wave')",
            f"UPDATE items SET n = n + 1, note = 'wave {wave}' WHERE mod(id, 5) = {wave}",
            f"DELETE FROM items WHERE id = {10 + wave}",
        )
        _until(lambda: _target(project.root) == _source(engine))
    # a column added while the run goes on: the target follows it, the run goes on in the new shape
    execute("ALTER TABLE items ADD COLUMN extra text", "UPDATE items SET extra = 'x' WHERE id = 2")

    def extra() -> list[tuple]:
        try:
            with sqlite3.connect(project.root / "dst.db") as db:
                return db.execute("SELECT id, extra FROM items WHERE extra IS NOT NULL").fetchall()
        except sqlite3.OperationalError:  # no such column yet
            return []

    _until(lambda: extra() == [(2, "x")])
    assert len(daemon.matching("run started")) == 1  # one run, going on
    shown = runner_cli(project.root, "status")
    assert "continuous (max latency 1s)" in shown.stdout, shown

    # a stream of small transactions while the daemon is killed -9 and started again: every
    # increment once (`n` counts them: one applied twice or lost would show)
    done = threading.Event()

    def produce() -> None:
        for i in range(300):
            execute(
                f"UPDATE items SET n = n + 1 WHERE id = {1 + i % 40}",
                f"INSERT INTO items VALUES ({1000 + i}, {i}, 'stream')",
            )
            time.sleep(0.01)
        done.set()

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        _until(lambda: any(row[0] >= 1000 for row in _target(project.root)))
        daemon.proc.kill()
        daemon.proc.wait(10)
    finally:
        producer.join()
    assert done.is_set()
    assert _target(project.root) != _source(engine)  # killed mid-stream
    again = daemons()
    again.wait_for(lambda e: e["event"] == "run started" and e.get("trigger") == "continuous", timeout=60)
    _until(lambda: _target(project.root) == _source(engine))

    assert again.stop(signal.SIGTERM, timeout=60) == 0
    assert again.matching("stopping a continuous run", reason="the daemon is stopping")
    runs = services.runs(project.ws, "items")
    assert runs[-1]["status"] == "interrupted"  # the killed one
    assert runs[0]["status"] == "cancelled" and runs[0]["trigger"] == "continuous"
    assert _target(project.root) == _source(engine)
    with engine.connect() as conn:  # the slot was confirmed up to what the target holds
        lag = conn.exec_driver_sql(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn) FROM pg_replication_slots"
        ).scalar()
    assert lag is not None and lag < 1_000_000
    engine.dispose()


def test_a_continuous_cdc_job_has_one_task(project):
    """One slot per task, and a run's tasks go one after another: a continuous job (whose task
    never ends) follows one table; each table is a job of its own."""
    project.connection("src", "postgresql", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    project.connection("dst", "sqlite", "sqlite:///dst.db")
    task = "- {name: %s, read: {table: public.%s}, write: {table: %s, keys: [id]}, changes: {strategy: cdc}}"
    extra = "  continuous: {max_latency: 2s}\n"
    project.job("one", "src", "dst", task % ("a", "a", "a"), extra=extra)
    services.validate(project.ws)  # a cdc task may run continuously
    path = project.job(
        "two", "src", "dst", task % ("a", "a", "a") + "\n" + task % ("b", "b", "b"), extra=extra
    )
    with pytest.raises(DefinitionsInvalid) as info:
        services.validate(project.ws)
    (problem,) = info.value.problems
    assert problem.location.field == "spec.continuous" and "has one task" in problem.message
    assert problem.location.file.endswith("two.yaml") and problem.location.line > 0
    path.unlink()
