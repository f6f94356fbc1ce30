"""Change logs in a folder on an FTP or SFTP server (real servers on loopback,
`tests.files.servers`): a reader writes them there, two writers (SQLite, PostgreSQL) and
`runner replay` read them from there, retention removes old ones there; a reader killed -9 with
its file complete under its hidden name, or renamed but not indexed, loses and doubles nothing,
and no one sees half a file."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from runner import services
from tests.changelogs.helpers import READER, change_shop, make_shop, rows, run, sqlite_url, writer
from tests.changelogs.test_kill import kill_at
from tests.files.servers import PASSWORD, Server, ftp_server, sftp_server  # noqa: F401

TABLES = ("customers", "orders")


@pytest.fixture(params=["ftp", "sftp"])
def server(request: pytest.FixtureRequest) -> Server:
    return request.getfixturevalue(f"{request.param}_server")


@pytest.fixture
def shop(project, server):
    make_shop(project.root / "src.db", customers=40)
    project.connection("src", "sqlite", "sqlite:///src.db")
    project.connection("lite", "sqlite", "sqlite:///lite.db")
    project.write(
        "connections.d/logs.yaml",
        "apiVersion: runner/v1\nkind: Connection\nmetadata: {name: logs}\n"
        f"spec: {json.dumps(server.connection('data/changelogs'))}\n",
    )
    return project


def _task_files(server: Server, task: str) -> list[Path]:
    """Every file in the task's folder on the server, hidden ones too."""
    folder = server.root / "data/changelogs/default/reader" / task
    return sorted(folder.iterdir()) if folder.is_dir() else []


def _indexed(project, task: str) -> list[dict]:
    return [e for e in services.changes(project.ws, "reader")["change_logs"] if e["task"] == task]


def _same(project, url: str) -> None:
    for table in TABLES:
        assert rows(url, table) == rows(sqlite_url(project.root / "src.db"), table), table


def _consistent(project, server: Server) -> None:
    """The index lists exactly the files on the server, each whole, with the positions it
    says, and a task's positions run on with no gap and no repeat; nothing hidden is left."""
    for task in TABLES:
        entries = _indexed(project, task)
        on_server = _task_files(server, task)
        assert [p.name for p in on_server] == sorted(e["file"].rsplit("/", 1)[1] for e in entries)
        for entry, path in zip(sorted(entries, key=lambda e: e["file"]), on_server, strict=True):
            positions = pq.read_table(path).column("_position").to_pylist()
            assert positions == list(range(entry["first_position"], entry["last_position"] + 1))
            assert path.stat().st_size == entry["bytes"]
        for before, after in zip(entries, entries[1:], strict=False):
            assert after["first_position"] == before["last_position"] + 1


def test_a_reader_on_a_server_feeds_two_writers_replay_and_retention(shop, server, pg_url):
    shop.connection("pg", "postgresql", pg_url)
    options = "  change_log: {connection: logs, keep_files: 1}\n"
    shop.write("jobs.d/reader.yaml", READER.format(options=options))
    shop.write("jobs.d/to-lite.yaml", writer("to-lite", "lite"))
    shop.write("jobs.d/to-pg.yaml", writer("to-pg", "pg", batch_size=7))
    services.apply(shop.ws)  # a change log on an FTP or SFTP folder validates
    for round_ in range(4):
        if round_:
            change_shop(shop.root / "src.db", round_)
        record = run(shop.ws, "reader")
        for task in TABLES:  # what the writers applied is gone: the newest file only is kept
            assert len(_task_files(server, task)) == 1 and len(_indexed(shop, task)) == 1
        _consistent(shop, server)
        for name in ("to-lite", "to-pg"):
            run(shop.ws, name)
        _same(shop, sqlite_url(shop.root / "lite.db"))
        _same(shop, pg_url)
    (entry,) = _indexed(shop, "customers")
    port = server.port
    assert entry["file"].startswith(f"{server.protocol}://loader@127.0.0.1:{port}/data/changelogs/default/")
    assert PASSWORD not in json.dumps(services.changes(shop.ws, "reader"))
    # the last run's change log, read back from the server into another table
    result = services.replay(shop.ws, record["run_id"], "lite/customers_copy", task="customers")
    assert result["rows"] == entry["rows"] and result["files"] == [entry["file"]]
    assert len(rows(sqlite_url(shop.root / "lite.db"), "customers_copy")) == entry["upserts"]


@pytest.mark.parametrize("point", ["file written", "changelog_renamed"])
def test_a_reader_killed_while_writing_to_a_server_loses_and_doubles_nothing(shop, server, tmp_path, point):
    shop.write("jobs.d/reader.yaml", READER.format(options="  change_log: {connection: logs}\n"))
    shop.write("jobs.d/w.yaml", writer("w", "lite", batch_size=7))
    services.apply(shop.ws)
    run(shop.ws, "reader")
    run(shop.ws, "w")
    change_shop(shop.root / "src.db", 1)
    shop.ws.close()
    kill_at(shop.root, "reader", point, tmp_path)
    listed = {e["file"].rsplit("/", 1)[1] for e in _indexed(shop, "customers")}
    orphans = [p for p in _task_files(server, "customers") if p.name not in listed]
    assert len(orphans) == 1  # on the server, in no index: no writer reads it
    if point == "file written":  # complete under its hidden name, never under its own
        assert orphans[0].name.startswith(".") and orphans[0].name.endswith(".partial")
    else:
        assert not orphans[0].name.startswith(".")
    assert all(not p.name.startswith(".") for p in _task_files(server, "customers") if p.name in listed)
    nothing = run(shop.ws, "w")  # the reader's killed run kept nothing a writer may apply
    assert all(t["rows_read"] == 0 for t in nothing["tasks"])
    run(shop.ws, "reader")  # writes the changes again; the file no index lists is swept
    assert not {p.name for p in orphans} & {p.name for p in _task_files(server, "customers")}
    _consistent(shop, server)
    run(shop.ws, "w")
    _same(shop, sqlite_url(shop.root / "lite.db"))
    again = run(shop.ws, "w")
    assert all(t["rows_read"] == 0 for t in again["tasks"])


def test_a_job_with_a_target_keeps_its_change_logs_on_a_server(shop, server, tmp_path):
    from tests.changelogs.helpers import SYNC

    job = SYNC.format(target="lite", batch_size=7)
    shop.write("jobs.d/sync.yaml", job.replace("{keep_files: 2}", "{connection: logs, keep_files: 2}"))
    shop.connection("copy", "sqlite", "sqlite:///copy.db")
    shop.write("jobs.d/w.yaml", writer("w", "copy", job="sync"))
    services.apply(shop.ws)
    run(shop.ws, "sync")
    change_shop(shop.root / "src.db", 1)
    shop.ws.close()
    kill_at(shop.root, "sync", "target_committed", tmp_path)  # the target has them, the index not
    run(shop.ws, "sync")
    run(shop.ws, "w")
    _same(shop, sqlite_url(shop.root / "lite.db"))
    _same(shop, sqlite_url(shop.root / "copy.db"))
    entries = services.changes(shop.ws, "sync")["change_logs"]
    assert entries and all(e["file"].startswith(f"{server.protocol}://") for e in entries)
    folder = server.root / "data/changelogs/default/sync/customers"
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # nothing half-written left
