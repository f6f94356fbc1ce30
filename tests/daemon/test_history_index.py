"""History listings go through an index in the state store: they read only the files they
show, however many runs a job has; retention keeps N runs or N days per job, and always the
last run of each task."""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from runner import services
from runner.history import files as history
from tests.daemon.conftest import job_yaml

TWO_TASKS = """
- name: items
  read: {table: items}
  write: {table: items, keys: [id]}
- name: other
  read: {table: items}
  write: {table: other, keys: [id]}
"""
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
RUNS = 1500

_opened: list[str] | None = None


def _audit(event: str, args: tuple) -> None:
    if event == "open" and _opened is not None and isinstance(args[0], str | Path):
        name = str(args[0])
        if name.endswith(".json") and "/history/" in name:
            _opened.append(name)


sys.addaudithook(_audit)  # Python's own audit events: every open() of a file, counted for real


@contextmanager
def opened_files() -> Iterator[list[str]]:
    global _opened
    _opened = []
    try:
        yield _opened
    finally:
        _opened = None


def write_runs(
    ws: services.Workspace, count: int, tasks: list[str] | None = None, start: int = 0
) -> list[str]:
    """Run records as a runner writes them (one file each), the oldest first; every 100th
    wrote rows, the others found nothing new; only the first ran task `other`."""
    ids = []
    for i in range(start, start + count):
        when = T0 + dt.timedelta(minutes=i)
        run_id = history.new_run_id(when)
        names = tasks or (["items", "other"] if i == 0 else ["items"])
        written = 5 if i % 100 == 0 else 0
        record = {
            "run_id": run_id,
            "job": "sync",
            "namespace": "default",
            "trigger": "cron",
            "status": "succeeded",
            "started_at": when.isoformat(),
            "finished_at": when.isoformat(),
            "rows_read": written,
            "rows_written": written,
            "tasks": [
                {"name": n, "status": "succeeded", "inserted": written, "rows_written": written}
                for n in names
            ],
            "error": None,
        }
        path = history.run_path(ws.history, "default", "sync", run_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record))
        history.log_path(ws.history, "default", "sync", run_id).write_text("{}\n")
        ids.append(run_id)
    return ids


@pytest.fixture
def many_runs(daemon_project) -> tuple:
    p = daemon_project
    p.write("jobs.d/sync.yaml", job_yaml("sync", TWO_TASKS))
    services.apply(p.ws)
    ids = write_runs(p.ws, RUNS)
    return p, ids


def test_listings_read_only_the_files_they_show(many_runs):
    p, ids = many_runs
    services.runs(p.ws, "sync", limit=1)  # the first listing indexes the files an older runner wrote
    with opened_files() as opened:
        latest = services.runs(p.ws, "sync", limit=5)
    assert [r["run_id"] for r in latest] == ids[::-1][:5] and len(opened) == 5
    with opened_files() as opened:
        changed = services.runs(p.ws, "sync", limit=5, changed_only=True)  # 1 run in 100 wrote rows
    assert [r["run_id"] for r in changed] == [ids[i] for i in (1400, 1300, 1200, 1100, 1000)]
    assert len(opened) == 5
    with opened_files() as opened:
        tasks = {t["task"]: t["last_run"]["run_id"] for t in services.tasks(p.ws, "sync")}
    assert tasks == {"items": ids[-1], "other": ids[0]} and len(opened) == 2
    with opened_files() as opened:
        (job,) = services.status(p.ws)["jobs"]
    assert job["last_run"]["run_id"] == ids[-1] and len(opened) <= 2
    with opened_files() as opened:
        other = services.runs(p.ws, "sync", limit=3, task="other")
    assert [r["run_id"] for r in other] == [ids[0]] and len(opened) == 1
    new = services.run(p.ws, "sync")  # a new run is indexed as it is written
    assert services.runs(p.ws, "sync", limit=1)[0]["run_id"] == new["run_id"]
    assert services.tasks(p.ws, "sync")[1]["last_run"]["run_id"] == new["run_id"]


def test_retention_keeps_n_runs_and_the_last_run_of_each_task(many_runs):
    p, ids = many_runs
    gone = services.prune_history(p.ws, "default", "sync", keep_runs=10)
    assert len(gone) == RUNS - 11
    left = sorted(path.name for path in (p.ws.history / "default" / "sync").glob("*.json"))
    assert left == sorted(f"{i}.json" for i in [ids[0], *ids[-10:]])  # ids[0]: the last run of `other`
    assert not history.log_path(p.ws.history, "default", "sync", ids[1]).exists()
    assert [r["run_id"] for r in services.runs(p.ws, "sync", limit=20)] == [*ids[::-1][:10], ids[0]]
    assert {t["last_run"]["run_id"] for t in services.tasks(p.ws, "sync")} == {ids[-1], ids[0]}


def test_retention_by_days(many_runs):
    p, ids = many_runs
    now = T0 + dt.timedelta(minutes=RUNS)  # the newest run started a minute before
    gone = services.prune_history(p.ws, "default", "sync", keep_days=1 / 24, now=now)  # one hour
    assert len(gone) == RUNS - 60 - 1
    assert len(services.runs(p.ws, "sync", limit=1000)) == 61


def test_the_daemon_keeps_n_runs(daemon_project):
    p = daemon_project
    p.write("jobs.d/sync.yaml", job_yaml("sync", extra='  schedule: {cron: "* * * * * *"}\n'))
    d = p.start("--keep-runs", "2")
    deadline = time.monotonic() + 30
    while len(d.matching("run succeeded")) < 4 and time.monotonic() < deadline:
        time.sleep(0.1)
    d.wait_for(lambda e: e["event"] == "history pruned")
    assert d.stop() == 0
    assert len(d.matching("run succeeded")) >= 4
    records = [json.loads(f.read_text()) for f in (p.root / ".runner/history/default/sync").glob("*.json")]
    assert 2 <= len(records) <= 3  # 3: a run going on when it stopped, pruned at the next end


def test_the_index_in_a_postgresql_store_pages_in_start_order(daemon_project, pg_url):
    p = daemon_project
    p.write("jobs.d/sync.yaml", job_yaml("sync", TWO_TASKS))
    ws = services.Workspace(p.root, state_url=pg_url)
    services.apply(ws)
    ids = write_runs(ws, 250)  # over two pages of the index
    listed = [r["run_id"] for r in services.runs(ws, "sync", limit=1000)]
    assert listed == ids[::-1]
    assert {t["task"]: t["last_run"]["run_id"] for t in services.tasks(ws, "sync")} == {
        "items": ids[-1],
        "other": ids[0],
    }
    assert len(services.prune_history(ws, "default", "sync", keep_runs=5)) == 250 - 6
    ws.close()
