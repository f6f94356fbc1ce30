"""Stores already on disk keep working: a store written by the release before the state
package was split (data/store-v8.sqlite, made by data/make_store_v8.py with that release's
code) reads back through every concern, and a store of schema 4 migrates to the latest."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa

from runner.state import locks, migrations, schema
from runner.state.objects import Write
from runner.state.store import StateReader, StateStore

V8 = Path(__file__).parent / "data" / "store-v8.sqlite"
STATE_DIGEST = (
    "1b63c5769112c8ba7a0012f0048e3a703a81563ab42fc44670c36ce47b3b1683"  # as that release computed it
)
PLAN_DIGEST = "f4ab12afdbd042fdee8a70af01a5a45b585ce9880261b5a986c0ee179379dc1f"
RUN_1, RUN_2 = "r-20260101T000000-1", "r-20260102T000000-2"


@pytest.fixture
def v8_url(tmp_path: Path) -> str:
    copy = tmp_path / "state.db"
    shutil.copyfile(V8, copy)
    return f"sqlite:///{copy}"


def _reads_back(state: StateReader) -> None:
    """Every concern a reader has, as the old release wrote it."""
    assert state.db.schema_version() == migrations.LATEST == 13
    assert state.db.check() is None
    assert [o.ref for o in state.objects.all()] == ["default/dst", "default/src", "default/copy"]
    job = state.objects.get("Job", "default", "copy")
    assert (job.file, job.line, job.revision_id) == ("jobs.d/copy.yaml", 1, 1)
    assert [t["name"] for t in job.document["spec"]["tasks"]] == ["events", "items"]
    assert job.document["spec"]["schedule"] == {"cron": "0 3 * * *"}
    assert state.objects.state_digest() == STATE_DIGEST
    revision = state.objects.latest_revision()
    assert revision is not None and revision == state.objects.revision(1)
    assert (revision.digest, revision.git_commit, revision.summary["create"]) == (PLAN_DIGEST, None, 3)
    events, items = state.tasks.states("default", "copy")
    assert (events.task, events.watermark_column, events.run_id) == ("events", "id", RUN_1)
    assert events.pointer == {"type": "integer", "value": "42"}
    assert (items.task, items.pointer) == ("items", None)
    assert state.locks.jobs() == {} and state.locks.info(locks.APPLY) is None  # stored lock-free
    assert state.locks.info(locks.job_lock("default/copy")) is None
    assert state.switches.suspended()[("default", "copy")][1] == "maker@host"
    assert state.switches.setting("paused")[0] is True
    assert state.switches.schedule_marks() == {
        ("default", "copy"): ("2026-01-01T03:00:00+00:00", "0 3 * * *|UTC")
    }
    assert state.runs.indexed("default", "copy")
    assert state.runs.ids("default", "copy") == [RUN_2, RUN_1]
    assert state.runs.ids("default", "copy", changed_only=True) == [RUN_2, RUN_1]  # RUN_2 failed
    assert state.runs.ids("default", "copy", task="events") == [RUN_1]
    assert state.runs.ids("default", "copy", before=RUN_2) == [RUN_1]
    assert state.runs.last_by_task("default", "copy") == {"events": RUN_1, "items": RUN_2}
    assert [(r, s) for r, s, _ in state.runs.all("default", "copy")] == [
        (RUN_2, "failed"),
        (RUN_1, "succeeded"),
    ]


def test_a_store_of_the_release_before_the_split_reads_back(v8_url):
    store = StateStore(v8_url, create=False)  # migrated first: a reader refuses an older schema
    try:
        _reads_back(store)
        items = store.tasks.state("default", "copy", "items")
        assert items.digests_pending is True and store.tasks.has_digests(items.id)
        assert list(store.tasks.digests(items.id, 1)) == [
            ("0a" * 16, "0b" * 16, "[1]"),
            ("0c" * 16, "0d" * 16, "[2]"),
        ]
        (key,) = store.keys.all()
        assert (key["name"], key["key_hash"], key["scope"]) == ("ci", "5" * 64, "operate")
    finally:
        store.close()
    reader = StateReader(v8_url)
    try:
        _reads_back(reader)
    finally:
        reader.close()


def test_a_store_of_the_release_before_the_split_takes_writes(v8_url):
    store = StateStore(v8_url, create=False)
    try:
        job = store.objects.get("Job", "default", "copy")
        moved = Write(
            "Job", "default", "copy", job.document, file="jobs.d/moved.yaml", line=3, new_revision=False
        )
        assert (
            store.objects.apply(
                [moved],
                base_revision=1,
                base_state=STATE_DIGEST,
                git_commit=None,
                git_dirty=None,
                digest=PLAN_DIGEST,
                summary={},
            )
            is None
        )
        assert store.objects.get("Job", "default", "copy").file == "jobs.d/moved.yaml"
        events = store.tasks.state("default", "copy", "events")
        store.tasks.set_pointer(events.id, "id", {"type": "integer", "value": "43"}, "r-3")
        items = store.tasks.state("default", "copy", "items")
        store.tasks.write_digests(items.id, [("0e" * 16, "0f" * 16, "[3]")], ["0a" * 16])
        store.tasks.set_digests_pending(items.id, False)
        with store.locks.locked(locks.job_lock("default/copy"), timeout=0) as lock_id:
            assert store.locks.jobs()["default/copy"].lock_id == lock_id
        assert store.switches.set_suspended("default", "copy", False, "me")
        store.switches.set_schedule_marks([("default", "copy", "2026-01-02T03:00:00+00:00", "0 3 * * *|UTC")])
        store.keys.revoke("ci")
        store.keys.add("ci", "6" * 64, "read", "me")
        store.runs.add([{"run_id": "r-3", "namespace": "default", "job": "copy", "status": "succeeded"}])
        store.runs.forget([RUN_1])
    finally:
        store.close()
    reader = StateReader(v8_url)  # what was written is what a new reader reads
    try:
        assert reader.objects.state_digest() != STATE_DIGEST
        assert reader.tasks.states("default", "copy")[0].pointer == {"type": "integer", "value": "43"}
        assert reader.locks.jobs() == {} and reader.switches.suspended() == {}
        assert reader.switches.schedule_marks()[("default", "copy")][0] == "2026-01-02T03:00:00+00:00"
        assert reader.runs.ids("default", "copy") == ["r-3", RUN_2]
    finally:
        reader.close()
    store = StateStore(v8_url, create=False)
    try:
        items = store.tasks.state("default", "copy", "items")
        assert not items.digests_pending
        assert [k for k, _, _ in store.tasks.digests(items.id, 10)] == ["0c" * 16, "0e" * 16]
        assert [k["key_hash"] for k in store.keys.all()] == ["6" * 64]
    finally:
        store.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_store_of_version_4_migrates_to_the_latest(request, tmp_path, backend):
    """Migrations v1..v4 only, with rows in every table they made: the later versions add
    their tables and columns and convert the hex digests, and every concern works after."""
    url = f"sqlite:///{tmp_path / 'state.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        schema.schema_version.create(conn)
        for version in range(1, 4 + 1):
            migrations.migration(version)(conn)
            conn.execute(schema.schema_version.insert().values(version=version, applied_at="earlier"))
        for sql in (
            'INSERT INTO revisions (id, applied_at, "user", digest, summary) '
            "VALUES (1, 'x', 'u', 'd', '{}')",
            "INSERT INTO objects VALUES ('Job', 'd', 'j', '{\"spec\": {}}', 'dg', 'jobs.d/j.yaml', 2, 1)",
            "INSERT INTO task_state (id, namespace, job, task, watermark_column, pointer, updated_at) "
            "VALUES (7, 'd', 'j', 't', 'id', '{\"type\": \"integer\", \"value\": \"5\"}', 'x')",
            f"INSERT INTO row_digests VALUES (7, '{'ab' * 16}', '{'cd' * 16}', '[1]')",
            "INSERT INTO job_switches VALUES ('d', 'j', 'since', 'me')",
            "INSERT INTO settings VALUES ('paused', 'false', 'x', 'me')",
            "INSERT INTO schedule_marks VALUES ('d', 'j', '2026-01-01T00:00:00+00:00')",
        ):
            conn.exec_driver_sql(sql)
    engine.dispose()
    with pytest.raises(Exception, match="older than"):
        StateReader(url)  # a reader never migrates
    store = StateStore(url, create=False)
    try:
        assert store.db.schema_version() == migrations.LATEST
        assert store.objects.get("Job", "d", "j").document == {"spec": {}}
        assert store.objects.latest_revision().id == 1
        state = store.tasks.state("d", "j", "t")
        assert (state.id, state.pointer, state.digests_pending) == (
            7,
            {"type": "integer", "value": "5"},
            False,
        )
        assert list(store.tasks.digests(7, 10)) == [("ab" * 16, "cd" * 16, "[1]")]  # hex text -> bytes
        assert store.switches.suspended() == {("d", "j"): ("since", "me")}
        assert store.switches.setting("paused")[0] is False
        assert store.switches.schedule_marks() == {("d", "j"): ("2026-01-01T00:00:00+00:00", None)}
        assert store.keys.all() == [] and store.runs.ids("d", "j") == []
        store.keys.add("k", "7" * 64, "read", "me")
        store.runs.add(
            [{"run_id": "r-1", "namespace": "d", "job": "j", "status": "failed", "tasks": [{"name": "t"}]}]
        )
        store.switches.set_schedule_marks([("d", "j", "2026-01-02T00:00:00+00:00", "* * * * *|UTC")])
        assert store.runs.last_by_task("d", "j") == {"t": "r-1"}
        assert store.switches.schedule_marks()[("d", "j")][1] == "* * * * *|UTC"
    finally:
        store.close()
    StateReader(url).close()  # at the latest now: a reader opens it
