"""Commands that show what is applied: get, describe, tasks."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated

import typer

from runner import services
from runner.cli.common import STATE, Format, handles_errors, out
from runner.cli.render import objects as render


class GetKind(StrEnum):
    jobs = "jobs"
    connections = "connections"


class DescribeKind(StrEnum):
    job = "job"
    connection = "connection"


_KIND = {"jobs": "Job", "job": "Job", "connections": "Connection", "connection": "Connection"}


@handles_errors
def get(
    kind: Annotated[GetKind, typer.Argument(help="jobs or connections.")],
    fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.text,
) -> None:
    """List what is applied, with the revision and file of each object."""
    objects = services.get(STATE.workspace, _KIND[kind.value])
    if fmt == Format.json:
        out.print(
            json.dumps(
                [
                    {
                        "namespace": o.namespace,
                        "name": o.name,
                        "revision": o.revision_id,
                        "file": o.file,
                        "line": o.line,
                        "document": o.document,
                    }
                    for o in objects
                ],
                indent=2,
                ensure_ascii=False,
            ),
            markup=False,
        )
    else:
        out.print(render.objects_table(objects, _KIND[kind.value]))


@handles_errors
def describe(
    kind: Annotated[DescribeKind, typer.Argument(help="job or connection.")],
    name: Annotated[str, typer.Argument(help="name or namespace/name.")],
    fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.text,
) -> None:
    """Show an applied object: its definition, revision, file, next and last runs."""
    info = services.describe(STATE.workspace, _KIND[kind.value], name)
    out.print(
        json.dumps(info, indent=2, ensure_ascii=False) if fmt == Format.json else render.describe_text(info),
        markup=False,
    )


@handles_errors
def tasks(
    job: Annotated[str, typer.Argument(help="name or namespace/name of an applied job.")],
    fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.text,
) -> None:
    """A job's tasks, each with its last run and pointer (a sync_all job's: its source's tables
    now; a load_folder job's: the tables its runs loaded)."""
    rows = services.tasks(STATE.workspace, job)
    if fmt == Format.json:
        out.print(json.dumps(rows, indent=2, ensure_ascii=False, default=str), markup=False)
    else:
        out.print(render.tasks_table(job, rows))
