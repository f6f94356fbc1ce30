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


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql", "mariadb"])
def test_a_read_all_in_its_first_batch_holds_no_connection(request, tmp_path, dialect):
    """A read whose first batch is the whole result closes its connection at once: the task then
    waits for its writer (a SQLite file's turn, hundreds of them in a daemon's slot) holding
    none; a longer read keeps its connection until its last batch is taken."""
    import sqlalchemy as sa

    from runner.connectors.registry import open_connector
    from runner.definitions.tasks import ReadSpec

    url = {
        "sqlite": lambda: f"sqlite:///{tmp_path / 'src.db'}",
        "postgresql": lambda: request.getfixturevalue("pg_url"),
        "mariadb": lambda: request.getfixturevalue("maria_url"),
    }[dialect]()
    setup = sa.create_engine(url)
    with setup.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE small (id INTEGER PRIMARY KEY, name VARCHAR(10))")
        conn.exec_driver_sql("CREATE TABLE large (id INTEGER PRIMARY KEY, name VARCHAR(10))")
        for n in range(1, 4):
            conn.exec_driver_sql(f"INSERT INTO small VALUES ({n}, 'n{n}')")
        for n in range(1, 26):
            conn.exec_driver_sql(f"INSERT INTO large VALUES ({n}, 'n{n}')")
    setup.dispose()
    connector = open_connector("src", {"type": dialect, "url": url}, tmp_path)
    opened = []
    sa.event.listen(connector.engine, "connect", lambda dbapi, _record: opened.append(dbapi))
    sa.event.listen(connector.engine, "close", lambda dbapi, _record: opened.remove(dbapi))
    streams = []
    try:
        streams.append(small := connector.read(ReadSpec(table="small"), batch_size=10))
        assert opened == []  # 3 rows of at most 10: all read, closed
        assert [[r[0] for r in batch] for batch in small.batches] == [[1, 2, 3]]

        streams.append(large := connector.read(ReadSpec(table="large"), batch_size=10))
        assert len(opened) == 1  # 15 rows still to fetch
        assert [len(batch) for batch in large.batches] == [10, 10, 5]
        assert opened == []

        streams.append(exact := connector.read(ReadSpec(table="small"), batch_size=3))
        assert len(opened) == 1  # a full first batch: there may be more
        assert [len(batch) for batch in exact.batches] == [3]
        assert opened == []
    finally:
        for stream in streams:  # (a read left open would hold the database's drop)
            stream.batches.close()
        connector.close()
