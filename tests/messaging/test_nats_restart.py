"""A NATS server restarted under a run: the publisher and the consumer reconnect (to the next
server listed, or the same one back) and the run completes with every message once in the
stream, every row once in the target. On a private nats-server (JetStream in a folder of the
test's, on a free loopback port) that the test kills with SIGKILL and starts again."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runner import services
from tests.conftest import _unreachable
from tests.messaging.conftest import problems

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"
ROWS = 3000
BATCH = 100


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A nats-server with JetStream of the test's own; `restart` kills it (SIGKILL) and starts
    it again on the same port and store."""

    def __init__(self, folder: Path):
        if not Path(NATS_SERVER).exists():
            _unreachable("nats-server", FileNotFoundError(NATS_SERVER))
        self.folder, self.port = folder, free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        cmd = [NATS_SERVER, "-js", "-sd", str(self.folder), "-a", "127.0.0.1", "-p", str(self.port)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.call(lambda js: js.account_info())
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def restart(self, down: float = 0.7) -> None:
        self.kill()
        time.sleep(down)
        self.start()

    def call(self, what: Callable[[Any], Any]) -> Any:
        """`what(jetstream)` awaited on a connection of its own."""
        import nats

        async def quiet(exc: Exception) -> None:
            pass

        async def go() -> Any:
            nc = await nats.connect(
                f"nats://127.0.0.1:{self.port}",
                allow_reconnect=False,
                max_reconnect_attempts=1,
                error_cb=quiet,
            )
            try:
                return await what(nc.jetstream())
            finally:
                await nc.close()

        return asyncio.run(go())

    def messages(self, stream: str) -> list[Any]:
        async def get(js: Any) -> list[Any]:
            last = (await js.stream_info(stream)).state.last_seq
            return [await js.get_msg(stream, seq) for seq in range(1, last + 1)]

        return self.call(get)

    def count(self, stream: str) -> int:
        async def get(js: Any) -> int:
            return int((await js.stream_info(stream)).state.messages)

        return self.call(get)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path / "jetstream")
    yield s
    s.stop()


def connection(project: Any, server: Server, **extra: Any) -> None:
    # `host` is a port nobody listens on: the connection goes to the next server listed
    spec = {"type": "nats", "host": "127.0.0.1", "port": free_port(), "servers": [f"127.0.0.1:{server.port}"]}
    head = "apiVersion: runner/v1\nkind: Connection\nmetadata: {name: mq}\n"
    project.write("connections.d/mq.yaml", f"{head}spec: {json.dumps(spec | extra)}\n")


def run_while(project: Any, job: str, when: Callable[[], bool], server: Server) -> dict[str, Any]:
    """Run `job` in a thread; restart the server once `when()`; the run's record."""
    record: dict[str, Any] = {}

    def run() -> None:
        record.update(services.run(project.ws, job))

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 60
    while not when():
        assert thread.is_alive() and time.monotonic() < deadline, "the run ended before the restart"
        time.sleep(0.02)
    server.restart()
    thread.join(120)
    assert not thread.is_alive()
    return record


def test_publishing_goes_on_after_the_server_restarts_and_stores_each_message_once(
    project, server, monkeypatch
):
    db = sqlite3.connect(project.root / "src.db")
    db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, v TEXT)")
    db.executemany("INSERT INTO items VALUES (?, ?)", [(i, f"v{i}") for i in range(1, ROWS + 1)])
    db.commit()
    project.connection("src", "sqlite", "sqlite:///src.db")
    server.call(lambda js: js.add_stream(name="items", subjects=["items.>"]))
    connection(project, server)
    task = {"name": "items", "read": {"table": "items"}, "write": {"subject": "items.all", "keys": ["id"]}}
    task["changes"] = {"strategy": "hash"}
    project.job("publish", "src", "mq", f"- {json.dumps(task)}", extra=f"  batch_size: {BATCH}\n")
    services.apply(project.ws)
    monkeypatch.setenv("RUNNER_BATCH_DELAY", "0.02")

    record = run_while(project, "publish", lambda: server.count("items") >= ROWS // 3, server)

    assert record["status"] == "succeeded", record
    assert record["tasks"][0]["upserted"] == ROWS
    messages = server.messages("items")
    ids = [json.loads(m.data)["id"] for m in messages]
    assert sorted(ids) == list(range(1, ROWS + 1))  # each row once: the resends were dropped
    assert len({m.headers["Nats-Msg-Id"] for m in messages}) == ROWS


def test_consuming_goes_on_after_the_server_restarts_and_loads_each_row_once(project, server, monkeypatch):
    async def fill(js: Any) -> None:
        await js.add_stream(name="jobs", subjects=["jobs.>"])
        for i in range(1, ROWS + 1):
            await js.publish("jobs.new", json.dumps({"id": i, "v": f"v{i}"}).encode())

    server.call(fill)
    project.connection("db", "sqlite", "sqlite:///target.db")
    connection(project, server)
    task = {
        "name": "jobs",
        "read": {"stream": "jobs", "columns": {"id": "bigint", "v": "text"}, "max_wait": "2s"},
        "write": {"table": "jobs", "keys": ["id"]},
        "changes": {"strategy": "messages"},
    }
    project.job("consume", "mq", "db", f"- {json.dumps(task)}", extra=f"  batch_size: {BATCH}\n")
    services.apply(project.ws)
    monkeypatch.setenv("RUNNER_BATCH_DELAY", "0.02")
    target = project.root / "target.db"

    def loaded() -> int:
        if not target.exists():
            return 0
        with sqlite3.connect(target) as con:
            try:
                return int(con.execute("SELECT count(*) FROM jobs").fetchone()[0])
            except sqlite3.OperationalError:
                return 0

    record = run_while(project, "consume", lambda: loaded() >= ROWS // 3, server)

    assert record["status"] == "succeeded", record
    with sqlite3.connect(target) as con:
        rows = con.execute("SELECT id, v FROM jobs ORDER BY id").fetchall()
    assert rows == [(i, f"v{i}") for i in range(1, ROWS + 1)]
    info = server.call(lambda js: js.consumer_info("jobs", "runner"))
    assert (info.num_pending, info.num_ack_pending) == (0, 0)  # every message acknowledged


@pytest.mark.parametrize(
    ("servers", "message"),
    [
        (["nats://a:4222"], "servers[0]: 'nats://a:4222' is no server address"),
        (["a:99999"], "servers[0]: 'a:99999' is no server address"),
        (["127.0.0.1:4222", "b c"], "servers[1]: 'b c' is no server address"),
    ],
)
def test_a_servers_list_is_checked(project, servers, message):
    head = "apiVersion: runner/v1\nkind: Connection\nmetadata: {name: mq}\n"
    spec = {"type": "nats", "host": "127.0.0.1", "servers": servers}
    project.write("connections.d/mq.yaml", f"{head}spec: {json.dumps(spec)}\n")
    (p,) = problems(project)
    assert message in p.message and p.location.file.endswith("mq.yaml") and p.location.line
    assert p.location.field.endswith("servers")


def test_a_token_goes_in_the_clear_to_no_server_listed_elsewhere(project):
    head = "apiVersion: runner/v1\nkind: Connection\nmetadata: {name: mq}\n"
    spec = {"type": "nats", "host": "127.0.0.1", "servers": ["nats.example.com:4222"], "token": "${env:T}"}
    project.write("connections.d/mq.yaml", f"{head}spec: {json.dumps(spec)}\n")
    (p,) = problems(project)
    assert "signing in to nats.example.com without TLS would send the token in the clear" in p.message
