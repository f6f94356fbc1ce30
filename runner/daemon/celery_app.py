"""The Celery application shared by `runner daemon --executor celery` (which sends run
requests) and `runner worker` (which runs them): two tasks on one queue, `runner.run` (a
run) and `runner.ranges` (a request from a run on a worker to help with its split copy: take
its key ranges until none is left; the ranges' leases are in the state store, so a helper
delivered late or twice finds nothing left and returns).

Why these settings: a run request is acknowledged only after its run ended (`acks_late`) and a
worker takes one request per free thread at a time (`prefetch_multiplier` 1), so a worker
killed mid-run leaves its request unacknowledged and the broker delivers it again (RabbitMQ at
once, when the connection drops; Redis after `REDELIVER_SECONDS`). A request delivered again
whose run had started is not run twice (`RunStarted`): the job's lease says whether that run
is still going, and the scheduling daemon runs a cut run again once its lease expires. No
result backend: a run's end is in its history record and the state store, where the daemon
(whichever one leads) reads it.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path

from celery import Celery
from celery.app.amqp import AMQP
from celery.utils.log import get_task_logger
from celery.worker.request import Request
from kombu import Connection

from runner import services
from runner.definitions import secrets
from runner.errors import RunnerError

logger = get_task_logger(__name__)
TASK = "runner.run"
RANGE_TASK = "runner.ranges"  # help a run with its split copy's key ranges (`changes.split`)
DEFAULT_QUEUE = "runner"
# Redis only: an unacknowledged request goes back to the queue after this long (a worker killed
# mid-run): two leases. A request of a run still going on that comes back is dropped as started already.
REDELIVER_SECONDS = int(2 * services.locks.LEASE_SECONDS)


def resolve_broker(url: str, base_dir: Path) -> str:
    """The broker URL with its secret references (`${env:RUNNER_BROKER}`) resolved; the values
    are remembered, so they are redacted from every message.

    Raises:
        RunnerError: a reference cannot be resolved, or the scheme is not amqp:// or redis://.
    """
    try:
        value = secrets.resolve(url, base_dir)
    except secrets.SecretError as exc:
        raise RunnerError(f"--broker: {exc}") from None
    scheme = urllib.parse.urlsplit(value).scheme
    if scheme not in ("amqp", "amqps", "pyamqp", "redis", "rediss"):
        raise RunnerError(f"--broker: use amqp://… (RabbitMQ) or redis://… (Redis), not {scheme or url!r}")
    return value


def shown(url: str) -> str:
    """The broker as logs and `runner workers` show it: scheme, host, port and path, no user
    or password."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class Delivery(Request):
    """A request as the worker holds it, whose acknowledgement outlives its broker connection.

    A run going on when the broker went away (restarted, unreachable) ends after the worker
    reconnected: its acknowledgement (run later on the worker's event loop) goes through the
    old, closed connection, which kombu's Redis transport answers with an AttributeError that
    stopped the whole worker. It is counted among the connection errors kombu logs instead
    ("Couldn't ack"): the request stays unacknowledged, a broker that kept it delivers it
    again, and that delivery is dropped as run already (`RunStarted`)."""

    def acknowledge(self) -> None:
        if not self.acknowledged:
            self._on_ack(logger, (*self._connection_errors, AttributeError))
            self.acknowledged = True


class BrokerConnection(Connection):
    """A broker connection whose closing outlives a Redis connection closed under it.

    After the broker went away, Celery closes the lost connection (`collect`, then `close`).
    When `collect` could not close every channel (another channel's close failed first, on the
    dead socket), it still clears the transport's connection settings; `close` then closes the
    channel left, and kombu's Redis transport, restoring that channel's unacknowledged
    requests, reads those settings and raises AttributeError (`_connparams`). Celery ignores
    only connection errors there, so the worker stopped instead of reconnecting. The channel
    counts as closed: its requests stay unacknowledged in the broker, which delivers them again
    after `REDELIVER_SECONDS`, and a run already started is not run twice (`RunStarted`)."""

    def maybe_close_channel(self, channel: object) -> None:
        try:
            super().maybe_close_channel(channel)
        except AttributeError as exc:
            logger.warning("closing the lost broker connection: %s (its requests are delivered again)", exc)


class _Amqp(AMQP):
    Connection = BrokerConnection


def make_app(broker: str, queue: str = DEFAULT_QUEUE) -> Celery:
    app = Celery("runner", broker=broker, set_as_current=False, amqp=_Amqp)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,  # a worker process lost mid-task: the request comes back
        worker_prefetch_multiplier=1,
        task_default_queue=queue,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": REDELIVER_SECONDS,
            # look for such requests every heartbeat (kombu's default: every 100 s)
            "unacked_restore_interval": services.locks.HEARTBEAT_SECONDS,
            "unacked_restore_throttle": 1,
        },
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_send_task_events=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        # Celery lowers a reconnected worker's prefetch while runs of the lost connection are
        # going on, to raise it again as requests are acknowledged; against RabbitMQ the raise
        # never reaches the consumer (celery#9512), and a worker whose runs ended in the outage
        # took one request after the restart and then none. Requests a worker takes beyond its
        # free threads wait on it, unstarted: the scheduler sends them again (`RESEND_SECONDS`).
        worker_enable_prefetch_count_reduction=False,
    )
    return app
