"""Files in the contract: every format carries the canonical values exactly as a target and
as a source, between each SQL kind and a folder: a table written to files (`write.format`)
and read back from them into a fresh table of the same kind holds what the first one held
(types, NULLs, unicode, decimals at full precision, time zones as their UTC instant), and a
second run changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.contract import canonical
from tests.contract.harness import Harness, make_harness

FORMATS = ["csv", "jsonl", "json", "parquet"]
SQL_KINDS = ["sqlite", "postgresql", "mariadb"]


@pytest.fixture(params=SQL_KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def ends(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Harness, Harness]]:
    """Two fresh places of the kind: the table written to files, the table read back into."""
    there = make_harness(kind, request, tmp_path / "there")
    back = make_harness(kind, request, tmp_path / "back")
    yield there, back
    for clean in there.cleanup + back.cleanup:
        clean()


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_table_through_files_comes_back_exactly(ends, fmt, sync, tmp_path):
    there, back = ends
    columns = canonical.columns(there.lacks)
    data = canonical.project(canonical.rows(), there.lacks)
    names = [c.name for c in columns]
    there.seed("items", columns, data)
    (tmp_path / "lake").mkdir()
    lake = {"type": "files", "path": str(tmp_path / "lake")}
    out = {
        "name": "out",
        "read": {"table": "items"},
        "write": {
            "keys": ["id"],
            "format": fmt,
            "file": "{{ run_id }}-{{ part }}.{{ ext }}",
            "operation_column": None,
        },
    }
    types = {c.name: str(c.type) for c in columns}
    read = {"files": f"*.{fmt}", "format": fmt, "columns": types}
    if fmt == "csv":  # an empty string is a value: NULL is another text, on both ends
        out["write"]["csv"] = read["csv"] = {"null": "\\N"}
    into = {"name": "in", "read": read, "write": {"table": "items", "keys": ["id"]}}
    (written,) = sync(there.spec, lake, [out], job="out", batch_size=50)
    assert written.status == "succeeded", written.error
    for run in range(2):  # the second run reads the same files and finds every row equal
        (loaded,) = sync(lake, back.spec, [into], job="in")
        assert loaded.status == "succeeded", loaded.error
        assert canonical.differences(data, back.rows("items"), names) == []
        if run:
            assert (loaded.inserted, loaded.updated) == (0, 0), loaded
