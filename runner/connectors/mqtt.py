"""The `mqtt` kind: a task publishes a message per changed row (and per deleted key) to an MQTT
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
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from runner.connectors import registry
from runner.connectors.base import Capabilities, Connector, WriteContext
from runner.connectors.messaging.connection import CONFIRM_TIMEOUT, CONNECT_TIMEOUT, BrokerConnection
from runner.connectors.messaging.model import MessageWrite, check_templates
from runner.connectors.messaging.render import Message
from runner.connectors.messaging.writer import MessageWriter
from runner.definitions.tasks import WriteModel
from runner.errors import RunnerError, TerminalError, TransientError
from runner.streams.types import Column

UNSENT = 10_000  # messages handed to Paho and not yet acknowledged before `send` waits (the memory bound)
NO_MATCHING_SUBSCRIBERS = 0x10
REFUSED_CREDENTIALS = (0x86, 0x87)  # Bad user name or password, Not authorized


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
            properties.UserProperty = list(m.headers.items())
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


def _connect(name: str, spec: MqttConnection, base_dir: Path) -> Any:
    """A client that has had the broker's CONNACK, its network loop running; a clean session
    (nothing of an earlier run's is resent by the broker or the client)."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"{spec.client_id_prefix}{uuid.uuid4().hex[:16]}",
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

    def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        connack["reason"] = reason
        answered.set()

    client.on_connect = on_connect
    try:
        client.connect(spec.host, spec.port, keepalive=60, clean_start=True)
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
    """An MQTT connection as a job's target."""

    capabilities: ClassVar[Capabilities] = Capabilities(publish=True)
    spec: MqttConnection

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
        write=MqttWrite,
        roles=frozenset({"target"}),
        test=test,
    )
)
