#!/usr/bin/env python3
"""The cdc strategy beside the watermark strategy on the same changes of the shared `events`
workload (issue 18): one source, two targets, the same rounds applied by each job.

    .venv/bin/python bench/cdc.py [--source postgresql|mariadb] [--rows 1000000] [--updates 100000] [--json]

The source is a private PostgreSQL with `wal_level = logical` (the shared one runs `replica` and
is never reconfigured): `initdb` and `pg_ctl` from PG_BIN (/usr/lib/postgresql/15/bin), run as
the `postgres` system user when this is root, in a temporary folder on a free loopback port,
stopped and removed at the end. With `--source mariadb` it is a private `mariadbd` writing a
row-based binlog (`mariadb-install-db` in the temporary folder, `--user=root` when this is
root), filled with the same rows (`gen_events.make_row`, same seed) and changed by the same
`mutate` round (the shared script speaks PostgreSQL and SQLite only: its round is repeated here
with PyMySQL, the same random draws). The two targets are databases on the shared PostgreSQL
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
    parser.add_argument("--source", choices=["postgresql", "mariadb"], default="postgresql")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--updates", type=int, default=100_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures = mariadb_rounds(args) if args.source == "mariadb" else postgresql_rounds(args)
    if args.json:
        print(json.dumps({"source": args.source, "rows": args.rows, "figures": figures}, indent=2))
        return
    print(
        f"events on {args.source}: {args.rows:,} rows; seconds per run (rows read), targets identical "
        "to the source"
    )
    print(f"{'':52} {'cdc':>16} {'watermark':>18} {'cdc / watermark':>16}")
    for label, row in figures.items():
        ratio = row["cdc"] / row["watermark"] if row["watermark"] else float("nan")
        print(
            f"{label:52} {row['cdc']:7.2f} s ({row['cdc_rows_read']:>7,}) "
            f"{row['watermark']:7.2f} s ({row['watermark_rows_read']:>7,}) {ratio:15.2f}×"
        )


def write_project(project: Path, source: tuple[str, str], targets: dict[str, str], table: str) -> None:
    """Connections src (`source`: type, url) and dst-<job>, and the cdc and watermark jobs."""
    (project / "connections.d").mkdir(parents=True)
    (project / "jobs.d").mkdir()
    (project / "connections.d" / "c.yaml").write_text(
        "\n---\n".join(
            f"apiVersion: runner/v1\nkind: Connection\nmetadata: {{name: {name}}}\n"
            f'spec: {{type: {kind}, url: "{url}"}}\n'
            for name, kind, url in [("src", *source)]
            + [(f"dst-{job}", "postgresql", url) for job, url in targets.items()]
        )
    )
    for job, how in CHANGES.items():
        (project / "jobs.d" / f"{job}.yaml").write_text(
            f"apiVersion: runner/v1\nkind: Job\nmetadata: {{name: events-{job}}}\nspec:\n"
            f"  source: src\n  target: dst-{job}\n  batch_size: 10000\n  tasks:\n"
            f"    - name: events\n      read: {{table: {table}}}\n"
            f"      write: {{table: events, keys: [id]}}\n      changes: {how}\n"
            "      deletes: propagate\n"
        )
    subprocess.run([str(RUNNER), "--dir", str(project), "apply"], check=True, capture_output=True)


CHANGES = {"cdc": "{strategy: cdc}", "watermark": "{strategy: watermark, column: updated_at}"}


def run_both(
    figures: dict[str, dict[str, float]], label: str, project: Path, source: str, targets: dict[str, str]
) -> None:
    """A timed `runner run` of each job, then `compare.py` of its target with the source."""
    for job in CHANGES:
        seconds, record = timed(
            [str(RUNNER), "--dir", str(project), "run", f"events-{job}", "--format", "json"], project
        )
        task = (record.get("tasks") or [{}])[0]
        figures.setdefault(label, {})[job] = seconds
        figures[label][f"{job}_rows_read"] = task.get("rows_read", 0)
        if not compare(source, targets[job]):
            sys.exit(f"{label}: the {job} target differs from the source")


MARIADB_DDL = (
    "CREATE TABLE events (id BIGINT PRIMARY KEY, user_id INTEGER, kind VARCHAR(16), "
    "amount DECIMAL(12,2), note TEXT, created_at DATETIME(6), updated_at DATETIME(6)) "
    "DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
)


def _gen_events() -> object:
    sys.path.insert(0, str(SHARED))
    import gen_events  # type: ignore[import-not-found]

    return gen_events


def mariadb_fill(url: str, rows: object) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url, poolclass=sa.NullPool)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        batch = []
        for row in rows:  # type: ignore[attr-defined]
            batch.append(row)
            if len(batch) >= 5000:
                cursor.executemany("INSERT INTO events VALUES (%s, %s, %s, %s, %s, %s, %s)", batch)
                batch = []
        if batch:
            cursor.executemany("INSERT INTO events VALUES (%s, %s, %s, %s, %s, %s, %s)", batch)
        raw.commit()
    finally:
        raw.close()


def mariadb_mutate(url: str, seed: int = 42, round_: int = 1) -> None:
    """`gen_events.py mutate` on MariaDB: the same draws (1% updated, 0.5% inserted, 0.2%
    deleted), written with PyMySQL."""
    import datetime as dt
    import random
    from decimal import Decimal

    import sqlalchemy as sa

    gen = _gen_events()
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    rng = random.Random(seed * 1000 + round_)
    with engine.connect() as conn:
        ids = [r[0] for r in conn.exec_driver_sql("SELECT id FROM events ORDER BY id")]
    n = len(ids)
    n_upd, n_ins, n_del = n // 100, n // 200, n // 500
    picked = rng.sample(ids, n_upd + n_del)
    upd, dele = picked[:n_upd], picked[n_upd:]
    now = dt.datetime.now().replace(tzinfo=None)
    params = [(Decimal(rng.randrange(0, 10_000_000)) / 100, now, i) for i in upd]
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.executemany("UPDATE events SET amount = %s, updated_at = %s WHERE id = %s", params)
        cursor.executemany("DELETE FROM events WHERE id = %s", [(i,) for i in dele])
        raw.commit()
    finally:
        raw.close()
    mariadb_fill(url, (gen.make_row(rng, ids[-1] + k, now=now) for k in range(1, n_ins + 1)))  # type: ignore[attr-defined]


def mariadb_rounds(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """The rounds with a private MariaDB writing a row-based binlog as the source."""
    import random

    folder = Path(tempfile.mkdtemp(prefix="runner-bench-cdc-maria-"))
    data, port = folder / "data", free_port()
    tag = secrets.token_hex(4)
    admin = f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/postgres"
    base = admin.rsplit("/", 1)[0]
    names = {job: f"bench_cdc_maria_{job}_{os.getpid()}_{tag}" for job in CHANGES}
    targets = {job: f"{base}/{name}" for job, name in names.items()}
    user = ["--user=root"] if os.geteuid() == 0 else []
    server = None
    figures: dict[str, dict[str, float]] = {}
    try:
        subprocess.run(
            [
                shutil.which("mariadb-install-db") or "mariadb-install-db",
                "--no-defaults",
                f"--datadir={data}",
                *user,
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            check=True,
            capture_output=True,
        )
        mariadbd = shutil.which("mariadbd") or shutil.which("mariadbd", path="/usr/sbin") or "mariadbd"
        server = subprocess.Popen(
            [
                mariadbd,
                "--no-defaults",
                f"--datadir={data}",
                *user,
                f"--port={port}",
                "--bind-address=127.0.0.1",
                f"--socket={folder / 'mariadb.sock'}",
                f"--log-error={folder / 'server.log'}",
                f"--log-bin={data / 'binlog'}",
                "--binlog-format=ROW",
                "--binlog-row-image=FULL",
                "--binlog-row-metadata=FULL",
                "--server-id=1",
                "--innodb-buffer-pool-size=512M",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        private = f"mariadb+pymysql://root@127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                psql(f"{private}/mysql", "CREATE DATABASE src CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
                break
            except Exception:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        source = f"{private}/src"
        for name in names.values():
            psql(admin, f'CREATE DATABASE "{name}"')
        psql(source, MARIADB_DDL)
        gen = _gen_events()
        rng = random.Random(42)
        mariadb_fill(source, (gen.make_row(rng, i) for i in range(1, args.rows + 1)))  # type: ignore[attr-defined]

        project = folder / "project"
        write_project(project, ("mariadb", source), targets, "events")
        run_both(figures, "initial load", project, source, targets)
        mariadb_mutate(source)
        run_both(figures, "round: 1% updated, 0.5% inserted, 0.2% deleted", project, source, targets)
        psql(
            source,
            f"UPDATE events SET amount = amount + 1, updated_at = NOW(6) ORDER BY id LIMIT {args.updates}",
        )
        run_both(
            figures, f"round: {args.updates:,} rows updated in one transaction", project, source, targets
        )
    finally:
        if server is not None:
            server.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.wait(60)
            if server.poll() is None:
                server.kill()
        for name in names.values():
            with contextlib.suppress(Exception):
                psql(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(folder, ignore_errors=True)
    return figures


def postgresql_rounds(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """The rounds with a private PostgreSQL (`wal_level = logical`) as the source."""
    figures: dict[str, dict[str, float]] = {}
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
        urls = {job: admin.rsplit("/", 1)[0] + f"/{db}" for job, db in targets.items()}
        write_project(project, ("postgresql", source), urls, "public.events")
        run_both(figures, "initial load", project, source, urls)
        subprocess.run(
            [str(PYTHON), str(SHARED / "gen_events.py"), "mutate", source, "--round", "1"],
            check=True,
            capture_output=True,
        )
        run_both(figures, "round: 1% updated, 0.5% inserted, 0.2% deleted", project, source, urls)
        psql(
            source,
            "UPDATE events SET amount = amount + 1, updated_at = now()::timestamp "
            f"WHERE id IN (SELECT id FROM events ORDER BY id LIMIT {args.updates})",
        )
        run_both(figures, f"round: {args.updates:,} rows updated in one transaction", project, source, urls)
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
    return figures


if __name__ == "__main__":
    main()
