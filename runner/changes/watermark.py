"""The watermark strategy: read rows whose column is at or past the stored pointer (minus
`lookback`), in the column's order; each batch is merged and committed, and only then does the
pointer move to the highest value committed. Rows that share the pointer's value are read again
next run and found unchanged, so nothing is missed at the boundary and nothing counted twice.
A first load into an empty table is copied inside the databases where the pair allows, and
so is each later round between two databases of one kind (`_round_copied`).
Deletes: see `runner.changes.deletes`, or a user's query lists them.

A run killed anywhere leaves the target with whole committed batches and a pointer that is
never past them: the next run re-reads from the pointer and the merge makes that idempotent.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, cast

from runner.changes.deletes import (
    TargetSums,
    bucket_width,
    deletes_by_buckets,
    early_target_sums,
    source_key_sums,
)
from runner.changes.task import WINDOW_DONE, TaskRun, check_columns, columns_of, counted_without_target
from runner.connectors.base import (
    KEY_STAGE,
    STAGE,
    KeyBucketWriter,
    MergeWriter,
    MissingColumn,
    QuerySource,
    ReadStream,
    Watermark,
    Writer,
)
from runner.definitions.tasks import ReadSpec
from runner.definitions.windows import Window, parse_window
from runner.errors import TerminalError
from runner.streams import pointers
from runner.streams.checkpoints import checkpoint
from runner.streams.types import INTEGERS, Column
from runner.streams.windows import WindowMismatch, in_column_terms, window_end
from runner.transfer.registry import fast_path


def _index_hint(run: TaskRun, column: str) -> None:
    """Say when no index of the source table starts with the watermark column (a dry run's
    note, as `plan --data` shows it): each run then reads the whole table to find its rows."""
    table = run.task.read.table if isinstance(run.task.read, ReadSpec) else None
    if table is None or not run.source.capabilities.query:
        return  # a query's plan is the database's to tell; an API's or a file's, its own
    if cast(QuerySource, run.source).indexed(table, column) is False:
        run.log(
            "warning",
            f"no index of the source table {table} starts with {column!r}: every run reads the whole "
            f"table to find its changes (an index on {table} ({column}) lets it read only those)",
            task=run.task.name,
        )


def _later(stored: Any, seen: Any) -> Any:
    """The later of the stored pointer and the highest value read. A pointer set by hand is
    text until a run has seen the column's own type; it is compared in that type."""
    if stored is None:
        return seen
    if seen is None:
        return stored
    try:
        return max(pointers.coerce(stored, seen), seen)
    except (TypeError, ValueError):
        raise TerminalError(
            f"the stored pointer {stored!r} cannot be compared with the column's values; set it with "
            "`runner pointer set` or run with --resync"
        ) from None


def run_watermark(run: TaskRun) -> None:
    task, result, options = run.task, run.result, run.options
    column = task.changes.column
    assert column is not None
    state = run.state()
    stored = state.pointer if state.watermark_column == column else None
    if state.pointer and stored is None:
        run.log(
            "warning",
            f"the pointer was for column {state.watermark_column!r}; reading everything",
            task=task.name,
        )
    result.pointer_before = result.pointer_after = stored  # until a committed batch moves it
    before = pointers.decode(stored)
    backfill = _backfill_plan(run, before)
    lower = backfill.lower if backfill is not None else before
    watermark = Watermark(column, pointers.shift_back(lower, task.changes.lookback_amount()))
    # A load that may be copied inside the databases opens the batch reader (whose query sorts
    # every row before the first comes) only if the copy cannot be made.
    stream: ReadStream | None = None
    may_copy = backfill is None and _may_copy(run, before)
    if may_copy:
        columns = columns_of(run)
    else:
        first = watermark
        if backfill is not None and backfill.windows:
            first = Watermark(column, watermark.since, backfill.end(backfill.lower))
        try:
            stream = run.source.read(task.read, run.batch_size, first, limit=options.limit)
            run.track(stream.batches, cancellable=False)  # closed when the task ends, even if never read
        except MissingColumn as exc:
            check_columns(run, exc.known)  # names the field, and any other the source lacks
            raise
        columns = stream.columns
    run.use_columns(columns)
    if options.dry_run:
        _index_hint(run, column)
    if stream is not None and counted_without_target(run, stream):
        return
    # the key comparison for deletes may copy keys inside the databases, unless that would
    # lock a file the batch reader still reads (SQLite)
    with run.writer(columns, copy=run.target.capabilities.copy_while_reading) as w:
        # a target that was empty holds only this run's snapshot of the source: no key of it
        # can be missing from the source (a deleted_keys_query still says what it says)
        snapshot = w.merges and cast(MergeWriter, w).empty_at_start and not task.read.lists_deleted_keys()
        deletes = task.deletes != "ignore" and not snapshot
        with ThreadPoolExecutor(2) as pool:
            # the source sums up its keys while the rows are merged (`deletes_by_buckets`),
            # and so does the target where it can (`early_target_sums`), unless the target is
            # a SQLite file, whose commits would wait for those readers
            by_buckets = deletes and options.limit is None and _by_buckets(run, w)
            beside = by_buckets and run.target.capabilities.copy_while_reading
            width = bucket_width(run) if beside else None
            early = pool.submit(source_key_sums, run, width) if beside else None
            sums = early_target_sums(run, pool, width) if beside else None
            try:
                if stream is not None and backfill is not None and backfill.windows:
                    # deletes wait for the windows: they are compared once the run has caught up
                    before = _read_windows(run, w, stream, backfill, state.id, before, sums)
                    stream = run.source.read(task.read, run.batch_size, Watermark(column, before))
                copied = (
                    may_copy
                    and stream is None
                    and (
                        _first_load_copied(run, w, column, state.id)
                        if before is None
                        else _round_copied(run, w, watermark, columns, state.id, before, sums)
                    )
                )
                if stream is None and not copied:
                    stream = run.source.read(task.read, run.batch_size, watermark, limit=options.limit)
                if stream is not None:
                    _merge_batches(run, w, stream, state.id, before, sums)
            except BaseException:
                if early is not None:
                    early.cancel()  # a sum not yet started never starts; a running one is waited for
                raise
            result.unchanged = result.rows_read - result.inserted - result.updated - result.upserted
            if deletes:
                if options.limit is not None:
                    run.log("warning", "deletes are not applied in a run limited to N rows", task=task.name)
                    return
                if by_buckets:
                    found = early.result() if early is not None else source_key_sums(run, bucket_width(run))
                    result.deleted += deletes_by_buckets(run, cast(KeyBucketWriter, w), found, sums)
                else:
                    result.deleted += _watermark_deletes(run, w, columns)
                run.finish(w)


@dataclass
class Backfill:
    """Where a task with a `changes.start` reads from, and, with a `changes.window`, the grid of
    windows it reads one at a time until a window reaches the source's highest value."""

    lower: Any  # the stored pointer, else the start; in the column's terms
    anchor: Any = None  # the start, in the column's terms: the grid's origin
    window: Window | None = None
    highest: Any = None  # the source's highest value when the run began
    windows: bool = False  # whether the first window ends at or before `highest`

    def end(self, lower: Any) -> Any:
        assert self.window is not None
        return window_end(self.anchor, lower, self.window)


def _backfill_plan(run: TaskRun, before: Any) -> Backfill | None:
    """The task's start and windows in the column's own terms (its type and spelling, from its
    highest value), or None when it has neither or nothing is to be read. A dry or limited run
    reads from the start in one go: it commits nothing a window would keep.

    Raises:
        TerminalError: the start or window does not suit the column, located at its field.
    """
    task, column = run.task, run.task.changes.column
    start, window = task.changes.start, task.changes.window
    if start is None or (before is not None and window is None):
        return None
    assert column is not None
    highest = run.source.highest(task.read, column)
    if highest is None:  # an empty source (or all NULL): read as usual
        return None
    try:
        anchor = in_column_terms(start, highest)
    except (WindowMismatch, ValueError, ArithmeticError) as exc:
        raise TerminalError(f"{run.where('changes', 'start')}: {exc}") from None
    try:
        lower = anchor if before is None else in_column_terms(before, highest)
    except (WindowMismatch, ValueError, ArithmeticError):
        raise TerminalError(
            f"the stored pointer {before!r} cannot be compared with the column's values; set it with "
            "`runner pointer set` or run with --resync"
        ) from None
    plan = Backfill(lower, anchor, highest=highest)
    if window is not None and not run.options.dry_run:
        plan.window = parse_window(window)
        try:
            plan.windows = plan.end(lower) <= highest
        except WindowMismatch as exc:
            raise TerminalError(f"{run.where('changes', 'window')}: {exc}") from None
    if before is not None and not plan.windows:
        return None  # caught up: a watermark task as any other
    return plan


def _read_windows(
    run: TaskRun,
    w: Writer,
    stream: ReadStream,
    plan: Backfill,
    task_id: int,
    before: Any,
    sums: TargetSums | None = None,
) -> Any:
    """Read the backlog one window at a time, each window's batches committed as they come
    (the pointer following them), then the pointer set to the window's end: a run stopped in a
    window resumes in it, one stopped between two starts the next. Stops at the window that
    would reach past the source's highest value when the run began: from there the task reads
    as usual (and finds NULLs and deletes). Returns the pointer reached."""
    column, result = run.task.changes.column, run.result
    lower, pointer = plan.lower, before
    while True:
        end = plan.end(lower)
        if not end <= plan.highest:
            return pointer
        if not lower < end:  # a grid that does not move on would read one window for ever
            raise TerminalError(
                f"{run.where('changes', 'window')}: the window from {lower!r} ends at {end!r}"
            )
        if stream is None:
            stream = run.source.read(run.task.read, run.batch_size, Watermark(column, lower, end))
        rows = result.rows_read
        pointer = _merge_batches(run, w, stream, task_id, pointer, sums)
        stream = None
        pointer = end
        if not run.options.dry_run:
            result.pointer_after = pointers.encode(end)
            run.store.tasks.set_pointer(task_id, column, result.pointer_after, run.run_id)
        done = {"from": _text(lower), "to": _text(end), "rows": result.rows_read - rows}
        result.windows.append(done)
        run.log("info", WINDOW_DONE, task=run.task.name, **done)
        checkpoint("window")
        lower = end


def _text(value: Any) -> str:
    encoded = pointers.encode(value)
    return encoded["value"] if encoded else ""


def _may_copy(run: TaskRun, before: Any) -> bool:
    """Whether a watermark task's load may be copied inside the databases: a plain run into a
    target that copies while it reads (not SQLite: see `copy_while_reading`), from a source
    the pair has a fast path for (an API into PostgreSQL has none, and cannot say its highest
    value besides); past a pointer (`_round_copied`), only between two databases of one kind,
    whose staging table then holds the column's values in its own type and order."""
    options = run.options
    return (
        run.target.capabilities.copy_while_reading
        and run.task.write.merged()
        and not options.dry_run
        and fast_path(run.source, run.target) is not None
        and (before is None or (options.limit is None and run.source.kind == run.target.kind))
    )


def _first_load_copied(run: TaskRun, w: Writer, column: str, task_id: int) -> bool:
    """A first load into an empty table copied inside the databases (`MergeWriter.copy_from`);
    nothing can be deleted yet. False when the pair cannot. The pointer is the source's
    highest value read just before the copy: in the column's own type, zone and order (the
    target's copy may have neither: MariaDB keeps a timestamptz as UTC in a DATETIME and
    sorts text by its own collation), and never past a row the copy left out. Rows the copy
    took past it are read again next run and found unchanged."""
    if not (w.merges and cast(MergeWriter, w).empty_at_start):
        return False
    highest = run.source.highest(run.task.read, column)
    if not run.copied(w, run.table, ReadStream([], iter(()))):
        return False
    run.result.inserted = run.result.rows_read
    checkpoint("write")
    w.commit()
    run.committed()
    if highest is not None:
        run.result.pointer_after = pointers.encode(highest)
        run.store.tasks.set_pointer(task_id, column, run.result.pointer_after, run.run_id)
    return True


# watermark columns whose highest value the target's staging table orders as the source and
# Python do (a text's order is its collation's, which may differ from one database to another)
ORDERED = {*INTEGERS, "decimal", "double", "real", "date", "timestamp", "timestamptz"}


def _round_copied(
    run: TaskRun,
    w: Writer,
    watermark: Watermark,
    columns: list[Column],
    task_id: int,
    before: Any,
    sums: TargetSums | None = None,
) -> bool:
    """A round past the pointer copied inside the databases: the rows at or past it piped from
    the source into the target's staging table (never decoded in Python: most of a round read
    in batches goes to decoding and encoding its values), merged in one statement, committed;
    only then does the pointer move, to the staged rows' highest value. False when the pair
    cannot (the batches then read the round)."""
    column = next(c for c in columns if c.name == watermark.column)
    render = getattr(run.source, "watermark_sql", None)  # a SQL source's (`SqlReading`)
    where = render(watermark, column.type) if render is not None and column.type.kind in ORDERED else None
    if where is None:
        return False
    m, result = cast(MergeWriter, w), run.result
    checkpoint("read")  # the read is about to start, nothing written
    started = time.perf_counter()
    rows = m.copy_from(run.task.read, STAGE, where)
    if rows is None:
        return False
    result.read_seconds += time.perf_counter() - started
    result.rows_read += rows
    run.log("info", "copied inside the databases, no row through Python", task=run.task.name, rows=rows)
    if run.cancel:  # one statement cannot stop half-way; a cancel asked meanwhile stops here
        run.cancel.check()
    highest = m.staged_highest(watermark.column)
    checkpoint("write")
    result.add(sums.merge(m) if sums is not None else m.merge())
    m.clear_stage()
    m.commit()  # the target holds the round: only now may the pointer pass it
    run.committed()
    result.pointer_after = pointers.encode(_later(before, highest))
    run.store.tasks.set_pointer(task_id, watermark.column, result.pointer_after, run.run_id)
    return True


def _merge_batches(
    run: TaskRun, w: Writer, stream: ReadStream, task_id: int, before: Any, sums: TargetSums | None = None
) -> Any:
    """Stage, merge and commit each batch read; only then does the pointer pass it (`sums`
    hears the keys each merge inserts). Returns the pointer reached."""
    result, column = run.result, run.task.changes.column
    pointer = before
    for batch in run.timed(stream.batches):
        w.stage(batch)
        checkpoint("write")
        result.add(sums.merge(w) if sums is not None else w.merge())
        w.clear_stage()
        if not run.options.dry_run:
            w.commit()  # the target holds the batch: only now may the pointer pass it
            run.committed()
            pointer = _later(pointer, stream.pointer)
            result.pointer_after = pointers.encode(pointer)
            run.store.tasks.set_pointer(task_id, column, result.pointer_after, run.run_id)
    return pointer


def _by_buckets(run: TaskRun, w: Writer) -> bool:
    """Deletes found by comparing key buckets: both kinds sum up keys (`key_buckets`), one
    integer key, no deleted_keys_query."""
    keys = run.task.write.keys
    return (
        w.merges
        and run.source.capabilities.key_buckets
        and run.target.capabilities.key_buckets
        and not run.task.read.lists_deleted_keys()
        and len(keys) == 1
        and cast(MergeWriter, w).key_columns[0].type.kind in INTEGERS
    )


def _watermark_deletes(run: TaskRun, w: Writer, columns: list[Column]) -> int:
    """Deletes by a deleted_keys_query, or by every source key staged in the target."""
    task = run.task
    keys = task.write.keys
    w.open_key_stage()
    if task.read.lists_deleted_keys():  # a SQL read's deleted_keys_query (only it lists them here)
        types = [next(c.type for c in columns if c.name == k) for k in keys]
        source = cast(QuerySource, run.source)  # `needs.deletes`: the source has `query`
        query = cast(ReadSpec, task.read).deleted_keys_query
        assert query is not None
        for batch in run.track(source.read_query(query, types, run.batch_size)):
            w.stage_keys(batch)
        return w.delete_listed()
    assert w.merges  # validation: a script needs deleted_keys_query here
    w = cast(MergeWriter, w)
    if w.copy_from(task.read, KEY_STAGE) is None:
        for batch in run.track(run.source.read(task.read, run.batch_size, select=keys).batches):
            w.stage_keys(batch)
    return w.delete_missing(KEY_STAGE)
