#!/usr/bin/env python3
"""A split full copy on Celery workers (issue 22): the `events` table (/work/shared/bench
gen_events.py, as it is) copied PostgreSQL to PostgreSQL on 1 worker and on 2 workers.

    .venv/bin/python bench/split_copy.py [--rows 10000000] [--ranges 8] [--rounds 1] [--json]

Each round, interleaved, into an emptied target table each time:
- `whole`: the task without `split` on 1 worker: one COPY and one transaction (the floor);
- `split x1`: `changes.split: {ranges: N}` on 1 worker (it runs every range itself);
- `split x2`: the same on 2 workers (the run's worker asks the other through the broker).
Each worker runs one thing at a time (`-c 1`). Figures: the run's seconds (its history record)
and rows per second, the load average beside each; the speed-up of x2 over x1 and over whole.

Everything runs on this machine: both workers and both PostgreSQL backends share its cores
(and those of whatever else runs here): on a 2-core machine 2 workers can at most double the
copy, and only if nothing else runs. Fresh PostgreSQL databases (source, target, state store),
a temporary folder and a broker queue of their own are removed at the end, also on failure or
Ctrl-C. Needs PostgreSQL at 127.0.0.1:5432 (`postgres`, trust) and RabbitMQ (or --broker).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa

REPO = Path(__file__).resolve().parent.parent
RUNNER = [sys.executable, "-m", "runner"]
GEN = Path(os.environ.get("BENCH_SHARED", "/work/shared/bench")) / "gen_events.py"
PG_ADMIN = os.environ.get("BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def log(msg: str) -> None:
    print(f"split_copy: {msg}", file=sys.stderr, flush=True)


def load() -> float:
    return round(os.getloadavg()[0], 2)


class Bench:
    def __init__(self, ranges: int, broker: str):
        self.ranges = ranges
        self.broker = broker
        self.queue = f"runner-bench-{uuid.uuid4().hex[:8]}"
        tag = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.dbs = {end: f"bench_split_{end}_{tag}" for end in ("src", "dst", "state")}
        self.root = Path(tempfile.mkdtemp(prefix="runner-split-"))
        self.admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
        self.urls = {
            end: sa.make_url(PG_ADMIN).set(database=db).render_as_string(hide_password=False)
            for end, db in self.dbs.items()
        }
        self.procs: list[subprocess.Popen[bytes]] = []
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RUNNER_")} | {
            "RUNNER_STATE": self.plain("state"),
            "RUNNER_BROKER": broker,
        }

    def plain(self, end: str) -> str:
        return self.urls[end].replace("postgresql+psycopg://", "postgresql://")

    def setup(self, rows: int) -> None:
        with self.admin.connect() as conn:
            for db in self.dbs.values():
                conn.exec_driver_sql(f'CREATE DATABASE "{db}"')
        started = time.perf_counter()
        subprocess.run([sys.executable, str(GEN), "create", self.urls["src"], str(rows)], check=True)
        log(f"generated {rows:,} events in {time.perf_counter() - started:.0f} s")
        (self.root / "jobs.d").mkdir()
        (self.root / "connections.d").mkdir()
        (self.root / "connections.d" / "c.yaml").write_text(
            "apiVersion: runner/v1\nkind: Connection\nmetadata: {name: src}\n"
            f'spec: {{type: postgresql, url: "{self.plain("src")}"}}\n---\n'
            "apiVersion: runner/v1\nkind: Connection\nmetadata: {name: dst}\n"
            f'spec: {{type: postgresql, url: "{self.plain("dst")}"}}\n'
        )
        for name, changes in (
            ("whole", "{strategy: full}"),
            ("split", f"{{split: {{ranges: {self.ranges}}}}}"),
        ):
            (self.root / "jobs.d" / f"{name}.yaml").write_text(
                f"apiVersion: runner/v1\nkind: Job\nmetadata: {{name: {name}}}\nspec:\n"
                "  source: src\n  target: dst\n  tasks:\n"
                f"    - {{name: events, read: {{table: events}}, write: {{table: {name}_events, keys: [id]}},"
                f" deletes: propagate, changes: {changes}}}\n"
            )
        subprocess.run(
            [*RUNNER, "--dir", str(self.root), "apply"], env=self.env, check=True, capture_output=True
        )

    def worker(self, n: int) -> subprocess.Popen[bytes]:
        out = (self.root / f"worker{n}.log").open("a")
        args = ["worker", "--broker", "${env:RUNNER_BROKER}", "--queue", self.queue, "-c", "1"]
        proc = subprocess.Popen(
            [*RUNNER, "--dir", str(self.root), *args], env=self.env, stderr=out, stdout=out
        )
        self.procs.append(proc)
        return proc

    def wait_workers(self, count: int) -> None:
        from runner import services

        ws = services.Workspace(self.root, state_url=self.env["RUNNER_STATE"])
        deadline = time.monotonic() + 90
        while len([w for w in services.workers(ws) if w["alive"]]) < count and time.monotonic() < deadline:
            time.sleep(0.2)
        ws.close()

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def run(self, job: str) -> dict[str, Any]:
        """One run of `job` through the broker, as the daemon hands it out; its record."""
        from runner import services
        from runner.daemon.celery_app import TASK, make_app
        from runner.daemon.celery_executor import to_message
        from runner.daemon.executor import Request
        from runner.history import files as history

        with sa.create_engine(self.urls["dst"], poolclass=sa.NullPool).begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {job}_events")
        ws = services.Workspace(self.root, state_url=self.env["RUNNER_STATE"])
        run_id = history.new_run_id()
        request = Request(f"default/{job}", "manual", 1, services.RunOptions(), run_id, None)
        services.record_queued(ws, request.job, run_id, "manual", request.options)
        app = make_app(self.broker, self.queue)
        app.send_task(TASK, kwargs={"request": to_message(request, run_id)}, queue=self.queue)
        path = history.run_path(ws.history, "default", job, run_id)
        while True:
            record = history.read_run(path)
            if record["status"] not in ("queued", "running"):
                break
            time.sleep(0.5)
        ws.close()
        if record["status"] != "succeeded":
            raise SystemExit(f"{job}: {record['status']}: {record.get('error')}")
        return record

    def close(self) -> None:
        for proc in self.procs:
            self.stop(proc)
        from kombu import Connection

        try:
            with Connection(self.broker, connect_timeout=3) as conn:
                conn.default_channel.queue_delete(self.queue)
        except Exception:  # noqa: BLE001, S110 - already gone
            pass
        with self.admin.connect() as conn:
            for db in self.dbs.values():
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        self.admin.dispose()
        shutil.rmtree(self.root, ignore_errors=True)


def figure(label: str, record: dict[str, Any], before: float) -> dict[str, Any]:
    (task,) = record["tasks"]
    seconds = record["seconds"]
    out = {
        "phase": label,
        "seconds": seconds,
        "rows": task["rows_read"],
        "rows_per_s": round(task["rows_read"] / seconds),
        "load_before": before,
        "load_after": load(),
        "ranges_by": sorted({r["by"] for r in task.get("ranges", [])}),
    }
    log(
        f"{label:9} {seconds:7.1f} s  {out['rows_per_s']:>9,} rows/s  load {before} → {out['load_after']}"
        + (f"  ranges by {len(out['ranges_by'])} worker(s)" if task.get("ranges") else "")
    )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--ranges", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--broker", default=os.environ.get("BENCH_BROKER", "amqp://guest:guest@127.0.0.1:5672//")
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    os.chdir(REPO)
    bench = Bench(args.ranges, args.broker)
    out: list[dict[str, Any]] = []

    def interrupted(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    try:
        bench.setup(args.rows)
        first = bench.worker(1)
        bench.wait_workers(1)
        for n in range(1, args.rounds + 1):
            log(
                f"round {n} of {args.rounds}: {args.rows:,} rows, {args.ranges} ranges, "
                f"{os.cpu_count()} cores"
            )
            before = load()
            out.append(figure("whole x1", bench.run("whole"), before) | {"round": n})
            before = load()
            out.append(figure("split x1", bench.run("split"), before) | {"round": n})
            second = bench.worker(2)
            bench.wait_workers(2)
            before = load()
            out.append(figure("split x2", bench.run("split"), before) | {"round": n})
            bench.stop(second)
            bench.procs.remove(second)
            from runner import services

            ws = services.Workspace(bench.root, state_url=bench.env["RUNNER_STATE"])
            for w in services.workers(ws):  # the stopped one: not counted as alive next round
                if w["pid"] == second.pid:
                    ws.store().cluster.leave(w["name"])
            ws.close()
        bench.stop(first)
    finally:
        bench.close()
    for n in range(1, args.rounds + 1):
        by = {f["phase"]: f["seconds"] for f in out if f["round"] == n}
        log(
            f"round {n}: split on 2 workers {by['split x1'] / by['split x2']:.2f}x faster than on 1, "
            f"{by['whole x1'] / by['split x2']:.2f}x the unsplit copy"
        )
    if args.json:
        print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
