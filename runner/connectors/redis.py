"""The `redis` kind. As a source, a task consumes a stream through a consumer group
(`changes.strategy: messages`), acknowledging entries once the target committed them. As a
target, a task publishes a message per changed row (and per deleted key) to a Redis
stream (XADD: the headers and the payload as the entry's fields), a list (RPUSH: the payload) or
a pub/sub channel (PUBLISH: the payload), each named by a template over the row. A batch goes in
one pipeline, one round trip; Redis's reply to each command is its confirmation, read before
the batch is committed. Through redis-py, the client Redis maintains.

Pub/sub keeps nothing: a message reaches the subscribers connected when it is published, and
PUBLISH answers how many there were. A message that reached none fails the task (as a RabbitMQ
message no queue takes does), so the pointer never moves past changes nobody received; one
that reached a subscriber is not kept for one that connects later. A stream keeps every entry
(up to `maxlen`) for consumers that read later, which is why it is the default to reach for.
"""

from __future__ import annotations

import time
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
from runner.definitions.models import seconds
from runner.definitions.tasks import ReadModel, Task, WriteModel
from runner.errors import TerminalError, TransientError
from runner.streams.types import Column

PLACES = ("stream", "list", "channel")  # where a message goes, each by its command: XADD, RPUSH, PUBLISH
PAYLOAD_FIELD = "payload"  # a stream entry's field holding the payload (the others: the headers)


class RedisConnection(BrokerConnection):
    """A Redis server. With ACLs sign in as `username`; a server protected by `requirepass`
    alone takes the user `default`."""

    type: Literal["redis"] = Field(description="A Redis server (streams, lists, pub/sub).")
    port: int = Field(6379, ge=1, le=65535, description="Its port.")
    db: int = Field(0, ge=0, description="The database number (SELECT) the keys are in.")


class RedisWrite(MessageWrite):
    """Where a task's messages go in Redis: exactly one of `stream`, `list` or `channel`."""

    stream: str | None = Field(
        None,
        min_length=1,
        description="The stream to add each message to (XADD; a template over the row, e.g. "
        "`orders:{{ row.region }}`): an entry's fields are the headers and `payload`. Created by "
        "the first entry.",
    )
    list: str | None = Field(
        None,
        min_length=1,
        description="The list to append each message's payload to (RPUSH; a template over the row). An "
        "element is the payload alone: put `{{ id }}` in it for consumers that drop duplicates.",
    )
    channel: str | None = Field(
        None,
        min_length=1,
        description="The pub/sub channel to publish each payload on (PUBLISH; a template over the row). "
        "Pub/sub keeps nothing: a message that no subscriber receives fails the task, and one that a "
        "subscriber received is never seen by a subscriber connecting later.",
    )
    delete_stream: str | None = Field(
        None,
        min_length=1,
        description="With `stream`: the stream of a deleted key's message (a template over the key "
        "columns); unset: `stream`, which may then name key columns only.",
    )
    delete_list: str | None = Field(
        None,
        min_length=1,
        description="With `list`: the list of a deleted key's message, as `delete_stream`.",
    )
    delete_channel: str | None = Field(
        None,
        min_length=1,
        description="With `channel`: the channel of a deleted key's message, as `delete_stream`.",
    )
    maxlen: int | None = Field(
        None,
        ge=1,
        description="With `stream`: trim it to about this many entries as each is added (MAXLEN ~: "
        "Redis trims whole nodes, so a few more may remain); unset: the stream grows.",
    )

    @field_validator("stream", "list", "channel", "delete_stream", "delete_list", "delete_channel")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is not None:
            check_templates(value)
        return value

    @model_validator(mode="after")
    def _one_place(self) -> RedisWrite:
        given = [p for p in PLACES if getattr(self, p) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of 'stream' (XADD), 'list' (RPUSH) or 'channel' (PUBLISH)"
                + (f", not {' and '.join(given)}" if given else "")
            )
        (place,) = given
        for other in PLACES:
            if other != place and getattr(self, f"delete_{other}") is not None:
                raise ValueError(f"delete_{other} goes with '{other}'; this task writes to a {place}")
        if self.maxlen is not None and place != "stream":
            raise ValueError(f"maxlen trims a stream; this task writes to a {place}")
        if place != "stream" and self.headers:
            raise ValueError(
                f"a {place}'s message is the payload alone, it has no headers: put what 'headers' "
                "says in the payload"
            )
        if place == "stream" and PAYLOAD_FIELD in self.headers:
            raise ValueError(f"header {PAYLOAD_FIELD!r}: the entry's field of that name holds the payload")
        return self

    @property
    def place(self) -> str:
        """stream, list or channel."""
        return next(p for p in PLACES if getattr(self, p) is not None)

    def check(self, task: Task) -> None:
        place = self.place
        if (
            place != "stream"
            and task.deletes == "propagate"
            and self.delete_payload is None
            and getattr(self, f"delete_{place}") is None
        ):
            raise ValueError(
                f"deletes: propagate into a Redis {place}: its messages carry no headers, so a deleted "
                f"key's message (the key columns) would read as a change; set write.delete_{place} "
                "(another place for deletes) or write.delete_payload (e.g. {deleted: '{{ key.id }}'})"
            )

    def describe(self) -> str:
        return f"{self.place} {getattr(self, self.place)}"

    def templates(self, op: str) -> dict[str, str]:
        place = self.place
        name = getattr(self, f"delete_{place}") if op == "delete" else None
        return {"name": name or getattr(self, place)}


class RedisRead(MessageRead):
    """The stream a task consumes, through a consumer group: each entry is delivered to the
    group once and stays pending until acknowledged (XACK) after the target commits it."""

    METADATA: ClassVar[frozenset[str]] = MessageRead.METADATA | {"entry_id", "stream"}

    stream: str = Field(
        min_length=1, description="The stream to consume (an entry's `payload` field is the payload)."
    )
    group: str = Field(
        "runner",
        min_length=1,
        description="The consumer group whose position the task keeps (created at the stream's first "
        "entry when missing: a new group reads the whole stream).",
    )
    consumer: str = Field("runner", min_length=1, description="The consumer's name within the group.")

    def describe(self) -> str:
        return f"stream {self.stream}"


class RedisFetcher:
    """XREADGROUP: first the entries delivered to this consumer before and never acknowledged
    (a run that stopped between its read and its acknowledgement), from a cursor so a dry run
    does not read them twice; then new ones, waiting up to the read's `max_wait`."""

    def __init__(self, name: str, spec: RedisConnection, base_dir: Path, read: RedisRead):
        from redis import exceptions

        self.name, self.read = name, read
        self.client = _connect(name, spec, base_dir)
        self.cursor: str | None = "0"  # the pending entries' position; None once they are read
        self.delivered: list[str] = []  # entry ids received and not acknowledged, in order
        self.wait_ms = max(1, int(seconds(read.max_wait) * 1000))
        try:
            self.client.xgroup_create(read.stream, read.group, id="0", mkstream=True)
        except exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):  # the group exists: its position is kept
                raise _failure(name, exc) from None
        except exceptions.RedisError as exc:
            raise _failure(name, exc) from None

    def _read(self, start: str, count: int, block: int | None) -> list[Received]:
        from redis import exceptions

        try:
            reply = self.client.xreadgroup(
                self.read.group, self.read.consumer, {self.read.stream: start}, count=count, block=block
            )
        except exceptions.RedisError as exc:
            raise _failure(self.name, exc) from None
        entries = reply[0][1] if reply else []
        out = []
        for entry, fields in entries:
            ident = entry.decode()
            self.delivered.append(ident)
            if start != ">":
                self.cursor = ident
            if fields is None:  # trimmed away since it was delivered: acknowledged with the rest
                continue
            headers = {
                k.decode(): v.decode("utf-8", "replace")
                for k, v in fields.items()
                if k != PAYLOAD_FIELD.encode()
            }
            metadata = {
                "message_id": headers.get("runner-id") or ident,
                "entry_id": ident,
                "stream": self.read.stream,
            }
            out.append(Received(fields.get(PAYLOAD_FIELD.encode(), b""), headers, metadata, ident))
        if start != ">" and len(entries) < count:
            self.cursor = None
        return out

    def fetch(self, count: int, deadline: float | None = None) -> list[Received]:
        out: list[Received] = []
        if self.cursor is not None:
            out = self._read(self.cursor, count, None)
        if self.cursor is None and len(out) < count:
            block = self.wait_ms
            if deadline is not None:  # XREADGROUP returns as soon as an entry is there
                block = max(1, min(block, int((deadline - time.monotonic()) * 1000)))
            out += self._read(">", count - len(out), block)
        return out

    def acknowledge(self, through: Received) -> None:
        from redis import exceptions

        upto = self.delivered.index(through.token) + 1
        done, self.delivered = self.delivered[:upto], self.delivered[upto:]
        try:
            self.client.xack(self.read.stream, self.read.group, *done)
        except exceptions.RedisError as exc:  # the batch is committed: its entries come again, upserted again
            raise _failure(self.name, exc) from None

    def dead_letter(self, message: Received, reason: str) -> None:
        from redis import exceptions

        fields = {**message.headers, PAYLOAD_FIELD: message.body, "runner-error": reason[:1000]}
        try:
            self.client.xadd(self.read.dead_letter or "", fields)
        except exceptions.RedisError as exc:
            raise _failure(self.name, exc) from None

    def close(self) -> None:
        self.client.close()  # what was not acknowledged stays pending for this consumer


class RedisPublisher:
    """One connection; each `send` is one pipeline (not a transaction: MULTI would only add a
    round trip) whose replies are read, and checked, before it returns."""

    def __init__(self, name: str, spec: RedisConnection, base_dir: Path, write: RedisWrite):
        self.name, self.write, self.place = name, write, write.place
        self.client = _connect(name, spec, base_dir)

    def send(self, messages: list[Message]) -> None:
        from redis import exceptions

        pipe = self.client.pipeline(transaction=False)
        for m in messages:
            key = m.destination["name"]
            if not key:
                raise TerminalError(
                    f"write.{self.place}: the template rendered an empty name (message {m.id})"
                )
            if self.place == "stream":
                fields: dict[str, Any] = {**m.headers, **m.shared, PAYLOAD_FIELD: m.body}
                pipe.xadd(key, fields, maxlen=self.write.maxlen, approximate=True)
            elif self.place == "list":
                pipe.rpush(key, m.body)
            else:
                pipe.publish(key, m.body)
        try:
            replies = pipe.execute(raise_on_error=False)
        except exceptions.RedisError as exc:
            raise _failure(self.name, exc) from None
        self._check(messages, replies)

    def _check(self, messages: list[Message], replies: list[Any]) -> None:
        """Each reply confirms its message: an entry id (XADD), the list's length (RPUSH), the
        number of subscribers that received it (PUBLISH, 0: none)."""
        for m, reply in zip(messages, replies, strict=True):
            if isinstance(reply, Exception):
                raise TerminalError(
                    f"connection {self.name!r}: Redis refused a message to {self.place} "
                    f"{m.destination['name']!r}: {reply}"
                )
            if self.place == "channel" and reply == 0:
                raise TransientError(
                    f"connection {self.name!r}: no subscriber received a message published on channel "
                    f"{m.destination['name']!r} (pub/sub keeps nothing): subscribe first, or use a stream"
                )

    def confirm(self) -> None:
        """Nothing waits: every reply was read and checked in `send`."""

    def close(self) -> None:
        self.client.close()


def _failure(name: str, exc: Exception) -> Exception:
    from redis import exceptions

    if isinstance(exc, exceptions.AuthenticationError | exceptions.AuthorizationError):
        return TerminalError(f"connection {name!r}: Redis refused the user name or password")
    if isinstance(exc, exceptions.ConnectionError | exceptions.TimeoutError):
        return TransientError(f"connection {name!r}: lost Redis: {exc}")
    return TerminalError(f"connection {name!r}: Redis: {exc}")


def _connect(name: str, spec: RedisConnection, base_dir: Path) -> Any:
    """A client that has signed in (PING), without redis-py's retries: a command sent again
    after a lost connection is the next run's to send."""
    import redis
    from redis import exceptions
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    options: dict[str, Any] = {}
    if spec.tls:
        options = {"ssl": True, "ssl_ca_certs": str(base_dir / spec.ca_file) if spec.ca_file else None}
    client = redis.Redis(
        spec.host,
        spec.port,
        spec.db,
        username=spec.username,
        password=spec.secret(base_dir),
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=CONFIRM_TIMEOUT,
        retry=Retry(NoBackoff(), 0),
        **options,
    )
    try:
        client.ping()
    except exceptions.RedisError as exc:
        client.close()
        if isinstance(exc, exceptions.ConnectionError) and not isinstance(
            exc, exceptions.AuthenticationError
        ):
            raise TransientError(
                f"connection {name!r}: cannot reach Redis at {spec.host}:{spec.port}: {exc}"
            ) from None
        raise _failure(name, exc) from None
    return client


class RedisConnector(Connector):
    """A Redis connection as a job's target (streams, lists, channels) or source (a stream)."""

    capabilities: ClassVar[Capabilities] = Capabilities(publish=True, consume=True)
    spec: RedisConnection

    def consume(self, read: ReadModel, batch_size: int) -> MessageConsumer:
        assert isinstance(read, RedisRead)  # the kind's read model
        return MessageConsumer(RedisFetcher(self.name, self.spec, self.base_dir, read), read, batch_size)

    def waiting(self, read: ReadModel) -> int:
        """The group's lag: entries not yet delivered to it, plus those delivered and pending."""
        from redis import exceptions

        assert isinstance(read, RedisRead)
        client = _connect(self.name, self.spec, self.base_dir)
        try:
            groups = {g["name"].decode(): g for g in client.xinfo_groups(read.stream)}
            group = groups.get(read.group)
            if group is None:
                return int(client.xlen(read.stream))
            return int(group.get("lag") or 0) + int(group.get("pending") or 0)
        except exceptions.ResponseError:
            return 0  # no such stream yet
        except exceptions.RedisError as exc:
            raise _failure(self.name, exc) from None
        finally:
            client.close()

    def check_connection(self) -> None:
        _connect(self.name, self.spec, self.base_dir).close()

    def open_row_writer(
        self, write: WriteModel, columns: list[Column], context: WriteContext
    ) -> MessageWriter:
        assert isinstance(write, RedisWrite)  # the kind's write model

        def connect() -> RedisPublisher:
            return RedisPublisher(self.name, self.spec, self.base_dir, write)

        return MessageWriter(connect, write, columns, context)


def test(name: str, spec: RedisConnection, base_dir: Path) -> str:
    """`runner connections test`: connect and sign in; the server's name and version."""
    client = _connect(name, spec, base_dir)
    try:
        info = client.info("server")
        return f"Redis {info.get('redis_version', '')}".strip()
    finally:
        client.close()


registry.register(
    registry.Kind(
        "redis",
        RedisConnection,
        RedisConnector,
        read=RedisRead,
        write=RedisWrite,
        test=test,
    )
)
