"""What every command module shares: the consoles, the global options, the output format and
`handles_errors`, the one place a library error becomes a message and an exit code."""

from __future__ import annotations

import functools
import gc
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import TYPE_CHECKING, ParamSpec, TypeVar

import typer
from rich.console import Console

from runner.cli.render import definitions as render
from runner.errors import DefinitionsInvalid, Problem, RunnerError

if TYPE_CHECKING:
    from runner import services

# Piped output is not cut to 80 columns: run ids and paths in tables must stay whole.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 250)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class Format(StrEnum):
    text = "text"
    json = "json"


class State:
    """The global options, set by the root callback before any command runs."""

    debug = False
    workspace: services.Workspace


STATE = State()


def settled() -> None:
    """What the command loaded (definitions, a plan) lives until this short process exits: the
    cycle collector need not walk it again while the output is built (the text of a 1,000-job
    plan set off collections over the whole heap, ~0.3 s)."""
    gc.freeze()


@contextmanager
def loading() -> Iterator[None]:
    """A command's own modules imported (`services.run`: SQLAlchemy, the models, the engine):
    ~70,000 objects that all live until the process exits, whose allocations would set off
    several full collections over the growing heap for nothing (~0.1 s of `runner run`). The
    collector is paused while they load, then they are frozen (`settled`) and it runs again,
    over what the command allocates next only."""
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        settled()
        if paused:
            gc.enable()


P = ParamSpec("P")
R = TypeVar("R")


def handles_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn a `RunnerError` raised anywhere in `command` into its located message and exit
    code (`--debug` re-raises it), so no command repeats a try/except. A command's `--format`
    option must be its `fmt` parameter: with `json` the error goes to stdout as JSON too, with
    `github` invalid definitions become annotations."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except RunnerError as exc:
            if STATE.debug:
                raise
            _report(exc, getattr(kwargs.get("fmt"), "value", "text"))
            raise typer.Exit(exc.exit_code) from exc

    return wrapper


def _report(exc: RunnerError, fmt: str) -> None:
    if isinstance(exc, DefinitionsInvalid):
        if fmt == "json":
            out.print(render.problems_json(exc.problems, exc.warnings), markup=False)
        elif fmt == "github":
            out.print(render.problems_github(exc.problems), markup=False)
            print_warnings(exc.warnings, fmt)
            err.print(f"{len(exc.problems)} problem(s) found", markup=False)
        else:
            print_warnings(exc.warnings, fmt)
            err.print(render.problems_text(exc.problems), markup=False)
    else:
        if fmt == "json":
            out.print(json.dumps({"error": str(exc)}), markup=False)
        err.print(f"error: {exc}", markup=False)


def print_warnings(warnings: list[Problem], fmt: str) -> None:
    """Warnings never change the exit code: as annotations on GitHub, else on stderr."""
    if not warnings:
        return
    if fmt == "github":
        out.print(render.problems_github(warnings, "warning"), markup=False)
    else:
        err.print(render.warnings_text(warnings), markup=False)
