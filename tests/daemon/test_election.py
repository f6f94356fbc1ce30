"""Which daemon schedules: a standby waits for the scheduler's lease and leads once it ends; a
scheduler whose lease was taken over stops; a slot is claimed once, whoever claims it."""

from __future__ import annotations

import datetime as dt
import io
import json
import threading
import time

import pytest
import sqlalchemy as sa

from runner import services
from runner.daemon.logs import DaemonLog
from runner.daemon.main import Daemon, DaemonOptions
from runner.errors import RunnerError
from runner.state import locks, schema
from runner.state.database import utcnow
from tests.conftest import TWO_SQLITE


def _events(stream: io.StringIO) -> list[str]:
    return [json.loads(line)["event"] for line in stream.getvalue().splitlines()]


def _scheduler_elsewhere(ws: services.Workspace, expires_in: float) -> None:
    expires = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=expires_in)).isoformat(timespec="microseconds")
    with ws.store(create=True).db.write() as conn:
        conn.execute(
            schema.locks.insert().values(
                name=locks.DAEMON,
                lock_id="d" * 32,
                holder="runner@other-host pid 7",
                acquired_at=utcnow(),
                host="other-host.invalid",
                pid=7,
                expires_at=expires,
            )
        )


def _wait(predicate, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def folder(project):
    project.write("connections.d/c.yaml", TWO_SQLITE)
    return project


def test_a_second_daemon_is_refused_unless_standby_which_leads_when_the_lease_ends(folder):
    ws = folder.ws
    _scheduler_elsewhere(ws, expires_in=1.5)
    with pytest.raises(RunnerError, match="start this one with --standby"):
        Daemon(ws, DaemonOptions(watch=False), DaemonLog(io.StringIO(), as_json=True)).run()
    stream = io.StringIO()
    daemon = Daemon(ws, DaemonOptions(watch=False, standby=True, poll=0.1), DaemonLog(stream, as_json=True))
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(daemon.run()))
    thread.start()
    try:
        _wait(lambda: "daemon started" in _events(stream))
        events = _events(stream)
        assert events.index(
            "standby: another daemon schedules; taking over when its lease ends"
        ) < events.index("daemon started")
        assert ws.store().locks.info(locks.DAEMON).holder == locks.holder()
    finally:
        daemon.request_stop()
        thread.join(30)
    assert codes == [0]


def test_a_standby_stopped_before_it_leads_exits_cleanly(folder):
    ws = folder.ws
    _scheduler_elsewhere(ws, expires_in=600)
    stream = io.StringIO()
    daemon = Daemon(ws, DaemonOptions(watch=False, standby=True), DaemonLog(stream, as_json=True))
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(daemon.run()))
    thread.start()
    _wait(lambda: any(e.startswith("standby") for e in _events(stream)))
    daemon.request_stop()
    thread.join(30)
    assert codes == [0] and "daemon started" not in _events(stream)
    assert ws.store().locks.info(locks.DAEMON).holder == "runner@other-host pid 7"


def test_a_scheduler_whose_lease_was_taken_over_stops_with_status_1(folder):
    ws = folder.ws
    stream = io.StringIO()
    daemon = Daemon(ws, DaemonOptions(watch=False, poll=0.1), DaemonLog(stream, as_json=True))
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(daemon.run()))
    thread.start()
    _wait(lambda: "daemon started" in _events(stream))
    with ws.store().db.write() as conn:  # another daemon took the lease over
        conn.execute(sa.delete(schema.locks).where(schema.locks.c.name == locks.DAEMON))
    ws.store().locks.heartbeat.beat()
    thread.join(30)
    assert codes == [1]
    assert "the daemon's lease was taken over by another daemon: stopping" in _events(stream)


def test_a_slot_is_claimed_once(folder):
    cluster = folder.ws.store(create=True).cluster
    slot = ("default", "a", "2026-11-29T10:00:00+00:00")
    assert cluster.claim_slots([slot], "first") == {slot}
    later = ("default", "a", "2026-11-29T10:01:00+00:00")
    assert cluster.claim_slots([slot, later], "second") == {later}
    assert cluster.fired("default", "a") == [slot[2], later[2]]
