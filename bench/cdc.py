#!/usr/bin/env python3
"""The cdc strategy beside the watermark strategy on the same changes of the shared `events`
workload (issue 18): one source, two targets, the same rounds applied by each job.

    .venv/bin/python bench/cdc.py [--rows 1000000] [--updates 100000] [--json]

The source is a private PostgreSQL with `wal_level = logical` (the shared one runs `replica` and
is never reconfigured): `initdb` and `pg_ctl` from PG_BIN (/usr/lib/postgresql/15/bin), run as
the `postgres` system user when this is root, in a temporary folder on a free loopback port,
stopped and removed at the end. The two targets are databases on the shared PostgreSQL
(BENCH_PG_HOST/PORT/USER), dropped at the end. Both jobs have `keys: [id]`, `deletes:
propagate`, `batch_size: 10000`; the watermark job reads by `updated_at`.

Rounds, each followed by a timed `runner run` of the cdc job, then of the watermark job, and
`compare.py` of both targets:
  1. `gen_events.py mutate` (1% updated, 0.5% inserted, 0.2% deleted);
  2. `--updates` rows updated in one transaction (amount and updated_at).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "bench"
VENV_BIN = Path(os.environ.get("BENCH_VENV", REPO / ".venv")) / "bin"
PYTHON, RUNNER = VENV_BIN / "python", VENV_BIN / "runner"
PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_HOST = os.environ.get("BENCH_PG_HOST", "127.0.0.1")
PG_PORT = os.environ.get("BENCH_PG_PORT", "5432")
PG_USER = os.environ.get("BENCH_PG_USER", "postgres")


def as_postgres(args: list[str]) -> list[str]:
    return (
        ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", *args]
        if os.geteuid() == 0
        else args
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def psql(url: str, sql: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    with engine.connect() as conn:
        conn.exec_driver_sql(sql)


def timed(args: list[str], cwd: Path) -> tuple[float, dict]:
    started = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return seconds, json.loads(done.stdout) if done.stdout.strip().startswith("{") else {}


def compare(source: str, target: str) -> bool:
    done = subprocess.run(
        [str(PYTHON), str(SHARED / "compare.py"), source, "events", target, "events"],
        capture_output=True,
        text=True,
        check=True,
    )
    return bool(json.loads(done.stdout)["identical"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--updates", type=int, default=100_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="runner-bench-cdc-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    data, port = folder / "data", free_port()
    tag = secrets.token_hex(4)
    admin = f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/postgres"
    targets = {job: f"bench_cdc_{job}_{os.getpid()}_{tag}" for job in ("cdc", "watermark")}
    started_server = False
    try:
        subprocess.run(
            as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"]),
            check=True,
            capture_output=True,
        )
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{folder}'\n"
                "wal_level = logical\nmax_replication_slots = 4\nshared_buffers = 256MB\n"
            )
        subprocess.run(
            as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-w", "start"]),
            check=True,
            capture_output=True,
        )
        started_server = True
        private = f"postgresql+psycopg://postgres@127.0.0.1:{port}"
        psql(f"{private}/postgres", "CREATE DATABASE src")
        source = f"{private}/src"
        for name in targets.values():
            psql(admin, f'CREATE DATABASE "{name}"')
        subprocess.run(
            [str(PYTHON), str(SHARED / "gen_events.py"), "create", source, str(args.rows)], check=True
        )

        project = folder / "project"
        (project / "connections.d").mkdir(parents=True)
        (project / "jobs.d").mkdir()
        (project / "connections.d" / "c.yaml").write_text(
            "\n---\n".join(
                f"apiVersion: runner/v1\nkind: Connection\nmetadata: {{name: {name}}}\n"
                f'spec: {{type: postgresql, url: "{url}"}}\n'
                for name, url in [("src", source)]
                + [(f"dst-{job}", admin.rsplit("/", 1)[0] + f"/{db}") for job, db in targets.items()]
            )
        )
        changes = {"cdc": "{strategy: cdc}", "watermark": "{strategy: watermark, column: updated_at}"}
        for job, how in changes.items():
            (project / "jobs.d" / f"{job}.yaml").write_text(
                f"apiVersion: runner/v1\nkind: Job\nmetadata: {{name: events-{job}}}\nspec:\n"
                f"  source: src\n  target: dst-{job}\n  batch_size: 10000\n  tasks:\n"
                f"    - name: events\n      read: {{table: public.events}}\n"
                f"      write: {{table: events, keys: [id]}}\n      changes: {how}\n"
                "      deletes: propagate\n"
            )
        subprocess.run([str(RUNNER), "--dir", str(project), "apply"], check=True, capture_output=True)

        figures: dict[str, dict[str, float]] = {}

        def run_both(label: str) -> None:
            for job in changes:
                seconds, record = timed(
                    [str(RUNNER), "--dir", str(project), "run", f"events-{job}", "--format", "json"], project
                )
                task = (record.get("tasks") or [{}])[0]
                target = admin.rsplit("/", 1)[0] + f"/{targets[job]}"
                same = compare(source, target)
                figures.setdefault(label, {})[job] = seconds
                figures[label][f"{job}_rows_read"] = task.get("rows_read", 0)
                if not same:
                    sys.exit(f"{label}: the {job} target differs from the source")

        run_both("initial load")
        subprocess.run(
            [str(PYTHON), str(SHARED / "gen_events.py"), "mutate", source, "--round", "1"],
            check=True,
            capture_output=True,
        )
        run_both("round: 1% updated, 0.5% inserted, 0.2% deleted")
        psql(
            source,
            "UPDATE events SET amount = amount + 1, updated_at = now()::timestamp "
            f"WHERE id IN (SELECT id FROM events ORDER BY id LIMIT {args.updates})",
        )
        run_both(f"round: {args.updates:,} rows updated in one transaction")
    finally:
        if started_server:
            with contextlib.suppress(subprocess.CalledProcessError):
                subprocess.run(
                    as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                    check=True,
                    capture_output=True,
                )
        for name in targets.values():
            with contextlib.suppress(Exception):
                psql(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(folder, ignore_errors=True)

    if args.json:
        print(json.dumps({"rows": args.rows, "figures": figures}, indent=2))
        return
    print(f"events: {args.rows:,} rows; seconds per run (rows read), targets identical to the source")
    print(f"{'':52} {'cdc':>16} {'watermark':>18} {'cdc / watermark':>16}")
    for label, row in figures.items():
        ratio = row["cdc"] / row["watermark"] if row["watermark"] else float("nan")
        print(
            f"{label:52} {row['cdc']:7.2f} s ({row['cdc_rows_read']:>7,}) "
            f"{row['watermark']:7.2f} s ({row['watermark_rows_read']:>7,}) {ratio:15.2f}×"
        )


if __name__ == "__main__":
    main()
