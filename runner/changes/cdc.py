"""The cdc strategy: a table's changes read from the source's own log (log-based change data
capture), applied to the target in commit order.

First run (or a resync, or a slot found without a stored position): the source's log reader
(`runner.connectors.changelog`) creates the task's slot, and the table is read in the
snapshot taken exactly where the slot starts; it is merged into the target (keys the source
lacks deleted, as `deletes` says) and committed, and only then is the slot's start stored as
the task's position. Every run then reads the transactions committed after the stored
position, up to the log's end when the run began: each change is an upsert of the whole row,
a delete by key (an update that changed the key is both), or a truncate. Within a batch the
last change of a key wins; batches are staged, merged and deleted in the writer's one open
transaction, and the target commits only at a transaction's end, after which the position
just past that transaction is stored. Once the run is done the source is told (`confirm`)
that the log up to the stored position may go.

A run killed anywhere leaves the target with whole source transactions up to a stored
position, or past it (committed, not yet stored), and the slot never past it: the next run
reads from the stored position and applies those transactions again in order, which ends in
the same rows (each change sets a row's whole value, or removes it).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, cast

from runner.changes.task import TaskRun, columns_of
from runner.connectors.base import STAGE, MergeWriter, Source, Writer
from runner.connectors.changelog import POSITION, ChangeLog, LogSource, RowChange, log_names
from runner.definitions.needs import Need
from runner.definitions.tasks import Task
from runner.errors import TerminalError
from runner.streams.checkpoints import checkpoint
from runner.streams.types import Column


def needs(task: Task) -> list[Need]:
    """A source whose kind reads a table's changes from its log."""
    why = "strategy 'cdc' reads the table's changes from the source's log"
    return [Need("source", "log_changes", ("changes", "strategy"), why)]


def live_lag(
    source: Source, namespace: str, job: str, task: Task, pointer: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A cdc task's lag now, asked of its source (`runner tasks`); `pointer` is the task's
    stored one."""
    assert task.read.table is not None
    names = log_names(namespace, job, task.name)
    log = cast(LogSource, source).change_log(names, task.read.table, [], [])
    if not log.exists():
        return {"slot": log.names.slot, "exists": False}
    lag = log.lag(seconds=True, position=position_of(pointer, names.slot))
    limit = task.changes.max_lag_bytes()
    return {
        "slot": log.names.slot,
        "exists": True,
        "lag_seconds": lag.seconds,
        "lag_bytes": lag.bytes,
        "retained_bytes": lag.retained,
        "max_lag": limit,
        "over_max_lag": lag.retained > limit,
    }


def position_of(pointer: dict[str, Any] | None, slot: str) -> str | None:
    """The stored position of a task, when it is one of this slot's."""
    if pointer and pointer.get("type") == POSITION and pointer.get("slot") == slot:
        return str(pointer["value"])
    return None


@dataclass
class Pending:
    """Changes read and not yet given to the writer: the last change of each key (the row, or
    None for a delete), after a truncate when one came."""

    truncate: bool = False
    rows: dict[tuple, tuple | None] = field(default_factory=dict)

    def add(self, change: RowChange, key_at: list[int]) -> None:
        if change.op == "truncate":
            self.truncate, self.rows = True, {}
        elif change.op == "delete":
            assert change.values is not None
            self.rows[change.values] = None
        else:
            assert change.values is not None
            self.rows[tuple(change.values[i] for i in key_at)] = change.values

    def __len__(self) -> int:
        return len(self.rows) + self.truncate


def run_cdc(run: TaskRun) -> None:
    task, result, options = run.task, run.result, run.options
    assert task.read.table is not None  # `Task._check_cdc`
    state = run.state()
    source = cast(LogSource, run.source)
    names = log_names(run.namespace, run.job, task.name)
    columns = columns_of(run)
    unmapped = [c.name for c in columns if c.unmapped and c.type.kind == "jsonb"]
    if unmapped:
        raise TerminalError(
            f"{run.where('read', 'unmapped_types')}: strategy 'cdc' reads unmapped columns "
            f"({', '.join(unmapped)}) as the log gives them, as text: set read.unmapped_types to text"
        )
    run.use_columns(columns)
    key_at = [[c.name for c in columns].index(k) for k in task.write.keys]
    log = source.change_log(names, task.read.table, columns, task.write.keys)
    position = position_of(state.pointer, names.slot)
    result.pointer_before = result.pointer_after = state.pointer if position else None
    if position is not None and not log.exists():
        raise TerminalError(
            f"the replication slot {names.slot!r} of task {task.name!r} is gone from the source (dropped "
            "by hand, or the source was restored); run with --resync to load the table again"
        )
    if position is None and not options.dry_run:
        position = _snapshot(run, log, columns, state.id)
    with run.writer(columns) as w:
        if position is None:  # a dry run's first run: the table read without a slot
            run.log(
                "info",
                "dry run: the table is read as a first snapshot would; no slot is made",
                task=task.name,
            )
            _load(run, w)
            run.log("info", "dry run: rolled back", task=task.name)
        else:
            position = _changes(run, w, log, state.id, position, key_at)
    if position is not None and not options.dry_run:
        log.confirm(position)  # the target and the task's state hold everything up to here
        _report_lag(run, log, state.id)


def _snapshot(run: TaskRun, log: ChangeLog, columns: list[Column], task_id: int) -> str:
    """Create the slot, copy the table as of its start and commit; then store the start. The
    target's writer opens only once the slot exists: creating a slot waits for every
    transaction of the server to end, the writer's too when the target is on the same server."""
    log.check_setup()
    with log.start() as position:
        run.log(
            "info", "replication slot created; reading the snapshot", task=run.task.name, slot=log.names.slot
        )
        with run.writer(columns, copy=True) as w:
            _load(run, w)
            w.commit()  # the target holds the snapshot: only now may the position be stored
            run.committed()
    run.result.pointer_after = _pointer(log, position)
    run.store.tasks.set_pointer(task_id, None, run.result.pointer_after, run.run_id)
    checkpoint("stored")
    return position


def _load(run: TaskRun, w: Writer) -> None:
    """The table's rows merged into the target; keys the source lacks deleted as `deletes` says."""
    task, result = run.task, run.result
    stream = run.source.read(task.read, run.batch_size, limit=run.options.limit)
    run.track(stream.batches, cancellable=False)  # closed when the task ends, even if never read
    # copied inside the databases where the pair can (its reads import the slot's snapshot too):
    # into an empty table straight, else into the stage to be merged
    empty = cast(MergeWriter, w).empty_at_start
    if run.copied(w, task.write.table if empty else STAGE, stream):
        checkpoint("write")
        if empty:
            result.inserted = result.rows_read
            return
    for batch in run.timed(stream.batches):
        w.stage(batch)
        checkpoint("write")
    result.add(w.merge())
    if task.deletes != "ignore" and run.options.limit is None:
        result.deleted += cast(MergeWriter, w).delete_missing()
    w.clear_stage()


def _changes(run: TaskRun, w: Writer, log: ChangeLog, task_id: int, position: str, key_at: list[int]) -> str:
    """Apply the transactions committed after `position` up to the log's end now; returns the
    position stored at the end."""
    result, options = run.result, run.options
    cast(MergeWriter, w).empty_at_start = False  # a key may come again: always merge, never insert
    upto = log.end()
    pending = Pending()
    since_commit = 0  # changes given to the writer since the target's last commit
    stored = reached = position  # what the task's state holds; just past the last transaction read
    oldest: dt.datetime | None = None
    changes = log.changes(position, upto)
    run.track(changes, cancellable=False)  # closed (and its connection freed) when the task ends
    for item in changes:
        if isinstance(item, RowChange):
            pending.add(item, key_at)
            result.rows_read += 1
            since_commit += 1
            if len(pending) >= run.batch_size:  # a large transaction: into the writer, not committed
                checkpoint("read")
                _flush(run, w, pending)
            continue
        oldest = oldest or item.committed_at
        reached = item.position
        if options.limit is not None and result.rows_read >= options.limit:
            break
        if since_commit >= run.batch_size:
            stored = _commit(run, w, pending, task_id, log, reached)
            since_commit = 0
            if run.cancel:
                run.cancel.check()
    if oldest is not None:
        behind = (dt.datetime.now(dt.UTC).replace(tzinfo=None) - oldest).total_seconds()
        run.log(
            "info",
            "changes applied",
            task=run.task.name,
            changes=result.rows_read,
            oldest_commit=oldest.isoformat(),
            lag_seconds=round(behind, 3),
        )
    if options.dry_run:
        _flush(run, w, pending)
        run.log("info", "dry run: rolled back", task=run.task.name)
        return stored
    if reached != stored or len(pending):
        stored = _commit(run, w, pending, task_id, log, reached)
    return stored


def _pointer(log: ChangeLog, position: str) -> dict[str, Any]:
    return {"type": POSITION, "value": position, "slot": log.names.slot}


def _commit(run: TaskRun, w: Writer, pending: Pending, task_id: int, log: ChangeLog, position: str) -> str:
    """Everything up to a transaction's end into the target, committed; then its position
    stored (a dry run stores nothing). Returns the position stored."""
    _flush(run, w, pending)
    if run.options.dry_run:
        return position
    w.commit()
    run.committed()
    run.result.pointer_after = _pointer(log, position)
    run.store.tasks.set_pointer(task_id, None, run.result.pointer_after, run.run_id)
    checkpoint("stored")
    return position


def _flush(run: TaskRun, w: Writer, pending: Pending) -> None:
    """Give the pending changes to the writer (in its open transaction): a truncate first, then
    the rows, then the deletes (one change per key: their order no longer matters)."""
    task, result = run.task, run.result
    if pending.truncate and task.deletes != "ignore":
        w.clear_stage()
        result.deleted += cast(MergeWriter, w).delete_missing()  # an empty stage: every row
    upserts = [row for row in pending.rows.values() if row is not None]
    deletes = [key for key, row in pending.rows.items() if row is None]
    if upserts:
        w.stage(upserts)
        checkpoint("write")
        result.add(w.merge())
        w.clear_stage()
    if deletes and task.deletes != "ignore":
        w.open_key_stage()
        w.stage_keys(deletes)
        result.deleted += w.delete_listed()
    run.note("applying changes", result.rows_read)
    if run.progress:
        run.progress(task.name, result.rows_read)
    pending.truncate, pending.rows = False, {}


def _report_lag(run: TaskRun, log: ChangeLog, task_id: int) -> None:
    """The log the source keeps for the task after the run, kept with its position (for
    `runner status`); loudly when past `changes.max_lag`."""
    pointer = run.result.pointer_after
    lag = log.lag(position=position_of(pointer, log.names.slot))
    limit = run.task.changes.max_lag_bytes()
    if pointer is not None:
        checked = dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(timespec="seconds")
        pointer = {**pointer, "lag_bytes": lag.bytes, "retained_bytes": lag.retained, "max_lag": limit}
        run.result.pointer_after = pointer | {"checked_at": checked}
        run.store.tasks.set_pointer(task_id, None, run.result.pointer_after, run.run_id)
    fields = {
        "task": run.task.name,
        "slot": log.names.slot,
        "lag_bytes": lag.bytes,
        "retained_bytes": lag.retained,
    }
    if lag.retained > limit:
        risk = (
            "they fill its disk until the task catches up or its slot is dropped"
            if getattr(log, "keeps_log", True)
            else "the server may purge them before the task reads them (then it needs --resync)"
        )
        run.log(
            "warning",
            f"LAG: the source keeps {lag.retained:,} bytes of log for this task, past changes.max_lag "
            f"({limit:,}); {risk}",
            **fields,
        )
    else:
        run.log("info", "log lag", **fields)
