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
    # a kind that is also a source (`consume`): a task's `read` of the fresh destination (its
    # columns added by the test), the same for a second one (a dead-letter destination), and
    # how a test puts a raw message there
    source: dict[str, Any] | None = None
    letters: tuple[dict[str, Any], Callable[[], list[Received]]] | None = None
    send: Callable[[bytes, dict[str, Any]], None] | None = None

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
    queue, letters = (f"runner-contract-{uuid.uuid4().hex[:12]}" for _ in range(2))
    for name in (queue, letters):
        channel.queue_declare(name)

    def reader(name: str) -> Callable[[], list[Received]]:
        def read() -> list[Received]:
            out = []
            while True:
                method, properties, body = channel.basic_get(name, auto_ack=True)
                if method is None:
                    return out
                out.append(Received(dict(properties.headers or {}), body, properties.message_id))

        return read

    def send(body: bytes, headers: dict[str, Any]) -> None:
        channel.basic_publish("", queue, body, pika.BasicProperties(headers=headers))

    def clean() -> None:
        for name in (queue, letters):
            channel.queue_delete(name)
        connection.close()

    spec = {"type": "rabbitmq", "host": "127.0.0.1"}
    return Broker(
        "rabbitmq",
        spec,
        {"routing_key": queue},
        reader(queue),
        [clean],
        source={"queue": queue, "max_wait": "0.3s"},
        letters=({"dead_letter": letters}, reader(letters)),
        send=send,
    )


BROKERS: dict[str, Callable[[pytest.FixtureRequest], Broker]] = {"rabbitmq": _rabbitmq}


def make_broker(kind: str, request: pytest.FixtureRequest) -> Broker:
    if kind not in BROKERS:
        pytest.fail(
            f"kind {kind!r} publishes but has no broker harness: add one to tests/contract/brokers.py"
        )
    return BROKERS[kind](request)
