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

In the daemon's run of a continuous job (`RunOptions.continuous`), the task does not end at the
log's end: it looks again every half `max_latency` (at most `POLL` seconds), committing and
confirming each round, and within a long round commits at the first transaction's end past
`max_latency`, until the run is cancelled (between rounds, or at a commit).

When the table's columns change (the log says so: `Reshape`), what was read up to there is
committed, and the writer is opened again in the new shape, so the target follows the source by
the task's `schema_changes` (`runner.connectors.sql.evolve`) where it came in the log: a column
added is added, a type widened is widened; a column dropped stays (NULL in new rows) unless
`drop_columns`. A change the policy refuses stops the task naming the table and the column.
Rows the source had before a column was added get its value in the target only when they
change (the log carries no row for an ALTER TABLE); `--resync` loads them all.
"""

from __future__ import annotations

import datetime as dt
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, cast

from runner.changes.task import TaskRun, columns_of
from runner.connectors.base import STAGE, MergeWriter, Source, TableEvolution, Writer
from runner.connectors.changelog import POSITION, ChangeLog, LogSource, Reshape, RowChange, log_names
from runner.definitions.tasks import Task
from runner.errors import TerminalError
from runner.streams.checkpoints import checkpoint
from runner.streams.types import Column

POLL = 5.0  # the longest wait between two reads of the log in a continuous run
LAG_EVERY = 60.0  # seconds between two lag reports of a continuous run with nothing to apply


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
    if position is None:  # a dry run's first run: the table read without a slot
        with run.writer(columns) as w:
            run.log(
                "info",
                "dry run: the table is read as a first snapshot would; no slot is made",
                task=task.name,
            )
            _load(run, w)
            run.log("info", "dry run: rolled back", task=task.name)
        return
    with ExitStack() as stack:
        target = _Target(run, stack, columns, state.id)
        position = _changes(run, target, log, state.id, position)
        if options.dry_run:
            return
        log.confirm(position)  # the target and the task's state hold everything up to here
        _report_lag(run, log, state.id)
        if options.continuous is not None:
            _follow(run, target, log, state.id, position, options.continuous)


def _follow(
    run: TaskRun, target: _Target, log: ChangeLog, task_id: int, position: str, latency: float
) -> None:
    """A continuous run: read the log again and again, each round committed and confirmed,
    until the run is cancelled."""
    wait = min(max(latency / 2, 0.1), POLL)
    reported = time.monotonic()
    read_upto: str | None = None  # the log's end the last round read up to
    while True:
        _pause(run, wait)
        upto = log.end()  # one cheap query: a round with nothing new written costs no more
        if upto == read_upto and time.monotonic() - reported < LAG_EVERY:
            continue
        read = run.result.rows_read
        position = _changes(run, target, log, task_id, position, latency, upto)
        read_upto = upto
        log.confirm(position)
        if run.result.rows_read > read or time.monotonic() - reported >= LAG_EVERY:
            _report_lag(run, log, task_id)
            reported = time.monotonic()


def _pause(run: TaskRun, seconds: float) -> None:
    """Wait between two rounds, stopping at once when the run is cancelled."""
    deadline = time.monotonic() + seconds
    while True:
        if run.cancel:
            run.cancel.check()
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 0.1))


@dataclass
class _Target:
    """The task's writer, opened when first needed (in the shape the log's first changes have),
    and opened again in a new shape when the table's columns change (`reshape`)."""

    run: TaskRun
    stack: ExitStack
    columns: list[Column]
    task_id: int
    w: Writer | None = None
    dirty: bool = False  # changes given to the writer and not committed
    reopened: bool = False  # a writer of this run was closed for a reshape
    # the source's columns the target follows since a reshape, stored once the position past
    # the reshape is: a run killed before reads the old shape first again, and must find the
    # old columns as the last known (else a widened type read again in its old shape would
    # look like a narrowing)
    known: list[dict[str, Any]] | None = None
    before: str | None = None  # the position stored when the last reshape came (not past it)

    @property
    def key_at(self) -> list[int]:
        names = [c.name for c in self.columns]
        return [names.index(k) for k in self.run.task.write.keys]

    def writer(self) -> Writer:
        if self.w is None:
            run = self.run
            self.w = self.stack.enter_context(run.writer(self.columns))
            cast(MergeWriter, self.w).empty_at_start = False  # a key may come again: always merge
            if self.reopened and run.evolution is not None and not run.options.dry_run:
                self.known = TableEvolution.known_columns(self.written(self.columns), run.evolution.not_null)
                checkpoint("reshaped")
        return self.w

    def written(self, columns: list[Column]) -> list[Column]:
        """The columns the target gets for the source's `columns` (after the task's transforms)."""
        pipeline = self.run.pipeline(columns)
        return pipeline.columns if pipeline is not None else columns

    def stored(self, position: str) -> None:
        """A position is stored: once past the last reshape, the columns of its shape are too."""
        if self.known is not None and position != self.before:
            self.run.store.tasks.set_source_columns(self.task_id, self.known)
            self.known = None

    def commit(self) -> bool:
        """Commit what was given to the writer; whether there was any."""
        if self.w is None or not self.dirty:
            return False
        self.w.commit()
        self.dirty = False
        return True

    def reshape(self, columns: list[Column], before: str) -> None:
        """Follow the table's new columns, which come in the log after position `before`: the
        writer (committed or, dry, rolled back) closed, the next opened in the new shape, its
        table evolved as the task's settings allow."""
        run, table = self.run, self.run.task.read.table
        old = {c.name: c for c in self.columns}
        new = {c.name: c for c in columns}
        added = [n for n in new if n not in old]
        dropped = [n for n in old if n not in new]
        retyped = [n for n in new if n in old and new[n].type != old[n].type]
        run.log(
            "info",
            "the table's columns changed in the log; the target follows",
            task=run.task.name,
            added=added,
            dropped=dropped,
            retyped={n: f"{old[n].type} -> {new[n].type}" for n in retyped},
        )
        keys = [k for k in run.task.write.keys if k in dropped]
        if keys:
            raise TerminalError(
                f"column {keys[0]!r} of table {table!r}, a key of the task (write.keys), was dropped "
                "in the source; change write.keys, then run with --resync"
            )
        unmapped = [c for c in columns if c.unmapped and c.name in added + retyped]
        if unmapped and run.task.read.unmapped_types != "text":
            c = unmapped[0]
            raise TerminalError(
                f"column {c.name!r} of table {table!r} is now of type {c.unmapped}, which runner cannot "
                "map; strategy 'cdc' reads such a column as text: set read.unmapped_types to text"
            )
        settings = run.table_changes
        if added and run.target.capabilities.alter_tables and not settings.add:
            raise TerminalError(
                f"column {added[0]!r} was added to table {table!r} in the source, and the task's "
                f"schema_changes is 'off': the target table {run.table} does not follow it; set "
                "schema_changes to add or add_and_widen (or drop the column in the source)"
            )
        if self.w is not None:
            self.stack.close()
            self.w = None
            self.reopened = True  # the first writer stored the columns it opened with (`TaskRun.writer`)
            if run.evolution is not None:  # the source's columns until now: what changed is told from them
                written = self.written(self.columns)
                run.evolution.known = TableEvolution.known_columns(written, run.evolution.not_null)
        self.columns = columns
        self.before, self.known = before, None
        run.use_columns(columns)


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
            # stored before the writer closes: a change log's index entry rides on it
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


def _changes(
    run: TaskRun,
    target: _Target,
    log: ChangeLog,
    task_id: int,
    position: str,
    latency: float | None = None,
    upto: str | None = None,
) -> str:
    """Apply the transactions committed after `position` up to `upto` (the log's end now);
    returns the position stored at the end. With a `latency` (a continuous run), changes are
    committed at the first transaction's end past it."""
    result, options = run.result, run.options
    key_at = target.key_at
    began: float | None = None  # when the first change not committed was read
    upto = upto or log.end()
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
            began = began or time.monotonic()
            if len(pending) >= run.batch_size:  # a large transaction: into the writer, not committed
                checkpoint("read")
                _flush(run, target, pending)
            continue
        if isinstance(item, Reshape):  # what came in the old shape committed, then the new one
            if len(pending):
                _flush(run, target, pending)
            if not options.dry_run:
                stored = _commit(run, target, pending, task_id, log, reached, stored)
            target.reshape(item.columns, reached)
            key_at = target.key_at
            since_commit, began = 0, None
            continue
        oldest = oldest or item.committed_at
        reached = item.position
        if options.limit is not None and result.rows_read >= options.limit:
            break
        late = latency is not None and began is not None and time.monotonic() - began >= latency
        if since_commit >= run.batch_size or late:
            stored = _commit(run, target, pending, task_id, log, reached, stored)
            since_commit, began = 0, None
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
        _flush(run, target, pending)
        run.log("info", "dry run: rolled back", task=run.task.name)
        return stored
    if reached != stored or len(pending):
        stored = _commit(run, target, pending, task_id, log, reached, stored)
    return stored


def _pointer(log: ChangeLog, position: str) -> dict[str, Any]:
    return {"type": POSITION, "value": position, "slot": log.names.slot}


def _commit(
    run: TaskRun, target: _Target, pending: Pending, task_id: int, log: ChangeLog, position: str, stored: str
) -> str:
    """Everything up to a transaction's end into the target, committed; then its position
    stored (a dry run stores nothing). Returns the position stored."""
    if len(pending):
        _flush(run, target, pending)
    if run.options.dry_run:
        return position
    if target.commit():
        run.committed()
    if position == stored:
        return stored
    run.result.pointer_after = _pointer(log, position)
    run.store.tasks.set_pointer(task_id, None, run.result.pointer_after, run.run_id)
    target.stored(position)
    checkpoint("stored")
    return position


def _flush(run: TaskRun, target: _Target, pending: Pending) -> None:
    """Give the pending changes to the writer (in its open transaction): a truncate first, then
    the rows, then the deletes (one change per key: their order no longer matters)."""
    task, result = run.task, run.result
    w = target.writer()
    target.dirty = True
    if pending.truncate and task.deletes != "ignore":
        if run.change_log is not None:
            raise TerminalError(
                f"table {task.read.table} was truncated in the source: a change log holds upserts and "
                "deletes by key, not a truncate, so the job's writers could not follow it; run this job "
                "with --resync (and its writers, into emptied tables), or set deletes: ignore"
            )
        w.clear_stage()
        result.deleted += cast(MergeWriter, w).delete_missing()  # an empty stage: every row
    upserts = [row for row in pending.rows.values() if row is not None]
    deletes = in_order([key for key, row in pending.rows.items() if row is None])
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


def in_order(keys: list[tuple]) -> list[tuple]:
    """The keys sorted, so the target's key index is walked forwards when they are deleted (as
    the upsert's staged rows are: `upsert_sql`), each of its pages read once, not in the log's
    order; as they are when their values do not compare in Python (the order only saves reads)."""
    try:
        return sorted(keys, key=lambda key: tuple((v is None, v) for v in key))
    except TypeError:
        return keys


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
        # the position is not moved: a change log's index entry waits for the move that covers it
        run.store.tasks.set_pointer(task_id, None, run.result.pointer_after, run.run_id, ride=False)
    fields = {
        "task": run.task.name,
        "slot": log.names.slot,
        "lag_bytes": lag.bytes,
        "retained_bytes": lag.retained,
    }
    if lag.retained > limit:
        risk = (
            "they fill its disk until the task catches up or its slot is dropped"
            if cast(LogSource, run.source).log_slot
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
