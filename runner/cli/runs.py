"""Commands on runs: run, cancel, logs, history, status."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from runner import services
from runner.cli.common import STATE, Format, err, handles_errors, loading, out
from runner.cli.render import runs as render


@handles_errors
def run(
    job: Annotated[str, typer.Argument(help="name or namespace/name of an applied job.")],
    task: Annotated[
        list[str] | None, typer.Option("--task", "-t", help="Run only this task (repeat for several).")
    ] = None,
    resync: Annotated[
        bool, typer.Option("--resync", help="Forget pointers and digests first: read everything again.")
    ] = False,
    recreate: Annotated[
        bool,
        typer.Option(
            "--recreate",
            help="Drop each task's target table first and load it whole (once; a history-mode "
            "table starts its history afresh).",
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would change; write nothing, move no pointer.")
    ] = False,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit",
            "-n",
            min=1,
            help="A test run: read at most N rows per task, write them and roll back (a dry run: "
            "no delete, no pointer moved).",
        ),
    ] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.text,
) -> None:
    """Run an applied job now; exit 1 when a task fails. Writes a history file and a run log."""
    with loading():
        execute = services.run
    options = services.RunOptions(
        tasks=task or None, resync=resync, dry_run=dry_run, limit=limit, recreate=recreate
    )
    token = services.CancelToken()
    with _stop_at_batch_boundary(token):
        if out.is_terminal and fmt == Format.text:
            with render.run_progress(err.rich) as progress:
                record = execute(STATE.workspace, job, options, progress=progress, cancel=token)
        else:  # not a terminal: the run's log lines, as they happen, on stderr
            record = execute(
                STATE.workspace,
                job,
                options,
                on_log=_echo_log,
                cancel=token,
            )
    if STATE.debug and record["status"] == "failed":
        for entry in services.log_since(STATE.workspace, record["run_id"], level="debug")["lines"]:
            if "traceback" in entry:
                err.print(f"task {entry.get('task')}:\n{entry['traceback']}", markup=False)
    out.print(
        json.dumps(record, indent=2, ensure_ascii=False, default=str)
        if fmt == Format.json
        else render.run_text(record),
        markup=False,
    )
    if record["status"] != "succeeded":
        raise typer.Exit(1)


def _echo_log(entry: dict[str, Any]) -> None:
    """A run's log line on stderr as it happens; debug lines (a failed task's traceback) are
    for `--debug`, which prints them once the run ends."""
    if entry.get("level") != "debug":
        err.print(render.log_line(entry), markup=False)


@contextmanager
def _stop_at_batch_boundary(token: services.CancelToken) -> Iterator[None]:
    """The first Ctrl-C (or SIGTERM) stops the run cleanly at its next batch boundary; a
    second Ctrl-C interrupts at once (the batch in flight is rolled back either way)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def first(signum: int, _frame: object) -> None:
        token.cancel(f"interrupted ({signal.Signals(signum).name}): stopped at a batch boundary")
        signal.signal(signal.SIGINT, signal.default_int_handler)
        err.print("stopping at the next batch boundary; Ctrl-C again to stop at once", markup=False)

    previous = {sig: signal.signal(sig, first) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@handles_errors
def cancel(job: Annotated[str, typer.Argument(help="name or namespace/name of a running job.")]) -> None:
    """Stop a running job at its next batch boundary (in the daemon or any `runner run`).
    What was committed stays, with its pointers and digests: the next run resumes from there."""
    info = services.cancel(STATE.workspace, job)
    out.print(f"asked run {info['run_id']} of {info['job']} ({info['holder']}) to stop", markup=False)


@handles_errors
def logs(
    run_or_job: Annotated[str, typer.Argument(help="A run id, or a job with --last.")],
    last: Annotated[bool, typer.Option("--last", help="The log of the job's last run.")] = False,
    fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.text,
) -> None:
    """Print a run's log."""
    entries = services.logs(STATE.workspace, run_or_job, last)
    for entry in entries:
        out.print(
            json.dumps(entry, ensure_ascii=False) if fmt == Format.json else render.log_line(entry),
            markup=False,
        )


@handles_errors
def history(
    job: Annotated[str, typer.Argument(help="name or namespace/name of an applied job.")],
    limit: Annotated[int, typer.Option("--limit", "-n", help="Newest N runs.")] = 20,
    task: Annotated[
        str | None, typer.Option("--task", "-t", help="Only this task: its result in each run.")
    ] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.text,
) -> None:
    """List a job's runs (or one task's results), newest first, from its history files."""
    records = services.runs(STATE.workspace, job, limit, task)
    if fmt == Format.json:
        out.print(json.dumps(records, indent=2, ensure_ascii=False, default=str), markup=False)
    elif task:
        out.print(render.task_history_table(job, task, records))
    else:
        out.print(render.history_table(job, records))


@handles_errors
def status(fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.text) -> None:
    """Jobs with schedule, next run, last run, the run going on, suspended or paused, and
    whether an applied update waits for a running run to end."""
    info = services.status(STATE.workspace)
    if fmt == Format.json:
        out.print(json.dumps(info, indent=2, ensure_ascii=False, default=str), markup=False)
    else:
        out.print(render.status_header(info), markup=False)
        out.print(render.status_table(info))
        for line in render.lag_warnings(info):
            out.print(line, markup=False, style="bold red")
