"""`StateReader`: what plans and status read, from an existing store, without creating,
migrating or writing anything."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from runner import services
from runner.errors import StateUnavailable, StoreMissing, StoreOutdated
from runner.state import locks, migrations, schema
from runner.state.store import StateReader, StateStore

CONNECTION = """
apiVersion: runner/v1
kind: Connection
metadata: {name: c}
spec: {type: sqlite, url: "sqlite:///c.db"}
"""


def _store_at(url: str, version: int) -> None:
    """A store as a runner of schema `version` left it."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        schema.schema_version.create(conn)
        for number in range(1, version + 1):
            migrations.migration(number)(conn)
            conn.execute(schema.schema_version.insert().values(version=number, applied_at="earlier"))
    engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_reader_reads_what_the_store_wrote_and_refuses_writes(request, tmp_path, backend):
    url = f"sqlite:///{tmp_path / 'state.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    store = StateStore(url)
    lock_id = store.locks.acquire(locks.job_lock("d/j"), timeout=0, run_id="r1")
    store.switches.set_suspended("d", "j", True, "me")
    reader = StateReader(url)
    try:
        assert reader.locks.jobs()["d/j"].lock_id == lock_id
        assert reader.switches.suspended()[("d", "j")][1] == "me"
        assert reader.objects.all() == [] and reader.objects.latest_revision() is None
        assert reader.db.check() is None
        assert not hasattr(reader, "keys") and not hasattr(reader.locks, "acquire")
        with pytest.raises(StateUnavailable, match="read-?only"), reader.db.write() as conn:
            conn.execute(schema.settings.insert().values(key="k", value="1", updated_at="x", updated_by="y"))
        assert reader.switches.setting("k") is None
    finally:
        reader.close()
        store.close()


def test_the_reader_creates_nothing(tmp_path):
    db = tmp_path / "sub" / "state.db"
    with pytest.raises(StoreMissing):
        StateReader(f"sqlite:///{db}")
    assert not db.exists() and not db.parent.exists()
    db.parent.mkdir()
    db.touch()  # a file, but no store in it
    with pytest.raises(StoreMissing):
        StateReader(f"sqlite:///{db}")
    assert db.stat().st_size == 0


def test_the_reader_migrates_nothing(tmp_path):
    url = f"sqlite:///{tmp_path / 'state.db'}"
    _store_at(url, 4)
    with pytest.raises(StoreOutdated, match="version 4, older than"):
        StateReader(url)
    store = StateStore(url, create=False)  # a writer migrates it
    assert store.db.schema_version() == migrations.LATEST
    store.close()
    StateReader(url).close()


def test_a_reading_command_on_an_older_store_still_migrates_it(project):
    """`Workspace.reader` falls back to the store for an older schema, as every command did
    before readers existed: an upgrade of runner needs no extra step before `runner status`."""
    project.ws.state_url = f"sqlite:///{project.root / 'state.db'}"
    _store_at(project.ws.state, 4)
    assert services.status(project.ws)["state_store"]["healthy"] is True
    assert isinstance(project.ws.reader(), StateStore)
    assert project.ws.reader().db.schema_version() == migrations.LATEST


def test_status_reads_through_a_reader_and_opens_no_writer(project):
    project.write("connections.d/c.yaml", CONNECTION)
    services.apply(project.ws)
    ws = services.Workspace(project.root)
    try:
        assert services.status(ws)["revision"] == 1
        assert [c["connection"] for c in services.connections(ws)] == ["default/c"]
        assert ws._store is None and isinstance(ws.reader(), StateReader)
    finally:
        ws.close()
