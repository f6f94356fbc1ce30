"""The full strategy, cut into key ranges when the task asks (`changes.split: {ranges: N}`).

The run that plans the split (the job's run, holding the job's lease) cuts the span of the
task's single integer key into N even ranges, [low, high), the first and the last open (so a
target row whose key the source no longer has lies in one: deletes are applied range by range),
and records them in the state store. Each range is a unit of work: whoever takes its lease
(`locks.range_lock`) reads it (the pair's COPY fast path where it has one), merges it and
commits it in one target transaction, then records it done. The job's run takes ranges itself;
with `runner worker` it asks the other workers for help through the broker (`ASK_HELP`), and
every free worker thread takes ranges until none is left; elsewhere (`runner run`, the
in-process daemon) ranges run on threads of the run's own, as many as the machine has cores.

A range's merge is idempotent, so a range cut by a crash (its lease expires, or its process is
gone from this host) is simply run again, alone, by the next taker; a range committed in the
target whose worker died before recording it is merged again and finds nothing to change. The
task is done when every range is; its ranges are then forgotten (the run's record lists them).
A run that ends with ranges not done (a failure, a cancel, a crash of the job's run) leaves
them: the next run of the task resumes the plan, running only those.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

from runner.changes import full
from runner.changes.task import NOTE_SECONDS, TaskResult, TaskRun
from runner.connectors.base import KeySpan, MergeWriter
from runner.definitions.tasks import ReadSpec
from runner.errors import Cancelled, LockTimeout, TerminalError, TransientError
from runner.state import locks
from runner.state.cluster import KeyRange
from runner.streams.types import INTEGERS

RANGE_DONE = "range done"  # the run log's line of a range committed (by whichever worker)
WAIT_SECONDS = 0.5  # how often the job's run looks at the ranges other workers run
# Asks the other workers of this process's cluster to help with a split: (job ref, run id, task,
# how many helpers). Set by `runner worker` (Celery); unset, the ranges run on local threads.
ASK_HELP: Callable[[str, str, str, int], None] | None = None


def run_full(run: TaskRun) -> None:
    """The full strategy; split into key ranges when the task asks, and the run writes (a dry
    or limited run reads in one pass: it commits nothing a range would keep)."""
    split = run.task.changes.split
    if split is None:
        full.run_full(run)
    elif run.options.dry_run:
        run.log("info", "a dry run reads the task in one pass, not split", task=run.task.name)
        full.run_full(run)
    else:
        run_split(run, split.ranges)


def run_split(run: TaskRun, count: int) -> None:
    task, store = run.task, run.store
    ref = f"{run.namespace}/{run.job}"
    state = run.state()
    key = task.write.keys[0]
    stream = run.source.read(task.read, run.batch_size, limit=1)
    columns = stream.columns
    close = getattr(stream.batches, "close", None)
    if close:
        close()
    run.use_columns(columns)
    types = {c.name: c.type for c in columns}
    if key not in types or types[key].kind not in INTEGERS:
        raise TerminalError(
            f"{run.where('changes', 'split')}: a split cuts the key into ranges of integers, and the "
            f"key {key!r} is of type {types.get(key, 'unknown')}: remove 'split' "
            "(the task is copied in one transaction)"
        )
    with run.writer(columns) as w:  # the table (and its columns) before the ranges write into it
        w.commit()
    ranges = store.ranges.of(state.id)
    # the table emptied or dropped first (`before_run`) holds none of the ranges done before
    emptied = run.result.before_run is not None
    if ranges and len(ranges) == count and not run.options.resync and not emptied:
        retried = store.ranges.retry(state.id)
        left = sum(r.status != "done" for r in ranges)
        run.log(
            "info",
            f"split resumed: {left} of {count} ranges left",
            task=task.name,
            planned_by=ranges[0].planned_by,
            failed_before=retried,
        )
    else:
        bounds = cut(_span(run, key), count)
        store.ranges.plan(state.id, bounds, run.run_id)
        run.log("info", f"split into {len(bounds)} ranges of {key}", task=task.name, ranges=bounds)
    ranges = store.ranges.of(state.id)
    pending = sum(r.status == "pending" for r in ranges)
    extra = _helpers(run, ref, pending)
    run.result.ranges = []
    started = time.monotonic()
    with ThreadPoolExecutor(max(extra, 1), thread_name_prefix=f"{run.job}-range") as pool:
        helpers = [pool.submit(_forked, run, ref, state.id) for _ in range(extra)]
        took = work(run, ref, state.id)
        done = _wait(run, ref, state.id, count)
        for helper in helpers:
            helper.result()
    _finish(run, done, took, time.monotonic() - started)
    store.ranges.forget(state.id)
    run.committed()


def _helpers(run: TaskRun, ref: str, pending: int) -> int:
    """Ask for help with the ranges beyond the one this run takes: the cluster's workers
    (`ASK_HELP`, nothing more to do here) or threads of this process (how many: returned)."""
    if pending <= 1:
        return 0
    if ASK_HELP is not None:
        ASK_HELP(ref, run.run_id, run.task.name, pending - 1)
        run.log(
            "info", "other workers asked to help with the ranges", task=run.task.name, helpers=pending - 1
        )
        return 0
    if run.fork is None:
        return 0
    threads = min(pending, os.cpu_count() or 1) - 1
    if threads:
        run.log("info", "ranges run on threads of this run", task=run.task.name, threads=threads + 1)
    return threads


def _forked(run: TaskRun, ref: str, task_id: int) -> int:
    assert run.fork is not None
    with run.fork() as other:
        return work(other, ref, task_id)


def _span(run: TaskRun, key: str) -> tuple[int, int] | None:
    """The key's lowest and highest value in the source (None: no row)."""
    sql = cast(Any, run.source)
    q = sql.quote(key)
    spec = ReadSpec(query=f"SELECT min({q}) AS low, max({q}) AS high FROM {_from(run)} t")
    stream = run.source.read(spec, 1)
    rows = [row for batch in stream.batches for row in batch]
    low, high = rows[0] if rows else (None, None)
    return None if low is None else (int(low), int(high))


def _from(run: TaskRun) -> str:
    """The task's read as what follows FROM: its table, or its query as a derived table."""
    read, sql = run.task.read, cast(Any, run.source)
    if read.table is not None:
        return str(sql.quote_table(read.table))
    return f"({read.query.strip().rstrip(';')})"


def cut(span: tuple[int, int] | None, count: int) -> list[tuple[int | None, int | None]]:
    """`count` ranges of even width over [low, high] (fewer when the span has fewer keys), the
    first open below and the last open above; one open range for an empty source."""
    if span is None:
        return [(None, None)]
    low, high = span
    width = max(1, math.ceil((high - low + 1) / count))
    edges = sorted({low + i * width for i in range(1, count) if low + i * width <= high})
    starts: list[int | None] = [None, *edges]
    ends: list[int | None] = [*edges, None]
    return list(zip(starts, ends, strict=True))


def work(run: TaskRun, ref: str, task_id: int) -> int:
    """Take the task's pending ranges one at a time, each under its lease, and run them, until
    none is left to take; returns how many this call ran. A range that fails is recorded
    failed (its error with it), and the next is taken."""
    store, task = run.store, run.task
    ran = 0
    while True:
        if run.cancel is not None:
            run.cancel.check()
        taken = _take(run, ref, task_id)
        if taken is None:
            return ran
        r, lock, lock_id = taken
        by = locks.holder()
        try:
            result = run_range(run, r)
        except Cancelled:
            raise
        except Exception as exc:  # noqa: BLE001 - recorded for the job's run, which fails the task
            transient = isinstance(exc, TransientError | ConnectionError | TimeoutError)
            known = isinstance(exc, TerminalError | TransientError)
            error = str(exc) if known else f"{type(exc).__name__}: {exc}"
            store.ranges.finish(task_id, r.idx, "failed", by, {"error": error, "transient": transient})
            run.log("error", f"range {r.idx} failed: {error}", task=task.name, range=r.idx)
            continue
        finally:
            store.locks.release(lock, lock_id)
        ran += 1
        store.ranges.finish(task_id, r.idx, "done", by, result | {"run_id": run.run_id})
        run.log(
            "info",
            RANGE_DONE,
            task=task.name,
            range=r.idx,
            **{"from": r.low, "to": r.high},
            by=by,
            rows_read=result["rows_read"],
            seconds=result["seconds"],
        )


def _take(run: TaskRun, ref: str, task_id: int) -> tuple[KeyRange, str, str] | None:
    """A pending range whose lease this process took (one whose holder is gone is taken
    over), or None when every pending range is held by a live worker."""
    for r in run.store.ranges.of(task_id):
        if r.status != "pending":
            continue
        name = locks.range_lock(ref, run.task.name, r.idx)
        try:
            lock_id = run.store.locks.acquire(name, timeout=0, run_id=run.run_id)
        except LockTimeout:
            continue
        fresh = {x.idx: x for x in run.store.ranges.of(task_id)}.get(r.idx)
        if fresh is None or fresh.status != "pending":  # done between the look and the lease
            run.store.locks.release(name, lock_id)
            continue
        return fresh, name, lock_id
    return None


def run_range(run: TaskRun, r: KeyRange) -> dict[str, Any]:
    """Read one range of the key, merge it and commit it (its deletes within it); its counts.
    The range is the task's read narrowed to it, and its own result, for the time it runs."""
    started = time.perf_counter()
    task, outer = run.task, run.result
    sql = cast(Any, run.source)
    span = KeySpan(r.low, r.high)
    where = span.sql(f"t.{sql.quote(task.write.keys[0])}")
    query = f"SELECT * FROM {_from(run)} t WHERE {where}"
    ranged = task.read.model_copy(update={"table": None, "query": query})
    run.task = task.model_copy(update={"read": ranged})
    run.result = res = TaskResult(task.name, task.read.describe(), task.write.describe(), "full")
    try:
        stream = run.source.read(ranged, run.batch_size)
        run.track(stream.batches, cancellable=False)
        with run.writer(stream.columns, copy=True) as w:
            cast(MergeWriter, w).narrow(span)
            full.merge_read(run, w, stream, span)
            w.commit()
    finally:
        run.close_streams()
        run.task, run.result = task, outer
    return {
        "rows_read": res.rows_read,
        "inserted": res.inserted,
        "updated": res.updated,
        "deleted": res.deleted,
        "unchanged": res.unchanged,
        "seconds": round(time.perf_counter() - started, 3),
    }


def _wait(run: TaskRun, ref: str, task_id: int, count: int) -> list[KeyRange]:
    """Wait for the ranges other workers run; take any whose worker is gone. Returns the
    ranges once none is pending."""
    noted = time.monotonic()
    while True:
        ranges = run.store.ranges.of(task_id)
        if all(r.status != "pending" for r in ranges):
            return ranges
        if run.cancel is not None:
            run.cancel.check()
        if time.monotonic() - noted >= NOTE_SECONDS:
            noted = time.monotonic()
            done = sum(r.status == "done" for r in ranges)
            run.log("info", f"split: {done} of {count} ranges done", task=run.task.name)
        work(run, ref, task_id)  # a range whose lease expired (its worker died) is run again here
        time.sleep(WAIT_SECONDS)


def _finish(run: TaskRun, ranges: list[KeyRange], took: int, seconds: float) -> None:
    """The task's counts, the sums of the ranges this run committed (a resumed split lists
    those an earlier run committed with that run's id); fails the task when a range failed."""
    result = run.result
    failed = [r for r in ranges if r.status == "failed"]
    for r in ranges:
        counts = r.result or {}
        if r.status == "done" and counts.get("run_id") == run.run_id:  # not one an earlier run committed
            result.rows_read += counts.get("rows_read", 0)
            result.inserted += counts.get("inserted", 0)
            result.updated += counts.get("updated", 0)
            result.deleted += counts.get("deleted", 0)
            result.unchanged += counts.get("unchanged", 0)
        result.ranges.append(
            {
                "range": r.idx,
                "from": r.low,
                "to": r.high,
                "status": r.status,
                "by": r.done_by,
                "rows_read": counts.get("rows_read", 0),
                **({"run_id": counts["run_id"]} if counts.get("run_id") not in (None, run.run_id) else {}),
                "seconds": counts.get("seconds"),
                **({"error": counts["error"]} if "error" in counts else {}),
            }
        )
    run.committed(pause=False)  # the ranges' counts are what they committed, whatever failed
    if failed:
        first = failed[0].result or {}
        error = (
            f"{len(failed)} of {len(ranges)} key ranges failed (the next run runs them again, "
            f"alone): range {failed[0].idx}: {first.get('error')}"
        )
        raise (TransientError if first.get("transient") else TerminalError)(error)
    run.log(
        "info",
        f"split done: {len(ranges)} ranges committed, {took} by this run",
        task=run.task.name,
        seconds=round(seconds, 3),
    )
