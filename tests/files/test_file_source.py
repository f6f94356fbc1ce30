"""A folder as a source: the files matching a pattern read in order of their modified time, CSV
by its stated dialect and columns, JSON lines and Parquet; a watermark on the files' modified
time reads only what changed; a row that does not fit names its file, line and column."""

from __future__ import annotations

import gzip
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner import services
from runner.errors import DefinitionsInvalid
from tests.contract import canonical
from tests.contract.harness import Harness, make_harness
from tests.contract.test_messaging import _canonical

COLUMNS = {"id": "bigint", "name": "varchar(20)", "amount": "decimal(10,2)", "active": "boolean"}


@pytest.fixture
def copy(request: pytest.FixtureRequest, tmp_path) -> Iterator[Harness]:
    h = make_harness("memory", request, tmp_path)
    yield h
    for clean in h.cleanup:
        clean()


def _folder(tmp_path: Path) -> dict[str, Any]:
    (tmp_path / "in").mkdir(exist_ok=True)
    return {"type": "files", "path": str(tmp_path / "in")}


def _task(read: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": "t", "read": read, "write": {"table": "items", "keys": ["id"]}, **extra}


def test_csv_files_are_read_by_their_dialect_and_columns(copy, sync, tmp_path):
    source = _folder(tmp_path)
    (tmp_path / "in/a.csv").write_text('id;name;amount;active\n1;"Ana; A";12.50;true\n2;NULL;0.10;f\n')
    with gzip.open(tmp_path / "in/b.csv.gz", "wt") as f:  # gunzipped by its name
        f.write('id;name;amount;active\n3;"Zoë ""Z""";-1;yes\n')
    read = {
        "files": "*.csv*",
        "format": "csv",
        "csv": {"delimiter": ";", "null": "NULL"},
        "columns": COLUMNS,
        "path_column": "file",
    }
    (result,) = sync(source, copy.spec, [_task(read)])
    assert result.status == "succeeded", result.error
    from decimal import Decimal

    assert copy.rows("items") == [
        (1, "Ana; A", Decimal("12.50"), True, "a.csv"),
        (2, None, Decimal("0.10"), False, "a.csv"),
        (3, 'Zoë "Z"', Decimal("-1"), True, "b.csv.gz"),
    ]


def test_a_headerless_csv_takes_the_columns_in_their_stated_order(project):
    project.connection("dst", "sqlite", "sqlite:///dst.db")
    project.write(
        "connections.d/in.yaml",
        "apiVersion: runner/v1\nkind: Connection\nmetadata: {name: in}\nspec: {type: files, path: in}\n",
    )
    (project.root / "in").mkdir()
    (project.root / "in/x.csv").write_text("7,Ana,1.00,true\n")
    project.job(
        "load",
        "in",
        "dst",
        """
        - name: t
          read:
            files: "*.csv"
            format: csv
            csv: {header: false}
            columns: {id: bigint, name: text, amount: "decimal(5,2)", active: boolean}
          write: {table: items, keys: [id]}
        """,
    )
    services.apply(project.ws)
    assert services.run(project.ws, "load")["status"] == "succeeded"
    import sqlite3

    db = sqlite3.connect(project.root / "dst.db")
    assert db.execute("SELECT id, name, amount, active FROM items").fetchall() == [(7, "Ana", 1, 1)]


def test_parquet_written_by_runner_reads_back_every_canonical_value(mem, copy, sync, tmp_path):
    lake = _folder(tmp_path)
    mem.seed("items", canonical.COLUMNS, canonical.rows())
    write = {
        "name": "t",
        "read": {"table": "items"},
        "write": {"keys": ["id"], "format": "parquet", "operation_column": None},
    }
    (written,) = sync(mem.spec, lake, [write], batch_size=100)
    assert written.status == "succeeded", written.error
    types = {c.name: str(c.type) for c in canonical.COLUMNS}
    (read,) = sync(lake, copy.spec, [_task({"files": "**/*.parquet", "format": "parquet", "columns": types})])
    assert read.status == "succeeded", read.error
    assert copy.rows("items") == [_canonical(r) for r in canonical.rows()]


def test_a_watermark_on_the_modified_time_reads_only_changed_files(copy, sync, tmp_path):
    source = _folder(tmp_path)
    first = tmp_path / "in/1.jsonl"
    first.write_text('{"id": 1, "name": "a", "amount": 1, "active": true}\n')
    os.utime(first, (time.time() - 60, time.time() - 60))
    read = {"files": "*.jsonl", "format": "jsonl", "columns": COLUMNS, "modified_column": "seen"}
    task = _task(read, changes={"strategy": "watermark", "column": "seen"})
    (one,) = sync(source, copy.spec, [task])
    assert (one.status, one.rows_read) == ("succeeded", 1), one.error
    (tmp_path / "in/2.jsonl").write_text('{"id": 2, "name": "b", "amount": "2.5", "active": false}\n')
    (two,) = sync(source, copy.spec, [task])
    # the new file, and the one modified at the pointer again (a file written in that same
    # instant after the last run read the folder is never missed): upserted, unchanged
    assert (two.rows_read, two.inserted, two.unchanged) == (2, 1, 1)
    assert [r[0] for r in copy.rows("items")] == [1, 2]


def test_a_row_that_does_not_fit_names_its_file_line_and_column(copy, sync, tmp_path):
    source = _folder(tmp_path)
    (tmp_path / "in/bad.csv").write_text("id,name,amount,active\n1,a,1,true\n2,b,lots,true\n")
    (tmp_path / "in/ragged.csv").write_text("id,name,amount,active\n1,a,1\n")
    for name, message in (
        ("bad.csv", "bad.csv:3: amount: "),
        ("ragged.csv", "ragged.csv:2: 3 fields, expected 4"),
    ):
        read = {"files": name, "format": "csv", "columns": COLUMNS}
        (result,) = sync(source, copy.spec, [_task(read)])
        assert result.status == "failed" and message in result.error, result.error
    assert copy.rows("items") == []


def test_file_reads_are_checked_where_they_are_defined(project):
    project.connection("dst", "sqlite", "sqlite:///dst.db")
    project.write(
        "connections.d/in.yaml",
        "apiVersion: runner/v1\nkind: Connection\nmetadata: {name: in}\nspec: {type: files, path: in}\n",
    )
    project.job(
        "load",
        "in",
        "dst",
        """
        - {name: a, read: {files: "../etc/*", format: parquet}, write: {table: a}}
        - {name: b, read: {files: "*.csv", format: csv, csv: {header: false}}, write: {table: b}}
        - name: c
          read: {files: "*.jsonl", format: jsonl, columns: {id: bigint, at: timestamp}}
          write: {table: c, keys: [id]}
          changes: {strategy: watermark, column: at}
        """,
    )
    with pytest.raises(DefinitionsInvalid) as info:
        services.validate(project.ws)
    found = sorted((p.location.field, p.message) for p in info.value.problems)
    assert found[0] == (
        "spec.tasks[0].read.files",
        "'../etc/*' leaves the folder: a pattern is relative to it, without '..'",
    )
    assert found[1] == (
        "spec.tasks[1].read",
        "a CSV without a header needs 'columns' (name: type), in the files' order",
    )
    assert (
        found[2][0] == "spec.tasks[2]"
        and "a watermark over files reads the files changed since" in found[2][1]
    )


def test_unstated_columns_are_inferred_from_a_sample_of_the_first_file(copy, sync, tmp_path):
    import datetime as dt
    from decimal import Decimal

    source = _folder(tmp_path)
    (tmp_path / "in/a.csv").write_text(
        "id,amount,big,ratio,paid,day,at,at_utc,note,empty\n"
        "1,12.50,9007199254740993,1e3,true,2024-02-29,2024-02-29 10:00:00,2024-02-29T10:00:00Z,x,\n"
        "2,-0.125,1,2.5,false,2024-03-01,2024-03-01T11:30:00,2024-03-01T12:00:00+02:00,007,\n"
    )
    (tmp_path / "in/b.jsonl").write_text(
        '{"id": 1, "tags": ["a"], "price": 1.10, "ok": true}\n{"id": 2, "price": 3}\n'
    )
    (csv_task,) = sync(source, copy.spec, [_task({"files": "*.csv", "format": "csv"})])
    assert csv_task.status == "succeeded", csv_task.error
    assert {c["name"]: c["type"] for c in csv_task.columns} == {
        "id": "bigint",
        "amount": "decimal(5,3)",  # 12.50 and -0.125: two digits before the point, three after
        "big": "bigint",
        "ratio": "double",
        "paid": "boolean",
        "day": "date",
        "at": "timestamp",
        "at_utc": "timestamptz",
        "note": "text",  # 007 and x: text keeps the leading zeros
        "empty": "text",
    }
    first = copy.rows("items")[0]
    assert first[:8] == (
        1,
        Decimal("12.500"),
        9007199254740993,
        1000.0,
        True,
        dt.date(2024, 2, 29),
        dt.datetime(2024, 2, 29, 10),
        dt.datetime(2024, 2, 29, 10),
    )
    task = {**_task({"files": "*.jsonl", "format": "jsonl"}), "write": {"table": "j", "keys": ["id"]}}
    (jsonl,) = sync(source, copy.spec, [task])
    assert {c["name"]: c["type"] for c in jsonl.columns} == {
        "id": "bigint",
        "tags": "json",
        "price": "decimal(3,2)",
        "ok": "boolean",
    }
    assert copy.rows("j") == [(1, ["a"], Decimal("1.10"), True), (2, None, Decimal("3"), None)]


def test_bad_rows_go_to_the_dead_letters_and_the_rest_loads(copy, sync, tmp_path):
    source = _folder(tmp_path)
    (tmp_path / "in/a.csv").write_text(
        "id,name,amount,active\n1,a,1,true\n2,b,lots,true\n3,c,3\n4,d,4,false\n"
    )
    (tmp_path / "in/good.parquet").write_bytes(b"")  # named like one, but not a Parquet file
    read = {
        "files": "a.csv",
        "format": "csv",
        "columns": COLUMNS,
        "bad_rows": "dead_letter",
        "dead_letter": "rejected",
    }
    (result,) = sync(source, copy.spec, [_task(read)])
    assert result.status == "succeeded", result.error
    assert [r[0] for r in copy.rows("items")] == [1, 4]
    lines = [json.loads(x) for x in (tmp_path / "in/rejected/a.csv.rejected").read_text().splitlines()]
    assert [(x["line"], x["raw"]) for x in lines] == [(3, ["2", "b", "lots", "true"]), (4, ["3", "c", "3"])]
    assert lines[0]["reason"].startswith("amount: ") and lines[1]["reason"] == "3 fields, expected 4"
    parquet = {
        "files": "*.parquet",
        "format": "parquet",
        "columns": COLUMNS,
        "bad_rows": "dead_letter",
        "dead_letter": "rejected",
    }
    (whole,) = sync(source, copy.spec, [{**_task(parquet), "write": {"table": "p", "keys": ["id"]}}])
    assert whole.status == "succeeded" and whole.rows_read == 0
    (entry,) = [
        json.loads(x) for x in (tmp_path / "in/rejected/good.parquet.rejected").read_text().splitlines()
    ]
    assert entry["line"] is None and entry["reason"].startswith("not a readable Parquet file")
