"""The `mqtt` kind. As a target, a task publishes a message per changed row (and per deleted key) to an MQTT
topic (a template over the row) over MQTT 5, whose user properties carry the headers, at QoS 1
(at least once: the broker acknowledges each message with a PUBACK) or 2 (exactly once between
runner and the broker: PUBREC, PUBREL, PUBCOMP). A batch is committed once the broker has
acknowledged every message of it. QoS 0 is refused: nothing acknowledges it. Through Eclipse
Paho, whose network loop runs in a thread of its own.

MQTT keeps a message only for the subscribers that match its topic (and, with `retain`, the
last one per topic for those that subscribe later). A broker that answers a QoS 1 message with
"no matching subscribers" (Mosquitto does) has dropped it: that fails the task, as a RabbitMQ
message no queue takes does, unless the message is retained. At QoS 2 Paho does not pass that
answer on (it comes in the PUBREC), so a message nobody subscribes to is acknowledged all the
same: subscribe first (a persistent session keeps messages while its client is away).

As a source (`changes.strategy: messages`), a task consumes a topic filter through a persistent
session of its own (`read.session`: a fixed client id, MQTT 5 session expiry), subscribed at QoS
1, acknowledging each message (Paho's manual acknowledgement) only after the target committed
its batch: a run killed in between gets the batch again from the broker. A session keeps
messages only from the moment it subscribed: the task's first run makes it, and what was
published before is not kept for it. MQTT does not say how many messages a session holds.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from runner.connectors import registry
from runner.connectors.base import Capabilities, Connector, WriteContext
from runner.connectors.messaging.connection import CONFIRM_TIMEOUT, CONNECT_TIMEOUT, BrokerConnection
from runner.connectors.messaging.consumer import MessageConsumer, Received
from runner.connectors.messaging.model import MessageRead, MessageWrite, check_templates
from runner.connectors.messaging.render import Message
from runner.connectors.messaging.writer import MessageWriter
from runner.definitions.models import Duration, seconds
from runner.definitions.tasks import ReadModel, WriteModel
from runner.errors import RunnerError, TerminalError, TransientError
from runner.streams.types import Column

UNSENT = 10_000  # messages handed to Paho and not yet acknowledged before `send` waits (the memory bound)
NO_MATCHING_SUBSCRIBERS = 0x10
REFUSED_CREDENTIALS = (0x86, 0x87)  # Bad user name or password, Not authorized
MAX_RECEIVE = 65_535  # MQTT 5's Receive Maximum is a two-byte integer
NEVER_EXPIRES = 0xFFFFFFFF  # a session expiry interval of this many seconds: the session never expires


class MqttConnection(BrokerConnection):
    """An MQTT 5 broker. Without `username`, an anonymous client."""

    type: Literal["mqtt"] = Field(description="An MQTT 5 broker.")
    port: int = Field(1883, ge=1, le=65535, description="Its port: 1883, or 8883 with TLS.")
    client_id_prefix: str = Field(
        "runner-",
        min_length=1,
        max_length=64,
        pattern=r"^[0-9A-Za-z_.:/-]+$",
        description="Each run's client id is this prefix and a random suffix: brokers whose ACLs name "
        "clients by id can match the prefix. Two clients never share an id (a broker disconnects the "
        "older one).",
    )


class MqttWrite(MessageWrite):
    """Where a task's messages go in MQTT, and how they are delivered."""

    topic: str = Field(
        min_length=1,
        description="The topic to publish to (a template over the row, e.g. `shop/orders/{{ row.region }}`).",
    )
    delete_topic: str | None = Field(
        None,
        min_length=1,
        description="The topic of a deleted key's message (a template over the key columns); unset: "
        "`topic`, which may then name key columns only.",
    )
    qos: int = Field(
        1,
        description="1: at least once (a PUBACK confirms each message); 2: exactly once between runner and "
        "the broker (a PUBCOMP confirms it). 0 is refused: nothing would confirm a message.",
    )
    retain: bool = Field(
        False,
        description="The broker keeps the last message of each topic for clients that subscribe later "
        "(a topic per row keeps each row's latest state).",
    )

    @field_validator("topic", "delete_topic")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is not None:
            check_templates(value)
        return value

    @field_validator("qos")
    @classmethod
    def _confirmed(cls, qos: int) -> int:
        if qos == 0:
            raise ValueError(
                "QoS 0 is never acknowledged, so runner could not know a message arrived before moving "
                "the task on: use 1 (at least once) or 2 (exactly once)"
            )
        if qos not in (1, 2):
            raise ValueError("MQTT's QoS levels are 0, 1 and 2: use 1 or 2")
        return qos

    def describe(self) -> str:
        return self.topic

    def templates(self, op: str) -> dict[str, str]:
        topic = self.delete_topic if op == "delete" and self.delete_topic else self.topic
        return {"topic": topic}


def _no_wildcards(topic: str) -> bool:
    return bool(topic) and not any(c in topic for c in "+#\0")


class MqttRead(MessageRead):
    """The topics a task consumes in MQTT, through a persistent session of its own."""

    METADATA: ClassVar[frozenset[str]] = MessageRead.METADATA | {"topic", "redelivered"}

    topic: str = Field(
        min_length=1,
        description="The topic filter to subscribe to, at QoS 1 (wildcards allowed: `shop/orders/#`).",
    )
    session: str = Field(
        min_length=1,
        max_length=128,
        pattern=r"^[0-9A-Za-z_.:/-]+$",
        description="The name of the task's persistent session: the client id is the connection's "
        "`client_id_prefix` and this name, the same every run. The broker keeps the messages of the "
        "topic for the session from its first run on (not before), and while no run is going; give "
        "every consuming task a session of its own.",
    )
    session_expiry: Duration | Literal["never"] = Field(
        "7d",
        description="How long the broker keeps the session (and its messages) after a run ends, e.g. "
        "'1d', or 'never'; the broker's own limits apply too (Mosquitto's `max_queued_messages`, "
        "1000 messages by default, beyond which it drops them).",
    )

    @field_validator("topic")
    @classmethod
    def _filter(cls, topic: str) -> str:
        parts = topic.split("/")
        if "\0" in topic or any(("+" in p and p != "+") or ("#" in p and p != "#") for p in parts):
            raise ValueError(f"{topic!r} is no topic filter: + and # stand for whole levels (a/+/c, a/#)")
        if "#" in parts[:-1]:
            raise ValueError(f"{topic!r} is no topic filter: # comes last")
        return topic

    @model_validator(mode="after")
    def _letters_apart(self) -> MqttRead:
        import paho.mqtt.client as mqtt

        if self.dead_letter is not None:
            if not _no_wildcards(self.dead_letter):
                raise ValueError(
                    f"dead_letter: {self.dead_letter!r} is a topic, without the wildcards + and #"
                )
            if mqtt.topic_matches_sub(self.topic, self.dead_letter):
                raise ValueError(
                    f"dead_letter: {self.dead_letter!r} matches the topic consumed ({self.topic!r}): "
                    "the task would consume its own dead letters"
                )
        return self

    def expiry_seconds(self) -> int:
        if self.session_expiry == "never":
            return NEVER_EXPIRES
        return min(NEVER_EXPIRES - 1, max(1, int(seconds(self.session_expiry))))

    def describe(self) -> str:
        return f"topic {self.topic}"


class MqttPublisher:
    """A client whose network loop runs in Paho's thread. `send` hands messages to Paho (which
    keeps at most 20 unacknowledged on the wire, its default and Mosquitto's Receive Maximum:
    Paho does not read the broker's), `confirm` waits for each one's
    acknowledgement; `refused` keeps the broker's refusals (set in the loop's thread)."""

    def __init__(self, name: str, spec: MqttConnection, base_dir: Path, write: MqttWrite):
        self.name, self.write = name, write
        self.unconfirmed: list[tuple[Any, str]] = []  # (Paho's MQTTMessageInfo, topic), in order
        self.refused: dict[int, Any] = {}  # message id (mid) -> the broker's reason code
        self.lost: str | None = None
        self.client = _connect(name, spec, base_dir)
        self.client.on_publish = self._acknowledged
        self.client.on_disconnect = self._disconnected

    def _acknowledged(self, client: Any, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        if reason.is_failure or (reason.value == NO_MATCHING_SUBSCRIBERS and not self.write.retain):
            self.refused[mid] = reason

    def _disconnected(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self.lost = str(reason)

    def send(self, messages: list[Message]) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        for m in messages:
            topic = m.destination["topic"]
            if not topic or "+" in topic or "#" in topic or "\0" in topic:
                raise TerminalError(
                    f"write.topic: {topic!r} (message {m.id}) is no topic to publish to: not empty, "
                    "without the wildcards + and #"
                )
            properties = Properties(PacketTypes.PUBLISH)
            properties.UserProperty = list(m.all_headers().items())
            properties.ContentType = "application/json" if m.json else "text/plain"
            info = self.client.publish(topic, m.body, self.write.qos, self.write.retain, properties)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise TransientError(
                    f"connection {self.name!r}: could not publish to {topic!r}: {mqtt.error_string(info.rc)}"
                    + (f" ({self.lost})" if self.lost else "")
                )
            self.unconfirmed.append((info, topic))
            if len(self.unconfirmed) >= UNSENT:
                self._settle(len(self.unconfirmed) // 2)

    def confirm(self) -> None:
        """Return once the broker has acknowledged every message sent.

        Raises:
            TerminalError: the broker refused a message (not authorized, no subscriber matched).
            TransientError: the connection was lost, or acknowledgements did not come in time.
        """
        self._settle(len(self.unconfirmed))

    def _settle(self, count: int) -> None:
        """Wait for the oldest `count` unconfirmed messages' acknowledgements, then forget them."""
        for info, topic in self.unconfirmed[:count]:
            try:
                info.wait_for_publish(CONFIRM_TIMEOUT)
            except (RuntimeError, ValueError) as exc:
                raise TransientError(
                    f"connection {self.name!r}: publishing to {topic!r} failed: {exc}"
                ) from None
            if not info.is_published():
                why = f"within {CONFIRM_TIMEOUT:.0f} s"
                if self.lost:
                    why = f"before the connection was lost ({self.lost})"
                raise TransientError(
                    f"connection {self.name!r}: the broker did not acknowledge a message to {topic!r} {why}"
                )
            reason = self.refused.pop(info.mid, None)
            if reason is not None:
                raise self._refusal(reason, topic)
        del self.unconfirmed[:count]

    def _refusal(self, reason: Any, topic: str) -> RunnerError:
        if reason.value == NO_MATCHING_SUBSCRIBERS:
            return TransientError(
                f"connection {self.name!r}: the broker dropped a message to {topic!r}: no subscriber matches "
                "it (subscribe first, or set write.retain)"
            )
        return TerminalError(f"connection {self.name!r}: the broker refused a message to {topic!r}: {reason}")

    def close(self) -> None:
        self.client.on_disconnect = None
        self.client.disconnect()
        self.client.loop_stop()


class MqttFetcher:
    """The task's session: connected without a clean start, so the broker hands out first the
    messages it sent before and never had acknowledged, then those it kept while no run was
    going, then new ones; subscribed (again: a subscription is kept by the session, and a
    retained message is sent only to a subscription that is new). Paho's loop thread puts each
    message in `inbox`; at most a batch is unacknowledged at once (the Receive Maximum the
    client states), and each is acknowledged, in order, once the target committed its batch."""

    def __init__(self, name: str, spec: MqttConnection, base_dir: Path, read: MqttRead, batch_size: int):
        import paho.mqtt.client as mqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties
        from paho.mqtt.subscribeoptions import SubscribeOptions

        self.name, self.read = name, read
        self.wait = max(0.01, seconds(read.max_wait))
        self.inbox: deque[Any] = deque()
        self.arrived = threading.Condition()
        self.unacknowledged: deque[Any] = deque()  # fetched, in order, not acknowledged yet
        self.lost: str | None = None
        self.refused: dict[int, Any] = {}
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = read.expiry_seconds()
        properties.ReceiveMaximum = max(1, min(batch_size, MAX_RECEIVE))
        self.client = _connect(
            name,
            spec,
            base_dir,
            client_id=f"{spec.client_id_prefix}{read.session}",
            properties=properties,
            prepare=self._prepare,
        )
        self.notice = (
            None
            if self.session_present
            else f"MQTT session {read.session!r} made now: the broker keeps the messages of {read.topic!r} "
            "for it from now on (what was published before is not kept)"
        )
        subscribed = threading.Event()
        granted: list[Any] = []

        def on_subscribe(client: Any, userdata: Any, mid: int, reasons: list[Any], properties: Any) -> None:
            granted.extend(reasons)
            subscribed.set()

        self.client.on_subscribe = on_subscribe
        options = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
        rc, _ = self.client.subscribe(read.topic, options=options)
        if rc != mqtt.MQTT_ERR_SUCCESS or not subscribed.wait(CONNECT_TIMEOUT):
            self.close()
            raise TransientError(f"connection {name!r}: the MQTT broker did not confirm the subscription")
        if not granted or granted[0].is_failure:
            self.close()
            raise TerminalError(
                f"connection {name!r}: the MQTT broker refused the subscription to {read.topic!r}: "
                f"{granted[0] if granted else 'no answer'}"
            )

    def _prepare(self, client: Any) -> None:
        client.manual_ack_set(True)
        client.on_message = self._received
        client.on_publish = self._acknowledged
        client.on_disconnect = self._disconnected
        self.session_present = False

        def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
            self.session_present = bool(flags.session_present)

        client.on_connect = on_connect

    def _received(self, client: Any, userdata: Any, message: Any) -> None:
        with self.arrived:
            self.inbox.append(message)
            self.arrived.notify_all()

    def _acknowledged(self, client: Any, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        if reason.is_failure or reason.value == NO_MATCHING_SUBSCRIBERS:
            self.refused[mid] = reason

    def _disconnected(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        with self.arrived:
            self.lost = str(reason)
            self.arrived.notify_all()

    def fetch(self, count: int, deadline: float | None = None) -> list[Received]:
        out: list[Received] = []
        quiet = time.monotonic() + self.wait
        with self.arrived:
            while len(out) < count:
                if self.lost is not None:
                    raise TransientError(f"connection {self.name!r}: lost the MQTT broker ({self.lost})")
                if self.inbox:
                    message = self.inbox.popleft()
                    self.unacknowledged.append(message)
                    out.append(_received(message))
                    quiet = time.monotonic() + self.wait
                    continue
                until = quiet if deadline is None else min(quiet, deadline)
                left = until - time.monotonic()
                if left <= 0:
                    break
                self.arrived.wait(left)
        return out

    def acknowledge(self, through: Received) -> None:
        """PUBACK each message fetched up to `through`, in the order they came (as MQTT wants)."""
        import paho.mqtt.client as mqtt

        while self.unacknowledged:
            message = self.unacknowledged.popleft()
            rc = self.client.ack(message.mid, message.qos)
            if rc != mqtt.MQTT_ERR_SUCCESS or self.lost is not None:
                # the batch is committed: the broker hands its messages out again, upserted again
                raise TransientError(
                    f"connection {self.name!r}: could not acknowledge: {self.lost or mqtt.error_string(rc)}"
                )
            if message is through.token:
                break

    def dead_letter(self, message: Received, reason: str) -> None:
        """Publish the message to `read.dead_letter` at QoS 1 with the reason, and wait for the
        broker's PUBACK; one no subscriber takes is dropped by the broker, so that fails."""
        import paho.mqtt.client as mqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        topic = self.read.dead_letter or ""
        properties = Properties(PacketTypes.PUBLISH)
        properties.UserProperty = [*message.headers.items(), ("runner-error", reason[:1000])]
        info = self.client.publish(topic, message.body, 1, False, properties)
        if info.rc == mqtt.MQTT_ERR_SUCCESS:
            with contextlib.suppress(RuntimeError, ValueError):  # told apart just below
                info.wait_for_publish(CONFIRM_TIMEOUT)
        if info.rc != mqtt.MQTT_ERR_SUCCESS or not info.is_published():
            raise TransientError(
                f"connection {self.name!r}: the broker did not take a dead letter to {topic!r}"
                + (f" ({self.lost})" if self.lost else "")
            )
        refusal = self.refused.pop(info.mid, None)
        if refusal is not None:
            if refusal.value == NO_MATCHING_SUBSCRIBERS:
                raise TransientError(
                    f"connection {self.name!r}: no one subscribes to the dead-letter topic {topic!r}, so the "
                    "broker would drop the message: subscribe to it first (a persistent session)"
                )
            raise TerminalError(
                f"connection {self.name!r}: the broker refused a dead letter to {topic!r}: {refusal}"
            )

    def close(self) -> None:
        """Disconnect; what was not acknowledged stays in the session, handed out again next run."""
        self.client.on_disconnect = None
        self.client.disconnect()
        self.client.loop_stop()


def _received(message: Any) -> Received:
    headers = dict(getattr(message.properties, "UserProperty", None) or [])
    return Received(
        message.payload,
        headers,
        {"message_id": headers.get("runner-id"), "topic": message.topic, "redelivered": bool(message.dup)},
        message,
    )


def _connect(
    name: str,
    spec: MqttConnection,
    base_dir: Path,
    client_id: str | None = None,
    properties: Any = None,
    prepare: Any = None,
) -> Any:
    """A client that has had the broker's CONNACK, its network loop running. Without
    `client_id`, a clean session of a random id (nothing of an earlier run's is resent by the
    broker or the client); with it, that client's persistent session (`properties` state its
    expiry), and `prepare(client)` sets the callbacks first: messages come right after CONNACK."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id or f"{spec.client_id_prefix}{uuid.uuid4().hex[:16]}",
        protocol=mqtt.MQTTv5,
    )
    client.connect_timeout = CONNECT_TIMEOUT
    if spec.username is not None:
        client.username_pw_set(spec.username, spec.secret(base_dir))
    context = spec.ssl_context(base_dir)
    if context is not None:
        client.tls_set_context(context)
    answered = threading.Event()
    connack: dict[str, Any] = {}
    if prepare is not None:
        prepare(client)
    then = client.on_connect

    def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if then is not None:
            then(client, userdata, flags, reason, properties)
        connack["reason"] = reason
        answered.set()

    client.on_connect = on_connect
    try:
        client.connect(
            spec.host, spec.port, keepalive=60, clean_start=client_id is None, properties=properties
        )
    except (OSError, ValueError) as exc:
        raise TransientError(
            f"connection {name!r}: cannot reach the MQTT broker at {spec.host}:{spec.port}: {exc}"
        ) from None
    client.loop_start()
    if not answered.wait(CONNECT_TIMEOUT):
        client.loop_stop()
        raise TransientError(
            f"connection {name!r}: the MQTT broker at {spec.host}:{spec.port} did not answer within "
            f"{CONNECT_TIMEOUT:.0f} s"
        )
    reason = connack["reason"]
    if reason.is_failure:
        client.loop_stop()
        if reason.value in REFUSED_CREDENTIALS:
            raise TerminalError(f"connection {name!r}: the MQTT broker refused the credentials ({reason})")
        raise TerminalError(f"connection {name!r}: the MQTT broker refused the connection: {reason}")
    return client


class MqttConnector(Connector):
    """An MQTT connection as a job's source (a session consumed) or target (messages published)."""

    capabilities: ClassVar[Capabilities] = Capabilities(publish=True, consume=True)
    spec: MqttConnection

    def waiting(self, read: ReadModel) -> int | None:
        """Not known: MQTT has no way to ask how many messages a session holds."""
        return None

    def consume(self, read: ReadModel, batch_size: int) -> MessageConsumer:
        assert isinstance(read, MqttRead)  # the kind's read model
        batch = min(batch_size, MAX_RECEIVE)
        return MessageConsumer(MqttFetcher(self.name, self.spec, self.base_dir, read, batch), read, batch)

    def check_connection(self) -> None:
        _close(_connect(self.name, self.spec, self.base_dir))

    def open_row_writer(
        self, write: WriteModel, columns: list[Column], context: WriteContext
    ) -> MessageWriter:
        assert isinstance(write, MqttWrite)  # the kind's write model

        def connect() -> MqttPublisher:
            return MqttPublisher(self.name, self.spec, self.base_dir, write)

        return MessageWriter(connect, write, columns, context)


def _close(client: Any) -> None:
    client.disconnect()
    client.loop_stop()


def test(name: str, spec: MqttConnection, base_dir: Path) -> str:
    """`runner connections test`: connect and sign in (MQTT 5); the broker says no more of itself."""
    _close(_connect(name, spec, base_dir))
    return f"MQTT 5 broker at {spec.host}:{spec.port}"


registry.register(
    registry.Kind(
        "mqtt",
        MqttConnection,
        MqttConnector,
        read=MqttRead,
        write=MqttWrite,
        test=test,
    )
)
