#!/usr/bin/env python3
"""Benchmark harness for runner on the shared `events` workload (issue 6).

    python bench/run.py [A B C X | all] [--rows N] [--repeat 3] [--json] [--memory] [--peers] [--warm]

Per scenario: fresh databases (dropped at the end), the workload from ../shared/bench/gen_events.py,
a temporary definitions folder applied once, `runner run JOB` timed as a subprocess under
/usr/bin/time (peak RSS), the floor timed in the same run, and the target checked with
../shared/bench/compare.py. With --peers, Sling and dlt run beside runner in A and B (bench/peers.py,
from the peers' venv that `make bench-peers` creates); with --warm, B's watermark job also runs
through one `runner daemon --http` (bench/warm.py). See bench/README.md for what each figure means.

Needs only the standard library here; the workload scripts and runner run with the project's venv
(BENCH_VENV, default .venv). Services: BENCH_PG_HOST/PORT/USER (127.0.0.1, 5432, postgres) and
BENCH_MARIADB_HOST/PORT/USER (127.0.0.1, 3306, root), no passwords.
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
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import peers  # bench/peers.py: Sling and dlt
from warm import WarmDaemon  # bench/warm.py: the daemon's warm path

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "bench"
GEN = SHARED / "gen_events.py"
COMPARE = SHARED / "compare.py"
VENV_BIN = Path(os.environ.get("BENCH_VENV", REPO / ".venv")) / "bin"
PYTHON = VENV_BIN / "python"
RUNNER = VENV_BIN / "runner"
TIME = "/usr/bin/time"
PEERS_VENV = Path(os.environ.get("BENCH_PEERS_VENV", REPO / "bench" / ".peers"))

PG_HOST = os.environ.get("BENCH_PG_HOST", "127.0.0.1")
PG_PORT = os.environ.get("BENCH_PG_PORT", "5432")
PG_USER = os.environ.get("BENCH_PG_USER", "postgres")
MY_HOST = os.environ.get("BENCH_MARIADB_HOST", "127.0.0.1")
MY_PORT = os.environ.get("BENCH_MARIADB_PORT", "3306")
MY_USER = os.environ.get("BENCH_MARIADB_USER", "root")

BATCH_SIZE = 10_000  # the README's example and the setting
TABLE = "events"
ROUNDS = 3
MEMORY_ROWS = (1_000_000, 10_000_000)  # A at 10M: ≤ 1.1× its floor, peak RSS within ±20% of 1M's

SCENARIOS = {
    "A": "PostgreSQL → PostgreSQL, full copy (no keys: replace)",
    "B": "PostgreSQL → PostgreSQL, incremental: initial load, then 3 rounds of gen_events.py mutate",
    "C": "SQLite → SQLite, full copy (no keys: replace)",
    "X": "PostgreSQL → MariaDB, full copy (no keys: replace)",
}

# The child environment: no runner settings leak in from the caller's shell.
ENV = {k: v for k, v in os.environ.items() if k not in ("RUNNER_DIR", "RUNNER_STATE", "RUNNER_HISTORY")}
ENV.setdefault("PGCONNECT_TIMEOUT", "10")


class BenchError(Exception):
    """A failure of the harness or of a command it ran; the message says which and why."""


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


# --- processes ---------------------------------------------------------------------------------------


def run(
    cmd: list[str],
    *,
    what: str | None = None,
    check: bool = True,
    timeout: float | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command in its own process group; on any interruption kill that group (and only it)."""
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV if env is None else env,
        cwd=cwd,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException as exc:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        if isinstance(exc, subprocess.TimeoutExpired):
            raise BenchError(f"{what or cmd[0]} did not finish within {timeout:.0f} s (killed)") from None
        raise
    if check and proc.returncode != 0:
        raise BenchError(f"{what or shlex.join(cmd)} failed (exit {proc.returncode}):\n{tail(err or out)}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def timed(cmd: list[str], *, what: str, timeout: float | None = None) -> float:
    t0 = time.perf_counter()
    run(cmd, what=what, timeout=timeout)
    return time.perf_counter() - t0


def pg_conn(db: str) -> list[str]:
    return ["-h", PG_HOST, "-p", PG_PORT, "-U", PG_USER, "-d", db]


def pg_args(db: str) -> list[str]:
    return [*pg_conn(db), "-X", "-v", "ON_ERROR_STOP=1"]


def psql(sql: str, db: str = "postgres") -> str:
    return run(["psql", *pg_args(db), "-Atqc", sql], what=f"psql ({sql[:60]})").stdout


def mariadb_client() -> list[str]:
    return ["mariadb", "--protocol=TCP", "-h", MY_HOST, "-P", MY_PORT, "-u", MY_USER, "--connect-timeout=10"]


def mariadb(sql: str, db: str | None = None) -> str:
    cmd = [*mariadb_client(), "-N", "-B", "-e", sql] + ([db] if db else [])
    return run(cmd, what=f"mariadb ({sql[:60]})").stdout


def sqlite3(path: Path, sql: str) -> str:
    return run(["sqlite3", "-bail", str(path), sql], what=f"sqlite3 ({sql[:60]})").stdout


def pg_url(db: str, sqlalchemy: bool = False) -> str:
    return f"postgresql{'+psycopg' if sqlalchemy else ''}://{PG_USER}@{PG_HOST}:{PG_PORT}/{db}"


def my_url(db: str, sqlalchemy: bool = False) -> str:
    return f"{'mysql+pymysql' if sqlalchemy else 'mariadb'}://{MY_USER}@{MY_HOST}:{MY_PORT}/{db}"


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"  # an absolute path: sqlite:////tmp/…


# --- preflight ---------------------------------------------------------------------------------------


def preflight(scenarios: list[str], with_peers: bool = False) -> None:
    """Every tool and service the chosen scenarios need, checked before anything is created."""
    if with_peers and (problem := peers.missing(PEERS_VENV)):
        raise BenchError(problem)
    need_pg = any(s in ("A", "B", "X", "memory") for s in scenarios)
    tools = [TIME] + (["psql", "pg_dump"] if need_pg else [])
    tools += ["sqlite3"] if "C" in scenarios else []
    tools += ["mariadb"] if "X" in scenarios else []
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise BenchError(f"missing command(s): {', '.join(missing)}")
    for path, hint in ((GEN, "../shared/bench"), (COMPARE, "../shared/bench"), (RUNNER, "make bench")):
        if not path.exists():
            raise BenchError(f"{path} not found ({hint})")
    if need_pg:
        try:
            psql("SELECT 1")
        except BenchError as exc:
            raise BenchError(
                f"PostgreSQL at {PG_HOST}:{PG_PORT} (user {PG_USER}) is unreachable; start it or set "
                f"BENCH_PG_HOST/BENCH_PG_PORT/BENCH_PG_USER.\n{exc}"
            ) from None
    if "X" in scenarios:
        try:
            mariadb("SELECT 1")
        except BenchError as exc:
            raise BenchError(
                f"MariaDB at {MY_HOST}:{MY_PORT} (user {MY_USER}) is unreachable; start it or set "
                f"BENCH_MARIADB_HOST/BENCH_MARIADB_PORT/BENCH_MARIADB_USER.\n{exc}"
            ) from None


# --- the harness -------------------------------------------------------------------------------------


class Bench:
    """Owns every database and file it creates; `close()` drops and removes them all."""

    def __init__(
        self,
        rows: int,
        repeat: int,
        timeout: float,
        floor_pk: bool = False,
        with_peers: bool = False,
        with_warm: bool = False,
    ) -> None:
        self.rows, self.repeat, self.timeout, self.floor_pk = rows, repeat, timeout, floor_pk
        self.with_peers, self.with_warm = with_peers, with_warm
        self.closers: list[Callable[[], None]] = []  # processes to end first (the warm daemon)
        self.suffix = f"{os.getpid()}_{secrets.token_hex(3)}"
        self.tmp = Path(tempfile.mkdtemp(prefix="runner-bench-"))
        self.pg_dbs: list[str] = []
        self.my_dbs: list[str] = []
        self.sources: dict[int, str] = {}  # rows -> pristine PostgreSQL source database
        self.floors: dict[int, dict[str, Any]] = {}  # rows -> the A floor measured on it

    # databases
    def create_pg(self, role: str, template: str | None = None) -> str:
        name = f"bench_{role}_{self.suffix}".lower()
        psql(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else ""))
        self.pg_dbs.append(name)
        return name

    def drop_pg(self, name: str) -> None:
        if name in self.pg_dbs:
            psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            self.pg_dbs.remove(name)
            for rows, db in list(self.sources.items()):
                if db == name:
                    del self.sources[rows]

    def create_my(self, role: str) -> str:
        name = f"bench_{role}_{self.suffix}".lower()
        mariadb(f"CREATE DATABASE {name}")
        self.my_dbs.append(name)
        return name

    def drop_my(self, name: str) -> None:
        if name in self.my_dbs:
            mariadb(f"DROP DATABASE IF EXISTS {name}")
            self.my_dbs.remove(name)

    def close(self) -> None:
        problems = []
        for closer in reversed(self.closers):
            closer()
        for name in list(self.pg_dbs):
            try:
                self.drop_pg(name)
            except BenchError as exc:
                problems.append(f"could not drop PostgreSQL database {name}: {exc}")
        for name in list(self.my_dbs):
            try:
                self.drop_my(name)
            except BenchError as exc:
                problems.append(f"could not drop MariaDB database {name}: {exc}")
        shutil.rmtree(self.tmp, ignore_errors=True)
        for p in problems:
            log(p)

    # workload
    def gen(self, url: str, rows: int) -> None:
        log(f"gen_events.py create {rows:,} rows …")
        run(
            [str(PYTHON), str(GEN), "create", url, str(rows)],
            what="gen_events.py create",
            timeout=self.timeout,
        )

    def pg_source(self, rows: int) -> str:
        """A pristine PostgreSQL source with `rows` events, created once per invocation and shared by
        the read-only scenarios (A, X); B copies it (CREATE DATABASE … TEMPLATE) before mutating."""
        if rows not in self.sources:
            db = self.create_pg(f"src{rows}")
            self.gen(pg_url(db, sqlalchemy=True), rows)
            self.sources[rows] = db
        return self.sources[rows]

    def pg_floor(self, rows: int) -> dict[str, Any]:
        """`psql \\copy … TO STDOUT | psql \\copy … FROM STDIN` into a pre-created table with the
        source's columns and exact types (pg_dump's pre-data section: no primary key or index, like
        the table runner creates for a task without keys; `--floor-pk` keeps the source's primary
        key), truncated before each repeat."""
        if rows in self.floors:
            return self.floors[rows]
        dst, once = self.floor_copier(rows)  # dropped by floor_done, or by close() on a failure
        return self.floor_done(rows, dst, [once(i) for i in range(self.repeat)])

    def floor_copier(self, rows: int) -> tuple[str, Callable[[int], float]]:
        """The floor's target database and table; `once(i)` empties the table and times one copy."""
        src = self.pg_source(rows)
        dst = self.create_pg("floor")
        try:
            ddl = self.tmp / "floor-ddl.sql"  # a psql script: recent pg_dump writes \restrict lines
            dump = ["pg_dump", *pg_conn(src), "--schema-only", "--no-owner", "-t", f"public.{TABLE}"]
            dump += [] if self.floor_pk else ["--section=pre-data"]
            run([*dump, "-f", str(ddl)], what="pg_dump --schema-only")
            run(["psql", *pg_args(dst), "-q", "-f", str(ddl)], what="psql (create the floor's table)")
            ddl.unlink()
            copy_out = "\\copy (SELECT * FROM " + TABLE + ") TO STDOUT"
            copy_in = "\\copy " + TABLE + " FROM STDIN"
            pipe = (
                f"set -o pipefail; psql {shlex.join(pg_args(src))} -c {shlex.quote(copy_out)} | "
                f"psql {shlex.join(pg_args(dst))} -q -c {shlex.quote(copy_in)}"
            )
        except BaseException:
            self.drop_pg(dst)
            raise

        def once(i: int) -> float:
            psql(f"TRUNCATE {TABLE}", db=dst)
            log(f"floor (psql \\copy | psql \\copy) {i + 1}/{self.repeat} …")
            return timed(["bash", "-c", pipe], what="the psql \\copy floor", timeout=self.timeout)

        return dst, once

    def floor_done(self, rows: int, dst: str, runs: list[float]) -> dict[str, Any]:
        """The floor's figures once its runs are done (its last copy counted), its database dropped."""
        if dst in self.pg_dbs:
            try:
                copied = int(psql(f"SELECT count(*) FROM {TABLE}", db=dst))
            finally:
                self.drop_pg(dst)
            if copied != rows:
                raise BenchError(f"the floor copied {copied:,} rows, not {rows:,}")
        how = "psql \\copy TO STDOUT | psql \\copy FROM STDIN" + (", table with PK" if self.floor_pk else "")
        self.floors[rows] = {"how": how, **summary(runs)}
        return self.floors[rows]

    # runner
    def definitions(self, name: str, connections: dict[str, tuple[str, str]], jobs: list[str]) -> Path:
        """A definitions folder (state store and history inside it), applied once."""
        folder = self.tmp / name
        (folder / "connections.d").mkdir(parents=True)
        (folder / "jobs.d").mkdir()
        docs = [
            f"apiVersion: runner/v1\nkind: Connection\nmetadata: {{name: {cname}}}\n"
            f"spec:\n  type: {ctype}\n  url: {url}\n"
            for cname, (ctype, url) in connections.items()
        ]
        (folder / "connections.d" / "bench.yaml").write_text("---\n".join(docs))
        (folder / "jobs.d" / "bench.yaml").write_text("---\n".join(jobs))
        run([str(RUNNER), "--dir", str(folder), "apply"], what="runner apply")
        return folder

    def runner_run(self, folder: Path, job: str) -> dict[str, Any]:
        """One timed `runner run JOB` under /usr/bin/time: wall seconds, peak RSS, the run record."""
        rss_file = folder / "time.out"
        cmd = [TIME, "-f", "%M", "-o", str(rss_file), str(RUNNER), "--dir", str(folder), "run", job]
        cmd += ["--format", "json"]
        t0 = time.perf_counter()
        proc = run(cmd, what=f"runner run {job}", check=False, timeout=self.timeout)
        seconds = time.perf_counter() - t0
        try:
            record = json.loads(proc.stdout)
        except json.JSONDecodeError:
            record = None
        if proc.returncode != 0 or record is None or record.get("status") != "succeeded":
            errors = [f"task {t.get('name')}: {t.get('error')}" for t in (record or {}).get("tasks", [])]
            errors = [e for e in errors if not e.endswith(": None")]
            raise BenchError(
                f"runner run {job} failed (exit {proc.returncode}):\n"
                + ("\n".join(errors) if errors else tail(proc.stderr or proc.stdout))
            )
        lines = rss_file.read_text().split()
        rss_file.unlink()
        task = record["tasks"][0]
        return {
            "seconds": round(seconds, 3),
            "rss_mb": round(int(lines[-1]) / 1024, 1),
            "runner_seconds": record.get("seconds"),
            "rows_read": record.get("rows_read"),
            "rows_written": record.get("rows_written"),
            "inserted": task.get("inserted"),
            "updated": task.get("updated"),
            "upserted": task.get("upserted"),
            "deleted": task.get("deleted"),
            "unchanged": task.get("unchanged"),
            "read_seconds": task.get("read_seconds"),
            "write_seconds": task.get("write_seconds"),
        }

    def compare(self, src_url: str, dst_url: str) -> dict[str, Any]:
        log("compare.py …")
        out = run(
            [str(PYTHON), str(COMPARE), src_url, TABLE, dst_url, TABLE, "--json"],
            what="compare.py",
            timeout=self.timeout,
        ).stdout
        res = json.loads(out.strip().splitlines()[-1])
        keys = ("identical", "missing_in_dst", "extra_in_dst", "differing", "differing_by_column")
        return {k: res.get(k) for k in keys} | {
            "dst_types": res.get("dst_types"),
            "src_count": res["src"]["count"],
            "dst_count": res["dst"]["count"],
        }

    def full_copy(
        self,
        *,
        label: str,
        rows: int,
        repeat: int,
        source: tuple[str, str],
        target: tuple[str, str],
        reset_target: Callable[[], None],
        compare_urls: tuple[str, str],
        exact_types: tuple[Callable[[], dict[str, str]], Callable[[], dict[str, str]]],
        indexes: Callable[[], int],
        alongside: Sequence[Callable[[int], None]] = (),
    ) -> dict[str, Any]:
        """`repeat` timed runs of runner into a fresh target each; after each, every `alongside` step
        (peers, the floor) runs once with the repetition's index, so they alternate."""
        job = f"bench-{label.lower()}"
        folder = self.definitions(label, {"src": source, "dst": target}, [job_yaml(job, "dst")])
        runs = []
        for i in range(repeat):
            reset_target()  # a fresh target each repeat: every repeat does the same work
            log(f"{label}: runner run {job} {i + 1}/{repeat} ({rows:,} rows) …")
            runs.append(self.runner_run(folder, job))
            for other in alongside:
                other(i)
        check = self.compare(*compare_urls)
        src_types, dst_types = exact_types[0](), exact_types[1]()
        return {
            "rows": rows,
            "runs": runs,
            **summary([r["seconds"] for r in runs]),
            "rows_per_s": round(rows / statistics.median(r["seconds"] for r in runs)),
            "rss_mb": max(r["rss_mb"] for r in runs),
            "check": check,
            "src_exact_types": src_types,
            "dst_exact_types": dst_types,
            "dst_indexes": indexes(),
        }

    # scenarios
    def scenario_a(self) -> dict[str, Any]:
        """With --peers, each repetition runs runner, Sling, dlt and the floor, in that order."""
        src = self.pg_source(self.rows)
        contenders = self.start_peers(src, "a", incremental=False) if self.with_peers else {}
        steps: dict[str, list[dict[str, Any]]] = {name: [] for name in contenders}
        alongside: list[Callable[[int], None]] = []
        for name, peer in contenders.items():

            def one(i: int, name: str = name, peer: peers.Peer = peer) -> None:
                peer.reset()  # a fresh target each repeat, as runner's
                log(f"A: {name} {i + 1}/{self.repeat} ({self.rows:,} rows) …")
                steps[name].append(peer.step(f"full copy {i + 1}"))

            alongside.append(one)
        floor_runs: list[float] = []
        floor_dst = None
        if contenders and self.rows not in self.floors:
            floor_dst, floor_once = self.floor_copier(self.rows)
            alongside.append(lambda i: floor_runs.append(floor_once(i)))
        floor = self.pg_floor(self.rows) if floor_dst is None else {}
        dst = self.create_pg("dsta")
        try:
            res = self.full_copy(
                label="A",
                rows=self.rows,
                repeat=self.repeat,
                source=("postgresql", pg_url(src)),
                target=("postgresql", pg_url(dst)),
                reset_target=lambda: psql(f"DROP TABLE IF EXISTS {TABLE}", db=dst),
                compare_urls=(pg_url(src, True), pg_url(dst, True)),
                exact_types=(lambda: pg_types(src), lambda: pg_types(dst)),
                indexes=lambda: pg_indexes(dst),
                alongside=alongside,
            )
        finally:
            self.drop_pg(dst)
        if floor_dst is not None:
            floor = self.floor_done(self.rows, floor_dst, floor_runs)
        res["types_kept"] = res["src_exact_types"] == res["dst_exact_types"]
        res["peers"] = {}
        for name, peer in contenders.items():
            res["peers"][name] = peers.summarise(steps[name], floor["median_s"]) | {
                "check": self.compare(pg_url(src, True), pg_url(peer.dst_db, True)),
                "dst_exact_types": pg_types(peer.dst_db),
            }
            res["peers"][name]["types_kept"] = res["src_exact_types"] == res["peers"][name]["dst_exact_types"]
            self.drop_pg(peer.dst_db)
        return with_floor(res, floor)

    def scenario_x(self) -> dict[str, Any]:
        """With MariaDB's own load of the same rows beside each repetition (`mariadb_floor`)."""
        src = self.pg_source(self.rows)
        floor = self.pg_floor(self.rows)
        dst = self.create_my("dstx")
        own = self.create_my("xfloor")
        own_runs: list[float] = []
        try:
            res = self.full_copy(
                label="X",
                rows=self.rows,
                repeat=self.repeat,
                source=("postgresql", pg_url(src)),
                target=("mariadb", my_url(dst)),
                reset_target=lambda: mariadb(f"DROP TABLE IF EXISTS {TABLE}", db=dst),
                compare_urls=(pg_url(src, True), my_url(dst, True)),
                exact_types=(lambda: pg_types(src), lambda: my_types(dst)),
                indexes=lambda: my_indexes(dst),
                alongside=[lambda i: own_runs.append(self.mariadb_floor(src, dst, own, i))],
            )
        finally:
            self.drop_my(dst)
            self.drop_my(own)
        res["types_kept"] = None  # across engines: see the README's type table
        res["mariadb_floor"] = {
            "how": "psql \\copy TO STDOUT | mariadb LOAD DATA LOCAL INFILE, into a copy of runner's table",
            **summary(own_runs),
        }
        return with_floor(res, floor)

    def mariadb_floor(self, src: str, made: str, into: str, i: int) -> float:
        """MariaDB's own load of the same rows, timed: PostgreSQL's text COPY piped into the
        `mariadb` client's `LOAD DATA LOCAL INFILE` (the format runner's X path sends), into a
        table created `LIKE` the one runner just made, so both load into the same definition:
        however runner sends the rows, X cannot take less than MariaDB takes to ingest them."""
        mariadb(f"DROP TABLE IF EXISTS {into}.{TABLE}; CREATE TABLE {into}.{TABLE} LIKE {made}.{TABLE}")
        copy_out = f"\\copy (SELECT * FROM {TABLE}) TO STDOUT"
        load = (
            f"LOAD DATA LOCAL INFILE '/dev/stdin' INTO TABLE {TABLE} CHARACTER SET utf8mb4 "
            "FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n'"
        )
        client = [*mariadb_client(), "--local-infile=1"]
        pipe = (
            f"set -o pipefail; psql {shlex.join(pg_args(src))} -c {shlex.quote(copy_out)} | "
            f"{shlex.join(client)} -e {shlex.quote(load)} {into}"
        )
        log(f"X: MariaDB's own load (psql \\copy | mariadb LOAD DATA) {i + 1}/{self.repeat} …")
        seconds = timed(["bash", "-c", pipe], what="MariaDB's own load", timeout=self.timeout)
        loaded = int(mariadb(f"SELECT count(*) FROM {TABLE}", db=into))
        if loaded != self.rows:
            raise BenchError(f"MariaDB's own load loaded {loaded:,} rows, not {self.rows:,}")
        return seconds

    def scenario_c(self) -> dict[str, Any]:
        folder = self.tmp / "C-data"
        folder.mkdir()
        src, dst, flr = folder / "src.db", folder / "dst.db", folder / "floor.db"
        self.gen(sqlite_url(src), self.rows)
        if self.floor_pk:
            ddl = sqlite3(src, f".schema {TABLE}")
        else:  # the source's columns and declared types, no key (as runner creates it without keys)
            columns = ", ".join(f'"{n}" {t}' for n, t in sqlite_types(src).items())
            ddl = f"CREATE TABLE {TABLE} ({columns})"
        insert = f"ATTACH '{src}' AS s; INSERT INTO {TABLE} SELECT * FROM s.{TABLE};"
        floor_runs = []
        for i in range(self.repeat):
            remove_sqlite(flr)
            sqlite3(flr, ddl)
            log(f"floor (sqlite3 ATTACH + INSERT … SELECT) {i + 1}/{self.repeat} …")
            floor_runs.append(timed(["sqlite3", "-bail", str(flr), insert], what="the sqlite3 floor"))
        remove_sqlite(flr)
        how = "sqlite3 ATTACH + INSERT … SELECT" + (", table with PK" if self.floor_pk else "")
        floor = {"how": how, **summary(floor_runs)}
        scripts: dict[str, list[float]] = {name: [] for name in PYTHON_COPIES}

        def python_copies(i: int) -> None:
            for name, (imports, _) in PYTHON_COPIES.items():
                remove_sqlite(flr)
                sqlite3(flr, ddl)
                log(f"C: the same copy from a Python script ({name}) {i + 1}/{self.repeat} …")
                script = imports + PYTHON_COPY
                cmd = [str(PYTHON), "-c", script, str(flr), f"file:{src}?mode=ro"]
                scripts[name].append(timed(cmd, what=f"the Python copy ({name})", timeout=self.timeout))

        res = self.full_copy(
            label="C",
            rows=self.rows,
            repeat=self.repeat,
            source=("sqlite", sqlite_url(src)),
            target=("sqlite", sqlite_url(dst)),
            reset_target=lambda: remove_sqlite(dst),
            compare_urls=(sqlite_url(src), sqlite_url(dst)),
            exact_types=(lambda: sqlite_types(src), lambda: sqlite_types(dst)),
            indexes=lambda: sqlite_indexes(dst),
            alongside=[python_copies],
        )
        remove_sqlite(flr)
        res["types_kept"] = same_declared(res["src_exact_types"], res["dst_exact_types"])
        res["python_copies"] = {
            name: {"how": PYTHON_COPIES[name][1], **summary(runs)} for name, runs in scripts.items()
        }
        shutil.rmtree(folder, ignore_errors=True)
        return with_floor(res, floor)

    def scenario_b(self) -> dict[str, Any]:
        """Every variant reads the same source (one copy of the pristine one), each into its own target:
        after each `mutate` round the watermark job runs, then (with --warm) the same job through the
        warm daemon's API, the hash job, and (with --peers) Sling and dlt."""
        floor = self.pg_floor(self.rows)
        src = self.create_pg("srcb", template=self.pg_source(self.rows))
        variants = {
            "watermark": "changes: {strategy: watermark, column: updated_at}\n      deletes: propagate",
            "hash": "changes: {strategy: hash}\n      deletes: propagate",
        }
        dsts: dict[str, str] = {}
        try:
            for v in variants:
                dsts[v] = self.create_pg(f"dstb{v[0]}")
            folder = self.definitions(
                "B",
                {"src": ("postgresql", pg_url(src))}
                | {f"dst-{v}": ("postgresql", pg_url(db)) for v, db in dsts.items()},
                [job_yaml(f"bench-b-{v}", f"dst-{v}", keys=True, extra=x) for v, x in variants.items()],
            )
            # Each contender of a round, in order: name -> one run of it (the argument says which).
            contenders: dict[str, Callable[[str], dict[str, Any]]] = {
                "watermark": lambda what: self.runner_run(folder, "bench-b-watermark")
            }
            if self.with_warm:
                contenders["warm"] = self.warm_daemon(src, dsts, variants["watermark"])
            contenders["hash"] = lambda what: self.runner_run(folder, "bench-b-hash")
            b_peers = self.start_peers(src, "b", incremental=True) if self.with_peers else {}
            for name, peer in b_peers.items():
                dsts[name] = peer.dst_db
                contenders[name] = peer.step
            out: dict[str, Any] = {v: {"rounds": []} for v in contenders}

            def step(v: str, what: str) -> dict[str, Any]:
                log(f"B {v}: {what} …")
                r = contenders[v](what)
                r["ratio_to_a_floor"] = round(r["seconds"] / floor["median_s"], 2)
                r["check"] = self.compare(pg_url(src, True), pg_url(dsts[v], True))
                return r

            for v in contenders:
                out[v]["initial"] = step(v, "initial load")
            for rnd in range(1, ROUNDS + 1):
                log(f"gen_events.py mutate --round {rnd} …")
                mutated = run(
                    [str(PYTHON), str(GEN), "mutate", pg_url(src, True), "--round", str(rnd)],
                    what="gen_events.py mutate",
                    timeout=self.timeout,
                ).stdout.strip()
                for v in contenders:
                    r = step(v, f"round {rnd}")
                    r["mutate"] = mutated
                    out[v]["rounds"].append(r)
            src_types = pg_types(src)
            for v in contenders:
                med = statistics.median(r["seconds"] for r in out[v]["rounds"])
                out[v]["median_round_s"] = round(med, 3)
                out[v]["median_round_ratio_to_a_floor"] = round(med / floor["median_s"], 2)
                out[v]["rss_mb"] = max(r["rss_mb"] or 0 for r in [out[v]["initial"], *out[v]["rounds"]])
                out[v]["dst_exact_types"] = pg_types(dsts[v])
                out[v]["types_kept"] = src_types == out[v]["dst_exact_types"]
        finally:
            for close in self.closers:
                close()
            self.closers.clear()
            for db in [*dsts.values(), src]:
                self.drop_pg(db)
        return {
            "rows": self.rows,
            "a_floor": floor,
            "variants": {v: x for v, x in out.items() if v not in peers.PEERS},
            "peers": {v: x for v, x in out.items() if v in peers.PEERS},
        }

    def warm_daemon(self, src: str, dsts: dict[str, str], changes: str) -> Callable[[str], dict[str, Any]]:
        """The watermark job in a definitions folder of its own (its own state store and target),
        served by one `runner daemon --http` started now; returns one run through its API."""
        dsts["warm"] = self.create_pg("dstbwarm")
        folder = self.definitions(
            "B-warm",
            {"src": ("postgresql", pg_url(src)), "dst-warm": ("postgresql", pg_url(dsts["warm"]))},
            [job_yaml("bench-b-warm", "dst-warm", keys=True, extra=changes)],
        )
        daemon = WarmDaemon(RUNNER, folder, ENV, run, BenchError)
        self.closers.append(daemon.stop)
        log("B warm: starting runner daemon --http …")
        daemon.start()
        return lambda what: daemon.trigger("bench-b-warm")

    def start_peers(self, src: str, role: str, incremental: bool) -> dict[str, peers.Peer]:
        """Sling and dlt, each with a target database and a folder of its own."""
        harness = peers.Harness(
            run=run,
            psql=psql,
            env=ENV,
            pg=(PG_HOST, PG_PORT, PG_USER),
            time=TIME,
            timeout=self.timeout,
            venv=PEERS_VENV,
        )
        made = {}
        for name, cls in peers.PEERS.items():
            dst = self.create_pg(f"dst{role}{name}")
            made[name] = cls(harness, self.tmp / f"{role}-{name}", src, dst, incremental)
        return made

    def memory(self) -> dict[str, Any]:
        """Scenario A at 1M and at 10M rows, each beside its own floor (`--repeat` runs of
        each): the ratio to the floor at each size, peak RSS of each and their ratio."""
        out: dict[str, Any] = {}
        for rows in MEMORY_ROWS:
            src = self.pg_source(rows)
            floor = self.pg_floor(rows)
            dst = self.create_pg("dstm")
            try:
                res = self.full_copy(
                    label=f"M{rows}",
                    rows=rows,
                    repeat=self.repeat,
                    source=("postgresql", pg_url(src)),
                    target=("postgresql", pg_url(dst)),
                    reset_target=lambda dst=dst: psql(f"DROP TABLE IF EXISTS {TABLE}", db=dst),
                    compare_urls=(pg_url(src, True), pg_url(dst, True)),
                    exact_types=(lambda src=src: pg_types(src), lambda dst=dst: pg_types(dst)),
                    indexes=lambda dst=dst: pg_indexes(dst),
                )
            finally:
                self.drop_pg(dst)
                self.drop_pg(src)
            out[str(rows)] = with_floor(res, floor)
        a, b = (out[str(r)]["rss_mb"] for r in MEMORY_ROWS)
        out["rss_ratio"] = round(b / a, 2)
        return out


# --- helpers -----------------------------------------------------------------------------------------


# C's copy made by a Python script: a bound on any Python tool (`scenario_c`). The first imports
# nothing more; the second first imports the libraries every `runner` command loads before its
# first row (the CLI, the definitions' models, the state store), so runner's own overhead is the
# difference between its time and the second's.
PYTHON_COPY = (
    "import sqlite3, sys\n"
    "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
    "db.execute('ATTACH DATABASE ? AS s', (sys.argv[2],))\n"
    f"db.execute('BEGIN'); db.execute('INSERT INTO {TABLE} SELECT * FROM s.{TABLE}'); db.execute('COMMIT')\n"
)
PYTHON_COPIES = {  # name: (what the script imports first, how it is described)
    "python": ("", "a Python script"),
    "python + libraries": (
        "import sqlalchemy, sqlalchemy.dialects.sqlite, pydantic, typer\n",
        "a Python script importing SQLAlchemy, pydantic and typer first",
    ),
}


def job_yaml(name: str, target: str, keys: bool = False, extra: str | None = None) -> str:
    write = f"{{table: {TABLE}, keys: [id]}}" if keys else f"{{table: {TABLE}}}"
    return (
        f"apiVersion: runner/v1\nkind: Job\nmetadata: {{name: {name}}}\nspec:\n"
        f"  source: src\n  target: {target}\n  batch_size: {BATCH_SIZE}\n  tasks:\n"
        f"    - name: {TABLE}\n      read: {{table: {TABLE}}}\n      write: {write}\n"
        + (f"      {extra}\n" if extra else "")
    )


def summary(runs: list[float]) -> dict[str, Any]:
    return {"median_s": round(statistics.median(runs), 3), "runs_s": [round(r, 3) for r in runs]}


def with_floor(res: dict[str, Any], floor: dict[str, Any]) -> dict[str, Any]:
    res["floor"] = floor
    res["ratio_to_floor"] = round(res["median_s"] / floor["median_s"], 2)
    return res


def remove_sqlite(path: Path) -> None:
    for suffix in ("", "-journal", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def pairs(text: str) -> dict[str, str]:
    return dict(line.split("\t", 1) for line in text.splitlines() if "\t" in line)


def pg_types(db: str) -> dict[str, str]:
    sql = (
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
        f"WHERE attrelid = 'public.{TABLE}'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
    )
    return pairs(run(["psql", *pg_args(db), "-AtqF", "\t", "-c", sql], what="psql (column types)").stdout)


def my_types(db: str) -> dict[str, str]:
    return pairs(
        mariadb(
            "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS "
            f"WHERE TABLE_SCHEMA = '{db}' AND TABLE_NAME = '{TABLE}' ORDER BY ORDINAL_POSITION"
        )
    )


def pg_indexes(db: str) -> int:
    return int(psql(f"SELECT count(*) FROM pg_index WHERE indrelid = 'public.{TABLE}'::regclass", db=db))


def my_indexes(db: str) -> int:
    sql = f"SELECT count(DISTINCT INDEX_NAME) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = '{db}'"
    return int(mariadb(f"{sql} AND TABLE_NAME = '{TABLE}'"))


def sqlite_indexes(path: Path) -> int:
    return int(sqlite3(path, f"SELECT count(*) FROM pragma_index_list('{TABLE}')"))


def sqlite_types(path: Path) -> dict[str, str]:
    return pairs(sqlite3(path, f"SELECT name || char(9) || type FROM pragma_table_info('{TABLE}')"))


def same_declared(ours: dict[str, str], theirs: dict[str, str]) -> bool:
    """SQLite keeps a declared type as written: `NUMERIC(12, 2)` and `NUMERIC(12,2)` are one
    type (the same affinity, precision and scale), so spaces are not compared."""

    def bare(types: dict[str, str]) -> dict[str, str]:
        return {name: "".join(declared.split()).upper() for name, declared in types.items()}

    return bare(ours) == bare(theirs)


# --- report ------------------------------------------------------------------------------------------


def yn(v: bool | None) -> str:
    return "n/a" if v is None else ("yes" if v else "NO")


def check_text(check: dict[str, Any]) -> str:
    if check["identical"]:
        return "yes"
    if not check["missing_in_dst"] and not check["differing"]:  # only rows the source no longer has
        return f"no ({check['extra_in_dst']:,} deleted rows kept)"
    counts = (
        f"missing {check['missing_in_dst']}, extra {check['extra_in_dst']}, differing {check['differing']}"
    )
    return f"NO ({counts} {check['differing_by_column'] or ''})"


def types_text(types: dict[str, str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in types.items())


def report_full(name: str, res: dict[str, Any]) -> list[str]:
    fl, last = res["floor"], res["runs"][-1]
    floor_name = "A floor" if name == "X" else "floor"
    runs = ", ".join(format(r["seconds"], ".2f") for r in res["runs"])
    floor_runs = ", ".join(format(r, ".2f") for r in fl["runs_s"])
    return [
        f"{name}  {SCENARIOS[name]}: {res['rows']:,} rows, median of {len(res['runs'])}",
        f"   runner     {res['median_s']:8.2f} s  {res['rows_per_s']:>10,} rows/s  "
        f"{res['ratio_to_floor']:6.2f}× {floor_name}  peak RSS {res['rss_mb']:.0f} MB  "
        f"identical: {check_text(res['check'])}",
        *(
            f"   {name:<10} {p['median_s']:8.2f} s  {round(res['rows'] / p['median_s']):>10,} rows/s  "
            f"{p['ratio_to_floor']:6.2f}× {floor_name}  peak RSS {p['rss_mb']:.0f} MB  "
            f"identical: {check_text(p['check'])}  (runs {', '.join(f'{r:.2f}' for r in p['runs_s'])}; "
            f"types kept: {yn(p['types_kept'])})"
            for name, p in res.get("peers", {}).items()
        ),
        f"   {floor_name:<10} {fl['median_s']:8.2f} s  ({fl['how']}; runs {floor_runs})",
        *(
            f"   {name:<18} {p['median_s']:.2f} s  {p['median_s'] / fl['median_s']:.2f}× floor  "
            f"(the same copy from {p['how']}; runs {', '.join(format(r, '.2f') for r in p['runs_s'])}): "
            f"runner {res['median_s'] / p['median_s']:.2f}× of it"
            for name, p in res.get("python_copies", {}).items()
        ),
        *(
            f"   MariaDB    {m['median_s']:8.2f} s  ({m['how']}; runs "
            f"{', '.join(format(r, '.2f') for r in m['runs_s'])}): runner "
            f"{res['median_s'] / m['median_s']:.2f}× MariaDB's own load"
            for m in ([res["mariadb_floor"]] if "mariadb_floor" in res else [])
        ),
        f"   runs       {runs} s (last: read {last['read_seconds']} s, write {last['write_seconds']} s)",
        f"   types      {types_text(res['check']['dst_types'])}  (compare.py)",
        f"   exact      {types_text(res['dst_exact_types'])}  kept: {yn(res['types_kept'])}",
        f"   indexes    {res['dst_indexes']} on the target table",
    ]


def report_b(res: dict[str, Any]) -> list[str]:
    fl = res["a_floor"]
    lines = [
        f"B  {SCENARIOS['B']}: {res['rows']:,} rows; A floor {fl['median_s']:.2f} s",
    ]
    for v, out in [*res["variants"].items(), *res.get("peers", {}).items()]:
        lines.append(f"   {B_LABELS[v]} — types kept: {yn(out['types_kept'])}")
        steps = [("initial", out["initial"])] + [(f"round {i}", r) for i, r in enumerate(out["rounds"], 1)]
        for what, r in steps:
            rss = "" if r["rss_mb"] is None else f"peak RSS {r['rss_mb']:.0f} MB  "
            line = f"     {what:<8} {r['seconds']:7.2f} s  {r['ratio_to_a_floor']:5.2f}× A floor  {rss}"
            if "rows_read" in r:
                line += (
                    f"read {r['rows_read']:,}  +{r['inserted']} ~{r['updated']} -{r['deleted']}  "
                    f"(read {r['read_seconds']} s, write {r['write_seconds']} s)  "
                )
            if "api_seconds" in r:
                line += (
                    f"(request → started {r['queue_s']:.3f} s; the API said ended after "
                    f"{r['api_seconds']:.2f} s; the run {r['runner_seconds']:.2f} s)  "
                )
            lines.append(line + f"identical: {check_text(r['check'])}")
        ratio = out["median_round_ratio_to_a_floor"]
        lines.append(f"     median round {out['median_round_s']:.2f} s = {ratio:.2f}× A floor")
    sling = res.get("peers", {}).get("sling")
    if sling:
        for v, out in res["variants"].items():
            if v != "hash":
                pairs_ = zip(out["rounds"], sling["rounds"], strict=True)
                wins = [r["seconds"] < s["seconds"] for r, s in pairs_]
                lines.append(f"   {v} faster than Sling's round: {' / '.join(yn(w) for w in wins)}")
    return lines


B_LABELS = {
    "watermark": "watermark (updated_at), keys [id], deletes: propagate — `runner run`",
    "warm": "watermark, the same job through the warm daemon (POST …/runs → the record's finished_at)",
    "hash": "hash, keys [id], deletes: propagate — `runner run`",
    "sling": "Sling 1.4.11, incremental: primary_key id, update_key updated_at (no deletes)",
    "dlt": "dlt + pyarrow, incremental on updated_at, merge on id (no deletes)",
}


def report_memory(res: dict[str, Any]) -> list[str]:
    a, b = (res[str(r)] for r in MEMORY_ROWS)
    return [
        "memory  scenario A at 1M and at 10M rows, each beside its floor (target at 10M: ≤ 1.1×)",
        *(
            f"   {r['rows']:>10,} rows  {r['median_s']:8.2f} s  {r['ratio_to_floor']:5.2f}× floor "
            f"({r['floor']['median_s']:.2f} s)  peak RSS {r['rss_mb']:.0f} MB  "
            f"identical: {check_text(r['check'])}"
            for r in (a, b)
        ),
        f"   ratio 10M / 1M peak RSS: {res['rss_ratio']:.2f} (target 0.8–1.2)",
    ]


def summary_table(results: dict[str, Any]) -> list[str]:
    head = "| scenario · tool | seconds (median) | rows/s | × floor | peak RSS MB | identical | types kept |"
    lines = ["", head, "|---|---|---|---|---|---|---|"]
    for name, res in results.items():
        if "error" in res:
            lines.append(f"| {name} | failed: {res['error'].splitlines()[0]} | | | | | |")
        elif name in ("A", "C", "X"):
            lines.append(
                f"| {name} | {res['median_s']:.2f} | {res['rows_per_s']:,} | {res['ratio_to_floor']:.2f}× "
                f"(floor {res['floor']['median_s']:.2f} s) | {res['rss_mb']:.0f} | "
                f"{yn(res['check']['identical'])} | {yn(res['types_kept'])} |"
            )
            if "mariadb_floor" in res:
                m = res["mariadb_floor"]
                lines.append(
                    f"| {name}: MariaDB's own load | {m['median_s']:.2f} | "
                    f"{round(res['rows'] / m['median_s']):,} | "
                    f"{m['median_s'] / res['floor']['median_s']:.2f}× A floor | — | — | — |"
                )
            for copy, p in res.get("python_copies", {}).items():
                lines.append(
                    f"| {name}: {copy} | {p['median_s']:.2f} | {round(res['rows'] / p['median_s']):,} | "
                    f"{p['median_s'] / res['floor']['median_s']:.2f}× | — | — | — |"
                )
            for peer, p in res.get("peers", {}).items():
                lines.append(
                    f"| {name} {peer} | {p['median_s']:.2f} | {round(res['rows'] / p['median_s']):,} | "
                    f"{p['ratio_to_floor']:.2f}× | {p['rss_mb']:.0f} | {check_text(p['check'])} | "
                    f"{yn(p['types_kept'])} |"
                )
        elif name == "B":
            for v, out in [*res["variants"].items(), *res.get("peers", {}).items()]:
                rounds = ", ".join(f"{r['seconds']:.2f}" for r in out["rounds"])
                checks = [r["check"] for r in [out["initial"], *out["rounds"]]]
                bad = next((c for c in reversed(checks) if not c["identical"]), None)
                lines.append(
                    f"| B {v} (rounds {rounds} s) | {out['median_round_s']:.2f} | — | "
                    f"{out['median_round_ratio_to_a_floor']:.2f}× A floor | {out['rss_mb']:.0f} | "
                    f"{'yes' if bad is None else check_text(bad)} | {yn(out['types_kept'])} |"
                )
        elif name == "memory":
            a, b = (res[str(r)] for r in MEMORY_ROWS)
            lines.append(
                f"| memory (A 1M / 10M) | {a['median_s']:.2f} / {b['median_s']:.2f} | — | "
                f"{a['ratio_to_floor']:.2f}× / {b['ratio_to_floor']:.2f}× | "
                f"{a['rss_mb']:.0f} / {b['rss_mb']:.0f} (×{res['rss_ratio']:.2f}) | "
                f"{yn(a['check']['identical'])} / {yn(b['check']['identical'])} | — |"
            )
    return lines


# --- main --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # no `choices`: argparse would check the empty list of `--memory` alone against them
    ap.add_argument("scenario", nargs="*", help="one or more of A B C X all (default: all)")
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows in events (default 1,000,000)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per full copy and floor (default 3)")
    ap.add_argument("--json", action="store_true", help="print one JSON document instead of the text report")
    ap.add_argument(
        "--memory", action="store_true", help="scenario A at 1M and 10M rows beside their floors: RSS ratio"
    )
    ap.add_argument(
        "--floor-pk", action="store_true", help="the floor's table keeps the source's primary key"
    )
    ap.add_argument(
        "--peers",
        action="store_true",
        help="run Sling and dlt beside runner in A and B (from bench/.peers: make bench-peers)",
    )
    ap.add_argument(
        "--warm",
        action="store_true",
        help="B also runs its watermark job through one `runner daemon --http`, each round a POST",
    )
    ap.add_argument("--timeout", type=float, default=3600, help="seconds allowed per command (default 3600)")
    args = ap.parse_args(argv)
    if unknown := [s for s in args.scenario if s not in (*SCENARIOS, "all")]:
        ap.error(f"unknown scenario(s) {', '.join(unknown)}: choose from A B C X all")
    if args.rows < 1000 or args.repeat < 1:
        ap.error("--rows must be at least 1000 and --repeat at least 1")
    everything = "all" in args.scenario or (not args.scenario and not args.memory)
    chosen = list(SCENARIOS) if everything else [s for s in SCENARIOS if s in args.scenario]
    chosen += ["memory"] if args.memory else []

    # Cleanup runs in the finally below, whichever way the harness is stopped (a background job
    # started by a script has SIGINT ignored: restore it).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(129))
    try:
        preflight(chosen, with_peers=args.peers and any(s in ("A", "B") for s in chosen))
    except BenchError as exc:
        log(str(exc))
        return 2

    bench = Bench(
        args.rows, args.repeat, args.timeout, args.floor_pk, with_peers=args.peers, with_warm=args.warm
    )
    results: dict[str, Any] = {}
    failed = False
    try:
        for name in chosen:
            log(f"scenario {name} …")
            t0 = time.perf_counter()
            try:
                fn = bench.memory if name == "memory" else getattr(bench, f"scenario_{name.lower()}")
                res = fn()
            except BenchError as exc:
                failed = True
                res = {"error": str(exc)}
                log(f"scenario {name} failed: {exc}")
            results[name] = res
            log(f"scenario {name} done in {time.perf_counter() - t0:.0f} s")
            if not args.json and "error" not in res:
                text = (
                    report_b(res)
                    if name == "B"
                    else report_memory(res)
                    if name == "memory"
                    else report_full(name, res)
                )
                print("\n".join([*text, ""]), flush=True)
            # Sources are shared by A and X only; drop them once no later scenario reads them.
            later = chosen[chosen.index(name) + 1 :]
            if not any(s in ("A", "B", "X") for s in later):
                for db in list(bench.sources.values()):
                    bench.drop_pg(db)
    except KeyboardInterrupt:
        log("interrupted: dropping what was created …")
        return 130
    finally:
        bench.close()
    if args.json:
        meta = {"rows": args.rows, "repeat": args.repeat, "batch_size": BATCH_SIZE, "peers": args.peers}
        print(json.dumps(meta | {"results": results}))
    else:
        print("\n".join(summary_table(results)))
        for name, res in results.items():
            if "error" in res:
                print(f"\n{name} failed:\n{res['error']}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
