"""A real `runner daemon` subprocess: watch and reconcile, cron, triggers, retries, cancel,
kill -9 and restart, SIGTERM, suspend and pause. Time is driven where it can be: a missed
slot is a schedule mark set in the past, a long run is `RUNNER_BATCH_DELAY` per batch."""

from __future__ import annotations

import datetime as dt
import json
import signal
import socket
import sqlite3
import time
from pathlib import Path

from runner import services
from runner.state import locks
from tests.daemon.conftest import BATCH, ROWS, job_yaml, rows_of, runner_cli, seed_missed_slot

YEARLY = '  schedule: {cron: "0 0 1 1 *"}\n'  # fires only when the test seeds a missed slot
SLOW = {"RUNNER_BATCH_DELAY": "0.05"}  # 20 batches: a run of about a second


def ran(event: dict, job: str = "default/sync") -> bool:
    return event["event"] in ("run succeeded", "run failed", "run cancelled") and event["job"] == job


def applied(what: str):
    return lambda e: e["event"] == "applied" and what in e["changed"]


def _committed(db_file: Path) -> int:
    """Rows the target holds; 0 before the run made its table."""
    try:
        return len(rows_of(db_file))
    except sqlite3.OperationalError:
        return 0


def source_equals_target(project) -> bool:
    return rows_of(project.root / "src.db") == rows_of(project.root / "dst.db")


def test_files_added_broken_fixed_and_deleted(daemon_project):
    p = daemon_project
    d = p.start()
    d.wait_for(applied("create Connection default/src"))
    p.write("jobs.d/sync.yaml", job_yaml("sync"))
    d.wait_for(applied("create Job default/sync"))

    p.write("jobs.d/sync.yaml", job_yaml("sync").replace("tasks:", "tasks: [oops"))
    bad = d.wait_for(lambda e: e["event"].startswith("invalid definition"))
    assert "jobs.d/sync.yaml:" in bad["problem"]
    time.sleep(1.5)  # longer than debounce and settle: nothing was deleted meanwhile
    assert [o.name for o in services.get(p.ws, "Job")] == ["sync"]

    p.write("jobs.d/sync.yaml", job_yaml("sync", extra="  on_error: continue\n"))
    d.wait_for(applied("update Job default/sync"))
    (p.root / "jobs.d/sync.yaml").unlink()
    d.wait_for(lambda e: e["event"].startswith("deletion planned"))
    assert [o.name for o in services.get(p.ws, "Job")] == ["sync"]  # held while the files settle
    d.wait_for(applied("delete Job default/sync"))
    assert services.get(p.ws, "Job") == []
    revisions = [e["revision"] for e in d.matching("applied")]
    assert revisions == [1, 2, 3, 4]  # one revision per reconcile, as `runner apply` records
    assert d.stop() == 0


def test_a_file_written_in_pieces_never_deletes_a_job(daemon_project):
    p = daemon_project
    both = job_yaml("one") + "---\n" + job_yaml("two", extra="  on_error: continue\n")
    p.write("jobs.d/both.yaml", both)
    d = p.start()
    d.wait_for(applied("create Job default/two"))
    cut = both.index("---")
    pieces = ["", both[:cut], both[: cut + 60], both]  # empty; one job; half a document; all
    seen: set[tuple[str, ...]] = set()
    with (p.root / "jobs.d/both.yaml").open("w") as f:  # truncates: the file is empty now
        for piece in pieces:
            f.seek(0)
            f.truncate()
            f.write(piece)
            f.flush()
            deadline = time.monotonic() + 0.5  # longer than the debounce, shorter than settle
            while time.monotonic() < deadline:
                seen.add(tuple(sorted(o.name for o in services.get(p.ws, "Job"))))
                time.sleep(0.05)
    time.sleep(1.5)
    seen.add(tuple(sorted(o.name for o in services.get(p.ws, "Job"))))
    assert seen == {("one", "two")}
    assert not [e for e in d.matching("applied") if any("delete" in c for c in e["changed"])]
    assert d.matching("deletion planned: applied if the files still say so")
    assert d.stop() == 0


def test_a_schedule_with_seconds_fires_on_time(daemon_project):
    p = daemon_project
    p.write("jobs.d/sync.yaml", job_yaml("sync", extra='  schedule: {cron: "* * * * * */2"}\n'))
    d = p.start()
    first = d.wait_for(lambda e: e["event"] == "run succeeded")
    d.wait_for(lambda e: e["event"] == "run succeeded", after=d.events().index(first) + 1)
    assert d.stop() == 0
    runs = [r for r in services.runs(p.ws, "sync") if r["trigger"].startswith("cron")]
    assert len(runs) >= 2
    for r in runs:
        slot = dt.datetime.fromisoformat(r["trigger"].split()[1])
        started = dt.datetime.fromisoformat(r["started_at"])
        assert slot.second % 2 == 0
        assert dt.timedelta(0) <= started - slot < dt.timedelta(seconds=1)


def test_a_trigger_chain_and_two_triggers_of_one_job_never_overlap(daemon_project):
    p = daemon_project
    p.write("jobs.d/a.yaml", job_yaml("a", extra=YEARLY))
    p.write("jobs.d/b.yaml", job_yaml("b", extra="  after: [{job: a}]\n"))
    p.write("jobs.d/c.yaml", job_yaml("c", extra="  after: [{job: b, when: finished}]\n"))
    # d follows both a and b: b starts when a ends, so d is asked twice while it runs
    p.write("jobs.d/d.yaml", job_yaml("d", extra="  after: [{job: a}, {job: b}]\n"))
    # e names a twice (by name and by namespace/name): it follows a once
    p.write("jobs.d/e.yaml", job_yaml("e", extra="  after: [{job: a}, {job: default/a, when: finished}]\n"))
    services.apply(p.ws)
    seed_missed_slot(p.ws, "a")
    d = p.start(env=SLOW)
    d.wait_for(lambda e: ran(e, "default/c"))
    d.wait_for(lambda e: ran(e, "default/d") and len([x for x in d.events() if ran(x, "default/d")]) == 2)
    assert d.stop() == 0
    d.wait_for(lambda e: ran(e, "default/e"))
    time.sleep(0.5)
    triggers = {job: [r["trigger"] for r in services.runs(p.ws, job)][::-1] for job in "abcde"}
    assert triggers["e"] == ["after default/a succeeded"]
    assert triggers["a"] == [triggers["a"][0]] and triggers["a"][0].startswith("catch-up: missed cron slot")
    assert triggers["b"] == ["after default/a succeeded"]
    assert triggers["c"] == ["after default/b succeeded"]
    assert sorted(triggers["d"]) == ["after default/a succeeded", "after default/b succeeded"]
    d_runs = sorted(services.runs(p.ws, "d"), key=lambda r: r["started_at"])
    assert d_runs[0]["finished_at"] <= d_runs[1]["started_at"]  # one after the other, never at once
    assert all(r["status"] == "succeeded" for job in "abcd" for r in services.runs(p.ws, job))


def test_retries_with_backoff_on_a_refused_connection(daemon_project):
    p = daemon_project
    with socket.socket() as s:  # a port nothing listens on: the connection is refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p.write(
        "connections.d/gone.yaml",
        "apiVersion: runner/v1\nkind: Connection\nmetadata: {name: gone}\n"
        f'spec: {{type: postgresql, url: "postgresql://runner@127.0.0.1:{port}/gone"}}\n',
    )
    retry = "  retry: {attempts: 3, backoff: 0.4, max_delay: 0.6}\n"
    p.write("jobs.d/sync.yaml", job_yaml("sync", extra=YEARLY + retry).replace("source: src", "source: gone"))
    services.apply(p.ws)
    seed_missed_slot(p.ws, "sync")
    d = p.start()
    d.wait_for(lambda e: ran(e) and len([x for x in d.events() if ran(x)]) == 3)
    time.sleep(1.2)  # no fourth attempt
    assert d.stop() == 0
    runs = sorted(services.runs(p.ws, "sync"), key=lambda r: r["started_at"])
    assert [r["status"] for r in runs] == ["failed"] * 3
    assert [r["failure"] for r in runs] == ["transient"] * 3
    assert "refused" in runs[0]["error"].lower()
    assert [r["trigger"] for r in runs][1:] == ["retry 2 of 3", "retry 3 of 3"]
    starts = [dt.datetime.fromisoformat(r["started_at"]) for r in runs]
    gaps = [(b - a).total_seconds() for a, b in zip(starts, starts[1:], strict=False)]
    assert 0.4 <= gaps[0] < 1.4 and 0.6 <= gaps[1] < 1.6  # backoff 0.4 s, then doubled and capped at 0.6
    assert [e["seconds"] for e in d.matching("retry scheduled")] == [0.4, 0.6]


def test_a_terminal_failure_is_not_retried(daemon_project):
    """Bad SQL fails the same way on every try: the run says so and the daemon does not retry it
    (a job that follows failures still runs)."""
    p = daemon_project
    retry = "  retry: {attempts: 3, backoff: 0.2, max_delay: 0.2}\n"
    bad = '- {name: t, read: {query: "SELEC id FROM items"}, write: {table: out}}'
    p.write("jobs.d/sync.yaml", job_yaml("sync", tasks=bad, extra=YEARLY + retry))
    p.write("jobs.d/after.yaml", job_yaml("after", extra="  after: [{job: sync, when: failed}]\n"))
    services.apply(p.ws)
    seed_missed_slot(p.ws, "sync")
    d = p.start()
    d.wait_for(lambda e: ran(e, "default/after"))
    time.sleep(1.0)  # a retry would have come by now
    assert d.stop() == 0
    (run,) = services.runs(p.ws, "sync")
    assert (run["status"], run["failure"]) == ("failed", "terminal")
    assert run["tasks"][0]["failure"] == "terminal"
    assert d.matching("retry scheduled") == []
    assert [e["job"] for e in d.matching("not retried: the failure is terminal")] == ["default/sync"]
    assert services.runs(p.ws, "after")[0]["trigger"] == "after default/sync failed"


def test_cancel_mid_run_then_a_clean_resume(daemon_project):
    p = daemon_project
    p.write("jobs.d/sync.yaml", job_yaml("sync", extra=YEARLY))
    services.apply(p.ws)
    seed_missed_slot(p.ws, "sync")
    # a run of about three seconds: the cancel's own start-up and the run's 0.5 s poll of the
    # state store must land well before the last batch
    d = p.start(env={"RUNNER_BATCH_DELAY": "0.15"})
    started = d.wait_for(lambda e: e["event"] == "run started")
    time.sleep(0.3)
    cancelled = runner_cli(p.root, "cancel", "sync")
    assert cancelled.returncode == 0, cancelled.stderr
    assert f"asked run {started['run']} of default/sync" in cancelled.stdout
    d.wait_for(lambda e: e["event"] == "run cancelled")
    assert d.stop() == 0
    record = services.runs(p.ws, "sync")[0]
    assert record["status"] == "cancelled" and record["error"].startswith("cancelled by ")
    written = len(rows_of(p.root / "dst.db"))
    assert 0 < written < ROWS and written % BATCH == 0  # whole batches
    assert services.pointer_show(p.ws, "sync")[0]["pointer"]["value"] == str(written)

    again = runner_cli(p.root, "run", "sync", "--format", "json")
    assert again.returncode == 0, again.stderr
    task = json.loads(again.stdout)["tasks"][0]
    assert task["inserted"] == ROWS - written and task["updated"] == 0  # no loss, no duplicate
    assert source_equals_target(p)


def test_kill_9_of_the_daemon_mid_run_then_restart_runs_once(daemon_project):
    p = daemon_project
    p.write("jobs.d/sync.yaml", job_yaml("sync", extra='  schedule: {cron: "0 * * * *"}\n'))
    services.apply(p.ws)
    seed_missed_slot(p.ws, "sync")
    d = p.start(env=SLOW)
    started = d.wait_for(lambda e: e["event"] == "run started")
    deadline = time.monotonic() + 30
    while not _committed(p.root / "dst.db"):  # a batch in the target: the run is mid-way
        assert time.monotonic() < deadline
        time.sleep(0.01)
    d.stop(signal.SIGKILL)
    killed = services.runs(p.ws, "sync")[0]
    assert killed["run_id"] == started["run"] and killed["status"] == "interrupted"  # read as such
    written = len(rows_of(p.root / "dst.db"))
    assert written < ROWS
    # down for three hourly slots as well: still one run, not one per slot plus the interrupted one
    seed_missed_slot(p.ws, "sync", dt.timedelta(hours=3))

    again = p.start()
    again.wait_for(lambda e: ran(e))
    time.sleep(1.0)
    assert again.stop() == 0
    runs = services.runs(p.ws, "sync")
    assert [r["status"] for r in runs] == ["succeeded", "interrupted"]
    assert runs[0]["trigger"] == f"catch-up: run {started['run']} was interrupted"
    assert json.loads(Path(killed["path"]).read_text())["status"] == "interrupted"  # rewritten on disk
    task = runs[0]["tasks"][0]
    assert task["inserted"] == ROWS - written  # resumed from the pointer: nothing twice
    assert source_equals_target(p)


def test_sigterm_lets_a_run_finish_and_exits_0(daemon_project):
    p = daemon_project
    p.write("jobs.d/sync.yaml", job_yaml("sync", extra=YEARLY))
    services.apply(p.ws)
    seed_missed_slot(p.ws, "sync")
    d = p.start(env=SLOW)
    d.wait_for(lambda e: e["event"] == "run started")
    assert d.stop() == 0
    events = [e["event"] for e in d.events()]
    assert events.index("stopping: waiting for runs to finish") < events.index("run succeeded")
    assert events[-1] == "daemon stopped"
    assert source_equals_target(p)


def test_sigterm_past_the_grace_period_cancels_at_a_batch_boundary(daemon_project):
    p = daemon_project
    p.write("jobs.d/sync.yaml", job_yaml("sync", extra=YEARLY))
    services.apply(p.ws)
    seed_missed_slot(p.ws, "sync")
    d = p.start("--grace", "0.3", env={"RUNNER_BATCH_DELAY": "0.2"})
    d.wait_for(lambda e: e["event"] == "run started")
    assert d.stop() == 0
    record = services.runs(p.ws, "sync")[0]
    assert record["status"] == "cancelled" and record["error"] == "cancelled: the daemon is stopping"
    written = len(rows_of(p.root / "dst.db"))
    assert written < ROWS and written % BATCH == 0
    assert services.pointer_show(p.ws, "sync")[0]["pointer"]["value"] == str(written)


def test_a_running_job_is_refused_elsewhere_and_an_update_waits_as_pending(daemon_project):
    p = daemon_project
    p.write("jobs.d/sync.yaml", job_yaml("sync", extra=YEARLY))
    services.apply(p.ws)
    seed_missed_slot(p.ws, "sync")
    d = p.start(env={"RUNNER_BATCH_DELAY": "0.6"})  # a run of 12 s: four CLI calls fit in it, even loaded
    started = d.wait_for(lambda e: e["event"] == "run started")
    refused = runner_cli(p.root, "run", "sync")
    assert refused.returncode == 1 and "is already running" in refused.stderr

    p.write("jobs.d/sync.yaml", job_yaml("sync", extra=YEARLY + "  on_error: continue\n"))
    d.wait_for(applied("update Job default/sync"))
    status = json.loads(runner_cli(p.root, "status", "--format", "json").stdout)
    (job,) = status["jobs"]
    assert job["running"]["run_id"] == started["run"]
    assert job["pending_update"] is True
    assert status["daemon"] is not None and status["revision"] == 2
    text = runner_cli(p.root, "status").stdout
    assert "update pending" in text and f"running {started['run']}" in text

    d.wait_for(lambda e: ran(e))
    (job,) = json.loads(runner_cli(p.root, "status", "--format", "json").stdout)["jobs"]
    assert job["running"] is None and job["pending_update"] is False
    assert job["last_run"]["status"] == "succeeded"
    assert d.stop() == 0
    second = p.start()
    second.wait_for(lambda e: e["event"] == "daemon started")
    third = p.start()
    assert third.proc.wait(30) == 1
    refusal = third.log_path.read_text()
    assert "a daemon already runs on this state store" in refusal and "runner force-unlock " in refusal
    assert second.stop() == 0


def test_suspend_and_pause_hold_the_schedule_and_a_missed_slot_runs_once(daemon_project):
    p = daemon_project
    p.write("jobs.d/sync.yaml", job_yaml("sync", extra='  schedule: {cron: "* * * * * *"}\n'))
    d = p.start()
    d.wait_for(lambda e: ran(e))
    assert runner_cli(p.root, "suspend", "sync").stdout.strip() == "default/sync suspended"
    mark = d.wait_for(lambda e: e["event"] == "job suspended")
    time.sleep(0.5)  # a run fired just before the switch may still end
    count = len(services.runs(p.ws, "sync"))
    time.sleep(2.5)
    assert len(services.runs(p.ws, "sync")) == count
    (job,) = json.loads(runner_cli(p.root, "status", "--format", "json").stdout)["jobs"]
    assert job["suspended"]["by"] and job["next_run"] is None
    plan = runner_cli(p.root, "plan").stdout
    assert "Job default/sync is suspended" in plan

    assert runner_cli(p.root, "resume", "sync").returncode == 0
    resumed = d.wait_for(lambda e: e["event"] == "run started", after=d.events().index(mark))
    assert "missed slots skipped" in resumed["trigger"]  # once, not once per missed slot

    assert runner_cli(p.root, "pause").returncode == 0
    paused = d.wait_for(lambda e: e["event"] == "scheduling paused")
    time.sleep(0.5)
    count = len(services.runs(p.ws, "sync"))
    time.sleep(2.0)
    assert len(services.runs(p.ws, "sync")) == count
    assert json.loads(runner_cli(p.root, "status", "--format", "json").stdout)["paused"] is True
    assert runner_cli(p.root, "unpause").returncode == 0
    d.wait_for(lambda e: e["event"] == "run started", after=d.events().index(paused))
    assert d.stop() == 0


def test_a_job_deleted_while_it_runs_finishes_its_run(daemon_project):
    p = daemon_project
    p.write("jobs.d/sync.yaml", job_yaml("sync", extra=YEARLY))
    services.apply(p.ws)
    seed_missed_slot(p.ws, "sync")
    d = p.start(env={"RUNNER_BATCH_DELAY": "0.15"})  # a run of three seconds
    d.wait_for(lambda e: e["event"] == "run started")
    (p.root / "jobs.d/sync.yaml").unlink()
    d.wait_for(applied("delete Job default/sync"))
    ended = d.wait_for(lambda e: ran(e))
    assert ended["event"] == "run succeeded"
    assert d.stop() == 0
    assert source_equals_target(p)
    assert services.get(p.ws, "Job") == []


def test_the_daemon_outlives_its_state_store_going_away(daemon_project, pg_url):
    """A PostgreSQL state store that refuses connections for a while: the daemon logs it and
    goes on; cron runs resume when the store is back."""
    import sqlalchemy as sa

    p = daemon_project
    p.write("jobs.d/sync.yaml", job_yaml("sync", extra='  schedule: {cron: "* * * * * *"}\n'))
    d = p.start(env={"RUNNER_STATE": pg_url})
    d.wait_for(lambda e: e["event"] == "run succeeded")
    database = sa.make_url(pg_url).database
    admin = sa.create_engine(
        "postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
        isolation_level="AUTOCOMMIT",
        poolclass=sa.NullPool,
    )
    with admin.connect() as conn:
        conn.exec_driver_sql(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        conn.exec_driver_sql(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'"
        )
    failed = d.wait_for(lambda e: e["event"].startswith("the state store cannot be used"))
    time.sleep(1)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
    admin.dispose()
    d.wait_for(lambda e: e["event"] == "the state store is usable again", after=d.events().index(failed))
    d.wait_for(lambda e: e["event"] == "run succeeded", after=d.events().index(failed), timeout=30)
    assert d.proc.poll() is None
    assert d.stop() == 0


def test_a_history_folder_that_cannot_be_written_stops_the_daemon_at_start(daemon_project):
    p = daemon_project
    (p.root / "not-a-folder").write_text("")
    d = p.start("--workers", "1", env={"RUNNER_HISTORY": str(p.root / "not-a-folder" / "history")})
    assert d.proc.wait(30) == 1
    log = d.log_path.read_text()
    assert "error: the history folder" in log and "is not writable" in log and "Traceback" not in log
    assert services.status(p.ws)["daemon"] is None  # its lock was released


def test_a_third_signal_exits_even_when_a_run_ignores_its_cancel(daemon_project):
    """A run stuck in one long statement cannot stop at a batch boundary; the third signal
    exits at once anyway (Python would wait for the worker thread), and the next start finds
    the job's lock free."""
    p = daemon_project
    endless = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10000000000) "
        "SELECT max(x) AS id, 1 AS seq, 'v' AS v FROM c"
    )
    tasks = f'- {{name: stuck, read: {{query: "{endless}"}}, write: {{table: stuck, keys: [id]}}}}'
    p.write("jobs.d/sync.yaml", job_yaml("sync", tasks, extra=YEARLY))
    services.apply(p.ws)
    seed_missed_slot(p.ws, "sync")
    d = p.start("--grace", "0.2")
    d.wait_for(lambda e: e["event"] == "run started")
    d.proc.send_signal(signal.SIGTERM)
    d.wait_for(lambda e: e["event"] == "cancelling runs at their next batch boundary")
    d.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    started = time.monotonic()
    assert d.stop() == 1
    assert time.monotonic() - started < 5
    assert d.matching("exiting without waiting for runs", jobs=["default/sync"])
    lock, store = locks.job_lock("default/sync"), p.ws.store()
    store.locks.release(lock, store.locks.acquire(lock, timeout=0))  # the dead process's lock is taken
