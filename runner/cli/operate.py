"""Runtime switches in the state store, not changes to git: suspend, resume, pause, unpause,
and `pointer show|set`."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from runner import services
from runner.cli.common import STATE, Format, handles_errors, out
from runner.cli.render import operate as render
from runner.cli.render.cells import pointer_text


@handles_errors
def suspend(job: Annotated[str, typer.Argument(help="name or namespace/name of an applied job.")]) -> None:
    """Stop the daemon firing a job (cron and triggers) until `runner resume`. A runtime switch
    in the state store, not a change to git; a run going on finishes."""
    _switch(job, True)


@handles_errors
def resume(job: Annotated[str, typer.Argument(help="name or namespace/name of a suspended job.")]) -> None:
    """Let the daemon fire a suspended job again; a cron slot missed meanwhile runs once."""
    _switch(job, False)


def _switch(job: str, suspended: bool) -> None:
    info = services.suspend(STATE.workspace, job, suspended)
    word = "suspended" if suspended else "resumed"
    out.print(
        f"{info['job']} {word}" if info["changed"] else f"{info['job']} was already {word}", markup=False
    )


@handles_errors
def pause() -> None:
    """Stop all scheduling by the daemon (cron, triggers, retries); running jobs finish."""
    _pause(True, "scheduling paused; `runner unpause` resumes it")


@handles_errors
def unpause() -> None:
    """Resume scheduling; a cron slot missed while paused runs once."""
    _pause(False, "scheduling resumed")


def _pause(paused: bool, done: str) -> None:
    services.pause(STATE.workspace, paused)
    out.print(done, markup=False)


pointer_app = typer.Typer(help="Show or set the watermark pointers of a job's tasks.", no_args_is_help=True)


@pointer_app.command("show")
@handles_errors
def pointer_show(
    job: Annotated[str, typer.Argument(help="name or namespace/name of an applied job.")],
    fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.text,
) -> None:
    """Each task's stored pointer."""
    rows = services.pointer_show(STATE.workspace, job)
    out.print(json.dumps(rows, indent=2) if fmt == Format.json else render.pointers_table(job, rows))


@pointer_app.command("set")
@handles_errors
def pointer_set(
    job: Annotated[str, typer.Argument(help="name or namespace/name of an applied job.")],
    task: Annotated[str, typer.Argument(help="A watermark task of the job.")],
    value: Annotated[str | None, typer.Argument(help="The new pointer; leave out to clear it.")] = None,
) -> None:
    """Set a task's pointer (its next run reads from there); without VALUE, clear it."""
    change = services.pointer_set(STATE.workspace, job, task, value)
    out.print(
        f"pointer of task {change['task']}: {pointer_text(change['old'])} → {pointer_text(change['new'])}",
        markup=False,
    )
