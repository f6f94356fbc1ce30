"""Files benchmark (issue 16): the shared `events` workload as files, loaded by runner beside a
floor measured in the same run on the same file.

- CSV -> PostgreSQL: `psql \\copy events FROM file CSV HEADER` into a fresh table (the floor),
  then runner twice into fresh databases: a `sync` job whose task reads the file (stated
  columns, key `id`) and a `load_folder` job (inferred columns, keyed by file and row).
- PostgreSQL -> Parquet: pyarrow writing the table's rows as zstd Parquet from `psql \\copy …
  TO STDOUT CSV` (the floor), beside a runner `sync` job from the table into a files folder.
- Parquet read: pyarrow's own read of the file into Python rows (the floor), beside runner's
  files source reading the same file into its canonical rows.
- Memory: runner reading a ~230 MB CSV whole (peak RSS, VmHWM).
- With `--peers`: Sling 1.4.11 (`make bench-peers` installs it in bench/.peers) on the same
  files in the same run, after runner: the CSV into a fresh table (the floor table's column
  types given as `--columns`) and the floor's table into one Parquet file, each set against the
  same floor and checked (row count, sums of id, user_id and amount) against its source.

Every figure is a wall-clock time in seconds with the process's peak RSS; the machine is shared,
so compare the ratios of one run, not seconds across runs. Run with the project's venv:
`make bench-files` (or `.venv/bin/python bench/files.py --rows 1000000`), `make bench-files-peers`
for `--peers`.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import peers  # bench/peers.py: where the peers' environment keeps Sling's binary

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "bench"
BIN = Path(sys.executable).parent
PG_HOST = os.environ.get("BENCH_PG_HOST", "127.0.0.1")
PG_PORT = os.environ.get("BENCH_PG_PORT", "5432")
PG_USER = os.environ.get("BENCH_PG_USER", "postgres")
PEERS_VENV = Path(os.environ.get("BENCH_PEERS_VENV", REPO / "bench" / ".peers"))
NAMES = ["id", "user_id", "kind", "amount", "note", "created_at", "updated_at"]
COLUMNS = {
    "id": "bigint",
    "user_id": "integer",
    "kind": "varchar(16)",
    "amount": "decimal(12,2)",
    "note": "text",
    "created_at": "timestamp",
    "updated_at": "timestamp",
}


def log(message: str) -> None:
    print(f"[files] {message}", file=sys.stderr, flush=True)


def workload() -> Any:
    """The shared generator's module (its `make_row`: the same rows as `gen_events.py create`)."""
    spec = importlib.util.spec_from_file_location("gen_events", SHARED / "gen_events.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_files(folder: Path, rows: int) -> tuple[Path, Path]:
    """events.csv and events.parquet holding `gen_events.py create`'s rows (seed 42)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    gen = workload()
    rng = random.Random(42)
    csv_path, parquet_path = folder / "csv/events.csv", folder / "parquet/events.parquet"
    csv_path.parent.mkdir(parents=True)
    parquet_path.parent.mkdir(parents=True)
    schema = pa.schema(
        [
            ("id", pa.int64()),
            ("user_id", pa.int32()),
            ("kind", pa.string()),
            ("amount", pa.decimal128(12, 2)),
            ("note", pa.string()),
            ("created_at", pa.timestamp("us")),
            ("updated_at", pa.timestamp("us")),
        ]
    )
    with open(csv_path, "w", newline="", encoding="utf-8") as f, pq.ParquetWriter(parquet_path, schema) as pw:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(NAMES)
        chunk: list[tuple] = []
        for i in range(1, rows + 1):
            chunk.append(gen.make_row(rng, i))
            if len(chunk) == 100_000 or i == rows:
                out.writerows(
                    (
                        r[0],
                        r[1],
                        r[2],
                        r[3],
                        "" if r[4] is None else r[4],
                        r[5].isoformat(sep=" "),
                        r[6].isoformat(sep=" "),
                    )
                    for r in chunk
                )
                pw.write_table(
                    pa.Table.from_pylist([dict(zip(NAMES, r, strict=True)) for r in chunk], schema)
                )
                chunk = []
    return csv_path, parquet_path


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int, str]:
    """Seconds and peak RSS (MB, from /usr/bin/time) of a command, and its output."""
    started = time.perf_counter()
    done = subprocess.run(
        ["/usr/bin/time", "-f", "MAXRSS %M", *cmd], capture_output=True, text=True, env=env, check=False
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} failed: {done.stderr[-2000:]}")
    rss = next(int(line.split()[1]) for line in done.stderr.splitlines() if line.startswith("MAXRSS"))
    return round(seconds, 2), rss // 1024, done.stdout


def psql(sql: str, db: str = "postgres") -> str:
    return subprocess.run(
        [
            "psql",
            "-h",
            PG_HOST,
            "-p",
            PG_PORT,
            "-U",
            PG_USER,
            "-d",
            db,
            "-v",
            "ON_ERROR_STOP=1",
            "-qAt",
            "-c",
            sql,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def fresh_db(made: list[str]) -> str:
    name = f"bench_files_{uuid.uuid4().hex[:8]}"
    psql(f'CREATE DATABASE "{name}"')
    made.append(name)
    return name


def pg_url(db: str) -> str:
    return f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{db}"


def floor_copy(csv_path: Path, made: list[str]) -> dict[str, Any]:
    db = fresh_db(made)
    gen = workload()
    psql(gen.DDL_PG, db)
    copy = f"\\copy events FROM '{csv_path}' WITH (FORMAT csv, HEADER true)"
    seconds, rss, _ = timed(["psql", "-h", PG_HOST, "-p", PG_PORT, "-U", PG_USER, "-d", db, "-c", copy])
    rows = int(psql("SELECT count(*) FROM events", db))
    return {"seconds": seconds, "peak_rss_mb": rss, "rows": rows, "db": db}


def definitions(defs: Path, files: str, folder: Path, db: str) -> Path:
    """A definitions folder of its own, `defs`: a files connection named `files` on `folder`
    and `pg` on the database `db`, and an empty `jobs.d/`."""
    (defs / "connections.d").mkdir(parents=True)
    (defs / "jobs.d").mkdir()
    (defs / "connections.d/c.yaml").write_text(
        f"apiVersion: runner/v1\nkind: Connection\nmetadata: {{name: {files}}}\n"
        f"spec: {{type: files, path: {folder}}}\n---\n"
        "apiVersion: runner/v1\nkind: Connection\nmetadata: {name: pg}\n"
        f"spec: {{type: postgresql, url: '{pg_url(db)}'}}\n"
    )
    return defs


def runner_load(folder: Path, job: str, made: list[str], work: Path) -> dict[str, Any]:
    """Apply and run one job from a definitions folder of its own into a fresh database."""
    db = fresh_db(made)
    defs = definitions(work / f"defs-{job}", "inbox", folder, db)
    if job == "sync":
        spec = {
            "source": "inbox",
            "target": "pg",
            "tasks": [
                {
                    "name": "events",
                    "read": {"files": "csv/events.csv", "format": "csv", "columns": COLUMNS},
                    "write": {"table": "events", "keys": ["id"]},
                }
            ],
        }
    else:
        spec = {
            "type": "load_folder",
            "source": "inbox",
            "target": "pg",
            "files": "csv/*.csv",
            "format": "csv",
        }
    (defs / "jobs.d/j.yaml").write_text(
        f"apiVersion: runner/v1\nkind: Job\nmetadata: {{name: {job}}}\nspec: {json.dumps(spec)}\n"
    )
    runner = str(BIN / "runner")
    subprocess.run([runner, "--dir", str(defs), "apply"], check=True, capture_output=True)
    seconds, rss, _ = timed([runner, "--dir", str(defs), "run", job])
    return {"seconds": seconds, "peak_rss_mb": rss, "rows": int(psql("SELECT count(*) FROM events", db))}


# The floor table's column types in Sling's names (`--columns`), so that Sling need not infer them.
SLING_COLUMNS = {
    "id": "bigint",
    "user_id": "integer",
    "kind": "string(16)",
    "amount": "decimal(12,2)",
    "note": "text",
    "created_at": "timestamp",
    "updated_at": "timestamp",
}
# What must be equal between a table and its copy: rows, and sums over a few columns.
CHECKSUM = "SELECT count(*), sum(id), sum(user_id), sum(amount)::numeric(20,2) FROM events"
NULL_NOTES = "SELECT count(*) FILTER (WHERE note IS NULL) FROM events"


def sling(
    binary: Path, work: Path, db: str, args: list[str], extra: dict[str, str] | None = None
) -> tuple[float, int, str]:
    """One timed `sling run`; its connection `PG` is an environment variable holding the URL and
    every file it writes (home, temporary files) stays in a folder of its own under `work`."""
    home = work / f"sling-{uuid.uuid4().hex[:6]}"
    (home / "tmp").mkdir(parents=True)
    env = (
        os.environ
        | {
            "HOME": str(home),
            "TMPDIR": str(home / "tmp"),
            "SLING_HOME_DIR": str(home),
            "SLING_TEMP_DIR": str(home / "tmp"),
            "PG": f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{db}?sslmode=disable",
        }
        | (extra or {})
    )
    return timed([str(binary), "run", *args], env=env)


def sling_csv_load(
    binary: Path, csv_path: Path, floor_db: str, made: list[str], work: Path
) -> dict[str, Any]:
    """Sling: the CSV into a fresh table of a fresh database, the floor's column types stated;
    the types it made and a checksum against the floor's table (the same file through COPY)."""
    db = fresh_db(made)
    seconds, rss, _ = sling(
        binary,
        work,
        db,
        [
            "--src-stream",
            f"file://{csv_path}",
            "--tgt-conn",
            "PG",
            "--tgt-object",
            "public.events",
            "--mode",
            "full-refresh",
            "--columns",
            json.dumps([{"name": k, "type": v} for k, v in SLING_COLUMNS.items()]),
        ],
    )
    types = psql(
        "SELECT string_agg(column_name || ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attnum)"
        " FROM information_schema.columns c JOIN pg_attribute a"
        " ON a.attrelid = 'public.events'::regclass AND a.attname = c.column_name"
        " WHERE c.table_schema = 'public' AND c.table_name = 'events'",
        db,
    ).strip()
    got, want = psql(CHECKSUM, db).strip(), psql(CHECKSUM, floor_db).strip()
    return {
        "seconds": seconds,
        "peak_rss_mb": rss,
        "rows": int(got.split("|")[0]),
        "checksum": got,  # rows|sum(id)|sum(user_id)|sum(amount)
        "equal_to_floor": got == want,
        # The CSV's empty cells: NULL through COPY's CSV format; how many Sling made NULL.
        "null_notes": {"sling": int(psql(NULL_NOTES, db)), "floor": int(psql(NULL_NOTES, floor_db))},
        "types": types,
    }


def csv_side_by_side(work: Path, csv_path: Path, made: list[str], binary: Path | None) -> dict[str, Any]:
    log("floor: psql \\copy …")
    floor = floor_copy(csv_path, made)
    floor_db = floor.pop("db")
    log("runner: sync job reading the CSV …")
    sync = runner_load(work / "in", "sync", made, work)
    log("runner: load_folder job …")
    load = runner_load(work / "in", "load_folder", made, work)
    figures = {
        "load_average": os.getloadavg()[0],
        "psql_copy": floor,
        "runner_sync": sync | {"ratio": round(sync["seconds"] / floor["seconds"], 2)},
        "runner_load_folder": load | {"ratio": round(load["seconds"] / floor["seconds"], 2)},
    }
    if binary:
        log("Sling: the CSV into a fresh table …")
        peer = sling_csv_load(binary, csv_path, floor_db, made, work)
        figures["sling"] = peer | {"ratio": round(peer["seconds"] / floor["seconds"], 2)}
    return figures


PYARROW_READ = """
import sys, pyarrow.parquet as pq
rows = 0
for batch in pq.ParquetFile(sys.argv[1]).iter_batches(batch_size=10_000):
    rows += len(batch.to_pylist())
print(rows)
"""

RUNNER_READ = """
import sys
from pathlib import Path
from runner.connectors.files.location import LocalFolder
from runner.connectors.files.reading import FileRead, FileSource
path = Path(sys.argv[1])
read = FileRead(files=path.name, format=sys.argv[2], columns=None if sys.argv[2] == "parquet" else {columns})
print(sum(len(b) for b in FileSource(LocalFolder(path.parent)).read(read, 10_000).batches))
""".replace("{columns}", repr(COLUMNS))


def read_side_by_side(parquet_path: Path) -> dict[str, Any]:
    py = sys.executable
    floor = timed([py, "-c", PYARROW_READ, str(parquet_path)])
    ours = timed([py, "-c", RUNNER_READ, str(parquet_path), "parquet"])
    return {
        "pyarrow": {"seconds": floor[0], "peak_rss_mb": floor[1], "rows": int(floor[2])},
        "runner": {"seconds": ours[0], "peak_rss_mb": ours[1], "rows": int(ours[2])},
        "ratio": round(ours[0] / floor[0], 2),
    }


PYARROW_WRITE = """
import sys, pyarrow as pa, pyarrow.csv as pcsv, pyarrow.parquet as pq
schema = pa.schema([("id", pa.int64()), ("user_id", pa.int32()), ("kind", pa.string()),
    ("amount", pa.decimal128(12, 2)), ("note", pa.string()), ("created_at", pa.timestamp("us")),
    ("updated_at", pa.timestamp("us"))])
reader = pcsv.open_csv(sys.stdin.buffer, read_options=pcsv.ReadOptions(column_names=schema.names),
    convert_options=pcsv.ConvertOptions(column_types=schema, strings_can_be_null=True,
        quoted_strings_can_be_null=False))
rows = 0
with pq.ParquetWriter(sys.argv[1], schema, compression="zstd") as out:
    for batch in reader:
        out.write_batch(batch)
        rows += batch.num_rows
print(rows)
"""


def sling_parquet_dump(binary: Path, db: str, out: Path, work: Path) -> dict[str, Any]:
    """Sling: the table into one Parquet file, checked (rows, sum of id) against the table."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    target = out / "sling.parquet"
    seconds, rss, _ = sling(
        binary,
        work,
        db,
        ["--src-conn", "PG", "--src-stream", "public.events", "--tgt-object", f"file://{target}"],
        # Sling's default hands Parquet to a DuckDB it downloads (no network here): its own writer.
        extra={"SLING_DUCKDB_COMPUTE": "false"},
    )
    files = sorted(target.rglob("*.parquet")) if target.is_dir() else [target]
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    ids = sum(pc.sum(pq.read_table(f, columns=["id"])["id"]).as_py() or 0 for f in files)
    want_rows, want_ids = psql("SELECT count(*), sum(id) FROM events", db).strip().split("|")
    schema = pq.ParquetFile(files[0]).schema_arrow
    return {
        "seconds": seconds,
        "peak_rss_mb": rss,
        "rows": rows,
        "files": len(files),
        "mb": sum(f.stat().st_size for f in files) >> 20,
        "sum_id": ids,
        "equal_to_table": rows == int(want_rows) and ids == int(want_ids),
        "types": ", ".join(f"{f.name} {f.type}" for f in schema),
    }


def parquet_write_side_by_side(
    csv_path: Path, made: list[str], work: Path, batch_size: int, binary: Path | None
) -> dict[str, Any]:
    """PostgreSQL -> Parquet: runner's sync job into a files folder beside pyarrow writing the
    same rows as zstd Parquet from `psql \\copy … TO STDOUT` (C++ end to end: the floor)."""
    db = fresh_db(made)
    psql(workload().DDL_PG, db)
    psql(f"\\copy events FROM '{csv_path}' WITH (FORMAT csv, HEADER true)", db)
    psql("VACUUM ANALYZE events", db)
    out = work / "parquet-out"
    out.mkdir()
    copy = "\\copy events TO STDOUT WITH (FORMAT csv)"
    pipe = (
        f'psql -h {PG_HOST} -p {PG_PORT} -U {PG_USER} -d {db} -c "{copy}" | '
        f"{sys.executable} -c '{PYARROW_WRITE}' {out / 'floor.parquet'}"
    )
    log("Parquet write: pyarrow from psql \\copy …")
    floor = timed(["sh", "-c", pipe])
    defs = definitions(work / "defs-parquet", "out", out, db)
    spec = {
        "source": "pg",
        "target": "out",
        "batch_size": batch_size,
        "tasks": [
            {
                "name": "events",
                "read": {"table": "events"},
                "write": {"file": "runner/{{ part }}.parquet", "format": "parquet", "keys": ["id"]},
            }
        ],
    }
    (defs / "jobs.d/j.yaml").write_text(
        f"apiVersion: runner/v1\nkind: Job\nmetadata: {{name: dump}}\nspec: {json.dumps(spec)}\n"
    )
    runner = str(BIN / "runner")
    subprocess.run([runner, "--dir", str(defs), "apply"], check=True, capture_output=True)
    log("Parquet write: runner …")
    ours = timed([runner, "--dir", str(defs), "run", "dump"])
    import pyarrow.parquet as pq

    written = sum(pq.ParquetFile(f).metadata.num_rows for f in (out / "runner").glob("*.parquet"))
    figures = {
        "load_average": os.getloadavg()[0],
        "pyarrow": {"seconds": floor[0], "peak_rss_mb": floor[1], "rows": int(floor[2])},
        "runner": {"seconds": ours[0], "peak_rss_mb": ours[1], "rows": written, "batch_size": batch_size},
        "ratio": round(ours[0] / floor[0], 2),
    }
    if binary:
        log("Parquet write: Sling …")
        peer = sling_parquet_dump(binary, db, out, work)
        figures["sling"] = peer | {"ratio": round(peer["seconds"] / floor[0], 2)}
    return figures


def big_csv_memory(work: Path, rows: int) -> dict[str, Any]:
    path = work / "big/big.csv"
    path.parent.mkdir()
    stamp = "2024-01-01 10:00:00"
    line = "{i},{u},click,{i}.25,some note text that pads the line a little," + f"{stamp},{stamp}\n"
    with open(path, "w") as f:
        f.write(",".join(NAMES) + "\n")
        for start in range(1, rows + 1, 100_000):
            f.write(
                "".join(line.format(i=i, u=i % 1000) for i in range(start, min(start + 100_000, rows + 1)))
            )
    seconds, rss, out = timed([sys.executable, "-c", RUNNER_READ, str(path), "csv"])
    size = path.stat().st_size >> 20
    path.unlink()
    return {"file_mb": size, "rows": int(out), "seconds": seconds, "peak_rss_mb": rss}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--big-rows", type=int, default=2_500_000, help="rows of the memory test's CSV")
    ap.add_argument("--out", type=Path, help="also write the figures here as JSON")
    ap.add_argument("--batch-size", type=int, default=10_000, help="the Parquet write job's batch_size")
    ap.add_argument(
        "--only",
        choices=["csv", "parquet", "parquet-write", "memory"],
        action="append",
        help="only these parts (repeatable)",
    )
    ap.add_argument(
        "--peers",
        action="store_true",
        help="also run Sling on the same files (CSV -> PostgreSQL, PostgreSQL -> Parquet) if "
        "`make bench-peers` installed it in bench/.peers (BENCH_PEERS_VENV names another)",
    )
    args = ap.parse_args()
    binary = peers.sling_binary(PEERS_VENV) if args.peers else None
    if args.peers and binary is None:
        log(f"Sling is NOT installed in {PEERS_VENV} (`make bench-peers` installs it): running without it")
    work = Path(tempfile.mkdtemp(prefix="bench-files-"))
    made: list[str] = []
    figures: dict[str, Any] = {"rows": args.rows}
    if args.peers:
        figures["sling"] = "Sling 1.4.11" if binary else f"not installed in {PEERS_VENV}"
    try:
        log(f"writing {args.rows:,} events as CSV and Parquet …")
        csv_path, parquet_path = write_files(work / "in", args.rows)
        figures["csv_mb"] = csv_path.stat().st_size >> 20
        figures["parquet_mb"] = parquet_path.stat().st_size >> 20
        parts = set(args.only or ["csv", "parquet", "parquet-write", "memory"])
        if "csv" in parts:
            figures["csv_to_postgresql"] = csv_side_by_side(work, csv_path, made, binary)
        if "parquet" in parts:
            log("Parquet read: pyarrow, then runner …")
            figures["parquet_read"] = read_side_by_side(parquet_path)
        if "parquet-write" in parts:
            figures["postgresql_to_parquet"] = parquet_write_side_by_side(
                csv_path, made, work, args.batch_size, binary
            )
        if "memory" in parts:
            log(f"memory: runner reading a CSV of {args.big_rows:,} rows …")
            figures["big_csv_read"] = big_csv_memory(work, args.big_rows)
    finally:
        for db in made:
            psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(figures, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
