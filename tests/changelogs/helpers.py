"""A reader on a SQLite shop and writers of it: the definitions, the source's changes run by run,
and the rows each side holds (compared as text, so SQLite's and PostgreSQL's types compare)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from runner import services

READER = """
apiVersion: runner/v1
kind: Job
metadata: {{name: reader}}
spec:
  source: src
{options}  tasks:
    - name: customers
      read: {{table: customers}}
      write: {{keys: [id]}}
      changes: {{strategy: hash}}
      deletes: propagate
    - name: orders
      read: {{table: orders}}
      write: {{keys: [id]}}
      changes: {{strategy: hash}}
      deletes: propagate
"""


def writer(
    name: str,
    target: str,
    batch_size: int = 10_000,
    tasks: tuple[str, ...] = ("customers", "orders"),
    job: str = "reader",
) -> str:
    body = "".join(
        f"    - {{name: {t}, read: {{table: {t}}}, write: {{table: {t}, keys: [id]}}, deletes: propagate}}\n"
        for t in tasks
    )
    return (
        f"apiVersion: runner/v1\nkind: Job\nmetadata: {{name: {name}}}\nspec:\n"
        f"  source: {{job: {job}}}\n  target: {target}\n  batch_size: {batch_size}\n  tasks:\n{body}"
    )


SYNC = """
apiVersion: runner/v1
kind: Job
metadata: {{name: sync}}
spec:
  source: src
  target: {target}
  batch_size: {batch_size}
  change_log: {{keep_files: 2}}
  tasks:
    - name: customers
      read: {{table: customers}}
      write: {{table: customers, keys: [id]}}
      changes: {{strategy: hash}}
      deletes: propagate
    - name: orders
      read: {{table: orders}}
      write: {{table: orders, keys: [id]}}
      changes: {{strategy: hash}}
      deletes: propagate
"""


def make_shop(path: Path, customers: int = 30) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, city TEXT, score INTEGER)")
    db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer INTEGER, total INTEGER, note TEXT)")
    db.executemany(
        "INSERT INTO customers VALUES (?, ?, ?, ?)",
        [
            (i, f"customer {i} ✓", None if i % 7 == 0 else f"city {i % 5}", i * 3)
            for i in range(1, customers + 1)
        ],
    )
    db.executemany(
        "INSERT INTO orders VALUES (?, ?, ?, ?)",
        [(i, 1 + i % customers, i * 100, f"order {i}") for i in range(1, 2 * customers + 1)],
    )
    db.commit()
    db.close()


def change_shop(path: Path, round_: int) -> None:
    """One round of inserts, updates and deletes; a key deleted and inserted again, a key
    updated twice in one round (only the last value may remain)."""
    db = sqlite3.connect(path)
    base = 1000 * round_
    db.executemany(
        "INSERT INTO customers VALUES (?, ?, ?, ?)",
        [(base + i, f"new {round_}.{i}", "ünïcode city", None) for i in range(5)],
    )
    db.execute("UPDATE customers SET score = score + 1, name = name || ' +' WHERE id % 4 = ?", (round_ % 4,))
    db.execute("UPDATE customers SET city = 'twice' WHERE id = 2")
    db.execute("UPDATE customers SET city = ? WHERE id = 2", (f"last of round {round_}",))
    db.execute(
        "DELETE FROM customers WHERE id IN "
        "(SELECT id FROM customers WHERE id < 1000 AND id != 2 ORDER BY id LIMIT 2)"
    )
    db.execute("DELETE FROM orders WHERE id % 9 = ?", (round_ % 9,))
    db.execute("UPDATE orders SET total = total + ?, note = NULL WHERE id % 5 = 0", (round_,))
    db.execute("INSERT OR REPLACE INTO orders VALUES (?, 1, 5, 'again')", (9 + round_ % 9,))  # deleted, back
    db.commit()
    db.close()


def rows(url: str, table: str) -> list[tuple[str, ...]]:
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            found = conn.exec_driver_sql(f"SELECT * FROM {table} ORDER BY id").all()
    finally:
        engine.dispose()
    return [tuple("NULL" if v is None else str(v) for v in row) for row in found]


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def run(ws: services.Workspace, job: str) -> dict[str, Any]:
    record = services.run(ws, job)
    assert record["status"] == "succeeded", record
    return record
