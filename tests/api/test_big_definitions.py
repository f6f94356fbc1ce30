"""Big definitions cannot stall the daemon: files and folders past the limits are refused
with clear errors before they are parsed in full, reads (the API's key checks and listings)
do not queue behind a long write to the state store, and applying many scheduled jobs costs
a few commits, not one per job."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import sqlalchemy as sa

from runner import services
from runner.daemon.logs import DaemonLog
from runner.daemon.main import Daemon, DaemonOptions
from runner.definitions import load
from runner.errors import DefinitionsInvalid
from tests.conftest import TWO_SQLITE
from tests.daemon.conftest import job_yaml


def test_a_file_over_the_size_limit_is_refused(project):
    project.write("connections.d/c.yaml", TWO_SQLITE)
    big = project.write("jobs.d/big.yaml", job_yaml("sync"))
    with big.open("a") as f:
        f.write(("# padding\n" * 1000) * 220)  # 2.1 MB
    with pytest.raises(DefinitionsInvalid) as info:
        services.apply(project.ws)
    (problem,) = info.value.problems
    assert problem.location.file.endswith("jobs.d/big.yaml")
    assert problem.message == "the file is 2.1 MB; a definition file is at most 2 MB"
    assert services.get(project.ws, "Job") == []


def test_more_definitions_than_the_limit_are_refused_and_nothing_changes(project, monkeypatch):
    monkeypatch.setattr(load, "MAX_DEFINITIONS", 20)
    project.write("connections.d/c.yaml", TWO_SQLITE)
    project.write("jobs.d/a.yaml", job_yaml("kept"))
    services.apply(project.ws)
    project.write("jobs.d/many.yaml", "---\n".join(job_yaml(f"job-{i}") for i in range(30)))
    with pytest.raises(DefinitionsInvalid) as info:
        services.apply(project.ws)
    (problem,) = info.value.problems
    assert (
        problem.message == "more than 20 definitions (connections and jobs); at most 20 are applied at once"
    )
    assert [o.name for o in services.get(project.ws, "Job")] == ["kept"]


def test_reads_do_not_wait_behind_a_long_write(api):
    services.run(api.project.ws, "sync")
    db = api.project.root / ".runner" / "state.db"
    hold = (
        "import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
        'c.execute(\'BEGIN IMMEDIATE\'); c.execute(\'INSERT INTO settings VALUES ("x", "1", "t", "t")\'); '
        "print('held', flush=True); time.sleep(6); c.execute('ROLLBACK')"
    )
    writer = subprocess.Popen([sys.executable, "-c", hold, str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "held"
        time.sleep(1.1)  # the API's cached keys are stale: the next request reads them
        for path in ("/api/v1/version", "/api/v1/jobs", "/api/v1/jobs/sync/runs", "/api/v1/jobs/sync/tasks"):
            started = time.monotonic()
            assert api.get(path).status_code == 200
            assert time.monotonic() - started < 1, path  # not the six seconds the write holds its lock
        assert writer.poll() is None  # the write was still going on
    finally:
        writer.wait(20)


def test_applying_many_scheduled_jobs_takes_a_few_commits(project):
    project.write("connections.d/c.yaml", TWO_SQLITE)
    jobs = [job_yaml(f"job-{i}", extra='  schedule: {cron: "0 3 * * *"}\n') for i in range(300)]
    project.write("jobs.d/many.yaml", "---\n".join(jobs))
    services.apply(project.ws)
    daemon = Daemon(project.ws, DaemonOptions(workers=1, watch=False), log=DaemonLog(as_json=True))
    commits = []
    sa.event.listen(project.ws.store().db.engine, "commit", lambda conn: commits.append(1))
    daemon._refresh()  # what the daemon does after each apply
    assert len(daemon.scheduler.crons) == 300
    assert len(commits) <= 3  # the marks of 300 new jobs in one transaction
    assert len(project.ws.store().switches.schedule_marks()) == 300
    daemon.executor.shutdown()
