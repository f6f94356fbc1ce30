"""The contract every kind a task consumes from keeps, on a real broker: what runner published
comes back value for value, deletes delete, a batch is acknowledged only after the target
committed it (a kill before or after the commit, then a clean run, leaves the target equal to
what the messages say), a bad message stops the task or goes to the dead-letter destination,
a dry run acknowledges nothing, and a continuous run (the daemon's) commits what comes as it
comes until it is cancelled."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from runner import services
from runner.changes.task import RunOptions
from runner.streams.cancel import CancelToken
from tests.contract import canonical
from tests.contract.brokers import Broker
from tests.contract.harness import Harness, make_harness
from tests.contract.test_messaging import _canonical
from tests.engine.test_crash import kill_at

COLUMNS = {c.name: str(c.type) for c in canonical.COLUMNS}


@pytest.fixture
def copy(request: pytest.FixtureRequest, tmp_path) -> Iterator[Harness]:
    """A memory target the consumed rows are kept in."""
    h = make_harness("memory", request, tmp_path)
    yield h
    for clean in h.cleanup:
        clean()


def _consume(queue: Broker, **extra: Any) -> dict[str, Any]:
    read = {**(queue.source or {}), "columns": COLUMNS, **extra.pop("read", {})}
    return {
        "name": "t",
        "read": read,
        "write": {"table": "items", "keys": ["id"]},
        "changes": {"strategy": "messages"},
        **extra,
    }


def test_what_runner_publishes_comes_back_exactly(queue, mem, copy, sync):
    mem.seed("items", canonical.COLUMNS, canonical.rows())
    publish = {"name": "t", "read": {"table": "items"}, "write": {**queue.write, "keys": ["id"]}}
    (sent,) = sync(mem.spec, queue.spec, [publish])
    assert sent.upserted == canonical.ROWS
    (got,) = sync(queue.spec, copy.spec, [_consume(queue)])
    assert (got.status, got.rows_read, got.inserted) == ("succeeded", canonical.ROWS, canonical.ROWS), (
        got.error
    )
    assert copy.rows("items") == [_canonical(r) for r in canonical.rows()]
    (again,) = sync(queue.spec, copy.spec, [_consume(queue)])
    assert again.rows_read == 0  # every message was acknowledged


def _send(queue: Broker, id_: int, note: str | None = None, delete: bool = False) -> None:
    assert queue.send is not None
    body = {"id": id_} if delete else {"id": id_, "note": note}
    queue.send(json.dumps(body).encode(), {"runner-op": "delete"} if delete else {})


def test_deletes_and_updates_apply_in_order(queue, copy, sync):
    for i in range(1, 6):
        _send(queue, i, f"v1 {i}")
    _send(queue, 2, delete=True)
    _send(queue, 3, "v2 3")
    _send(queue, 2, "back 2")  # deleted, then upserted again: it is there at the end
    _send(queue, 4, delete=True)
    task = _consume(queue, read={"columns": {"id": "bigint", "note": "text"}}, deletes="propagate")
    (result,) = sync(queue.spec, copy.spec, [task], batch_size=4)
    assert result.status == "succeeded", result.error
    assert copy.rows("items") == [(1, "v1 1"), (2, "back 2"), (3, "v2 3"), (5, "v1 5")]


def test_a_bad_message_stops_the_task_and_stays_in_the_queue(queue, copy, sync):
    _send(queue, 1, "fine")
    queue.send(b'{"id": "not a number"}', {})  # type: ignore[misc]
    task = _consume(queue, read={"columns": {"id": "bigint", "note": "text"}})
    (result,) = sync(queue.spec, copy.spec, [task])
    assert result.status == "failed"
    assert "column 'id' (path 'id', bigint)" in result.error and "stays in the queue" in result.error
    assert copy.rows("items") == []  # the batch was not committed
    assert queue.waiting is not None and queue.waiting() == 2  # nothing was acknowledged


def test_a_bad_message_goes_to_the_dead_letters_and_the_rest_loads(queue, copy, sync):
    assert queue.letters is not None
    letters, read_letters = queue.letters
    _send(queue, 1, "fine")
    queue.send(b"not json at all", {"x-trace": "abc"})  # type: ignore[misc]
    _send(queue, 2, "fine too")
    read = {"columns": {"id": "bigint", "note": "text"}, "bad_messages": "dead_letter", **letters}
    (result,) = sync(queue.spec, copy.spec, [_consume(queue, read=read)])
    assert result.status == "succeeded", result.error
    assert copy.rows("items") == [(1, "fine"), (2, "fine too")]
    (letter,) = read_letters()
    assert letter.body == b"not json at all"
    assert letter.headers["x-trace"] == "abc" and "not JSON" in letter.headers["runner-error"]
    assert queue.waiting is not None and queue.waiting() == 0


def test_a_dry_run_acknowledges_nothing(queue, copy, sync):
    for i in range(1, 4):
        _send(queue, i, "x")
    task = _consume(queue, read={"columns": {"id": "bigint", "note": "text"}})
    (dry,) = sync(queue.spec, copy.spec, [task], options=RunOptions(dry_run=True))
    assert (dry.status, dry.rows_read) == ("succeeded", 3)
    assert copy.rows("items") == []
    (real,) = sync(queue.spec, copy.spec, [task])
    assert real.inserted == 3


def test_content_column_appends_each_message_whole(queue, copy, sync):
    queue.send(b"<order id='1'/>", {})  # type: ignore[misc]
    queue.send(b"plain text \xc3\xa9", {})  # type: ignore[misc]
    task = {
        "name": "t",
        "read": {**(queue.source or {}), "content_column": "body", "metadata": {"mid": "message_id"}},
        "write": {"table": "raw"},
        "changes": {"strategy": "messages"},
    }
    (result,) = sync(queue.spec, copy.spec, [task])
    assert result.inserted == 2, result.error
    assert sorted(r[0] for r in copy.rows("raw")) == ["<order id='1'/>", "plain text é"]


def test_a_kill_before_and_after_the_commit_then_a_clean_run_leaves_the_target_exact(
    queue, project, tmp_path
):
    """Killed with a batch staged but not committed (`write`), then with a batch committed but
    not acknowledged (`committed`), more messages coming after each: a clean run leaves the
    target holding exactly what the messages say, each key once."""
    project.connection("dst", "sqlite", "sqlite:///dst.db")
    head = "apiVersion: runner/v1\nkind: Connection\nmetadata: {name: src}\n"
    project.write("connections.d/src.yaml", f"{head}spec: {json.dumps(queue.spec)}\n")
    task = _consume(queue, read={"columns": {"id": "bigint", "note": "text"}}, deletes="propagate")
    job = {"source": "src", "target": "dst", "batch_size": 7, "tasks": [task]}
    project.write(
        "jobs.d/sync.yaml",
        f"apiVersion: runner/v1\nkind: Job\nmetadata: {{name: sync}}\nspec: {json.dumps(job)}\n",
    )
    services.apply(project.ws)
    project.ws.close()
    expected: dict[int, str] = {}
    for i in range(1, 21):
        _send(queue, i, f"v1 {i}")
        expected[i] = f"v1 {i}"
    kill_at(project, "write", tmp_path)
    for i in range(15, 31):
        _send(queue, i, f"v2 {i}")
        expected[i] = f"v2 {i}"
    kill_at(project, "committed", tmp_path)
    for i in (3, 4, 25):
        _send(queue, i, delete=True)
        expected.pop(i)
    record = services.run(project.ws, "sync")
    assert record["status"] == "succeeded", record["error"]
    db = sqlite3.connect(project.root / "dst.db")
    assert db.execute("SELECT id, note FROM items ORDER BY id").fetchall() == sorted(expected.items())
    db.close()
    again = services.run(project.ws, "sync")["tasks"][0]
    assert again["rows_read"] == 0


def test_a_continuous_run_commits_what_comes_as_it_comes_until_cancelled(queue, copy, sync):
    """Past a drained queue the task goes on (`RunOptions.continuous`, max latency 0.5 s): each
    wave of messages is committed and acknowledged while the run goes on; a cancel ends it at a
    batch boundary with nothing left unacknowledged."""
    task = _consume(queue, read={"columns": {"id": "bigint", "note": "text"}, "max_wait": "0.2s"})
    token = CancelToken()
    results: list[Any] = []
    options = RunOptions(continuous=0.5)
    worker = threading.Thread(
        target=lambda: results.extend(
            sync(queue.spec, copy.spec, [task], batch_size=100, options=options, cancel=token)
        )
    )
    worker.start()
    try:
        for wave in range(2):
            ids = range(wave * 10 + 1, wave * 10 + 4)
            for i in ids:
                _send(queue, i, f"wave {wave}")
            deadline = time.monotonic() + 60  # a loaded machine; a batch is due 0.5 s after it began
            while {r[0] for r in copy.rows("items")} != {
                i for w in range(wave + 1) for i in range(w * 10 + 1, w * 10 + 4)
            }:
                assert time.monotonic() < deadline, copy.rows("items")
                time.sleep(0.05)
    finally:
        token.cancel("the test is done")
        worker.join(60)
    (result,) = results
    assert (result.status, result.rows_read, result.inserted) == ("cancelled", 6, 6), result.error
    assert queue.waiting is not None and queue.waiting() == 0
