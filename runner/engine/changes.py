"""Change detection: what each strategy reads and how it writes it.

- full: read every row. Without keys the target's rows are replaced; with keys the rows are
  staged and merged, so only inserts and updates are written, and deletes are the target
  keys no longer staged. One transaction.
- watermark: read rows whose column is at or past the stored pointer (minus `lookback`),
  in the column's order; each batch is merged and committed, and only then does the pointer
  move to the highest value committed. Rows that share the pointer's value are read again
  next run and found unchanged, so nothing is missed at the boundary and nothing counted twice.
  A first load into an empty table is copied inside the databases where the pair allows.
  Deletes: source and target keys are compared per bucket (an integer key; count, sum and an
  key hash sum) or staged in the target, or a user's query lists them.
- hash: see `runner.engine.digests`.

A run killed anywhere leaves the target with whole committed batches and a pointer that is
never past them: the next run re-reads from the pointer and the merge makes that idempotent.
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from runner.definitions.load import format_path
from runner.definitions.models import Task
from runner.engine import pointers
from runner.engine.cancel import CancelToken
from runner.engine.checkpoints import checkpoint
from runner.engine.connector import (
    Batch,
    BucketDigest,
    Connector,
    MissingColumn,
    ReadStream,
    Watermark,
    key_hash,
)
from runner.engine.templates import ScriptWriter
from runner.engine.types import Column
from runner.engine.writer import INTEGERS, KEY_STAGE, STAGE, MergeCounts, SqlWriter
from runner.errors import Location, TerminalError
from runner.state.store import StateStore
from runner.state.tasks import TaskState

NOTE_SECONDS = 10.0  # how often a long phase logs its progress (`TaskRun.note`)
Log = Callable[..., None]
Progress = Callable[[str, int], None]  # (task, rows read so far), after every batch
COMMITTED = "batch committed"  # the run log's line with a task's counts after each commit
Locate = Callable[[tuple[str | int, ...]], Location]  # a field path of the job's definition -> where


@dataclass
class RunOptions:
    """How a run differs from a plain one (`runner run --task/--resync/--dry-run/--limit`).

    A run limited to N rows per task is a test run, so it is a dry run too: its rows go
    through the writer in the target's transaction, which is rolled back; it applies no
    delete and moves no pointer or digest. Writing a part of the source would leave the
    target part old, part new (or, without keys, replaced by N rows)."""

    tasks: list[str] | None = None
    resync: bool = False
    dry_run: bool = False
    limit: int | None = None

    def __post_init__(self) -> None:
        if self.limit is not None:
            self.dry_run = True


@dataclass
class TaskResult:
    name: str
    source: str  # table name, or "query"
    target: str
    strategy: str = "full"
    status: str = "skipped"  # succeeded | failed | skipped
    rows_read: int = 0
    inserted: int = 0
    updated: int = 0
    upserted: int = 0  # written through write.upsert_script (insert or update: the script decides)
    deleted: int = 0
    unchanged: int = 0
    pointer_before: dict[str, str] | None = None
    pointer_after: dict[str, str] | None = None
    read_seconds: float = 0.0
    write_seconds: float = 0.0
    seconds: float = 0.0
    columns: list[dict[str, str]] = field(default_factory=list)
    error: str | None = None
    failure: str | None = None  # when failed: "transient" (a retry may pass) or "terminal"

    @property
    def rows_written(self) -> int:
        return self.inserted + self.updated + self.upserted + self.deleted

    def add(self, counts: MergeCounts) -> None:
        self.inserted += counts.inserted
        self.updated += counts.updated
        self.upserted += counts.upserted


@dataclass
class TaskRun:
    """Everything one task's run needs."""

    task: Task
    namespace: str
    job: str
    source: Connector
    target: Connector
    batch_size: int
    store: StateStore
    options: RunOptions
    run_id: str
    log: Log
    progress: Progress | None = None
    cancel: CancelToken | None = None
    locate: Locate | None = None
    index: int = 0  # the task's position in the job's `tasks`, for `where`
    result: TaskResult = field(init=False)
    streams: list[Iterator[Batch]] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        t = self.task
        self.result = TaskResult(t.name, t.read.table or "query", t.write.table, t.changes.strategy)
        self.noted = time.monotonic()

    def note(self, doing: str, rows: int) -> None:
        """Log a long phase's rows so far, at most every `NOTE_SECONDS`: a run of many minutes
        says what it is doing and how far it got."""
        now = time.monotonic()
        if now - self.noted >= NOTE_SECONDS:
            self.noted = now
            self.log("info", f"{doing}: {rows:,} rows so far", task=self.task.name, rows=rows)

    def where(self, *path: str | int) -> str:
        """Where a field of this task is defined: `jobs.d/x.yaml:9:7: spec.tasks[0].changes.column`."""
        full = ("spec", "tasks", self.index, *path)
        if self.locate is None:
            return format_path(full)
        return str(self.locate(full))

    def use_columns(self, columns: list[Column]) -> None:
        """Record the source's columns, and check every column the task names among them before
        anything is written: a missing one found later would fail a run that had already
        created (and filled) the target."""
        self.result.columns = [{"name": c.name, "type": str(c.type)} for c in columns]
        check_columns(self, [c.name for c in columns])

    def track(self, batches: Iterator[Batch], cancellable: bool = True) -> Iterator[Batch]:
        """Remember a reader's stream so `close_streams` ends it (and frees its connection) as
        soon as the task ends, even when a failure leaves it half read. A `cancellable` stream
        stops the run, if asked to, before each batch (`runner.engine.cancel`)."""
        self.streams.append(batches)
        return self._cancellable(batches) if cancellable and self.cancel else batches

    def _cancellable(self, batches: Iterator[Batch]) -> Iterator[Batch]:
        assert self.cancel is not None
        for batch in batches:
            self.cancel.check()
            yield batch

    def close_streams(self) -> None:
        for stream in self.streams:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        self.streams.clear()

    def timed(self, batches: Iterator[Batch]) -> Iterator[Batch]:
        """Yield batches, adding the time spent waiting for each to `read_seconds`."""
        self.track(batches)
        while True:
            if self.cancel:
                self.cancel.check()
            started = time.perf_counter()
            batch = next(batches, None)
            self.result.read_seconds += time.perf_counter() - started
            if batch is None:
                return
            self.result.rows_read += len(batch)
            self.note("reading", self.result.rows_read)
            if self.progress:
                self.progress(self.task.name, self.result.rows_read)
            checkpoint("read")
            yield batch

    def writer(self, columns: list[Column], copy: bool = False) -> SqlWriter | ScriptWriter:
        """The task's writer; `copy` lets it copy inside the databases (`SqlWriter.copy_from`)."""
        write = self.task.write
        if write.upsert_script:
            return self.target.open_script_writer(
                write.table, columns, write.keys, write.upsert_script, write.delete_script, self.cancel
            )
        soft = write.soft_delete_column if self.task.deletes == "soft" else None
        return self.target.open_writer(write.table, columns, write.keys, soft, self.source if copy else None)

    def copied(self, w: SqlWriter | ScriptWriter, into: str, stream: ReadStream) -> bool:
        """Try the in-database copy (`SqlWriter.copy_from`) of a whole read; when it ran, count
        its rows and drop the batch stream that was opened for it."""
        if not isinstance(w, SqlWriter) or self.options.limit is not None:
            return False
        checkpoint("read")  # the read is open, nothing written
        started = time.perf_counter()
        rows = w.copy_from(self.task.read, into, progress=lambda rows: self.note("copying", rows))
        if rows is None:
            return False
        self.result.read_seconds += time.perf_counter() - started
        self.result.rows_read += rows
        close = getattr(stream.batches, "close", None)
        if close:
            close()
        self.log("info", "copied inside the databases, no row through Python", task=self.task.name, rows=rows)
        if self.cancel:  # one statement cannot stop half-way; a cancel asked meanwhile stops here
            self.cancel.check()
        return True

    def committed(self, pause: bool = True) -> None:
        """After the target committed a batch: log the task's counts so far (at debug level,
        flushed at once), so the history of a run killed later can say what it committed;
        then (with `pause`) the crash tests' checkpoint."""
        r = self.result
        self.log(
            "debug",
            COMMITTED,
            task=self.task.name,
            rows_read=r.rows_read,
            inserted=r.inserted,
            updated=r.updated,
            upserted=r.upserted,
            deleted=r.deleted,
        )
        if pause:
            checkpoint("committed")

    def state(self) -> TaskState:
        state = self.store.tasks.state(self.namespace, self.job, self.task.name)
        if self.options.resync and self.options.dry_run:
            self.log("info", "resync (dry run): pointer ignored, not forgotten", task=self.task.name)
            return replace(state, pointer=None, watermark_column=None)
        if self.options.resync:
            self.store.tasks.forget(state.id)
            self.log("info", "resync: pointer and digests forgotten", task=self.task.name)
            state = self.store.tasks.state(self.namespace, self.job, self.task.name)
        return state

    def finish(self, writer: SqlWriter | ScriptWriter) -> None:
        if self.options.dry_run:
            self.log("info", "dry run: rolled back", task=self.task.name)
        else:
            writer.commit()
            self.committed()


def check_columns(run: TaskRun, names: list[str]) -> None:
    """Raise a TerminalError naming, with where they are defined, the task's fields that name
    a column the source does not have (keys, watermark), or one it must not have (the
    soft-delete column, which runner adds to the target)."""
    task = run.task
    named: list[tuple[tuple[str | int, ...], str]] = [
        (("write", "keys", i), key) for i, key in enumerate(task.write.keys)
    ]
    if task.changes.column is not None:
        named.append((("changes", "column"), task.changes.column))
    problems = []
    for path, name in named:
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"columns: {', '.join(names)}"
            problems.append(f"{run.where(*path)}: column {name!r} is not among the source's columns ({hint})")
    soft = task.write.soft_delete_column
    if task.deletes == "soft" and soft in names:
        problems.append(
            f"{run.where('write', 'soft_delete_column')}: column {soft!r} is one of the source's columns: "
            "runner sets it when a row is deleted; name another one"
        )
    if problems:
        raise TerminalError("; ".join(problems))


def run_full(run: TaskRun) -> None:
    task, result = run.task, run.result
    run.state()  # a resync of a full task is a no-op, but it is recorded
    stream = run.source.read(task.read, run.batch_size, limit=run.options.limit)
    run.use_columns(stream.columns)
    if counted_without_target(run, stream):
        return
    with run.writer(stream.columns, copy=run.options.limit is None) as w:
        if isinstance(w, SqlWriter) and not task.write.keys:  # a script, keys or not, gets every row
            if run.options.limit is None:
                result.deleted = w.truncate()
            else:
                run.log("warning", "the table is not emptied in a run limited to N rows", task=task.name)
            if run.copied(w, task.write.table, stream):
                result.inserted = result.rows_read
                checkpoint("write")
            for batch in run.timed(stream.batches):
                w.insert(batch)
                checkpoint("write")
                result.inserted += len(batch)
        else:
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
                    result.deleted = w.delete_missing()
        run.finish(w)


def counted_without_target(run: TaskRun, stream: ReadStream) -> bool:
    """A dry run into a table that does not exist yet: every row read would be inserted. The
    table is not created (MariaDB would commit a CREATE TABLE at once), but every value is
    encoded as the target would be given it, so one it cannot hold fails the run naming its
    row and column, as a real run would."""
    if not run.options.dry_run or run.target.table_exists(run.task.write.table):
        return False
    names = [c.name for c in stream.columns]
    encode = run.target.batch_encoder(stream.columns, [names.index(k) for k in run.task.write.keys])
    for batch in run.timed(stream.batches):
        encode(batch)
    run.result.inserted = run.result.rows_read
    run.log(
        "info",
        "dry run: the target table does not exist; every row read would be inserted",
        task=run.task.name,
    )
    return True


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
    watermark = Watermark(column, pointers.shift_back(before, task.changes.lookback_amount()))
    # A first load that may be copied inside the databases opens the batch reader (whose query
    # sorts every row before the first comes) only if the copy cannot be made.
    stream: ReadStream | None = None
    if _may_copy(run, before):
        columns = columns_of(run)
    else:
        try:
            stream = run.source.read(task.read, run.batch_size, watermark, limit=options.limit)
        except MissingColumn as exc:
            check_columns(run, exc.known)  # names the field, and any other the source lacks
            raise
        columns = stream.columns
    run.use_columns(columns)
    if stream is not None and counted_without_target(run, stream):
        return
    # the key comparison for deletes may copy keys inside the databases, unless that would
    # lock a file the batch reader still reads (SQLite)
    with run.writer(columns, copy=run.target.copy_while_reading) as w:
        # a target that was empty holds only this run's snapshot of the source: no key of it
        # can be missing from the source (a deleted_keys_query still says what it says)
        snapshot = isinstance(w, SqlWriter) and w.empty_at_start and not task.read.deleted_keys_query
        deletes = task.deletes != "ignore" and not snapshot
        with ThreadPoolExecutor(1) as pool:
            # the source sums up its keys while the rows are merged (`_deletes_by_buckets`),
            # unless the target is a SQLite file, whose commits would wait for that reader
            by_buckets = deletes and options.limit is None and _by_buckets(run, w)
            early = (
                pool.submit(_source_key_sums, run) if by_buckets and run.target.copy_while_reading else None
            )
            try:
                copied = stream is None and _first_load_copied(run, w, column, state.id)
                if stream is None and not copied:
                    stream = run.source.read(task.read, run.batch_size, watermark, limit=options.limit)
                if stream is not None:
                    _merge_batches(run, w, stream, state.id, before)
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
                    assert isinstance(w, SqlWriter)
                    sums = early.result() if early is not None else _source_key_sums(run)
                    result.deleted = _deletes_by_buckets(run, w, sums)
                else:
                    result.deleted = _watermark_deletes(run, w, columns)
                run.finish(w)


def _may_copy(run: TaskRun, before: Any) -> bool:
    """Whether a watermark task's first load may be copied inside the databases: a plain run
    into a SQL target that copies while it reads (not SQLite: see `copy_while_reading`)."""
    options = run.options
    return (
        before is None
        and run.target.copy_while_reading
        and not run.task.write.upsert_script
        and not options.dry_run
    )


def columns_of(run: TaskRun) -> list[Column]:
    """The source's columns, from a read of one row (a SQLite expression's type comes from
    its value)."""
    probe = run.source.read(run.task.read, 1, limit=1)
    for _ in probe.batches:
        pass
    return probe.columns


def _first_load_copied(run: TaskRun, w: SqlWriter | ScriptWriter, column: str, task_id: int) -> bool:
    """A first load into an empty table copied inside the databases (`SqlWriter.copy_from`);
    nothing can be deleted yet. False when the pair cannot. The pointer is the source's
    highest value read just before the copy: in the column's own type, zone and order (the
    target's copy may have neither: MariaDB keeps a timestamptz as UTC in a DATETIME and
    sorts text by its own collation), and never past a row the copy left out. Rows the copy
    took past it are read again next run and found unchanged."""
    if not (isinstance(w, SqlWriter) and w.empty_at_start):
        return False
    highest = run.source.highest(run.task.read, column)
    if not run.copied(w, run.task.write.table, ReadStream([], iter(()))):
        return False
    run.result.inserted = run.result.rows_read
    checkpoint("write")
    w.commit()
    run.committed()
    if highest is not None:
        run.result.pointer_after = pointers.encode(highest)
        run.store.tasks.set_pointer(task_id, column, run.result.pointer_after, run.run_id)
    return True


def _merge_batches(
    run: TaskRun, w: SqlWriter | ScriptWriter, stream: ReadStream, task_id: int, before: Any
) -> None:
    """Stage, merge and commit each batch read; only then does the pointer pass it."""
    result, column = run.result, run.task.changes.column
    pointer = before
    for batch in run.timed(stream.batches):
        w.stage(batch)
        checkpoint("write")
        result.add(w.merge())
        w.clear_stage()
        if not run.options.dry_run:
            w.commit()  # the target holds the batch: only now may the pointer pass it
            run.committed()
            pointer = _later(pointer, stream.pointer)
            result.pointer_after = pointers.encode(pointer)
            run.store.tasks.set_pointer(task_id, column, result.pointer_after, run.run_id)


def _by_buckets(run: TaskRun, w: SqlWriter | ScriptWriter) -> bool:
    """Deletes found by comparing key buckets: one integer key, no deleted_keys_query."""
    keys = run.task.write.keys
    return (
        isinstance(w, SqlWriter)
        and not run.task.read.deleted_keys_query
        and len(keys) == 1
        and w.key_columns[0].type.kind in INTEGERS
    )


def _watermark_deletes(run: TaskRun, w: SqlWriter | ScriptWriter, columns: list[Column]) -> int:
    """Deletes by a deleted_keys_query, or by every source key staged in the target."""
    task = run.task
    keys = task.write.keys
    w.open_key_stage()
    if task.read.deleted_keys_query:
        types = [next(c.type for c in columns if c.name == k) for k in keys]
        for batch in run.track(run.source.read_query(task.read.deleted_keys_query, types, run.batch_size)):
            w.stage_keys(batch)
        return w.delete_listed()
    assert isinstance(w, SqlWriter)  # validation: a script needs deleted_keys_query here
    if w.copy_from(task.read, KEY_STAGE) is None:
        for batch in run.track(run.source.read(task.read, run.batch_size, select=keys).batches):
            w.stage_keys(batch)
    return w.delete_missing(KEY_STAGE)


KEYS_PER_BUCKET = 64
MAX_BUCKETS = 50_000
FEW_BUCKETS = 500  # at most ~32,000 keys a side: compared in Python rather than staged
BUCKETS_PER_PASS = 5_000  # at most 5,000 bound parameters and ~320,000 staged keys a pass


@dataclass
class KeySums:
    """The source's integer keys summed up per bucket of `width` keys (`BucketDigest`)."""

    width: int
    buckets: dict[int, BucketDigest] | None  # None: the source is empty


def _source_key_sums(run: TaskRun) -> KeySums:
    task, key = run.task, run.task.write.keys[0]
    low, high, count = run.source.key_summary(task.read, key)
    if low is None or high is None:
        return KeySums(1, None)
    width = max(1, -(-(high - low + 1) // min(MAX_BUCKETS, max(1, count // KEYS_PER_BUCKET))))
    return KeySums(width, run.source.key_buckets(task.read, key, width, _native_hash(run)))


def _native_hash(run: TaskRun) -> bool:
    """Whether the key buckets use the dialect's own key hash (`native_key_hash`): only where
    both ends are of that dialect, the only one that computes it."""
    source, target = run.source, run.target
    return (
        getattr(source, "dialect", None) == getattr(target, "dialect", None)
        and source.native_key_hash("k") is not None
    )


def _deletes_by_buckets(run: TaskRun, w: SqlWriter, sums: KeySums) -> int:
    """Deletes under an integer key without moving every key: both databases sum up their
    keys per bucket of a key range (`BucketDigest`: count, sum and sum of a hash of each key,
    md5 or the dialect's own between two databases of it, computed in each database; the
    source's while the batches are merged); only the buckets that differ have their keys
    compared. A bucket's target keys are the source's that the
    run merged plus the deleted ones, but its source keys may include rows the watermark did
    not read (committed late, behind the pointer): count and sum alone cannot tell keys 1
    and 4 deleted from 2 and 3 arrived late, the hash sum can. The source is summed up after
    the batch reader's snapshot: a key it gained since is in no target bucket's difference,
    and every key found to differ is looked up in the source as it is now before it is
    deleted."""
    task, key = run.task, run.task.write.keys[0]
    if sums.buckets is None:  # the source is empty: every row of the target is gone
        w.open_key_stage()
        return w.delete_missing(KEY_STAGE)
    width, source = sums.width, sums.buckets
    target = w.target_buckets(width, _native_hash(run))
    differ = sorted(b for b, summary in target.items() if source.get(b) != summary)
    run.log("info", "deletes: buckets compared", task=task.name, buckets=len(target), differ=len(differ))
    deleted, differ = _single_deletes(run, w, width, source, target, differ)
    if len(differ) <= FEW_BUCKETS:  # their keys compared in Python, read by key ranges
        ranges = [_bucket_range(b, width) for b in differ]
        gone = w.find_keys(ranges=ranges) - run.source.find_keys(task.read, key, ranges=ranges)
        return deleted + w.delete_keys(sorted(gone))
    for i in range(0, len(differ), BUCKETS_PER_PASS):
        chunk = differ[i : i + BUCKETS_PER_PASS]
        w.open_key_stage()
        if w.copy_key_buckets(task.read, width, chunk) is None:
            for batch in run.track(run.source.read_key_buckets(task.read, key, width, chunk, run.batch_size)):
                w.stage_keys(batch)
        deleted += w.delete_missing_in_buckets(width, chunk)
    return deleted


def _single_deletes(
    run: TaskRun,
    w: SqlWriter,
    width: int,
    source: dict[int, BucketDigest],
    target: dict[int, BucketDigest],
    differ: list[int],
) -> tuple[int, list[int]]:
    """Deletes read off the sums, for the buckets whose target holds one key more than the
    source (most of them when deletes are few): when the target's keys are the source's and
    one more, that key is the difference of the two sums. That is proven, not assumed: with
    the key taken out, the target's digest must equal the source's (three deleted keys and
    two late ones also differ by one in count; their sums' difference is then a deleted key,
    but not the only one). The key is deleted once it is checked to be in this bucket, in the
    target and not in the source (index lookups in each). Returns the rows deleted and the
    buckets left to compare key by key."""
    candidates: dict[int, int] = {}
    for b in differ:
        count, total, _ = source.get(b, (0, 0, 0))
        target_count, target_total, _ = target[b]
        key = target_total - total
        if target_count - count == 1 and _bucket(key, width) == b:
            candidates[b] = key
    if _native_hash(run):
        hashes = run.target.native_key_hashes(sorted(set(candidates.values())))
    else:
        hashes = {key: key_hash(key) for key in candidates.values()}
    guess = {  # the bucket holds no other difference
        b: key for b, key in candidates.items() if target[b][2] - hashes[key] == source.get(b, (0, 0, 0))[2]
    }
    if not guess:
        return 0, differ
    values = sorted(guess.values())
    gone = w.find_keys(values) - run.source.find_keys(run.task.read, run.task.write.keys[0], values)
    deleted = w.delete_keys(sorted(gone))
    left = [b for b in differ if guess.get(b) not in gone]
    run.log("info", "deletes: keys read off the sums", task=run.task.name, deleted=deleted, left=len(left))
    return deleted, left


def _bucket(key: int, width: int) -> int:
    """`SqlConnector.bucket_sql` in Python: integer division truncating toward zero."""
    return abs(key) // width * (1 if key >= 0 else -1)


def _bucket_range(bucket: int, width: int) -> tuple[int, int]:
    """The inclusive range of keys in a bucket (`_bucket`): bucket 0 spans both signs."""
    if bucket > 0:
        return bucket * width, bucket * width + width - 1
    if bucket < 0:
        return bucket * width - width + 1, bucket * width
    return -width + 1, width - 1


def strategies() -> dict[str, Callable[[TaskRun], None]]:
    from runner.engine.digests import run_hash

    return {"full": run_full, "watermark": run_watermark, "hash": run_hash}
