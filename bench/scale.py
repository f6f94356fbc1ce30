#!/usr/bin/env python3
"""Cost as the work grows (issue 21): the definitions, the history and the scheduler at scale.

    python bench/scale.py [jobs history daemon | all] [--jobs 1000] [--runs 10000] [--requests 200]
                          [--daemon-jobs 500] [--minutes 5] [--json]

- `jobs`: 1,000 job files (2-3 tasks each, a cron, over a few SQLite connections) in a fresh
  definitions folder; `runner validate` + `runner plan` (target ≤ 2 s together), `runner apply`
  (≤ 5 s), then `apply` again after one file changed.
- `history`: one job with 10,000 runs in its history (one real run's record, written again
  under 10,000 run ids a minute apart: the files as the runner writes them, indexed by the
  runner itself on the first listing); `runner serve`, then N requests of the history listing
  per filter (`changes`, `all`), p50/p99 (target p99 ≤ 100 ms).
- `daemon`: `runner daemon` with 500 jobs on `* * * * *` for 5 minutes (SQLite → SQLite, 5
  rows): the delay from each cron slot to its run's start, p50/p99/max (target p99 ≤ 1 s), and
  how many of the slots ran at all.

Everything is in a temporary folder (`runner-scale-*`: the SQLite databases, definitions, state
store and history), removed at the end, also on failure, Ctrl-C or SIGTERM. Only the standard
library here; runner is the venv's (`BENCH_VENV`, default .venv) command, run as a user would.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import json
import os
import resource
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(os.environ.get("BENCH_VENV", REPO / ".venv")) / "bin"
RUNNER = VENV_BIN / "runner"
# a user's Python writes bytecode caches: without them every command compiles its imports again
ENV = {
    k: v
    for k, v in os.environ.items()
    if k not in ("RUNNER_DIR", "RUNNER_STATE", "RUNNER_HISTORY", "PYTHONDONTWRITEBYTECODE")
}

SOURCES = 3  # SQLite source databases, shared by the jobs
TARGETS = 3  # SQLite target databases
ROWS = 5  # rows in each source table
TABLES = ("customers", "orders", "items")


class BenchError(Exception):
    """A failure of the harness or of a command it ran."""


def log(msg: str) -> None:
    print(f"scale: {msg}", file=sys.stderr, flush=True)


def runner(folder: Path, *args: str, check: bool = True, ok: tuple[int, ...] = (0,)) -> float:
    """Run `runner --dir folder ARGS` as a user would; its wall time in seconds."""
    started = time.perf_counter()
    proc = subprocess.run(
        [str(RUNNER), "--dir", str(folder), *args], capture_output=True, text=True, env=ENV, check=False
    )
    elapsed = time.perf_counter() - started
    if check and proc.returncode not in ok:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
        raise BenchError(f"runner {' '.join(args)} exited {proc.returncode}:\n{tail}")
    return elapsed


def measured(folder: Path, *args: str, ok: tuple[int, ...] = (0,)) -> tuple[float, float]:
    """`runner` with its wall time and its CPU seconds (user + system): on a machine other work
    loads, the CPU seconds are what the command itself costs."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = runner(folder, *args, ok=ok)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def runner_out(folder: Path, *args: str) -> str:
    proc = subprocess.run(
        [str(RUNNER), "--dir", str(folder), *args], capture_output=True, text=True, env=ENV, check=False
    )
    if proc.returncode:
        raise BenchError(f"runner {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return proc.stdout


def load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def verdict(value: float, target: float) -> str:
    return "ok" if value <= target else f"MISSED ({value / target:.2f}× the target)"


# ---------------------------------------------------------------------------------------------
# The definitions


def make_databases(folder: Path) -> None:
    data = folder / "data"
    data.mkdir()
    for i in range(SOURCES):
        with contextlib.closing(sqlite3.connect(data / f"src{i}.db")) as db:
            for table in TABLES:
                db.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, name TEXT, updated_at TEXT)")
                db.executemany(
                    f"INSERT INTO {table} VALUES (?, ?, ?)",
                    [(n, f"{table} {n}", f"2026-11-0{n}T00:00:00") for n in range(1, ROWS + 1)],
                )
            db.commit()
    connections = []
    for kind, count in (("src", SOURCES), ("dst", TARGETS)):
        for i in range(count):
            connections.append(
                f"apiVersion: runner/v1\nkind: Connection\nmetadata:\n  name: {kind}{i}\n"
                f"spec:\n  type: sqlite\n  url: sqlite:///data/{kind}{i}.db\n"
            )
    (folder / "connections.d").mkdir()
    (folder / "connections.d" / "scale.yaml").write_text("---\n".join(connections))


def job_yaml(n: int, cron: str, note: str = "") -> str:
    """Job n: 2 or 3 tasks (a full copy, a watermark, a hash with deletes) into tables of its own."""
    tasks = [
        f"    - name: customers\n      read: {{table: customers}}\n      write: {{table: j{n}_customers}}\n",
        f"    - name: orders\n      read: {{table: orders}}\n"
        f"      write: {{table: j{n}_orders, keys: [id]}}\n"
        f"      changes: {{strategy: watermark, column: updated_at}}\n",
        f"    - name: items\n      read: {{table: items}}\n      write: {{table: j{n}_items, keys: [id]}}\n"
        f"      changes: {{strategy: hash}}\n      deletes: propagate\n",
    ][: 2 + n % 2]
    return (
        f"apiVersion: runner/v1\nkind: Job\nmetadata:\n  name: job-{n:04d}\n"
        f"  description: Scale job {n}{note}.\n"
        f"spec:\n  source: src{n % SOURCES}\n  target: dst{n % TARGETS}\n"
        f'  schedule: {{cron: "{cron}"}}\n  tasks:\n' + "".join(tasks)
    )


def make_jobs(folder: Path, count: int, cron: Any) -> None:
    jobs = folder / "jobs.d"
    jobs.mkdir()
    for n in range(count):
        (jobs / f"job-{n:04d}.yaml").write_text(job_yaml(n, cron(n)))


def definitions(root: Path, name: str, jobs: int, cron: Any) -> Path:
    folder = root / name
    folder.mkdir()
    make_databases(folder)
    make_jobs(folder, jobs, cron)
    return folder


# ---------------------------------------------------------------------------------------------
# Scenario 1: 1,000 job files


def scenario_jobs(root: Path, count: int) -> dict[str, Any]:
    log(f"jobs: {count} job files")
    folder = definitions(root, "jobs", count, lambda n: f"{n % 60} */{1 + n % 6} * * *")
    validate, validate_cpu = measured(folder, "validate")
    plan, plan_cpu = measured(folder, "plan", "--detailed-exitcode", ok=(0, 2))
    apply, apply_cpu = measured(folder, "apply")
    changed = folder / "jobs.d" / f"job-{count // 2:04d}.yaml"
    changed.write_text(job_yaml(count // 2, "*/5 * * * *", ", edited"))
    plan_one = runner(folder, "plan", "--detailed-exitcode", ok=(2,))
    apply_one = runner(folder, "apply")
    apply_none = runner(folder, "apply")
    return {
        "jobs": count,
        "validate_s": round(validate, 2),
        "plan_s": round(plan, 2),
        "apply_s": round(apply, 2),
        "validate_cpu_s": round(validate_cpu, 2),
        "plan_cpu_s": round(plan_cpu, 2),
        "apply_cpu_s": round(apply_cpu, 2),
        "plan_one_changed_s": round(plan_one, 2),
        "apply_one_changed_s": round(apply_one, 2),
        "apply_unchanged_s": round(apply_none, 2),
        "load": load(),
    }


def print_jobs(r: dict[str, Any]) -> None:
    both = r["validate_s"] + r["plan_s"]
    print(f"\n1,000 job files ({r['jobs']} jobs, {r['load']})")
    print(
        f"  validate + plan   {r['validate_s']:.2f} + {r['plan_s']:.2f} = {both:.2f} s   target ≤ 2 s: "
        f"{verdict(both, 2)}"
    )
    print(f"  apply (all new)   {r['apply_s']:.2f} s   target ≤ 5 s: {verdict(r['apply_s'], 5)}")
    print(
        f"  CPU seconds       validate {r['validate_cpu_s']:.2f} + plan {r['plan_cpu_s']:.2f} = "
        f"{r['validate_cpu_s'] + r['plan_cpu_s']:.2f} s, apply {r['apply_cpu_s']:.2f} s (what each "
        "command costs whatever else loads the machine)"
    )
    print(
        f"  one file changed  plan {r['plan_one_changed_s']:.2f} s, apply {r['apply_one_changed_s']:.2f} s; "
        f"apply with nothing changed {r['apply_unchanged_s']:.2f} s"
    )


# ---------------------------------------------------------------------------------------------
# Scenario 2: a job with 10,000 runs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fake_history(template: dict[str, Any], history: Path, runs: int) -> None:
    """`runs` records of the job, a minute apart up to now, written as the runner writes them
    (`<history>/<namespace>/<job>/<run-id>.json`): 1 in 10 wrote rows, 1 in 100 failed, the
    rest found nothing to do (a job on a one-minute cron over a quiet source)."""
    folder = history / template["namespace"] / template["job"]
    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    for i in range(runs):
        started = now - dt.timedelta(minutes=runs - i)
        run_id = f"{started:%Y%m%dT%H%M%S}.{i % 1000:03d}-{os.urandom(3).hex()}"
        record = json.loads(json.dumps(template))
        record.pop("path", None)
        changed = i % 10 == 0
        failed = i % 100 == 7
        record["run_id"] = run_id
        seconds = record.get("seconds") or 0.05
        record["started_at"] = started.isoformat()
        record["finished_at"] = (started + dt.timedelta(seconds=seconds)).isoformat()
        record["status"] = "failed" if failed else "succeeded"
        if not changed:
            record["rows_written"] = 0
            for task in record.get("tasks") or []:
                for field in ("inserted", "updated", "upserted", "deleted", "rows_written"):
                    if isinstance(task.get(field), int):
                        task[field] = 0
        (folder / f"{run_id}.json").write_text(json.dumps(record, indent=2) + "\n")


def get(conn: http.client.HTTPConnection, path: str, key: str) -> tuple[int, bytes]:
    conn.request("GET", path, headers={"Authorization": f"Bearer {key}"})
    response = conn.getresponse()
    return response.status, response.read()


def scenario_history(root: Path, runs: int, requests: int) -> dict[str, Any]:
    log(f"history: one job, {runs} runs")
    folder = definitions(root, "history", 1, lambda n: "* * * * *")
    runner(folder, "apply")
    # The template: a real run in a copy of the folder (so the job's index here starts empty and
    # the runner indexes the 10,000 files itself, as for a history older than the index).
    scratch = root / "history-template"
    shutil.copytree(folder, scratch)
    tiny = [runner(scratch, "run", "job-0000") for _ in range(3)]
    records = sorted((scratch / ".runner" / "history").glob("*/job-0000/*.json"))
    template = json.loads(records[-1].read_text())
    shutil.rmtree(scratch)
    started = time.perf_counter()
    fake_history(template, folder / ".runner" / "history", runs)
    written = time.perf_counter() - started
    key = runner_out(folder, "keys", "create", "scale", "--scope", "read").strip().splitlines()[-1]
    port = free_port()
    logfile = (root / "serve.log").open("wb")
    proc = subprocess.Popen(
        [str(RUNNER), "--dir", str(folder), "serve", "--http", f"127.0.0.1:{port}"],
        stdout=logfile,
        stderr=subprocess.STDOUT,
        env=ENV,
        start_new_session=True,
    )
    logfile.close()
    result: dict[str, Any] = {
        "runs": runs,
        "one_cli_run_s": round(statistics.median(tiny), 2),
        "write_files_s": round(written, 2),
    }
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise BenchError(
                    f"runner serve exited {proc.returncode}: {(root / 'serve.log').read_text()[-2000:]}"
                )
            with contextlib.suppress(OSError, http.client.HTTPException):
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                if get(conn, "/api/v1/version", key)[0] == 200:
                    break
            if time.monotonic() > deadline:
                raise BenchError("runner serve did not answer within 60 s")
            time.sleep(0.2)
        base = "/api/v1/jobs/job-0000/runs"
        started = time.perf_counter()
        status, body = get(conn, f"{base}?filter=all", key)
        result["first_listing_s"] = round(time.perf_counter() - started, 2)  # indexes the files
        if status != 200:
            raise BenchError(f"GET {base}: HTTP {status}: {body[:300]!r}")
        for flt in ("changes", "all"):
            times: list[float] = []
            sent: dict[str, float] = {}
            for i in range(requests):
                # the API reuses a listing for half a second (per query): that cache is not what
                # is measured, so the limit goes round 20..39 and a query is sent again only
                # once its answer is older than that
                path = f"{base}?filter={flt}&limit={20 + i % 20}"
                time.sleep(max(0.0, sent.get(path, 0) + 0.55 - time.monotonic()))
                sent[path] = time.monotonic()
                t0 = time.perf_counter()
                status, body = get(conn, path, key)
                times.append((time.perf_counter() - t0) * 1000)
                if status != 200:
                    raise BenchError(f"GET {path}: HTTP {status}: {body[:300]!r}")
            shown = json.loads(body)
            result[flt] = {
                "requests": requests,
                "p50_ms": round(pct(times, 50), 1),
                "p99_ms": round(pct(times, 99), 1),
                "max_ms": round(max(times), 1),
                "shown": len(shown) if isinstance(shown, list) else len(shown.get("runs", shown)),
            }
        result["load"] = load()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return result


def print_history(r: dict[str, Any]) -> None:
    print(f"\nA job with {r['runs']:,} runs in its history ({r['load']})")
    print(
        f"  history made in {r['write_files_s']:.1f} s (records written as files; one tiny `runner run` "
        f"takes {r['one_cli_run_s']:.2f} s, so {r['runs']:,} real runs would take "
        f"~{r['one_cli_run_s'] * r['runs'] / 60:.0f} min)"
    )
    print(f"  first listing (indexes the {r['runs']:,} files once): {r['first_listing_s']:.2f} s")
    for flt in ("changes", "all"):
        f = r[flt]
        print(
            f"  GET …/runs?filter={flt:<7} {f['requests']} requests: p50 {f['p50_ms']:.1f} ms, "
            f"p99 {f['p99_ms']:.1f} ms, max {f['max_ms']:.1f} ms (last page {f['shown']} runs)   "
            f"target p99 ≤ 100 ms: {verdict(f['p99_ms'], 100)}"
        )


# ---------------------------------------------------------------------------------------------
# Scenario 3: a daemon with 500 jobs on one-minute crons


def rss_mb(pid: int) -> float:
    """The process's resident memory (Linux /proc), 0 where it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds(pid: int) -> float:
    """The process's CPU seconds so far, user + system (Linux /proc), 0 where unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def epoch(iso: str) -> float:
    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def scenario_daemon(root: Path, count: int, minutes: float) -> dict[str, Any]:
    log(f"daemon: {count} jobs on * * * * * for {minutes} min")
    folder = definitions(root, "daemon", count, lambda n: "* * * * *")
    runner(folder, "apply")
    logfile = (root / "daemon.log").open("wb")
    proc = subprocess.Popen(
        [str(RUNNER), "--dir", str(folder), "daemon", "--workers", str(count)],
        stdout=logfile,
        stderr=subprocess.STDOUT,
        env=ENV,
        start_new_session=True,
    )
    logfile.close()
    started = time.time()
    peak_rss = 0
    settled = []  # RSS in the seconds before each slot, once the last slot's runs have ended
    try:
        end = started + minutes * 60
        while time.time() < end:
            if proc.poll() is not None:
                raise BenchError(
                    f"runner daemon exited {proc.returncode}: {(root / 'daemon.log').read_text()[-2000:]}"
                )
            rss = rss_mb(proc.pid)
            peak_rss = max(peak_rss, rss)
            if time.time() % 60 >= 55 and time.time() - started > 60:
                settled.append(rss)
            time.sleep(1)
        stopped = time.time()
        cpu = cpu_seconds(proc.pid)  # before the stop: what the 500 jobs' minutes cost
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    # a run's start is its record's `started_at`: written once its job's lock is held, in the
    # record that says `running`, on the thread that runs it (a request waiting for a worker,
    # or behind the job's previous run, has no such record yet)
    delays, statuses, lags, own = [], {}, [], []
    slots: dict[str, int] = {}
    slot_delays: dict[str, list[float]] = {}
    done: dict[str, int] = {}
    for path in (folder / ".runner" / "history").glob("*/*/*.json"):
        record = json.loads(path.read_text())
        trigger = record.get("trigger") or ""
        statuses[record.get("status")] = statuses.get(record.get("status"), 0) + 1
        if not trigger.startswith("cron ") or not record.get("started_at"):
            continue
        slot = trigger.split()[1]
        slots[slot] = slots.get(slot, 0) + 1
        delays.append(epoch(record["started_at"]) - epoch(slot))
        slot_delays.setdefault(slot, []).append(delays[-1])
        if record.get("status") == "succeeded" and epoch(record["finished_at"]) <= stopped:
            done[slot] = done.get(slot, 0) + 1
        if record.get("finished_at"):
            lags.append(epoch(record["finished_at"]) - epoch(slot))
        if isinstance(record.get("seconds"), (int, float)):
            own.append(record["seconds"])
    # the slots that passed while the daemon ran (its first minute's marks are set at "now")
    first = int(started // 60 + 1) * 60
    passed = [s for s in range(first, int(stopped) + 1, 60)]
    result = {
        "jobs": count,
        "minutes": minutes,
        "slots": len(passed),
        "expected_runs": len(passed) * count,
        "cron_runs": len(delays),
        "runs_per_minute": round(len(delays) / ((stopped - started) / 60), 1),
        "per_slot": {
            slot: {
                "runs": n,
                "succeeded_before_stop": done.get(slot, 0),
                "p50_s": round(pct(slot_delays[slot], 50), 3),
                "p99_s": round(pct(slot_delays[slot], 99), 3),
            }
            for slot, n in sorted(slots.items())
        },
        "statuses": statuses,
        "daemon_cpu_s": round(cpu, 1),
        "daemon_peak_rss_mb": round(peak_rss),
        "daemon_settled_rss_mb": round(max(settled)) if settled else None,
        "load": load(),
    }
    if delays:
        result |= {
            "delay_p50_s": round(pct(delays, 50), 3),
            "delay_p99_s": round(pct(delays, 99), 3),
            "delay_max_s": round(max(delays), 3),
            "finish_max_s": round(max(lags), 3) if lags else None,
            "run_seconds_p50": round(pct(own, 50), 3) if own else None,
            "run_seconds_p99": round(pct(own, 99), 3) if own else None,
        }
    return result


def print_daemon(r: dict[str, Any]) -> None:
    print(f"\nA daemon with {r['jobs']} jobs on one-minute crons for {r['minutes']} min ({r['load']})")
    print(
        f"  cron slots passed: {r['slots']}, runs expected {r['expected_runs']}, cron runs recorded "
        f"{r['cron_runs']} ({r['runs_per_minute']} a minute); statuses {r['statuses']}"
    )
    for slot, n in r["per_slot"].items():
        print(
            f"    slot {slot}: {n['runs']} runs started ({n['succeeded_before_stop']} succeeded before the "
            f"stop), slot → start p50 {n['p50_s']:.3f} s, p99 {n['p99_s']:.3f} s"
        )
    print(
        f"  the daemon's CPU: {r['daemon_cpu_s']} s over {r['minutes']} min "
        f"({r['daemon_cpu_s'] / max(1, r['cron_runs']):.3f} s a run); peak RSS {r['daemon_peak_rss_mb']} MB, "
        f"before each slot (its runs ended) {r['daemon_settled_rss_mb']} MB"
    )
    if r["cron_runs"]:
        print(
            f"  slot → start  p50 {r['delay_p50_s']:.3f} s, p99 {r['delay_p99_s']:.3f} s, "
            f"max {r['delay_max_s']:.3f} s   target p99 ≤ 1 s: {verdict(r['delay_p99_s'], 1)}"
        )
        print(
            f"  slot → the last run finished: {r['finish_max_s']} s; each run's own seconds (its record) "
            f"p50 {r['run_seconds_p50']} s, p99 {r['run_seconds_p99']} s"
        )


# ---------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenarios", nargs="*", default=["all"], help="jobs, history, daemon, or all")
    parser.add_argument("--jobs", type=int, default=1000, help="job files in `jobs` (1000)")
    parser.add_argument("--runs", type=int, default=10_000, help="runs in the history of `history` (10000)")
    parser.add_argument("--requests", type=int, default=200, help="requests per filter in `history` (200)")
    parser.add_argument("--daemon-jobs", type=int, default=500, help="jobs in `daemon` (500)")
    parser.add_argument("--minutes", type=float, default=5, help="how long `daemon` runs (5)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON document")
    args = parser.parse_args()
    chosen = ["jobs", "history", "daemon"] if "all" in args.scenarios else args.scenarios
    unknown = set(chosen) - {"jobs", "history", "daemon"}
    if unknown:
        parser.error(f"unknown scenario: {', '.join(sorted(unknown))}")
    if not RUNNER.exists():
        print(f"scale: {RUNNER} not found (make .venv/.installed)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(129))
    root = Path(tempfile.mkdtemp(prefix="runner-scale-"))
    results: dict[str, Any] = {}
    try:
        for name in chosen:
            if name == "jobs":
                results[name] = scenario_jobs(root, args.jobs)
                args.json or print_jobs(results[name])
            elif name == "history":
                results[name] = scenario_history(root, args.runs, args.requests)
                args.json or print_history(results[name])
            else:
                results[name] = scenario_daemon(root, args.daemon_jobs, args.minutes)
                args.json or print_daemon(results[name])
            sys.stdout.flush()
    except BenchError as exc:
        print(f"scale: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("scale: interrupted", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
