"""A broker restart under a running cluster (a daemon with the Celery executor and two
workers), on a broker of the test's own: Redis without persistence (its queues are lost) and
a RabbitMQ node (its durable queue survives). The broker is killed with SIGKILL while jobs run
on 3-second crons and started again a few slots later: every slot fired once, the runs asked
for during the outage ran afterwards (published again by the scheduler), no job ran twice at
once, every target equals its source, and the workers reconnected by themselves."""

from __future__ import annotations

import datetime as dt
import itertools
import time
from collections import Counter

import pytest

from runner import services
from tests.scaleout.conftest import Cluster, wait_until
from tests.scaleout.private_brokers import PrivateRabbitmq, PrivateRedis
from tests.scaleout.test_cluster import _ended, _records, _rows

JOBS = 4
OUTAGE = 8  # seconds: two or three slots of every job
# every run lasts this long at least, so that the broker dies while runs go on and they end in the
# outage: their acknowledgements fail, and the workers reconnect with runs of the lost connection
RUN_SECONDS = 1.5


@pytest.mark.parametrize("kind", [PrivateRedis, PrivateRabbitmq], ids=["redis", "rabbitmq"])
def test_a_broker_restart_loses_no_run_and_fires_no_slot_twice(kind, tmp_path, pg_url):
    broker = kind(tmp_path / "broker")
    broker.start()
    cluster = Cluster(
        tmp_path / "cluster", pg_url.replace("postgresql+psycopg://", "postgresql://"), broker.url
    )
    cluster.root.mkdir()
    try:
        _restart_under_load(cluster, broker)
    finally:
        cluster.close()
        broker.close()


def _restart_under_load(cluster: Cluster, broker) -> None:
    names = cluster.jobs(JOBS, "* * * * * */3", pause=RUN_SECONDS)
    services.apply(cluster.ws)
    store = cluster.ws.store()
    daemon = cluster.daemon()
    workers = [cluster.worker(), cluster.worker()]

    def ran_since(since: dt.datetime) -> bool:
        return all(
            any(
                r["status"] == "succeeded" and dt.datetime.fromisoformat(r["started_at"]) > since
                for r in _records(cluster, name)
            )
            for name in names
        )

    start = dt.datetime.now(dt.UTC)
    wait_until("every job's first run", lambda: ran_since(start), 60, cluster.procs)
    cluster.grow(names, 5)
    # killed while every job's run goes on (both workers busy): their ends are acknowledged after
    # the workers reconnected, through the lost connection
    wait_until(
        "every job's run going on",
        lambda: len([h for h in store.locks.jobs().values() if h.alive]) == JOBS,
        30,
        cluster.procs,
    )
    broker.kill()
    down = dt.datetime.now(dt.UTC)
    for _step in range(OUTAGE // 2):
        time.sleep(2)
        cluster.grow(names, 5)
    broker.start()
    up = dt.datetime.now(dt.UTC)
    cluster.grow(names, 5)
    grown = dt.datetime.now(dt.UTC)
    wait_until("every job to run after the restart", lambda: ran_since(grown), 90, cluster.procs)
    # and both workers go on taking runs: neither stopped after its first requests (celery#9512)
    since = dt.datetime.now(dt.UTC)
    wait_until(
        "runs started on both workers", lambda: all(_started(w, since) for w in workers), 30, cluster.procs
    )
    services.pause(cluster.ws)

    def settled() -> bool:
        return (
            not store.cluster.requests()
            and not [h for h in store.locks.jobs().values() if h.alive]
            and all(r["status"] not in ("queued", "running") for n in names for r in _records(cluster, n))
        )

    wait_until("no run handed out or going on", settled, 60, cluster.procs)
    time.sleep(1)  # a request the scheduler was handing out as the pause came: recorded by now
    wait_until("no run handed out or going on", settled, 60, cluster.procs)

    events = daemon.events()
    sent = [e for e in events if e["event"].startswith("run sent")]
    cron_sent = Counter((e["job"], e["trigger"]) for e in sent if e["event"] == "run sent to the workers")
    assert max(cron_sent.values()) == 1, "a slot was fired twice"
    for name in names:
        fired = store.cluster.fired("default", name)
        assert len(fired) == len(set(fired))
        # slots fell in the outage, and were fired (into a run, or merged into the one waiting)
        assert any(down <= dt.datetime.fromisoformat(s).replace(tzinfo=dt.UTC) <= up for s in fired), fired
        records = _records(cluster, name)
        triggers = [r["trigger"] for r in records if r["trigger"].startswith("cron")]
        assert len(triggers) == len(set(triggers)), f"{name}: a slot ran twice"
        # every run asked for, during the outage too, ran to its end afterwards
        assert {r["status"] for r in records} == {"succeeded"}, [
            (r["run_id"], r["status"], r.get("error")) for r in records
        ]
        spans = sorted(
            (dt.datetime.fromisoformat(r["started_at"]), _ended(r, cluster.ws.history), r["run_id"])
            for r in records
        )
        for (_, end, a), (begin, _, b) in itertools.pairwise(spans):
            assert end <= begin, f"{name}: runs {a} and {b} overlap"
        assert _rows(cluster.root / f"{name}-src.db") == _rows(cluster.root / f"{name}-dst.db")
    # Redis lost its queue: the scheduler published again what it refused or lost (a RabbitMQ
    # node keeps its durable queue, and a publish waits for it to be back)
    assert not isinstance(broker, PrivateRedis) or any(
        e["event"].startswith(("run not sent to the workers yet", "run sent again"))
        or e["event"] == "run sent to the workers: the broker is back"
        for e in events
    ), [e["event"] for e in events]
    # the workers reconnected by themselves: both alive, and runs started on them after the restart
    assert all(w.proc.poll() is None for w in workers)
    after = [
        e
        for w in workers
        for e in w.events()
        if e["event"] == "run started" and dt.datetime.fromisoformat(e["ts"]) > up
    ]
    assert {e["job"] for e in after} >= {f"default/{n}" for n in names}


def _started(worker, since: dt.datetime) -> bool:
    """Whether `worker` started a run after `since`."""
    return any(
        e["event"] == "run started" and dt.datetime.fromisoformat(e["ts"]) > since for e in worker.events()
    )
