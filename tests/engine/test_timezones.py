"""`read.timezone`: timestamps without a zone are read as wall-clock times of the zone and
written as UTC, across the changes of the clocks; the watermark pointer stays in the source's
own terms; copies and comparisons inside the databases are not made (they would pass the
conversion by)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from runner import services
from tests.conftest import Project
from tests.engine.conftest import Database

UTC = dt.UTC
DDL = {
    "sqlite": "CREATE TABLE events (id INTEGER PRIMARY KEY, at TIMESTAMP)",
    "postgresql": "CREATE TABLE events (id integer PRIMARY KEY, at timestamp)",
    "mariadb": "CREATE TABLE events (id int PRIMARY KEY, at datetime(6))",
}
# Berlin wall-clock times around both changes of 2024, and the instants runner reads them as
BERLIN = [
    (1, "2024-03-31 01:30:00", dt.datetime(2024, 3, 31, 0, 30, tzinfo=UTC)),  # winter time, +01:00
    (2, "2024-03-31 02:30:00", dt.datetime(2024, 3, 31, 1, 30, tzinfo=UTC)),  # skipped: read at +01:00
    (3, "2024-03-31 03:30:00", dt.datetime(2024, 3, 31, 1, 30, tzinfo=UTC)),  # summer time, +02:00
    (4, "2024-10-27 02:30:00", dt.datetime(2024, 10, 27, 0, 30, tzinfo=UTC)),  # twice: the first, +02:00
    (5, "2024-10-27 03:30:00", dt.datetime(2024, 10, 27, 2, 30, tzinfo=UTC)),  # winter time again
    (6, None, None),
]


def _instant(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, str):  # SQLite: ISO text with its offset
        value = dt.datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _seed(db: Database, rows: list[tuple[int, str | None]]) -> None:
    with db.cursor() as c:
        c.execute(DDL[db.dialect])
        c.executemany(f"INSERT INTO events (id, at) VALUES ({db.mark}, {db.mark})", rows)


def _target_type(db: Database) -> str:
    if db.dialect == "sqlite":
        return next(r[2] for r in db.fetch("PRAGMA table_info(events_copy)") if r[1] == "at")
    return db.fetch(
        "SELECT data_type FROM information_schema.columns "
        "WHERE table_name = 'events_copy' AND column_name = 'at'"
    )[0][0]


PAIRS = [
    ("sqlite", "sqlite"),
    ("sqlite", "postgresql"),
    ("sqlite", "mariadb"),
    ("postgresql", "postgresql"),  # the binary COPY pass-through is not made
    ("postgresql", "mariadb"),  # nor the LOAD DATA from PostgreSQL
    ("mariadb", "postgresql"),
    ("mariadb", "mariadb"),
]


@pytest.mark.parametrize(("source_dialect", "target_dialect"), PAIRS, ids=[f"{s}-to-{t}" for s, t in PAIRS])
def test_times_of_a_zone_are_written_as_utc_across_the_clock_changes(
    project: Project, make_database: Any, source_dialect: str, target_dialect: str
) -> None:
    source: Database = make_database(source_dialect, "source")
    target: Database = make_database(target_dialect, "target")
    _seed(source, [(i, text) for i, text, _ in BERLIN])
    project.connection("source", source.dialect, source.url)
    project.connection("target", target.dialect, target.url)
    project.job(
        "sync",
        "source",
        "target",
        """
        - name: events
          read: {table: events}
          write: {table: events_copy, keys: [id]}
          changes: {strategy: watermark, column: at}
        """,
        extra="  read: {timezone: Europe/Berlin}\n",  # job-wide
    )
    services.apply(project.ws)
    record = services.run(project.ws, "sync")
    assert record["status"] == "succeeded", record["error"]
    assert "copied inside the databases" not in Path(record["log"]).read_text(encoding="utf-8")
    got = sorted((int(i), _instant(at)) for i, at in target.fetch("SELECT id, at FROM events_copy"))
    assert got == [(i, instant) for i, _, instant in BERLIN]
    assert _target_type(target).lower() in ("timestamptz", "timestamp with time zone", "datetime")
    task = record["tasks"][0]
    assert next(c["type"] for c in task["columns"] if c["name"] == "at") == "timestamptz"
    # the pointer is the source's own value (Berlin time), never the converted one
    pointer = task["pointer_after"]
    assert dt.datetime.fromisoformat(pointer["value"]) == dt.datetime(2024, 10, 27, 3, 30), pointer

    # the next run compares that pointer with the column as it is: the row at the pointer is
    # read again and found unchanged, the new one (04:00 Berlin, 03:00 UTC) is read once
    with source.cursor() as c:
        c.execute(f"INSERT INTO events (id, at) VALUES (7, {source.mark})", ("2024-10-27 04:00:00",))
    again = services.run(project.ws, "sync")["tasks"][0]
    assert (again["rows_read"], again["inserted"], again["updated"], again["unchanged"]) == (3, 1, 0, 2)
    assert _instant(target.fetch("SELECT at FROM events_copy WHERE id = 7")[0][0]) == dt.datetime(
        2024, 10, 27, 3, 0, tzinfo=UTC
    )


@pytest.mark.parametrize("strategy", ["hash", "full"])
def test_hash_and_full_with_a_zone_find_nothing_changed_on_the_next_run(
    project: Project, make_database: Any, strategy: str
) -> None:
    """PostgreSQL to PostgreSQL would compare rows (hash) or copy them (first load) inside the
    databases, where the target's UTC values meet the source's Berlin ones: with a zone, rows
    go through Python, and a second run finds every row unchanged."""
    source: Database = make_database("postgresql", "source")
    target: Database = make_database("postgresql", "target")
    _seed(source, [(i, text) for i, text, _ in BERLIN])
    project.connection("source", "postgresql", source.url)
    project.connection("target", "postgresql", target.url)
    project.job(
        "sync",
        "source",
        "target",
        f"""
        - name: events
          read: {{table: events, timezone: Europe/Berlin}}
          write: {{table: events_copy, keys: [id]}}
          changes: {{strategy: {strategy}}}
          deletes: propagate
        """,
    )
    services.apply(project.ws)
    first = services.run(project.ws, "sync")
    assert first["status"] == "succeeded", first["error"]
    assert first["tasks"][0]["inserted"] == len(BERLIN)
    again = services.run(project.ws, "sync")["tasks"][0]
    assert (again["inserted"], again["updated"], again["deleted"]) == (0, 0, 0), again
    got = sorted((int(i), _instant(at)) for i, at in target.fetch("SELECT id, at FROM events_copy"))
    assert got == [(i, instant) for i, _, instant in BERLIN]


def test_a_column_with_a_zone_is_left_as_it_is(project: Project, make_database: Any) -> None:
    """Only timestamps without a zone are read in the stated one: a timestamptz is an instant."""
    source: Database = make_database("postgresql", "source")
    target: Database = make_database("sqlite", "target")
    with source.cursor() as c:
        c.execute("CREATE TABLE events (id integer PRIMARY KEY, at timestamp, seen timestamptz)")
        c.execute("INSERT INTO events VALUES (1, '2024-07-01 12:00', '2024-07-01 12:00+00')")
    project.connection("source", "postgresql", source.url)
    project.connection("target", "sqlite", target.url)
    project.job(
        "sync",
        "source",
        "target",
        """
        - name: events
          read: {table: events, timezone: America/New_York}
          write: {table: events_copy, keys: [id]}
        """,
    )
    services.apply(project.ws)
    assert services.run(project.ws, "sync")["status"] == "succeeded"
    ((at, seen),) = target.fetch("SELECT at, seen FROM events_copy")
    assert _instant(at) == dt.datetime(2024, 7, 1, 16, 0, tzinfo=UTC)  # EDT, -04:00
    assert _instant(seen) == dt.datetime(2024, 7, 1, 12, 0, tzinfo=UTC)


def test_without_a_zone_timestamps_are_copied_as_they_are(project: Project, make_database: Any) -> None:
    source: Database = make_database("sqlite", "source")
    target: Database = make_database("postgresql", "target")
    _seed(source, [(1, "2024-03-31 02:30:00")])
    project.connection("source", "sqlite", source.url)
    project.connection("target", "postgresql", target.url)
    project.job(
        "sync", "source", "target", "- {name: events, read: {table: events}, write: {table: events_copy}}"
    )
    services.apply(project.ws)
    assert services.run(project.ws, "sync")["status"] == "succeeded"
    assert target.fetch("SELECT at FROM events_copy") == [(dt.datetime(2024, 3, 31, 2, 30),)]
    assert _target_type(target) == "timestamp without time zone"
