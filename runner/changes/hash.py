"""The hash strategy: for sources with no reliable timestamp.

The source computes an md5 of each row's key and of the whole row (in the database where
the dialect has one, so unchanged rows never cross the wire) and streams `(key_hash,
row_hash, key)` ordered by key_hash. The stored digests of the last run stream in the same
(ASCII) order from the state store, and a merge-join finds new, changed, deleted and unchanged
keys with flat memory. Changed and new rows are then fetched by key, a chunk at a time,
merged into the target and committed; only then are their digests recorded. Deleted keys are
deleted (or soft-deleted) the same way. A first run, with no digests stored, reads the rows
together with their digests instead of fetching them by key.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import nullcontext
from typing import Protocol, cast

from runner.changes.full import run_full
from runner.changes.task import TaskRun, columns_of, table_of
from runner.connectors.base import (
    KEY_STAGE,
    STAGE,
    ComparingWriter,
    DigestSource,
    InDatabaseCompare,
    KeyLookup,
    MergeWriter,
    ReadStream,
    Snapshots,
)
from runner.definitions.tasks import ReadSpec
from runner.streams import pointers
from runner.streams.checkpoints import checkpoint
from runner.streams.types import INTEGERS, Column

MAX_PARAMETERS = 30_000  # bound parameters per statement, under every driver's limit


# The row digest recorded for a key before its row goes to a target that cannot be compared
# with the source (a message sent, a script run: `WriteModel.merged` is false), replaced by the
# row's digest once the target committed. A run stopped in between leaves it: the next run sees
# the key as changed if the source still has it (it is sent again) and as gone if not (its
# delete is sent), so no change is lost to a stop between a send and the digest's record.
IN_FLIGHT = "0" * 32


class HashSource(DigestSource, KeyLookup, Protocol):
    """What the hash strategy reads its source through (`runner.changes.needs.hashed`)."""


def _flat(batches: Iterator[list[tuple]]) -> Iterator[tuple]:
    for batch in batches:
        yield from batch


def run_hash(run: TaskRun) -> None:
    task, result, options = run.task, run.result, run.options
    keys = task.write.keys
    table = table_of(task)
    missing = options.dry_run and table is not None and not run.target.table_exists(table)
    if options.limit is not None or missing:
        # as a full run: a test run merges its first N rows (rolled back), a dry run into no
        # table counts the rows that would be inserted
        run_full(run)
        return
    state = run.state()
    columns = columns_of(run)
    run.use_columns(columns)
    if _compared_in_target(run, state.id, columns):  # records no digest: nothing can be pending
        if state.digests_pending and not options.dry_run:
            run.store.tasks.set_digests_pending(state.id, False)
        return
    in_flight = not task.write.merged() or run.change_log is not None
    if state.digests_pending and not options.dry_run and not in_flight:
        # a run stopped between committing rows and recording their digests: a key it added
        # may have no digest, and its later delete would go unseen; compare every key again
        # (a target that does not merge cannot be compared, and a job keeping change logs
        # must log its deletes, which a comparison with the target cannot: their keys were
        # recorded before they were written, see `IN_FLIGHT`)
        run.log(
            "warning",
            "the last run stopped before recording its digests: comparing every key",
            task=task.name,
        )
        run.store.tasks.forget(state.id)
    if not options.dry_run:
        run.store.tasks.set_digests_pending(state.id, True)
    # a dry run's resync forgets nothing (`TaskRun.state`): it compares with no digest instead
    forgotten = run.options.resync and options.dry_run  # `run.state` may have set it
    stored = iter(()) if forgotten else run.store.tasks.digests(state.id, run.batch_size)
    first = next(stored, None)
    with_rows = first is None  # a first run: every row is new, read them with their digests
    chunk = max(1, min(run.batch_size, MAX_PARAMETERS // len(keys)))
    n_keys = len(keys)
    if with_rows and _first_load_copied(run, state.id, columns):
        run.store.tasks.set_digests_pending(state.id, False)
        return
    reader = cast(HashSource, run.source)
    source = _flat(run.timed(reader.read_digests(task.read, columns, keys, run.batch_size, with_rows)))

    with run.writer(columns) as w:
        changed: list[tuple] = []  # (key_hash, row_hash, raw key[, row])
        gone: list[tuple[str, str]] = []  # (key_hash, key_value)
        # No digests but a target with rows (a first run into a filled table, or after an
        # interrupted run): deletes are found by comparing every source key with the target.
        merging = cast(MergeWriter, w)  # used only where `w.merges`
        reconcile = with_rows and task.deletes != "ignore" and w.merges and not merging.empty_at_start
        if reconcile:
            w.open_key_stage()
            decode_keys = reader.batch_decoder(merging.key_columns)

        def write_changed() -> None:
            if with_rows:
                rows = [entry[2 + n_keys :] for entry in changed]
            else:
                rows = reader.read_by_keys(
                    task.read, columns, keys, [entry[2 : 2 + n_keys] for entry in changed]
                )
            if (not w.merges or run.change_log is not None) and not options.dry_run:
                flying = [(e[0], IN_FLIGHT, pointers.encode_key(e[2 : 2 + n_keys])) for e in changed]
                run.store.tasks.write_digests(state.id, flying, [])
            w.stage(rows)
            if reconcile:
                w.stage_keys(decode_keys([entry[2 : 2 + n_keys] for entry in changed]))
            checkpoint("write")
            counts = w.merge()
            w.clear_stage()
            result.add(counts)
            result.unchanged += len(rows) - counts.inserted - counts.updated - counts.upserted
            if not options.dry_run:
                w.commit()  # the rows are in the target: only now are their digests recorded
                run.committed()
                digests = [(e[0], e[1], pointers.encode_key(e[2 : 2 + n_keys])) for e in changed]
                run.store.tasks.write_digests(state.id, digests, [])
            changed.clear()

        def write_gone() -> None:
            if task.deletes != "ignore":
                w.open_key_stage()
                decode = reader.batch_decoder(w.key_columns)
                w.stage_keys(decode([pointers.decode_key(v) for _, v in gone]))
                result.deleted += w.delete_listed()
            if not options.dry_run:
                w.commit()
                run.committed(pause=False)
                run.store.tasks.write_digests(state.id, [], [k for k, _ in gone])
            gone.clear()

        old = first
        new = next(source, None)
        while new is not None or old is not None:
            if old is None or (new is not None and new[0] < old[0]):
                changed.append(new)
                new = next(source, None)
            elif new is None or old[0] < new[0]:
                gone.append((old[0], old[2]))
                old = next(stored, None)
            else:
                if new[1] != old[1]:
                    changed.append(new)
                else:
                    result.unchanged += 1
                new, old = next(source, None), next(stored, None)
            if len(changed) >= chunk:
                write_changed()
            if len(gone) >= chunk:
                write_gone()
        if changed:
            write_changed()
        if gone:
            write_gone()
        if reconcile:
            result.deleted += merging.delete_missing(KEY_STAGE)
            run.finish(w)
    if not options.dry_run:
        run.store.tasks.set_digests_pending(state.id, False)


def _first_load_copied(run: TaskRun, task_id: int, columns: list[Column]) -> bool:
    """A first load into an empty table, copied inside the databases where they allow it (the
    way `full` copies), then its digests recorded in pages. Between two databases of one
    dialect they are computed in the target, which holds exactly the copied snapshot with the
    source's own column types (the copy requires them), so they are the digests the source
    gives for the same rows. Between two dialects they must come from the source's own digest
    function, read in the snapshot the copy read (`Snapshots.snapshot`): read in a later one,
    they could see rows changed after the copy and hide those changes from the next run. A
    source that cannot share a snapshot (no `snapshot`) loads through the batches."""
    task, keys = run.task, run.task.write.keys
    same = run.source.kind == run.target.kind
    if run.options.dry_run or not (same or run.source.capabilities.snapshot):
        return False
    with nullcontext() if same else cast(Snapshots, run.source).snapshot():
        with run.writer(columns, copy=True) as w:
            if not (w.merges and cast(MergeWriter, w).empty_at_start):
                return False
            if not run.copied(w, run.table, ReadStream(columns, iter(()))):
                return False
            run.result.inserted = run.result.rows_read
            checkpoint("write")
            w.commit()
            run.committed()
        if same and digests_compared_in_target(run, columns):
            return True  # later runs compare with the target itself
        # the target's kind is the source's when `same`: it computes the same digests
        reader = cast(DigestSource, run.target if same else run.source)
        spec = ReadSpec(table=run.table) if same else task.read
        # the database sorts them before the first comes (28 s for 2M rows): say so meanwhile
        run.log("info", "reading the copied rows' digests", task=task.name, rows=run.result.rows_read)
        digests = reader.read_digests(spec, columns, keys, run.batch_size, with_rows=False)
        recorded = 0
        for batch in run.track(digests, cancellable=False):  # after the commit: record them all
            run.store.tasks.write_digests(
                task_id, [(e[0], e[1], pointers.encode_key(e[2:])) for e in batch], []
            )
            recorded += len(batch)
            run.note("recording digests", recorded)
    run.log("info", "digests recorded", task=task.name, rows=recorded)
    return True


def _compared_in_target(run: TaskRun, task_id: int, columns: list[Column]) -> bool:
    """Rows compared inside the target, where both databases compute the same row hash
    (PostgreSQL to PostgreSQL): the source's keys and row hashes are copied into the target
    (no row through Python), one join there finds new, changed and gone keys, and only the
    changed rows are fetched by key, merged and committed a chunk at a time. The target itself
    is what the source is compared with, so no digest is stored: a run stopped anywhere is
    followed by one that compares again with what the target then holds. Digests stored by
    the other way are forgotten, so that they cannot describe an older target."""
    task, result, options = run.task, run.result, run.options
    if not digests_compared_in_target(run, columns):
        return False
    keys = task.write.keys
    source = cast(InDatabaseCompare, run.source)
    reader = cast(HashSource, run.source)
    with run.writer(columns, copy=True) as writer:
        if not writer.merges or cast(MergeWriter, writer).empty_at_start:
            return False  # a first load: copied whole where it can be (`_first_load_copied`)
        w = cast(ComparingWriter, writer)  # the target's kind has `in_database_compare`
        started = time.perf_counter()
        rows = w.copy_digests(task.read)
        if rows is None:
            return False
        result.rows_read += rows
        checkpoint("read")
        if not options.dry_run and run.store.tasks.has_digests(task_id):
            run.store.tasks.forget(task_id)
        changed = w.find_changed()
        result.read_seconds += time.perf_counter() - started
        if w.narrowed is not None:
            differ, buckets = w.narrowed
            run.log("info", "key buckets compared by sums", task=task.name, buckets=buckets, differ=differ)
        run.log("info", "rows compared inside the target", task=task.name, rows=rows, differ=changed)
        chunk = max(1, min(run.batch_size, MAX_PARAMETERS // len(keys)))
        after = 0
        integer_key = len(keys) == 1 and w.key_columns[0].type.kind in INTEGERS
        while page := w.changed_keys(after, chunk):
            after = page[-1][0]
            # the rows copied inside the databases too, where the key allows a literal list
            where = source.any_of_sql(source.quote(keys[0]), [r[1] for r in page]) if integer_key else ""
            if not where or w.copy_from(task.read, STAGE, where) is None:
                fetched = reader.read_by_keys(task.read, columns, keys, [r[1:] for r in page])
                w.stage(fetched)
            checkpoint("write")
            result.add(w.merge())
            w.clear_stage()
            if not options.dry_run:
                w.commit()
                run.committed()
        if task.deletes != "ignore":
            result.deleted = w.delete_gone()
        result.unchanged = result.rows_read - result.inserted - result.updated - result.upserted
        run.finish(w)
    return True


def digests_compared_in_target(run: TaskRun, columns: list[Column]) -> bool:
    """Whether this task's later runs compare rows inside the target (then a first load
    records no digest): both ends of one kind that compares in the database, computing the
    same row hash (two PostgreSQL servers may differ), and no transform between them (the
    target holds the transformed rows). Not for a job keeping change logs beside its target: a
    comparison there stores no digest, for the log's index to be stored with."""
    if (
        run.task.transforms
        or run.change_log is not None
        or not (
            run.source.capabilities.in_database_compare
            and run.target.capabilities.in_database_compare
            and run.source.kind == run.target.kind
        )
    ):
        return False
    source, target = cast(InDatabaseCompare, run.source), cast(InDatabaseCompare, run.target)
    names = [target.quote(c.name) for c in columns]
    ours = target.row_hash(names, columns)
    return ours is not None and ours == source.row_hash(names, columns)
