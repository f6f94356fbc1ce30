"""Two daemons and three workers on loopback, over RabbitMQ and again over Redis, with the
PostgreSQL state store: jobs on 5-second crons; a worker killed with SIGKILL mid-run and then
the scheduling daemon. Afterwards every slot was fired once, no job ran twice at once, every
target equals its source, and every run handed out is in the history with how it ended."""

from __future__ import annotations

import datetime as dt
import itertools
import sqlite3
import time
from collections import Counter
from pathlib import Path

from runner import services
from runner.history import files as history
from runner.state import locks
from tests.scaleout.conftest import Cluster, wait_until

JOBS = 6


def _holder_pid(cluster: Cluster, name: str) -> int | None:
    held = cluster.ws.store().locks.info(name)
    return held.pid if held is not None and held.alive else None


def _records(cluster: Cluster, job: str) -> list[dict]:
    folder = cluster.ws.history / "default" / job
    return [history.read_run(p) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []


def _rows(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT id, seq, v FROM items ORDER BY id").fetchall()


def _ended(record: dict, history_dir: Path) -> dt.datetime:
    """When a run ended: its record's end, or for one cut by a kill when its record was
    rewritten as interrupted (its lease taken over: no later run could start before that)."""
    if record.get("finished_at"):
        return dt.datetime.fromisoformat(record["finished_at"])
    path = history.run_path(history_dir, record["namespace"], record["job"], record["run_id"])
    return dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)


def test_slots_fire_once_and_runs_survive_killed_workers_and_scheduler(cluster):
    names = cluster.jobs(JOBS, "* * * * * */5")
    # a job that follows job00: its triggers come back to whichever daemon leads, once each
    (cluster.root / "jobs.d" / "follow.yaml").write_text(
        "apiVersion: runner/v1\nkind: Job\nmetadata: {name: follow}\nspec:\n"
        "  source: job00-src\n  target: follow-dst\n  after: [{job: job00, when: succeeded}]\n"
        "  tasks:\n    - {name: items, read: {table: items}, write: {table: items, keys: [id]}}\n"
    )
    (cluster.root / "connections.d" / "follow.yaml").write_text(
        "apiVersion: runner/v1\nkind: Connection\nmetadata: {name: follow-dst}\n"
        'spec: {type: sqlite, url: "sqlite:///follow-dst.db"}\n'
    )
    services.apply(cluster.ws)  # the store, before the workers open it
    store = cluster.ws.store()
    first = cluster.daemon()
    wait_until(
        "the first daemon to lead", lambda: _holder_pid(cluster, locks.DAEMON) == first.pid, 30, cluster.procs
    )
    second = cluster.daemon()
    workers = [cluster.worker() for _ in range(3)]
    wait_until("three workers", lambda: len(services.workers(cluster.ws)) == 3, 30, cluster.procs)
    wait_until(
        "the second daemon on standby",
        lambda: any(e["event"].startswith("standby") for e in second.events()),
        30,
        cluster.procs,
    )

    # a worker killed mid-run: its run's lease runs out, the run is interrupted and run again.
    # Only a run whose record says it started: one cut between taking the job's lock and writing
    # that record has done nothing yet, and the broker's redelivery runs it under the same id.
    def running_on_worker() -> tuple[str, int, str] | None:
        pids = {w.pid for w in workers}
        for job, lock in store.locks.jobs().items():
            started = lock.run_id and store.runs.statuses([lock.run_id]).get(lock.run_id) == "running"
            if lock.pid in pids and lock.alive and started:
                return job, lock.pid, lock.run_id
        return None

    for _step in range(5):
        cluster.grow(names, 5)
        time.sleep(1)
    job, pid, cut = wait_until("a run on a worker", running_on_worker, 30, cluster.procs)
    next(w for w in workers if w.pid == pid).kill()

    # the scheduling daemon killed: the standby takes over within a lease (and a poll)
    for _step in range(3):
        cluster.grow(names, 5)
        time.sleep(1)
    first.kill()
    wait_until(
        "the standby to lead", lambda: _holder_pid(cluster, locks.DAEMON) == second.pid, 30, cluster.procs
    )
    # on one host the dead pid says so at once; across hosts, the lease's end (tests/state/test_leases.py)
    wait_until(
        "the cut run recorded as interrupted",
        lambda: (r := cluster.ws.store().runs.statuses([cut])) and r[cut] == "interrupted",
        40,
        cluster.procs,
    )
    for _step in range(4):
        cluster.grow(names, 5)
        time.sleep(1)
    grown_until = dt.datetime.now(dt.UTC)

    def caught_up() -> bool:  # every job ran to its end after the last new rows
        return all(
            any(
                r["status"] == "succeeded" and dt.datetime.fromisoformat(r["started_at"]) > grown_until
                for r in _records(cluster, name)
            )
            for name in names
        )

    wait_until("every job to run after the last rows", caught_up, 45, cluster.procs)
    services.pause(cluster.ws)
    wait_until(
        "no run handed out or going on",
        lambda: not store.cluster.requests() and not [h for h in store.locks.jobs().values() if h.alive],
        40,
        cluster.procs,
    )

    sent = [e for p in (first, second) for e in p.events() if e["event"] == "run sent to the workers"]
    assert len(sent) >= JOBS * 3
    cron_sent = Counter((e["job"], e["trigger"]) for e in sent if e["trigger"].startswith("cron"))
    assert max(cron_sent.values()) == 1, "a slot was fired twice"
    for name in names:
        fired = store.cluster.fired("default", name)
        assert len(fired) == len(set(fired)) >= 3
        records = _records(cluster, name)
        triggers = [r["trigger"] for r in records if r["trigger"].startswith("cron")]
        assert len(triggers) == len(set(triggers)), f"{name}: a slot ran twice"
        assert {t.split()[1] for t in triggers} <= set(fired)
        # no job ran twice at once: the runs' spans do not overlap
        spans = sorted(
            (dt.datetime.fromisoformat(r["started_at"]), _ended(r, cluster.ws.history), r["run_id"])
            for r in records
            if r.get("started_at")
        )
        for (_, end, a), (start, _, b) in itertools.pairwise(spans):
            assert end <= start, f"{name}: runs {a} and {b} overlap"
        assert _rows(cluster.root / f"{name}-src.db") == _rows(cluster.root / f"{name}-dst.db")
    # each succeeded run of job00 fired `follow` at most once (merged when it was running),
    # also across the change of scheduler
    upstream = [r for r in _records(cluster, "job00") if r["status"] == "succeeded"]
    follows = [r for r in _records(cluster, "follow") if r["trigger"] == "after default/job00 succeeded"]
    assert 1 <= len(follows) <= len(upstream)
    # every run handed out is in the history, and says how it ended
    for event in sent:
        record = history.read_run(
            history.run_path(cluster.ws.history, "default", event["job"].split("/")[1], event["run"])
        )
        assert record["status"] in ("succeeded", "interrupted", "not_started"), record
    interrupted = history.read_run(history.run_path(cluster.ws.history, "default", job.split("/")[1], cut))
    assert interrupted["status"] == "interrupted"
    # the job ran again from its last committed position: a catch-up by the daemon's reaper, or
    # its next slot on a worker that took the dead run's lock over first
    after = [
        r for r in _records(cluster, job.split("/")[1]) if r["run_id"] > cut and r["status"] == "succeeded"
    ]
    assert after, f"{job} never ran again after run {cut} was cut"
    assert any(e["event"] == "daemon started" for e in second.events())
