"""`runner verify`: a job's source and target compared; exit 0 equal, 2 different, 1 error."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from runner import services
from runner.cli.common import STATE, Format, handles_errors, out
from runner.cli.render import verify as render


def verify(
    job: Annotated[str, typer.Argument(help="name or namespace/name of an applied sync job.")],
    task: Annotated[
        list[str] | None, typer.Option("--task", "-t", help="Verify only this task (repeat for several).")
    ] = None,
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Then write the differing rows (and delete extra ones under deletes: propagate|soft) "
            "in a run of their own, recorded in the history.",
        ),
    ] = False,
    sample: Annotated[
        int, typer.Option("--sample", "-n", min=0, help="Keys listed per kind of difference.")
    ] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="The report as JSON (as --format json).")] = False,
    fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.text,
) -> None:
    """Compare a job's source and target as they are now (no stored pointer or digest trusted):
    key-bucket sums computed in each database, then the rows of differing buckets. Exit 0 when
    equal (or repaired), 2 when they differ, 1 on error."""
    _verify(job, task or None, repair, sample, fmt=Format.json if as_json else fmt)


@handles_errors
def _verify(job: str, tasks: list[str] | None, repair: bool, sample: int, fmt: Format) -> None:
    """`verify`, its errors reported in its format (`handles_errors` reads `fmt`)."""
    result = services.verify(STATE.workspace, job, tasks, repair=repair, sample=sample)
    if fmt == Format.json:
        out.print(json.dumps(result, indent=2, ensure_ascii=False, default=str), markup=False)
    else:
        out.print(render.verify_table(result))
        out.print(render.details_text(result), markup=False)
    raise typer.Exit(result["exit_code"])
