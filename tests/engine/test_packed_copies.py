"""Copies whose rows PostgreSQL packs into a few large values (`text_pieces` for MariaDB,
`copy_packed` arrays between PostgreSQL databases): several pieces, every character LOAD
DATA treats specially, and the thread that reads the next piece while the last one loads."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from runner import services
from runner.connectors import registry
from runner.streams.readahead import ReadAhead

LINES_PER_PIECE = 5_000  # runner.connectors.sql.postgresql's


def kind_module(name: str):
    """A kind's module, imported the registry's way (importing it first here would register
    it before the others and change the JSON schema's order)."""
    return sys.modules[registry.kinds()[name].connector.__module__]


HOSTILE = ["cr\rlf\r\nend", "tab\there", "back\\slash \\N \\t", "\\", "", "line\n", "ü 東京 🎁", None]


def test_postgresql_to_mariadb_in_pieces(project, pg_url, maria_url):
    assert kind_module("postgresql").LINES_PER_PIECE == LINES_PER_PIECE
    rows = LINES_PER_PIECE * 2 + 17  # three pieces
    src = sa.create_engine(pg_url)
    with src.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE src (id integer, note text, code varchar(10), raw bytea)")
        conn.exec_driver_sql(
            "INSERT INTO src SELECT g, 'row ' || g, 'c' || g, decode('00ff0a09', 'hex') "
            "FROM generate_series(1, %s) g",
            (rows - len(HOSTILE),),
        )
        for i, text in enumerate(HOSTILE):
            conn.exec_driver_sql(
                "INSERT INTO src VALUES (%s, %s, %s, NULL)", (-i, text, None if text is None else text[:10])
            )
    project.connection("src", "postgresql", pg_url)
    project.connection("dst", "mariadb", maria_url)
    project.job("sync", "src", "dst", "- {name: t, read: {table: src}, write: {table: dst}}")
    services.apply(project.ws)
    record = services.run(project.ws, "sync")
    assert record["status"] == "succeeded", record["error"]
    assert record["tasks"][0]["inserted"] == rows
    assert "copied inside the databases" in Path(record["log"]).read_text()
    with src.connect() as conn:
        expected = sorted(
            (i, n, c, None if r is None else bytes(r))
            for i, n, c, r in conn.exec_driver_sql("SELECT id, note, code, raw FROM src")
        )
    dst = sa.create_engine(maria_url)
    with dst.connect() as conn:
        got = sorted(
            (i, n, c, None if r is None else bytes(r))
            for i, n, c, r in conn.exec_driver_sql("SELECT id, note, code, raw FROM dst")
        )
    assert got == expected
    src.dispose()
    dst.dispose()


def test_read_ahead_raises_the_producers_error():
    def items():
        yield b"one"
        raise RuntimeError("the source went away")

    got = []
    with pytest.raises(RuntimeError, match="went away"):
        for item in ReadAhead(items()):
            got.append(item)
    assert got == [b"one"]


def test_read_ahead_stops_and_closes_its_source_when_left_early():
    closed = threading.Event()

    def items():
        try:
            for i in range(1000):
                yield str(i).encode()
        finally:
            closed.set()

    ahead = ReadAhead(items())
    stream = iter(ahead)
    assert next(stream) == b"0"
    stream.close()  # what a failed LOAD DATA does: leave the loop
    assert closed.is_set()
    assert not any(t.name == "runner-read-ahead" for t in threading.enumerate())


def test_read_ahead_closed_before_it_is_read():
    """copy_packed starts the source before its own statements; one of them failing closes
    the read-ahead unread, which must stop the thread and free the source's connection."""
    closed = threading.Event()

    def items():
        try:
            while True:
                yield b"x"
        finally:
            closed.set()

    ReadAhead(items()).close()
    assert closed.is_set()
