"""The bundled example `jobs.d/orders-to-rabbitmq.yaml` publishes the demo shop's orders to a
real RabbitMQ: every order once, then only what changed, a deleted order on its own routing key."""

from __future__ import annotations

import json
import sqlite3
import uuid

import pytest

from runner import services
from tests.conftest import _unreachable


@pytest.fixture
def queue():
    """A queue of its own bound to the example's routing keys on amq.topic."""
    import pika
    from pika import exceptions

    try:
        connection = pika.BlockingConnection(
            pika.ConnectionParameters("127.0.0.1", 5672, connection_attempts=1)
        )
    except exceptions.AMQPError as exc:
        _unreachable("RabbitMQ at 127.0.0.1:5672", exc)
    channel = connection.channel()
    name = f"runner-example-{uuid.uuid4().hex[:12]}"
    channel.queue_declare(name)
    channel.queue_bind(name, "amq.topic", "shop.orders.#")

    def take() -> list[tuple[str, dict, dict]]:
        out = []
        while (got := channel.basic_get(name, auto_ack=True))[0] is not None:
            method, properties, body = got
            out.append((method.routing_key, properties.headers, json.loads(body)))
        return out

    yield take
    channel.queue_delete(name)
    connection.close()


def test_the_example_publishes_every_order_then_only_changes(demo_project, queue):
    services.apply(demo_project.ws)
    first = services.run(demo_project.ws, "orders-to-rabbitmq")
    assert first["status"] == "succeeded", first["error"]
    messages = queue()
    assert len(messages) == 2000 == first["tasks"][0]["upserted"]
    key, headers, body = next(m for m in messages if m[2]["order"] == 1)
    assert key == f"shop.orders.{body['status']}" and headers["source"] == "shop"
    assert set(body) == {"order", "customer", "status", "amount", "summary"}
    assert isinstance(body["order"], int) and isinstance(body["amount"], str)  # a decimal: exact digits

    db = sqlite3.connect(demo_project.root / "demo/data/shop.db")
    db.execute("UPDATE orders SET status = 'escalated' WHERE id = 1")
    db.execute("DELETE FROM orders WHERE id = 2")
    db.commit()
    db.close()
    second = services.run(demo_project.ws, "orders-to-rabbitmq")
    assert (second["tasks"][0]["upserted"], second["tasks"][0]["deleted"]) == (1, 1)
    got = sorted((key, headers["runner-op"], body) for key, headers, body in queue())
    assert got[0] == ("shop.orders.deleted", "delete", {"id": 2})
    assert got[1][:2] == ("shop.orders.escalated", "upsert") and got[1][2]["order"] == 1
