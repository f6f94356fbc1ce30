"""The `redis` kind beyond the contract suite (which publishes to a stream): lists and pub/sub
channels on a real Redis, a trimmed stream, the write's own rules, and credentials refused by a
private server."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from runner import services
from tests.conftest import _unreachable
from tests.messaging.conftest import define, problems

SPEC = {"type": "redis", "host": "127.0.0.1"}


@pytest.fixture
def client() -> Iterator[Any]:
    """A client of the Redis on this machine; the keys named by `name` are deleted after."""
    import redis
    from redis import exceptions

    c = redis.Redis("127.0.0.1", 6379)
    try:
        c.ping()
    except exceptions.RedisError as exc:
        _unreachable("Redis at 127.0.0.1:6379", exc)
    c.made = []  # type: ignore[attr-defined]
    yield c
    if c.made:  # type: ignore[attr-defined]
        c.delete(*c.made)  # type: ignore[attr-defined]
    c.close()


def name(client: Any, what: str) -> str:
    key = f"runner-test-{what}-{uuid.uuid4().hex[:10]}"
    client.made.append(key)
    return key


def test_rows_go_to_a_list_and_deletes_to_their_own(client, publish, shop):
    orders, deleted = name(client, "orders"), name(client, "deleted")
    write = {"list": orders, "delete_list": deleted, "payload": {"id": "{{ row.id }}", "msg": "{{ id }}"}}
    first = publish(SPEC, write, deletes="propagate")
    assert (first["status"], first["upserted"]) == ("succeeded", 3)
    bodies = [json.loads(b) for b in client.lrange(orders, 0, -1)]
    assert sorted(b["id"] for b in bodies) == [1, 2, 3] and all(len(b["msg"]) == 32 for b in bodies)
    shop.execute("DELETE FROM orders WHERE id = 2")
    shop.commit()
    second = publish()
    assert (second["upserted"], second["deleted"]) == (0, 1)
    assert [json.loads(b) for b in client.lrange(deleted, 0, -1)] == [{"id": 2}]
    assert client.llen(orders) == 3


def test_a_channel_message_nobody_receives_fails_the_task_and_is_sent_again(client, publish):
    channel = name(client, "channel")
    failed = publish(SPEC, {"channel": channel})
    assert failed["status"] == "failed"
    assert f"no subscriber received a message published on channel {channel!r}" in failed["error"]
    subscriber = client.pubsub(ignore_subscribe_messages=True)
    subscriber.subscribe(channel)
    try:
        second = publish()
        assert (second["status"], second["upserted"]) == ("succeeded", 3)  # nothing was recorded before
        got = []
        deadline = time.monotonic() + 10
        while len(got) < 3 and time.monotonic() < deadline:
            message = subscriber.get_message(timeout=1)
            if message:
                got.append(json.loads(message["data"]))
        assert sorted(b["id"] for b in got) == [1, 2, 3]
    finally:
        subscriber.close()


def test_a_stream_is_trimmed_to_about_maxlen(client, project, shop):
    shop.executemany("INSERT INTO orders VALUES (?, 'east', '1.00')", [(i,) for i in range(4, 1001)])
    shop.commit()
    stream = name(client, "trimmed")
    define(project, SPEC, {"stream": stream, "maxlen": 10})
    services.apply(project.ws)
    record = services.run(project.ws, "publish")
    assert record["status"] == "succeeded" and record["tasks"][0]["upserted"] == 1000
    assert 10 <= client.xlen(stream) < 1000  # `~`: Redis trims whole nodes (100 entries by default)
    entry = client.xrevrange(stream, count=1)[0][1]
    assert 1 <= json.loads(entry[b"payload"])["id"] <= 1000 and entry[b"runner-op"] == b"upsert"


def test_a_template_naming_the_destination_per_row(client, publish):
    prefix = f"runner-test-{uuid.uuid4().hex[:10]}"
    client.made += [f"{prefix}-north", f"{prefix}-south"]
    result = publish(SPEC, {"stream": prefix + "-{{ row.region }}"})
    assert result["status"] == "succeeded", result["error"]
    assert (client.xlen(f"{prefix}-north"), client.xlen(f"{prefix}-south")) == (2, 1)


@pytest.mark.parametrize(
    ("write", "message"),
    [
        ({"stream": "a", "list": "b"}, "give exactly one of 'stream' (XADD), 'list' (RPUSH) or 'channel'"),
        ({}, "give exactly one of 'stream'"),
        ({"stream": "a", "delete_list": "b"}, "delete_list goes with 'list'; this task writes to a stream"),
        ({"list": "a", "maxlen": 5}, "maxlen trims a stream; this task writes to a list"),
        ({"channel": "a", "headers": {"x": "y"}}, "a channel's message is the payload alone"),
        ({"stream": "a", "headers": {"payload": "y"}}, "the entry's field of that name holds the payload"),
        ({"stream": "a-{{ row.x"}, "invalid template"),
    ],
)
def test_a_write_is_checked_with_the_kinds_rules(project, shop, write, message):
    define(project, SPEC, write)
    (p,) = problems(project)
    assert p.location.field.startswith("spec.tasks[0].write")
    assert message in p.message


def test_deletes_into_a_list_need_a_place_or_a_payload_of_their_own(project, shop):
    define(project, SPEC, {"list": "orders"}, deletes="propagate")
    (p,) = problems(project)
    assert p.location.field == "spec.tasks[0]"
    assert "deletes: propagate into a Redis list" in p.message and "write.delete_list" in p.message
    write = {"list": "orders", "delete_payload": {"deleted": "{{ key.id }}"}}
    define(project, SPEC, write, deletes="propagate")
    (job,) = [d for d in services.validate(project.ws) if d.kind == "Job"]
    assert job.spec.tasks[0].write.describe() == "list orders"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def private_redis(tmp_path) -> Iterator[int]:
    """A Redis of this test's own with a password (`requirepass`), on a free port."""
    binary = shutil.which("redis-server")
    if binary is None:
        _unreachable("redis-server (Debian's redis-server package)", FileNotFoundError("redis-server"))
    port = _free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--requirepass", "s3cret-value"]
        + ["--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait()


def test_a_wrong_password_is_refused_without_showing_it(project, shop, private_redis, monkeypatch):
    monkeypatch.setenv("REDIS_PW", "not-the-s3cret")
    spec = {**SPEC, "port": private_redis, "username": "default", "password": "${env:REDIS_PW}"}
    define(project, spec, {"stream": "orders"})
    services.apply(project.ws)
    (result,) = services.connections_test(project.ws, "mq")
    assert not result["ok"]
    detail = result["checks"][0]["detail"]
    assert "Redis refused the user name or password" in detail and "not-the-s3cret" not in detail
    monkeypatch.setenv("REDIS_PW", "s3cret-value")
    (result,) = services.connections_test(project.ws, "mq")
    assert result["ok"] and result["server"].startswith("Redis ")
