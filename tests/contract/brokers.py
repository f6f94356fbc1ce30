"""Each publishing kind's part of the messaging contract suite: a fresh destination on a real
broker (a queue of its own), the `write` of a task publishing there, and the messages it holds,
read back with the broker's own client, so what a consumer would see is what is checked."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.conftest import _unreachable, rabbitmq_connection


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
    waiting: Callable[[], int] | None = None  # messages not acknowledged yet (none consumed: all)

    def close(self) -> None:
        for clean in self.cleanup:
            clean()


def _rabbitmq(request: pytest.FixtureRequest) -> Broker:
    connection = rabbitmq_connection()
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
        import pika

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
        waiting=lambda: channel.queue_declare(queue, passive=True).method.message_count,
    )


def _redis(request: pytest.FixtureRequest) -> Broker:
    """A stream of its own, read from the entry after the last one read, deleted at the end."""
    import redis
    from redis import exceptions

    client = redis.Redis("127.0.0.1", 6379)
    try:
        client.ping()
    except exceptions.RedisError as exc:
        _unreachable("Redis at 127.0.0.1:6379", exc)
    stream, letters = (f"runner-contract-{uuid.uuid4().hex[:12]}" for _ in range(2))

    def reader(name: str) -> Callable[[], list[Received]]:
        last = ["-"]

        def read() -> list[Received]:
            start = "-" if last[0] == "-" else f"({last[0]}"
            out = []
            for entry, fields in client.xrange(name, start, "+"):
                last[0] = entry.decode()
                headers = {k.decode(): v.decode() for k, v in fields.items() if k != b"payload"}
                out.append(Received(headers, fields[b"payload"], headers.get("runner-id")))
            return out

        return read

    def send(body: bytes, headers: dict[str, Any]) -> None:
        client.xadd(stream, {**headers, "payload": body})

    def waiting() -> int:
        """The consuming task's group (`runner`): entries not delivered to it, and pending."""
        groups = {g["name"].decode(): g for g in client.xinfo_groups(stream)}
        group = groups.get("runner")
        return client.xlen(stream) if group is None else int(group["lag"] or 0) + int(group["pending"])

    def clean() -> None:
        client.delete(stream, letters)
        client.close()

    spec = {"type": "redis", "host": "127.0.0.1"}
    return Broker(
        "redis",
        spec,
        {"stream": stream},
        reader(stream),
        [clean],
        source={"stream": stream, "max_wait": "0.3s"},
        letters=({"dead_letter": letters}, reader(letters)),
        send=send,
        waiting=waiting,
    )


def _nats(request: pytest.FixtureRequest) -> Broker:
    """A JetStream stream of its own taking `runner-contract.<tag>.>`, read by sequence from the
    one after the last read, deleted at the end."""
    import asyncio

    import nats

    loop = asyncio.new_event_loop()

    async def quiet(exc: Exception) -> None:
        pass

    try:
        nc = loop.run_until_complete(
            nats.connect(
                "nats://127.0.0.1:4222",
                connect_timeout=2,
                allow_reconnect=False,
                max_reconnect_attempts=1,  # nats-py's first connection tries twice (0: forever)
                error_cb=quiet,
            )
        )
    except Exception as exc:
        loop.close()
        _unreachable("NATS at 127.0.0.1:4222", exc)
    js = nc.jetstream()
    tag = uuid.uuid4().hex[:12]
    stream = f"runner-contract-{tag}"
    loop.run_until_complete(js.add_stream(name=stream, subjects=[f"runner-contract.{tag}.>"]))
    items, letters = f"runner-contract.{tag}.items", f"runner-contract.{tag}.letters"

    def reader(subject: str) -> Callable[[], list[Received]]:
        seen = [0]

        async def messages() -> list[Received]:
            last = (await js.stream_info(stream)).state.last_seq
            out = []
            for seq in range(seen[0] + 1, last + 1):
                msg = await js.get_msg(stream, seq)
                if msg.subject != subject:
                    continue
                headers = dict(msg.headers or {})
                out.append(Received(headers, msg.data or b"", headers.get("Nats-Msg-Id")))
            seen[0] = last
            return out

        return lambda: loop.run_until_complete(messages())

    def send(body: bytes, headers: dict[str, Any]) -> None:
        loop.run_until_complete(js.publish(items, body, headers=headers or None))

    def waiting() -> int:
        """The consuming task's durable consumer (`runner`): not delivered yet, and pending."""
        from nats.js import errors as js_errors

        try:
            info = loop.run_until_complete(js.consumer_info(stream, "runner"))
        except js_errors.NotFoundError:
            return sum(1 for _ in reader(items)())
        return int(info.num_pending or 0) + int(info.num_ack_pending or 0)

    def clean() -> None:
        loop.run_until_complete(js.delete_stream(stream))
        loop.run_until_complete(nc.close())
        loop.close()

    spec = {"type": "nats", "host": "127.0.0.1"}
    return Broker(
        "nats",
        spec,
        {"subject": items},
        reader(items),
        [clean],
        source={"stream": stream, "subject": items, "max_wait": "0.3s"},
        letters=({"dead_letter": letters}, reader(letters)),
        send=send,
        waiting=waiting,
    )


def _mqtt(request: pytest.FixtureRequest) -> Broker:
    """A subscriber (MQTT 5, QoS 1) to topics of its own, `runner-contract/<tag>/#`. Reading
    publishes a marker and takes what arrived before it: Mosquitto hands a subscriber its
    messages in the order it took them, and runner's were acknowledged before the marker.

    As a source: the consuming task's persistent session (`runner-contract-<tag>`), made here
    before any message is sent, as the task's first run would make it; what waits in it is
    counted by connecting as the session and acknowledging nothing."""
    import threading

    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    tag = uuid.uuid4().hex[:12]
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"contract-{tag}", protocol=mqtt.MQTTv5)
    arrived: list[Any] = []
    changed = threading.Condition()

    def on_message(client: Any, userdata: Any, message: Any) -> None:
        with changed:
            arrived.append(message)
            changed.notify_all()

    client.on_message = on_message
    try:
        client.connect("127.0.0.1", 1883)
    except OSError as exc:
        _unreachable("Mosquitto at 127.0.0.1:1883", exc)
    client.loop_start()
    client.subscribe(f"runner-contract/{tag}/#", qos=1)[0]
    marker = f"runner-contract/{tag}/marker"
    items, letters = f"runner-contract/{tag}/items", f"runner-contract/{tag}/letters"
    client.publish(marker, b"subscribed", qos=1).wait_for_publish(10)

    def take(until: bytes) -> list[Any]:
        def position() -> int | None:
            return next((i for i, m in enumerate(arrived) if m.topic == marker and m.payload == until), None)

        with changed:
            assert changed.wait_for(lambda: position() is not None, 10), "the marker never arrived"
            end = position() + 1  # type: ignore[operator]
            taken = arrived[:end]
            del arrived[:end]
        return [m for m in taken if m.topic != marker]

    take(b"subscribed")
    kept: dict[str, list[Received]] = {}  # topic -> taken, not read yet

    def reader(topic: str | None) -> Callable[[], list[Received]]:
        def read() -> list[Received]:
            until = uuid.uuid4().hex.encode()
            client.publish(marker, until, qos=1).wait_for_publish(10)
            for m in take(until):
                headers = dict(getattr(m.properties, "UserProperty", []))
                kept.setdefault(m.topic, []).append(Received(headers, m.payload, headers.get("runner-id")))
            if topic is None:
                return [r for t in list(kept) for r in kept.pop(t)]
            return kept.pop(topic, [])

        return read

    session = f"contract-{tag}"

    def as_session(on_message: Any = None) -> Any:
        """A client of the task's session (its client id), acknowledging nothing."""
        c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"runner-{session}",
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        c.on_message = on_message
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 3600
        c.connect("127.0.0.1", 1883, clean_start=False, properties=properties)
        c.loop_start()
        return c

    first = as_session()  # the session, subscribed before anything is sent
    assert first.subscribe(items, qos=1)[0] == mqtt.MQTT_ERR_SUCCESS
    first.publish(marker, b"session", qos=1).wait_for_publish(10)
    first.disconnect()
    first.loop_stop()

    def send(body: bytes, headers: dict[str, Any]) -> None:
        properties = Properties(PacketTypes.PUBLISH)
        properties.UserProperty = list(headers.items())
        client.publish(items, body, qos=1, properties=properties).wait_for_publish(10)

    def waiting() -> int:
        """What the session would hand out now: counted up to a marker sent to it last (the one
        message acknowledged), the rest left unacknowledged, so kept."""
        got: list[Any] = []
        done = threading.Event()
        end = uuid.uuid4().hex.encode()

        def on_message(c: Any, userdata: Any, message: Any) -> None:
            if message.payload == end:
                c.ack(message.mid, message.qos)
                done.set()
            else:
                got.append(message)

        c = as_session(on_message)
        client.publish(items, end, qos=1).wait_for_publish(10)
        assert done.wait(10), "the marker never came to the session"
        c.disconnect()
        c.loop_stop()
        return len(got)

    def clean() -> None:
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"runner-{session}", protocol=mqtt.MQTTv5)
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 0
        c.connect("127.0.0.1", 1883, clean_start=True, properties=properties)  # the session ends
        c.disconnect()
        client.disconnect()
        client.loop_stop()

    spec = {"type": "mqtt", "host": "127.0.0.1"}
    return Broker(
        "mqtt",
        spec,
        {"topic": items},
        reader(None),
        [clean],
        source={"topic": items, "session": session, "max_wait": "0.3s"},
        letters=({"dead_letter": letters}, reader(letters)),
        send=send,
        waiting=waiting,
    )


def _http(request: pytest.FixtureRequest) -> Broker:
    """A REST API of its own on loopback (`tests.http.server`): a request per message, PUT to
    `/customers/<id>` (a delete: DELETE there), its headers and body kept as the API got them."""
    from tests.http.server import TOKEN, Api, serve

    request.getfixturevalue("monkeypatch").setenv("API_TOKEN", TOKEN)
    api = Api()
    served = serve(api)
    base = served.__enter__()

    def read() -> list[Received]:
        with api.lock:
            taken, api.received[:] = list(api.received), []
        return [Received(r.headers, r.body, r.headers.get("runner-id")) for r in taken]

    spec = {
        "type": "http",
        "base_url": f"{base}/api",
        "auth": {"type": "bearer", "token": "${env:API_TOKEN}"},
    }
    write = {"method": "PUT", "path": "/customers/{{ row.id }}"}
    return Broker("http", spec, write, read, [lambda: served.__exit__(None, None, None)])


BROKERS: dict[str, Callable[[pytest.FixtureRequest], Broker]] = {
    "http": _http,
    "mqtt": _mqtt,
    "rabbitmq": _rabbitmq,
    "redis": _redis,
    "nats": _nats,
}


def make_broker(kind: str, request: pytest.FixtureRequest) -> Broker:
    if kind not in BROKERS:
        pytest.fail(
            f"kind {kind!r} publishes but has no broker harness: add one to tests/contract/brokers.py"
        )
    return BROKERS[kind](request)
