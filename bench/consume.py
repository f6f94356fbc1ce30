#!/usr/bin/env python3
"""Consuming speed: messages of the shared `events` workload consumed by runner from RabbitMQ
into PostgreSQL, beside a floor measured in the same run.

    python bench/consume.py [--messages 100000] [--repeat 3] [--json]

- The messages: the `events` rows of `gen_events.py` (its own generator, imported), each the
  JSON object runner publishes for a row (decimals and timestamps as strings), put in a queue of
  this invocation before each timed run (not timed), checked to be there.
- runner: a job consuming the queue (`changes: {strategy: messages}`, `keys: [id]`,
  `batch_size: 10000`, the 7 columns mapped with their types, `max_wait: 5s`) into a PostgreSQL
  table `events` (the workload's DDL); each timed `runner run consume` is a subprocess under
  `/usr/bin/time` (peak RSS), Python's start-up and imports included.
- The floor: a bare loop in a subprocess of the same venv doing the same work with the clients
  runner uses: pika's blocking `consume` with a prefetch of 10,000, each body parsed with `json`
  into the column types (Decimal, datetime), batches of 10,000 COPYed by psycopg into a staging
  table and upserted (`INSERT … ON CONFLICT (id) DO UPDATE`), committed, then acknowledged
  (`basic_ack`, `multiple`) — runner's order — ending after 5 s without a message, as runner's
  (1 s ended the floor early under a load of 27 on two cores).
- After each run the table must hold exactly `--messages` rows and the queue none.

Prints messages/s (messages / wall seconds of the whole process), the ratio to the floor and
peak RSS, the median of `--repeat` runs alternating runner and floor. RabbitMQ at
127.0.0.1:5672 (guest), PostgreSQL at 127.0.0.1:5432 (user postgres, trust): a database of its
own, dropped at the end, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "bench"
VENV_BIN = Path(os.environ.get("BENCH_VENV", REPO / ".venv")) / "bin"
PYTHON, RUNNER = VENV_BIN / "python", VENV_BIN / "runner"
TIME = "/usr/bin/time"
ENV = {k: v for k, v in os.environ.items() if k not in ("RUNNER_DIR", "RUNNER_STATE", "RUNNER_HISTORY")}
BATCH_SIZE = 10_000
QUIET = 5.0  # seconds without a message that end a run: the queue is drained
PG = "postgresql://postgres@127.0.0.1:5432/{db}"
COLUMNS = {
    "id": "bigint",
    "user_id": "integer",
    "kind": "varchar(16)",
    "amount": "decimal(12,2)",
    "note": "text",
    "created_at": "timestamp",
    "updated_at": "timestamp",
}
UPSERT = "INSERT INTO events SELECT * FROM stage ON CONFLICT (id) DO UPDATE SET " + ", ".join(
    f"{c} = EXCLUDED.{c}" for c in COLUMNS if c != "id"
)


class BenchError(Exception):
    """A failure of the harness or of a command it ran."""


def log(msg: str) -> None:
    print(f"consume: {msg}", file=sys.stderr, flush=True)


# --- the floor: a bare consume-and-COPY loop (run as `consume.py floor QUEUE DB`) -------------------


def floor(queue: str, db: str) -> int:
    import pika
    import psycopg

    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", 5672))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=BATCH_SIZE)
    pg = psycopg.connect(PG.format(db=db))
    with pg.cursor() as cur:
        cur.execute("CREATE TEMP TABLE stage (LIKE events) ON COMMIT DELETE ROWS")
    pg.commit()
    batch: list[tuple[Any, ...]] = []
    last = None
    done = 0

    def flush() -> None:
        with pg.cursor() as cur:
            with cur.copy("COPY stage FROM STDIN") as copy:
                for row in batch:
                    copy.write_row(row)
            cur.execute(UPSERT)
        pg.commit()
        channel.basic_ack(last, multiple=True)  # after the commit, as runner
        batch.clear()

    for method, _, body in channel.consume(queue, inactivity_timeout=QUIET):
        if method is None:
            break
        d = json.loads(body)
        amount = d["amount"]
        batch.append(
            (
                d["id"],
                d["user_id"],
                d["kind"],
                Decimal(amount) if amount is not None else None,
                d["note"],
                dt.datetime.fromisoformat(d["created_at"]),
                dt.datetime.fromisoformat(d["updated_at"]),
            )
        )
        last = method.delivery_tag
        done += 1
        if len(batch) == BATCH_SIZE:
            flush()
    if batch:
        flush()
    pg.close()
    connection.close()
    return done


# --- the harness ----------------------------------------------------------------------------------


def messages(count: int) -> list[bytes]:
    """The workload's rows as runner publishes them: JSON objects, decimals and times as text."""
    import random

    sys.path.insert(0, str(SHARED))
    from gen_events import make_row  # type: ignore[import-not-found]

    rng = random.Random(42)
    out = []
    for i in range(1, count + 1):
        row = make_row(rng, i)
        out.append(json.dumps(dict(zip(COLUMNS, row, strict=True)), default=str).encode())
    return out


class Places:
    """The queue and the database of this invocation."""

    def __init__(self, tag: str):
        import pika
        import psycopg

        self.queue, self.db = f"runner-bench-consume-{tag}", f"runner_bench_consume_{tag}"
        # no heartbeats: this connection idles while a run consumes (minutes at 1M messages), and a
        # blocking connection answers none meanwhile, so the broker would close it
        self.connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", 5672, heartbeat=0))
        self.channel = self.connection.channel()
        self.channel.queue_declare(self.queue)
        with psycopg.connect(PG.format(db="postgres"), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{self.db}"')
        self.pg = psycopg.connect(PG.format(db=self.db), autocommit=True)
        sys.path.insert(0, str(SHARED))
        from gen_events import DDL_PG  # type: ignore[import-not-found]

        self.pg.execute(DDL_PG)

    def fill(self, bodies: list[bytes]) -> None:
        import pika

        self.pg.execute("TRUNCATE events")
        self.channel.queue_purge(self.queue)
        properties = pika.BasicProperties(content_type="application/json", delivery_mode=2)
        for body in bodies:
            self.channel.basic_publish("", self.queue, body, properties)
        deadline = time.monotonic() + 60
        while self.waiting() < len(bodies):
            if time.monotonic() > deadline:
                raise BenchError(f"the queue holds {self.waiting():,} messages, not {len(bodies):,}")
            time.sleep(0.1)

    def waiting(self) -> int:
        return self.channel.queue_declare(self.queue, passive=True).method.message_count

    def rows(self) -> int:
        return self.pg.execute("SELECT count(*) FROM events").fetchone()[0]

    def close(self) -> None:
        import psycopg

        self.channel.queue_delete(self.queue)
        self.connection.close()
        self.pg.close()
        with psycopg.connect(PG.format(db="postgres"), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')


def timed(cmd: list[str], what: str, folder: Path) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MB) and stdout of one command under /usr/bin/time."""
    rss = folder / "time.out"
    t0 = time.perf_counter()
    proc = subprocess.run(
        [TIME, "-f", "%M", "-o", str(rss), *cmd], capture_output=True, text=True, env=ENV, timeout=1800
    )
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise BenchError(f"{what} failed (exit {proc.returncode}):\n{(proc.stderr or proc.stdout)[-3000:]}")
    mb = int(rss.read_text().split()[-1]) / 1024
    return seconds, mb, proc.stdout


def definitions(folder: Path, places: Places) -> None:
    (folder / "connections.d").mkdir(parents=True)
    (folder / "jobs.d").mkdir()
    head = "apiVersion: runner/v1\nkind: Connection\n"
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{places.db}"
    (folder / "connections.d" / "bench.yaml").write_text(
        f"{head}metadata: {{name: rabbit}}\nspec: {{type: rabbitmq, host: 127.0.0.1}}\n---\n"
        f"{head}metadata: {{name: pg}}\nspec: {{type: postgresql, url: '{url}'}}\n"
    )
    task = {
        "name": "events",
        "read": {"queue": places.queue, "columns": COLUMNS, "max_wait": f"{QUIET:g}s"},
        "write": {"table": "events", "keys": ["id"]},
        "changes": {"strategy": "messages"},
    }
    job = {"source": "rabbit", "target": "pg", "batch_size": BATCH_SIZE, "tasks": [task]}
    (folder / "jobs.d" / "consume.yaml").write_text(
        f"apiVersion: runner/v1\nkind: Job\nmetadata: {{name: consume}}\nspec: {json.dumps(job)}\n"
    )
    subprocess.run([str(RUNNER), "--dir", str(folder), "apply"], check=True, capture_output=True, env=ENV)


def measure(places: Places, folder: Path, count: int, repeat: int) -> dict[str, Any]:
    log(f"making {count:,} messages …")
    bodies = messages(count)
    runs: dict[str, list[tuple[float, float]]] = {"runner": [], "floor": []}
    for i in range(repeat):
        for who in ("runner", "floor"):
            places.fill(bodies)
            log(f"{who} {i + 1}/{repeat} (load average {os.getloadavg()[0]:.1f}) …")
            if who == "runner":
                cmd = [str(RUNNER), "--dir", str(folder), "run", "consume", "--format", "json"]
            else:
                cmd = [str(PYTHON), __file__, "floor", places.queue, places.db]
            seconds, mb, out = timed(cmd, who, folder)
            log(f"{who}: {seconds:.1f} s, {mb:.0f} MB (load average {os.getloadavg()[0]:.1f})")
            if who == "runner":
                record = json.loads(out)
                if record["status"] != "succeeded" or record["tasks"][0]["rows_read"] != count:
                    raise BenchError(f"runner run consume: {record['status']} {record['tasks'][0]}")
            if places.rows() != count or places.waiting() != 0:
                raise BenchError(f"{who} left {places.rows():,} rows and {places.waiting():,} messages")
            runs[who].append((seconds, mb))
    r_s = statistics.median(s for s, _ in runs["runner"])
    f_s = statistics.median(s for s, _ in runs["floor"])
    return {
        "messages": count,
        "runner": {
            "seconds": r_s,
            "messages_per_s": count / r_s,
            "rss_mb": max(m for _, m in runs["runner"]),
        },
        "floor": {"seconds": f_s, "messages_per_s": count / f_s, "rss_mb": max(m for _, m in runs["floor"])},
        "ratio": f_s / r_s,  # runner's messages/s over the floor's
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if args[:1] == ["floor"]:
        print(floor(args[1], args[2]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    opts = ap.parse_args(args)
    if shutil.which(TIME) is None:
        raise SystemExit(f"{TIME} is needed (Debian's `time` package)")
    tmp = Path(tempfile.mkdtemp(prefix="runner-consume-"))
    places = Places(uuid.uuid4().hex[:10])
    try:
        definitions(tmp / "defs", places)
        result = measure(places, tmp / "defs", opts.messages, opts.repeat)
    finally:
        places.close()
        shutil.rmtree(tmp, ignore_errors=True)
    if opts.json:
        print(json.dumps(result, indent=2))
        return 0
    r, f = result["runner"], result["floor"]
    print(f"{'':<22} {'msg/s':>9} {'seconds':>8} {'peak RSS':>9}")
    for name, x in (("runner (RabbitMQ → PG)", r), ("floor (pika + COPY)", f)):
        print(f"{name:<22} {x['messages_per_s']:>9,.0f} {x['seconds']:>8.1f} {x['rss_mb']:>6.0f} MB")
    print(f"ratio {result['ratio']:.2f}× of the floor, {result['messages']:,} messages, median of the runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
