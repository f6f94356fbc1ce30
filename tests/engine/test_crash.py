"""Invariant 1: a `runner run` killed with SIGKILL at any point and run again leaves the
target equal to the source, no row twice, nothing lost.

A real subprocess runs the job with RUNNER_PAUSE_AT set to a checkpoint (see
`runner.streams.checkpoints`): it stops there, the test kills it with SIGKILL, changes the
source, runs the job again to completion and compares every row."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from runner import services
from tests.conftest import REPO

ROWS = 60


def kill_at(project, point: str, tmp_path: Path) -> None:
    flag = tmp_path / f"paused-{point}"
    flag.unlink(missing_ok=True)
    env = {**os.environ, "RUNNER_PAUSE_AT": point, "RUNNER_PAUSE_FILE": str(flag), "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", "--dir", str(project.root), "run", "sync"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while not flag.exists():
        if proc.poll() is not None:
            pytest.fail(f"the run ended before reaching {point}: {proc.stderr.read().decode()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the run never reached {point}")
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()


def sqlite_rows(path: Path, table: str) -> list[tuple]:
    db = sqlite3.connect(path)
    try:
        return db.execute(f"SELECT id, name, updated_at FROM {table} ORDER BY id").fetchall()
    finally:
        db.close()


def write_source(path: Path, first_id: int, count: int, stamp: str) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT, updated_at TIMESTAMP)")
    db.executemany(
        "INSERT OR REPLACE INTO items VALUES (?, ?, ?)",
        [(i, f"row {i} ✓", f"{stamp}.{i:06d}") for i in range(first_id, first_id + count)],
    )
    db.commit()
    db.close()


STRATEGIES = {
    "watermark": "{strategy: watermark, column: updated_at}",
    "hash": "{strategy: hash}",
    "full": "{strategy: full}",
}


@pytest.mark.parametrize("point", ["read", "write", "committed"])
@pytest.mark.parametrize("strategy", ["watermark", "hash", "full"])
def test_sqlite_kill_anywhere_then_rerun(project, tmp_path, strategy, point):
    src, dst = project.root / "src.db", project.root / "dst.db"
    write_source(src, 1, ROWS, "2026-01-01 00:00:00")
    project.connection("src", "sqlite", "sqlite:///src.db")
    project.connection("dst", "sqlite", "sqlite:///dst.db")
    project.job(
        "sync",
        "src",
        "dst",
        f"""
        - name: items
          read: {{table: items}}
          write: {{table: items, keys: [id]}}
          changes: {STRATEGIES[strategy]}
          deletes: propagate
        """,
        extra="  batch_size: 7\n",
    )
    services.apply(project.ws)
    project.ws.close()

    kill_at(project, point, tmp_path)  # the first run dies
    write_source(src, 30, 40, "2026-01-02 00:00:00")  # updates 30..60, inserts 61..69
    db = sqlite3.connect(src)
    db.execute("DELETE FROM items WHERE id IN (3, 4, 64)")
    db.commit()
    db.close()
    kill_at(project, point, tmp_path)  # and the second, after the source moved on

    record = services.run(project.ws, "sync")  # the dead runs' job lock is taken over
    assert record["status"] == "succeeded", record["error"]
    assert sqlite_rows(dst, "items") == sqlite_rows(src, "items")
    again = services.run(project.ws, "sync")
    task = again["tasks"][0]
    assert (task["inserted"], task["updated"], task["deleted"]) == (0, 0, 0)
    assert sqlite_rows(dst, "items") == sqlite_rows(src, "items")


@pytest.mark.parametrize("point", ["write", "committed"])
def test_postgresql_kill_then_rerun_without_keys_replaces_whole(project, pg_url, tmp_path, point):
    """Without keys a task replaces the table in one transaction: killed mid-way, the target
    keeps the previous complete copy; run again, it holds the source exactly once."""
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE src (id int, name text)")
        conn.exec_driver_sql("INSERT INTO src SELECT g, 'row ' || g FROM generate_series(1, 50) g")
    project.connection("db", "postgresql", pg_url)
    project.job(
        "sync",
        "db",
        "db",
        "- {name: copy, read: {table: src}, write: {table: dst}}",
        extra="  batch_size: 7\n",
    )
    services.apply(project.ws)
    assert services.run(project.ws, "sync")["status"] == "succeeded"
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO src SELECT g, 'new ' || g FROM generate_series(51, 80) g")
    project.ws.close()
    kill_at(project, point, tmp_path)
    whole = 50 if point == "write" else 80  # the old copy, or the new one once committed
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*), count(DISTINCT id) FROM dst").one() == (whole, whole)
    assert services.run(project.ws, "sync")["status"] == "succeeded"
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*), count(DISTINCT id) FROM dst").one() == (80, 80)
        diff = (
            "SELECT * FROM src EXCEPT SELECT * FROM dst UNION ALL SELECT * FROM dst EXCEPT SELECT * FROM src"
        )
        assert conn.exec_driver_sql(diff).all() == []
    engine.dispose()
