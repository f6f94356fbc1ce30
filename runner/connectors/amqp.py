"""AMQP 0-9-1 `basic.publish` frames, encoded here: a run's messages differ only in their body,
id, routing and own headers, so what they share (the method frame of a routing, the headers of
the run) is encoded once, where pika encodes every property of every message field by field,
half of a publishing run's CPU. The bytes are those pika writes (a test checks them against
pika's own encoder).
"""

from __future__ import annotations

import struct

from runner.errors import TerminalError

FRAME_END = b"\xce"
METHOD, HEADER, BODY = 1, 2, 3  # frame types
BASIC, PUBLISH = 60, 40  # class and method ids
MANDATORY = b"\x01"  # publish bits: mandatory set, immediate clear
# the properties a message carries, as their flags, in AMQP's order (the order they are encoded
# in): content type, headers, delivery mode, message id, timestamp
FLAGS = (1 << 15) | (1 << 13) | (1 << 12) | (1 << 7) | (1 << 6)
FRAME = struct.Struct(">BHI")  # type, channel, payload size
LONG = struct.Struct(">I")


def shortstr(text: str, what: str) -> bytes:
    data = text.encode()
    if len(data) > 255:
        raise TerminalError(f"{what} is {len(data)} bytes long: AMQP takes at most 255 ({text[:60]!r}…)")
    return bytes((len(data),)) + data


class PublishFrames:
    """The frames of one channel's publishes: `frames` returns one message's method, header and
    body frames as bytes, the body cut at the connection's largest frame."""

    def __init__(self, channel: int, body_max: int, persistent: bool, timestamp: int):
        self.channel, self.body_max = channel, body_max
        self.delivery_mode = bytes((2 if persistent else 1,))
        self.stamp = struct.pack(">Q", timestamp)
        self.routing: tuple[str, str] | None = None
        self.method = b""  # the method frame of `routing`
        self.shared: dict[str, str] | None = None
        self.shared_fields = b""  # `shared`, encoded
        self.types = {True: shortstr("application/json", ""), False: shortstr("text/plain", "")}
        self.names: dict[str, bytes] = {}  # a header's name and its value's type, encoded

    def frames(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        message_id: str,
        json: bool,
        headers: dict[str, str],
        shared: dict[str, str],
    ) -> bytes:
        if (exchange, routing_key) != self.routing:
            payload = b"%b%b%b%b" % (
                struct.pack(">HHH", BASIC, PUBLISH, 0),
                shortstr(exchange, "the exchange"),
                shortstr(routing_key, "the routing key"),
                MANDATORY,
            )
            self.routing, self.method = (exchange, routing_key), self._frame(METHOD, payload)
        if shared is not self.shared:
            self.shared, self.shared_fields = shared, self.fields(shared)
        table = self.fields(headers) + self.shared_fields
        properties = b"%b%b%b%b%b%b%b" % (
            struct.pack(">HHQH", BASIC, 0, len(body), FLAGS),
            self.types[json],
            LONG.pack(len(table)),
            table,
            self.delivery_mode,
            shortstr(message_id, "the message id"),
            self.stamp,
        )
        out = [self.method, self._frame(HEADER, properties)]
        for start in range(0, len(body), self.body_max):
            out.append(self._frame(BODY, body[start : start + self.body_max]))
        return b"".join(out)

    def fields(self, headers: dict[str, str]) -> bytes:
        """A field table's fields (without its size): each a short name and a long string."""
        out = []
        for name, value in headers.items():
            head = self.names.get(name)
            if head is None:
                head = self.names[name] = shortstr(name, f"header name {name!r}") + b"S"
            data = value.encode()
            out.append(b"%b%b%b" % (head, LONG.pack(len(data)), data))
        return b"".join(out)

    def _frame(self, kind: int, payload: bytes) -> bytes:
        return b"%b%b%b" % (FRAME.pack(kind, self.channel, len(payload)), payload, FRAME_END)
