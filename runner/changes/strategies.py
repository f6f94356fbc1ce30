"""The change strategies by name: what `changes.strategy` may say, and what a task needs of its
kinds. Each strategy is one module with a `run(TaskRun)`, named here and imported when a task
first runs with it, and its needs in `runner.changes.needs` (which validation reads without the
engine); adding one is a module, a function there and a line here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from runner.changes import needs
from runner.definitions.needs import Need, refusals
from runner.definitions.tasks import Task
from runner.errors import TerminalError
from runner.registry import Registry, load

if TYPE_CHECKING:
    from runner.changes.task import TaskRun


@dataclass(frozen=True)
class Strategy:
    runs: str  # `module:function` of its run(TaskRun), imported when a task first runs with it
    needs: Callable[[Task], list[Need]]  # what it needs of the kinds, beyond every task's

    def run(self, run: TaskRun) -> None:
        load(self.runs)(run)


STRATEGIES: Registry[str, Strategy] = Registry("change strategy")
STRATEGIES.register("full", Strategy("runner.changes.split:run_full", needs.full))  # key ranges when asked
STRATEGIES.register("watermark", Strategy("runner.changes.watermark:run_watermark", needs.watermark))
STRATEGIES.register("hash", Strategy("runner.changes.hash:run_hash", needs.hashed))
STRATEGIES.register("messages", Strategy("runner.changes.messages:run_messages", needs.messages))
STRATEGIES.register("cdc", Strategy("runner.changes.cdc:run_cdc", needs.cdc))


def task_needs(t: Task) -> list[Need]:
    """Everything a task needs of its source's and target's kinds: its read and write fields',
    its strategy's and its delete mode's; one per end and capability (the first field asking)."""
    found: dict[tuple[str, str], Need] = {}
    for need in [*needs.every_task(t), *STRATEGIES.get(t.changes.strategy).needs(t), *needs.deletes(t)]:
        found.setdefault((need.end, need.capability), need)
    return list(found.values())


def check_needs(run: TaskRun) -> None:
    """Refuse a task its kinds cannot do before it starts, as `runner validate` does: an
    ad-hoc job, or a connection whose type changed since the job was applied."""
    ends = {"source": run.source, "target": run.target}
    unmet = [n for n in task_needs(run.task) if n.capability not in ends[n.end].capabilities.names()]
    if unmet:
        names = {end: c.name for end, c in ends.items()}
        kinds = {end: c.kind for end, c in ends.items()}
        found = refusals(unmet, names, kinds)  # type: ignore[arg-type]
        raise TerminalError("; ".join(f"{run.where(*path)}: {message}" for _, path, message in found))


def run_task(run: TaskRun) -> None:
    """Run a task with its strategy, once its kinds are known to serve it; its table emptied
    or dropped first where it asks (`runner.changes.lifecycle`). A repair run writes what
    `runner verify` finds differing instead, leaving the table and the pointers as they are."""
    from runner.changes import lifecycle  # here: validation reads the needs only

    check_needs(run)
    if run.options.repair:  # `runner verify --repair`: the differences only, the table as it is
        from runner.changes import verify  # only a repair run compares

        verify.repair(run)
        return
    lifecycle.prepare(run)
    STRATEGIES.get(run.task.changes.strategy).run(run)
    if run.result.filtered:  # the strategies count what the merge left alone as unchanged
        run.result.unchanged = max(0, run.result.unchanged - run.result.filtered)
    lifecycle.finish(run)
