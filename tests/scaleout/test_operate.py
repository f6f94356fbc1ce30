"""Operating runs on workers: `runner workers` lists them with their runs, `runner cancel`
stops a run on any worker, suspend and pause stop the scheduler handing runs out, and a worker
whose history folder is not the cluster's refuses to start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from runner import services
from runner.history import files as history
from tests.scaleout.conftest import Cluster, wait_until


def _sent(cluster: Cluster) -> int:
    return sum(
        e["event"] == "run sent to the workers"
        for p in cluster.procs
        if p.name.startswith("daemon")
        for e in p.events()
    )


def test_workers_list_runs_and_cancel_suspend_pause_reach_them(rabbit_cluster):
    cluster = rabbit_cluster
    cluster.env["RUNNER_BATCH_DELAY"] = "1.5"  # a run of 6 batches: 9 s, time to see and cancel it
    (name,) = cluster.jobs(1, "* * * * * */2")
    services.apply(cluster.ws)
    daemon = cluster.daemon()
    worker = cluster.worker()

    def running() -> dict | None:
        for w in services.workers(cluster.ws):
            if w["runs"]:
                return w
        return None

    listed = wait_until("a run on the worker", running, 40, cluster.procs)
    assert listed["pid"] == worker.pid and listed["alive"] and listed["broker"] == "amqp://127.0.0.1:5672//"
    (run,) = listed["runs"]
    out = subprocess.run(
        [sys.executable, "-m", "runner", "--dir", str(cluster.root), "workers", "--format", "json"],
        env=cluster.env,
        capture_output=True,
        text=True,
        check=True,
    )
    (shown,) = json.loads(out.stdout)
    assert shown["name"] == listed["name"] and [r["run_id"] for r in shown["runs"]] in ([run["run_id"]], [])
    assert "guest" not in out.stdout  # the broker's password is never shown

    services.cancel(cluster.ws, name)
    path = history.run_path(cluster.ws.history, "default", name, run["run_id"])
    wait_until(
        "the run cancelled", lambda: history.read_run(path)["status"] == "cancelled", 30, cluster.procs
    )
    assert history.read_run(path)["error"].startswith("cancelled by ")

    for switch, undo, seen in (
        (
            (lambda: services.suspend(cluster.ws, name)),
            (lambda: services.suspend(cluster.ws, name, False)),
            "job suspended",
        ),
        (
            (lambda: services.pause(cluster.ws)),
            (lambda: services.pause(cluster.ws, False)),
            "scheduling paused",
        ),
    ):
        switch()
        # the daemon reads the switches every `poll` (1 s): a slot due before it did still fires
        wait_until(
            f"the daemon to log {seen!r}",
            lambda s=seen: any(e["event"] == s for e in daemon.events()),
            30,
            cluster.procs,
        )
        wait_until("no run going on", lambda: not cluster.ws.store().cluster.requests(), 30, cluster.procs)
        before = _sent(cluster)
        time.sleep(4)  # two slots
        assert _sent(cluster) == before
        undo()
        wait_until("runs handed out again", lambda b=before: _sent(cluster) > b, 30, cluster.procs)
    assert daemon.proc.poll() is None


def test_a_worker_on_another_history_folder_refuses_to_start(rabbit_cluster):
    cluster = rabbit_cluster
    cluster.jobs(1, "0 0 1 1 *")
    services.apply(cluster.ws)
    services.check_shared_history(cluster.ws)  # as the first daemon or worker does
    env = cluster.env | {"RUNNER_HISTORY": str(cluster.root / "local-history")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "runner",
            "--dir",
            str(cluster.root),
            "worker",
            "--broker",
            "${env:RUNNER_BROKER}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "is not the one the other daemons and workers" in done.stderr and "shared folder" in done.stderr
    assert not services.workers(cluster.ws)
    assert os.environ.get("RUNNER_BROKER") is None
