"""A full copy split into key ranges (`changes.split`), PostgreSQL to PostgreSQL, run by
`runner run` (the ranges on threads of the run): every range committed, deleted rows handled
range by range, the ranges in the history and the run log, a rerun resuming a cut split."""

from __future__ import annotations

import psycopg
import pytest

from runner import services
from runner.errors import DefinitionsInvalid
from runner.history import files as history

ROWS = 20_000


def _db(pg_url: str) -> str:
    return pg_url.replace("postgresql+psycopg://", "postgresql://")


def project(root, url: str, split: str, deletes: str = "propagate", keys: str = "[id]", extra: str = ""):
    (root / "jobs.d").mkdir(parents=True)
    (root / "connections.d").mkdir()
    (root / "connections.d" / "pg.yaml").write_text(
        "apiVersion: runner/v1\nkind: Connection\nmetadata: {name: pg}\n"
        f'spec: {{type: postgresql, url: "{url}"}}\n'
    )
    (root / "jobs.d" / "copy.yaml").write_text(
        "apiVersion: runner/v1\nkind: Job\nmetadata: {name: copy}\nspec:\n"
        "  source: pg\n  target: pg\n  batch_size: 1000\n  tasks:\n"
        "    - name: events\n"
        "      read: {table: src.events}\n"
        f"      write: {{table: dst.events, keys: {keys}}}\n"
        f"      deletes: {deletes}\n"
        f"      changes: {{strategy: full, split: {split}}}\n{extra}"
    )
    return services.Workspace(root)


def fill(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("CREATE SCHEMA src; CREATE SCHEMA dst")
        c.execute("CREATE TABLE src.events (id bigint PRIMARY KEY, kind text, amount numeric(12,2))")
        c.execute(
            f"INSERT INTO src.events SELECT g, 'k' || (g % 7), g / 100.0 FROM generate_series(1, {ROWS}) g"
        )


def rows(url: str, table: str) -> list[tuple]:
    with psycopg.connect(url) as c:
        return c.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()


def test_split_copy_commits_every_range_and_deletes_by_range(tmp_path, pg_url):
    url = _db(pg_url)
    fill(url)
    ws = project(tmp_path / "p", url, "{ranges: 4}")
    services.apply(ws)
    first = services.run(ws, "copy")
    assert first["status"] == "succeeded", first.get("error")
    (task,) = first["tasks"]
    assert task["rows_read"] == ROWS and task["inserted"] == ROWS
    assert [r["range"] for r in task["ranges"]] == [0, 1, 2, 3]
    assert all(r["status"] == "done" for r in task["ranges"])
    assert task["ranges"][0]["from"] is None and task["ranges"][-1]["to"] is None  # open ends
    assert sum(r["rows_read"] for r in task["ranges"]) == ROWS
    assert rows(url, "dst.events") == rows(url, "src.events")
    logged = [
        e
        for e in history.read_log(history.find_log(ws.history, first["run_id"]))
        if e["message"] == "range done"
    ]
    assert sorted(e["range"] for e in logged) == [0, 1, 2, 3]

    # rows gone from the source below, inside and above the key's span; one changed; one new
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("INSERT INTO dst.events VALUES (-5, 'old', 1), (999999, 'old', 1)")
        c.execute("DELETE FROM src.events WHERE id IN (1, 777, 15000)")
        c.execute("UPDATE src.events SET kind = 'changed' WHERE id = 4242")
        c.execute("INSERT INTO src.events VALUES (20001, 'new', 2)")
    second = services.run(ws, "copy")
    assert second["status"] == "succeeded", second.get("error")
    (task,) = second["tasks"]
    assert (task["inserted"], task["updated"], task["deleted"]) == (1, 1, 5)
    assert rows(url, "dst.events") == rows(url, "src.events")
    assert services.run(ws, "copy")["tasks"][0]["rows_written"] == 0  # nothing left to do


def test_a_failed_range_fails_the_task_and_the_next_run_runs_it_alone(tmp_path, pg_url):
    url = _db(pg_url)
    fill(url)
    with psycopg.connect(url, autocommit=True) as c:  # the target refuses one row of range 2
        c.execute(
            "CREATE TABLE dst.events (id bigint PRIMARY KEY, kind text CHECK (kind <> 'bad'), "
            "amount numeric(12,2))"
        )
        c.execute("UPDATE src.events SET kind = 'bad' WHERE id = 12000")
    ws = project(tmp_path / "p", url, "{ranges: 4}")
    services.apply(ws)
    failed = services.run(ws, "copy")
    assert failed["status"] == "failed"
    (task,) = failed["tasks"]
    assert "1 of 4 key ranges failed" in task["error"] and "range 2" in task["error"]
    assert [r["status"] for r in task["ranges"]] == ["done", "done", "failed", "done"]
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("UPDATE src.events SET kind = 'fixed' WHERE id = 12000")
    again = services.run(ws, "copy")
    assert again["status"] == "succeeded", again.get("error")
    (task,) = again["tasks"]
    # only the failed range ran again: the others stayed done from the first run
    assert task["rows_read"] == ROWS // 4
    assert [r["status"] for r in task["ranges"]] == ["done"] * 4
    assert rows(url, "dst.events") == rows(url, "src.events")


@pytest.mark.parametrize(
    ("changes", "keys", "message"),
    [
        (
            "{strategy: watermark, column: id, split: {ranges: 4}}",
            "[id]",
            "'split' only applies to strategy 'full'",
        ),
        ("{strategy: full, split: {ranges: 1}}", "[id]", "greater than or equal to 2"),
        (
            "{strategy: full, split: {ranges: 4}}",
            "[id, kind]",
            "write.keys must name one (integer) column, not 2",
        ),
    ],
)
def test_split_refused_where_it_is_not_implemented(tmp_path, changes, keys, message):
    root = tmp_path / "p"
    ws = project(root, "postgresql://x@127.0.0.1/x", "{ranges: 4}", keys=keys)
    text = (root / "jobs.d" / "copy.yaml").read_text()
    (root / "jobs.d" / "copy.yaml").write_text(text.replace("{strategy: full, split: {ranges: 4}}", changes))
    with pytest.raises(DefinitionsInvalid) as raised:
        services.validate(ws)
    (problem,) = raised.value.problems
    assert message in str(problem) and "jobs.d/copy.yaml:" in str(problem)
    assert "spec.tasks[0]." in str(problem)


def test_a_key_that_is_not_an_integer_is_refused_at_the_run(tmp_path, pg_url):
    url = _db(pg_url)
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("CREATE SCHEMA src; CREATE SCHEMA dst")
        c.execute("CREATE TABLE src.events (id text PRIMARY KEY, kind text, amount numeric(12,2))")
        c.execute("INSERT INTO src.events VALUES ('a', 'k', 1)")
    ws = project(tmp_path / "p", url, "{ranges: 4}")
    services.apply(ws)
    record = services.run(ws, "copy")
    assert record["status"] == "failed"
    assert "copy.yaml:" in record["error"] and "changes.split" in record["error"]
    assert "a split cuts the key into ranges of integers" in record["error"]


def test_a_table_emptied_first_is_split_again_whole(tmp_path, pg_url):
    """`before_run: truncate` empties the table each run: the ranges an earlier run committed
    are gone from it, so a run after a failed one cuts and runs every range again."""
    url = _db(pg_url)
    fill(url)
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(
            "CREATE TABLE dst.events (id bigint PRIMARY KEY, kind text CHECK (kind <> 'bad'), "
            "amount numeric(12,2))"
        )
        c.execute("UPDATE src.events SET kind = 'bad' WHERE id = 12000")
    ws = project(tmp_path / "p", url, "{ranges: 4}", extra="      before_run: truncate\n")
    services.apply(ws)
    assert services.run(ws, "copy")["status"] == "failed"
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("UPDATE src.events SET kind = 'fixed' WHERE id = 12000")
    again = services.run(ws, "copy")
    assert again["status"] == "succeeded", again.get("error")
    assert again["tasks"][0]["rows_read"] == ROWS
    assert rows(url, "dst.events") == rows(url, "src.events")
