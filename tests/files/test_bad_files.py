"""Bad files say where they go wrong, as `file path:line: column: message`: a ragged CSV row, text
not in its encoding, a value that does not fit its column, a truncated Parquet file, a JSON
array cut short. And a big CSV streams: a ~200 MB file is read with a bounded peak memory."""

from __future__ import annotations

import gzip
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tests.contract.harness import Harness, make_harness

COLUMNS = {"id": "bigint", "name": "text", "amount": "decimal(10,2)"}


@pytest.fixture
def copy(request: pytest.FixtureRequest, tmp_path) -> Iterator[Harness]:
    h = make_harness("memory", request, tmp_path)
    yield h
    for clean in h.cleanup:
        clean()


def _run(sync: Any, copy: Harness, tmp_path: Path, read: dict[str, Any]) -> Any:
    source = {"type": "files", "path": str(tmp_path / "in")}
    (result,) = sync(source, copy.spec, [{"name": "t", "read": read, "write": {"table": "items"}}])
    return result


def _write(tmp_path: Path, name: str, data: bytes) -> None:
    (tmp_path / "in").mkdir(exist_ok=True)
    (tmp_path / "in" / name).write_bytes(data)


@pytest.mark.parametrize(
    ("name", "data", "read", "message"),
    [
        ("ragged.csv", b"id,name,amount\n1,a,1\n2,b\n", {}, "ragged.csv:3: 2 fields, expected 3"),
        ("misfit.csv", b"id,name,amount\n1,a,1\n2,b,1e999x\n", {}, "misfit.csv:3: amount: "),
        ("huge.csv", b"id,name,amount\n1,a,123456789012.5\n", {}, "huge.csv:2: amount: "),
        (
            "latin.csv",
            b"id,name,amount\n1,a,1\n2,b,2\n3,Zo\xeb,3\n",
            {},
            "latin.csv:4: not utf-8 text (",
        ),
        ("cut.json", b'[{"id": 1, "name": "a", "amount": 1},\n {"id": 2', {"format": "json"}, "cut.json:2: "),
        ("obj.json", b'[{"id": 1}, {"id": "x"}]', {"format": "json"}, "obj.json:1: "),
    ],
)
def test_a_bad_file_names_its_path_line_and_column(copy, sync, tmp_path, name, data, read, message):
    _write(tmp_path, name, data)
    result = _run(sync, copy, tmp_path, {"files": name, "format": "csv", "columns": COLUMNS, **read})
    assert result.status == "failed" and result.error.startswith(message), result.error


def test_a_truncated_parquet_file_is_named(copy, sync, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "in").mkdir()
    table = pa.table({"id": list(range(100)), "name": ["x"] * 100})
    pq.write_table(table, tmp_path / "in/whole.parquet")
    data = (tmp_path / "in/whole.parquet").read_bytes()
    (tmp_path / "in/cut.parquet").write_bytes(data[: len(data) // 2])
    result = _run(
        sync, copy, tmp_path, {"files": "cut.parquet", "format": "parquet", "columns": {"id": "bigint"}}
    )
    assert result.status == "failed" and "cut.parquet: not a readable Parquet file" in result.error, (
        result.error
    )
    inferred = _run(sync, copy, tmp_path, {"files": "cut.parquet", "format": "parquet"})
    assert inferred.status == "failed" and "cut.parquet: not a readable Parquet file" in inferred.error


def test_encoding_null_marker_and_gzip_are_read_as_stated(copy, sync, tmp_path):
    (tmp_path / "in").mkdir()
    with gzip.open(tmp_path / "in/a.csv.gz", "wb") as f:
        f.write("id|name|amount\n1|Zoë|\\N\n2|\\N|2.5\n".encode("latin-1"))
    read = {
        "files": "*.csv.gz",
        "format": "csv",
        "columns": COLUMNS,
        "csv": {"delimiter": "|", "null": "\\N", "encoding": "latin-1"},
    }
    result = _run(sync, copy, tmp_path, read)
    assert result.status == "succeeded", result.error
    from decimal import Decimal

    assert copy.rows("items") == [(1, "Zoë", None), (2, None, Decimal("2.5"))]


def test_a_json_array_streams_its_elements(copy, sync, tmp_path):
    elements = ",\n".join(f'{{"id": {i}, "name": "n{i}", "amount": {i}.5}}' for i in range(1, 2001))
    _write(tmp_path, "big.json", f"[\n{elements}\n]".encode())
    result = _run(sync, copy, tmp_path, {"files": "*.json", "format": "json"})
    assert (result.status, result.rows_read) == ("succeeded", 2000), result.error
    assert {c["name"]: c["type"] for c in result.columns} == {
        "id": "bigint",
        "name": "text",
        "amount": "decimal(5,1)",
    }


STREAM = """
import sys
from pathlib import Path
from runner.connectors.files.location import LocalFolder
from runner.connectors.files.reading import FileRead, FileSource
columns = {"id": "bigint", "name": "text", "amount": "decimal(12,2)", "at": "timestamp"}
read = FileRead(files=sys.argv[2], format="csv", columns=columns)
stream = FileSource(LocalFolder(Path(sys.argv[1]))).read(read, 10_000)
rows = sum(len(b) for b in stream.batches)
peak = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(rows, int(peak.split()[1]) // 1024)
"""


def test_a_csv_streams_in_bounded_memory(tmp_path):
    """A CSV four times as long takes no more memory to read (in a subprocess, its peak RSS,
    VmHWM: this process's own, where ru_maxrss would start at pytest's);
    `bench/files.py` reads ~230 MB the same way."""
    folder = tmp_path / "in"
    folder.mkdir()
    line = "{i},name number {i} with some padding text,{i}.25,2024-01-01 10:00:00\n"
    peaks = {}
    for name, count in (("small.csv", 100_000), ("big.csv", 400_000)):
        with open(folder / name, "w") as f:
            f.write("id,name,amount,at\n")
            f.write("".join(line.format(i=i) for i in range(count)))
        out = subprocess.run(
            [sys.executable, "-c", STREAM, str(folder), name],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
            timeout=600,
        )
        rows, peaks[name] = map(int, out.stdout.split())
        assert rows == count
    size_mb = (folder / "big.csv").stat().st_size >> 20
    assert peaks["big.csv"] - peaks["small.csv"] < 16, f"{peaks} (MB) reading {size_mb} MB"


def test_a_json_array_written_is_one_array_that_reads_back(request, sync, tmp_path):
    import json

    from tests.contract import canonical

    lite = make_harness("sqlite", request, tmp_path)
    lite.seed("items", canonical.COLUMNS, canonical.rows(7))
    lake = {"type": "files", "path": str(tmp_path / "lake")}
    write = {"keys": ["id"], "format": "json", "file": "out-{{ part }}.json", "compression": "gzip"}
    (result,) = sync(
        lite.spec, lake, [{"name": "t", "read": {"table": "items"}, "write": write}], batch_size=100
    )
    assert (result.status, result.upserted) == ("succeeded", 7), result.error
    (written,) = (tmp_path / "lake").glob("*.json.gz")
    document = json.loads(gzip.decompress(written.read_bytes()))
    assert [r["id"] for r in document] == list(range(1, 8)) and document[0]["_op"] == "upsert"
    read = {"files": "*.json.gz", "format": "json"}
    (back,) = sync(lake, lite.spec, [{"name": "r", "read": read, "write": {"table": "back"}}])
    assert (back.status, back.rows_read) == ("succeeded", 7), back.error
