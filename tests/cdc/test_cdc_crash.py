"""Invariant 1 for the cdc strategy: a run killed with SIGKILL at any fault point (during the
snapshot, or while changes are applied), and run again, leaves the target equal to the source.

The runs are real subprocesses stopped at a checkpoint (`runner.streams.checkpoints`) and
killed there; the source changes between the runs in many small transactions, with updates,
changed keys, deletes and a truncate."""

from __future__ import annotations

import pytest

from runner import services
from tests.cdc.test_postgresql_cdc import create_items, execute, rows, setup_project, source_engine
from tests.engine.test_crash import kill_at


def churn(engine, round_: int) -> None:
    """Many transactions: inserts, updates, a changed key and deletes."""
    base = 1000 * round_
    for i in range(12):
        execute(
            engine,
            f"INSERT INTO items VALUES ({base + i}, 'r{round_} {i}', {i}, NULL, '{{\"r\": {round_}}}')",
        )
    execute(
        engine,
        f"UPDATE items SET name = name || ' upd{round_}' WHERE mod(id, 3) = 0",
        f"UPDATE items SET id = id + 500 WHERE id = {base + 1}",
        f"DELETE FROM items WHERE mod(id, 7) = {round_ % 7}",
    )


@pytest.mark.parametrize("point", ["read", "write", "committed", "stored"])
def test_kill_anywhere_then_rerun(project, cdc_url, pg_url, tmp_path, point):
    engine, dst = source_engine(cdc_url), source_engine(pg_url)
    create_items(engine, 40)
    setup_project(project, cdc_url, pg_url, batch_size=5)
    project.ws.close()

    kill_at(project, point, tmp_path)  # killed in the snapshot
    churn(engine, 1)
    record = services.run(project.ws, "sync")
    assert record["status"] == "succeeded", record["error"]
    assert rows(dst) == rows(engine)
    project.ws.close()

    churn(engine, 2)
    kill_at(project, point, tmp_path)  # killed while applying changes
    churn(engine, 3)
    execute(
        engine,
        "BEGIN",
        "TRUNCATE items",
        "INSERT INTO items SELECT g, 'again', g, NULL, NULL FROM generate_series(1, 9) g",
        "COMMIT",
    )
    churn(engine, 4)
    kill_at(project, point, tmp_path)  # and again, past a truncate
    record = services.run(project.ws, "sync")
    assert record["status"] == "succeeded", record["error"]
    assert rows(dst) == rows(engine)
    again = services.run(project.ws, "sync")["tasks"][0]
    assert (again["rows_read"], again["inserted"], again["updated"], again["deleted"]) == (0, 0, 0, 0)
