"""Each publishing kind's part of the messaging contract suite: a fresh destination on a real
broker (a queue of its own), the `write` of a task publishing there, and the messages it holds,
read back with the broker's own client, so what a consumer would see is what is checked."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.conftest import _unreachable


@dataclass
class Received:
    headers: dict[str, Any]
    body: bytes
    id: str | None


@dataclass
class Broker:
    kind: str
    spec: dict[str, Any]  # the connection's spec
    write: dict[str, Any]  # a task's `write` publishing to the fresh destination (no keys)
    read: Callable[[], list[Received]]  # every message there now, in order, taken off it
    cleanup: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for clean in self.cleanup:
            clean()


def _rabbitmq(request: pytest.FixtureRequest) -> Broker:
    import pika
    from pika import exceptions

    try:
        connection = pika.BlockingConnection(
            pika.ConnectionParameters("127.0.0.1", 5672, connection_attempts=1)
        )
    except exceptions.AMQPError as exc:
        _unreachable("RabbitMQ at 127.0.0.1:5672", exc)
    channel = connection.channel()
    queue = f"runner-contract-{uuid.uuid4().hex[:12]}"
    channel.queue_declare(queue)

    def read() -> list[Received]:
        out = []
        while True:
            method, properties, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return out
            out.append(Received(dict(properties.headers or {}), body, properties.message_id))

    def clean() -> None:
        channel.queue_delete(queue)
        connection.close()

    spec = {"type": "rabbitmq", "host": "127.0.0.1"}
    return Broker("rabbitmq", spec, {"routing_key": queue}, read, [clean])


def _redis(request: pytest.FixtureRequest) -> Broker:
    """A stream of its own, read from the entry after the last one read, deleted at the end."""
    import redis
    from redis import exceptions

    client = redis.Redis("127.0.0.1", 6379)
    try:
        client.ping()
    except exceptions.RedisError as exc:
        _unreachable("Redis at 127.0.0.1:6379", exc)
    stream = f"runner-contract-{uuid.uuid4().hex[:12]}"
    last = ["-"]

    def read() -> list[Received]:
        start = "-" if last[0] == "-" else f"({last[0]}"
        out = []
        for entry, fields in client.xrange(stream, start, "+"):
            last[0] = entry.decode()
            headers = {k.decode(): v.decode() for k, v in fields.items() if k != b"payload"}
            out.append(Received(headers, fields[b"payload"], headers.get("runner-id")))
        return out

    def clean() -> None:
        client.delete(stream)
        client.close()

    spec = {"type": "redis", "host": "127.0.0.1"}
    return Broker("redis", spec, {"stream": stream}, read, [clean])


BROKERS: dict[str, Callable[[pytest.FixtureRequest], Broker]] = {"rabbitmq": _rabbitmq, "redis": _redis}


def make_broker(kind: str, request: pytest.FixtureRequest) -> Broker:
    if kind not in BROKERS:
        pytest.fail(
            f"kind {kind!r} publishes but has no broker harness: add one to tests/contract/brokers.py"
        )
    return BROKERS[kind](request)
