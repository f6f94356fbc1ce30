#!/usr/bin/env python3
"""`runner verify` on the shared `events` workload: PostgreSQL → PostgreSQL, 1M rows.

    python bench/verify.py [--rows N] [--repeat 3] [--json]

A source database filled by ../shared/bench/gen_events.py, a target made from it as a template
(identical rows and types), a job `events` (keys [id], hash, deletes: propagate) applied in a
temporary definitions folder; then, each timed as a `runner verify` subprocess (Python's
start-up included), median of --repeat:

- equal: the two tables as they are (exit 0);
- 100 differing rows: in the target 40 rows updated, 30 deleted, 30 inserted behind runner's
  back (exit 2, the counts checked);
- the repair (`--repair`, once), then verify again (exit 0).

Databases and the folder are removed at the end, also on failure. Needs the project's venv
(BENCH_VENV) and PostgreSQL (BENCH_PG_HOST/PORT/USER, as bench/run.py).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
GEN = REPO.parent / "shared" / "bench" / "gen_events.py"
VENV_BIN = Path(os.environ.get("BENCH_VENV", REPO / ".venv")) / "bin"
PG_HOST = os.environ.get("BENCH_PG_HOST", "127.0.0.1")
PG_PORT = os.environ.get("BENCH_PG_PORT", "5432")
PG_USER = os.environ.get("BENCH_PG_USER", "postgres")
UPDATED, DELETED, INSERTED = 40, 30, 30


def log(message: str) -> None:
    print(f"[bench-verify] {message}", file=sys.stderr, flush=True)


def psql(sql: str, db: str = "postgres") -> str:
    cmd = ["psql", "-h", PG_HOST, "-p", PG_PORT, "-U", PG_USER, "-d", db, "-X", "-v", "ON_ERROR_STOP=1"]
    return subprocess.run([*cmd, "-Atqc", sql], check=True, capture_output=True, text=True).stdout


def url(db: str, driver: str = "") -> str:
    return f"postgresql{driver}://{PG_USER}@{PG_HOST}:{PG_PORT}/{db}"


def verify(folder: Path, *extra: str) -> tuple[float, dict[str, Any], int]:
    """One `runner verify events --json`: wall seconds, the report, the exit code."""
    cmd = [str(VENV_BIN / "runner"), "--dir", str(folder), "verify", "events", "--json", *extra]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode not in (0, 2):
        raise SystemExit(f"runner verify failed (exit {proc.returncode}):\n{proc.stderr}{proc.stdout}")
    return seconds, json.loads(proc.stdout), proc.returncode


def timed(folder: Path, repeat: int, expect: int) -> dict[str, Any]:
    runs = []
    for _ in range(repeat):
        seconds, report, code = verify(folder)
        if code != expect:
            raise SystemExit(f"runner verify exited {code}, expected {expect}: {json.dumps(report)[:2000]}")
        runs.append(seconds)
    (task,) = report["tasks"]
    return {
        "seconds": [round(s, 3) for s in runs],
        "median": round(statistics.median(runs), 3),
        "task_seconds": task["seconds"],
        "method": task["method"],
        "buckets": task["buckets"],
        "buckets_differ": task["buckets_differ"],
        "rows_read": task["rows_read"],
        "missing": task["missing"],
        "extra": task["extra"],
        "differing": task["differing"],
    }


JOB = """apiVersion: runner/v1
kind: Job
metadata: {name: events}
spec:
  source: src
  target: dst
  tasks:
    - name: events
      read: {table: events}
      write: {table: events, keys: [id]}
      changes: {strategy: hash}
      deletes: propagate
"""


def text(result: dict[str, Any], repeat: int) -> str:
    equal, differing, after = result["equal"], result["differing"], result["after_repair"]
    return "\n".join(
        [
            f"runner verify, PostgreSQL → PostgreSQL, {result['rows']:,} rows "
            f"(wall time of the command, median of {repeat})",
            f"  equal tables:        {equal['median']:.2f} s  (runs {equal['seconds']}; verify itself "
            f"{equal['task_seconds']:.2f} s; {equal['buckets']:,} buckets; {equal['method']})",
            f"  100 differing rows:  {differing['median']:.2f} s  (runs {differing['seconds']}; "
            f"{differing['buckets_differ']:,} buckets differ, {differing['rows_read']:,} rows read into "
            f"Python; {differing['missing']} missing, {differing['extra']} extra, "
            f"{differing['differing']} differing)",
            f"  --repair:            {result['repair']['seconds']:.2f} s  (verify, then a repair run); "
            f"verify after it: {after['median']:.2f} s, equal",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    tag = f"{os.getpid()}_{secrets.token_hex(3)}"
    src, dst = f"bench_verify_src_{tag}", f"bench_verify_dst_{tag}"
    tmp = Path(tempfile.mkdtemp(prefix="runner-bench-verify-"))
    created: list[str] = []
    try:
        psql(f'CREATE DATABASE "{src}"')
        created.append(src)
        log(f"gen_events.py create {args.rows:,} rows …")
        subprocess.run(
            [str(VENV_BIN / "python"), str(GEN), "create", url(src, "+psycopg"), str(args.rows)],
            check=True,
            stdout=sys.stderr,  # stdout is the report's (--json)
        )
        psql("VACUUM ANALYZE events", src)
        psql(f'CREATE DATABASE "{dst}" TEMPLATE "{src}"')  # identical rows and types
        created.append(dst)
        (tmp / "connections.d").mkdir()
        (tmp / "jobs.d").mkdir()
        (tmp / "connections.d" / "bench.yaml").write_text(
            "---\n".join(
                f"apiVersion: runner/v1\nkind: Connection\nmetadata: {{name: {name}}}\n"
                f"spec: {{type: postgresql, url: '{url(db)}'}}\n"
                for name, db in (("src", src), ("dst", dst))
            )
        )
        (tmp / "jobs.d" / "events.yaml").write_text(JOB)
        subprocess.run(
            [str(VENV_BIN / "runner"), "--dir", str(tmp), "apply"], check=True, capture_output=True
        )
        log("verify, equal tables …")
        equal = timed(tmp, args.repeat, 0)
        third, fifth = args.rows // 3, args.rows // 5
        psql(
            f"UPDATE events SET amount = amount + 1 WHERE id IN "
            f"(SELECT id FROM events ORDER BY id LIMIT {UPDATED} OFFSET {third}); "
            f"DELETE FROM events WHERE id IN "
            f"(SELECT id FROM events ORDER BY id DESC LIMIT {DELETED} OFFSET {fifth}); "
            f"INSERT INTO events (id, kind) SELECT {args.rows * 2} + g, 'bench' "
            f"FROM generate_series(1, {INSERTED}) g; ANALYZE events",
            dst,
        )
        log(f"verify, {UPDATED + DELETED + INSERTED} differing rows …")
        differing = timed(tmp, args.repeat, 2)
        found = (differing["missing"], differing["extra"], differing["differing"])
        if found != (DELETED, INSERTED, UPDATED):
            expected = (DELETED, INSERTED, UPDATED)
            raise SystemExit(f"verify found {found} (missing, extra, differing), expected {expected}")
        log("verify --repair …")
        repair_seconds, report, code = verify(tmp, "--repair")
        if code != 0 or report["repair"]["status"] != "succeeded":
            raise SystemExit(f"repair failed: {json.dumps(report)[:2000]}")
        after = timed(tmp, 1, 0)
        result = {
            "rows": args.rows,
            "equal": equal,
            "differing": differing,
            "repair": {"seconds": round(repair_seconds, 3), "tasks": report["repair"]["tasks"]},
            "after_repair": after,
        }
        print(json.dumps(result, indent=2) if args.json else text(result, args.repeat))
    finally:
        for db in created:
            psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
