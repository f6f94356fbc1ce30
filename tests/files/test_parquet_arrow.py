"""PostgreSQL into Parquet files through Arrow (`runner.transfer.postgresql_files`): the file
holds exactly what the batch path writes (NULLs apart from empty strings and the word NA,
unicode, newlines and quotes in text, decimals, time stamps, a timestamptz as its UTC
instant); columns Arrow cannot take from CSV (JSON, bytes, UUIDs) go the batch path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.contract import canonical
from tests.contract.harness import Harness, make_harness

PLAIN = {"id", "big", "n", "wide", "money", "flag", "name", "note", "day", "seen", "seen_tz"}


@pytest.fixture
def pg(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    h = make_harness("postgresql", request, tmp_path)
    yield h
    for clean in h.cleanup:
        clean()


def _tables(folder: Path) -> list:
    import pyarrow.parquet as pq

    return [pq.read_table(f) for f in sorted(folder.glob("*.parquet"))]


def test_arrow_writes_the_parquet_the_batch_path_writes(pg, sync, tmp_path, monkeypatch):
    from runner.transfer.postgresql_files import PostgresqlToFiles

    picked = [i for i, c in enumerate(canonical.COLUMNS) if c.name in PLAIN]
    columns = [canonical.COLUMNS[i] for i in picked]
    rows = [tuple(r[i] for i in picked) for r in canonical.rows()]
    rows.append((99, None, None, None, None, None, "NA", "", None, None, None))  # NA, an empty string
    pg.seed("items", columns, rows)
    used: list[bool] = []
    original = PostgresqlToFiles.arrow
    monkeypatch.setattr(PostgresqlToFiles, "arrow", lambda self, *a: used.append(True) or original(self, *a))
    for name in ("fast", "slow"):
        (tmp_path / name).mkdir()
        lake = {"type": "files", "path": str(tmp_path / name)}
        task = {
            "name": "t",
            "read": {"table": "items"},
            "write": {"keys": ["id"], "format": "parquet", "file": "{{ part }}.parquet"},
        }
        (result,) = sync(pg.spec, lake, [task], job=name)
        assert result.status == "succeeded" and result.upserted == len(rows), result.error
        if name == "fast":
            assert used == [True]
            monkeypatch.setattr(PostgresqlToFiles, "arrow", lambda self, *a: None)
    (fast,), (slow,) = _tables(tmp_path / "fast"), _tables(tmp_path / "slow")
    assert fast.schema == slow.schema
    key = lambda r: r["id"]  # noqa: E731
    assert sorted(fast.to_pylist(), key=key) == sorted(slow.to_pylist(), key=key)
    last = sorted(fast.to_pylist(), key=key)[-1]
    assert (last["name"], last["note"], last["money"]) == ("NA", "", None)


def test_columns_arrow_cannot_take_go_the_batch_path(pg, sync, tmp_path):
    pg.seed("items", canonical.columns(pg.lacks), canonical.project(canonical.rows(), pg.lacks))
    (tmp_path / "lake").mkdir()
    lake = {"type": "files", "path": str(tmp_path / "lake")}
    task = {"name": "t", "read": {"table": "items"}, "write": {"keys": ["id"], "format": "parquet"}}
    (result,) = sync(pg.spec, lake, [task])
    assert result.status == "succeeded" and result.upserted == canonical.ROWS, result.error
