"""`runner`: the Typer app, its global options and `main()`. The commands live in one module
per group; each is a few lines: parse options, call `runner.service`, print.

Exit codes: 0 success; 1 error (invalid definitions, failed run, lock timeout, ...);
2 from `plan --detailed-exitcode` when there are changes, and from `verify` when source and
target differ.
"""

from __future__ import annotations

import gc
import sys
from typing import Annotated

import typer

from runner import services
from runner.cli import (
    changelogs,
    changes,
    connections,
    daemon,
    definitions,
    imports,
    keys,
    objects,
    operate,
    runs,
    verify,
    workers,
)
from runner.cli.common import STATE, err

app = typer.Typer(
    name="runner",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    help="Declarative data-sync jobs kept as YAML in git: validate, plan, apply, run.",
    context_settings={"help_option_names": ["-h", "--help"]},
)

# In the order `runner --help` lists them (the workflow first), not grouped by module.
for command in (
    definitions.validate,
    definitions.plan,
    definitions.apply,
    definitions.force_unlock,
    objects.get,
    objects.describe,
    runs.run,
    runs.logs,
    runs.history,
    changelogs.changes,
    changelogs.replay,
    runs.status,
    objects.tasks,
    verify.verify,
    runs.cancel,
    operate.suspend,
    operate.resume,
    operate.pause,
    operate.unpause,
    daemon.daemon,
    workers.worker,
    workers.workers,
    definitions.schemas,
    daemon.serve,
    connections.discover,
):
    app.command()(command)
app.add_typer(operate.pointer_app, name="pointer")
app.add_typer(connections.connections_app, name="connections")
app.add_typer(keys.keys_app, name="keys")
app.add_typer(changes.jobs_app, name="jobs")
app.add_typer(changes.task_app, name="task")
app.add_typer(imports.import_app, name="import")


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


def main() -> None:
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
