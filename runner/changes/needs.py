"""What a task asks of its kinds: every task's (its read's and write's), its strategy's and its
delete mode's. Pure functions of the task's definition, apart from the strategies' runs, so that
`runner validate` checks them without importing the engine (`runner.changes.strategies` names
each strategy's run and takes its needs from here)."""

from __future__ import annotations

from collections.abc import Callable

from runner.definitions.needs import Need
from runner.definitions.tasks import Task


def every_task(task: Task) -> list[Need]:
    """What every task needs of its kinds, whatever its strategy: what its read and its write
    ask for (a query read, scripts run, the target's merge or replace, ...)."""
    why = "a compute step's sql is computed in the source's read (a query)"
    in_read = [
        Need("source", "query", ("transforms", i, "sql"), why)
        for i, step in enumerate(task.transforms)
        if step.type == "compute" and step.sql is not None
    ]
    return [*task.read.needs(), *task.write.needs(task), *in_read]


def deletes(task: Task) -> list[Need]:
    """A read that lists the deleted keys (a deleted_keys_query, a broker's delete messages)
    asks for what it needs itself (`ReadModel.needs`); otherwise the target finds the keys gone
    (its merge, `native_merge`), or a write it does not merge takes them listed (asked for by
    the write already: `WriteModel.needs`)."""
    if task.deletes == "ignore" or task.read.lists_deleted_keys() or not task.write.merged():
        return []
    why = f"deletes: {task.deletes} has the target find the rows gone from the source"
    return [Need("target", "native_merge", ("deletes",), why)]


def full(task: Task) -> list[Need]:
    """Nothing beyond what every task needs: every row is read; a split reads each key range
    through a query of the source."""
    if task.changes.split is None:
        return []
    return [Need("source", "query", ("changes", "split"), "a split copy reads each key range with a query")]


def watermark(task: Task) -> list[Need]:
    """Nothing beyond every task's needs and its delete mode's: a watermark is read through
    `Source.read`, its highest value through `Source.highest`."""
    return []


def hashed(task: Task) -> list[Need]:
    """The source computes each row's digests and, for the rows that changed, reads them by key."""
    why = "strategy 'hash' compares digests computed in the source and reads changed rows by key"
    return [Need("source", c, ("changes", "strategy"), why) for c in ("digests", "key_lookup")]


def messages(task: Task) -> list[Need]:
    """The source's kind consumes: it hands messages out and takes them back acknowledged."""
    return [
        Need("source", "consume", ("changes", "strategy"), "strategy 'messages' consumes a broker's messages")
    ]


def cdc(task: Task) -> list[Need]:
    """A source whose kind reads a table's changes from its log."""
    why = "strategy 'cdc' reads the table's changes from the source's log"
    return [Need("source", "log_changes", ("changes", "strategy"), why)]


BY_STRATEGY: dict[str, Callable[[Task], list[Need]]] = {
    "full": full,
    "watermark": watermark,
    "hash": hashed,
    "messages": messages,
    "cdc": cdc,
}
