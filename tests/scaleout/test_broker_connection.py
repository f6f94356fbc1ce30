"""The worker's broker connection closes cleanly after Redis went away with a request
unacknowledged, where kombu's own connection raised AttributeError and stopped the worker
(`celery_app.BrokerConnection`). On a Redis of the test's own, killed under the connection."""

from __future__ import annotations

import pytest
from kombu import Connection, Consumer, Queue
from kombu.common import ignore_errors

from runner.daemon.celery_app import BrokerConnection, make_app
from tests.scaleout.private_brokers import PrivateRedis


def _lost_with_a_request_held(connection: Connection, broker: PrivateRedis) -> None:
    """A request delivered and not acknowledged (a run going on), then the broker killed, and
    the connection left as Celery's `collect` leaves it when closing another channel failed
    first on the dead socket: its transport's settings cleared, this channel still open."""
    with Connection(broker.url) as producer:
        producer.SimpleQueue("runner").put({"run": 1})
    held = []
    channel = connection.default_channel
    Consumer(channel, [Queue("runner")], callbacks=[lambda _body, message: held.append(message)]).consume()
    connection.drain_events(timeout=5)
    assert len(held) == 1 and not held[0].acknowledged
    broker.kill()
    connection.transport.client = None


def test_closing_a_lost_redis_connection_holding_a_request_does_not_raise(tmp_path):
    broker = PrivateRedis(tmp_path / "redis")
    broker.start()
    try:
        app = make_app(broker.url)
        connection = app.connection_for_read()
        assert isinstance(connection, BrokerConnection)  # what the worker's consumer uses
        _lost_with_a_request_held(connection, broker)
        ignore_errors(connection, connection.close)  # as Celery closes a lost connection
        assert connection._closed

        # kombu's own connection in the same state: the error that stopped the worker (once
        # kombu closes such a channel itself, this fails and BrokerConnection can go)
        broker.start()
        plain = Connection(broker.url)
        _lost_with_a_request_held(plain, broker)
        with pytest.raises(AttributeError, match="hostname"):
            ignore_errors(plain, plain.close)
    finally:
        broker.close()
