"""The full strategy: read every row. Without keys the target's rows are replaced; with keys
the rows are staged and merged, so only inserts and updates are written, and deletes are the
target keys no longer staged. One transaction."""

from __future__ import annotations

from typing import cast

from runner.changes.task import TaskRun, counted_without_target
from runner.connectors.base import STAGE, KeySpan, MergeWriter, ReadStream, Writer
from runner.streams.checkpoints import checkpoint


def run_full(run: TaskRun) -> None:
    task, result = run.task, run.result
    run.state()  # a resync of a full task is a no-op, but it is recorded
    stream = run.source.read(task.read, run.batch_size, limit=run.options.limit)
    run.track(stream.batches, cancellable=False)  # closed when the task ends, even if never read
    run.use_columns(stream.columns)
    if counted_without_target(run, stream):
        return
    with run.writer(stream.columns, copy=run.options.limit is None) as w:
        if w.merges and not task.write.keys:  # a script, keys or not, gets every row
            w = cast(MergeWriter, w)
            if run.options.limit is None:
                result.deleted = w.truncate()
            else:
                run.log("warning", "the table is not emptied in a run limited to N rows", task=task.name)
            if run.copied(w, run.table, stream):
                result.inserted = result.rows_read
                checkpoint("write")
            for batch in run.timed(stream.batches):
                w.insert(batch)
                checkpoint("write")
                result.inserted = result.rows_read - result.filtered  # a filter's rows are not inserted
        elif w.merges and cast(MergeWriter, w).copies_straight_in() and run.copied(w, run.table, stream):
            result.inserted = result.rows_read  # into an empty table: nothing merged or deleted
            checkpoint("write")
        else:
            merge_read(run, w, stream)
        run.finish(w)


def merge_read(run: TaskRun, w: Writer, stream: ReadStream, within: KeySpan | None = None) -> None:
    """Stage every row of the read (copied inside the databases where the pair can), merge
    them, and delete the target's rows (`within` a span of the key: a split copy's range) whose
    key was not read, as the task's `deletes` says."""
    task, result = run.task, run.result
    if run.copied(w, STAGE, stream):
        checkpoint("write")
    for batch in run.timed(stream.batches):
        w.stage(batch)
        checkpoint("write")
    result.add(w.merge())
    result.unchanged = result.rows_read - result.inserted - result.updated - result.upserted
    if task.deletes != "ignore":
        if run.options.limit is not None:
            run.log("warning", "deletes are not applied in a run limited to N rows", task=task.name)
        else:
            result.deleted = cast(MergeWriter, w).delete_missing(within=within)
