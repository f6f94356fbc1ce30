#!/usr/bin/env python3
"""Publishing speed: the shared `events` workload published by runner to RabbitMQ and to NATS
JetStream, beside a floor measured in the same run.

    python bench/publish.py [rabbitmq nats] [--rows 100000] [--repeat 3] [--source postgresql|sqlite] [--json]

- The source: `gen_events.py create` (7 columns: bigint, int, text, decimal, text, two
  timestamps), once per invocation, into a database of its own on the shared PostgreSQL
  (127.0.0.1:5432, dropped at the end; the default) or into a SQLite file (`--source sqlite`).
- runner: one job per broker, `changes: {strategy: full}` (every row, every run), `keys: [id]`,
  `batch_size: 10000`, the default payload (each row as a JSON object of its columns) and the
  default headers; each timed `runner run JOB` is a subprocess under `/usr/bin/time` (peak RSS),
  Python's start-up and imports included.
- The floor: a bare client loop in a subprocess of the same venv doing the same work with the
  broker's own client: read the rows from the same source (psycopg with a server-side cursor of
  10,000 rows a fetch, or sqlite3), `json.dumps` each row, publish
  it with confirms, at most 4,000 unconfirmed, every confirm awaited before it exits, as runner
  (RabbitMQ: pika's channel in confirm mode, `mandatory`, a `message_id`, written 500 at a
  time; NATS: nats-py `publish_async` with `Nats-Msg-Id`).
- Each broker gets a destination of its own per invocation (RabbitMQ: a queue on the default
  exchange, purged before each run; NATS: a stream per run, as its ids repeat and JetStream
  would drop a repeat within its duplicate window), checked to hold exactly `--rows` messages
  after each run, and deleted at the end, also on failure or Ctrl-C.

Prints messages/s (rows / wall seconds of the whole process), the ratio to the floor (runner's
messages/s over the floor's: 1.0 is as fast as the bare loop) and peak RSS, the median of
`--repeat` runs alternating runner and floor. RabbitMQ at 127.0.0.1:5672 (guest), NATS with
JetStream at 127.0.0.1:4222.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
GEN = REPO.parent / "shared" / "bench" / "gen_events.py"
VENV_BIN = Path(os.environ.get("BENCH_VENV", REPO / ".venv")) / "bin"
PYTHON, RUNNER = VENV_BIN / "python", VENV_BIN / "runner"
TIME = "/usr/bin/time"
ENV = {k: v for k, v in os.environ.items() if k not in ("RUNNER_DIR", "RUNNER_STATE", "RUNNER_HISTORY")}
BATCH_SIZE = 10_000
IN_FLIGHT = 4000  # unacknowledged publishes at most, as runner's publishers
CHUNK = 500  # RabbitMQ: messages published between writes to the socket, as runner's publisher


PG = "postgresql://postgres@127.0.0.1:5432/{db}"


def pg_admin(statement: str) -> None:
    import psycopg

    with psycopg.connect(PG.format(db="postgres"), autocommit=True) as admin:
        admin.execute(statement)


class BenchError(Exception):
    """A failure of the harness or of a command it ran."""


def log(msg: str) -> None:
    print(f"publish: {msg}", file=sys.stderr, flush=True)


# --- the floor: a bare client loop (run as `publish.py floor KIND DB DEST`) -------------------------


def rows(source: str) -> Any:
    """(id, the row as JSON) of every event: `source` a PostgreSQL URL or a SQLite file."""
    if source.startswith("postgresql://"):
        import psycopg

        con: Any = psycopg.connect(source)
        cursor = con.cursor(name="events")  # server-side: 10,000 rows a fetch (`itersize`)
        cursor.itersize = BATCH_SIZE
        cursor.execute("SELECT * FROM events")
    else:
        con = sqlite3.connect(source)
        cursor = con.execute("SELECT * FROM events")
    names = None
    for row in cursor:
        names = names or [d[0] for d in cursor.description]
        yield row[0], json.dumps(dict(zip(names, row, strict=True)), default=str).encode()
    con.close()


def floor_rabbitmq(source: str, queue: str) -> int:
    """pika's asynchronous channel under a blocking connection, as runner's publisher: at most
    `IN_FLIGHT` unconfirmed, the socket written every `CHUNK` messages, every confirm awaited."""
    import pika

    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", 5672))
    channel = connection.channel()._impl
    sent, confirmed, selected, failed = 0, [0], [], []

    def on_confirm(frame: Any) -> None:
        if isinstance(frame.method, pika.spec.Basic.Nack):
            failed.append(frame.method)
        confirmed[0] = frame.method.delivery_tag  # RabbitMQ confirms in order (`multiple`)

    channel.add_on_return_callback(lambda *returned: failed.append(returned[1]))
    channel.confirm_delivery(on_confirm, selected.append)
    connection._flush_output(lambda: bool(selected))
    for key, body in rows(source):
        properties = pika.BasicProperties(
            message_id=str(key), content_type="application/json", delivery_mode=2
        )
        channel.basic_publish("", queue, body, properties, mandatory=True)
        sent += 1
        if sent % CHUNK == 0:
            connection._flush_output(lambda n=sent: n - confirmed[0] <= IN_FLIGHT - CHUNK)
    connection._flush_output(lambda: confirmed[0] == sent)
    connection.close()
    if failed:
        raise RuntimeError(f"{len(failed)} publishes failed: {failed[0]}")
    return sent


def floor_nats(source: str, subject: str) -> int:
    import nats

    async def main() -> int:
        nc = await nats.connect("nats://127.0.0.1:4222")
        js = nc.jetstream(publish_async_max_pending=IN_FLIGHT)
        failed: list[BaseException] = []
        sent = 0

        def done(ack: asyncio.Future[Any]) -> None:
            if not ack.cancelled() and ack.exception() is not None:
                failed.append(ack.exception())  # type: ignore[arg-type]

        for key, body in rows(source):
            ack = await js.publish_async(subject, body, headers={"Nats-Msg-Id": str(key)})
            ack.add_done_callback(done)
            sent += 1
        await asyncio.wait_for(js.publish_async_completed(), 60)
        await nc.close()
        if failed:
            raise RuntimeError(f"{len(failed)} publishes failed: {failed[0]}")
        return sent

    return asyncio.run(main())


# --- the harness ----------------------------------------------------------------------------------


class Brokers:
    """The destinations of this invocation, through the brokers' own clients."""

    def __init__(self, tag: str):
        self.tag = tag
        self.queue = f"runner-bench-{tag}"
        self.streams: list[str] = []
        self.channel: Any = None
        self.loop = asyncio.new_event_loop()

    def rabbitmq(self) -> str:
        import pika

        if self.channel is None:
            # no heartbeats: this connection idles while a run publishes (minutes at 1M rows), and a
            # blocking connection answers none meanwhile, so the broker would close it
            self.connection = pika.BlockingConnection(
                pika.ConnectionParameters("127.0.0.1", 5672, heartbeat=0)
            )
            self.channel = self.connection.channel()
            self.channel.queue_declare(self.queue)
        self.channel.queue_purge(self.queue)
        return self.queue

    def rabbitmq_count(self) -> int:
        return self.channel.queue_declare(self.queue, passive=True).method.message_count

    def _jetstream(self, what: Any) -> Any:
        """`what(jetstream)` on a connection of its own: one kept open would idle unanswered while
        a run publishes (minutes at 1M rows), and the server closes it as stale."""
        import nats

        async def call() -> Any:
            nc = await nats.connect("nats://127.0.0.1:4222")
            try:
                return await what(nc.jetstream())
            finally:
                await nc.close()

        return self.loop.run_until_complete(call())

    def nats(self, run: str) -> str:
        """A new stream taking `runner-bench.<tag>.<run>.>`; its subject."""
        name = f"runner-bench-{self.tag}-{run}"
        subject = f"runner-bench.{self.tag}.{run}"
        self._jetstream(lambda js: js.add_stream(name=name, subjects=[f"{subject}.>"]))
        self.streams.append(name)
        return f"{subject}.events"

    def nats_count(self) -> int:
        stream = self.streams[-1]

        async def count(js: Any) -> int:
            return int((await js.stream_info(stream)).state.messages)

        return self._jetstream(count)

    def nats_drop(self) -> None:
        stream = self.streams.pop()
        self._jetstream(lambda js: js.delete_stream(stream))

    def close(self) -> None:
        if self.channel is not None:
            self.channel.queue_delete(self.queue)
            self.connection.close()
        for name in self.streams:
            self._jetstream(lambda js, name=name: js.delete_stream(name))
        self.loop.close()


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


def definitions(folder: Path, source: str, queue: str) -> None:
    (folder / "connections.d").mkdir(parents=True)
    (folder / "jobs.d").mkdir()
    head = "apiVersion: runner/v1\nkind: Connection\n"
    (folder / "connections.d" / "bench.yaml").write_text(
        f"{head}metadata: {{name: src}}\nspec: {source_spec(source)}\n---\n"
        f"{head}metadata: {{name: rabbit}}\nspec: {{type: rabbitmq, host: 127.0.0.1}}\n---\n"
        f"{head}metadata: {{name: nats}}\nspec: {{type: nats, host: 127.0.0.1}}\n"
    )
    write_job(folder, "rabbitmq", "rabbit", {"routing_key": queue})


def source_spec(source: str) -> str:
    if source.startswith("postgresql://"):
        return json.dumps(
            {"type": "postgresql", "url": source.replace("postgresql://", "postgresql+psycopg://")}
        )
    return json.dumps({"type": "sqlite", "url": f"sqlite:///{source}"})


def write_job(folder: Path, name: str, target: str, write: dict[str, Any]) -> None:
    task = {"name": "events", "read": {"table": "events"}, "write": {**write, "keys": ["id"]}}
    task["changes"] = {"strategy": "full"}
    job = {"source": "src", "target": target, "batch_size": BATCH_SIZE, "tasks": [task]}
    (folder / "jobs.d" / f"{name}.yaml").write_text(
        f"apiVersion: runner/v1\nkind: Job\nmetadata: {{name: to-{name}}}\nspec: {json.dumps(job)}\n"
    )
    subprocess.run([str(RUNNER), "--dir", str(folder), "apply"], check=True, capture_output=True, env=ENV)


def measure(
    kind: str, brokers: Brokers, folder: Path, source: str, rows_: int, repeat: int
) -> dict[str, Any]:
    runner: list[tuple[float, float]] = []
    floor: list[tuple[float, float]] = []
    for i in range(repeat):
        for who in ("runner", "floor"):
            if kind == "rabbitmq":
                dest = brokers.rabbitmq()
            else:
                dest = brokers.nats(f"{who}{i}")
                if who == "runner":
                    write_job(folder, "nats", "nats", {"subject": dest})
            log(f"{kind}: {who} {i + 1}/{repeat} (load average {os.getloadavg()[0]:.1f}) …")
            if who == "runner":
                cmd = [str(RUNNER), "--dir", str(folder), "run", f"to-{kind}", "--format", "json"]
            else:
                cmd = [str(PYTHON), __file__, "floor", kind, source, dest]
            seconds, mb, out = timed(cmd, f"{who} ({kind})", folder)
            log(f"{who}: {seconds:.1f} s, {mb:.0f} MB (load average {os.getloadavg()[0]:.1f})")
            if who == "runner":
                record = json.loads(out)
                if record["status"] != "succeeded" or record["tasks"][0]["upserted"] != rows_:
                    raise BenchError(f"runner run to-{kind}: {record['status']} {record['tasks'][0]}")
            count = brokers.rabbitmq_count() if kind == "rabbitmq" else brokers.nats_count()
            if count != rows_:
                raise BenchError(f"{who} ({kind}) left {count:,} messages, not {rows_:,}")
            if kind == "nats":
                brokers.nats_drop()
            (runner if who == "runner" else floor).append((seconds, mb))
    r_s = statistics.median(s for s, _ in runner)
    f_s = statistics.median(s for s, _ in floor)
    return {
        "rows": rows_,
        "runner": {"seconds": r_s, "messages_per_s": rows_ / r_s, "rss_mb": max(m for _, m in runner)},
        "floor": {"seconds": f_s, "messages_per_s": rows_ / f_s, "rss_mb": max(m for _, m in floor)},
        "ratio": f_s / r_s,  # runner's messages/s over the floor's
        "runs": {"runner": runner, "floor": floor},
    }


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if args[:1] == ["floor"]:
        _, kind, source, dest = args
        sent = floor_rabbitmq(source, dest) if kind == "rabbitmq" else floor_nats(source, dest)
        print(sent)
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kinds", nargs="*", help="rabbitmq, nats (default both)")
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--source", choices=["postgresql", "sqlite"], default="postgresql")
    ap.add_argument("--json", action="store_true")
    opts = ap.parse_args(args)
    opts.kinds = opts.kinds or ["rabbitmq", "nats"]
    if set(opts.kinds) - {"rabbitmq", "nats"}:
        ap.error("the brokers are rabbitmq and nats")
    if shutil.which(TIME) is None:
        raise SystemExit(f"{TIME} is needed (Debian's `time` package)")
    tmp = Path(tempfile.mkdtemp(prefix="runner-publish-"))
    brokers = Brokers(uuid.uuid4().hex[:10])
    results: dict[str, Any] = {}
    database = f"runner_publish_{brokers.tag}"
    try:
        if opts.source == "postgresql":
            pg_admin(f'CREATE DATABASE "{database}"')
            source = PG.format(db=database)
        else:
            source = str(tmp / "events.db")
        log(f"gen_events.py create {opts.rows:,} rows in {opts.source} …")
        url = source if opts.source == "postgresql" else f"sqlite:///{source}"
        gen = [str(PYTHON), str(GEN), "create", url, str(opts.rows)]
        subprocess.run(gen, check=True, env=ENV, stdout=subprocess.DEVNULL)
        folder = tmp / "defs"
        definitions(folder, source, brokers.rabbitmq())
        for kind in opts.kinds:
            results[kind] = measure(kind, brokers, folder, source, opts.rows, opts.repeat)
            results[kind]["source"] = opts.source
    finally:
        brokers.close()
        if opts.source == "postgresql":
            pg_admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        shutil.rmtree(tmp, ignore_errors=True)
    if opts.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"source: {opts.source}")
    head = ("broker", "rows", "runner msg/s", "floor msg/s", "ratio", "runner RSS", "floor RSS")
    print("{:<10} {:>8} {:>13} {:>12} {:>6} {:>11} {:>10}".format(*head))
    for kind, r in results.items():
        print(
            f"{kind:<10} {r['rows']:>8,} {r['runner']['messages_per_s']:>13,.0f} "
            f"{r['floor']['messages_per_s']:>12,.0f} {r['ratio']:>5.2f}× {r['runner']['rss_mb']:>8.0f} MB "
            f"{r['floor']['rss_mb']:>7.0f} MB"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
