"""Backfill in windows: a watermark task with `changes.start` and `changes.window` reads the
backlog one window at a time, committing the target and then the pointer after each, and reads
as any watermark task once a window reaches the source's highest value. A run killed inside a
window resumes in it; nothing is lost or written twice."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from runner import services
from runner.definitions.windows import parse_window
from runner.streams.windows import WindowMismatch, in_column_terms, window_end
from tests.conftest import Project
from tests.engine.conftest import Database
from tests.engine.test_crash import kill_at

T0 = dt.datetime(2024, 1, 1)
ROWS = 60  # one every 12 hours: 2024-01-01 00:00 to 2024-01-30 12:00
DDL = {
    "sqlite": "CREATE TABLE events (id INTEGER PRIMARY KEY, name TEXT, at TIMESTAMP)",
    "postgresql": "CREATE TABLE events (id integer PRIMARY KEY, name text, at timestamp)",
    "mariadb": "CREATE TABLE events (id int PRIMARY KEY, name varchar(20), at datetime(6))",
}


def _seed(db: Database, rows: list[tuple[int, str, str | None]]) -> None:
    with db.cursor() as c:
        c.execute(DDL[db.dialect])
        m = db.mark
        c.executemany(f"INSERT INTO events (id, name, at) VALUES ({m}, {m}, {m})", rows)


def _rows(first: int = 1, count: int = ROWS, start: dt.datetime = T0) -> list[tuple[int, str, str | None]]:
    return [
        (i, f"row {i}", (start + dt.timedelta(hours=12 * (i - first))).isoformat(sep=" "))
        for i in range(first, first + count)
    ]


def _job(project: Project, source: Database, target: Database, changes: str, extra: str = "") -> None:
    project.connection("source", source.dialect, source.url)
    project.connection("target", target.dialect, target.url)
    project.job(
        "sync",
        "source",
        "target",
        f"""
        - name: events
          read: {{table: events}}
          write: {{table: events_copy, keys: [id]}}
          changes: {changes}
          deletes: propagate
        """,
        extra=extra,
    )
    services.apply(project.ws)


def _moment(value: Any) -> dt.datetime:
    return value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))


def _log(record: dict[str, Any]) -> str:
    return Path(record["log"]).read_text(encoding="utf-8")


PAIRS = [
    ("sqlite", "sqlite"),
    ("sqlite", "postgresql"),
    ("sqlite", "mariadb"),
    ("postgresql", "postgresql"),  # a first load would be a binary COPY pass-through
    ("postgresql", "mariadb"),  # ... or a LOAD DATA from PostgreSQL
    ("mariadb", "sqlite"),
]


@pytest.mark.parametrize(("source_dialect", "target_dialect"), PAIRS, ids=[f"{s}-to-{t}" for s, t in PAIRS])
def test_a_backfill_reads_window_by_window_then_as_usual(
    project: Project, make_database: Any, source_dialect: str, target_dialect: str
) -> None:
    source: Database = make_database(source_dialect, "source")
    target: Database = make_database(target_dialect, "target")
    _seed(source, [*_rows(), (100, "no time", None)])
    # job-wide: every watermark task's start and window (the task states only its column)
    _job(
        project,
        source,
        target,
        "{strategy: watermark, column: at}",
        extra="  batch_size: 5\n  changes: {start: 2024-01-08, window: 7d}\n",
    )
    record = services.run(project.ws, "sync")
    assert record["status"] == "succeeded", record["error"]
    task = record["tasks"][0]
    windows = [(_moment(w["from"]), _moment(w["to"]), w["rows"]) for w in task["windows"]]
    day = dt.timedelta(days=1)
    assert windows == [
        (dt.datetime(2024, 1, 8), dt.datetime(2024, 1, 15), 14),
        (dt.datetime(2024, 1, 15), dt.datetime(2024, 1, 22), 14),
        (dt.datetime(2024, 1, 22), dt.datetime(2024, 1, 29), 14),
    ], windows
    # then as usual from the last window's end: the rows after it and the row without a time
    assert task["rows_read"] == 14 * 3 + 4 + 1 and task["inserted"] == 47
    assert _moment(json.loads(json.dumps(task["pointer_after"]))["value"]) == T0 + 29 * day + dt.timedelta(
        hours=12
    )
    assert "copied inside the databases" not in _log(record)  # windows apply to a first load too
    assert _log(record).count('"window done"') == 3
    got = sorted(int(r[0]) for r in target.fetch("SELECT id FROM events_copy"))
    assert got == [*range(15, ROWS + 1), 100]  # from 2024-01-08 00:00 (row 15) on, each once

    # caught up: new rows within a window of the pointer are read as by any watermark task (a
    # backlog longer than a window, after a long pause, would be read in windows again)
    with source.cursor() as c:
        m = source.mark
        c.executemany(
            f"INSERT INTO events (id, name, at) VALUES ({m}, {m}, {m})", _rows(61, 3, T0 + 31 * day)
        )
    again = services.run(project.ws, "sync")
    task = again["tasks"][0]
    assert again["status"] == "succeeded", again["error"]
    assert task["windows"] == [] and task["inserted"] == 3 and task["deleted"] == 0
    assert sorted(int(r[0]) for r in target.fetch("SELECT id FROM events_copy")) == [*range(15, 64), 100]


def test_a_numeric_column_in_windows_of_a_number(project: Project, make_database: Any) -> None:
    source: Database = make_database("sqlite", "source")
    target: Database = make_database("sqlite", "target")
    with source.cursor() as c:
        c.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, seq BIGINT)")
        c.executemany("INSERT INTO events VALUES (?, ?)", [(i, i * 10) for i in range(1, 101)])
    _job(project, source, target, "{strategy: watermark, column: seq, start: 100, window: 250}")
    record = services.run(project.ws, "sync")
    assert record["status"] == "succeeded", record["error"]
    task = record["tasks"][0]
    assert [(w["from"], w["to"], w["rows"]) for w in task["windows"]] == [
        ("100", "350", 25),
        ("350", "600", 25),
        ("600", "850", 25),
    ]
    assert task["inserted"] == 91  # seq 100 to 1000
    assert task["pointer_after"] == {"type": "integer", "value": "1000"}


@pytest.mark.parametrize("job_wide", [False, True])
def test_a_time_window_on_a_numeric_column_fails_at_its_field(
    project: Project, make_database: Any, job_wide: bool
) -> None:
    source: Database = make_database("sqlite", "source")
    target: Database = make_database("sqlite", "target")
    with source.cursor() as c:
        c.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, seq BIGINT)")
        c.execute("INSERT INTO events VALUES (1, 10)")
    backfill = "start: 2024-01-01, window: 7d"
    if job_wide:
        _job(
            project,
            source,
            target,
            "{strategy: watermark, column: seq}",
            extra=f"  changes: {{{backfill}}}\n",
        )
    else:
        _job(project, source, target, f"{{strategy: watermark, column: seq, {backfill}}}")
    record = services.run(project.ws, "sync")
    error = record["tasks"][0]["error"]
    assert record["status"] == "failed"
    # located where the start is stated: the job's `changes`, or the task's
    where = "spec.changes.start" if job_wide else "spec.tasks[0].changes.start"
    assert f"{where}: '2024-01-01' is a date or time, and the column holds numbers" in error, error
    assert target.fetch("SELECT name FROM sqlite_master WHERE name = 'events_copy'") == []


def test_a_start_without_a_window_is_where_a_first_load_begins(project: Project, make_database: Any) -> None:
    source: Database = make_database("postgresql", "source")
    target: Database = make_database("postgresql", "target")
    _seed(source, _rows())
    _job(project, source, target, "{strategy: watermark, column: at, start: '2024-01-29 12:00'}")
    record = services.run(project.ws, "sync")
    assert record["status"] == "succeeded", record["error"]
    assert record["tasks"][0]["windows"] == []
    assert sorted(int(r[0]) for r in target.fetch("SELECT id FROM events_copy")) == [58, 59, 60]
    assert "copied inside the databases" not in _log(record)  # a copy would take every row


# --- a killed backfill -------------------------------------------------------------------


def _sqlite_rows(path: Path) -> list[tuple]:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT id, name, at FROM events ORDER BY id").fetchall()
    finally:
        db.close()


@pytest.mark.parametrize("point", ["committed", "window"])
def test_a_killed_backfill_resumes_in_the_window_it_was_in(
    project: Project, tmp_path: Path, point: str
) -> None:
    """Killed after a batch of the first window committed (its pointer not yet moved), or just
    after the first window's end became the pointer: the next run reads on from there, in the
    same grid of windows, and the target ends equal to the source from the start on."""
    src, dst = project.root / "src.db", project.root / "dst.db"
    db = sqlite3.connect(src)
    db.execute(DDL["sqlite"])
    db.executemany("INSERT INTO events VALUES (?, ?, ?)", _rows())
    db.commit()
    db.close()
    project.connection("src", "sqlite", "sqlite:///src.db")
    project.connection("dst", "sqlite", "sqlite:///dst.db")
    project.job(
        "sync",
        "src",
        "dst",
        """
        - name: items
          read: {table: events}
          write: {table: events, keys: [id]}
          changes: {strategy: watermark, column: at, start: 2024-01-03, window: 5d}
          deletes: propagate
        """,
        extra="  batch_size: 4\n",
    )
    services.apply(project.ws)
    project.ws.close()
    kill_at(project, point, tmp_path)
    pointer = services.pointer_show(project.ws, "sync")[0]["pointer"]
    (killed,) = services.runs(project.ws, "sync")
    assert killed["status"] == "interrupted"
    (cut,) = killed["tasks"]
    if point == "window":  # the first window is done: its end is the pointer, its rows listed
        assert pointer == {"type": "text", "value": "2024-01-08 00:00:00"}
        assert cut["windows"] == [{"from": "2024-01-03 00:00:00", "to": "2024-01-08 00:00:00", "rows": 10}]
    else:
        assert pointer is None  # the batch committed, the pointer not yet recorded
        assert "windows" not in cut and cut["inserted"] == 4
    # meanwhile a row of the first window is updated (its time moves on) and one deleted
    db = sqlite3.connect(src)
    db.execute("UPDATE events SET name = 'changed', at = '2024-01-20 06:00:00' WHERE id = 6")
    db.execute("DELETE FROM events WHERE id = 7")
    db.commit()
    db.close()
    record = services.run(project.ws, "sync")
    assert record["status"] == "succeeded", record["error"]
    windows = [(w["from"], w["to"]) for w in record["tasks"][0]["windows"]]
    first = ("2024-01-08 00:00:00", "2024-01-13 00:00:00")
    assert windows[0] == (("2024-01-03 00:00:00", "2024-01-08 00:00:00") if point == "committed" else first)
    assert windows[-1] == ("2024-01-23 00:00:00", "2024-01-28 00:00:00")
    expected = [(i, name, _moment(at)) for i, name, at in _sqlite_rows(src) if at >= "2024-01-03"]
    got = [(i, name, _moment(at)) for i, name, at in _sqlite_rows(dst)]
    assert got == expected  # each row once, the update and the delete applied
    again = services.run(project.ws, "sync")["tasks"][0]
    assert (again["inserted"], again["updated"], again["deleted"], again["windows"]) == (0, 0, 0, [])


# --- the grid of windows -----------------------------------------------------------------


def test_windows_lie_on_a_grid_anchored_at_the_start() -> None:
    start = dt.datetime(2024, 1, 31)
    month = parse_window("1 month")
    # the end of the window holding a pointer is the same wherever in the window it is
    assert window_end(start, start, month) == dt.datetime(2024, 2, 29)  # clamped to February's end
    assert window_end(start, dt.datetime(2024, 2, 28, 23), month) == dt.datetime(2024, 2, 29)
    assert window_end(start, dt.datetime(2024, 2, 29), month) == dt.datetime(2024, 3, 31)
    assert window_end(start, dt.datetime(2024, 12, 31), parse_window("1y")) == dt.datetime(2025, 1, 31)
    week = parse_window("1w")
    assert window_end(start, dt.datetime(2024, 2, 3, 12), week) == dt.datetime(2024, 2, 7)
    # SQLite keeps times as text: boundaries are spelled as the column's values
    assert window_end("2024-01-01 00:00:00.000000", "2024-01-01 05:00:00.000000", parse_window("6h")) == (
        "2024-01-01 06:00:00.000000"
    )
    assert window_end("2024-01-01", "2024-01-09", parse_window("7d")) == "2024-01-15"
    assert window_end(Decimal("0.5"), Decimal("1.2"), parse_window("0.25")) == Decimal("1.25")
    assert window_end(100, 349, parse_window(250)) == 350
    with pytest.raises(WindowMismatch):
        window_end(dt.date(2024, 1, 1), dt.date(2024, 1, 2), parse_window("6h"))
    with pytest.raises(WindowMismatch):
        window_end(5, 6, parse_window("1d"))


def test_a_start_in_the_columns_terms() -> None:
    aware = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
    assert in_column_terms("2024-01-01", aware) == dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    assert in_column_terms("2024-01-01", "2024-03-01T10:00:00.123456") == "2024-01-01T00:00:00.000000"
    assert in_column_terms("2024-01-01 06:00", dt.date(2024, 3, 1)) == dt.date(2024, 1, 1)
    assert in_column_terms(5, Decimal("1.50")) == Decimal(5)
    with pytest.raises(WindowMismatch):
        in_column_terms("2024-01-01", 7)
