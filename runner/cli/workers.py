"""Workers across machines: `runner worker` (takes runs from a broker) and `runner workers`
(lists them with their heartbeats and current runs)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from runner import services
from runner.cli.common import STATE, Format, handles_errors, out
from runner.cli.render.workers import workers_table

BROKER_HELP = (
    "The broker's URL: amqp://user:pass@host:5672// (RabbitMQ) or redis://host:6379/0 (Redis); "
    "secret references as in connections, e.g. ${env:RUNNER_BROKER}."
)
QUEUE_HELP = "The broker's queue of run requests: daemons and workers of one cluster use the same."


@handles_errors
def worker(
    broker: Annotated[str, typer.Option("--broker", metavar="URL", help=BROKER_HELP)],
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", min=1, help="Runs this worker runs at once (threads).")
    ] = 2,
    queue: Annotated[str, typer.Option("--queue", help=QUEUE_HELP)] = "runner",
) -> None:
    """Take run requests from the broker and run them (for `runner daemon --executor celery`),
    and key ranges of the split copies (`changes.split`) that runs on other workers ask help with.
    Needs the same state store, history folder (shared) and secrets as the daemon.
    SIGTERM/SIGINT: runs going on finish, then it stops."""
    from runner.daemon.celery_app import resolve_broker  # Celery: only for the scale-out commands
    from runner.daemon.logs import DaemonLog
    from runner.daemon.worker import RunWorker

    ws = STATE.workspace
    url = resolve_broker(broker, ws.root)
    raise typer.Exit(RunWorker(ws, url, queue, concurrency, DaemonLog()).run())


@handles_errors
def workers(fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.text) -> None:
    """The workers registered in the state store: heartbeat, whether alive, their runs, and the
    key ranges of split copies each one runs."""
    rows = services.workers(STATE.workspace)
    if fmt == Format.json:
        out.print(json.dumps(rows, indent=2), markup=False)
    elif not rows:
        out.print("no workers registered (start one with `runner worker --broker URL`)", markup=False)
    else:
        out.print(workers_table(rows))
