#!/usr/bin/env python3
"""Scale-out figures (issue 22): runs on Celery workers, the PostgreSQL state store.

    .venv/bin/python bench/scaleout.py [--jobs 200] [--runs 150] [--broker URL] [--json]

- `delay`: one `runner daemon --executor celery` and 3 `runner worker` (2 threads each), `--jobs`
  jobs on `* * * * *` (SQLite source, 5 rows → a PostgreSQL table each): the delay from the
  cron slot to the run request being sent (the scheduler's share) and to the run's start on a
  worker (with the queueing behind the runs of the same slot), p50/p99/max, for one slot.
- `throughput`: `--runs` small runs (the same jobs, asked for at once through the executor
  the daemon uses) on 1, 2 and 3 workers: runs finished per second, from the first request
  to the last end.

Everything runs on this machine (all processes share its cores: more workers than cores do not
add throughput here; on machines of their own they would). A fresh PostgreSQL database and a
temporary folder, and a broker queue of their own, are removed at the end, also on failure or
Ctrl-C. Needs PostgreSQL at 127.0.0.1:5432 (`postgres`, trust) and the broker (default
RabbitMQ at amqp://guest:guest@127.0.0.1:5672//; redis://127.0.0.1:6379/0 works too).
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa

REPO = Path(__file__).resolve().parent.parent
RUNNER = [sys.executable, "-m", "runner"]
PG_ADMIN = os.environ.get("BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def log(msg: str) -> None:
    print(f"scaleout: {msg}", file=sys.stderr, flush=True)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


class Bench:
    def __init__(self, jobs: int, broker: str):
        self.jobs = jobs
        self.broker = broker
        self.queue = f"runner-bench-{uuid.uuid4().hex[:8]}"
        self.db = f"bench_scaleout_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.root = Path(tempfile.mkdtemp(prefix="runner-scaleout-"))
        self.admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
        self.url = sa.make_url(PG_ADMIN).set(database=self.db).render_as_string(hide_password=False)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RUNNER_")} | {
            "RUNNER_STATE": self.url.replace("postgresql+psycopg://", "postgresql://"),
            "RUNNER_BROKER": broker,
        }

    def setup(self) -> None:
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{self.db}"')
        (self.root / "jobs.d").mkdir()
        (self.root / "connections.d").mkdir()
        with sqlite3.connect(self.root / "src.db") as db:
            db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, v TEXT)")
            db.executemany("INSERT INTO items VALUES (?, ?)", [(i, f"v{i}") for i in range(5)])
        (self.root / "connections.d" / "c.yaml").write_text(
            "apiVersion: runner/v1\nkind: Connection\nmetadata: {name: src}\n"
            'spec: {type: sqlite, url: "sqlite:///src.db"}\n---\n'
            "apiVersion: runner/v1\nkind: Connection\nmetadata: {name: dst}\n"
            f'spec: {{type: postgresql, url: "{self.url}"}}\n'
        )
        for i in range(self.jobs):
            (self.root / "jobs.d" / f"j{i:03}.yaml").write_text(
                f"apiVersion: runner/v1\nkind: Job\nmetadata: {{name: j{i:03}}}\nspec:\n"
                '  source: src\n  target: dst\n  schedule: {cron: "* * * * *"}\n'
                "  tasks:\n"
                f"    - {{name: t, read: {{table: items}}, write: {{table: t{i:03}, keys: [id]}}}}\n"
            )
        subprocess.run(
            [*RUNNER, "--dir", str(self.root), "apply"], env=self.env, check=True, capture_output=True
        )

    def start(self, *args: str, name: str) -> subprocess.Popen[bytes]:
        out = (self.root / f"{name}.log").open("w")
        proc = subprocess.Popen(
            [*RUNNER, "--dir", str(self.root), *args], env=self.env, stderr=out, stdout=out
        )
        self.procs.append(proc)
        return proc

    def workers(self, count: int) -> list[subprocess.Popen[bytes]]:
        procs = [
            self.start("worker", "--broker", "${env:RUNNER_BROKER}", "--queue", self.queue, name=f"worker{n}")
            for n in range(count)
        ]
        from runner import services

        ws = services.Workspace(self.root, state_url=self.env["RUNNER_STATE"])
        deadline = time.monotonic() + 60
        while len([w for w in services.workers(ws) if w["alive"]]) < count and time.monotonic() < deadline:
            time.sleep(0.2)
        ws.close()
        return procs

    def stop(self, procs: list[subprocess.Popen[bytes]]) -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        from runner import services

        ws = services.Workspace(self.root, state_url=self.env["RUNNER_STATE"])
        for w in services.workers(ws):  # gone: do not count them in the next phase
            ws.store().cluster.leave(w["name"])
        ws.close()

    def records(self) -> list[dict[str, Any]]:
        out = []
        for path in (self.root / ".runner" / "history").glob("*/*/*.json"):
            out.append(json.loads(path.read_text()))
        return out

    def delay(self) -> dict[str, Any]:
        """One cron slot of every job: slot → request sent, slot → run started."""
        workers = self.workers(3)
        daemon = self.start(
            "daemon", "--executor", "celery", "--broker", "${env:RUNNER_BROKER}", "--queue", self.queue,
            "--no-watch", name="daemon",
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 200
            while time.monotonic() < deadline:
                done = [
                    r
                    for r in self.records()
                    if r.get("trigger", "").startswith("cron") and r.get("finished_at")
                ]
                if len(done) >= self.jobs:
                    break
                time.sleep(1)
            sent = {}
            for line in (self.root / "daemon.log").read_text().splitlines():
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if event.get("event") == "run sent to the workers" and event["trigger"].startswith("cron"):
                    slot = dt.datetime.fromisoformat(event["trigger"].split()[1])
                    sent[event["run"]] = (dt.datetime.fromisoformat(event["ts"]) - slot).total_seconds()
            started = []
            for r in self.records():
                if r.get("trigger", "").startswith("cron") and r.get("started_at"):
                    slot = dt.datetime.fromisoformat(r["trigger"].split()[1])
                    started.append((dt.datetime.fromisoformat(r["started_at"]) - slot).total_seconds())
        finally:
            self.stop([daemon, *workers])
        return {
            "jobs": self.jobs,
            "slots_ran": len(started),
            "sent": {
                "p50": pct(list(sent.values()), 50),
                "p99": pct(list(sent.values()), 99),
                "max": max(sent.values()),
            },
            "started": {"p50": pct(started, 50), "p99": pct(started, 99), "max": max(started)},
        }

    def throughput(self, workers: int, runs: int) -> dict[str, Any]:
        from runner import services
        from runner.daemon.celery_executor import CeleryExecutor
        from runner.daemon.executor import Request
        from runner.daemon.logs import DaemonLog

        procs = self.workers(workers)
        ws = services.Workspace(self.root, state_url=self.env["RUNNER_STATE"])
        services.pause(ws)  # no cron meanwhile (nothing schedules here anyway)
        quiet = DaemonLog(io.StringIO(), as_json=True)
        executor = CeleryExecutor(ws, quiet, threading.Event(), self.broker, self.queue)
        executor.start()
        jobs = [f"default/j{i:03}" for i in range(self.jobs)]
        try:
            started = time.monotonic()
            for n in range(runs):
                executor.submit(Request(jobs[n % len(jobs)], f"bench {n}"))
            finished = 0
            deadline = time.monotonic() + 600
            while finished < runs and time.monotonic() < deadline:
                executor.finished.get(timeout=600)
                finished += 1
            elapsed = time.monotonic() - started
        finally:
            executor.shutdown()
            ws.close()
            self.stop(procs)
        return {
            "workers": workers,
            "runs": finished,
            "seconds": round(elapsed, 2),
            "runs_per_s": round(finished / elapsed, 2),
        }

    def close(self) -> None:
        self.stop(self.procs)
        try:
            from kombu import Connection

            with Connection(self.broker, connect_timeout=3) as conn:
                conn.default_channel.queue_delete(self.queue)
        except Exception:  # noqa: BLE001, S110 - already gone
            pass
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')
        self.admin.dispose()
        shutil.rmtree(self.root, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--runs", type=int, default=150, help="small runs per throughput measure")
    parser.add_argument(
        "--broker", default=os.environ.get("BENCH_BROKER", "amqp://guest:guest@127.0.0.1:5672//")
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    bench = Bench(args.jobs, args.broker)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        bench.setup()
        log(f"{args.jobs} jobs applied; waiting for the next minute's slot")
        result: dict[str, Any] = {"delay": bench.delay(), "throughput": []}
        for workers in (1, 2, 3):
            log(f"throughput on {workers} worker(s)")
            result["throughput"].append(bench.throughput(workers, args.runs))
    finally:
        bench.close()
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    d = result["delay"]
    print(f"scheduling delay, {d['jobs']} jobs on one-minute crons ({d['slots_ran']} runs), seconds:")
    for label, key in (("slot → request sent", "sent"), ("slot → run started ", "started")):
        f = d[key]
        print(f"  {label}  p50 {f['p50']:.3f}  p99 {f['p99']:.3f}  max {f['max']:.3f}")
    print("throughput of small runs (SQLite 5 rows → PostgreSQL), 2 threads per worker:")
    for t in result["throughput"]:
        print(
            f"  {t['workers']} worker(s): {t['runs_per_s']:.2f} runs/s ({t['runs']} runs in {t['seconds']} s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
