"""A cron slot of many jobs: the executor reads and locks them together and starts them all at
once (`runner.runs.admission`), each run recorded and locked as any other, none twice."""

from __future__ import annotations

import datetime as dt
import threading
import time

from runner import services
from runner.daemon.executor import Executor, Request
from tests.daemon.conftest import job_yaml, rows_of

JOBS = 12


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict]] = []

    def __call__(self, level: str, message: str, **fields) -> None:
        self.lines.append((level, message, fields))


def _burst_project(daemon_project, jobs: int = JOBS):
    for n in range(jobs):
        daemon_project.write(
            f"jobs.d/j{n}.yaml",
            job_yaml(f"j{n}").replace("write: {table: items,", f"write: {{table: items_{n},"),
        )
    services.apply(daemon_project.ws)
    return [f"default/j{n}" for n in range(jobs)]


def _wait_idle(executor: Executor, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not executor.idle():
        assert time.monotonic() < deadline, f"runs still going: {executor.running()}"
        time.sleep(0.05)


def test_a_slot_of_many_jobs_starts_them_together_each_run_once(daemon_project):
    refs = _burst_project(daemon_project)
    ws = daemon_project.ws
    executor = Executor(ws, 100, Log(), threading.Event())
    try:
        executor.warm()
        asked = dt.datetime.now(dt.UTC)
        outcomes = executor.submit_many([Request(ref, "cron test") for ref in refs])
        assert outcomes == ["started"] * JOBS
        # while they run, each job's lock is held once, by its own run
        held = ws.store().locks.jobs()
        assert set(held) <= set(refs)
        _wait_idle(executor)
        assert ws.store().locks.jobs() == {}  # every lock let go
        ended = [executor.finished.get_nowait() for _ in range(JOBS)]
        assert executor.finished.empty()
    finally:
        executor.shutdown()
    records = [outcome.record for outcome in ended]
    assert all(r is not None and r["status"] == "succeeded" for r in records), records
    assert sorted(r["job"] for r in records) == sorted(ref.split("/")[1] for ref in refs)
    for n in range(JOBS):  # every row in every target, once
        assert len(rows_of(daemon_project.root / "dst.db", f"items_{n}")) == 200
    for ref in refs:
        runs = services.recent_runs(ws, "default", ref.split("/")[1], 10)
        assert [r["status"] for r in runs] == ["succeeded"]  # one record, indexed, per job
    started = [dt.datetime.fromisoformat(r["started_at"]) for r in records]
    assert min(started) >= asked


def test_a_job_running_elsewhere_is_refused_in_a_burst_and_the_others_run(daemon_project):
    refs = _burst_project(daemon_project, 4)
    ws = daemon_project.ws
    held = ws.store().locks.acquire(services.locks.job_lock(refs[0]), timeout=0, run_id="elsewhere")
    executor = Executor(ws, 100, Log(), threading.Event())
    try:
        executor.submit_many([Request(ref, "cron test") for ref in refs])
        _wait_idle(executor)
        ended = {o.request.job: o for o in (executor.finished.get_nowait() for _ in refs)}
    finally:
        executor.shutdown()
        ws.store().locks.release(services.locks.job_lock(refs[0]), held)
    assert ended[refs[0]].busy and ended[refs[0]].record is None
    assert all(ended[ref].record["status"] == "succeeded" for ref in refs[1:])


def test_a_second_request_of_a_job_in_a_burst_is_merged_not_run_twice(daemon_project):
    refs = _burst_project(daemon_project, 3)
    ws = daemon_project.ws
    executor = Executor(ws, 100, Log(), threading.Event())
    try:
        outcomes = executor.submit_many([Request(r, "cron a") for r in refs] + [Request(refs[0], "cron b")])
        assert outcomes == ["started", "started", "started", "queued"]
        _wait_idle(executor)
        ended = []
        while not executor.finished.empty():
            ended.append(executor.finished.get_nowait())
    finally:
        executor.shutdown()
    assert sorted(o.request.trigger for o in ended if o.request.job == refs[0]) == ["cron a", "cron b"]
    assert all(o.record["status"] == "succeeded" for o in ended)


def test_a_run_admitted_but_never_started_lets_go_of_its_lock(daemon_project):
    refs = _burst_project(daemon_project, 2)
    ws = daemon_project.ws
    executor = Executor(ws, 100, Log(), threading.Event())
    try:
        tokens = {ref: services.CancelToken() for ref in refs}
        admitted = executor.admission.admit(list(tokens.items()))
        assert set(admitted) == set(refs)
        assert set(ws.store().locks.jobs()) == set(refs)
        executor.stop()  # the daemon stopping before a worker took them
        for ref in refs:
            executor._run(Request(ref, "cron a"), tokens[ref], admitted[ref])
    finally:
        executor.shutdown()
    assert ws.store().locks.jobs() == {}
    assert all(services.recent_runs(ws, "default", ref.split("/")[1], 5) == [] for ref in refs)
