"""The `rabbitmq` kind beyond the contract suite: the publish frames runner encodes are the bytes
pika would write; more messages than the confirm window in one batch; a routing no queue takes
and an exchange that does not exist, each refused with what to do and the pointer left where it
was; on the RabbitMQ of this machine."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from runner import services
from runner.connectors import rabbitmq
from runner.connectors.amqp import PublishFrames
from runner.errors import TerminalError
from tests.conftest import rabbitmq_connection
from tests.messaging.conftest import define

SPEC = {"type": "rabbitmq", "host": "127.0.0.1"}


def pika_frames(channel: int, body_max: int, persistent: bool, stamp: int, message: dict[str, Any]) -> bytes:
    """One publish marshalled by pika itself, as `basic_publish` would."""
    import pika
    from pika import frame, spec

    properties = pika.BasicProperties(
        content_type="application/json" if message["json"] else "text/plain",
        headers={**message["headers"], **message["shared"]},
        delivery_mode=2 if persistent else 1,
        message_id=message["message_id"],
        timestamp=stamp,
    )
    method = spec.Basic.Publish(
        exchange=message["exchange"], routing_key=message["routing_key"], mandatory=True
    )
    body = message["body"]
    out = [frame.Method(channel, method).marshal(), frame.Header(channel, len(body), properties).marshal()]
    out += [frame.Body(channel, body[i : i + body_max]).marshal() for i in range(0, len(body), body_max)]
    return b"".join(out)


SHARED = {
    "runner-job": "default/publish",
    "runner-task": "orders",
    "runner-run": "20261129T000000.000-abcdef",
}
MESSAGES = [
    {
        "exchange": "",
        "routing_key": "orders",
        "body": b'{"id": 1, "note": "Z\xc3\xbcrich"}',
        "message_id": "a" * 32,
        "json": True,
        "headers": {"runner-op": "upsert", "runner-id": "a" * 32},
    },
    {  # a new routing, a text body longer than a frame, a header of its own with unicode
        "exchange": "shop",
        "routing_key": "orders.nörth",
        "body": b"x" * 2500,
        "message_id": "b" * 32,
        "json": False,
        "headers": {"runner-op": "upsert", "runner-id": "b" * 32, "region": 'nörth "q" \\'},
    },
    {  # an empty body: no body frame
        "exchange": "shop",
        "routing_key": "orders.nörth",
        "body": b"",
        "message_id": "c" * 32,
        "json": True,
        "headers": {"runner-op": "delete", "runner-id": "c" * 32},
    },
]


@pytest.mark.parametrize("persistent", [True, False])
def test_the_frames_are_the_bytes_pika_writes(persistent):
    frames = PublishFrames(3, 1000, persistent, 1795996180)
    shared = dict(SHARED)
    for message in MESSAGES:
        ours = frames.frames(
            message["exchange"],
            message["routing_key"],
            message["body"],
            message["message_id"],
            message["json"],
            message["headers"],
            shared,
        )
        assert ours == pika_frames(3, 1000, persistent, 1795996180, {**message, "shared": shared})


def test_a_routing_key_longer_than_amqp_takes_is_refused_by_name():
    frames = PublishFrames(1, 1000, True, 0)
    with pytest.raises(TerminalError, match="the routing key is 300 bytes long: AMQP takes at most 255"):
        frames.frames("", "k" * 300, b"{}", "a" * 32, True, {}, {})


@pytest.fixture
def rabbit() -> Iterator[Any]:
    """A channel to the broker, with queues and exchanges of the test's own deleted after it."""
    connection = rabbitmq_connection()
    channel = connection.channel()
    channel.tag = uuid.uuid4().hex[:12]
    channel.made = []
    yield channel
    for kind, name in channel.made:
        (channel.queue_delete if kind == "queue" else channel.exchange_delete)(name)
    connection.close()


def queue(rabbit: Any, role: str) -> str:
    name = f"runner-test-{role}-{rabbit.tag}"
    rabbit.queue_declare(name)
    rabbit.made.append(("queue", name))
    return name


def drain(rabbit: Any, name: str) -> list[tuple[Any, bytes]]:
    out = []
    while True:
        method, properties, body = rabbit.basic_get(name, auto_ack=True)
        if method is None:
            return out
        out.append((properties, body))


@pytest.fixture
def many(project) -> sqlite3.Connection:
    """A source of 9,001 orders: more than two confirm windows (`IN_FLIGHT`) in one batch."""
    db = sqlite3.connect(project.root / "many.db")
    db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, region TEXT, amount DECIMAL(10, 2))")
    db.executemany("INSERT INTO orders VALUES (?, ?, ?)", ((i, "north", f"{i}.25") for i in range(1, 9002)))
    db.commit()
    project.connection("shop", "sqlite", "sqlite:///many.db")
    return db


def test_more_messages_than_the_confirm_window_in_one_batch_arrive_once_each(project, many, rabbit):
    assert 2 * rabbitmq.IN_FLIGHT < 9001
    target = queue(rabbit, "many")
    define(project, SPEC, {"routing_key": target, "headers": {"region": "{{ row.region }}"}})
    services.apply(project.ws)
    record = services.run(project.ws, "publish")
    assert record["status"] == "succeeded", record
    got = drain(rabbit, target)
    assert len(got) == 9001
    bodies = [json.loads(body) for _, body in got]
    by_id = {b["id"]: i for i, b in enumerate(bodies)}
    assert sorted(b["id"] for b in bodies) == list(range(1, 9002))  # each once
    assert bodies[by_id[42]] == {"id": 42, "region": "north", "amount": "42.25"}
    properties = got[by_id[42]][0]
    assert properties.content_type == "application/json" and properties.delivery_mode == 2
    assert properties.message_id == properties.headers["runner-id"] and len(properties.message_id) == 32
    assert properties.headers["runner-op"] == "upsert" and properties.headers["region"] == "north"
    assert (
        properties.headers["runner-job"] == "default/publish"
        and properties.headers["runner-task"] == "orders"
    )
    assert properties.headers["runner-run"] == record["run_id"] and properties.timestamp > 0
    assert len({p.message_id for p, _ in got}) == 9001


def test_a_routing_no_queue_takes_fails_the_run_and_moves_no_pointer(project, shop, rabbit, publish):
    target = f"runner-test-nowhere-{rabbit.tag}"  # no queue of that name: the default exchange returns it
    result = publish(SPEC, {"routing_key": target})
    assert result["status"] == "failed"
    assert (
        f"no queue takes a message published to exchange '(default)' with routing key {target!r}"
        in (result["error"])
    )
    # the broker confirmed none of them: the history does not count them written
    assert result["rows_read"] == 3 and result["upserted"] == 0 and result["rows_written"] == 0
    queue(rabbit, "nowhere")  # the queue made: the next run sends every change (none was committed)
    rabbit.queue_declare(target)
    rabbit.made.append(("queue", target))
    assert publish()["status"] == "succeeded"
    assert sorted(json.loads(body)["id"] for _, body in drain(rabbit, target)) == [1, 2, 3]


def test_an_exchange_that_does_not_exist_fails_the_run_with_the_brokers_reason(
    project, shop, rabbit, publish
):
    result = publish(SPEC, {"exchange": f"runner-test-none-{rabbit.tag}", "routing_key": "orders"})
    assert result["status"] == "failed"
    assert "the broker closed the channel: NOT_FOUND - no exchange" in result["error"]


def test_a_publisher_answers_heartbeats_while_the_task_reads_between_batches(
    project, shop, rabbit, monkeypatch
):
    """A heartbeat every second, and 3.5 s of reading before each batch: the broker would close
    a connection whose I/O nobody ran meanwhile (after two missed heartbeats)."""
    target = queue(rabbit, "slow")
    project.write(
        "connections.d/mq.yaml",
        f"apiVersion: runner/v1\nkind: Connection\nmetadata: {{name: mq}}\n"
        f"spec: {json.dumps({**SPEC, 'heartbeat': 1})}\n",
    )
    task = {
        "name": "orders",
        "read": {"table": "orders"},
        "write": {"keys": ["id"], "routing_key": target},
        "changes": {"strategy": "full"},
    }
    project.job("publish", "shop", "mq", f"- {json.dumps(task)}", extra="  batch_size: 2\n")
    services.apply(project.ws)
    monkeypatch.setenv("RUNNER_BATCH_DELAY", "3.5")  # seconds slept at each batch read
    record = services.run(project.ws, "publish")
    assert record["status"] == "succeeded", record
    assert sorted(json.loads(body)["id"] for _, body in drain(rabbit, target)) == [1, 2, 3]
