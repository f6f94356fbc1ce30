"""Locks as leases across hosts: a heartbeat renews them, an expired one is taken over (and the
run that held a job's lock is recorded as interrupted), a holder whose lease was taken hears
of it. On SQLite and on the PostgreSQL state store."""

from __future__ import annotations

import datetime as dt
import sqlite3

import pytest
import sqlalchemy as sa

from runner import services
from runner.errors import JobBusy, LockTimeout
from runner.history import files as history
from runner.state import locks, schema
from runner.state.database import utcnow
from runner.state.store import StateStore


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return request.getfixturevalue("pg_url")


def _held_elsewhere(store: StateStore, name: str, expires_in: float, run_id: str | None = None) -> str:
    """A lock as a process on another host took it (its pid means nothing here)."""
    lock_id = "e" * 32
    expires = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=expires_in)).isoformat(timespec="microseconds")
    with store.db.write() as conn:
        conn.execute(
            schema.locks.insert().values(
                name=name,
                lock_id=lock_id,
                holder="runner@other-host pid 4242",
                acquired_at=utcnow(),
                host="other-host.invalid",
                pid=4242,
                run_id=run_id,
                expires_at=expires,
            )
        )
    return lock_id


def test_a_live_lease_on_another_host_is_respected_and_an_expired_one_taken_over(store_url):
    store = StateStore(store_url)
    try:
        _held_elsewhere(store, locks.APPLY, expires_in=60)
        assert store.locks.info(locks.APPLY).alive
        with pytest.raises(LockTimeout, match="other-host"):
            store.locks.acquire(locks.APPLY, timeout=0.2)
        with store.db.write() as conn:  # the other host stopped renewing: its lease runs out
            conn.execute(schema.locks.update().values(expires_at=utcnow()))
        assert [lock.name for lock in store.locks.stale()] == [locks.APPLY]
        taken: list[locks.Lock] = []
        lock_id = store.locks.acquire(locks.APPLY, timeout=0, on_takeover=taken.append)
        assert [t.holder for t in taken] == ["runner@other-host pid 4242"]
        held = store.locks.info(locks.APPLY)
        assert held.lock_id == lock_id and held.alive and held.expires_at > utcnow()
        store.locks.release(locks.APPLY, lock_id)
    finally:
        store.close()


def test_the_heartbeat_renews_a_lease_and_reports_one_taken_over(store_url):
    store = StateStore(store_url)
    try:
        lost: list[str] = []
        store.locks.acquire(locks.DAEMON, timeout=0, on_lost=lambda: lost.append("lost"))
        with store.db.write() as conn:  # as if the lease had nearly run out
            conn.execute(schema.locks.update().values(expires_at=utcnow()))
        store.locks.heartbeat.beat()
        renewed = store.locks.info(locks.DAEMON).expires_at
        assert renewed > (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=locks.LEASE_SECONDS / 2)).isoformat()
        assert lost == []
        with store.db.write() as conn:  # another process took it over
            conn.execute(sa.delete(schema.locks))
        store.locks.heartbeat.beat()
        assert lost == ["lost"]
        store.locks.heartbeat.beat()  # reported once
        assert lost == ["lost"]
    finally:
        store.close()


def test_a_run_whose_worker_died_on_another_host_is_interrupted_and_the_job_runs_again(project, store_url):
    """The job's lock of a run on a host that stopped renewing it: the next run takes it over
    and the history says the old run was interrupted."""
    db = sqlite3.connect(project.root / "src.db")
    db.execute("CREATE TABLE a (id INTEGER PRIMARY KEY, v TEXT)")
    db.executemany("INSERT INTO a VALUES (?, ?)", [(i, f"v{i}") for i in range(5)])
    db.commit()
    db.close()
    project.connection("src", "sqlite", "sqlite:///src.db")
    project.connection("dst", "sqlite", "sqlite:///dst.db")
    project.job("copy", "src", "dst", "- {name: t, read: {table: a}, write: {table: b, keys: [id]}}")
    ws = services.Workspace(project.root, state_url=store_url)
    try:
        services.apply(ws)
        old = history.new_run_id()
        services.record_queued(ws, "default/copy", old, "cron", services.RunOptions())
        path = history.run_path(ws.history, "default", "copy", old)
        history.write_atomic(path, history.read_run(path) | {"status": "running", "started_at": utcnow()})
        _held_elsewhere(ws.store(), locks.job_lock("default/copy"), expires_in=60, run_id=old)
        with pytest.raises(JobBusy):
            services.run(ws, "copy")
        with ws.store().db.write() as conn:
            conn.execute(schema.locks.update().values(expires_at=utcnow()))
        record = services.run(ws, "copy")
        assert record["status"] == "succeeded" and record["rows_written"] == 5
        interrupted = history.read_run(path)
        assert interrupted["status"] == "interrupted"
        assert "ended without finishing" in interrupted["error"]
    finally:
        ws.close()


def test_free_locks_are_taken_together_and_a_held_one_is_left_to_its_holder(store_url):
    store = StateStore(store_url)
    try:
        _held_elsewhere(store, locks.job_lock("default/busy"), expires_in=60, run_id="r0")
        lost: list[str] = []
        wanted = [
            (locks.job_lock(f"default/j{n}"), f"r{n + 1}", lambda n=n: lost.append(f"j{n}")) for n in range(3)
        ]
        taken = store.locks.acquire_free([*wanted, (locks.job_lock("default/busy"), "r9", None)])
        assert sorted(taken) == sorted(name for name, _, _ in wanted)  # not the one held elsewhere
        held = store.locks.jobs()
        assert {job: lock.run_id for job, lock in held.items()} == {
            "default/busy": "r0",
            "default/j0": "r1",
            "default/j1": "r2",
            "default/j2": "r3",
        }
        assert {held[f"default/j{n}"].lock_id for n in range(3)} == set(taken.values())
        assert all(held[f"default/j{n}"].alive for n in range(3))
        # taken once: a second burst of the same jobs gets none of them
        assert store.locks.acquire_free(wanted) == {}
        with pytest.raises(LockTimeout):
            store.locks.acquire(locks.job_lock("default/j0"), timeout=0)
        # the heartbeat renews them; a lease taken over is reported to its run
        with store.db.write() as conn:
            conn.execute(
                schema.locks.delete().where(schema.locks.c.lock_id == taken[locks.job_lock("default/j1")])
            )
        store.locks.heartbeat.beat()
        assert lost == ["j1"]
        for name, lock_id in taken.items():
            store.locks.release(name, lock_id)
        assert set(store.locks.jobs()) == {"default/busy"}
    finally:
        store.close()
