"""The bundled examples on a real RabbitMQ: `jobs.d/orders-to-rabbitmq.yaml` publishes the demo
shop's orders (every order once, then only what changed, a deleted order on its own routing
key) and `jobs.d/orders-from-rabbitmq.yaml` loads them into the warehouse."""

from __future__ import annotations

import json
import sqlite3
import uuid

import pytest

from runner import services
from tests.conftest import rabbitmq_connection


@pytest.fixture
def queue():
    """A queue of its own bound to the example's routing keys on amq.topic."""
    connection = rabbitmq_connection()
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


def _publishes_every_order_then_only_changes(demo_project, queue) -> None:
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
    assert got[0] == ("shop.orders.deleted", "delete", {"order": 2})  # the delete_payload
    assert got[1][:2] == ("shop.orders.escalated", "upsert") and got[1][2]["order"] == 1


def test_the_examples_publish_the_orders_and_load_them_back(demo_project, queue):
    """One test: both publish to amq.topic, where every queue bound to the orders' keys (this
    test's own and the examples' `shop-orders`) gets a copy."""
    connection = rabbitmq_connection()
    channel = connection.channel()
    for name in ("shop-orders", "shop-orders-bad"):  # the examples' own names: fresh for this test
        channel.queue_delete(name)
        channel.queue_declare(name)
    channel.queue_bind("shop-orders", "amq.topic", "shop.orders.#")
    try:
        services.apply(demo_project.ws)
        _publishes_every_order_then_only_changes(demo_project, queue)  # 2,000, then 1 and 1
        shop = sqlite3.connect(demo_project.root / "demo/data/shop.db")
        channel.basic_publish("", "shop-orders", b'{"order": "seven"}')  # a message that does not fit
        (waiting,) = services.tasks(demo_project.ws, "orders-from-rabbitmq")
        assert waiting["lag"] == {"messages_waiting": 2003}  # the consuming task's lag: its queue
        loaded = services.run(demo_project.ws, "orders-from-rabbitmq")
        assert loaded["status"] == "succeeded", loaded["error"]
        assert loaded["tasks"][0]["rows_read"] == 2002 and loaded["tasks"][0]["deleted"] == 1
        warehouse = sqlite3.connect(demo_project.root / "demo/data/warehouse.db")
        got = warehouse.execute(
            "SELECT id, customer_id, status, amount FROM order_events ORDER BY id"
        ).fetchall()
        want = shop.execute("SELECT id, customer_id, status, amount FROM orders ORDER BY id").fetchall()
        assert got == want and len(got) == 1999
        assert services.tasks(demo_project.ws, "orders-from-rabbitmq")[0]["lag"] == {"messages_waiting": 0}
        method, properties, body = channel.basic_get("shop-orders-bad", auto_ack=True)
        assert body == b'{"order": "seven"}' and "column 'id'" in properties.headers["runner-error"]
    finally:
        for name in ("shop-orders", "shop-orders-bad"):
            channel.queue_delete(name)
        connection.close()
