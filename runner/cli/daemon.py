"""Long-running commands: daemon (schedules and runs jobs) and serve (the read-only API).

The CLI is where the daemon and the API are put together: neither imports the other."""

from __future__ import annotations

import os
import sys
from enum import StrEnum
from typing import Annotated, Any

import typer

from runner import services
from runner.cli.common import STATE, handles_errors
from runner.cli.workers import BROKER_HELP, QUEUE_HELP


class ExecutorKind(StrEnum):
    in_process = "in-process"
    celery = "celery"


@handles_errors
def daemon(
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            "-w",
            min=1,
            help=(
                "Jobs run at once, a thread each holding a connection to each end of its job. Default: 32;"
                " raise it so a cron slot of many jobs starts them all at once, within the connections"
                " your databases allow."
            ),
        ),
    ] = None,
    grace: Annotated[
        float, typer.Option("--grace", min=0, help="Seconds running jobs get to finish on SIGTERM/SIGINT.")
    ] = 30.0,
    debounce: Annotated[
        float,
        typer.Option("--debounce", min=0, help="Seconds of quiet after a file change before reconciling."),
    ] = 0.5,
    settle: Annotated[
        float,
        typer.Option(
            "--settle", min=0, help="Seconds a planned deletion must stay planned before it is applied."
        ),
    ] = 2.0,
    poll: Annotated[
        float,
        typer.Option(
            "--poll", min=0.05, help="Seconds between reads of the state store (applies, switches)."
        ),
    ] = 1.0,
    no_watch: Annotated[
        bool,
        typer.Option(
            "--no-watch",
            help="Apply the folders once at start, then do not watch them (later: `runner apply`).",
        ),
    ] = False,
    http: Annotated[
        str | None,
        typer.Option(
            "--http",
            metavar="[HOST:]PORT",
            help="Serve the HTTP API (/api/v1) and the status page (/); the host defaults to 127.0.0.1.",
        ),
    ] = None,
    allow_adhoc: Annotated[
        bool,
        typer.Option(
            "--allow-adhoc",
            help="Let operate keys POST ad-hoc job specs to /api/v1/runs: any SQL on any applied connection.",
        ),
    ] = False,
    review_branch: Annotated[
        str | None,
        typer.Option(
            "--review-branch",
            metavar="NAME",
            help="Commit every job and task change made through the API to branch NAME for review, "
            "never to the checked-out branch, and apply none (a request's ?branch= may name another).",
        ),
    ] = None,
    keep_runs: Annotated[
        int | None,
        typer.Option("--keep-runs", min=1, help="History retention: keep each job's newest N runs."),
    ] = None,
    standby: Annotated[
        bool,
        typer.Option(
            "--standby",
            help="When another daemon schedules on this state store, wait and take over within "
            "31 s of its end (its lease) instead of refusing to start.",
        ),
    ] = False,
    executor: Annotated[
        ExecutorKind,
        typer.Option(
            "--executor",
            help="Where runs run: this process's threads (default), or `runner worker` processes "
            "through --broker.",
        ),
    ] = ExecutorKind.in_process,
    broker: Annotated[
        str | None,
        typer.Option("--broker", metavar="URL", help="With --executor celery, t" + BROKER_HELP[1:]),
    ] = None,
    queue: Annotated[
        str, typer.Option("--queue", help="With --executor celery, t" + QUEUE_HELP[1:])
    ] = "runner",
    keep_days: Annotated[
        float | None,
        typer.Option(
            "--keep-days",
            min=0,
            help="History retention: keep each job's runs of the last N days (with --keep-runs: either "
            "keeps a run). The last run of each task is always kept. Default: keep everything.",
        ),
    ] = None,
) -> None:
    """Watch jobs.d/ and connections.d/, apply changes, fire jobs on cron and triggers, run them.
    Logs one line per event on stderr (JSON when not a terminal). SIGTERM/SIGINT stop it cleanly."""
    if (executor == ExecutorKind.celery) != (broker is not None):
        raise typer.BadParameter("--executor celery needs --broker URL, and only it", param_hint="--broker")
    options = {
        "standby": standby,
        "grace": grace,
        "debounce": debounce,
        "settle": settle,
        "poll": poll,
        "watch": not no_watch,
        "keep_runs": keep_runs,
        "keep_days": keep_days,
    }
    code = _run_daemon(
        STATE.workspace,
        http,
        allow_adhoc,
        review_branch,
        broker,
        queue,
        **options,
        **({"workers": workers} if workers else {}),
    )
    raise typer.Exit(code)


def _run_daemon(
    ws: services.Workspace,
    http: str | None,
    allow_adhoc: bool,
    review_branch: str | None,
    broker: str | None,
    queue: str,
    **options: Any,
) -> int:
    """The daemon, with the API beside it when `http` is set, until SIGTERM/SIGINT; its runs
    go to `runner worker` processes through `broker` when one is given."""
    from runner.daemon import memory

    if STATE.own_process:  # the command line is the daemon's: it may start again, lean
        memory.relaunch()  # before the daemon's modules load: the process that execs drops them
    memory.restore_environment()
    memory.lean()  # first: before this process opens any SQLite connection
    from runner.daemon.main import Daemon, DaemonOptions  # not on the path of the other commands

    executor = None
    if broker is not None:
        from runner.daemon.celery_app import resolve_broker  # Celery: only for the scale-out
        from runner.daemon.celery_executor import CeleryExecutor

        url = resolve_broker(broker, ws.root)

        def executor(ws: services.Workspace, _workers: int, log: Any, wake: Any) -> Any:
            return CeleryExecutor(ws, log, wake, url, queue)

    def serve_api(daemon: Daemon) -> Any:
        from runner.api.serve import start_beside  # FastAPI: only when serving

        assert http is not None
        return start_beside(ws, daemon, http, allow_adhoc, daemon.log, review_branch)

    runner_daemon = Daemon(ws, DaemonOptions(**options), http=serve_api if http else None, executor=executor)
    runner_daemon.install_signal_handlers()
    code = runner_daemon.run()
    if runner_daemon.abandoned:
        # Python would wait at exit for the worker threads of the runs cut by a third signal;
        # their job locks name a dead process once this one is gone, so the next start takes them.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)
    return code


@handles_errors
def serve(
    http: Annotated[
        str,
        typer.Option(
            "--http", metavar="[HOST:]PORT", help="Where to listen; the host defaults to 127.0.0.1."
        ),
    ] = "127.0.0.1:8080",
) -> None:
    """Serve the HTTP API read-only (GET) and the status page, without scheduling or running jobs."""
    from runner.api.serve import serve_read_only  # FastAPI: only for the commands that serve

    serve_read_only(STATE.workspace, http)
