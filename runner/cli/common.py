"""What every command module shares: the consoles, the global options, the output format and
`handles_errors`, the one place a library error becomes a message and an exit code."""

from __future__ import annotations

import functools
import gc
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ParamSpec, TextIO, TypeVar

import typer

from runner.cli.render import definitions as render
from runner.errors import DefinitionsInvalid, Problem, RunnerError

if TYPE_CHECKING:
    from rich.console import Console as RichConsole

    from runner import services

# What rich changes in a plain string printed without markup (and without emoji codes, which
# runner never asks for: a `:smile:` in a job's name or a value stays as written) to a file that
# is not a terminal: tabs (expanded) and the control codes it strips.
_RICH_CHANGES = re.compile(r"[\t\x07\x08\x0b\x0c\r]")


class Console:
    """rich's Console, imported and made at first need (~15 ms of rich's modules per start).
    A plain string printed without markup to a file that is not a terminal is written as is,
    which is byte for byte what rich writes then (tests/cli/test_startup.py compares both): a
    piped `runner run`, its log lines and its result do not load rich.
    Tables, the live progress and everything on a terminal go through rich as before."""

    def __init__(self, stderr: bool = False, **options: Any) -> None:
        self._stderr = stderr
        self._options = options
        self._rich: RichConsole | None = None

    @property
    def rich(self) -> RichConsole:
        if self._rich is None:
            from rich.console import Console as RichConsole

            self._rich = RichConsole(stderr=self._stderr, **self._options)
        return self._rich

    @property
    def file(self) -> TextIO:
        return sys.stderr if self._stderr else sys.stdout  # looked up when used, as rich does

    @property
    def is_terminal(self) -> bool:
        return self.rich.is_terminal if self._may_be_terminal() else False

    def _may_be_terminal(self) -> bool:
        """False when rich would surely see no terminal: no variable of rich's forcing one
        and a file that is not a TTY."""
        if self._rich is not None or "TTY_COMPATIBLE" in os.environ or "FORCE_COLOR" in os.environ:
            return True
        isatty = getattr(self.file, "isatty", None)
        try:
            return isatty is not None and isatty()
        except ValueError:  # a closed file: rich sees no terminal either
            return False

    def print(self, *objects: Any, markup: bool | None = None, **options: Any) -> None:
        if (
            markup is False
            and not options
            and len(objects) == 1
            and isinstance(objects[0], str)
            and not self._may_be_terminal()
            and not _RICH_CHANGES.search(objects[0])
        ):
            file = self.file
            file.write(objects[0] + "\n")
            file.flush()
            return
        self.rich.print(*objects, markup=markup, **options)


# Piped output is not cut to 80 columns: run ids and paths in tables must stay whole.
out = Console(highlight=False, emoji=False, soft_wrap=True, width=None if sys.stdout.isatty() else 250)
err = Console(stderr=True, highlight=False, emoji=False, soft_wrap=True)


class Format(StrEnum):
    text = "text"
    json = "json"


class State:
    """The global options, set by the root callback before any command runs."""

    debug = False
    collector_paused = False  # by `runner.cli.app.main` until the root options are parsed
    own_process = False  # the CLI is the process's command (`main`): a command may replace it
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
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        settled()
        if enabled:
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
