"""Transforms over log-based change data capture (PostgreSQL logical decoding, on the private
server of `tests/cdc`): the snapshot and every later change go through the steps; an update
that stops passing a filter deletes its row, a delete by key passes every step."""

from __future__ import annotations

import sqlite3

import pytest
import sqlalchemy as sa

from runner import services
from tests.cdc.conftest import cdc_url, logical_pg  # noqa: F401 - the private server's fixtures

pytestmark = pytest.mark.usefixtures("logical_pg")


def _execute(url: str, *statements: str) -> None:
    engine = sa.create_engine(url, poolclass=sa.NullPool, isolation_level="AUTOCOMMIT")
    with engine.begin() as conn:
        for sql in statements:
            conn.exec_driver_sql(sql)
    engine.dispose()


def test_cdc_changes_go_through_the_steps(project, cdc_url):  # noqa: F811
    _execute(
        cdc_url,
        "CREATE TABLE items (id int PRIMARY KEY, name text, status text, secret text)",
        "INSERT INTO items VALUES (1, 'one', 'ok', 's1'), (2, 'two', 'hidden', 's2'), "
        "(3, 'three', 'ok', 's3')",
    )
    project.connection("src", "postgresql", cdc_url)
    project.connection("dst", "sqlite", "sqlite:///dst.db")
    project.job(
        "sync",
        "src",
        "dst",
        """
        - name: items
          read: {table: public.items}
          write: {table: items, keys: [id]}
          changes: {strategy: cdc}
          deletes: propagate
          transforms:
            - {type: compute, column: label, expression: "name | upper"}
            - {type: filter, expression: "status != 'hidden'"}
            - {type: mask, column: secret, method: redact}
        """,
    )
    services.apply(project.ws)

    def run() -> dict:
        record = services.run(project.ws, "sync")
        (task,) = record["tasks"]
        assert task["status"] == "succeeded", task["error"]
        return task

    def target() -> list[tuple]:
        with sqlite3.connect(project.root / "dst.db") as c:
            return c.execute("SELECT id, name, status, secret, label FROM items ORDER BY id").fetchall()

    task = run()  # the snapshot
    assert task["filtered"] == 1
    assert target() == [(1, "one", "ok", None, "ONE"), (3, "three", "ok", None, "THREE")]
    _execute(
        cdc_url,
        "UPDATE items SET status = 'hidden' WHERE id = 1",  # stops passing: deleted
        "UPDATE items SET status = 'ok' WHERE id = 2",  # passes now: inserted
        "DELETE FROM items WHERE id = 3",  # a delete carries the key only
        "INSERT INTO items VALUES (4, 'four', 'ok', 's4')",
    )
    task = run()
    assert (task["inserted"], task["deleted"], task["filtered"]) == (2, 2, 1)
    assert target() == [(2, "two", "ok", None, "TWO"), (4, "four", "ok", None, "FOUR")]
