"""The target table before a task's run (`before_run`: truncate or recreate; `runner run
--recreate` once) and the state that keeps it safe.

The order makes a kill anywhere harmless: the state store first records, in one transaction,
that the table is to be loaded again (`Tasks.begin_reload`: pointer and digests forgotten, a
`reload_pending` mark set); only then is the table emptied or dropped (committed at once:
MariaDB commits a DROP by itself anyway), and the strategy loads it whole, since it has no
pointer or digest left. When the task succeeds the mark is cleared (`end_reload`). A run killed
between the drop and the end of the load leaves the mark: the next run, whatever its own
options, empties or drops the table again and reads everything, so an incremental run never
trusts a half-loaded table."""

from __future__ import annotations

from typing import cast

from runner.changes.task import TaskRun
from runner.connectors.base import TableLifecycle
from runner.errors import TerminalError
from runner.streams.checkpoints import checkpoint

STRONGER = {"keep": 0, "truncate": 1, "recreate": 2}


def action(run: TaskRun, pending: str | None) -> str:
    """What is done to the table before this run: the task's `before_run` (resolved with the
    job's, `runner.definitions.destination`), `recreate` when the run asks for it, or what a
    run that stopped before its load committed left pending, whichever does more."""
    asked = "recreate" if run.options.recreate else run.task.before_run or "keep"
    return max(asked, pending or "keep", key=STRONGER.__getitem__)


def prepare(run: TaskRun) -> None:
    """Empty or drop the task's table, after recording the reload in the state store."""
    task = run.task
    state = run.store.tasks.state(run.namespace, run.job, task.name)
    doing = action(run, state.reload_pending)
    if doing == "keep":
        return
    table = task.write.describe()
    if state.reload_pending and not run.options.recreate and task.before_run != doing:
        run.log(
            "warning",
            f"a run stopped before loading the table it had to {state.reload_pending}: doing it again",
            task=task.name,
            table=table,
        )
    if not run.target.capabilities.table_lifecycle:
        raise TerminalError(
            f"the target connection {run.target.name!r} is of type {run.target.kind!r}, whose tables "
            f"cannot be emptied or dropped ({doing} asked)"
        )
    if run.options.dry_run:
        run.log("info", f"dry run: the table would be {_done(doing)} first", task=task.name, table=table)
        return
    run.store.tasks.begin_reload(state.id, doing)
    target = cast(TableLifecycle, run.target)  # `needs.every_task`: the target has `table_lifecycle`
    if doing == "truncate":
        rows = target.truncate_table(run.table)
        run.log("info", "table emptied before the run", task=task.name, table=table, rows=rows)
    else:
        existed = target.drop_table(run.table)
        run.log(
            "info", "table dropped; the run creates it again", task=task.name, table=table, existed=existed
        )
    run.result.before_run = doing
    checkpoint("emptied")


def finish(run: TaskRun) -> None:
    """The task succeeded: its table holds what the source held (its load committed)."""
    if run.result.before_run is not None and not run.options.dry_run:
        state = run.store.tasks.state(run.namespace, run.job, run.task.name)
        run.store.tasks.end_reload(state.id)


def _done(doing: str) -> str:
    return "emptied" if doing == "truncate" else "dropped and created again"
