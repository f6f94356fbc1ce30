"""The `rabbitmq` kind. As a target, a task publishes a message per changed row (and per
deleted key) to an exchange with a routing key, each a template over the row, with publisher
confirms: a batch is committed once the broker has confirmed every message of it (`mandatory`:
a message no queue takes is an error, never a silent drop). As a source, a task consumes a
queue (`changes.strategy: messages`), acknowledging each batch once the target has committed
it. Through pika, the client RabbitMQ's own tutorials use.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from runner.connectors import registry
from runner.connectors.amqp import PublishFrames
from runner.connectors.base import Capabilities, Connector, WriteContext
from runner.connectors.messaging.connection import CONFIRM_TIMEOUT, CONNECT_TIMEOUT, BrokerConnection
from runner.connectors.messaging.consumer import MessageConsumer, Received
from runner.connectors.messaging.model import MessageRead, MessageWrite, check_templates
from runner.connectors.messaging.render import Message
from runner.connectors.messaging.writer import MessageWriter
from runner.definitions.models import seconds
from runner.definitions.tasks import ReadModel, WriteModel
from runner.errors import RunnerError, TerminalError, TransientError
from runner.streams.types import Column


class RabbitConnection(BrokerConnection):
    """A RabbitMQ broker (AMQP 0-9-1). Without `username`, pika's default guest account."""

    type: Literal["rabbitmq"] = Field(description="A RabbitMQ broker.")
    port: int = Field(5672, ge=1, le=65535, description="Its AMQP port: 5672, or 5671 with TLS.")
    virtual_host: str = Field("/", min_length=1, description="The virtual host to use.")
    heartbeat: int | None = Field(
        None,
        ge=1,
        le=3600,
        description="Seconds between the heartbeats the connection asks for (unset: the broker's, 60 on a "
        "default RabbitMQ). A publishing task answers them while it reads between batches.",
    )


class RabbitWrite(MessageWrite):
    """Where a task's messages go in RabbitMQ."""

    exchange: str = Field(
        "",
        description="The exchange to publish to (a template over the row); '' is the default exchange, "
        "which routes to the queue named by the routing key. It must exist: runner declares nothing.",
    )
    routing_key: str = Field(
        min_length=1,
        description="The routing key (a template over the row, e.g. `orders.{{ row.region }}`).",
    )
    delete_routing_key: str | None = Field(
        None,
        min_length=1,
        description="The routing key of a deleted key's message (a template over the key columns); "
        "unset: `routing_key`, which may then name key columns only.",
    )
    persistent: bool = Field(True, description="Messages survive a broker restart (delivery mode 2).")

    @field_validator("exchange", "routing_key", "delete_routing_key")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is not None:
            check_templates(value)
        return value

    def describe(self) -> str:
        return f"{self.exchange or '(default exchange)'}/{self.routing_key}"

    def templates(self, op: str) -> dict[str, str]:
        key = self.delete_routing_key if op == "delete" and self.delete_routing_key else self.routing_key
        return {"exchange": self.exchange, "routing_key": key}


class RabbitRead(MessageRead):
    """The queue a task consumes in RabbitMQ."""

    METADATA: ClassVar[frozenset[str]] = MessageRead.METADATA | {
        "routing_key",
        "exchange",
        "timestamp",
        "redelivered",
    }

    queue: str = Field(
        min_length=1, description="The queue to consume (it must exist: runner declares nothing)."
    )

    def describe(self) -> str:
        return f"queue {self.queue}"


MAX_PREFETCH = 65_535  # AMQP's prefetch count is a short
TICK = 0.25  # seconds: how often a consumer waiting for messages looks at the time
IN_FLIGHT = 4000  # unconfirmed published messages at most (as the NATS publisher)
CHUNK = 500  # messages published between looks at the socket
IDLE = 1.0  # seconds: how often an idle publisher runs its connection's I/O


class RabbitFetcher:
    """A consumer on the queue with a prefetch of two batches: the broker sends at most that
    many unacknowledged messages (the next batch comes while one is written), and each batch is
    acknowledged (at once, `multiple`) after the target committed it. Unacknowledged messages go
    back to the queue when the channel closes."""

    def __init__(self, name: str, spec: RabbitConnection, base_dir: Path, read: RabbitRead, batch_size: int):
        from pika import exceptions

        self.name, self.read = name, read
        self.connection = _connect(name, spec, base_dir)
        self.channel = self.connection.channel()
        # two batches: the next one comes while this one is written and committed (`ahead`)
        self.ahead = 2 * batch_size <= MAX_PREFETCH
        self.channel.basic_qos(prefetch_count=min(2 * batch_size, MAX_PREFETCH))
        self.wait = max(0.01, seconds(read.max_wait))
        self.letters: Any = None
        try:  # pika says when none came for a tick; `fetch` counts the ticks up to `max_wait`
            self.messages = self.channel.consume(
                read.queue, auto_ack=False, inactivity_timeout=min(self.wait, TICK)
            )
        except exceptions.ChannelClosedByBroker as exc:
            raise TerminalError(
                f"connection {name!r}: cannot consume queue {read.queue!r}: {exc.reply_text}"
            ) from None

    def fetch(self, count: int, deadline: float | None = None) -> list[Received]:
        from pika import exceptions

        out: list[Received] = []
        quiet = time.monotonic() + self.wait
        try:
            while len(out) < count:
                method, properties, body = next(self.messages)
                now = time.monotonic()
                if method is not None:
                    out.append(_received(method, properties, body))
                    quiet = now + self.wait
                if now >= quiet or (deadline is not None and now >= deadline):
                    break  # none came for `max_wait` (drained), or the batch is due
        except exceptions.ChannelClosedByBroker as exc:
            raise TerminalError(
                f"connection {self.name!r}: cannot consume queue {self.read.queue!r}: {exc.reply_text}"
            ) from None
        except exceptions.AMQPError as exc:
            raise TransientError(
                f"connection {self.name!r}: lost the broker while consuming: {exc!r}"
            ) from None
        return out

    def acknowledge(self, through: Received) -> None:
        from pika import exceptions

        try:
            self.channel.basic_ack(delivery_tag=through.token, multiple=True)
        except exceptions.AMQPError as exc:  # the batch is committed: its messages come again, upserted again
            raise TransientError(f"connection {self.name!r}: could not acknowledge: {exc!r}") from None

    def dead_letter(self, message: Received, reason: str) -> None:
        import pika

        if self.letters is None:
            self.letters = self.connection.channel()
            self.letters.confirm_delivery()
        properties = pika.BasicProperties(
            headers={**message.headers, "runner-error": reason[:1000]},
            message_id=message.metadata.get("message_id"),
            delivery_mode=pika.DeliveryMode.Persistent,
        )
        self.letters.basic_publish("", self.read.dead_letter or "", message.body, properties, mandatory=True)

    def close(self) -> None:
        from pika import exceptions

        try:
            if self.connection.is_open:
                self.connection.close()  # what was not acknowledged goes back to the queue
        except exceptions.AMQPError:
            pass


def _received(method: Any, properties: Any, body: bytes) -> Received:
    import datetime as dt

    stamp = properties.timestamp
    return Received(
        body,
        dict(properties.headers or {}),
        {
            "message_id": properties.message_id,
            "routing_key": method.routing_key,
            "exchange": method.exchange,
            "timestamp": dt.datetime.fromtimestamp(stamp, dt.UTC).replace(tzinfo=None) if stamp else None,
            "redelivered": method.redelivered,
        },
        method.delivery_tag,
    )


class _Thread:
    """One daemon thread running calls in order: the thread that owns a pika connection (pika's
    connections are not thread-safe), calling `idle` every `IDLE` seconds without a call (a
    connection answers the broker's heartbeats only while its I/O is run: a task reading for
    minutes between two batches would be closed by the broker). A daemon, so a run that fails
    elsewhere never waits at exit for a publish it gave up."""

    def __init__(self, name: str, idle: Callable[[], None]):
        self.calls: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] = queue.SimpleQueue()
        self.idle = idle
        threading.Thread(target=self._serve, name=name, daemon=True).start()

    def submit(self, call: Callable[[], Any]) -> Future[Any]:
        future: Future[Any] = Future()
        self.calls.put((call, future))
        return future

    def _serve(self) -> None:
        while True:
            try:
                item = self.calls.get(timeout=IDLE)
            except queue.Empty:
                self.idle()
                continue
            if item is None:
                return
            call, future = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(call())
                except BaseException as exc:  # handed to the caller, raised there
                    future.set_exception(exc)

    def stop(self) -> None:
        self.calls.put(None)


class RabbitPublisher:
    """A channel in confirm mode with up to `IN_FLIGHT` messages unconfirmed, in a thread of its
    own: `send` hands a batch to the thread and returns (the run's thread reads and renders the
    next batch while this one is published), `confirm` waits for every confirm. One message
    confirmed at a time would wait a round trip (and the broker's disk) per message.

    pika's blocking channel confirms one message per publish, so confirms are asked for on the
    asynchronous channel beneath it (`channel._impl`, pika's `Channel`), the messages' frames
    (`amqp.PublishFrames`) go to the connection's buffer a chunk at a time, and the connection's
    I/O is run until a condition holds (`connection._flush_output`): pika 1.x internals, checked
    when the publisher opens (pyproject pins pika <2)."""

    def __init__(self, name: str, spec: RabbitConnection, base_dir: Path, write: RabbitWrite):
        self.name, self.write = name, write
        self.connection: Any = None
        self.sending: Future[None] | None = None
        self.stopping = False  # `close`: a batch being published stops at its next chunk
        self.sent = 0  # delivery tags are 1, 2, … in publish order on a channel in confirm mode
        self.through = 0  # every tag up to this one is confirmed
        self.singles: set[int] = set()  # tags above `through` confirmed one by one
        self.failure: RunnerError | None = None
        self.thread = _Thread(f"rabbitmq {name}", self._idle)
        try:
            self.thread.submit(lambda: self._open(spec, base_dir)).result()
        except BaseException:
            self.close()
            raise

    def _open(self, spec: RabbitConnection, base_dir: Path) -> None:
        self.connection = _connect(self.name, spec, base_dir)
        self.channel = getattr(self.connection.channel(), "_impl", None)
        impl = getattr(self.connection, "_impl", None)
        self.emit = getattr(impl, "_output_marshaled_frames", None)
        body_max = getattr(impl, "_body_max_length", None)
        if (
            self.channel is None
            or not callable(getattr(self.connection, "_flush_output", None))
            or not callable(self.emit)
            or not isinstance(body_max, int)
        ):
            raise TerminalError(
                "this pika lacks the internals runner publishes through (BlockingChannel._impl, "
                "BlockingConnection._flush_output, Connection._output_marshaled_frames and "
                "_body_max_length): install pika>=1.3,<2"
            )
        self.frames = PublishFrames(
            self.channel.channel_number, body_max, self.write.persistent, int(time.time())
        )
        self.channel.add_on_return_callback(self._returned)
        self.channel.add_on_close_callback(self._closed)
        selected: list[object] = []
        self.channel.confirm_delivery(self._confirmed, selected.append)
        self._run_until(lambda: bool(selected))

    def _idle(self) -> None:
        """Between batches: heartbeats answered, confirms read. A failure is the next call's."""
        from pika import exceptions

        try:
            if self.connection is not None and self.connection.is_open:
                self.connection.process_data_events(time_limit=0)
        except exceptions.AMQPError:
            pass

    def _confirmed(self, frame: Any) -> None:
        from pika import spec

        method = frame.method
        if isinstance(method, spec.Basic.Nack):
            self.failure = self.failure or TransientError(
                f"connection {self.name!r}: the broker refused a message (nack)"
            )
        if method.multiple:
            self.through = max(self.through, method.delivery_tag)
            self.singles = {tag for tag in self.singles if tag > self.through}
        else:
            self.singles.add(method.delivery_tag)
        while self.through + 1 in self.singles:
            self.through += 1
            self.singles.discard(self.through)

    def _returned(self, _channel: Any, method: Any, _properties: Any, _body: bytes) -> None:
        # `mandatory`: the broker returns a message no queue takes (before confirming it)
        self.failure = self.failure or TerminalError(
            f"connection {self.name!r}: no queue takes a message published to exchange "
            f"{method.exchange or '(default)'!r} with routing key {method.routing_key!r}: bind a "
            "queue (runner declares none)"
        )

    def _closed(self, _channel: Any, reason: Exception) -> None:
        text = getattr(reason, "reply_text", None) or repr(reason)
        self.failure = self.failure or TerminalError(
            f"connection {self.name!r}: the broker closed the channel: {text}"
        )

    @property
    def unconfirmed(self) -> int:
        return self.sent - self.through - len(self.singles)

    def _run_until(self, ready: Callable[[], bool]) -> None:
        """Write what is buffered and read what comes (confirms, returns) until `ready()`, or the
        channel fails; raise its failure."""
        from pika import exceptions

        deadline = time.monotonic() + CONFIRM_TIMEOUT  # pika looks at the waiter every 5 s at most
        try:
            self.connection._flush_output(
                lambda: self.failure is not None or ready() or time.monotonic() > deadline
            )
        except exceptions.AMQPError as exc:
            raise TransientError(
                f"connection {self.name!r}: lost the broker while publishing: {exc!r}"
            ) from None
        if self.failure is not None:
            raise self.failure
        if not ready():
            raise TransientError(
                f"connection {self.name!r}: the broker did not confirm within {CONFIRM_TIMEOUT:.0f} s "
                f"({self.unconfirmed} messages unconfirmed)"
            )

    def send(self, messages: list[Message]) -> None:
        """Hand the batch to the publishing thread and return. At most one batch waits meanwhile
        (the memory bound): the next `send`, and `confirm`, first wait for this one to be sent."""
        self._sent()
        self.sending = self.thread.submit(lambda: self._publish(messages))

    def _sent(self) -> None:
        """Wait for the batch being published to be sent; raise what failed it."""
        sending, self.sending = self.sending, None
        if sending is not None:
            sending.result()

    def _publish(self, messages: list[Message]) -> None:
        """Publish `CHUNK` messages at a time, each chunk once it fits among `IN_FLIGHT`
        unconfirmed, in one write to the connection's buffer (not a few per message)."""
        frames, room = self.frames.frames, IN_FLIGHT - CHUNK
        for start in range(0, len(messages), CHUNK):
            if self.stopping:
                return
            if self.unconfirmed > room:
                self._run_until(lambda: self.unconfirmed <= room)
            chunk = messages[start : start + CHUNK]
            data = b"".join(
                frames(
                    m.destination["exchange"],
                    m.destination["routing_key"],
                    m.body,
                    m.id,
                    m.json,
                    m.headers,
                    m.shared,
                )
                for m in chunk
            )
            self.emit([data])
            self.sent += len(chunk)
            self._run_until(lambda: True)  # the chunk written, confirms so far read

    def confirm(self) -> None:
        """Return once the broker has confirmed every message sent.

        Raises:
            TerminalError: no queue takes a message, or the broker closed the channel.
            TransientError: the broker refused a message, or the connection failed.
        """
        self._sent()
        self.thread.submit(lambda: self._run_until(lambda: self.unconfirmed == 0)).result()

    def close(self) -> None:
        self.stopping = True
        self.thread.submit(self._close).result()
        self.thread.stop()

    def _close(self) -> None:
        from pika import exceptions

        try:
            if self.connection is not None and self.connection.is_open:
                self.connection.close()  # what was not confirmed is sent again by the next run
        except exceptions.AMQPError:
            pass


def _connect(name: str, spec: RabbitConnection, base_dir: Path) -> Any:
    import pika
    from pika import exceptions

    options: dict[str, Any] = {}
    if spec.username is not None:
        options["credentials"] = pika.PlainCredentials(spec.username, spec.secret(base_dir) or "")
    context = spec.ssl_context(base_dir)
    if context is not None:
        options["ssl_options"] = pika.SSLOptions(context, spec.host)
    params = pika.ConnectionParameters(
        spec.host,
        spec.port,
        spec.virtual_host,
        heartbeat=spec.heartbeat,
        connection_attempts=1,
        socket_timeout=CONNECT_TIMEOUT,
        blocked_connection_timeout=60,
        **options,
    )
    try:
        return pika.BlockingConnection(params)
    except exceptions.ProbableAuthenticationError:
        raise TerminalError(f"connection {name!r}: RabbitMQ refused the user name or password") from None
    except exceptions.AMQPConnectionError as exc:
        raise TransientError(
            f"connection {name!r}: cannot reach RabbitMQ at {spec.host}:{spec.port}: {exc!r}"
        ) from None


class RabbitConnector(Connector):
    """A RabbitMQ connection as a job's source (a queue consumed) or target (messages published)."""

    capabilities: ClassVar[Capabilities] = Capabilities(publish=True, consume=True)
    spec: RabbitConnection

    def waiting(self, read: ReadModel) -> int:
        from pika import exceptions

        assert isinstance(read, RabbitRead)
        connection = _connect(self.name, self.spec, self.base_dir)
        try:
            return int(connection.channel().queue_declare(read.queue, passive=True).method.message_count)
        except exceptions.ChannelClosedByBroker as exc:
            raise TerminalError(f"connection {self.name!r}: queue {read.queue!r}: {exc.reply_text}") from None
        finally:
            if connection.is_open:
                connection.close()

    def consume(self, read: ReadModel, batch_size: int) -> MessageConsumer:
        assert isinstance(read, RabbitRead)  # the kind's read model
        batch = min(batch_size, MAX_PREFETCH)
        fetcher = RabbitFetcher(self.name, self.spec, self.base_dir, read, batch)
        return MessageConsumer(fetcher, read, batch)

    def check_connection(self) -> None:
        _connect(self.name, self.spec, self.base_dir).close()

    def open_row_writer(
        self, write: WriteModel, columns: list[Column], context: WriteContext
    ) -> MessageWriter:
        assert isinstance(write, RabbitWrite)  # the kind's write model

        def connect() -> RabbitPublisher:
            return RabbitPublisher(self.name, self.spec, self.base_dir, write)

        return MessageWriter(connect, write, columns, context)


def test(name: str, spec: RabbitConnection, base_dir: Path) -> str:
    """`runner connections test`: connect and sign in; what the broker says it is."""
    connection = _connect(name, spec, base_dir)
    try:
        properties = getattr(connection._impl, "server_properties", None) or {}
        parts = (properties.get("product", b"RabbitMQ"), properties.get("version", b""))
        return " ".join(p.decode() if isinstance(p, bytes) else str(p) for p in parts if p)
    finally:
        connection.close()


registry.register(
    registry.Kind(
        "rabbitmq",
        RabbitConnection,
        RabbitConnector,
        read=RabbitRead,
        write=RabbitWrite,
        test=test,
    )
)
