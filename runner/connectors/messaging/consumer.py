"""A broker's messages as changes of rows: each received message decoded by the task's read
(`MessageRead`) into an upsert or a delete, in arrival order; a bad one stops the task or goes
to the dead-letter destination. Each broker supplies a `Fetcher`: how messages are taken,
acknowledged and dead-lettered."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from runner.connectors.messaging.decode import BadMessage, parse, row_decoder
from runner.connectors.messaging.model import MessageRead
from runner.errors import TerminalError
from runner.streams.types import Column, ColumnType

METADATA_TYPES = {  # the type of each metadata column
    "message_id": ColumnType("text"),
    "headers": ColumnType("json"),
    "routing_key": ColumnType("text"),
    "exchange": ColumnType("text"),
    "timestamp": ColumnType("timestamptz"),
    "redelivered": ColumnType("boolean"),
    "topic": ColumnType("text"),
    "subject": ColumnType("text"),
    "sequence": ColumnType("bigint"),
    "stream": ColumnType("text"),
    "entry_id": ColumnType("text"),
}


@dataclass
class Received:
    """One message as a broker gave it."""

    body: bytes
    headers: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)  # by the names in METADATA_TYPES
    token: Any = None  # what the fetcher acknowledges it by

    @property
    def id(self) -> str:
        return str(self.metadata.get("message_id") or self.headers.get("runner-id") or "(no id)")


class Fetcher(Protocol):
    """A broker's side of a consumer."""

    def fetch(self, count: int, deadline: float | None = None) -> list[Received]:
        """Up to `count` messages; fewer (or none) once none has come for the read's `max_wait`,
        or once `deadline` (a `time.monotonic()` value) has passed."""
        ...

    def acknowledge(self, through: Received) -> None:
        """Acknowledge every message received up to and including `through`."""
        ...

    def dead_letter(self, message: Received, reason: str) -> None:
        """Send `message` to the read's dead-letter destination with `reason`, confirmed."""
        ...

    def close(self) -> None:
        """Give back what was not acknowledged."""
        ...


class MessageConsumer:
    """A `Consumer` (runner.connectors.base) over a broker's `Fetcher`."""

    def __init__(self, fetcher: Fetcher, read: MessageRead, batch_size: int):
        self.fetcher, self.read, self.batch_size = fetcher, read, batch_size
        mapping = read.mapping()
        meta = [Column(name, METADATA_TYPES[what]) for name, what in read.metadata.items()]
        if read.content_column is not None:
            self.columns = [Column(read.content_column, ColumnType("text")), *meta]
        else:
            self.columns = [c for c, _ in mapping] + meta
        self.decode = row_decoder(mapping) if mapping else None
        self.taken = 0
        self.last: Received | None = None
        self.drained = False
        self.aside: list[tuple[str, str]] = []
        self.latency: float | None = None
        self.notice: str | None = getattr(fetcher, "notice", None)  # what the run log should say
        # the broker hands out the next batch before this one is acknowledged (a prefetch of two)
        self.ahead: bool = getattr(fetcher, "ahead", False)

    def follow(self, max_latency: float) -> None:
        """Go on past a drained queue: a batch that comes up empty is `[]`, not the end, and
        each is handed over at most `max_latency` seconds after it was asked for."""
        self.latency = max_latency

    def next_batch(self) -> list[tuple[str, tuple]] | None:
        limit = self.read.max_messages
        count = self.batch_size if limit is None else min(self.batch_size, limit - self.taken)
        if self.drained or count <= 0:
            return None
        following = self.latency is not None
        received = self.fetcher.fetch(count, time.monotonic() + self.latency if following else None)
        if len(received) < count and not following:
            self.drained = True
        if not received:
            return [] if following else None
        self.taken += len(received)
        self.last = received[-1]
        batch = []
        for message in received:
            try:
                batch.append(self._change(message))
            except BadMessage as exc:
                if self.read.bad_messages == "stop":
                    raise TerminalError(
                        f"message {message.id}: {exc}; it stays in the queue (set read.bad_messages: "
                        "dead_letter to move such messages aside)"
                    ) from None
                self.fetcher.dead_letter(message, str(exc))
                self.aside.append((message.id, str(exc)))
        return batch

    def set_aside(self) -> list[tuple[str, str]]:
        aside, self.aside = self.aside, []
        return aside

    def _change(self, message: Received) -> tuple[str, tuple]:
        op = "upsert"
        if self.read.op_header is not None:
            stated = message.headers.get(self.read.op_header)
            stated = stated.decode() if isinstance(stated, bytes) else stated
            op = "delete" if stated == "delete" else "upsert"
        if self.decode is None:  # content_column
            try:
                row: tuple = (message.body.decode(),)
            except UnicodeDecodeError:
                raise BadMessage("the payload is not UTF-8 text") from None
        else:
            document = parse(message.body)
            if not isinstance(document, dict):
                raise BadMessage(f"the payload is a JSON {type(document).__name__}, not an object")
            row = self.decode(document)
        meta = tuple(_metadata(message, what) for what in self.read.metadata.values())
        return op, row + meta

    def mark(self) -> Received | None:
        """What acknowledges the batch `next_batch` gave last (with those before it)."""
        return self.last

    def acknowledge(self, through: Received | None = None) -> None:
        """Acknowledge what came up to `through` (a `mark`), or up to the last batch."""
        if through is not None:
            self.fetcher.acknowledge(through)
            if through is self.last:
                self.last = None
        elif self.last is not None:
            self.fetcher.acknowledge(self.last)
            self.last = None

    def close(self) -> None:
        self.fetcher.close()


def _metadata(message: Received, what: str) -> Any:
    if what == "headers":
        return json.loads(json.dumps(message.headers, default=str))  # JSON-able, as a json column holds
    return message.metadata.get(what)
