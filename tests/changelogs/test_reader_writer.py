"""Reader and writer steps: a reader keeps each run's changes as Parquet change logs that
people can open (pyarrow here), and writers apply them in order, each from its own position:
two writers (SQLite and PostgreSQL) of one reader end equal to the source run after run, a
writer that was down catches up, `runner replay` applies one change log again, and retention
removes old files and their index rows but never one a writer has not applied."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from runner import services
from runner.cli.app import app
from runner.cli.render.cells import lag_text
from runner.connectors.changelog_files import ChangeLogFileWriter, file_columns, read_changes
from runner.state import schema
from tests.changelogs.helpers import READER, change_shop, make_shop, rows, run, sqlite_url, writer
from tests.contract import canonical
from tests.contract.test_messaging import _canonical

TABLES = ("customers", "orders")


@pytest.fixture
def shop(project):
    make_shop(project.root / "src.db")
    project.connection("src", "sqlite", "sqlite:///src.db")
    project.connection("lite", "sqlite", "sqlite:///lite.db")
    return project


def _apply(project, options: str = "", *writers: str) -> None:
    project.write("jobs.d/reader.yaml", READER.format(options=options))
    for i, text in enumerate(writers):
        project.write(f"jobs.d/writer{i}.yaml", text)
    services.apply(project.ws)


def _same(project, url: str) -> None:
    src = sqlite_url(project.root / "src.db")
    for table in TABLES:
        assert rows(url, table) == rows(src, table), table


def test_a_change_log_holds_the_run_s_changes_with_their_operation_and_position(shop):
    _apply(shop)
    run(shop.ws, "reader")
    change_shop(shop.root / "src.db", 1)
    second = run(shop.ws, "reader")
    listed = services.changes(shop.ws, "reader")["change_logs"]
    mine = [e for e in listed if e["run_id"] == second["run_id"] and e["task"] == "customers"]
    assert len(mine) == 1  # one file per run and task: the hash run's two commits make one file
    entry = mine[0]
    table = pq.read_table(entry["file"])  # an ordinary Parquet file
    assert table.schema.names == ["_op", "_position", "id", "name", "city", "score"]
    records = table.to_pylist()
    ops = [r["_op"] for r in records]
    assert ops.count("upsert") == entry["upserts"] and ops.count("delete") == entry["deletes"] == 2
    assert [r["_position"] for r in records] == list(
        range(entry["first_position"], entry["last_position"] + 1)
    )
    assert entry["first_position"] == 31  # the first run's 30 customers came first
    deleted = [r for r in records if r["_op"] == "delete"]
    assert sorted(r["id"] for r in deleted) == [1, 3] and all(r["name"] is None for r in deleted)
    inserted = {r["id"]: r for r in records if r["_op"] == "upsert" and r["id"] >= 1000}
    assert inserted[1000] == {
        "_op": "upsert",
        "_position": inserted[1000]["_position"],
        "id": 1000,
        "name": "new 1.0",
        "city": "ünïcode city",
        "score": None,
    }
    twice = [r for r in records if r["id"] == 2]
    assert [r["city"] for r in twice] == ["last of round 1"]  # what the source held at the run
    assert Path(entry["file"]).stat().st_size == entry["bytes"]
    assert not list(Path(entry["file"]).parent.glob(".*"))  # no partial file left


def test_every_canonical_value_comes_back_from_a_change_log_exactly(tmp_path):
    path = tmp_path / "log.parquet"
    out = ChangeLogFileWriter(path.open("wb"), canonical.COLUMNS, ["id"], {"job": "default/x"})
    out.write([("upsert", i + 1, row) for i, row in enumerate(canonical.rows())])
    out.write([("delete", 100, (1,) + (None,) * (len(canonical.COLUMNS) - 1))])
    out.close()
    columns, keys = file_columns(path)
    assert (columns, keys) == (canonical.COLUMNS, ["id"])
    back = [change for batch in read_changes(path, 3) for change in batch]
    assert [row for _, _, row in back[:-1]] == [_canonical(r) for r in canonical.rows()]
    assert back[-1][:2] == ("delete", 100)


def test_one_reader_feeds_two_writers_equal_to_the_source_run_after_run(shop, pg_url):
    shop.connection("pg", "postgresql", pg_url)
    _apply(shop, "", writer("to-lite", "lite"), writer("to-pg", "pg", batch_size=7))
    for round_ in range(4):
        if round_:
            change_shop(shop.root / "src.db", round_)
        reader = run(shop.ws, "reader")
        for name in ("to-lite", "to-pg"):
            run(shop.ws, name)
        _same(shop, sqlite_url(shop.root / "lite.db"))
        _same(shop, pg_url)
    # the writers never read the source: only the reader's runs did
    assert reader["source"] == "default/src"
    for name in ("to-lite", "to-pg"):
        last = services.runs(shop.ws, name)[0]
        assert services.run_record(shop.ws, last["run_id"])["source"] == "default/reader"


def test_a_writer_that_was_down_catches_up_in_order(shop):
    _apply(shop, "", writer("late", "lite"))
    run(shop.ws, "reader")
    run(shop.ws, "late")
    for round_ in range(1, 6):  # id 2 changes every round: only the last value may remain
        change_shop(shop.root / "src.db", round_)
        run(shop.ws, "reader")
    lags = {t["task"]: t["lag"] for t in services.tasks(shop.ws, "late")}
    waiting = {task: lag["messages_waiting"] for task, lag in lags.items()}
    assert waiting["customers"] > 0 and waiting["orders"] > 0
    # `runner tasks` says changes, not a broker's messages
    assert lag_text(lags["customers"]) == f"{waiting['customers']:,} changes waiting"
    record = run(shop.ws, "late")
    _same(shop, sqlite_url(shop.root / "lite.db"))
    assert rows(sqlite_url(shop.root / "lite.db"), "customers")[0][0] == "2"
    assert {t["name"]: t["rows_read"] for t in record["tasks"]}["customers"] == waiting["customers"]
    again = run(shop.ws, "late")  # nothing new: nothing applied twice
    assert all(t["rows_read"] == 0 for t in again["tasks"])


def test_replay_applies_one_run_s_change_log_into_another_table(shop):
    _apply(shop)
    first = run(shop.ws, "reader")
    result = services.replay(shop.ws, first["run_id"], "lite/customers_copy", task="customers")
    assert (result["inserted"], result["deleted"]) == (30, 0)
    src = sqlite_url(shop.root / "src.db")
    assert rows(sqlite_url(shop.root / "lite.db"), "customers_copy") == rows(src, "customers")
    change_shop(shop.root / "src.db", 1)
    second = run(shop.ws, "reader")
    cli = CliRunner().invoke(
        app,
        [
            "--dir",
            str(shop.root),
            "replay",
            second["run_id"],
            "--task",
            "customers",
            "--into",
            "lite/customers_copy",
        ],
    )
    assert cli.exit_code == 0, cli.output
    assert "2 deleted" in cli.output
    assert rows(sqlite_url(shop.root / "lite.db"), "customers_copy") == rows(src, "customers")
    several = CliRunner().invoke(
        app, ["--dir", str(shop.root), "replay", second["run_id"], "--into", "lite/x"]
    )
    assert several.exit_code == 1 and "give --task" in several.output


def test_runner_changes_lists_run_task_rows_by_operation_file_and_size(shop):
    _apply(shop)
    first = run(shop.ws, "reader")
    result = CliRunner().invoke(app, ["--dir", str(shop.root), "changes", "reader"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "default/reader: 2 change log file(s)"
    assert lines[1].split() == ["RUN", "TASK", "UPSERTS", "DELETES", "POSITIONS", "SIZE", "FILE"]
    customers = next(line.split() for line in lines if " customers " in line)
    assert customers[:5] == [first["run_id"], "customers", "30", "0", "1-30"]
    assert customers[-1].endswith(f"default/reader/customers/{first['run_id']}-0001.parquet")


def test_retention_keeps_what_a_writer_has_not_applied_and_removes_the_rest(shop):
    _apply(shop, "  change_log: {path: logs, keep_files: 1}\n", writer("slow", "lite", tasks=("customers",)))
    for round_ in range(4):
        if round_:
            change_shop(shop.root / "src.db", round_)
        run(shop.ws, "reader")

    def files(task: str) -> list[dict]:
        return [e for e in services.changes(shop.ws, "reader")["change_logs"] if e["task"] == task]

    # the writer applies customers only and never ran: all four of its files stay; orders, which
    # no writer applies, keeps its newest only
    assert len(files("customers")) == 4 and len(files("orders")) == 1
    on_disk = sorted(p.name for p in (shop.root / "logs/default/reader/customers").iterdir())
    assert on_disk == sorted(Path(e["file"]).name for e in files("customers"))
    run(shop.ws, "slow")
    change_shop(shop.root / "src.db", 9)
    run(shop.ws, "reader")  # now the writer has applied them: one file left
    (left,) = files("customers")
    assert [p.name for p in (shop.root / "logs/default/reader/customers").iterdir()] == [
        Path(left["file"]).name
    ]
    store = shop.ws.store()
    with store.db.read() as conn:
        indexed = conn.execute(
            schema.change_logs.select().where(schema.change_logs.c.task == "customers")
        ).all()
    assert len(indexed) == 1
    run(shop.ws, "slow")  # it goes on from its position: nothing lost with the files removed
    assert rows(sqlite_url(shop.root / "lite.db"), "customers") == rows(
        sqlite_url(shop.root / "src.db"), "customers"
    )


def test_retention_by_days_removes_old_files_the_writers_applied(shop):
    _apply(shop, "  change_log: {keep_days: 1}\n", writer("w", "lite"))
    run(shop.ws, "reader")
    run(shop.ws, "w")
    change_shop(shop.root / "src.db", 1)
    run(shop.ws, "reader")
    store = shop.ws.store()
    old = (dt.datetime.now(dt.UTC) - dt.timedelta(days=3)).isoformat()
    with store.db.write() as conn:  # the first run's files are three days old
        conn.execute(
            schema.change_logs.update().where(schema.change_logs.c.first_position == 1).values(created_at=old)
        )
    first_files = [
        Path(e["file"])
        for e in services.changes(shop.ws, "reader")["change_logs"]
        if e["first_position"] == 1
    ]
    run(shop.ws, "w")
    change_shop(shop.root / "src.db", 2)
    run(shop.ws, "reader")
    left = services.changes(shop.ws, "reader")["change_logs"]
    assert all(e["first_position"] != 1 for e in left) and len(left) == 4
    assert not any(p.exists() for p in first_files)


def test_a_dry_run_of_a_reader_writes_no_change_log(shop):
    _apply(shop)
    record = services.run(shop.ws, "reader", services.RunOptions(dry_run=True))
    assert record["status"] == "succeeded"
    assert services.changes(shop.ws, "reader")["change_logs"] == []


def test_a_writer_before_its_reader_kept_anything_applies_nothing_and_succeeds(shop):
    _apply(shop, "", writer("early", "lite"))
    record = run(shop.ws, "early")
    assert [t["rows_read"] for t in record["tasks"]] == [0, 0]
    run(shop.ws, "reader")
    run(shop.ws, "early")
    _same(shop, sqlite_url(shop.root / "lite.db"))
