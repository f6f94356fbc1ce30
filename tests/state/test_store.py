"""The state store: migrations, locks that serialise applies, and PostgreSQL as a store."""

from __future__ import annotations

import os
import sqlite3
import threading
import time

import pytest
import sqlalchemy as sa

from runner import services
from runner.errors import LockTimeout, NotFound, StateError
from runner.state import locks, migrations, schema
from runner.state.store import StateReader, StateStore

CONNS = """
apiVersion: runner/v1
kind: Connection
metadata: {name: src}
spec: {type: sqlite, url: "sqlite:///src.db"}
"""


def test_new_store_is_migrated_to_latest(tmp_path):
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    assert store.db.schema_version() == migrations.LATEST
    store.close()
    again = StateStore(f"sqlite:///{tmp_path / 'state.db'}")  # idempotent
    assert again.db.schema_version() == migrations.LATEST
    again.close()


def test_a_store_at_the_latest_schema_opens_while_another_process_holds_the_write_lock(tmp_path):
    """Opening a store that needs nothing (every run's, every command's but the first) reads:
    it does not queue for SQLite's write lock (a daemon's or an apply's transaction), which
    it did for up to the 60 s busy timeout; an older store still migrates under the lock."""
    db = tmp_path / "state.db"
    StateStore(f"sqlite:///{db}").close()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process's write transaction, held
    opened: list[StateStore] = []
    thread = threading.Thread(target=lambda: opened.append(StateStore(f"sqlite:///{db}", create=False)))
    thread.start()
    thread.join(10)
    waited = thread.is_alive()
    holder.execute("ROLLBACK")
    holder.close()
    thread.join()
    assert not waited, "the open waited for the write lock"
    assert opened[0].db.schema_version() == migrations.LATEST
    opened[0].close()


@pytest.mark.parametrize("opener", [StateStore, StateReader], ids=["store", "reader"])
def test_store_from_a_newer_runner_is_refused(tmp_path, opener):
    """By the store that would migrate it and by the read-only reader alike."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    StateStore(url).close()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(schema.schema_version.insert().values(version=migrations.LATEST + 1, applied_at="x"))
    engine.dispose()
    with pytest.raises(StateError, match="newer than this runner knows"):
        opener(url)


def test_lock_waits_then_times_out_naming_the_holder(tmp_path):
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    lock_id = store.locks.acquire(locks.APPLY, timeout=0)
    started = time.monotonic()
    with pytest.raises(LockTimeout) as info:
        store.locks.acquire(locks.APPLY, timeout=0.5)
    assert time.monotonic() - started >= 0.5
    assert lock_id in str(info.value) and f"runner force-unlock {lock_id}" in str(info.value)
    assert "pid" in str(info.value)
    store.locks.release(locks.APPLY, lock_id)
    store.locks.release(locks.APPLY, store.locks.acquire(locks.APPLY, timeout=0))
    store.close()


def test_force_unlock_checks_the_id(tmp_path):
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    lock_id = store.locks.acquire(locks.APPLY, timeout=0)
    with pytest.raises(NotFound):
        store.locks.force_unlock("0" * 32)
    assert store.locks.info(locks.APPLY).lock_id == lock_id
    released = store.locks.force_unlock(lock_id)
    assert released.name == locks.APPLY and store.locks.info(locks.APPLY) is None
    store.close()


def test_concurrent_applies_serialise(project):
    """While one process holds the apply lock, apply waits; it proceeds once released."""
    project.write("connections.d/c.yaml", CONNS)
    holder = StateStore(project.ws.state)
    lock_id = holder.locks.acquire(locks.APPLY, timeout=0)
    results = {}

    def apply() -> None:
        results["result"] = services.apply(services.Workspace(project.root), lock_timeout=10)

    thread = threading.Thread(target=apply)
    thread.start()
    time.sleep(0.5)
    # waiting, nothing written
    assert thread.is_alive() and project.ws.store().objects.latest_revision() is None
    holder.locks.release(locks.APPLY, lock_id)
    thread.join(10)
    assert results["result"].revision == 1
    holder.close()


def test_apply_times_out_while_locked_and_changes_nothing(project):
    project.write("connections.d/c.yaml", CONNS)
    holder = StateStore(project.ws.state)
    lock_id = holder.locks.acquire(locks.APPLY, timeout=0)
    with pytest.raises(LockTimeout, match=lock_id):
        services.apply(project.ws, lock_timeout=0.3)
    assert project.ws.store().objects.latest_revision() is None
    holder.close()


def test_postgresql_state_store_full_cycle(project, pg_url, tmp_path):
    project.write("connections.d/c.yaml", CONNS)
    project.job("copy", "src", "src", "- {name: t, read: {table: a}, write: {table: b}}")
    ws = services.Workspace(project.root, state_url=pg_url)
    try:
        assert services.apply(ws).revision == 1
        project.job(
            "copy",
            "src",
            "src",
            "- {name: t, read: {table: a}, write: {table: b}}",
            extra="  batch_size: 5\n",
        )
        plan = services.plan(ws)
        (change,) = [c for c in plan.changes if c.action == "update"]
        assert [(f.path, f.new) for f in change.fields] == [("spec.batch_size", 5)]
        plan_file = tmp_path / "p.json"
        services.save_plan(plan, plan_file)
        assert services.apply(ws, plan_file).revision == 2
        assert ws.store().objects.get("Job", "default", "copy").document["spec"]["batch_size"] == 5
        lock_id = ws.store().locks.acquire(locks.APPLY, timeout=0)
        with pytest.raises(LockTimeout):
            services.apply(ws, lock_timeout=0.2)
        ws.store().locks.force_unlock(lock_id)
    finally:
        ws.close()


def test_postgresql_failure_mid_apply_leaves_state_unchanged(project, pg_url):
    project.write("connections.d/c.yaml", CONNS)
    project.job("copy", "src", "src", "- {name: t, read: {table: a}, write: {table: b}}")
    ws = services.Workspace(project.root, state_url=pg_url)
    engine = sa.create_engine(pg_url)
    try:
        assert services.apply(ws).revision == 1
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'injected failure'; END $$"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER boom BEFORE INSERT ON objects FOR EACH ROW "
                "WHEN (NEW.name = 'zzz-last') EXECUTE FUNCTION boom()"
            )

        def snapshot() -> list:
            with engine.connect() as conn:
                return [
                    conn.exec_driver_sql(f"SELECT * FROM {t} ORDER BY 1, 2").all()
                    for t in ("objects", "revisions", "locks")
                ]

        before = snapshot()
        project.job(
            "copy",
            "src",
            "src",
            "- {name: t, read: {table: a}, write: {table: b}}",
            extra="  batch_size: 3\n",
        )
        project.job("zzz-last", "src", "src", "- {name: t, read: {table: a}, write: {table: b}}")
        with pytest.raises(Exception, match="injected failure"):
            services.apply(ws)
        assert snapshot() == before
    finally:
        ws.close()
        engine.dispose()


def test_unparsable_state_url_is_a_clear_error():
    with pytest.raises(StateError, match="cannot be parsed"):
        StateStore("not a url")


def test_lock_of_a_dead_process_on_this_host_is_taken_over(tmp_path):
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'state.db'}"
    lock = locks.job_lock("x")
    code = f"from runner.state.store import StateStore; StateStore({url!r}).locks.acquire({lock!r}, 0)"
    subprocess.run([sys.executable, "-c", code], check=True)  # exits without releasing
    store = StateStore(url)
    held = store.locks.info(locks.job_lock("x"))
    assert held is not None and held.pid != os.getpid()
    lock_id = store.locks.acquire(locks.job_lock("x"), timeout=0)  # the holder is gone: no wait, no error
    assert store.locks.info(locks.job_lock("x")).lock_id == lock_id
    store.close()


def test_lock_of_a_live_process_is_kept(tmp_path):
    url = f"sqlite:///{tmp_path / 'state.db'}"
    holder, other = StateStore(url), StateStore(url)
    holder.locks.acquire(locks.job_lock("x"), 0)
    with pytest.raises(LockTimeout):
        other.locks.acquire(locks.job_lock("x"), 0)
    holder.close()
    other.close()


def test_store_of_an_older_version_is_migrated(tmp_path):
    """A store left at version 2 by an earlier runner gains what the later versions add."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        schema.schema_version.create(conn)
        for version in range(1, 2 + 1):
            migrations.migration(version)(conn)
            conn.execute(schema.schema_version.insert().values(version=version, applied_at="earlier"))
        conn.exec_driver_sql(
            "INSERT INTO task_state (namespace, job, task, updated_at) VALUES ('d', 'j', 't', 'x')"
        )
    engine.dispose()
    store = StateStore(url)
    assert store.db.schema_version() == migrations.LATEST == 13
    state = store.tasks.state("d", "j", "t")
    assert state.digests_pending is False
    store.tasks.set_digests_pending(state.id, True)
    assert store.tasks.state("d", "j", "t").digests_pending is True
    lock_id = store.locks.acquire(locks.job_lock("d/j"), timeout=0, run_id="r1")
    assert store.locks.request_cancel(locks.job_lock("d/j"), "me").run_id == "r1"
    assert store.locks.cancel_requested(lock_id) == "me"
    assert (
        store.switches.set_suspended("d", "j", True, "me")
        and store.switches.suspended()[("d", "j")][1] == "me"
    )
    store.switches.set_setting("paused", True, "me")
    assert store.switches.setting("paused")[0] is True
    store.switches.set_schedule_mark("d", "j", "2026-01-01T00:00:00+00:00")
    assert store.switches.schedule_marks() == {("d", "j"): ("2026-01-01T00:00:00+00:00", None)}
    store.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_row_digests_of_version_6_are_converted(request, tmp_path, backend):
    """A store of version 6 kept md5s as hex text; version 8 keeps their bytes. The digests
    come out as they went in (hex, in hex order) and can be replaced and deleted."""
    url = f"sqlite:///{tmp_path / 'state.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        schema.schema_version.create(conn)
        for version in range(1, 6 + 1):
            migrations.migration(version)(conn)
            conn.execute(schema.schema_version.insert().values(version=version, applied_at="earlier"))
        conn.exec_driver_sql(
            "INSERT INTO task_state (id, namespace, job, task, updated_at) VALUES (1, 'd', 'j', 't', 'x')"
        )
        old = [
            (f"{i:02x}" * 16, f"{255 - i:02x}" * 16, f'[{{"type":"integer","value":"{i}"}}]')
            for i in range(256)
        ]
        for k, r, v in old:
            conn.exec_driver_sql(
                "INSERT INTO row_digests VALUES (1, %s, %s, %s)".replace(
                    "%s", "?" if backend == "sqlite" else "%s"
                ),
                (k, r, v),
            )
    engine.dispose()
    store = StateStore(url)
    try:
        assert store.db.schema_version() == migrations.LATEST == 13
        assert list(store.tasks.digests(1, 100)) == old  # three pages, in order
        store.tasks.write_digests(1, [(old[5][0], "ab" * 16, old[5][2])], [old[0][0], old[255][0]])
        got = list(store.tasks.digests(1, 1000))
        assert len(got) == 254 and got[0][0] == old[1][0] and got[4] == (old[5][0], "ab" * 16, old[5][2])
    finally:
        store.close()


def test_row_digests_are_compact(tmp_path):
    """A hash task keeps a digest per source row: 2M rows once took 328 MB (164 bytes a row)."""
    import hashlib

    from runner.streams.pointers import encode_key

    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    rows = 100_000
    try:
        task = store.tasks.state("d", "j", "t").id
        before = (tmp_path / "state.db").stat().st_size
        digests = sorted(
            (
                hashlib.md5(str(i).encode()).hexdigest(),
                hashlib.md5(str(-i).encode()).hexdigest(),
                encode_key((i,)),
            )
            for i in range(rows)
        )
        for i in range(0, rows, 10_000):
            store.tasks.write_digests(task, digests[i : i + 10_000], [])
    finally:
        store.close()
    per_row = ((tmp_path / "state.db").stat().st_size - before) / rows
    assert per_row < 100, per_row  # 161 with hex text in a rowid table and its key index
