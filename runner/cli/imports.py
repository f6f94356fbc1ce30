"""`runner import datazen|cdata FILE…`: the seed products' job definitions as runner YAML."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from runner import services
from runner.cli.common import STATE, Format, err, handles_errors, out

import_app = typer.Typer(
    help="Runner YAML from DataZen or CData Sync job definitions (JSON); lists what could not be mapped.",
    no_args_is_help=True,
)

FILES = typer.Argument(exists=True, dir_okay=False, readable=True, help="JSON files of job definitions.")
OUT_HELP = "Folder to write jobs.d/ and connections.d/ into (default: --dir). Existing files are kept."
CONNECTION_HELP = (
    "KEY=NAME: the product's connection KEY (or id) is the runner connection NAME; KEY=URL: write it as a "
    "connection (sqlite, postgresql, mariadb), any password replaced by ${env:KEY_PASSWORD}. Repeatable."
)


def _print(result: services.ImportResult, out_dir: Path, fmt: Format) -> None:
    if fmt == Format.json:
        data = {
            "written": [str(p) for p in result.written],
            "jobs": result.jobs,
            "not_mapped": result.report,
            "valid": result.valid,
            "problems": [p.as_dict() for p in result.problems],
        }
        out.print(json.dumps(data, indent=2, ensure_ascii=False), markup=False)
    else:
        for path in result.written:
            out.print(f"wrote {path}", markup=False)
        if result.report:
            out.print("not mapped, or mapped with a note (field by field):", markup=False)
            for line in result.report:
                out.print(f"  {line}", markup=False)
        if result.written and result.valid:
            out.print(f"valid: `runner validate` passes in {out_dir}", markup=False)
    for problem in result.problems:
        err.print(str(problem), markup=False)
    if not result.written:
        err.print("error: nothing was written", markup=False)
        raise typer.Exit(1)
    if not result.valid:
        err.print(f"error: {out_dir} does not validate with the imported files (see above)", markup=False)
        raise typer.Exit(1)


def _run(
    system: str,
    files: list[Path],
    out_dir: Path | None,
    connection: list[str] | None,
    force: bool,
    fmt: Format,
    source: str | None = None,
    target: str | None = None,
) -> None:
    folder = out_dir or STATE.workspace.root
    result = services.import_jobs(system, files, folder, connection, source, target, force)
    _print(result, folder, fmt)


@import_app.command("datazen")
@handles_errors
def datazen(
    files: Annotated[list[Path], FILES],
    out_dir: Annotated[Path | None, typer.Option("--out", metavar="DIR", help=OUT_HELP)] = None,
    connection: Annotated[
        list[str] | None, typer.Option("--connection", "-c", metavar="KEY=NAME|URL", help=CONNECTION_HELP)
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite files that exist.")] = False,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="text or json.")] = Format.text,
) -> None:
    """DataZen jobs (its job API's JSON, GET /jobs/info, Export JSON: JobReader, JobWriter,
    JsonData, PipelineDef): a Direct Job becomes a sync job of one task. Exit 1 when nothing
    was written or the folder does not validate with what was."""
    _run("datazen", files, out_dir, connection, force, fmt)


@import_app.command("cdata")
@handles_errors
def cdata(
    files: Annotated[list[Path], FILES],
    out_dir: Annotated[Path | None, typer.Option("--out", metavar="DIR", help=OUT_HELP)] = None,
    connection: Annotated[
        list[str] | None, typer.Option("--connection", "-c", metavar="KEY=NAME|URL", help=CONNECTION_HELP)
    ] = None,
    source: Annotated[
        str | None,
        typer.Option("--source", metavar="NAME", help="The source connection of a body naming none."),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option("--target", metavar="NAME", help="The target connection of a body naming none."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite files that exist.")] = False,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="text or json.")] = Format.text,
) -> None:
    """CData Sync jobs (the job API's body, its tasks' REPLICATE queries): each REPLICATE is a
    task. Exit 1 when nothing was written or the folder does not validate with what was."""
    _run("cdata", files, out_dir, connection, force, fmt, source, target)
