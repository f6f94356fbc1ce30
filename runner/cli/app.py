"""`runner` commands. Each is a few lines: parse options, call `runner.service`, print.

Exit codes: 0 success; 1 error (invalid definitions, failed run, lock timeout, ...);
2 from `plan --detailed-exitcode` when there are changes.
"""

from __future__ import annotations

import functools
import json
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console

from runner import service
from runner.cli import render
from runner.errors import DefinitionsInvalid, Problem, RunnerError

app = typer.Typer(
    name="runner",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    help="Declarative data-sync jobs kept as YAML in git: validate, plan, apply, run.",
    context_settings={"help_option_names": ["-h", "--help"]},
)
# Piped output is not cut to 80 columns: run ids and paths in tables must stay whole.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 250)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class Format(StrEnum):
    text = "text"
    json = "json"


class CheckFormat(StrEnum):
    text = "text"
    json = "json"
    github = "github"


class State:
    debug = False
    workspace: service.Workspace


STATE = State()

P = ParamSpec("P")
R = TypeVar("R")


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
    STATE.workspace = service.Workspace.from_env(directory, state, history)


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
            _print_warnings(exc.warnings, fmt)
            err.print(f"{len(exc.problems)} problem(s) found", markup=False)
        else:
            _print_warnings(exc.warnings, fmt)
            err.print(render.problems_text(exc.problems), markup=False)
    else:
        if fmt == "json":
            out.print(json.dumps({"error": str(exc)}), markup=False)
        err.print(f"error: {exc}", markup=False)


def _print_warnings(warnings: list[Problem], fmt: str) -> None:
    """Warnings never change the exit code: as annotations on GitHub, else on stderr."""
    if not warnings:
        return
    if fmt == "github":
        out.print(render.problems_github(warnings, "warning"), markup=False)
    else:
        err.print(render.warnings_text(warnings), markup=False)


@app.command()
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
    definitions, warnings = service.check(STATE.workspace)
    jobs = sum(1 for d in definitions if d.kind == "Job")
    if fmt == CheckFormat.json:
        out.print(render.problems_json([], warnings), markup=False)
    else:
        _print_warnings(warnings, fmt.value)
        out.print(
            f"valid: {len(definitions) - jobs} connection(s), {jobs} job(s) in {STATE.workspace.root}",
            markup=False,
        )


@app.command()
@handles_errors
def plan(
    detailed_exitcode: Annotated[
        bool,
        typer.Option("--detailed-exitcode", help=("Exit 0 with no changes, 2 with changes, 1 on error.")),
    ] = False,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="text or json.")] = Format.text,
    out_file: Annotated[
        Path | None,
        typer.Option("-out", "--out", "-o", help=("Save the plan; `runner apply FILE` applies exactly it.")),
    ] = None,
    show_unchanged: Annotated[
        bool, typer.Option("--show-unchanged", help="List unchanged objects too.")
    ] = False,
) -> None:
    """Show what apply would create, update and delete, with changed fields (old → new)."""
    p = service.plan(STATE.workspace)
    if out_file:
        service.save_plan(p, out_file)
    switches = service.runtime_switches(STATE.workspace)
    if fmt == Format.json:
        out.print(json.dumps(p.to_dict() | {"runtime": switches}, indent=2, ensure_ascii=False), markup=False)
    else:
        out.print(render.plan_text(p.to_dict(), show_unchanged), markup=False)
        if note := render.switches_text(switches):
            out.print(note, markup=False)
        if out_file:
            out.print(
                f"\nSaved the plan to {out_file}; apply exactly it with: runner apply {out_file}",
                markup=False,
            )
    if detailed_exitcode and p.has_changes:
        raise typer.Exit(2)


@app.command()
@handles_errors
def apply(
    plan_file: Annotated[Path | None, typer.Argument(help="A plan saved by `runner plan -out FILE`.")] = None,
    lock_timeout: Annotated[
        float, typer.Option("--lock-timeout", help=("Seconds to wait for another apply to finish."))
    ] = service.DEFAULT_LOCK_TIMEOUT,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="text or json.")] = Format.text,
) -> None:
    """Validate, plan and apply in one transaction, recording a revision (time, user, git commit)."""
    result = service.apply(STATE.workspace, plan_file, lock_timeout)
    if fmt == Format.json:
        out.print(
            json.dumps(
                {"revision": result.revision, "plan": result.plan.to_dict()}, indent=2, ensure_ascii=False
            ),
            markup=False,
        )
        return
    out.print(render.plan_text(result.plan.to_dict()), markup=False)
    if result.revision is not None:
        out.print(f"\nApplied as revision {result.revision}.", markup=False)


@app.command("force-unlock")
@handles_errors
def force_unlock(lock_id: Annotated[str, typer.Argument(help="The id shown by the lock error.")]) -> None:
    """Release a lock left by a process that is gone. The id must match the lock held now."""
    lock = service.force_unlock(STATE.workspace, lock_id)
    out.print(f"released the {lock.name} lock held by {lock.holder} since {lock.acquired_at}", markup=False)


class GetKind(StrEnum):
    jobs = "jobs"
    connections = "connections"


_KIND = {"jobs": "Job", "job": "Job", "connections": "Connection", "connection": "Connection"}


@app.command()
@handles_errors
def get(
    kind: Annotated[GetKind, typer.Argument(help="jobs or connections.")],
    fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.text,
) -> None:
    """List what is applied, with the revision and file of each object."""
    objects = service.get(STATE.workspace, _KIND[kind.value])
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


class DescribeKind(StrEnum):
    job = "job"
    connection = "connection"


@app.command()
@handles_errors
def describe(
    kind: Annotated[DescribeKind, typer.Argument(help="job or connection.")],
    name: Annotated[str, typer.Argument(help="name or namespace/name.")],
    fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.text,
) -> None:
    """Show an applied object: its definition, revision, file, next and last runs."""
    info = service.describe(STATE.workspace, _KIND[kind.value], name)
    out.print(
        json.dumps(info, indent=2, ensure_ascii=False) if fmt == Format.json else render.describe_text(info),
        markup=False,
    )


@app.command()
@handles_errors
def run(
    job: Annotated[str, typer.Argument(help="name or namespace/name of an applied job.")],
    task: Annotated[
        list[str] | None, typer.Option("--task", "-t", help="Run only this task (repeat for several).")
    ] = None,
    resync: Annotated[
        bool, typer.Option("--resync", help="Forget pointers and digests first: read everything again.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would change; write nothing, move no pointer.")
    ] = False,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit",
            "-n",
            min=1,
            help="A test run: read at most N rows per task, write them and roll back (a dry run: "
            "no delete, no pointer moved).",
        ),
    ] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.text,
) -> None:
    """Run an applied job now; exit 1 when a task fails. Writes a history file and a run log."""
    options = service.RunOptions(tasks=task or None, resync=resync, dry_run=dry_run, limit=limit)
    token = service.CancelToken()
    with _stop_at_batch_boundary(token):
        if out.is_terminal and fmt == Format.text:
            with render.run_progress(err) as progress:
                record = service.run(STATE.workspace, job, options, progress=progress, cancel=token)
        else:  # not a terminal: the run's log lines, as they happen, on stderr
            record = service.run(
                STATE.workspace,
                job,
                options,
                on_log=_echo_log,
                cancel=token,
            )
    if STATE.debug and record["status"] == "failed":
        for entry in service.log_since(STATE.workspace, record["run_id"], level="debug")["lines"]:
            if "traceback" in entry:
                err.print(f"task {entry.get('task')}:\n{entry['traceback']}", markup=False)
    out.print(
        json.dumps(record, indent=2, ensure_ascii=False, default=str)
        if fmt == Format.json
        else render.run_text(record),
        markup=False,
    )
    if record["status"] != "succeeded":
        raise typer.Exit(1)


def _echo_log(entry: dict[str, Any]) -> None:
    """A run's log line on stderr as it happens; debug lines (a failed task's traceback) are
    for `--debug`, which prints them once the run ends."""
    if entry.get("level") != "debug":
        err.print(render.log_line(entry), markup=False)


@contextmanager
def _stop_at_batch_boundary(token: service.CancelToken) -> Iterator[None]:
    """The first Ctrl-C (or SIGTERM) stops the run cleanly at its next batch boundary; a
    second Ctrl-C interrupts at once (the batch in flight is rolled back either way)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def first(signum: int, _frame: object) -> None:
        token.cancel(f"interrupted ({signal.Signals(signum).name}): stopped at a batch boundary")
        signal.signal(signal.SIGINT, signal.default_int_handler)
        err.print("stopping at the next batch boundary; Ctrl-C again to stop at once", markup=False)

    previous = {sig: signal.signal(sig, first) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


pointer_app = typer.Typer(help="Show or set the watermark pointers of a job's tasks.", no_args_is_help=True)
app.add_typer(pointer_app, name="pointer")


@pointer_app.command("show")
@handles_errors
def pointer_show(
    job: Annotated[str, typer.Argument(help="name or namespace/name of an applied job.")],
    fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.text,
) -> None:
    """Each task's stored pointer."""
    rows = service.pointer_show(STATE.workspace, job)
    out.print(json.dumps(rows, indent=2) if fmt == Format.json else render.pointers_table(job, rows))


@pointer_app.command("set")
@handles_errors
def pointer_set(
    job: Annotated[str, typer.Argument(help="name or namespace/name of an applied job.")],
    task: Annotated[str, typer.Argument(help="A watermark task of the job.")],
    value: Annotated[str | None, typer.Argument(help="The new pointer; leave out to clear it.")] = None,
) -> None:
    """Set a task's pointer (its next run reads from there); without VALUE, clear it."""
    change = service.pointer_set(STATE.workspace, job, task, value)
    out.print(
        f"pointer of task {change['task']}: {render.pointer_text(change['old'])} → "
        f"{render.pointer_text(change['new'])}",
        markup=False,
    )


@app.command()
@handles_errors
def logs(
    run_or_job: Annotated[str, typer.Argument(help="A run id, or a job with --last.")],
    last: Annotated[bool, typer.Option("--last", help="The log of the job's last run.")] = False,
    fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.text,
) -> None:
    """Print a run's log."""
    entries = service.logs(STATE.workspace, run_or_job, last)
    for entry in entries:
        out.print(
            json.dumps(entry, ensure_ascii=False) if fmt == Format.json else render.log_line(entry),
            markup=False,
        )


@app.command()
@handles_errors
def history(
    job: Annotated[str, typer.Argument(help="name or namespace/name of an applied job.")],
    limit: Annotated[int, typer.Option("--limit", "-n", help="Newest N runs.")] = 20,
    task: Annotated[
        str | None, typer.Option("--task", "-t", help="Only this task: its result in each run.")
    ] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.text,
) -> None:
    """List a job's runs (or one task's results), newest first, from its history files."""
    records = service.runs(STATE.workspace, job, limit, task)
    if fmt == Format.json:
        out.print(json.dumps(records, indent=2, ensure_ascii=False, default=str), markup=False)
    elif task:
        out.print(render.task_history_table(job, task, records))
    else:
        out.print(render.history_table(job, records))


@app.command()
@handles_errors
def status(fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.text) -> None:
    """Jobs with schedule, next run, last run, the run going on, suspended or paused, and
    whether an applied update waits for a running run to end."""
    info = service.status(STATE.workspace)
    if fmt == Format.json:
        out.print(json.dumps(info, indent=2, ensure_ascii=False, default=str), markup=False)
    else:
        out.print(render.status_header(info), markup=False)
        out.print(render.status_table(info))


@app.command()
@handles_errors
def tasks(
    job: Annotated[str, typer.Argument(help="name or namespace/name of an applied job.")],
    fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.text,
) -> None:
    """A job's tasks, each with its last run and pointer."""
    rows = service.tasks(STATE.workspace, job)
    if fmt == Format.json:
        out.print(json.dumps(rows, indent=2, ensure_ascii=False, default=str), markup=False)
    else:
        out.print(render.tasks_table(job, rows))


@app.command()
@handles_errors
def cancel(job: Annotated[str, typer.Argument(help="name or namespace/name of a running job.")]) -> None:
    """Stop a running job at its next batch boundary (in the daemon or any `runner run`).
    What was committed stays, with its pointers and digests: the next run resumes from there."""
    info = service.cancel(STATE.workspace, job)
    out.print(f"asked run {info['run_id']} of {info['job']} ({info['holder']}) to stop", markup=False)


@app.command()
@handles_errors
def suspend(job: Annotated[str, typer.Argument(help="name or namespace/name of an applied job.")]) -> None:
    """Stop the daemon firing a job (cron and triggers) until `runner resume`. A runtime switch
    in the state store, not a change to git; a run going on finishes."""
    _switch(job, True)


@app.command()
@handles_errors
def resume(job: Annotated[str, typer.Argument(help="name or namespace/name of a suspended job.")]) -> None:
    """Let the daemon fire a suspended job again; a cron slot missed meanwhile runs once."""
    _switch(job, False)


def _switch(job: str, suspended: bool) -> None:
    info = service.suspend(STATE.workspace, job, suspended)
    word = "suspended" if suspended else "resumed"
    out.print(
        f"{info['job']} {word}" if info["changed"] else f"{info['job']} was already {word}", markup=False
    )


@app.command()
@handles_errors
def pause() -> None:
    """Stop all scheduling by the daemon (cron, triggers, retries); running jobs finish."""
    _pause(True, "scheduling paused; `runner unpause` resumes it")


@app.command()
@handles_errors
def unpause() -> None:
    """Resume scheduling; a cron slot missed while paused runs once."""
    _pause(False, "scheduling resumed")


def _pause(paused: bool, done: str) -> None:
    service.pause(STATE.workspace, paused)
    out.print(done, markup=False)


@app.command()
@handles_errors
def daemon(
    workers: Annotated[
        int | None,
        typer.Option("--workers", "-w", min=1, help="Jobs run at once. Default: the number of cores (≥ 2)."),
    ] = None,
    grace: Annotated[
        float, typer.Option("--grace", min=0, help="Seconds running jobs get to finish on SIGTERM/SIGINT.")
    ] = 30.0,
    debounce: Annotated[
        float,
        typer.Option("--debounce", min=0, help="Seconds of quiet after a file change before reconciling."),
    ] = 0.5,
    settle: Annotated[
        float,
        typer.Option(
            "--settle", min=0, help="Seconds a planned deletion must stay planned before it is applied."
        ),
    ] = 2.0,
    poll: Annotated[
        float,
        typer.Option(
            "--poll", min=0.05, help="Seconds between reads of the state store (applies, switches)."
        ),
    ] = 1.0,
    no_watch: Annotated[
        bool,
        typer.Option(
            "--no-watch",
            help="Apply the folders once at start, then do not watch them (later: `runner apply`).",
        ),
    ] = False,
    http: Annotated[
        str | None,
        typer.Option(
            "--http",
            metavar="[HOST:]PORT",
            help="Serve the HTTP API (/api/v1) and the status page (/); the host defaults to 127.0.0.1.",
        ),
    ] = None,
    allow_adhoc: Annotated[
        bool,
        typer.Option(
            "--allow-adhoc",
            help="Let operate keys POST ad-hoc job specs to /api/v1/runs: any SQL on any applied connection.",
        ),
    ] = False,
    keep_runs: Annotated[
        int | None,
        typer.Option("--keep-runs", min=1, help="History retention: keep each job's newest N runs."),
    ] = None,
    keep_days: Annotated[
        float | None,
        typer.Option(
            "--keep-days",
            min=0,
            help="History retention: keep each job's runs of the last N days (with --keep-runs: either "
            "keeps a run). The last run of each task is always kept. Default: keep everything.",
        ),
    ] = None,
) -> None:
    """Watch jobs.d/ and connections.d/, apply changes, fire jobs on cron and triggers, run them.
    Logs one line per event on stderr (JSON when not a terminal). SIGTERM/SIGINT stop it cleanly."""
    options = {
        "grace": grace,
        "debounce": debounce,
        "settle": settle,
        "poll": poll,
        "watch": not no_watch,
        "http": http,
        "allow_adhoc": allow_adhoc,
        "keep_runs": keep_runs,
        "keep_days": keep_days,
    }
    code = service.daemon(STATE.workspace, **options, **({"workers": workers} if workers else {}))
    raise typer.Exit(code)


@app.command()
@handles_errors
def schemas(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write the JSON Schema into.")] = Path(
        "schemas"
    ),
) -> None:
    """Write the JSON Schema of definitions (for editors and CI)."""
    path = service.write_schemas(out_dir)
    out.print(f"wrote {path}", markup=False)


@app.command()
@handles_errors
def serve(
    http: Annotated[
        str,
        typer.Option(
            "--http", metavar="[HOST:]PORT", help="Where to listen; the host defaults to 127.0.0.1."
        ),
    ] = "127.0.0.1:8080",
) -> None:
    """Serve the HTTP API read-only (GET) and the status page, without scheduling or running jobs."""
    service.serve(STATE.workspace, http)


connections_app = typer.Typer(
    help="Look at the connections in connections.d/ (the folder, not the applied state).",
    no_args_is_help=True,
)
app.add_typer(connections_app, name="connections")


@connections_app.command("test")
@handles_errors
def connections_test(
    name: Annotated[
        str | None, typer.Argument(help="name or namespace/name; default: every connection.")
    ] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.text,
) -> None:
    """Connect, show the server's version and check the privileges the jobs need: reading
    the tables and queries they read (SELECT … WHERE 1 = 0), and creating a table and a
    staging table where they write (rolled back; in MariaDB created and dropped). Exit 1 when
    any connection fails, naming it and the reason (secrets redacted)."""
    results = service.connections_test(STATE.workspace, name)
    if fmt == Format.json:
        out.print(json.dumps(results, indent=2, ensure_ascii=False), markup=False)
    else:
        out.print(render.connection_tests_text(results), markup=False)
    failed = [r for r in results if not r["ok"]]
    for r in failed:
        reason = "; ".join(f"{c['check']}: {c['detail']}" for c in r["checks"] if c["ok"] is False)
        err.print(f"error: connection {r['connection']} failed: {reason}", markup=False)
    if failed:
        raise typer.Exit(1)


@app.command()
@handles_errors
def discover(
    connection: Annotated[
        str, typer.Argument(help="name or namespace/name of a connection in connections.d/.")
    ],
    schema: Annotated[
        str | None, typer.Option("--schema", "-s", help="Schema to list. Default: the connection's own.")
    ] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.text,
) -> None:
    """List a connection's tables with their columns, types and primary keys, and print a task
    list to paste under a job's `tasks:` (a table with a primary key: keys and the hash
    strategy; without one: copied in full)."""
    info = service.discover(STATE.workspace, connection, schema)
    if fmt == Format.json:
        out.print(json.dumps(info, indent=2, ensure_ascii=False), markup=False)
    else:
        out.print(render.discover_yaml(info), markup=False)


keys_app = typer.Typer(help="Keys of the HTTP API: create, list, revoke.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


class Scope(StrEnum):
    read = "read"
    operate = "operate"


@keys_app.command("create")
@handles_errors
def keys_create(
    name: Annotated[str, typer.Argument(help="A name for the key (who or what uses it).")],
    scope: Annotated[
        Scope,
        typer.Option("--scope", help="read: GET only; operate: also runs, cancels, suspends, pointers."),
    ] = Scope.read,
) -> None:
    """Create a key and print it once; only its hash is stored."""
    key = service.keys_create(STATE.workspace, name, scope.value)
    out.print(key, markup=False)
    err.print(f"key {name!r} ({scope.value}): shown once, keep it now", markup=False)


@keys_app.command("list")
@handles_errors
def keys_list(fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.text) -> None:
    """The keys: name, scope, created when and by whom (never the key)."""
    rows = service.keys_list(STATE.workspace)
    if fmt == Format.json:
        out.print(json.dumps(rows, indent=2), markup=False)
    else:
        out.print(render.keys_table(rows))


@keys_app.command("revoke")
@handles_errors
def keys_revoke(name: Annotated[str, typer.Argument(help="The key's name.")]) -> None:
    """Revoke a key: requests with it are refused (401) within a second."""
    service.keys_revoke(STATE.workspace, name)
    out.print(f"key {name!r} revoked", markup=False)


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
