"""Invariant 4: rows stream in batches of at most `batch_size`; no step holds a whole table.
(The memory itself is measured in bench/, not here; copies made inside the databases hold no
rows in Python at all, see test_fast_paths.py.)"""

from __future__ import annotations

import sqlite3

import pytest

from runner import services
from runner.connectors.sql.writer import SqlWriter

ROWS = 1000
BATCH = 13


@pytest.fixture
def batch_sizes(monkeypatch):
    """Every batch a writer receives, by method."""
    seen: dict[str, list[int]] = {}
    for name in ("insert", "stage", "stage_keys"):
        original = getattr(SqlWriter, name)

        def spy(self, batch, _original=original, _name=name):
            seen.setdefault(_name, []).append(len(batch))
            return _original(self, batch)

        monkeypatch.setattr(SqlWriter, name, spy)
    return seen


@pytest.mark.parametrize(
    ("changes", "keys", "deletes"),
    [
        ("{strategy: full}", "[]", "ignore"),
        ("{strategy: full}", "[id]", "propagate"),
        ("{strategy: watermark, column: at}", "[id]", "propagate"),
        ("{strategy: hash}", "[id]", "propagate"),
    ],
)
def test_every_batch_is_bounded(project, batch_sizes, changes, keys, deletes):
    db = sqlite3.connect(project.root / "src.db")
    db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, at TIMESTAMP, payload TEXT)")
    db.executemany(
        "INSERT INTO items VALUES (?, ?, ?)",
        [(i, f"2026-01-01 00:00:{i % 60:02d}.{i:06d}", "x" * 100) for i in range(ROWS)],
    )
    db.commit()
    db.close()
    project.connection("src", "sqlite", "sqlite:///src.db")
    project.connection("dst", "sqlite", "sqlite:///dst.db")
    project.job(
        "sync",
        "src",
        "dst",
        f"""
        - name: items
          read: {{query: "SELECT * FROM items"}}  # a query: SQLite cannot copy it inside the files
          write: {{table: items, keys: {keys}}}
          changes: {changes}
          deletes: {deletes}
        """,
        extra=f"  batch_size: {BATCH}\n",
    )
    services.apply(project.ws)
    for _ in range(2):  # a first run and one over existing state (digests, pointer)
        record = services.run(project.ws, "sync")
        assert record["status"] == "succeeded", record["error"]
    sizes = [n for calls in batch_sizes.values() for n in calls]
    assert sizes and max(sizes) <= BATCH
    assert sum(batch_sizes.get("insert", batch_sizes.get("stage", []))) >= ROWS
