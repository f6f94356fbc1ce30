"""The `mqtt` kind beyond the contract suite: topics per row at QoS 2, a message no subscriber
matches failing the task unless retained, retained messages for later subscribers, the write's
rules (QoS 0 refused), and `runner connections test`, on the Mosquitto of this machine. As a
source: the task's persistent session, made by its first run, keeps what comes after it."""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from runner import services
from tests.conftest import _unreachable
from tests.messaging.conftest import define, problems

SPEC = {"type": "mqtt", "host": "127.0.0.1"}


class Subscriber:
    """An MQTT 5 client subscribed (QoS 2) to a topic filter, keeping what arrives."""

    def __init__(self, topic: str):
        import paho.mqtt.client as mqtt

        self.arrived: list[Any] = []
        self.changed = threading.Condition()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex[:12]}", protocol=mqtt.MQTTv5
        )
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *args: subscribed.set()
        try:
            self.client.connect("127.0.0.1", 1883)
        except OSError as exc:
            _unreachable("Mosquitto at 127.0.0.1:1883", exc)
        self.client.loop_start()
        self.client.subscribe(topic, qos=2)
        assert subscribed.wait(10)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self.changed:
            self.arrived.append(message)
            self.changed.notify_all()

    def wait(self, count: int) -> list[Any]:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.arrived) >= count, 10), self.arrived
            return list(self.arrived)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def topic() -> Iterator[str]:
    prefix = f"runner-test/{uuid.uuid4().hex[:12]}"
    yield prefix
    # retained messages are cleared by an empty retained message on their topics
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", 1883)
    client.loop_start()
    for i in (1, 2, 3):
        client.publish(f"{prefix}/orders/{i}", b"", qos=1, retain=True).wait_for_publish(10)
    client.disconnect()
    client.loop_stop()


def test_topics_per_row_at_qos_2_with_headers_as_user_properties(topic, publish):
    subscriber = Subscriber(f"{topic}/#")
    try:
        write = {"topic": topic + "/{{ row.region }}", "qos": 2, "headers": {"x-region": "{{ row.region }}"}}
        result = publish(SPEC, write)
        assert (result["status"], result["upserted"]) == ("succeeded", 3), result["error"]
        got = subscriber.wait(3)
    finally:
        subscriber.close()
    assert sorted((m.topic, json.loads(m.payload)["id"]) for m in got) == [
        (f"{topic}/north", 1),
        (f"{topic}/north", 3),
        (f"{topic}/south", 2),
    ]
    for m in got:
        properties = dict(m.properties.UserProperty)
        assert properties["x-region"] == json.loads(m.payload)["region"]
        assert properties["runner-op"] == "upsert" and len(properties["runner-id"]) == 32
        assert m.properties.ContentType == "application/json" and m.qos == 2


def test_a_message_no_subscriber_matches_fails_the_task_and_is_sent_again(topic, publish):
    failed = publish(SPEC, {"topic": f"{topic}/orders"})
    assert failed["status"] == "failed"
    assert f"the broker dropped a message to '{topic}/orders': no subscriber matches it" in failed["error"]
    subscriber = Subscriber(f"{topic}/#")
    try:
        second = publish()
        assert (second["status"], second["upserted"]) == ("succeeded", 3)  # nothing was recorded before
        assert sorted(json.loads(m.payload)["id"] for m in subscriber.wait(3)) == [1, 2, 3]
    finally:
        subscriber.close()


def test_retained_messages_keep_each_rows_state_for_later_subscribers(topic, publish, shop):
    result = publish(SPEC, {"topic": topic + "/orders/{{ row.id }}", "retain": True})
    assert (result["status"], result["upserted"]) == ("succeeded", 3), result["error"]
    shop.execute("UPDATE orders SET region = 'west' WHERE id = 2")
    shop.commit()
    assert publish()["upserted"] == 1
    subscriber = Subscriber(f"{topic}/orders/+")  # subscribes after both runs: gets what is retained
    try:
        got = {m.topic: json.loads(m.payload) for m in subscriber.wait(3)}
    finally:
        subscriber.close()
    assert {t: b["region"] for t, b in got.items()} == {
        f"{topic}/orders/1": "north",
        f"{topic}/orders/2": "west",
        f"{topic}/orders/3": "north",
    }


@pytest.mark.parametrize(
    ("write", "message"),
    [
        ({"topic": "a", "qos": 0}, "QoS 0 is never acknowledged"),
        ({"topic": "a", "qos": 3}, "MQTT's QoS levels are 0, 1 and 2"),
        ({"topic": "a-{{ row.x"}, "invalid template"),
    ],
)
def test_a_write_is_checked_with_the_kinds_rules(project, shop, write, message):
    define(project, SPEC, write)
    (p,) = problems(project)
    assert p.location.field.startswith("spec.tasks[0].write")
    assert message in p.message


def test_a_wildcard_rendered_into_a_topic_fails_the_task(topic, publish, shop):
    shop.execute("UPDATE orders SET region = '#' WHERE id = 1")
    shop.commit()
    failed = publish(SPEC, {"topic": topic + "/{{ row.region }}"})
    assert failed["status"] == "failed" and "is no topic to publish to" in failed["error"]


def test_connections_test_signs_in(project, shop):
    define(project, SPEC, {"topic": "a"})
    services.apply(project.ws)
    (result,) = services.connections_test(project.ws, "mq")
    if not result["ok"]:
        _unreachable("Mosquitto at 127.0.0.1:1883", RuntimeError(result["checks"][0]["detail"]))
    assert result["server"] == "MQTT 5 broker at 127.0.0.1:1883"
    define(project, {**SPEC, "port": 1}, {"topic": "a"})
    services.apply(project.ws)
    (result,) = services.connections_test(project.ws, "mq")
    assert not result["ok"] and "cannot reach the MQTT broker at 127.0.0.1:1" in result["checks"][0]["detail"]


def _consumer(project, read: dict[str, Any]) -> None:
    """A job `load` consuming `read` from `mq` into the table `orders` of dst.db."""
    head = "apiVersion: runner/v1\nkind: Connection\nmetadata: {name: mq}\n"
    project.write("connections.d/mq.yaml", f"{head}spec: {json.dumps(SPEC)}\n")
    project.connection("dst", "sqlite", "sqlite:///dst.db")
    task = {
        "name": "orders",
        "read": {"columns": {"id": "bigint", "region": "text"}, "max_wait": "0.3s", **read},
        "write": {"table": "orders", "keys": ["id"]},
        "changes": {"strategy": "messages"},
    }
    project.job("load", "mq", "dst", f"- {json.dumps(task)}")


def _publish(topic: str, *rows: dict[str, Any]) -> None:
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", 1883)
    client.loop_start()
    for row in rows:
        client.publish(topic, json.dumps(row), qos=1).wait_for_publish(10)
    client.disconnect()
    client.loop_stop()


def test_the_first_run_makes_the_session_which_keeps_what_comes_after(project, topic):
    session = f"test-{uuid.uuid4().hex[:12]}"
    _consumer(project, {"topic": f"{topic}/orders/+", "session": session, "session_expiry": "1h"})
    services.apply(project.ws)
    _publish(f"{topic}/orders/eu", {"id": 1, "region": "before the session"})
    first = services.run(project.ws, "load")
    assert (first["status"], first["tasks"][0]["rows_read"]) == ("succeeded", 0), first["error"]
    log = services.logs(project.ws, first["run_id"])
    assert any(f"MQTT session '{session}' made now" in e["message"] for e in log), log
    _publish(f"{topic}/orders/eu", {"id": 2, "region": "eu"}, {"id": 3, "region": "eu"})
    _publish(f"{topic}/orders/us", {"id": 2, "region": "us"})
    second = services.run(project.ws, "load")
    assert (second["status"], second["tasks"][0]["rows_read"]) == ("succeeded", 3), second["error"]
    db = sqlite3.connect(project.root / "dst.db")
    assert db.execute("SELECT id, region FROM orders ORDER BY id").fetchall() == [(2, "us"), (3, "eu")]
    db.close()
    (task,) = services.tasks(project.ws, "load")
    assert task["lag"] == {"messages_waiting": None}  # MQTT does not say what a session holds


@pytest.mark.parametrize(
    ("read", "message"),
    [
        ({"topic": "a/b#", "session": "s"}, "# stand for whole levels"),
        ({"topic": "a/#/b", "session": "s"}, "# comes last"),
        (
            {"topic": "a/#", "session": "s", "bad_messages": "dead_letter", "dead_letter": "a/dead"},
            "would consume its own dead letters",
        ),
        (
            {"topic": "a", "session": "s", "bad_messages": "dead_letter", "dead_letter": "d/+"},
            "without the wildcards",
        ),
        ({"topic": "a", "session": "two words"}, "should match pattern"),
        ({"topic": "a"}, "required field is missing"),
    ],
)
def test_a_read_is_checked_with_the_kinds_rules(project, read, message):
    _consumer(project, read)
    (p,) = problems(project)
    assert p.location.field.startswith("spec.tasks[0].read"), p
    assert message in p.message
