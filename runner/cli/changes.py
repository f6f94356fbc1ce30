"""`runner jobs create|edit|delete` and `runner task add|update|delete|move|off|on`: the API's
job and task changes from a terminal, for those who prefer them to an editor. Each is
written to the definitions folder, validated, committed (as the git user) and applied, or
committed to `--branch` for review; each prints the resulting definition and the commit.

The task commands are `runner task …`: `runner tasks JOB` lists a job's tasks."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from runner import services
from runner.cli.common import STATE, Format, handles_errors, out
from runner.cli.render import changes as render
from runner.errors import InvalidValue

jobs_app = typer.Typer(
    help="Create, edit and delete jobs: written to jobs.d/, committed to git and applied.",
    no_args_is_help=True,
)
task_app = typer.Typer(
    help="Add, update, delete, move and switch off a job's tasks: committed to git and applied.",
    no_args_is_help=True,
)

JobArg = Annotated[str, typer.Argument(help="name or namespace/name of a job in the definitions.")]
TaskArg = Annotated[str, typer.Argument(help="The task's name.")]
FileArg = Annotated[str, typer.Argument(metavar="FILE", help="A YAML file, or - for standard input.")]
Branch = Annotated[
    str | None,
    typer.Option(
        "--branch",
        metavar="NAME",
        help="Commit to this branch (made from HEAD when new) for review, and do not apply.",
    ),
]
Fmt = Annotated[Format, typer.Option("--format", "-f")]


def _read(source: str) -> tuple[str, Any]:
    """The text of FILE (or standard input) and the one YAML document in it."""
    import yaml

    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidValue(f"cannot read {source}: {exc}", "FILE") from None
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise InvalidValue(f"{source} is not valid YAML: {exc}", "FILE") from None
    if len(documents) != 1:
        raise InvalidValue(f"{source} must hold one YAML document (it holds {len(documents)})", "FILE")
    return text, documents[0]


def _show(result: dict[str, Any], fmt: Format) -> None:
    if fmt == Format.json:
        out.print(json.dumps(result, indent=2, ensure_ascii=False), markup=False)
    else:
        out.print(render.change_text(result), markup=False)


@jobs_app.command("create")
@handles_errors
def create(source: FileArg, branch: Branch = None, fmt: Fmt = Format.text) -> None:
    """A new job from FILE, written as it is to jobs.d/<name>.yaml (jobs.d/<namespace>/…)."""
    text, document = _read(source)
    _show(services.create_job(STATE.workspace, document, branch=branch, text=text), fmt)


@jobs_app.command("edit")
@handles_errors
def edit(
    job: JobArg,
    sets: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="PATH=VALUE",
            help=(
                "Set a field: spec.batch_size=500, spec.tasks[orders].deletes=soft, or by index from 0 "
                "as errors name it, spec.tasks[0].deletes=soft (VALUE read as YAML)."
            ),
        ),
    ] = None,
    unsets: Annotated[
        list[str] | None, typer.Option("--unset", metavar="PATH", help="Remove a field.")
    ] = None,
    source: Annotated[
        str | None,
        typer.Option("--file", metavar="FILE", help="Replace the definition with FILE's (- for stdin)."),
    ] = None,
    branch: Branch = None,
    fmt: Fmt = Format.text,
) -> None:
    """Change a job in place in its file: what is not changed keeps its comments and layout."""
    import yaml

    ws = STATE.workspace
    if source is not None:
        if sets or unsets:
            raise InvalidValue("give --file or --set/--unset, not both", "--file")
        _show(services.replace_job(ws, job, _read(source)[1], branch=branch), fmt)
        return
    pairs = []
    for item in sets or []:
        path, sep, value = item.partition("=")
        if not sep or not path:
            raise InvalidValue(f"--set takes PATH=VALUE, not {item!r}", "--set")
        try:
            pairs.append((path.strip(), yaml.safe_load(value)))
        except yaml.YAMLError:
            raise InvalidValue(f"the value of {path!r} is not valid YAML", "--set") from None
    _show(services.edit_job(ws, job, pairs, unsets or [], branch=branch), fmt)


@jobs_app.command("delete")
@handles_errors
def delete(job: JobArg, branch: Branch = None, fmt: Fmt = Format.text) -> None:
    """Remove a job's definition (its file, when nothing else is in it); refused while it runs."""
    _show(services.delete_job(STATE.workspace, job, branch=branch), fmt)


@task_app.command("add")
@handles_errors
def task_add(
    job: JobArg,
    source: FileArg,
    position: Annotated[
        int | None, typer.Option("--to", metavar="N", help="Its place, 1 being first (default: last).")
    ] = None,
    branch: Branch = None,
    fmt: Fmt = Format.text,
) -> None:
    """Add the task in FILE (one task: name, read, write, …) to JOB."""
    _show(services.add_task(STATE.workspace, job, _read(source)[1], position, branch=branch), fmt)


@task_app.command("update")
@handles_errors
def task_update(
    job: JobArg, task: TaskArg, source: FileArg, branch: Branch = None, fmt: Fmt = Format.text
) -> None:
    """Replace TASK with the task in FILE, edited in place."""
    _show(services.replace_task(STATE.workspace, job, task, _read(source)[1], branch=branch), fmt)


@task_app.command("delete")
@handles_errors
def task_delete(job: JobArg, task: TaskArg, branch: Branch = None, fmt: Fmt = Format.text) -> None:
    """Remove TASK (with the comment lines above it); its pointer is forgotten at apply."""
    _show(services.delete_task(STATE.workspace, job, task, branch=branch), fmt)


@task_app.command("move")
@handles_errors
def task_move(
    job: JobArg,
    task: TaskArg,
    before: Annotated[str | None, typer.Option("--before", metavar="TASK", help="Just before TASK.")] = None,
    after: Annotated[str | None, typer.Option("--after", metavar="TASK", help="Just after TASK.")] = None,
    to: Annotated[int | None, typer.Option("--to", metavar="N", help="To place N, 1 being first.")] = None,
    branch: Branch = None,
    fmt: Fmt = Format.text,
) -> None:
    """Move TASK: the order a job's tasks run in (one of --before, --after, --to)."""
    result = services.move_task(STATE.workspace, job, task, to, before, after, branch=branch)
    _show(result, fmt)


@task_app.command("off")
@handles_errors
def task_off(job: JobArg, task: TaskArg, branch: Branch = None, fmt: Fmt = Format.text) -> None:
    """Switch TASK off (active: false): kept with its pointer, skipped by every run."""
    _show(services.switch_task(STATE.workspace, job, task, False, branch=branch), fmt)


@task_app.command("on")
@handles_errors
def task_on(job: JobArg, task: TaskArg, branch: Branch = None, fmt: Fmt = Format.text) -> None:
    """Switch TASK on again: it goes on from its pointer."""
    _show(services.switch_task(STATE.workspace, job, task, True, branch=branch), fmt)
