"""`runner verify`: a task's source and target compared as they are now, trusting no pointer
and no digest runner stored.

Under a single integer key, both databases sum up their rows per bucket of the key range
(count and a sum of a hash of each row, computed in each database, the two at once); only the
buckets whose sums differ have their rows read, in key order, from both sides and compared in
Python as canonical values (`runner.streams.values.comparable`). The row hash is one both
databases compute alike for equal values: between two databases of one kind with the same
column types, the kind's own 64-bit row hash (PostgreSQL's: each column by its type's own hash
function, `PostgresqlConnector.row_hash`) or the md5 of the row's text. Equal sums are taken
as equal rows (a 64- or 60-bit hash sum; a collision is about as likely as two random 60-bit
numbers being equal); differing sums only cost a read.

Where no such hash exists (two databases of different kinds, whose texts of one value differ;
a `read.timezone`, which converts the source's timestamps on the way; a column read through
`read.unmapped_types`; a key that is not one integer column), both sides are read whole in key
order (text keys byte-wise, as Python orders them) and compared row by row in Python, with
memory bounded by the batch size.

What the task reads is what is compared: its table or query, timestamps converted by its
`read.timezone`, unmapped types as it reads them; the target's rows soft-deleted (`deletes:
soft`) count as deleted, and a history-mode target's current versions are its rows. A repair
(`repair`) writes the rows found missing or differing, and deletes (or soft-deletes) the
extra ones under `deletes: propagate | soft`, through the task's writer in one transaction:
a run of its own, recorded in the history (`RunOptions.repair`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, cast

from runner.changes.task import TaskRun, columns_of
from runner.changes.zones import ZonedSource, unzoned
from runner.connectors.base import Endpoint, RowDigest, Verifiable, Writer
from runner.definitions.tasks import ReadSpec, Task, WriteSpec
from runner.errors import RunnerError, TerminalError
from runner.streams.cancel import CancelToken
from runner.streams.types import INTEGERS, Batch, Column, ColumnType, Row
from runner.streams.values import comparable

KEYS_PER_BUCKET = 64  # keys a bucket spans (dense keys: rows): 100 changed rows read ~13,000 rows
MAX_BUCKETS = 250_000  # bounds the sums held in Python
RANGES_PER_READ = 2_000  # key ranges of differing buckets read in one pass
SAMPLE = 10  # keys listed per kind of difference, by default


class NotVerifiable(TerminalError):
    """A task verify cannot compare (no keys, a kind that cannot be verified)."""


@dataclass
class TaskReport:
    """What verify found for one task."""

    task: str
    source: str  # the table read, or "query"
    target: str
    status: str = "equal"  # equal | different | not_verified | inactive | failed
    method: str = ""  # how it compared: "key buckets (…)" or "every row"
    source_rows: int = 0
    target_rows: int = 0
    buckets: int = 0  # key buckets compared by their sums
    buckets_differ: int = 0
    rows_read: int = 0  # rows read into Python, both sides
    missing: int = 0  # keys in the source, not in the target
    extra: int = 0  # keys in the target, not in the source
    differing: int = 0  # keys in both, with values that differ
    columns_differ: dict[str, int] = field(default_factory=dict)  # per column, of the differing rows
    samples: dict[str, list[Any]] = field(
        default_factory=lambda: {"missing": [], "extra": [], "differing": []}
    )
    seconds: float = 0.0
    error: str | None = None
    deletes: str = "ignore"  # the task's deletes: what a repair does with extra rows

    @property
    def differences(self) -> int:
        return self.missing + self.extra + self.differing


class Sink(Protocol):
    """Where a repair sends what it found: the source's rows to write, the target's keys to
    delete."""

    def upsert(self, row: Row) -> None: ...

    def delete(self, key: Row) -> None: ...


@dataclass
class _Plan:
    """What one task's comparison reads: the source's columns and the target's (same names,
    the target's types), the keys' positions, the target's live rows."""

    task: Task
    read: ReadSpec  # the task's (a SQL source's)
    columns: list[Column]
    target_columns: list[Column] | None  # None: the target table does not exist
    key_index: list[int]
    where: str  # the target's rows that count ("" for all)
    target_spec: ReadSpec
    convert: Callable[[Batch], Batch] | None  # read.timezone, on the source's rows


def verify_task(
    source: Endpoint,
    target: Endpoint,
    task: Task,
    batch_size: int,
    sample: int = SAMPLE,
    sink: Sink | None = None,
    cancel: CancelToken | None = None,
) -> TaskReport:
    """Compare one task's source and target; `sink` hears every difference (a repair).

    Raises:
        NotVerifiable: the task has no keys, or a kind cannot be verified.
        RunnerError: a database refused a statement (the connectors' errors).
    """
    report = TaskReport(task.name, task.read.describe(), task.write.describe(), deletes=task.deletes)
    started = time.perf_counter()
    try:
        plan = _plan(source, target, task)
        src, tgt = cast(Verifiable, source), cast(Verifiable, target)
        digests = _digests(source, target, plan)
        refused = None
        if digests is not None and plan.target_columns is not None:
            refused = _by_buckets(src, tgt, plan, digests, batch_size, report, sample, sink, cancel)
        if digests is None or refused is not None:
            report.method = "every row" + (f" (the sums failed: {refused})" if refused else "")
            keys = [plan.columns[i] for i in plan.key_index]
            rows = src.read_in_key_order(plan.read, plan.columns, keys, batch_size)
            theirs: Iterator[Batch] = iter(())
            if plan.target_columns is not None:
                target_keys = [plan.target_columns[i] for i in plan.key_index]
                theirs = tgt.read_in_key_order(
                    plan.target_spec, plan.target_columns, target_keys, batch_size, plan.where
                )
            _merge(plan, rows, theirs, report, sample, sink, cancel, count=True)
    finally:
        report.seconds = round(time.perf_counter() - started, 3)
    report.status = "different" if report.differences else "equal"
    return report


def _plan(source: Endpoint, target: Endpoint, task: Task) -> _Plan:
    read, write = task.read, task.write
    keys = write.keys
    if not keys:
        raise NotVerifiable(
            f"task {task.name} has no write.keys: verify compares rows by key (a task without keys "
            "replaces its target's rows on every run; compare it with a run, or give it keys)"
        )
    if task.transforms:
        raise NotVerifiable(
            f"task {task.name} has transforms: its target holds the transformed rows, not the source's "
            "(compare it with a run, e.g. `runner run --dry-run`)"
        )
    for end in (source, target):
        if "verify" not in end.capabilities.names():
            raise NotVerifiable(f"connection {end.name!r} is of type {end.kind!r}, which verify cannot read")
    if not isinstance(read, ReadSpec) or not isinstance(write, WriteSpec):
        raise NotVerifiable(
            f"task {task.name} reads {read.describe()} and writes {write.describe()}: verify compares "
            "a table or query with a table"
        )
    src, tgt = cast(Verifiable, source), cast(Verifiable, target)
    columns = src.column_types(read)
    names = [c.name for c in columns]
    absent = [k for k in keys if k not in names]
    if absent:
        raise TerminalError(f"write.keys: {', '.join(map(repr, absent))} not among the source's columns")
    convert = None
    if read.timezone is not None:  # the source's rows as the task reads them
        zoned = ZonedSource(cast(Any, source), read.timezone)
        zoned.learn(columns)
        convert = zoned.converter(columns)

    target_spec = ReadSpec(table=write.table, unmapped_types=read.unmapped_types)
    target_columns = None
    where = ""
    if tgt.table_exists(write.table):
        found = {c.name: c for c in tgt.column_types(target_spec)}
        lacking = [n for n in names if n not in found]
        if lacking:
            raise TerminalError(
                f"the target table {write.table} has no column {', '.join(map(repr, lacking))}"
            )
        target_columns = [found[n] for n in names]
        if write.history is not None:  # the current versions
            where = f"{tgt.quote(write.history.valid_to)} IS NULL"
        elif task.deletes == "soft" and write.soft_delete_column in found:
            where = f"{tgt.quote(write.soft_delete_column)} IS NULL"
    key_index = [names.index(k) for k in keys]
    return _Plan(task, read, columns, target_columns, key_index, where, target_spec, convert)


def _digests(source: Endpoint, target: Endpoint, plan: _Plan) -> tuple[RowDigest, RowDigest] | None:
    """The row hash both databases compute alike for equal values, and so can sum up per key
    bucket: between two databases of one kind with the same column types, the kind's own
    row hash or the md5 of the row's text; otherwise the md5 of the row's canonical text.
    None when there is none (then every row is read)."""
    if plan.target_columns is None or len(plan.key_index) != 1:
        return None
    key = plan.key_index[0]
    if plan.columns[key].type.kind not in INTEGERS or plan.target_columns[key].type.kind not in INTEGERS:
        return None
    if plan.convert is not None or any(c.unmapped for c in plan.columns + plan.target_columns):
        return None  # the values compared are not the ones stored in the source
    src, tgt = cast(Verifiable, source), cast(Verifiable, target)
    names = [src.quote(c.name) for c in plan.columns]
    target_names = [tgt.quote(c.name) for c in plan.target_columns]
    alike = source.kind == target.kind and [c.type for c in plan.columns] == [
        c.type for c in plan.target_columns
    ]
    for hash in ("native", "md5") if alike else ():  # one kind, one type: one stored value, one text
        ours, theirs = src.row_digest(names, plan.columns, hash), tgt.row_digest(names, plan.columns, hash)
        if ours is not None and ours == theirs:
            return ours, theirs
    # a `real` on either side is spelt as the single-precision value on both, as compared
    real = ColumnType("real")
    pairs = list(zip(plan.columns, plan.target_columns, strict=True))
    columns = [replace(a, type=real) if real in (a.type, b.type) else a for a, b in pairs]
    target_columns = [replace(b, type=real) if real in (a.type, b.type) else b for a, b in pairs]
    ours = src.row_digest(names, columns, "canonical")
    theirs = tgt.row_digest(target_names, target_columns, "canonical")
    return (ours, theirs) if ours is not None and theirs is not None else None


def bucket_range(bucket: int, width: int) -> tuple[int, int]:
    """The inclusive key range of a bucket (`SqlConnector.bucket_sql`: a division truncating
    toward zero, so bucket 0 holds the keys from -(width-1) to width-1)."""
    if bucket > 0:
        return bucket * width, bucket * width + width - 1
    if bucket < 0:
        return bucket * width - width + 1, bucket * width
    return -(width - 1), width - 1


def key_ranges(buckets: Sequence[int], width: int) -> list[tuple[int, int]]:
    """The sorted buckets' key ranges, adjacent ones joined."""
    ranges: list[tuple[int, int]] = []
    for bucket in buckets:
        low, high = bucket_range(bucket, width)
        if ranges and ranges[-1][1] + 1 >= low:
            ranges[-1] = (ranges[-1][0], max(ranges[-1][1], high))
        else:
            ranges.append((low, high))
    return ranges


def _by_buckets(
    src: Verifiable,
    tgt: Verifiable,
    plan: _Plan,
    digests: tuple[RowDigest, RowDigest],
    batch_size: int,
    report: TaskReport,
    sample: int,
    sink: Sink | None,
    cancel: CancelToken | None,
) -> str | None:
    """Compare by key bucket sums, then the differing buckets' rows; the error when a
    database could not compute its sums (then every row is compared instead)."""
    key = plan.task.write.keys[0]
    assert plan.target_columns is not None
    report.method = f"key buckets ({digests[0].hash} row hash), differing buckets row by row"
    with ThreadPoolExecutor(2, thread_name_prefix="verify") as pool:
        ours = pool.submit(src.key_range, plan.read, key)
        theirs = pool.submit(tgt.key_range, plan.target_spec, key, plan.where)
        (s_low, s_high), (t_low, t_high) = ours.result(), theirs.result()
        lows = [v for v in (s_low, t_low) if v is not None]
        highs = [v for v in (s_high, t_high) if v is not None]
        if not lows:
            return None  # both empty
        low, high = min(lows), max(highs)
        # from the key range alone (no count, which would scan the table): sparse keys make
        # buckets that hold fewer rows, up to MAX_BUCKETS of them
        width = max(KEYS_PER_BUCKET, -(-(high - low + 1) // MAX_BUCKETS))
        ours = pool.submit(src.row_buckets, plan.read, key, width, digests[0])
        theirs = pool.submit(tgt.row_buckets, plan.target_spec, key, width, digests[1], plan.where)
        try:
            s_sums, t_sums = ours.result(), theirs.result()
        except RunnerError as exc:  # a value the hash cannot take (a double past a real's range)
            return str(exc)
    report.source_rows = sum(n for n, _ in s_sums.values())
    report.target_rows = sum(n for n, _ in t_sums.values())
    every = s_sums.keys() | t_sums.keys()
    differ = sorted(b for b in every if s_sums.get(b) != t_sums.get(b))
    report.buckets, report.buckets_differ = len(every), len(differ)
    ranges = key_ranges(differ, width)
    keys = [plan.columns[i] for i in plan.key_index]
    target_keys = [plan.target_columns[i] for i in plan.key_index]
    for i in range(0, len(ranges), RANGES_PER_READ):
        part = ranges[i : i + RANGES_PER_READ]
        rows = src.read_in_key_order(plan.read, plan.columns, keys, batch_size, ranges=part)
        theirs_rows = tgt.read_in_key_order(
            plan.target_spec, plan.target_columns, target_keys, batch_size, plan.where, part
        )
        _merge(plan, rows, theirs_rows, report, sample, sink, cancel, count=False)
    return None


def _rows(batches: Iterator[Batch], convert: Callable[[Batch], Batch] | None) -> Iterator[Row]:
    try:
        for batch in batches:
            yield from convert(batch) if convert else batch
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()


def _merge(
    plan: _Plan,
    ours: Iterator[Batch],
    theirs: Iterator[Batch],
    report: TaskReport,
    sample: int,
    sink: Sink | None,
    cancel: CancelToken | None,
    count: bool,
) -> None:
    """Merge-join the source's and the target's rows, both in key order, comparing their
    canonical values (`comparable`); `count`: these are every row (no bucket sums counted them)."""
    kinds = [c.type.kind for c in plan.columns]
    target_kinds = [c.type.kind for c in plan.target_columns] if plan.target_columns else kinds
    # a `real` on either side is compared as the single-precision value it holds on both
    kinds = ["real" if "real" in (a, b) else a for a, b in zip(kinds, target_kinds, strict=True)]
    target_kinds = ["real" if k == "real" else t for k, t in zip(kinds, target_kinds, strict=True)]
    key_index = plan.key_index
    names = [c.name for c in plan.columns]
    source_rows, target_rows = _rows(ours, plan.convert), _rows(theirs, None)

    def norm(row: Row | None, row_kinds: list[str]) -> tuple | None:
        return None if row is None else tuple(comparable(v, k) for v, k in zip(row, row_kinds, strict=True))

    def key_of(values: tuple) -> tuple:
        return tuple(values[i] for i in key_index)

    def shown(values: tuple) -> Any:
        key = [_plain(values[i]) for i in key_index]
        return key[0] if len(key) == 1 else key

    def advance(it: Iterator[Row], row_kinds: list[str], last: tuple | None, side: str) -> tuple:
        row = next(it, None)
        values = norm(row, row_kinds)
        if values is not None:
            report.rows_read += 1
            if count:
                setattr(report, f"{side}_rows", getattr(report, f"{side}_rows") + 1)
            if last is not None and _order(key_of(values), last) <= 0:
                raise TerminalError(
                    f"the {side} gives its rows out of key order (or repeats key {shown(values)!r}): "
                    f"key {shown(values)!r} after {last!r}"
                )
            if cancel is not None and report.rows_read % 10_000 == 0:
                cancel.check()
        return row, values

    def note(kind: str, values: tuple) -> None:
        setattr(report, kind, getattr(report, kind) + 1)
        if len(report.samples[kind]) < sample:
            report.samples[kind].append(shown(values))

    s_row, s = advance(source_rows, kinds, None, "source")
    t_row, t = advance(target_rows, target_kinds, None, "target")
    while s is not None or t is not None:
        order = 0 if s is None or t is None else _order(key_of(s), key_of(t))
        if t is None or (s is not None and order < 0):
            note("missing", s)
            if sink is not None:
                sink.upsert(s_row)
            s_row, s = advance(source_rows, kinds, key_of(s), "source")
        elif s is None or order > 0:
            note("extra", t)
            if sink is not None:
                sink.delete(tuple(t_row[i] for i in key_index))
            t_row, t = advance(target_rows, target_kinds, key_of(t), "target")
        else:
            if s != t:
                note("differing", s)
                for name, a, b in zip(names, s, t, strict=True):
                    if a != b:
                        report.columns_differ[name] = report.columns_differ.get(name, 0) + 1
                if sink is not None:
                    sink.upsert(s_row)
            last_s, last_t = key_of(s), key_of(t)
            s_row, s = advance(source_rows, kinds, last_s, "source")
            t_row, t = advance(target_rows, target_kinds, last_t, "target")


def _order(a: tuple, b: tuple) -> int:
    """-1, 0 or 1 as key `a` sorts before, with or after `b`."""
    try:
        return -1 if a < b else (1 if a > b else 0)
    except TypeError:
        if None in a or None in b:
            raise TerminalError(f"a row has a NULL key ({a!r}, {b!r}): write.keys are never NULL") from None
        raise TerminalError(
            f"keys {a!r} and {b!r} cannot be ordered: the two sides' key types differ"
        ) from None


def _plain(value: Any) -> Any:
    """A key value as JSON and text show it."""
    return value if isinstance(value, int | str | float | bool) or value is None else str(value)


# --- repair: a run that writes what verify found ------------------------------------------


class WriterSink:
    """A repair's writes, through the task's writer in its one transaction: the source's rows
    staged and merged a chunk at a time, the extra keys staged and deleted (or soft-deleted)
    at the end when the task propagates deletes."""

    def __init__(self, run: TaskRun, writer: Writer, chunk: int):
        self.run, self.w, self.chunk = run, writer, chunk
        self.deleting = run.task.deletes != "ignore"
        self.rows: list[Row] = []
        self.keys: list[Row] = []
        if self.deleting:
            writer.open_key_stage()

    def upsert(self, row: Row) -> None:
        self.rows.append(row)
        if len(self.rows) >= self.chunk:
            self._write()

    def delete(self, key: Row) -> None:
        if self.deleting:
            self.keys.append(key)
            if len(self.keys) >= self.chunk:
                self._stage_keys()

    def _write(self) -> None:
        if self.rows:
            self.w.stage(self.rows)
            self.run.result.add(self.w.merge())
            self.w.clear_stage()
            self.rows = []

    def _stage_keys(self) -> None:
        if self.keys:
            self.w.stage_keys(self.keys)
            self.keys = []

    def finish(self) -> None:
        self._write()
        if self.deleting:
            self._stage_keys()
            self.run.result.deleted += self.w.delete_listed()


def repair(run: TaskRun) -> None:
    """A repair run's task (`RunOptions.repair`): compare as `verify_task` does and write the
    differences through the task's writer, committed once at the end."""
    task, result = run.task, run.result
    source = unzoned(run.source)
    columns = columns_of(run)  # as the task's reads give them (a zone's timestamps with a zone)
    run.use_columns(columns)
    with run.writer(columns) as w:
        sink = WriterSink(run, w, run.batch_size)
        report = verify_task(source, run.target, task, run.batch_size, 0, sink, run.cancel)
        sink.finish()
        result.rows_read = report.rows_read
        result.unchanged = max(0, report.source_rows - report.missing - report.differing)
        kept = f"; {report.extra} extra row(s) kept (deletes: ignore)" if task.deletes == "ignore" else ""
        result.note = (
            f"repair: {report.missing} missing, {report.differing} differing, {report.extra} extra "
            f"({report.method}){kept}"
        )
        run.log(
            "info",
            "repair compared",
            task=task.name,
            missing=report.missing,
            differing=report.differing,
            extra=report.extra,
            method=report.method,
        )
        run.finish(w)
