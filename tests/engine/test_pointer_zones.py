"""A watermark on a PostgreSQL `timestamptz` column keeps the column's type and zone on every
path, whatever the target: the in-database first load (PostgreSQL to MariaDB or PostgreSQL),
then batches. The source database's time zone is west of UTC, so a pointer that lost its zone
would be read back as a later instant and skip rows (or fail to compare with the column)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
import sqlalchemy as sa

from runner import services
from tests.conftest import Project
from tests.engine.conftest import Database

T0 = dt.datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)


def _instant(dialect: str, value: Any) -> dt.datetime:
    if isinstance(value, str):  # SQLite: ISO text in UTC
        value = dt.datetime.fromisoformat(value)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


@pytest.mark.parametrize("target_dialect", ["mariadb", "postgresql", "sqlite"])
def test_timestamptz_pointer_keeps_its_zone(
    project: Project, make_database: Any, target_dialect: str
) -> None:
    source: Database = make_database("postgresql", "source")
    target: Database = make_database(target_dialect, "target")
    name = sa.make_url(source.url).database
    with source.cursor() as c:
        c.execute(f"ALTER DATABASE \"{name}\" SET timezone = 'America/New_York'")  # UTC-5 in March
    with source.cursor() as c:
        c.execute("CREATE TABLE events (id integer PRIMARY KEY, at timestamptz NOT NULL)")
    project.connection("source", "postgresql", source.url)
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
    )
    services.apply(project.ws)
    rows: list[tuple[int, dt.datetime]] = []
    # first load; new rows minutes later (within the zone's 5 hours); new rows hours later
    for round_, (count, step) in enumerate([(5, dt.timedelta(minutes=1)), (3, dt.timedelta(minutes=10)),
                                            (3, dt.timedelta(hours=7))]):  # fmt: skip
        start = rows[-1][1] if rows else T0
        new = [(len(rows) + i + 1, start + step * (i + 1)) for i in range(count)]
        with source.cursor() as c:
            c.executemany("INSERT INTO events (id, at) VALUES (%s, %s)", new)
        rows += new
        record = services.run(project.ws, "sync")
        assert record["status"] == "succeeded", f"round {round_ + 1}: {record['error']}"
        got = sorted(
            (int(i), _instant(target.dialect, at)) for i, at in target.fetch("SELECT id, at FROM events_copy")
        )
        assert got == rows, f"round {round_ + 1}: the target has {len(got)} of {len(rows)} rows"
        pointer = record["tasks"][0]["pointer_after"]
        assert pointer["type"] == "datetime" and re.search(r"[+-]\d\d:\d\d$", pointer["value"]), pointer
        assert dt.datetime.fromisoformat(pointer["value"]) == rows[-1][1]


def test_a_pointer_kept_without_its_zone_reads_as_utc(project: Project, make_database: Any) -> None:
    """A pointer an older runner stored without its zone (UTC from MariaDB's DATETIME) is read
    as UTC: the next run neither skips the rows after it nor fails to compare."""
    source: Database = make_database("postgresql", "source")
    target: Database = make_database("mariadb", "target")
    name = sa.make_url(source.url).database
    with source.cursor() as c:
        c.execute(f"ALTER DATABASE \"{name}\" SET timezone = 'America/New_York'")
    with source.cursor() as c:
        c.execute("CREATE TABLE events (id integer PRIMARY KEY, at timestamptz NOT NULL)")
        c.execute("INSERT INTO events VALUES (1, %s)", (T0,))
    project.connection("source", "postgresql", source.url)
    project.connection("target", "mariadb", target.url)
    task = "- {name: events, read: {table: events}, write: {table: events_copy, keys: [id]}, "
    project.job("sync", "source", "target", task + "changes: {strategy: watermark, column: at}}")
    services.apply(project.ws)
    assert services.run(project.ws, "sync")["status"] == "succeeded"
    store = project.ws.store()
    state = store.tasks.state("default", "sync", "events")
    store.tasks.set_pointer(
        state.id, "at", {"type": "datetime", "value": T0.replace(tzinfo=None).isoformat()}, "old"
    )
    with source.cursor() as c:  # 10 minutes past the pointer: within the 5 hours a local reading would skip
        c.execute("INSERT INTO events VALUES (2, %s), (3, %s)", (T0 + dt.timedelta(minutes=10), T0 + 7 * H))
    record = services.run(project.ws, "sync")
    assert record["status"] == "succeeded", record["error"]
    assert target.fetch("SELECT id FROM events_copy ORDER BY id") == [(1,), (2,), (3,)]
    assert dt.datetime.fromisoformat(record["tasks"][0]["pointer_after"]["value"]) == T0 + 7 * H


H = dt.timedelta(hours=1)
