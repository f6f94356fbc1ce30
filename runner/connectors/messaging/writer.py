"""The writer of a task that publishes: each batch of changed rows (and of deleted keys) becomes
messages handed to the broker's `Publisher`; `commit` returns once the broker has confirmed every
message sent, which is what lets the strategy move the task's pointer or digests after it.

A broker has no transaction: a run that fails after sending some messages has sent them. Its
pointer did not move, so the next run sends those changes again, with the same ids
(`render.message_id`): delivery is at least once, and a consumer that keeps the ids it has seen
(or a broker that does, JetStream's `Nats-Msg-Id`) sees each change once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from runner.connectors.base import RowWriter, WriteContext
from runner.connectors.messaging.model import MessageWrite
from runner.connectors.messaging.render import Message, MessageMaker
from runner.streams.types import Batch, Column


class Publisher(Protocol):
    """A broker's side of a publishing writer."""

    def send(self, messages: list[Message]) -> None:
        """Send the messages in order (or hand them over to be sent: an error may come at the next
        call); may return before the broker has confirmed them."""
        ...

    def confirm(self) -> None:
        """Return once the broker has confirmed every message sent so far.

        Raises:
            TransientError: the broker refused one, or the connection was lost before it said.
        """
        ...

    def close(self) -> None: ...


class MessageWriter(RowWriter):
    """A `Writer` (runner.connectors.base) that publishes; it does not merge. The broker is
    reached (`connect`) at the first message: in a dry run the messages are made (every
    template rendered) and counted, never sent, and the broker never reached."""

    def __init__(
        self,
        connect: Callable[[], Publisher],
        write: MessageWrite,
        columns: list[Column],
        context: WriteContext,
    ):
        self.connect = connect
        self.publisher: Publisher | None = None
        self.maker = MessageMaker(write, columns, context)
        by_name = {c.name: c for c in columns}
        self.key_columns = [by_name[k] for k in write.keys]
        self.dry_run = context.dry_run

    def _send(self, messages: list[Message]) -> int:
        if messages and not self.dry_run:
            if self.publisher is None:
                self.publisher = self.connect()
            self.publisher.send(messages)
        return len(messages)

    def write_rows(self, batch: Batch) -> int:
        return self._send(self.maker.upserts(batch))

    def write_keys(self, keys: Batch) -> int:
        return self._send(self.maker.deletes(keys))

    def commit(self) -> None:
        if self.publisher is not None:
            self.publisher.confirm()

    def close(self) -> None:
        if self.publisher is not None:
            self.publisher.close()
            self.publisher = None

    def __enter__(self) -> MessageWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
