#!/usr/bin/env python3
"""An API into PostgreSQL: 100k records over 1,000 pages from a local REST API, by runner and,
in the same run, by dlt's REST API source when the peers' environment has it.

    python bench/http_api.py [--records 100000] [--page 100] [--repeat 1] [--json]

- The API: `tests/http/server.py` as a process of its own on 127.0.0.1 (uvicorn, httptools),
  a bearer token required, records of five values (one nested two objects deep, a list beside
  it) served 100 a page by offset and limit (1,001 requests: the last page is empty).
- runner: a job reading `/offset` (`paginate: {style: offset, limit: 100}`), five columns by
  JSON path (the city flattened from `customer.address.city`), `keys: [id]`, into a fresh
  PostgreSQL database; `runner run` is a subprocess under /usr/bin/time (peak RSS), Python's
  start-up and imports included.
- dlt 1.31 (`bench/.peers`, `make bench-peers` installs it): `rest_api_source` with the same
  paginator (`offset`, limit 100), bearer auth and `primary_key: id`, `write_disposition:
  merge`, into a fresh database of its own; its defaults flatten nested objects into columns
  and lists into a child table. Also a subprocess under /usr/bin/time.

Each target is checked to hold `--records` rows after each run. Prints wall seconds, records/s
and peak RSS (MB), the median of `--repeat` runs.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(os.environ.get("BENCH_VENV", REPO / ".venv")) / "bin"
PEERS = Path(os.environ.get("BENCH_PEERS_VENV", REPO / "bench" / ".peers"))
PYTHON, RUNNER = VENV_BIN / "python", VENV_BIN / "runner"
TIME = "/usr/bin/time"
PG = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
sys.path.insert(0, str(REPO))
from tests.http.server import TOKEN  # noqa: E402 - the repository's root is on the path first

DLT = """
import json, sys
import dlt
from dlt.sources.rest_api import rest_api_source

base, url, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
source = rest_api_source({
    "client": {
        "base_url": base,
        "auth": {"type": "bearer", "token": dlt.secrets["api_token"]},
        "paginator": {"type": "offset", "limit": limit, "offset_param": "offset",
                      "limit_param": "limit", "total_path": None},
    },
    "resources": [{
        "name": "items",
        "endpoint": {"path": "offset", "data_selector": "$"},
        "primary_key": "id",
        "write_disposition": "merge",
    }],
})
pipeline = dlt.pipeline(pipeline_name="bench_http", destination=dlt.destinations.postgres(url),
                        dataset_name="dlt_http", pipelines_dir=sys.argv[4])
pipeline.run(source)
print(json.dumps(pipeline.last_trace.last_normalize_info.row_counts))
"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def timed(cmd: list[str], folder: Path, env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MB) and stdout of one command under /usr/bin/time."""
    rss = folder / "time.out"
    started = time.perf_counter()
    proc = subprocess.run([TIME, "-f", "%M", "-o", str(rss), *cmd], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({proc.returncode}):\n{(proc.stderr or proc.stdout)[-3000:]}")
    return seconds, int(rss.read_text().split()[-1]) / 1024, proc.stdout


def psql(db: str, sql: str) -> str:
    out = subprocess.run(
        [str(PYTHON), "-c", "import psycopg,sys; c=psycopg.connect(sys.argv[1], autocommit=True); "
         "r=c.execute(sys.argv[2]); print(r.fetchone()[0] if r.description else '')", f"{PG}/{db}", sql],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return out.stdout.strip()


def fresh_db(tag: str) -> str:
    name = f"runner_bench_http_{tag}_{uuid.uuid4().hex[:6]}"
    psql("postgres", f'CREATE DATABASE "{name}"')
    return name


def drop_db(name: str) -> None:
    psql("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_api(records: int) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [str(PYTHON), "-m", "tests.http.server", str(port), str(records)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:  # wait until the server listens
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, base
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise SystemExit("the API did not start") from None
            time.sleep(0.2)


def runner_run(base: str, page: int, folder: Path) -> tuple[float, float, str]:
    db = fresh_db("runner")
    try:
        project = folder / "runner"
        (project / "connections.d").mkdir(parents=True)
        (project / "jobs.d").mkdir()
        api = {
            "type": "http",
            "base_url": f"{base}/api",
            "auth": {"type": "bearer", "token": "${env:API_TOKEN}"},
        }
        pg = {"type": "postgresql", "url": f"postgresql+psycopg://{PG.split('://', 1)[1]}/{db}"}
        head = "apiVersion: runner/v1\nkind: Connection\nmetadata: {name: %s}\nspec: %s\n"
        (project / "connections.d" / "c.yaml").write_text(
            head % ("api", json.dumps(api)) + "---\n" + head % ("pg", json.dumps(pg))
        )
        task = {
            "name": "items",
            "read": {
                "path": "/offset",
                "paginate": {"style": "offset", "limit": page},
                "columns": {
                    "id": "bigint",
                    "name": "text",
                    "price": "decimal(12,2)",
                    "updated_at": "timestamptz",
                    "city": {"path": "customer.address.city", "type": "text"},
                },
            },
            "write": {"table": "items", "keys": ["id"]},
        }
        job = {"source": "api", "target": "pg", "tasks": [task]}
        (project / "jobs.d" / "pull.yaml").write_text(
            f"apiVersion: runner/v1\nkind: Job\nmetadata: {{name: pull}}\nspec: {json.dumps(job)}\n"
        )
        env = {**os.environ, "API_TOKEN": TOKEN}
        subprocess.run(
            [str(RUNNER), "--dir", str(project), "apply"], check=True, capture_output=True, env=env
        )
        seconds, mb, _ = timed([str(RUNNER), "--dir", str(project), "run", "pull"], folder, env)
        return seconds, mb, psql(db, "SELECT count(*) FROM items")
    finally:
        drop_db(db)


def dlt_run(base: str, page: int, folder: Path) -> tuple[float, float, str]:
    db = fresh_db("dlt")
    try:
        work = folder / "dlt"
        (work / ".dlt").mkdir(parents=True)
        (work / ".dlt" / "secrets.toml").write_text(f'api_token = "{TOKEN}"\n')
        script = work / "pull.py"
        script.write_text(DLT)
        env = {
            **os.environ,
            "HOME": str(work),
            "DLT_DATA_DIR": str(work / "data"),
            "RUNTIME__DLTHUB_TELEMETRY": "false",
        }
        url = f"postgresql://postgres:trust@{PG.split('://', 1)[1].split('@', 1)[-1]}/{db}"
        cmd = [
            str(PEERS / "bin" / "python"),
            str(script),
            f"{base}/api",
            url,
            str(page),
            str(work / "pipelines"),
        ]
        started = time.perf_counter()
        rss = folder / "time.out"
        proc = subprocess.run(
            [TIME, "-f", "%M", "-o", str(rss), *cmd], capture_output=True, text=True, env=env, cwd=work
        )
        seconds = time.perf_counter() - started
        if proc.returncode != 0:
            raise SystemExit(f"dlt failed:\n{(proc.stderr or proc.stdout)[-3000:]}")
        return (
            seconds,
            int(rss.read_text().split()[-1]) / 1024,
            psql(db, "SELECT count(*) FROM dlt_http.items"),
        )
    finally:
        drop_db(db)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--page", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    has_dlt = any(PEERS.glob("lib/python3*/site-packages/dlt/__init__.py"))
    if not has_dlt:
        log(f"dlt is not in {PEERS} (`make bench-peers` installs it): runner alone")
    api, base = start_api(args.records)
    results: dict[str, list[tuple[float, float]]] = {"runner": [], **({"dlt": []} if has_dlt else {})}
    try:
        for n in range(args.repeat):
            for name, run in (("runner", runner_run), ("dlt", dlt_run)):
                if name not in results:
                    continue
                with tempfile.TemporaryDirectory(prefix=f"bench-http-{name}-") as tmp:
                    seconds, mb, count = run(base, args.page, Path(tmp))
                if int(count) != args.records:
                    raise SystemExit(f"{name}: the target holds {count} rows, not {args.records}")
                results[name].append((seconds, mb))
                log(
                    f"round {n + 1}: {name}: {seconds:.1f} s, "
                    f"{args.records / seconds:,.0f} records/s, {mb:.0f} MB"
                )
    finally:
        api.terminate()
        api.wait(10)
    summary: dict[str, Any] = {}
    for name, runs in results.items():
        seconds = statistics.median(s for s, _ in runs)
        mb = statistics.median(m for _, m in runs)
        summary[name] = {
            "seconds": round(seconds, 2),
            "records_per_s": round(args.records / seconds),
            "peak_rss_mb": round(mb),
        }
    if args.json:
        print(json.dumps(summary))
        return
    pages = -(-args.records // args.page)
    print(
        f"{args.records:,} records over {pages:,} pages of {args.page} into PostgreSQL "
        f"(median of {args.repeat})"
    )
    print(f"{'':8} {'wall s':>8} {'records/s':>10} {'peak RSS MB':>12}")
    for name, row in summary.items():
        print(f"{name:8} {row['seconds']:>8.1f} {row['records_per_s']:>10,} {row['peak_rss_mb']:>12}")


if __name__ == "__main__":
    main()
