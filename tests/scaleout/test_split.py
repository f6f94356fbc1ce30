"""A split full copy (`changes.split`) on Celery workers, PostgreSQL to PostgreSQL: the run's
worker asks the others through the broker, each free worker takes key ranges; a worker killed
with SIGKILL mid-range loses its range, which is run again alone, and the target ends equal to
the source; `runner workers` shows who runs which range; `runner cancel` stops every range,
and a suspended job's split is not resumed by its next slot."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg

from runner import services
from runner.history import files as history
from tests.scaleout.conftest import Cluster, wait_until

ROWS, RANGES = 30_000, 6


def _split_job(cluster: Cluster, cron: str) -> str:
    url = cluster.state  # the state store's database holds the source and target schemas too
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("CREATE SCHEMA src; CREATE SCHEMA dst")
        c.execute("CREATE TABLE src.events (id bigint PRIMARY KEY, kind text, amount numeric(12,2))")
        c.execute(
            f"INSERT INTO src.events SELECT g, 'k' || (g % 7), g / 10.0 FROM generate_series(1, {ROWS}) g"
        )
        c.execute("CREATE TABLE dst.events (id bigint PRIMARY KEY, kind text, amount numeric(12,2))")
        c.execute("INSERT INTO dst.events VALUES (-1, 'gone', 0), (15000, 'stale', 0), (99999, 'gone', 0)")
    (cluster.root / "jobs.d").mkdir()
    (cluster.root / "connections.d").mkdir()
    (cluster.root / "connections.d" / "pg.yaml").write_text(
        "apiVersion: runner/v1\nkind: Connection\nmetadata: {name: pg}\n"
        f'spec: {{type: postgresql, url: "{url}"}}\n'
    )
    (cluster.root / "jobs.d" / "split.yaml").write_text(
        "apiVersion: runner/v1\nkind: Job\nmetadata: {name: split}\nspec:\n"
        f'  source: pg\n  target: pg\n  schedule: {{cron: "{cron}"}}\n  tasks:\n'
        "    - {name: events, read: {table: src.events}, write: {table: dst.events, keys: [id]},\n"
        f"       deletes: propagate, changes: {{strategy: full, split: {{ranges: {RANGES}}}}}}}\n"
    )
    services.apply(cluster.ws)
    return "split"


def _rows(url: str, table: str) -> list[tuple]:
    with psycopg.connect(url) as c:
        return c.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()


def _lock_run(cluster: Cluster, name: str) -> str | None:
    for w in services.workers(cluster.ws):
        for r in w["runs"]:
            if r["job"] == f"default/{name}":
                return r["run_id"]
    return None


def _helping(cluster: Cluster, pid: int) -> list[dict]:
    return [r for w in services.workers(cluster.ws) if w["pid"] == pid for r in w["ranges"]]


def test_a_worker_killed_mid_range_loses_only_that_range(rabbit_cluster):
    cluster = rabbit_cluster
    name = _split_job(cluster, "* * * * * */5")
    cluster.env["RUNNER_BATCH_DELAY"] = "2"  # each range of the run's own worker takes 2 s more
    cluster.daemon()
    first = cluster.worker(concurrency=1)
    run_id = wait_until("the run on the first worker", lambda: _lock_run(cluster, name), 60, cluster.procs)
    paused = cluster.root / "helper-paused"
    cluster.env |= {"RUNNER_BATCH_DELAY": "0", "RUNNER_PAUSE_AT": "write", "RUNNER_PAUSE_FILE": str(paused)}
    helper = cluster.worker(concurrency=1)
    wait_until("the helper staging a range", paused.exists, 60, cluster.procs)
    (held,) = wait_until(
        "the helper's range listed", lambda: _helping(cluster, helper.pid), 10, cluster.procs
    )
    assert held["run_id"] == run_id and held["task"] == "events"
    helper.kill()  # mid-range: staged, not committed

    path = history.run_path(cluster.ws.history, "default", name, run_id)
    wait_until("the run's end", lambda: history.read_run(path)["status"] != "running", 90, cluster.procs)
    record = history.read_run(path)
    assert record["status"] == "succeeded", record.get("error")
    (task,) = record["tasks"]
    assert [r["status"] for r in task["ranges"]] == ["done"] * RANGES
    # the killed worker's range was run again by the run's own worker, alone; it committed none
    assert all(r["by"].endswith(f"pid {first.pid}") for r in task["ranges"])
    assert task["rows_read"] == ROWS and task["deleted"] == 2
    assert _rows(cluster.state, "dst.events") == _rows(cluster.state, "src.events")
    log = history.read_log(Path(record["log"]))
    assert sorted(e["range"] for e in log if e["message"] == "range done") == list(range(RANGES))


def test_cancel_stops_the_ranges_on_every_worker(rabbit_cluster):
    cluster = rabbit_cluster
    name = _split_job(cluster, "* * * * * */5")
    cluster.env["RUNNER_BATCH_DELAY"] = "6"  # each range waits 6 s before its copy: time to cancel
    cluster.daemon()
    workers = [cluster.worker(concurrency=1), cluster.worker(concurrency=1)]

    def both_busy() -> list[dict] | None:
        held = [r for w in workers for r in _helping(cluster, w.pid)]
        return held if len(held) == 2 else None

    held = wait_until("a range on each worker", both_busy, 60, cluster.procs)
    run_id = held[0]["run_id"]
    assert {r["run_id"] for r in held} == {run_id}
    services.suspend(cluster.ws, name)  # no next slot resumes the split meanwhile
    services.cancel(cluster.ws, name)
    path = history.run_path(cluster.ws.history, "default", name, run_id)
    wait_until("the run's end", lambda: history.read_run(path)["status"] != "running", 30, cluster.procs)
    record = history.read_run(path)
    assert record["status"] == "cancelled", record.get("error")
    # no worker goes on with a range of that run
    wait_until(
        "no range held", lambda: not [r for w in workers for r in _helping(cluster, w.pid)], 15, cluster.procs
    )
    store = cluster.ws.store()
    ranges = store.ranges.of(store.tasks.state("default", name, "events").id)
    assert all(ranges[r["range"]].status == "pending" for r in held)  # in flight: rolled back
    # the worker that helped heard the cancel through the job's lease (or the run's end it caused)
    helper = next(
        w
        for w in workers
        if not any(e.get("run") == run_id for e in w.events() if e["event"] == "run started")
    )
    assert any(e["event"] == "stopped helping with a split copy" for e in helper.events())
    time.sleep(6)  # a slot or two: the suspended job's split waits
    assert [
        p.name for p in history.run_path(cluster.ws.history, "default", name, run_id).parent.glob("*.json")
    ] == [path.name]
