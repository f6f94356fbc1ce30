"""Commands on the definitions and the applied state: validate, plan, apply, force-unlock,
schemas."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from runner import services
from runner.cli.common import STATE, Format, handles_errors, out, print_warnings, settled
from runner.cli.render import definitions as render


class CheckFormat(StrEnum):
    text = "text"
    json = "json"
    github = "github"


@handles_errors
def validate(
    fmt: Annotated[
        CheckFormat,
        typer.Option(
            "--format", "-f", help="text, json, or github (::error annotations for GitHub Actions)."
        ),
    ] = CheckFormat.text,
) -> None:
    """Check every definition file; exit 0 when valid, 1 with all problems otherwise.
    Warnings (valid, but likely not meant: a cron firing every second) are shown either way
    and do not change the exit code."""
    definitions, warnings = services.check(STATE.workspace)
    jobs = sum(1 for d in definitions if d.kind == "Job")
    if fmt == CheckFormat.json:
        out.print(render.problems_json([], warnings), markup=False)
    else:
        print_warnings(warnings, fmt.value)
        out.print(
            f"valid: {len(definitions) - jobs} connection(s), {jobs} job(s) in {STATE.workspace.root}",
            markup=False,
        )


class PlanFormat(StrEnum):
    text = "text"
    json = "json"
    markdown = "markdown"


@handles_errors
def plan(
    detailed_exitcode: Annotated[
        bool,
        typer.Option("--detailed-exitcode", help=("Exit 0 with no changes, 2 with changes, 1 on error.")),
    ] = False,
    fmt: Annotated[
        PlanFormat,
        typer.Option("--format", "-f", help="text, json, or markdown (to paste into a pull request)."),
    ] = PlanFormat.text,
    out_file: Annotated[
        Path | None,
        typer.Option("-out", "--out", "-o", help=("Save the plan; `runner apply FILE` applies exactly it.")),
    ] = None,
    show_unchanged: Annotated[
        bool, typer.Option("--show-unchanged", help="List unchanged objects too.")
    ] = False,
    expand: Annotated[
        bool,
        typer.Option(
            "--expand",
            help=(
                "Connect to the source of each sync_all job and list the tables it expands to "
                "(new ones marked, ones gone from the source too). Without it, plan connects to nothing."
            ),
        ),
    ] = False,
    data: Annotated[
        bool,
        typer.Option(
            "--data",
            help=(
                "Also dry-run each task of every new or changed job, from the folder's definitions, and show "
                "the rows its next run would insert, update and delete and the DDL it would run. Connects to "
                "the jobs' databases; writes nothing anywhere."
            ),
        ),
    ] = False,
    data_all: Annotated[bool, typer.Option("--data-all", help="As --data, for unchanged jobs too.")] = False,
    data_timeout: Annotated[
        float,
        typer.Option(
            "--data-timeout",
            metavar="SECONDS",
            min=1.0,
            help=(
                "Time for all of --data, shared by the tasks; a task stopped by it shows its counts so "
                "far, marked as an estimate."
            ),
        ),
    ] = 60.0,
    job: Annotated[
        list[str] | None,
        typer.Option("--job", metavar="JOB", help="With --data: count only this job (repeatable)."),
    ] = None,
) -> None:
    """Show what apply would create, update and delete, with changed fields (old → new); with
    --data, what the next run of each changed job would do to the data."""
    p = services.plan(STATE.workspace)
    settled()
    if out_file:
        services.save_plan(p, out_file)
    switches = services.runtime_switches(STATE.workspace)
    tables = services.expansions(STATE.workspace, p) if expand else {}
    releases = services.log_releases(STATE.workspace, p)
    counted = None
    if data or data_all:
        counted = services.plan_data(
            STATE.workspace, p, unchanged=data_all, timeout=data_timeout, jobs=job or None
        ).to_dict()
    if fmt == PlanFormat.json:
        extra = {"runtime": switches} | ({"expansions": tables} if expand else {})
        extra |= {"data": counted} if counted is not None else {}
        extra |= {"releases": releases} if releases else {}
        out.print(json.dumps(p.to_dict() | extra, indent=2, ensure_ascii=False), markup=False)
    elif fmt == PlanFormat.markdown:
        out.print(render.plan_markdown(p.to_dict(), counted), markup=False, end="")
    else:
        out.print(render.plan_text(p.to_dict(), show_unchanged or expand, tables), markup=False)
        if releases:
            out.print("\nApplying it also lets go of the logs of the cdc tasks it deletes:", markup=False)
            for line in releases:
                out.print(f"  - {line}", markup=False)
        if counted is not None:
            out.print("\n" + render.data_text(counted), markup=False)
        if note := render.switches_text(switches):
            out.print(note, markup=False)
        if out_file:
            out.print(
                f"\nSaved the plan to {out_file}; apply exactly it with: runner apply {out_file}",
                markup=False,
            )
    if detailed_exitcode and p.has_changes:
        raise typer.Exit(2)


@handles_errors
def apply(
    plan_file: Annotated[Path | None, typer.Argument(help="A plan saved by `runner plan -out FILE`.")] = None,
    lock_timeout: Annotated[
        float, typer.Option("--lock-timeout", help=("Seconds to wait for another apply to finish."))
    ] = 60.0,  # = services.DEFAULT_LOCK_TIMEOUT (a test checks): naming it loads the plan on any command
    fmt: Annotated[Format, typer.Option("--format", "-f", help="text or json.")] = Format.text,
) -> None:
    """Validate, plan and apply in one transaction, recording a revision (time, user, git commit)."""
    result = services.apply(STATE.workspace, plan_file, lock_timeout)
    settled()
    if fmt == Format.json:
        done = {"revision": result.revision, "plan": result.plan.to_dict()}
        done |= {"released": result.released} if result.released else {}
        out.print(json.dumps(done, indent=2, ensure_ascii=False), markup=False)
        return
    out.print(render.plan_text(result.plan.to_dict()), markup=False)
    if result.revision is not None:
        out.print(f"\nApplied as revision {result.revision}.", markup=False)
    for line in result.released:
        out.print(line, markup=False)


@handles_errors
def force_unlock(lock_id: Annotated[str, typer.Argument(help="The id shown by the lock error.")]) -> None:
    """Release a lock left by a process that is gone. The id must match the lock held now."""
    lock = services.force_unlock(STATE.workspace, lock_id)
    out.print(f"released the {lock.name} lock held by {lock.holder} since {lock.acquired_at}", markup=False)


@handles_errors
def schemas(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write the JSON Schema into.")] = Path(
        "schemas"
    ),
) -> None:
    """Write the JSON Schema of definitions (for editors and CI)."""
    path = services.write_schemas(out_dir)
    out.print(f"wrote {path}", markup=False)
