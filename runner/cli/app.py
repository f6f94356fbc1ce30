"""`runner`: the Typer app, its global options and `main()`. The commands live in one module
per group; each is a few lines: parse options, call `runner.service`, print.

Exit codes: 0 success; 1 error (invalid definitions, failed run, lock timeout, ...);
2 from `plan --detailed-exitcode` when there are changes, and from `verify` when source and
target differ.
"""

from __future__ import annotations

import gc
import importlib
import sys
from collections.abc import Iterator, MutableMapping
from typing import TYPE_CHECKING, Annotated

import typer
import typer.core
import typer.main

from runner import services
from runner.cli.common import STATE, err, settled

if TYPE_CHECKING:  # Typer's own click (vendored by recent Typer versions)
    from typer.main import _click as click

# Every command, in the order `runner --help` lists them (the workflow first, not grouped by
# module): its name, the module of runner.cli that defines it and the function (or the Typer
# group) there. A command's module is imported and its click command built only when it is
# invoked or listed: `runner run` builds one command, not all forty (~20 ms of every start).
COMMANDS: dict[str, tuple[str, str]] = {
    "validate": ("definitions", "validate"),
    "plan": ("definitions", "plan"),
    "apply": ("definitions", "apply"),
    "force-unlock": ("definitions", "force_unlock"),
    "get": ("objects", "get"),
    "describe": ("objects", "describe"),
    "run": ("runs", "run"),
    "logs": ("runs", "logs"),
    "history": ("runs", "history"),
    "changes": ("changelogs", "changes"),
    "replay": ("changelogs", "replay"),
    "status": ("runs", "status"),
    "tasks": ("objects", "tasks"),
    "verify": ("verify", "verify"),
    "cancel": ("runs", "cancel"),
    "suspend": ("operate", "suspend"),
    "resume": ("operate", "resume"),
    "pause": ("operate", "pause"),
    "unpause": ("operate", "unpause"),
    "daemon": ("daemon", "daemon"),
    "worker": ("workers", "worker"),
    "workers": ("workers", "workers"),
    "schemas": ("definitions", "schemas"),
    "serve": ("daemon", "serve"),
    "discover": ("connections", "discover"),
    "pointer": ("operate", "pointer_app"),
    "connections": ("connections", "connections_app"),
    "keys": ("keys", "keys_app"),
    "jobs": ("changes", "jobs_app"),
    "task": ("changes", "task_app"),
    "import": ("imports", "import_app"),
}


def build(name: str) -> click.Command:
    """The click command `name`, built by Typer exactly as `app.command()` / `app.add_typer()`
    on the root would (same help, options, completion and errors), through its documented
    `typer.main.get_command`."""
    module, attribute = COMMANDS[name]
    target = getattr(importlib.import_module(f"runner.cli.{module}"), attribute)
    holder = typer.Typer(add_completion=False, rich_markup_mode=None)
    if isinstance(target, typer.Typer):
        holder.add_typer(target, name=name)
        return typer.main.get_command(holder).commands[name]  # type: ignore[attr-defined]  # a group of one
    holder.command()(target)  # a single command
    return typer.main.get_command(holder)


class _Commands(MutableMapping[str, "click.Command"]):
    """The root group's commands: every name known at once, each command built at first use
    (click's lazy group, as a mapping, so that Typer's own lookups, listings and "did you
    mean" suggestions work unchanged)."""

    def __init__(self) -> None:
        self.built: dict[str, click.Command] = {}

    def __getitem__(self, name: str) -> click.Command:
        if name not in self.built:
            if name not in COMMANDS:
                raise KeyError(name)
            self.built[name] = build(name)
        return self.built[name]

    def __setitem__(self, name: str, command: click.Command) -> None:
        raise TypeError("runner's commands are listed in runner.cli.app.COMMANDS")

    def __delitem__(self, name: str) -> None:
        raise TypeError("runner's commands are listed in runner.cli.app.COMMANDS")

    def __iter__(self) -> Iterator[str]:
        return iter(COMMANDS)

    def __len__(self) -> int:
        return len(COMMANDS)

    def __contains__(self, name: object) -> bool:
        return name in COMMANDS


class _LazyGroup(typer.core.TyperGroup):
    """The root group, with its commands built on demand."""

    def __init__(self, **attrs: object) -> None:
        super().__init__(**attrs)  # type: ignore[arg-type]
        self.commands = _Commands()

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)  # the names alone: builds nothing


app = typer.Typer(
    name="runner",
    cls=_LazyGroup,
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    help="Declarative data-sync jobs kept as YAML in git: validate, plan, apply, run.",
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def main_options(
    directory: Annotated[
        str | None,
        typer.Option(
            "--dir",
            "-d",
            envvar="RUNNER_DIR",
            metavar="DIR",
            show_default=".",
            help="Folder holding jobs.d/ and connections.d/.",
        ),
    ] = None,
    state: Annotated[
        str | None,
        typer.Option(
            "--state",
            envvar="RUNNER_STATE",
            metavar="URL",
            help=(
                "State store URL (sqlite:///… or postgresql://…). Default: sqlite file DIR/.runner/state.db."
            ),
        ),
    ] = None,
    history: Annotated[
        str | None,
        typer.Option(
            "--history",
            envvar="RUNNER_HISTORY",
            metavar="DIR",
            help=("Folder of run history files. Default: DIR/.runner/history."),
        ),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of errors.")] = False,
) -> None:
    STATE.debug = debug
    STATE.workspace = services.Workspace.from_env(directory, state, history)
    if STATE.collector_paused:  # see `main`
        STATE.collector_paused = False
        settled()
        gc.enable()


def main() -> None:
    """The `runner` process. The cycle collector is paused from its start (`runner.__main__`)
    until the root options are parsed: what the CLI, Typer and the pydantic its option
    adapters build on loaded all live until exit (~8 ms of collections over them on each
    start); they are frozen and the collector runs again before the command itself does."""
    gc.disable()
    STATE.collector_paused = True
    STATE.own_process = True
    try:
        app()
    except OSError as exc:  # a full disk, a folder that vanished: a message, as for RunnerError
        if STATE.debug:
            raise
        where = f": {exc.filename}" if exc.filename else ""
        err.print(f"error: {exc.strerror or exc}{where}", markup=False)
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("interrupted", markup=False)
        sys.exit(130)
    finally:
        # the process ends here: the OS frees its memory at once, so the collector need not walk
        # every object once more on the way out (~50 ms after a run, more on a loaded machine);
        # files and connections are closed by then, and what has no reference left is freed still
        gc.freeze()
