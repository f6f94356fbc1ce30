"""The `nats` kind: a task publishes a message per changed row (and per deleted key) to a NATS
JetStream subject (a template over the row), each with the header `Nats-Msg-Id` set to its id,
and a batch is committed once JetStream has acknowledged every message of it (a PubAck: the
stream has stored it). A subject that no stream takes fails the task (no responders): runner
declares no stream, as it declares no RabbitMQ queue. Through nats-py, the NATS team's client.

JetStream drops a message whose `Nats-Msg-Id` it has already stored within the stream's
duplicate window (`duplicate_window`, 2 minutes by default): a run that sends again what a
failed run sent shortly before stores each change once. The id is a digest of the change, so a
row changed back to what it held before within that window is dropped too; a strategy whose
rows carry what changed (a watermark's `updated_at`) never sends the same id for two changes.

nats-py is asyncio: each publisher owns an event loop in a thread of its own, with the
connection in it for the whole run (`asyncio.run` per batch would connect and sign in again
for every batch). `send` hands a batch to that loop and returns while it is published (the
run's thread makes the next batch meanwhile), at most `IN_FLIGHT` messages unacknowledged at a
time and one batch waiting (the memory bound); `confirm` waits for the rest. The publisher
encodes the messages' frames itself (`NatsPublisher`); nats-py keeps the connection, signs in,
reconnects and delivers the acknowledgements.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import json
import re
import threading
import time
from collections.abc import Coroutine
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
from runner.definitions import secrets
from runner.definitions.models import seconds
from runner.definitions.tasks import ReadModel, WriteModel
from runner.errors import RunnerError, TerminalError, TransientError
from runner.streams.types import Column

IN_FLIGHT = 4000  # messages published and not yet acknowledged, at most (nats-py's default)
CHUNK = 500  # messages written to the socket at a time
FLUSH_BYTES = 1 << 20  # or fewer, when their frames reach this size
MSG_ID_BYTES = b"Nats-Msg-Id"
HEAD = b"NATS/1.0\r\n"  # a header block's first line
STATUS, NO_RESPONDERS = "Status", "503"  # nats-py's header of a status reply; no stream took it
HEADER_NAME = re.compile(r"^[!-9;-~]+$")  # printable ASCII but ':' (a MIME header field name)
SUBJECT = re.compile(r"^[^\s.*>]+(\.[^\s.*>]+)*$")  # tokens, no wildcard, no empty token
DEFAULT_PORT = 4222
ADDRESS = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(:(?P<port>[0-9]{1,5}))?$")
BACKOFF_FIRST, BACKOFF_MAX = 0.25, 4.0  # seconds before trying a lost server again: doubling, capped


class NatsConnection(BrokerConnection):
    """A NATS server with JetStream enabled. Sign in with `username` and `password`, or with a
    `token`; neither when the server asks for nothing."""

    type: Literal["nats"] = Field(description="A NATS server with JetStream.")
    port: int = Field(4222, ge=1, le=65535, description="Its client port.")
    token: str | None = Field(
        None,
        description="Sign in with this token instead of a user: a secret reference, never the token "
        "itself (${env:NAME} or ${file:path}).",
    )

    @field_validator("token")
    @classmethod
    def _token_reference(cls, token: str | None) -> str | None:
        return secrets.check_password(token, "NATS_TOKEN", "nats-token")

    servers: list[str] = Field(
        default_factory=list,
        description="More servers of the same NATS cluster, `host:port` each (`host` alone: port "
        "4222; an IPv6 address in brackets): a connection starts at any of them and `host`, and "
        "goes to another when its server goes away.",
    )
    reconnect_attempts: int = Field(
        10,
        ge=0,
        le=100,
        description="Times each server is tried again after the connection to it was lost, waiting "
        "0.25 s before the first try and twice as long before each next (at most 4 s); then the "
        "run fails, and what it sent unacknowledged is the next run's to send again. 0: a lost "
        "connection fails the run at once.",
    )

    @field_validator("servers")
    @classmethod
    def _addresses(cls, servers: list[str]) -> list[str]:
        for i, address in enumerate(servers):
            match = ADDRESS.match(address)
            if match is None or not 1 <= int(match["port"] or DEFAULT_PORT) <= 65535:
                raise ValueError(
                    f"servers[{i}]: {address!r} is no server address: `host:port` (port 1-65535), "
                    "`host`, or `[ipv6]:port`, without a scheme"
                )
        return servers

    @model_validator(mode="after")
    def _one_way_to_sign_in(self) -> NatsConnection:
        if self.token is not None and self.username is not None:
            raise ValueError("sign in with a 'token' or with 'username' and 'password', not both")
        secret = "token" if self.token is not None else "password" if self.password is not None else None
        for host in self.hosts():
            if secret and not self.tls and not secrets.loopback(host):
                raise ValueError(
                    f"signing in to {host} without TLS would send the {secret} in the clear: set "
                    "'tls'; only a server on this machine (localhost) may take it plain"
                )
        return self

    def addresses(self) -> list[tuple[str, int]]:
        """(host, port) of `host` and of each of `servers`, in order."""
        out = [(self.host, self.port)]
        for address in self.servers:
            match = ADDRESS.match(address)
            assert match is not None  # `_addresses`
            out.append((match["host"].strip("[]"), int(match["port"] or DEFAULT_PORT)))
        return out

    def hosts(self) -> list[str]:
        return [host for host, _ in self.addresses()]

    def urls(self) -> list[str]:
        scheme = "tls" if self.tls else "nats"
        return [f"{scheme}://{f'[{h}]' if ':' in h else h}:{p}" for h, p in self.addresses()]

    def where(self) -> str:
        """The servers, for a message."""
        return ", ".join(f"{f'[{h}]' if ':' in h else h}:{p}" for h, p in self.addresses())


class NatsWrite(MessageWrite):
    """Where a task's messages go in NATS JetStream."""

    subject: str = Field(
        min_length=1,
        description="The subject to publish to (a template over the row, e.g. `shop.orders.{{ row.region "
        "}}`); a stream must take it (its `subjects`): runner declares no stream.",
    )
    delete_subject: str | None = Field(
        None,
        min_length=1,
        description="The subject of a deleted key's message (a template over the key columns); unset: "
        "`subject`, which may then name key columns only.",
    )
    stream: str | None = Field(
        None,
        min_length=1,
        description="The stream that must store the messages (the `Nats-Expected-Stream` header): a "
        "message another stream would take fails the task; unset: whichever stream takes the subject.",
    )

    @field_validator("subject", "delete_subject")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is not None:
            check_templates(value)
        return value

    @field_validator("headers")
    @classmethod
    def _header_names(cls, headers: dict[str, str]) -> dict[str, str]:
        for name in headers:
            if not HEADER_NAME.match(name) or name.lower().startswith("nats-"):
                raise ValueError(
                    f"header {name!r}: a NATS header name is printable ASCII without ':' or spaces, "
                    "and names starting with 'Nats-' are JetStream's"
                )
        return headers

    def describe(self) -> str:
        return self.subject

    def templates(self, op: str) -> dict[str, str]:
        subject = self.delete_subject if op == "delete" and self.delete_subject else self.subject
        return {"subject": subject}


class NatsRead(MessageRead):
    """The JetStream stream a task consumes, through a durable pull consumer of its own."""

    METADATA: ClassVar[frozenset[str]] = MessageRead.METADATA | {"subject", "sequence", "timestamp"}

    stream: str = Field(min_length=1, description="The JetStream stream to consume (it must exist).")
    subject: str | None = Field(
        None, min_length=1, description="Only the messages of these subjects (a filter, wildcards allowed)."
    )
    durable: str = Field(
        "runner",
        min_length=1,
        description="The durable consumer keeping the task's position (made at the stream's start when "
        "missing: a new one reads the whole stream).",
    )

    def describe(self) -> str:
        return f"stream {self.stream}"


ACK_WAIT = 3600.0  # seconds before JetStream hands an unacknowledged message out again


class NatsFetcher:
    """A durable pull consumer acknowledged cumulatively (`AckPolicy.ALL`): acknowledging a
    batch's last message acknowledges the batch. A run that stopped before acknowledging left
    messages pending that JetStream would hand out again only after `ACK_WAIT`, out of order
    with newer ones: so a run that finds any starts the consumer again at its acknowledgement
    floor, and reads them, in order, first. One run at a time consumes (the job's lock).

    JetStream hands a consumer at most its `max_ack_pending` messages unacknowledged (1,000
    unless set), and a fetch that meets that limit waits `max_wait` and comes back short, which
    ends the run as drained. The next batch is fetched while this one is written and committed
    (`ahead`: runner.changes.messages makes every call on the fetcher in one thread, in order,
    so a batch's acknowledgement still goes only after its commit): two batches are pending at
    once, and a fetch may hand out a few messages more than asked (nats-py passes on what a
    request cut short by its timeout delivered late). So the durable consumer takes three
    batches' worth, and one made with less (by an older runner, or by hand) is raised to that."""

    def __init__(self, name: str, spec: NatsConnection, base_dir: Path, read: NatsRead, batch_size: int):
        self.name, self.read = name, read
        self.pending = 3 * batch_size  # the consumer's max_ack_pending, at least
        self.ahead = True  # the next batch is fetched while this one is written and committed
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=f"nats {name}", daemon=True)
        self.thread.start()
        self.wait = max(0.05, seconds(read.max_wait))
        self.letters: Any = None
        self.reconnect_seconds = reconnect_seconds(spec)
        self.reconnects = 0  # connections made again so far
        self.bound = 0  # the value of `reconnects` when the subscription was made
        try:
            connect = _connect(name, spec, base_dir, self._quiet, reconnected=self._reconnected)
            self.nc = self._run(connect, CONNECT_TIMEOUT * 2)
            self.js = self.nc.jetstream()
            self.sub = self._run(self._subscribe(), CONNECT_TIMEOUT * 2)
        except BaseException:
            self.close()
            raise

    async def _quiet(self, exc: Exception) -> None:
        """Failures surface as the calls' own errors."""

    async def _reconnected(self) -> None:
        self.reconnects += 1

    def _run(self, coroutine: Coroutine[Any, Any, Any], timeout: float) -> Any:
        return _run_on(self.loop, self.name, coroutine, timeout)

    async def _subscribe(self, again: bool = False) -> Any:
        from nats.js import api
        from nats.js import errors as js_errors

        read = self.read
        config = api.ConsumerConfig(
            durable_name=read.durable,
            ack_policy=api.AckPolicy.ALL,
            ack_wait=ACK_WAIT,
            filter_subject=read.subject,
            deliver_policy=api.DeliverPolicy.ALL,
            max_ack_pending=self.pending,
        )
        try:
            info = await self.js.consumer_info(read.stream, read.durable)
        except js_errors.NotFoundError:
            info = None
        except js_errors.APIError as exc:
            raise _failure(self.name, exc, read.stream) from None
        if info is not None and (info.num_ack_pending or again):
            await self.js.delete_consumer(read.stream, read.durable)
            config.deliver_policy = api.DeliverPolicy.BY_START_SEQUENCE
            config.opt_start_seq = info.ack_floor.stream_seq + 1
            info = None
        try:
            if info is None:
                await self.js.add_consumer(read.stream, config)
            elif 0 < (info.config.max_ack_pending or 0) < self.pending:  # -1: no limit
                await self.js.add_consumer(read.stream, info.config.evolve(max_ack_pending=self.pending))
            return await self.js.pull_subscribe_bind(durable=read.durable, stream=read.stream)
        except js_errors.APIError as exc:
            raise TerminalError(
                f"connection {self.name!r}: cannot consume stream {read.stream!r}: {exc.description}"
            ) from None

    def fetch(self, count: int, deadline: float | None = None) -> list[Received]:
        timeout = self.wait + CONNECT_TIMEOUT * 3 + self.reconnect_seconds
        return self._run(self._fetch(count, deadline), timeout)

    async def _fetch(self, count: int, deadline: float | None) -> list[Received]:
        """A connection made again may have lost messages JetStream delivered (then counted as
        pending acknowledgement: acknowledging a later one would acknowledge them unseen): what
        this fetch took is dropped and the subscription made again (`_subscribe`), which starts
        at the last acknowledged message when any are pending."""
        import nats.errors

        out: list[Received] = []
        while len(out) < count:
            if self.bound != self.reconnects or not self.nc.is_connected:
                out.clear()
                await self._rebind()
                continue
            wait = self.wait
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0.01:
                    break
            try:
                msgs = await self.sub.fetch(count - len(out), timeout=wait)
            except (TimeoutError, nats.errors.TimeoutError, nats.errors.ConnectionReconnectingError):
                if self.nc.is_connected and self.bound == self.reconnects:
                    break  # none came for `wait`: drained
                await self._regained()
                continue
            except nats.errors.Error as exc:
                raise TransientError(f"connection {self.name!r}: NATS: {exc or type(exc).__name__}") from None
            if self.bound != self.reconnects:
                continue
            for msg in msgs:
                meta = msg.metadata
                headers = dict(msg.headers or {})
                stamp = meta.timestamp
                out.append(
                    Received(
                        msg.data or b"",
                        headers,
                        {
                            "message_id": headers.get("Nats-Msg-Id"),
                            "subject": msg.subject,
                            "sequence": meta.sequence.stream,
                            "timestamp": stamp.astimezone(dt.UTC).replace(tzinfo=None) if stamp else None,
                        },
                        (msg, self.bound),
                    )
                )
        return out

    async def _regained(self) -> None:
        """Wait for a lost connection to be made again (nats-py is at it), within its bound."""
        give_up = time.monotonic() + self.reconnect_seconds + CONNECT_TIMEOUT
        while not self.nc.is_connected:
            if self.nc.is_closed or time.monotonic() > give_up:
                raise TransientError(f"connection {self.name!r}: NATS lost and not regained")
            await asyncio.sleep(0.05)

    async def _rebind(self) -> None:
        """After a connection made again: the durable consumer made again at the last message
        acknowledged, with a subscription of its own. What the old one was handed (maybe lost
        on the way) and the pull requests nats-py sent again from its buffer once reconnected
        (they reached the old consumer first: the buffer goes before `reconnected`) end with it."""
        await self._regained()
        self.bound = self.reconnects
        with contextlib.suppress(Exception):  # the old subscription may have gone with the connection
            await self.sub.unsubscribe()
        self.sub = await self._subscribe(again=True)

    def acknowledge(self, through: Received) -> None:
        timeout = CONNECT_TIMEOUT * 3 + self.reconnect_seconds
        try:
            self._run(self._acknowledge(through), timeout)
        except RunnerError:
            raise
        except Exception as exc:  # the batch is committed: its messages come again, upserted again
            raise TransientError(f"connection {self.name!r}: could not acknowledge: {exc!r}") from None

    async def _acknowledge(self, through: Received) -> None:
        """Acknowledged once the server says so; after a connection lost, asked once more: the
        durable consumer knows the delivery still (when it does not, its messages come again
        and are upserted again). A message taken before the consumer was made again (`_rebind`,
        in the fetch of the next batch) is not: the new consumer started at the last message
        acknowledged, before it, so it came again in that batch and is acknowledged with it;
        an acknowledgement of the old delivery would set the new consumer's delivered floor
        past what it delivered, and it would ignore the acknowledgements that follow."""
        msg, bound = through.token
        if bound != self.bound:
            return
        try:
            await msg.ack_sync(timeout=CONNECT_TIMEOUT)
        except Exception:
            if self.nc.is_closed:
                raise
            await self._regained()
            await msg.ack_sync(timeout=CONNECT_TIMEOUT)

    def dead_letter(self, message: Received, reason: str) -> None:
        subject = self.read.dead_letter or ""
        headers = {str(k): str(v) for k, v in message.headers.items()} | {"runner-error": reason[:1000]}
        try:
            self._run(self.js.publish(subject, message.body, headers=headers), CONNECT_TIMEOUT * 2)
        except RunnerError:
            raise
        except Exception as exc:
            raise _failure(self.name, exc, subject) from None

    def close(self) -> None:
        try:
            if getattr(self, "nc", None) is not None:
                self._run(self.nc.close(), CONNECT_TIMEOUT)
        except RunnerError:
            pass
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join()
            self.loop.close()


class NatsPublisher:
    """A connection in an event loop of its own thread, publishing each message as an HPUB frame
    it encodes itself, with a reply subject of its own inbox: `<inbox>.<n>`, n counting the
    messages sent. JetStream answers each with a PubAck to that subject, which one wildcard
    subscription hears (`_acknowledged`). nats-py's `publish_async` encodes every header of
    every message, draws a random token (a system call) and makes a future, a semaphore wait and
    a PubAck object per message: that was most of a run's time. Here the headers every message
    of the run carries (`Message.shared`) are encoded once, a message adds its own and its
    `Nats-Msg-Id`, and frames go to the socket `CHUNK` at a time.

    `outstanding` maps the numbers of the messages not yet acknowledged to them (touched in the
    loop's thread only, in the order sent), `failure` holds the first failure, `settled` is set
    when none is left or one failed, and `room` when another `CHUNK` may go without more than
    `IN_FLIGHT` outstanding.

    A connection lost and made again (to the same server restarted, or another of the cluster)
    loses the acknowledgements that were on their way, and maybe the messages: once it is back,
    every message still unacknowledged is sent again, with its id (and a new number), before
    any new one (`connected` holds them back meanwhile); JetStream stores the ones it already
    had once, and an acknowledgement of an old number is ignored."""

    def __init__(self, name: str, spec: NatsConnection, base_dir: Path, write: NatsWrite):
        self.name, self.write = name, write
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=f"nats {name}", daemon=True)
        self.thread.start()
        self.failure: RunnerError | None = None
        self.outstanding: dict[int, Message] = {}
        self.sent = 0  # the number of the last message sent
        self.reconnect_seconds = reconnect_seconds(spec)
        self.expected = {"Nats-Expected-Stream": write.stream} if write.stream else {}
        self.sending: concurrent.futures.Future[None] | None = None
        self.shared: dict[str, str] | None = None  # the headers `block` encodes
        self.block = b""
        self.subject, self.subject_bytes = "", b""  # the last subject checked
        try:
            self._run(self._events(), CONNECT_TIMEOUT)
            self.nc = self._run(
                _connect(name, spec, base_dir, self._lost, self._disconnected, self._reconnected),
                CONNECT_TIMEOUT * 2,
            )
            self._run(self._listen(), CONNECT_TIMEOUT)
        except BaseException:
            self.close()
            raise

    async def _events(self) -> None:
        """Made in the loop's thread, so they belong to its loop."""
        self.settled = asyncio.Event()
        self.connected = asyncio.Event()
        self.connected.set()
        self.room = asyncio.Event()

    async def _listen(self) -> None:
        """Subscribe to the replies: `<inbox>.*`, the inbox the client's own (`_INBOX.<nuid>`)."""
        if not callable(getattr(self.nc, "_send_command", None)):  # nats-py 2.x has it (pyproject: <3)
            raise TerminalError("this nats-py takes no encoded frame: runner needs nats-py 2.x")
        inbox = self.nc.new_inbox()
        self.reply = f"{inbox}.".encode()
        await self.nc.subscribe(f"{inbox}.*", cb=self._acknowledged)

    def _run(self, coroutine: Coroutine[Any, Any, Any], timeout: float) -> Any:
        return _run_on(self.loop, self.name, coroutine, timeout)

    async def _lost(self, exc: Exception) -> None:
        """nats-py's error and close callbacks: the connection failed for good (a publish
        permission denied, the servers gone): what is outstanding will not be acknowledged."""
        if self.failure is None:
            self.failure = TransientError(f"connection {self.name!r}: NATS: {exc or type(exc).__name__}")
        self._wake()

    def _wake(self) -> None:
        """A failure: whatever waits (for acknowledgements, room or the connection) raises it."""
        self.settled.set()
        self.room.set()
        self.connected.set()

    async def _disconnected(self) -> None:
        self.connected.clear()

    async def _reconnected(self) -> None:
        """Send again, in order, what the lost connection left unacknowledged."""
        again = list(self.outstanding.values())
        self.outstanding.clear()
        try:
            for start in range(0, len(again), CHUNK):
                await self._write(again[start : start + CHUNK])
        except RunnerError as exc:
            self.failure = self.failure or exc
            self._wake()
        self.connected.set()

    def send(self, messages: list[Message]) -> None:
        """Hand the batch to the loop and return: the run's thread makes the next batch (reads
        and renders it) while this one is published. At most one batch waits meanwhile (the
        memory bound): the next `send`, and `confirm`, first wait for this one to be sent."""
        self._sent()
        self.sending = asyncio.run_coroutine_threadsafe(self._publish(messages), self.loop)

    def _sent(self) -> None:
        """Wait for the batch being published to be sent; raise what failed it."""
        sending, self.sending = self.sending, None
        if sending is not None:
            _wait_for(sending, self.name, CONFIRM_TIMEOUT * 2 + self.reconnect_seconds)

    async def _publish(self, messages: list[Message]) -> None:
        """Write the messages `CHUNK` at a time, each chunk once it fits among `IN_FLIGHT`
        unacknowledged (waiting then for acknowledgements to free a chunk's room, not one
        place: one message at a time would be a write to the socket per message)."""
        done = 0
        while done < len(messages):
            if not self.connected.is_set():
                await self._regained()
            if self.failure is not None:
                raise self.failure
            size = min(CHUNK, len(messages) - done)
            if IN_FLIGHT - len(self.outstanding) < size:
                self.room.clear()
                await self._unacknowledged("room for more", self.room)
                continue
            await self._write(messages[done : done + size])
            done += size

    async def _write(self, messages: list[Message]) -> None:
        """Frames to the connection's buffer, in order, `FLUSH_BYTES` at most at a time (big
        messages are not all joined in memory at once), the flusher woken after each."""
        frames: list[bytes] = []
        size = 0
        self.settled.clear()
        for m in messages:
            self.sent += 1
            frames.append(self._frame(self.sent, m))
            self.outstanding[self.sent] = m
            size += len(frames[-1])
            if size >= FLUSH_BYTES:
                await self._flush(frames)
                frames, size = [], 0
        if frames:
            await self._flush(frames)

    async def _flush(self, frames: list[bytes]) -> None:
        """nats-py has no public call for a frame encoded already: `_send_command` and
        `_flush_pending` are what its own `publish` calls (nats-py 2.x)."""
        await self.nc._send_command(b"".join(frames))
        await self.nc._flush_pending()

    def _frame(self, number: int, m: Message) -> bytes:
        subject = m.destination["subject"]
        if subject != self.subject:
            if not SUBJECT.match(subject):
                raise TerminalError(
                    f"write.subject: {subject!r} (message {m.id}) is no subject to publish to: "
                    "dot-separated tokens without spaces or wildcards"
                )
            self.subject, self.subject_bytes = subject, subject.encode()
        if m.shared is not self.shared:
            self.shared, self.block = m.shared, HEAD + _header_lines({**m.shared, **self.expected})
        head = b"%b%b%b: %b\r\n\r\n" % (self.block, _header_lines(m.headers), MSG_ID_BYTES, m.id.encode())
        size = len(head) + len(m.body)
        if size > self.nc.max_payload:
            raise TerminalError(
                f"connection {self.name!r}: message {m.id} is larger than the server's max_payload "
                f"({self.nc.max_payload} bytes, headers included)"
            )
        return b"HPUB %b %b%d %d %d\r\n%b%b\r\n" % (
            self.subject_bytes,
            self.reply,
            number,
            len(head),
            size,
            head,
            m.body,
        )

    async def _acknowledged(self, reply: Any) -> None:
        """A reply to message n: its PubAck, or why JetStream refused it."""
        try:
            number = int(reply.subject[len(self.reply) :])
        except ValueError:
            return
        m = self.outstanding.pop(number, None)
        if m is None:
            return  # sent again after a reconnection: acknowledged already, or to come under its new number
        status = reply.headers.get(STATUS) if reply.headers else None
        if status is not None or b'"error"' in reply.data:  # a PubAck ({"stream":…,"seq":…}) is not parsed
            refusal = self._refusal(reply, status, m.destination["subject"])
            if refusal is not None:
                self.failure = self.failure or refusal
                self._wake()
        left = len(self.outstanding)
        if left <= IN_FLIGHT - CHUNK:
            self.room.set()
        if not left:
            self.settled.set()

    def _refusal(self, reply: Any, status: str | None, subject: str) -> RunnerError | None:
        if status == NO_RESPONDERS:
            return TerminalError(
                f"connection {self.name!r}: no JetStream stream takes subject {subject!r} (no responders): "
                "create a stream whose subjects match it (runner declares none)"
            )
        if status is not None:
            return TransientError(
                f"connection {self.name!r}: NATS answered a message on {subject!r}: {status}"
            )
        try:
            error = json.loads(reply.data).get("error")
        except (ValueError, AttributeError):
            return TransientError(
                f"connection {self.name!r}: JetStream's answer is no PubAck: {reply.data[:200]!r}"
            )
        if not error:
            return None  # a stream named "error"
        return TerminalError(
            f"connection {self.name!r}: JetStream refused a message: {error.get('description')} "
            f"(code {error.get('err_code')}), subject {subject!r}"
        )

    async def _regained(self) -> None:
        try:
            await asyncio.wait_for(self.connected.wait(), self.reconnect_seconds + CONNECT_TIMEOUT)
        except TimeoutError:
            raise TransientError(
                f"connection {self.name!r}: NATS lost and not regained within "
                f"{self.reconnect_seconds + CONNECT_TIMEOUT:.0f} s"
            ) from None

    async def _unacknowledged(self, what: str, event: asyncio.Event) -> None:
        """Wait for `event` as long as acknowledgements may take (a reconnection included)."""
        wait = CONFIRM_TIMEOUT + self.reconnect_seconds
        try:
            await asyncio.wait_for(event.wait(), wait)
        except TimeoutError:
            raise TransientError(
                f"connection {self.name!r}: JetStream did not acknowledge {len(self.outstanding)} "
                f"message(s) within {wait:.0f} s ({what})"
            ) from None

    def confirm(self) -> None:
        """Return once JetStream has acknowledged every message sent.

        Raises:
            TerminalError: no stream takes a subject, or JetStream refused a message.
            TransientError: the connection failed, or acknowledgements did not come in time.
        """
        self._sent()
        self._run(self._settle(), CONFIRM_TIMEOUT + CONNECT_TIMEOUT + self.reconnect_seconds)

    async def _settle(self) -> None:
        if self.outstanding and self.failure is None:
            await self._unacknowledged("the batch's", self.settled)
        if self.failure is not None:
            raise self.failure

    def close(self) -> None:
        if self.sending is not None:
            self.sending.cancel()  # a batch not confirmed: the next run sends it again
        try:
            if getattr(self, "nc", None) is not None:
                self._run(self._close(), CONNECT_TIMEOUT)
        except RunnerError:
            pass
        finally:
            self._stop()

    async def _close(self) -> None:
        self.outstanding.clear()
        await self.nc.close()

    def _stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


def _header_lines(headers: dict[str, str]) -> bytes:
    """`name: value` lines, the value stripped, as nats-py writes them; a line break would end
    the header, so a value holding one is refused."""
    lines = []
    for name, value in headers.items():
        if "\r" in value or "\n" in value:
            raise TerminalError(f"write.headers.{name}: a NATS header value holds no line break")
        lines.append(f"{name}: {value.strip()}\r\n")
    return "".join(lines).encode()


def _run_on(
    loop: asyncio.AbstractEventLoop, name: str, coroutine: Coroutine[Any, Any, Any], timeout: float
) -> Any:
    """Run `coroutine` on the client's event loop thread and wait for it, at most `timeout`."""
    return _wait_for(asyncio.run_coroutine_threadsafe(coroutine, loop), name, timeout)


def _wait_for(future: concurrent.futures.Future[Any], name: str, timeout: float) -> Any:
    try:
        return future.result(timeout)
    except TimeoutError:
        future.cancel()
        raise TransientError(f"connection {name!r}: NATS did not answer within {timeout:.0f} s") from None


def _failure(name: str, exc: BaseException, subject: str) -> RunnerError:
    from nats import errors
    from nats.js import errors as js_errors

    if isinstance(exc, js_errors.NoStreamResponseError | errors.NoRespondersError):
        return TerminalError(
            f"connection {name!r}: no JetStream stream takes subject {subject!r} (no responders): create "
            "a stream whose subjects match it (runner declares none)"
        )
    if isinstance(exc, js_errors.APIError):
        return TerminalError(
            f"connection {name!r}: JetStream refused a message on {subject!r}: {exc.description} "
            f"(code {exc.err_code})"
        )
    return TransientError(f"connection {name!r}: NATS: {exc or type(exc).__name__}")


async def _connect(
    name: str,
    spec: NatsConnection,
    base_dir: Path,
    lost: Any,
    disconnected: Any = None,
    reconnected: Any = None,
) -> Any:
    """A connection that has signed in, to `host` or one of `servers`. The first connection
    tries each server twice (nats-py's counting) and fails; once connected, a connection lost
    is made again to any server, each tried `reconnect_attempts` times with a doubling wait
    (`_next_server`), hearing `disconnected` and `reconnected`. `lost` hears of a failure: a
    JetStream refusal, a permission denied, and the connection closed for good (reconnecting
    gave up, or none was allowed); the troubles of a connection being made again are not."""
    import nats
    from nats import errors

    options: dict[str, Any] = {}
    if spec.username is not None:
        options["user"], options["password"] = spec.username, spec.secret(base_dir) or ""
    if spec.token is not None:
        options["token"] = secrets.resolve(spec.token, base_dir)
    context = spec.ssl_context(base_dir)
    if context is not None:
        options["tls"], options["tls_hostname"] = context, spec.host
    reconnecting = spec.reconnect_attempts > 0
    passing = (OSError, TimeoutError, errors.UnexpectedEOF, errors.StaleConnectionError, errors.TimeoutError)

    async def error(exc: Exception) -> None:
        if not (reconnecting and isinstance(exc, passing)):
            await lost(exc)

    async def closed() -> None:
        await lost(errors.ConnectionClosedError())

    async def quiet() -> None:
        pass

    try:
        nc = await nats.connect(
            servers=spec.urls(),
            name=f"runner {name}",
            connect_timeout=CONNECT_TIMEOUT,
            allow_reconnect=reconnecting,
            max_reconnect_attempts=1,  # the first connection: each server twice (0 would be forever)
            reconnect_time_wait=0.5,
            reconnect_to_server_handler=_next_server,
            dont_randomize=True,
            error_cb=error,
            closed_cb=closed,
            disconnected_cb=disconnected or quiet,
            reconnected_cb=reconnected or quiet,
        )
    except errors.AuthorizationError:
        raise TerminalError(f"connection {name!r}: NATS refused the credentials") from None
    except (OSError, TimeoutError, errors.Error) as exc:
        raise TransientError(
            f"connection {name!r}: cannot reach NATS at {spec.where()}: {exc or type(exc).__name__}"
        ) from None
    # nats-py reads its options as it reconnects: from now on, each server `reconnect_attempts` times
    nc.options["max_reconnect_attempts"] = spec.reconnect_attempts
    return nc


def _next_server(servers: list[Any], info: dict[str, Any]) -> tuple[Any, float]:
    """nats-py's choice of the server to reconnect to: the one tried the fewest times (the first
    listed of those), after a wait doubling with its tries (a server restarting gets time)."""
    server = min(servers, key=lambda s: s.reconnects)
    return server, min(BACKOFF_MAX, BACKOFF_FIRST * 2**server.reconnects)


def reconnect_seconds(spec: NatsConnection) -> float:
    """How long reconnecting may take at most, beside the connection attempts themselves."""
    waits = sum(min(BACKOFF_MAX, BACKOFF_FIRST * 2**k) for k in range(spec.reconnect_attempts + 1))
    return len(spec.addresses()) * (waits + spec.reconnect_attempts * 0.5)


async def _ignore(exc: Exception) -> None:
    """A short-lived connection's failures surface as its calls' own errors."""


class NatsConnector(Connector):
    """A NATS JetStream connection as a job's target (subjects) or source (a stream)."""

    capabilities: ClassVar[Capabilities] = Capabilities(publish=True, consume=True)
    spec: NatsConnection

    def consume(self, read: ReadModel, batch_size: int) -> MessageConsumer:
        assert isinstance(read, NatsRead)  # the kind's read model
        fetcher = NatsFetcher(self.name, self.spec, self.base_dir, read, batch_size)
        return MessageConsumer(fetcher, read, batch_size)

    def waiting(self, read: ReadModel) -> int:
        """The durable consumer's lag: messages not yet delivered to it, and those pending."""
        from nats.js import errors as js_errors

        assert isinstance(read, NatsRead)

        async def count() -> int:
            nc = await _connect(self.name, self.spec, self.base_dir, _ignore)
            try:
                js = nc.jetstream()
                try:
                    info = await js.consumer_info(read.stream, read.durable)
                except js_errors.NotFoundError:
                    return int((await js.stream_info(read.stream)).state.messages)
                return int(info.num_pending or 0) + int(info.num_ack_pending or 0)
            finally:
                await nc.close()

        try:
            return asyncio.run(count())
        except js_errors.APIError as exc:
            raise _failure(self.name, exc, read.stream) from None

    def check_connection(self) -> None:
        test(self.name, self.spec, self.base_dir)

    def open_row_writer(
        self, write: WriteModel, columns: list[Column], context: WriteContext
    ) -> MessageWriter:
        assert isinstance(write, NatsWrite)  # the kind's write model

        def connect() -> NatsPublisher:
            return NatsPublisher(self.name, self.spec, self.base_dir, write)

        return MessageWriter(connect, write, columns, context)


def test(name: str, spec: NatsConnection, base_dir: Path) -> str:
    """`runner connections test`: connect, sign in and ask JetStream for the account; the
    server's version. A server without JetStream fails: nothing could be published."""

    async def probe() -> str:
        from nats.js import errors as js_errors

        async def ignore(exc: Exception) -> None:
            pass

        nc = await _connect(name, spec, base_dir, ignore)
        try:
            try:
                await nc.jetstream().account_info()
            except (TimeoutError, js_errors.Error) as exc:
                raise TerminalError(
                    f"connection {name!r}: JetStream is not enabled for this account: {exc}"
                ) from None
            return f"NATS {nc.connected_server_version}, JetStream"
        finally:
            await nc.close()

    return asyncio.run(probe())


registry.register(
    registry.Kind(
        "nats",
        NatsConnection,
        NatsConnector,
        read=NatsRead,
        write=NatsWrite,
        test=test,
    )
)
