"""The `messages` strategy: a task consuming a broker (a kind with `consume`). Each message is
a change of one row, applied in arrival order: upserted by `write.keys` (appended without
keys), or, when its op header says so, deleted (`deletes: propagate` or `soft`). A batch is
committed in the target, then acknowledged to the broker: a kill between the two sends the
batch again, and upserting it again by key leaves the target as it was. Nothing else is kept:
the broker's own acknowledgements are the task's position.

In the daemon's run of a continuous job (`RunOptions.continuous`), the task does not end at a
drained queue: it goes on, committing each batch at most `max_latency` after it began, until the
run is cancelled (the daemon stopping, the job suspended or changed, `runner cancel`)."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, cast

from runner.changes.task import TaskRun
from runner.connectors.base import ConsumingSource, MergeWriter, Writer
from runner.streams.checkpoints import checkpoint
from runner.streams.types import Batch


def run_messages(run: TaskRun) -> None:
    task, result, options = run.task, run.result, run.options
    run.state()  # recorded, though the broker keeps the position
    consumer = cast(ConsumingSource, run.source).consume(task.read, run.batch_size)
    if options.continuous is not None:
        consumer.follow(options.continuous)
    if consumer.notice:
        run.log("warning", consumer.notice, task=task.name)
    # A broker that hands out the next batch before this one is acknowledged (`ahead`) is read
    # in a thread of its own while the run's thread writes: every call on the consumer is made
    # there, in order, so an acknowledgement goes after the fetch begun before it, and after
    # the commit of its batch (never before).
    ahead = getattr(consumer, "ahead", False) and not options.dry_run
    reading = ThreadPoolExecutor(1, thread_name_prefix="consume") if ahead else None

    def take() -> tuple[list[tuple[str, tuple]] | None, Any, list[tuple[str, str]]]:
        batch = consumer.next_batch()
        return batch, consumer.mark() if ahead else None, consumer.set_aside()

    acks: list[Future[None]] = []
    try:
        if not consumer.columns:  # a source that knows no columns yet has nothing to hand out
            run.log("info", "nothing to consume yet: the source knows no columns", task=task.name)
            return
        run.use_columns(consumer.columns)
        with run.writer(consumer.columns) as w:
            if w.merges:  # a key may come again (a later batch, after a delete): merge, never insert
                cast(MergeWriter, w).empty_at_start = False
            coming = reading.submit(take) if reading else None
            while True:
                if run.cancel:
                    run.cancel.check()
                batch, through, aside = coming.result() if coming else take()
                if batch is None:
                    break
                coming = reading.submit(take) if reading else None  # comes while this one is written
                for done in [a for a in acks if a.done()]:
                    acks.remove(done)
                    done.result()  # a failed acknowledgement fails the run
                if not batch and not aside:  # a continuous run: nothing came, nothing to acknowledge
                    continue
                result.rows_read += len(batch)
                for ident, reason in aside:
                    run.log(
                        "warning",
                        "message sent to the dead letters",
                        task=task.name,
                        message_id=ident,
                        reason=reason,
                    )
                run.note("consuming", result.rows_read)
                if run.progress:
                    run.progress(task.name, result.rows_read)
                checkpoint("read")
                _apply(run, w, batch)
                checkpoint("write")
                if not options.dry_run:
                    w.commit()
                    run.committed()  # committed, not yet acknowledged: a kill here sends them again
                    if reading:
                        acks.append(reading.submit(consumer.acknowledge, through))
                    else:
                        consumer.acknowledge()
            for ack in acks:
                ack.result()
            if options.dry_run:
                run.log("info", "dry run: rolled back, nothing acknowledged", task=task.name)
    finally:
        if reading:
            reading.shutdown(wait=True, cancel_futures=True)  # the consumer is used by one thread at once
        consumer.close()


def _apply(run: TaskRun, w: Writer, batch: list[tuple[str, tuple]]) -> None:
    """A batch's changes in order: each run of upserts merged, each run of deletes applied."""
    task, result = run.task, run.result
    keys = task.write.keys
    names = [c["name"] for c in result.columns]
    positions = [names.index(k) for k in keys]
    start = 0
    while start < len(batch):
        op = batch[start][0]
        end = start
        while end < len(batch) and batch[end][0] == op:
            end += 1
        rows = [row for _, row in batch[start:end]]
        if op == "upsert":
            _upsert(run, w, rows, positions)
        elif task.deletes == "ignore":
            result.unchanged += len(rows)
        else:
            keyed = {tuple(row[i] for i in positions): None for row in rows}
            w.open_key_stage()
            w.stage_keys(list(keyed))
            result.deleted += w.delete_listed()
        start = end


def _upsert(run: TaskRun, w: Writer, rows: Batch, positions: list[int]) -> None:
    result = run.result
    if not positions and w.merges:  # no keys: every message is a new row
        filtered = result.filtered
        cast(MergeWriter, w).insert(rows)
        result.inserted += len(rows) - (result.filtered - filtered)  # a filter's rows are not inserted
        return
    if positions:  # one row per key, the last message's: a stage merges each key once
        rows = list({tuple(row[i] for i in positions): row for row in rows}.values())
    w.stage(rows)
    counts = w.merge()
    w.clear_stage()
    result.add(counts)
    result.unchanged += len(rows) - counts.inserted - counts.updated - counts.upserted
