"""`runner changes JOB` and `runner replay RUN`: a reader job's change logs, listed and applied
again. (`runner jobs`/`runner task`, which change definitions, are in `runner.cli.changes`.)"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from runner import services
from runner.cli.common import STATE, Format, handles_errors, out
from runner.cli.render.cells import num, size


def changes_text(result: dict[str, Any]) -> str:
    """One line per change-log file: run, task, rows by operation, positions, size, file."""
    rows = result["change_logs"]
    if not rows:
        return f"{result['job']}: no change log kept"
    lines = [f"{result['job']}: {len(rows)} change log file(s)"]
    header = ("RUN", "TASK", "UPSERTS", "DELETES", "POSITIONS", "SIZE", "FILE")
    table = [
        (
            r["run_id"],
            r["task"],
            num(r["upserts"]),
            num(r["deletes"]),
            f"{r['first_position']}-{r['last_position']}" if r["rows"] else "-",
            size(r["bytes"]),
            r["file"],
        )
        for r in rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *table, strict=True)]
    for line in (header, *table):
        lines.append("  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)).rstrip())
    return "\n".join(lines)


@handles_errors
def changes(
    job: Annotated[str, typer.Argument(help="name or namespace/name of an applied reader job.")],
    fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.text,
) -> None:
    """List a reader job's change logs: run, task, rows by operation, positions, size, file."""
    result = services.changes(STATE.workspace, job)
    if fmt == Format.json:
        out.print(json.dumps(result, indent=2), markup=False)
    else:
        out.print(changes_text(result), markup=False)


@handles_errors
def replay(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="The id of a reader's run.")],
    into: Annotated[
        str,
        typer.Option(
            "--into", metavar="CONNECTION/TABLE", help="The table to apply it to (created when missing)."
        ),
    ],
    task: Annotated[
        str | None, typer.Option("--task", "-t", help="The task's change log (when the run kept several).")
    ] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.text,
) -> None:
    """Apply one stored change log again: its upserts and deletes, in order, in one transaction."""
    result = services.replay(STATE.workspace, run_id, into, task)
    if fmt == Format.json:
        out.print(json.dumps(result, indent=2), markup=False)
        return
    out.print(
        f"replayed run {result['run_id']} task {result['task']} into {result['into']}: "
        f"{result['rows']:,} changes → {result['inserted']:,} inserted, {result['updated']:,} updated, "
        f"{result['deleted']:,} deleted",
        markup=False,
    )
