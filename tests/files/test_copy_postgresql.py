"""CSV files into PostgreSQL copy inside the database (`runner.transfer.files_postgresql`) and
land exactly as the batch path puts them: the same values for booleans written yes/no, time
stamps with offsets, quoted and unquoted NULL markers, gzip, the path and modified columns; a
file PostgreSQL refuses falls back to the batch path, which names the file, line and column."""

from __future__ import annotations

import datetime as dt
import gzip
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

COLUMNS = {
    "id": "bigint",
    "name": "varchar(20)",
    "amount": "decimal(10,2)",
    "paid": "boolean",
    "at": "timestamp",
    "at_utc": "timestamptz",
    "day": "date",
}
TEXT = (
    "id;name;amount;paid;at;at_utc;day\n"
    '1;"Zoë; ""Z""";12.5;yes;2024-02-29 10:00:00;2024-02-29T10:00:00+02:00;2024-02-29\n'
    '2;"NULL";NULL;N;2024-03-01T11:30:00.123456Z;2024-03-01 12:00:00;NULL\n'
    "3;;0.10;TRUE;2024-03-02 00:00:00+05:30;2024-03-02T00:00:00Z;2024-03-02\n"
)


def _rows(url: str, table: str) -> list[tuple]:
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql(f"SELECT * FROM {table} ORDER BY id")]
    finally:
        engine.dispose()


def _folder(tmp_path: Path) -> dict:
    (tmp_path / "in").mkdir(exist_ok=True)
    (tmp_path / "in/a.csv").write_text(TEXT.split("3;")[0])
    with gzip.open(tmp_path / "in/b.csv.gz", "wt") as f:
        f.write(TEXT.split("\n", 1)[0] + "\n3;" + TEXT.split("3;", 1)[1])
    return {"type": "files", "path": str(tmp_path / "in")}


def test_the_copy_lands_what_the_batch_path_does(sync, tmp_path, pg_url, monkeypatch):
    from runner.transfer.files_postgresql import FilesToPostgresql

    copies: list[int | None] = []
    original = FilesToPostgresql.copy

    def counted(self, *args, **kwargs):  # the path's own result, counted
        copies.append(original(self, *args, **kwargs))
        return copies[-1]

    monkeypatch.setattr(FilesToPostgresql, "copy", counted)
    source = _folder(tmp_path)
    target = {"type": "postgresql", "url": pg_url}
    read = {
        "files": "*.csv*",
        "format": "csv",
        "csv": {"delimiter": ";", "null": "NULL"},
        "columns": COLUMNS,
        "path_column": "file",
        "modified_column": "modified",
    }
    fast = {"name": "fast", "read": read, "write": {"table": "fast", "keys": ["id"]}}
    (copied,) = sync(source, target, [fast])
    assert copied.status == "succeeded" and copies == [3], (copied.error, copies)
    # the batch path for the same files: dead-lettered bad rows are the batch path's alone
    slow_read = {**read, "bad_rows": "dead_letter", "dead_letter": "rejected"}
    slow = {"name": "slow", "read": slow_read, "write": {"table": "slow", "keys": ["id"]}}
    (batched,) = sync(source, target, [slow])
    # (asked into the table, then into the staging table)
    assert batched.status == "succeeded" and set(copies[1:]) == {None}, (batched.error, copies)
    fast_rows, slow_rows = _rows(pg_url, "fast"), _rows(pg_url, "slow")
    assert fast_rows == slow_rows
    assert fast_rows[0][:7] == (
        1,
        'Zoë; "Z"',
        Decimal("12.50"),
        True,
        dt.datetime(2024, 2, 29, 10),
        dt.datetime(2024, 2, 29, 8, tzinfo=dt.UTC),
        dt.date(2024, 2, 29),
    )
    assert fast_rows[1][1:7] == (
        None,
        None,
        False,
        dt.datetime(2024, 3, 1, 11, 30, 0, 123456),
        dt.datetime(2024, 3, 1, 12, tzinfo=dt.UTC),
        None,
    )
    assert fast_rows[2][4] == dt.datetime(2024, 3, 1, 18, 30) and fast_rows[2][7] == "b.csv.gz"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("4;x;lots;y;2024-01-01;2024-01-01;2024-01-01\n", "c.csv:2: amount: "),
        ("4;x\n", "c.csv:2: 2 fields, expected 7"),
        ("4;x;1;y;01/02/2024 10:00;2024-01-01;2024-01-01\n", "c.csv:2: at: "),  # PostgreSQL would take it
    ],
)
def test_a_file_postgresql_refuses_is_named_by_the_batch_path(sync, tmp_path, pg_url, bad, message):
    (tmp_path / "in").mkdir()
    (tmp_path / "in/c.csv").write_text(TEXT.split("\n", 1)[0] + "\n" + bad)
    source = {"type": "files", "path": str(tmp_path / "in")}
    read = {"files": "c.csv", "format": "csv", "csv": {"delimiter": ";"}, "columns": COLUMNS}
    task = {"name": "t", "read": read, "write": {"table": "t", "keys": ["id"]}}
    (result,) = sync(source, {"type": "postgresql", "url": pg_url}, [task])
    assert result.status == "failed" and result.error.startswith(message), result.error


def test_a_watermark_first_load_copies_then_reads_only_new_files(sync, tmp_path, pg_url):
    import os
    import time

    (tmp_path / "in").mkdir()
    (tmp_path / "in/a.csv").write_text("id;name\n1;a\n2;b\n")
    source = {"type": "files", "path": str(tmp_path / "in")}
    read = {
        "files": "*.csv",
        "format": "csv",
        "csv": {"delimiter": ";"},
        "columns": {"id": "bigint", "name": "text"},
        "modified_column": "modified",
    }
    task = {
        "name": "t",
        "read": read,
        "write": {"table": "w", "keys": ["id"]},
        "changes": {"strategy": "watermark", "column": "modified"},
    }
    target = {"type": "postgresql", "url": pg_url}
    (first,) = sync(source, target, [task])
    assert (first.status, first.inserted) == ("succeeded", 2), first.error
    (tmp_path / "in/b.csv").write_text("id;name\n3;c\n")
    os.utime(tmp_path / "in/b.csv", (time.time() + 5, time.time() + 5))
    (second,) = sync(source, target, [task])
    assert second.status == "succeeded" and second.inserted == 1, second
    assert [r[:2] for r in _rows(pg_url, "w")] == [(1, "a"), (2, "b"), (3, "c")]


# no time of day with an offset in a file with a naive timestamp column: PostgreSQL reads every
# cell itself (an offset anywhere in such a file sends it the text route: see TEXT above)
DIRECT = (
    "id;name;amount;paid;at;at_utc;day\n"
    '1;"Zoë; ""東京""";12.5;yes;2024-02-29 10:00:00;2024-02-29T08:00:00;2024-02-29\n'
    '2;"NULL";NULL;N;2024-03-01T11:30:00.123456;2024-03-01 12:00:00;NULL\n'
    "3;;-0.10;TRUE;2024-03-02 00:00:00;2024-03-02T00:00:00;2024-03-02\n"
)


@pytest.mark.parametrize("added", [False, True], ids=["file-columns", "with-path-and-row"])
def test_the_direct_copy_lands_what_the_batch_path_does(sync, tmp_path, pg_url, monkeypatch, added):
    from runner.transfer.files_postgresql import FilesToPostgresql

    direct: list[int | None] = []
    original = FilesToPostgresql._direct

    def counted(self, *args, **kwargs):
        direct.append(original(self, *args, **kwargs))
        return direct[-1]

    monkeypatch.setattr(FilesToPostgresql, "_direct", counted)
    (tmp_path / "in").mkdir()
    (tmp_path / "in/a.csv").write_text(DIRECT.split("3;")[0])
    with gzip.open(tmp_path / "in/b.csv.gz", "wt") as f:
        f.write(DIRECT.split("\n", 1)[0] + "\n3;" + DIRECT.split("3;", 1)[1])
    source = {"type": "files", "path": str(tmp_path / "in")}
    target = {"type": "postgresql", "url": pg_url}
    read = {"files": "*.csv*", "format": "csv", "csv": {"delimiter": ";", "null": "NULL"}, "columns": COLUMNS}
    if added:
        read |= {"path_column": "file", "row_column": "line", "modified_column": "modified"}
    fast = {"name": "fast", "read": read, "write": {"table": "fast", "keys": ["id"]}}
    (copied,) = sync(source, target, [fast])
    assert copied.status == "succeeded" and direct == [2, 1], (copied.error, direct)
    slow_read = {**read, "bad_rows": "dead_letter", "dead_letter": "rejected"}
    slow = {"name": "slow", "read": slow_read, "write": {"table": "slow", "keys": ["id"]}}
    (batched,) = sync(source, target, [slow])
    assert batched.status == "succeeded" and direct == [2, 1], (batched.error, direct)
    fast_rows, slow_rows = _rows(pg_url, "fast"), _rows(pg_url, "slow")
    assert fast_rows == slow_rows
    assert fast_rows[0][:7] == (
        1,
        'Zoë; "東京"',
        Decimal("12.50"),
        True,
        dt.datetime(2024, 2, 29, 10),
        dt.datetime(2024, 2, 29, 8, tzinfo=dt.UTC),
        dt.date(2024, 2, 29),
    )
    assert fast_rows[1][1:3] == (None, None) and fast_rows[1][6] is None
    assert fast_rows[2][4:6] == (dt.datetime(2024, 3, 2), dt.datetime(2024, 3, 2, tzinfo=dt.UTC))


def test_a_repeated_key_copied_straight_in_is_named_by_the_batch_path(sync, tmp_path, pg_url):
    (tmp_path / "in").mkdir()
    (tmp_path / "in/a.csv").write_text("id;name\n1;a\n2;b\n1;c\n")
    source = {"type": "files", "path": str(tmp_path / "in")}
    read = {
        "files": "a.csv",
        "format": "csv",
        "csv": {"delimiter": ";"},
        "columns": {"id": "bigint", "name": "text"},
    }
    task = {"name": "t", "read": read, "write": {"table": "rep", "keys": ["id"]}}
    (result,) = sync(source, {"type": "postgresql", "url": pg_url}, [task])
    assert result.status == "failed" and "key id=1: the source has this key more than once" in result.error


def test_offsets_into_timestamptz_columns_copy_directly(sync, tmp_path, pg_url, monkeypatch):
    from runner.transfer.files_postgresql import FilesToPostgresql

    direct: list[int | None] = []
    original = FilesToPostgresql._direct
    monkeypatch.setattr(
        FilesToPostgresql,
        "_direct",
        lambda self, *a, **k: direct.append(original(self, *a, **k)) or direct[-1],
    )
    (tmp_path / "in").mkdir()
    (tmp_path / "in/a.csv").write_text(
        "id,at\n1,2024-02-29T10:00:00+02:00\n2,2024-03-01 12:00:00\n3,2024-03-02T00:00Z\n"
    )
    source = {"type": "files", "path": str(tmp_path / "in")}
    read = {"files": "a.csv", "format": "csv", "columns": {"id": "bigint", "at": "timestamptz"}}
    task = {"name": "t", "read": read, "write": {"table": "tz", "keys": ["id"]}}
    (result,) = sync(source, {"type": "postgresql", "url": pg_url}, [task])
    assert result.status == "succeeded" and direct == [3], (result.error, direct)
    assert [r[1] for r in _rows(pg_url, "tz")] == [
        dt.datetime(2024, 2, 29, 8, tzinfo=dt.UTC),
        dt.datetime(2024, 3, 1, 12, tzinfo=dt.UTC),  # naive: UTC
        dt.datetime(2024, 3, 2, tzinfo=dt.UTC),
    ]


def _catalog(url: str, table: str) -> tuple[list, list]:
    """The table's column defaults and its constraints' definitions."""
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            defaults = list(
                conn.exec_driver_sql(
                    "SELECT column_name FROM information_schema.columns "
                    f"WHERE table_name = '{table}' AND column_default IS NOT NULL"
                )
            )
            keys = [
                r[0]
                for r in conn.exec_driver_sql(
                    "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                    f"WHERE conrelid = '{table}'::regclass"
                )
            ]
            return defaults, keys
    finally:
        engine.dispose()


def test_path_and_row_are_filled_by_the_copy_into_a_new_table_and_by_a_move_into_another(
    sync, tmp_path, pg_url, monkeypatch
):
    """Into a table the copy's transaction made, the path and row columns are the COPY's own
    (defaults for its length) and the key is built after it; into a table that was there, the
    file goes through a temporary table (no lock on the user's table): the same rows, and
    neither table keeps a default or loses its key."""
    from runner.transfer.files_postgresql import FilesToPostgresql

    held: list[bool] = []
    original = FilesToPostgresql._held
    monkeypatch.setattr(
        FilesToPostgresql, "_held", staticmethod(lambda *a: held.append(original(*a)) or held[-1])
    )
    (tmp_path / "in").mkdir()
    (tmp_path / "in/a.csv").write_text("id,name\n1,x\n2,y\n")
    (tmp_path / "in/b.csv").write_text("id,name\n3,z\n")
    engine = sa.create_engine(pg_url, poolclass=sa.NullPool)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE was_there (id bigint PRIMARY KEY, name text, file text, line bigint)"
        )
    engine.dispose()
    source = {"type": "files", "path": str(tmp_path / "in")}
    read = {
        "files": "*.csv",
        "format": "csv",
        "columns": {"id": "bigint", "name": "text"},
        "path_column": "file",
        "row_column": "line",
    }
    tasks = [
        {"name": table, "read": read, "write": {"table": table, "keys": ["id"]}}
        for table in ("made", "was_there")
    ]
    results = sync(source, {"type": "postgresql", "url": pg_url}, tasks)
    assert [r.status for r in results] == ["succeeded", "succeeded"], [r.error for r in results]
    assert held == [True, False]
    expected = [(1, "x", "a.csv", 1), (2, "y", "a.csv", 2), (3, "z", "b.csv", 1)]
    assert _rows(pg_url, "made") == _rows(pg_url, "was_there") == expected
    for table in ("made", "was_there"):
        assert _catalog(pg_url, table) == ([], ["PRIMARY KEY (id)"]), table
