#!/usr/bin/env python3
"""The cdc strategy on the shared `events` workload (issue 18), beside the A floor, the
watermark and the hash strategies on the same changes.

    .venv/bin/python bench/cdc.py [--rows 1000000] [--rounds 2] [--changes UPD,INS,DEL] [--big] [--json]
    .venv/bin/python bench/cdc.py --source mariadb [--rows 1000000] [--updates 100000] [--json]

PostgreSQL (the default): the source is a private PostgreSQL with `wal_level = logical` (the
shared one runs `replica` and is never reconfigured): `initdb` and `pg_ctl` from PG_BIN
(/usr/lib/postgresql/15/bin), run as the `postgres` system user when this is root, in a
temporary folder on a free loopback port, stopped and removed at the end, filled by
`gen_events.py create`. The targets are databases on the shared PostgreSQL
(BENCH_PG_HOST/PORT/USER), dropped at the end. Measured in the same run:
- the A floor of bench/run.py from this source: `psql \\copy (SELECT * FROM events) TO STDOUT |
  psql \\copy events FROM STDIN` into a table made by `pg_dump --section=pre-data`, once before
  the initial loads, once after, and once after each round (interleaved); its median;
- `cdc`: a timed `runner run` of the cdc job (a subprocess: start-up, connections, the round);
- `warm`: the same job in a folder of its own, followed by `runner daemon` (`continuous:
  {max_latency: 0.1}`, so it looks at the log's end every 50 ms): the seconds from the end of
  the round's writes (the mutate process returned, its last transaction committed) until the
  target holds the round's last row (`max(id)`, polled every 10 ms; the log is applied in commit
  order, so every earlier change of the round is in by then);
- `watermark` (on `updated_at`) and `hash`: timed `runner run`s.
All jobs have `keys: [id]`, `deletes: propagate`, `batch_size: 10000`. A round is
`gen_events.py mutate` (1% updated, 0.5% inserted, 0.2% deleted), or with `--changes` the same
writes with counts of their own (at 10M rows, the 1M round's 10000,5000,2000: the same changes
on a table ten times larger). Every target is compared with the source by `compare.py` (after
each run; with `--big`, only the two cdc targets, once at the end: comparing 10M rows takes
minutes).

MariaDB (`--source mariadb`): a private `mariadbd` writing a row-based binlog
(`mariadb-install-db` in the temporary folder, `--user=root` when this is root), filled with
the same rows (`gen_events.make_row`, same seed) and changed by the same `mutate` round (the
shared script speaks PostgreSQL and SQLite only: its round is repeated here with PyMySQL, the
same random draws). Targets on the shared PostgreSQL. Rounds, each followed by a timed `runner
run` of the cdc job, then of the watermark job, and `compare.py` of both targets:
  1. the mutate round (1% updated, 0.5% inserted, 0.2% deleted);
  2. `--updates` rows updated in one transaction (amount and updated_at).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

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
    parser.add_argument("--updates", type=int, default=100_000, help="MariaDB: the one-transaction round")
    parser.add_argument("--rounds", type=int, default=2, help="PostgreSQL: mutate rounds")
    parser.add_argument(
        "--changes",
        type=lambda t: tuple(int(n) for n in t.split(",")),
        default=None,
        metavar="UPD,INS,DEL",
        help="PostgreSQL: rows updated, inserted, deleted a round (default: 1%%, 0.5%%, 0.2%% of --rows, "
        "the shared mutate round)",
    )
    parser.add_argument("--cdc-only", action="store_true", help="PostgreSQL: no watermark or hash job")
    parser.add_argument(
        "--big",
        action="store_true",
        help="PostgreSQL: compare only the cdc targets, once, at the end; no floor between the loads",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures = mariadb_rounds(args) if args.source == "mariadb" else postgresql_rounds(args)
    if args.json:
        print(json.dumps({"source": args.source, "rows": args.rows, "figures": figures}, indent=2))
        return
    if args.source == "postgresql":
        print_postgresql(args, figures)
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


def print_postgresql(args: argparse.Namespace, figures: dict[str, Any]) -> None:
    floor = figures.pop("a floor")
    identical = figures.pop("identical")
    a = floor["median"]
    runs = ", ".join(f"{r:.2f}" for r in floor["runs"])
    print(f"events on postgresql: {args.rows:,} rows; A floor (psql \\copy | psql \\copy) {a:.2f} s ({runs})")
    print(f"identical to the source: {', '.join(k for k, v in identical.items() if v)}")
    jobs = [j for j in ("warm", "cdc", "watermark", "hash") if any(j in row for row in figures.values())]
    print(f"{'':14} " + " ".join(f"{j:>26}" for j in jobs) + "   load")
    for label, row in figures.items():
        cells = []
        for j in jobs:
            if j not in row:
                cells.append(f"{'—':>26}")
                continue
            cells.append(f"{row[j]:6.2f} s {row[j] / a:5.2f}× A ({row.get(f'{j}_rows_read', 0):>7,})")
        print(f"{label:14} " + " ".join(cells) + f"   {row.get('load', os.getloadavg()[0]):.1f}")


def write_project(
    project: Path, source: tuple[str, str], targets: dict[str, str], table: str, continuous: bool = False
) -> None:
    """Connections src (`source`: type, url) and dst-<job>, and a job per target (`CHANGES`);
    `continuous`: followed by the daemon, reading the log again every 50 ms (max_latency 0.1 s)."""
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
    follow = "  continuous: {max_latency: 0.1}\n" if continuous else ""
    for job in targets:
        (project / "jobs.d" / f"{job}.yaml").write_text(
            f"apiVersion: runner/v1\nkind: Job\nmetadata: {{name: events-{job}}}\nspec:\n"
            f"  source: src\n  target: dst-{job}\n  batch_size: 10000\n{follow}  tasks:\n"
            f"    - name: events\n      read: {{table: {table}}}\n"
            f"      write: {{table: events, keys: [id]}}\n      changes: {CHANGES[STRATEGY.get(job, job)]}\n"
            "      deletes: propagate\n"
        )
    done = subprocess.run([str(RUNNER), "--dir", str(project), "apply"], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"runner apply failed:\n{done.stdout}\n{done.stderr}")


STRATEGY = {"warm": "cdc"}  # a job's strategy, when not its name
CHANGES = {
    "cdc": "{strategy: cdc}",
    "watermark": "{strategy: watermark, column: updated_at}",
    "hash": "{strategy: hash}",
}


def run_jobs(
    figures: dict[str, dict[str, float]],
    label: str,
    project: Path,
    source: str,
    targets: dict[str, str],
    check: bool = True,
) -> None:
    """A timed `runner run` of each target's job, then (`check`) `compare.py` of its target
    with the source."""
    for job in targets:
        seconds, record = timed(
            [str(RUNNER), "--dir", str(project), "run", f"events-{job}", "--format", "json"], project
        )
        note(f"{label}: {job} {seconds:.2f} s")
        task = (record.get("tasks") or [{}])[0]
        figures.setdefault(label, {})[job] = seconds
        figures[label][f"{job}_rows_read"] = task.get("rows_read", 0)
        if check and not compare(source, targets[job]):
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
    names = {job: f"bench_cdc_maria_{job}_{os.getpid()}_{tag}" for job in ("cdc", "watermark")}
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
        run_jobs(figures, "initial load", project, source, targets)
        mariadb_mutate(source)
        run_jobs(figures, "round: 1% updated, 0.5% inserted, 0.2% deleted", project, source, targets)
        psql(
            source,
            f"UPDATE events SET amount = amount + 1, updated_at = NOW(6) ORDER BY id LIMIT {args.updates}",
        )
        run_jobs(
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
    """The rounds with a private PostgreSQL (`wal_level = logical`) as the source: the A floor,
    the cdc job run by the CLI, the same job followed by a continuous daemon (warm), and the
    watermark and hash jobs, all on the same changes."""
    figures: dict[str, dict[str, float]] = {}
    folder = Path(tempfile.mkdtemp(prefix="runner-bench-cdc-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    data, port = folder / "data", free_port()
    tag = secrets.token_hex(4)
    admin = f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/postgres"
    jobs = ["cdc", *(["watermark", "hash"] if not args.cdc_only else [])]
    names = {job: f"bench_cdc_{job}_{os.getpid()}_{tag}" for job in [*jobs, "warm", "floor"]}
    started_server = False
    daemon = None
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
                "max_wal_size = 4GB\n"
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
        for name in names.values():
            psql(admin, f'CREATE DATABASE "{name}"')
        note(f"gen_events.py create {args.rows:,} rows …")
        subprocess.run(
            [str(PYTHON), str(SHARED / "gen_events.py"), "create", source, str(args.rows)],
            check=True,
            capture_output=True,
        )
        urls = {job: admin.rsplit("/", 1)[0] + f"/{db}" for job, db in names.items()}
        floor = Floor(f"127.0.0.1:{port}", urls["floor"], folder)
        floor.copy()

        project = folder / "project"
        write_project(project, ("postgresql", source), {j: urls[j] for j in jobs}, "public.events")
        warm = folder / "warm"
        write_project(warm, ("postgresql", source), {"warm": urls["warm"]}, "public.events", continuous=True)
        note("initial loads …")
        run_jobs(figures, "initial load", project, source, {j: urls[j] for j in jobs}, check=not args.big)
        daemon = Daemon(warm)
        daemon.start()
        daemon.wait(urls["warm"], lambda: rows_of(source))
        if not args.big:
            floor.copy()
        shared = (args.rows // 100, args.rows // 200, args.rows // 500)  # gen_events.py mutate's
        changes = args.changes or shared
        for round_ in range(1, args.rounds + 1):
            label = f"round {round_}"
            note(f"{label}: {changes[0]:,} updated, {changes[1]:,} inserted, {changes[2]:,} deleted …")
            if changes == shared:
                subprocess.run(
                    [str(PYTHON), str(SHARED / "gen_events.py"), "mutate", source, "--round", str(round_)],
                    check=True,
                    capture_output=True,
                )
            else:
                pg_mutate(source, round_, *changes)
            done = time.perf_counter()
            target = max_id(source)
            figures.setdefault(label, {})["warm"] = daemon.wait(urls["warm"], lambda t=target: t) - done
            figures[label]["warm_rows_read"] = changes[0] + changes[1] + changes[2]
            run_jobs(figures, label, project, source, {j: urls[j] for j in jobs}, check=not args.big)
            figures[label]["floor"] = floor.copy()
            figures[label]["load"] = os.getloadavg()[0]
        figures["a floor"] = {"runs": floor.runs, "median": statistics.median(floor.runs)}  # type: ignore[dict-item]
        compared = [*jobs, "warm"] if not args.big else ["cdc", "warm"]
        note(f"comparing the targets with the source ({', '.join(compared)}, at once) …")
        with ThreadPoolExecutor(len(compared)) as pool:
            found = pool.map(lambda job: compare(source, urls[job]), compared)
            same = dict(zip(compared, found, strict=True))
        for job, ok in same.items():
            if not ok:
                sys.exit(f"the {job} target differs from the source")
        figures["identical"] = same  # type: ignore[assignment]
    finally:
        if daemon is not None:
            daemon.stop()
        if started_server:
            with contextlib.suppress(subprocess.CalledProcessError):
                subprocess.run(
                    as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                    check=True,
                    capture_output=True,
                )
        for name in names.values():
            with contextlib.suppress(Exception):
                psql(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(folder, ignore_errors=True)
    return figures


def note(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.1f}] {text}", file=sys.stderr, flush=True)


def rows_of(url: str) -> tuple[int]:
    import sqlalchemy as sa

    engine = sa.create_engine(url, poolclass=sa.NullPool)
    with engine.connect() as conn:
        return (int(conn.exec_driver_sql("SELECT max(id) FROM events").scalar_one()),)


max_id = rows_of


class Floor:
    """The A floor of bench/run.py on this source: `psql \\copy (SELECT * FROM events) TO STDOUT |
    psql \\copy events FROM STDIN` into a table made by `pg_dump --section=pre-data` (no key),
    emptied before each copy."""

    def __init__(self, source: str, target: str, folder: Path):
        host, port = source.split(":")
        self.src = ["-h", host, "-p", port, "-U", "postgres", "-d", "src", "-X", "-q"]
        t = sa_url(target)
        self.dst = ["-h", t.host, "-p", str(t.port), "-U", t.username, "-d", t.database, "-X", "-q"]
        self.runs: list[float] = []
        ddl = folder / "floor.sql"
        subprocess.run(
            [
                "pg_dump",
                *self.src[:-2],
                "--schema-only",
                "--no-owner",
                "-t",
                "public.events",
                "--section=pre-data",
                "-f",
                str(ddl),
            ],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            ["psql", *self.dst, "-v", "ON_ERROR_STOP=1", "-f", str(ddl)], check=True, capture_output=True
        )

    def copy(self) -> float:
        subprocess.run(["psql", *self.dst, "-c", "TRUNCATE events"], check=True, capture_output=True)
        pipe = (
            f"set -o pipefail; psql {shlex.join(self.src)} -c '\\copy (SELECT * FROM events) TO STDOUT' | "
            f"psql {shlex.join(self.dst)} -c '\\copy events FROM STDIN'"
        )
        started = time.perf_counter()
        subprocess.run(["bash", "-c", pipe], check=True, capture_output=True)
        self.runs.append(time.perf_counter() - started)
        note(f"A floor {self.runs[-1]:.2f} s")
        return self.runs[-1]


def sa_url(url: str) -> Any:
    import sqlalchemy as sa

    return sa.make_url(url)


class Daemon:
    """`runner daemon` on the warm folder, which follows the cdc job continuously."""

    def __init__(self, project: Path):
        self.project = project
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.project / "daemon.log").open("wb")
        self.proc = subprocess.Popen(
            [str(RUNNER), "--dir", str(self.project), "daemon"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def wait(self, target: str, expected: Any, timeout: float = 3600) -> float:
        """Poll the target's max(id) every 10 ms until it is what `expected()` says; returns
        the clock when it was."""
        import sqlalchemy as sa

        want = expected()
        engine = sa.create_engine(target, poolclass=sa.NullPool)
        deadline = time.monotonic() + timeout
        with engine.connect() as conn:
            conn.exec_driver_sql("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED")
            while True:
                with contextlib.suppress(Exception):
                    got = conn.exec_driver_sql("SELECT max(id) FROM events").scalar_one()
                    conn.rollback()
                    if got is not None and (int(got),) == tuple(want):
                        return time.perf_counter()
                with contextlib.suppress(Exception):
                    conn.rollback()
                assert self.proc is not None
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    tail = (self.project / "daemon.log").read_text(errors="replace")[-3000:]
                    sys.exit(f"the daemon did not catch up:\n{tail}")
                time.sleep(0.01)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)


def pg_mutate(url: str, round_: int, updates: int, inserts: int, deletes: int, seed: int = 42) -> None:
    """`gen_events.py mutate`'s round with counts of its own (at 10M rows, the 1M round's
    counts: the same changes on a table ten times larger), written as it writes them: the
    updates and deletes in one transaction (COPY into a temporary table, one UPDATE and one
    DELETE joined to it), then the new rows by COPY."""
    import datetime as dt
    import random
    from decimal import Decimal

    import sqlalchemy as sa

    gen = _gen_events()
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    rng = random.Random(seed * 1000 + round_)
    with engine.connect() as conn:
        top = int(conn.exec_driver_sql("SELECT max(id) FROM events").scalar_one())
    picked = rng.sample(range(1, top + 1), updates + deletes)  # ids the shared round draws from: 1..max
    upd, dele = picked[:updates], picked[updates:]
    now = dt.datetime.now().replace(tzinfo=None)
    raw = engine.raw_connection()
    try:
        cur = raw.driver_connection.cursor()
        cur.execute("CREATE TEMP TABLE _upd (amount NUMERIC(12,2), ts TIMESTAMP, id BIGINT)")
        with cur.copy("COPY _upd FROM STDIN") as cp:
            for i in upd:
                cp.write_row((Decimal(rng.randrange(0, 10_000_000)) / 100, now, i))
        cur.execute("UPDATE events e SET amount = u.amount, updated_at = u.ts FROM _upd u WHERE e.id = u.id")
        cur.execute("CREATE TEMP TABLE _del (id BIGINT)")
        with cur.copy("COPY _del FROM STDIN") as cp:
            for i in dele:
                cp.write_row((i,))
        cur.execute("DELETE FROM events e USING _del d WHERE e.id = d.id")
        raw.commit()
    finally:
        raw.close()
    gen.write_rows(engine, (gen.make_row(rng, top + k, now=now) for k in range(1, inserts + 1)))  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
