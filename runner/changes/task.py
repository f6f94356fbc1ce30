"""A task's run: its options, its result, and what every strategy shares (the writer, the
counts, the pointer's and digests' state, progress notes and cancellation; what every task
needs of its kinds is in `runner.changes.needs`). The strategies are one module each: `full`,
`watermark` (with `deletes`) and `hash`; they drive the `Source`, `Target` and `Writer`
protocols, and what lies beyond them only where the kind declares it (`Capabilities`)."""

from __future__ import annotations

import datetime as dt
import difflib
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from runner.changes.zones import ZonedSource
from runner.connectors.base import (
    Copy,
    History,
    MergeCounts,
    MergeWriter,
    QuerySource,
    ReadStream,
    RowTarget,
    RowWriter,
    Source,
    TableDDL,
    TableEvolution,
    Target,
    WriteContext,
    Writer,
)
from runner.definitions.load import format_path
from runner.definitions.schema_changes import TableChanges
from runner.definitions.tasks import ReadSpec, Task, WriteSpec
from runner.errors import Location, TerminalError
from runner.state.store import StateStore
from runner.state.tasks import SET_BY_HAND, TaskState
from runner.streams.cancel import CancelToken
from runner.streams.checkpoints import checkpoint
from runner.streams.types import Batch, Column
from runner.transfer.registry import fast_path

if TYPE_CHECKING:  # imported by a task that has them: change logs (pyarrow's formats, FTP), transforms
    from runner.connectors.changelog_files import ChangeLogTarget
    from runner.transforms.pipeline import Pipeline

NOTE_SECONDS = 10.0  # how often a long phase logs its progress (`TaskRun.note`)
Log = Callable[..., None]
Progress = Callable[[str, int], None]  # (task, rows read so far), after every batch
WRITTEN = ("inserted", "updated", "upserted", "deleted")  # a task's counts of rows written
COMMITTED = "batch committed"  # the run log's line with a task's counts after each commit
WINDOW_DONE = "window done"  # the run log's line of a backfill's window read and committed
TRACEBACK = "task traceback"  # the run log's line with where a task failed (for `--debug`)
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
    recreate: bool = False  # drop every task's table first, then load it whole (`before_run: recreate`, once)
    repair: bool = (
        False  # `runner verify --repair`: write only what verify finds differing (`changes.verify`)
    )
    # the daemon's run of a continuous job (`spec.continuous`): each consuming task goes on past a
    # drained queue until the run is cancelled, committing a batch at most this many seconds after
    # it began
    continuous: float | None = None

    def __post_init__(self) -> None:
        if self.limit is not None:
            self.dry_run = True


@dataclass
class TaskResult:
    name: str
    source: str  # table name, or "query"
    target: str
    strategy: str = "full"
    status: str = "skipped"  # succeeded | failed | skipped | inactive | dropped_in_source
    rows_read: int = 0
    inserted: int = 0
    updated: int = 0
    upserted: int = 0  # written unmerged (a script's insert or update, a message): the writer cannot tell
    deleted: int = 0
    unchanged: int = 0
    filtered: int = 0  # rows read that a filter of `transforms` dropped: never written
    pointer_before: dict[str, str] | None = None
    pointer_after: dict[str, str] | None = None
    read_seconds: float = 0.0
    write_seconds: float = 0.0
    seconds: float = 0.0
    columns: list[dict[str, str]] = field(default_factory=list)
    error: str | None = None
    failure: str | None = None  # when failed: "transient" (a retry may pass) or "terminal"
    schema_changes: list[dict[str, Any]] = field(default_factory=list)  # made (or, dry, would be)
    truncated: dict[str, int] = field(default_factory=dict)  # strings cut to fit, per column
    before_run: str | None = None  # what was done to the target table first: truncate | recreate
    valid_from: str | None = None  # history mode: the run's timestamp, of the versions it opened or closed
    note: str | None = None  # why a task did not run (inactive) or what was found (dropped_in_source)
    windows: list[dict[str, Any]] = field(default_factory=list)  # a backfill's: from, to, rows
    ranges: list[dict[str, Any]] = field(default_factory=list)  # a split copy's (`changes.split`)

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
    source: Source
    target: Target
    batch_size: int
    store: StateStore
    options: RunOptions
    run_id: str
    log: Log
    progress: Progress | None = None
    cancel: CancelToken | None = None
    locate: Locate | None = None
    index: int = 0  # the task's position in the job's `tasks`, for `where`
    stated: Task | None = None  # the task as defined, before the job's defaults (`where`)
    started: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC).replace(tzinfo=None))
    table_changes: TableChanges = field(default_factory=TableChanges)  # `SyncJobSpec.table_changes`
    change_log: ChangeLogTarget | None = None  # a job with a target's change logs (`change_log`)
    # the same task on connections of its own (`runner.jobs.sync`): a split copy's ranges run in threads
    fork: Callable[[], AbstractContextManager[TaskRun]] | None = None
    result: TaskResult = field(init=False)
    # the written counts when the target last committed (`committed`): what a task that then
    # fails or stops reports (`drop_uncommitted`)
    committed_counts: dict[str, int] = field(init=False, default_factory=dict)
    streams: list[Iterator[Batch]] = field(init=False, default_factory=list)
    evolution: TableEvolution | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        t = self.task
        self.result = TaskResult(t.name, t.read.describe(), t.write.describe(), t.changes.strategy)
        self.noted = time.monotonic()
        if t.read.zone is not None:  # timestamps without a zone: read in it, given as UTC
            self.source = cast(Source, ZonedSource(self.source, t.read.zone))
        if t.transforms and t.changes.strategy == "hash":  # new steps: every row written again
            from runner.transforms.digests import StepsInDigests

            self.source = cast(Source, StepsInDigests(self.source, list(t.transforms)))
        computed = t.computed_in_read()
        if computed:  # the source computes them: every read of the task selects them
            self.task = t.model_copy(update={"read": _with_computed(self.source, t.read, computed)})

    @property
    def table(self) -> str:
        """The task's table, where only a table's write comes (a merge, a copy, a lifecycle)."""
        table = table_of(self.task)
        assert table is not None, "a write without a table has no merge (`WriteModel.merged`)"
        return table

    def note(self, doing: str, rows: int) -> None:
        """Log a long phase's rows so far, at most every `NOTE_SECONDS`: a run of many minutes
        says what it is doing and how far it got."""
        now = time.monotonic()
        if now - self.noted >= NOTE_SECONDS:
            self.noted = now
            self.log("info", f"{doing}: {rows:,} rows so far", task=self.task.name, rows=rows)

    def where(self, *path: str | int) -> str:
        """Where a field of this task is defined: `jobs.d/x.yaml:9:7: spec.tasks[0].changes.column`."""
        full: tuple[str | int, ...] = ("spec", "tasks", self.index, *path)
        if (
            self.stated is not None
            and _value_at(self.stated, path) is None
            and _value_at(self.task, path) is not None
        ):
            full = ("spec", *path)  # a job-wide value (`SyncJobSpec.resolved`): where the job states it
        if self.locate is None:
            return format_path(full)
        return str(self.locate(full))

    def use_columns(self, columns: list[Column]) -> None:
        """Record the source's columns, and check every column the task names among them before
        anything is written: a missing one found later would fail a run that had already
        created (and filled) the target."""
        self.result.columns = [{"name": c.name, "type": str(c.type)} for c in columns]
        check_columns(self, [c.name for c in columns])
        self.pipeline(columns)  # a step naming a column the source lacks fails here, located

    def pipeline(self, columns: list[Column]) -> Pipeline | None:
        """The task's transforms bound to the source's `columns`; None without any."""
        if not self.task.transforms:
            return None
        from runner.transforms.pipeline import Pipeline

        base_dir = getattr(self.source, "base_dir", None) or Path(".")
        return Pipeline(list(self.task.transforms), columns, self.where, base_dir)

    def track(self, batches: Iterator[Batch], cancellable: bool = True) -> Iterator[Batch]:
        """Remember a reader's stream so `close_streams` ends it (and frees its connection) as
        soon as the task ends, even when a failure leaves it half read. A `cancellable` stream
        stops the run, if asked to, before each batch (`runner.streams.cancel`)."""
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

    def writer(self, columns: list[Column], copy: bool = False) -> Writer:
        """The task's writer: the target's merge, or, for a write it does not merge (scripts,
        messages: `WriteModel.merged`), a writer handed each row (`RowTarget`); `copy` lets a
        merge copy inside the databases (`MergeWriter.copy_from`). With transforms, the rows
        go through them first and the target gets their columns; nothing is copied inside the
        databases, where the rows would pass them by."""
        pipeline = self.pipeline(columns)
        if pipeline is None:
            return self._writer(columns, copy)
        inner = self._writer(pipeline.columns, False)
        task = self.task
        # a changed row read again that stops passing a filter deletes its row (`FILTER_DELETES`);
        # a full read finds it missing instead
        deletes = task.deletes != "ignore" and task.changes.strategy in ("watermark", "messages", "cdc")
        names = [c.name for c in columns]
        at = [names.index(k) for k in task.write.keys] if deletes else None
        from runner.transforms.pipeline import TransformingWriter

        return cast(Writer, TransformingWriter(inner, pipeline, self.result, at))

    def _writer(self, columns: list[Column], copy: bool) -> Writer:
        """The target's writer; with the job's change logs, one that also logs each change
        (`runner.connectors.changelog_kept`), and copies nothing past them."""
        if self.change_log is None:
            return self._target_writer(columns, copy)
        from runner.connectors.changelog_kept import LoggedWriter

        inner = self._target_writer(columns, False)
        job = f"{self.namespace}/{self.job}"
        dry = self.options.dry_run
        context = WriteContext(job, self.task.name, self.run_id, self.started, self.cancel, dry, self.log)
        log = self.change_log.open_row_writer(self.task.write, columns, context)
        task_id = self.store.tasks.state(self.namespace, self.job, self.task.name).id
        return cast(Writer, LoggedWriter(inner, log, self.store.tasks, task_id))

    def _target_writer(self, columns: list[Column], copy: bool) -> Writer:
        if not self.task.write.merged():
            job = f"{self.namespace}/{self.job}"
            dry = self.options.dry_run
            context = WriteContext(job, self.task.name, self.run_id, self.started, self.cancel, dry, self.log)
            unmerged = cast(RowTarget, self.target).open_row_writer(self.task.write, columns, context)
            # a copy bypassing Python would pass by the conversion of a `read.timezone`
            path = fast_path(self.source, self.target) if copy and self.task.read.zone is None else None
            if path is not None and isinstance(unmerged, RowWriter):
                unmerged.copy = Copy(self.source, path)  # `write_arrow` may take the read whole
            return unmerged
        write = cast(WriteSpec, self.task.write)  # a merged write is a table's
        soft = write.soft_delete_column if self.task.deletes == "soft" else None
        # a copy inside the databases would pass by the conversion of a `read.timezone`
        path = fast_path(self.source, self.target) if copy and self.task.read.zone is None else None
        fast = Copy(self.source, path) if path is not None else None
        history = None
        if write.history is not None:  # one timestamp for the run's versions: its start
            history = History(*write.history.names(), at=self.started)
            self.result.valid_from = self.started.isoformat(sep=" ")
        if not self.target.capabilities.alter_tables:
            return self.target.open_writer(write.table, columns, write.keys, soft, fast, history)
        first = self.evolution is None
        if self.evolution is None:
            self.evolution = self._evolution()
        w = self.target.open_writer(write.table, columns, write.keys, soft, fast, history, self.evolution)
        if first and not self.options.dry_run:  # the target follows these columns now
            state = self.store.tasks.state(self.namespace, self.job, self.task.name)
            known = TableEvolution.known_columns(columns, self.evolution.not_null)
            self.store.tasks.set_source_columns(state.id, known)
        return w

    def _evolution(self) -> TableEvolution:
        """What the writers may change in the target table, with the source's columns at the
        last run to tell what changed; what they did goes into the task's result."""
        state = self.store.tasks.state(self.namespace, self.job, self.task.name)
        name = self.task.name

        def note(level: str, message: str, **fields: Any) -> None:
            self.log(level, message, task=name, **fields)

        return TableEvolution(
            self.table_changes,
            self.store.tasks.source_columns(state.id),
            self.options.dry_run,
            self.source.not_null_columns(self.task.read),
            note,
            self.result.schema_changes,
            self.result.truncated,
        )

    def copied(self, w: Writer, into: str, stream: ReadStream) -> bool:
        """Try the in-database copy (`MergeWriter.copy_from`) of a whole read; when it ran, count
        its rows and drop the batch stream that was opened for it."""
        if self.options.limit is not None:
            return False
        if not w.merges:
            return self._copied_arrow(w, stream)
        checkpoint("read")  # the read is open, nothing written
        started = time.perf_counter()
        rows = cast(MergeWriter, w).copy_from(
            self.task.read, into, progress=lambda rows: self.note("copying", rows)
        )
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

    def _copied_arrow(self, w: Writer, stream: ReadStream) -> bool:
        """A whole read handed to an unmerged writer as Arrow batches (PostgreSQL into Parquet
        files: `FastPath.arrow`), counted as the rows it wrote; False when the pair, the
        columns or the writer cannot (the batch stream then runs as usual)."""
        copy = w.copy if isinstance(w, RowWriter) else None
        if copy is None or any(c.unmapped for c in stream.columns):
            return False  # a column read through `read.unmapped_types` is converted while read
        batches = copy.path.arrow(copy.source, self.task.read, stream.columns)
        if batches is None:
            return False
        checkpoint("read")
        started = time.perf_counter()
        rows = w.write_arrow(batches)
        if rows is None:
            return False
        self.result.read_seconds += time.perf_counter() - started
        self.result.rows_read += rows
        w.pending += rows
        close = getattr(stream.batches, "close", None)
        if close:
            close()
        self.log("info", "copied as Arrow batches, no row through Python", task=self.task.name, rows=rows)
        if self.cancel:
            self.cancel.check()
        return True

    def committed(self, pause: bool = True) -> None:
        """After the target committed a batch: log the task's counts so far (at debug level,
        flushed at once), so the history of a run killed later can say what it committed;
        then (with `pause`) the crash tests' checkpoint."""
        r = self.result
        self.committed_counts = {name: getattr(r, name) for name in WRITTEN}
        self.log(
            "debug",
            COMMITTED,
            task=self.task.name,
            rows_read=r.rows_read,
            inserted=r.inserted,
            updated=r.updated,
            upserted=r.upserted,
            deleted=r.deleted,
            filtered=r.filtered,
        )
        if pause:
            checkpoint("committed")

    def drop_uncommitted(self) -> None:
        """For a task that failed or stopped: count only what its target committed. Rows given
        to a writer whose transaction was then rolled back, or messages the broker never
        confirmed, were not written (a dry run's counts are what it would write: kept)."""
        if not self.options.dry_run:
            for name in WRITTEN:
                setattr(self.result, name, self.committed_counts.get(name, 0))

    def state(self) -> TaskState:
        state = self.store.tasks.state(self.namespace, self.job, self.task.name)
        gone = None if self.options.resync else self._table_gone(state)
        if gone is not None:
            self.log(
                "warning",
                f"the target table {gone} is not there (dropped, or write.table names a new one): "
                "the task's pointer and digests would leave it without the rows read before; "
                "every row is read (as with --resync)",
                task=self.task.name,
            )
            self.options = replace(self.options, resync=True)  # this task's, as `--resync` would
        if self.options.resync and self.options.dry_run:
            self.log("info", "resync (dry run): pointer ignored, not forgotten", task=self.task.name)
            return replace(state, pointer=None, watermark_column=None)
        if self.options.resync:
            self.store.tasks.forget(state.id)
            self.log("info", "resync: pointer and digests forgotten", task=self.task.name)
            state = self.store.tasks.state(self.namespace, self.job, self.task.name)
        return state

    def _table_gone(self, state: TaskState) -> str | None:
        """The table of a task that remembers what it read before (a pointer, a log position,
        digests) when it is not in the target: created anew, it would get only what changed
        since. None when it is there, or the task remembers nothing, or its pointer was set by
        hand since its last run (`runner pointer set`: where a new table is to start)."""
        table = table_of(self.task)
        if table is None or not self.task.write.merged():
            return None
        if (state.run_id or "").startswith(SET_BY_HAND):
            return None
        digests = self.task.changes.strategy == "hash"  # the only one that stores any
        if state.pointer is None and not (digests and self.store.tasks.has_digests(state.id)):
            return None
        return None if self.target.table_exists(table) else table

    def finish(self, writer: Writer) -> None:
        if self.options.dry_run:
            self.log("info", "dry run: rolled back", task=self.task.name)
        else:
            writer.commit()
            self.committed()


def table_of(task: Task) -> str | None:
    """The table a task writes; None for a target without tables (a broker's messages). A
    merged write is always a table's (`WriteSpec.merged`); an unmerged one may be too (scripts)."""
    return task.write.table if isinstance(task.write, WriteSpec) else None


def _with_computed(source: Source, read: Any, computed: dict[str, str]) -> ReadSpec:
    """A SQL read as a query that also selects the columns computed in it (`compute`'s `sql`):
    the user's SQL expressions, each named by its quoted column; the table or query within."""
    sql = cast(Any, source)  # a kind with `query` (`runner.changes.needs.every_task`): a SQL connector
    inner = sql.quote_table(read.table) if read.table is not None else f"({read.query.strip().rstrip(';')})"
    extra = ", ".join(f"({expr}) AS {sql.quote(name)}" for name, expr in computed.items())
    return ReadSpec(
        query=f"SELECT t.*, {extra} FROM {inner} t",
        unmapped_types=read.unmapped_types,
        timezone=read.timezone,
        deleted_keys_query=read.deleted_keys_query,
    )


def _value_at(task: Task, path: tuple[str | int, ...]) -> object:
    """A field's value below a task (`('changes', 'window')`), None when unset."""
    value: object = task
    for part in path:
        value = getattr(value, str(part), None)
    return value


def check_columns(run: TaskRun, names: list[str]) -> None:
    """Raise a TerminalError naming, with where they are defined, the task's fields that name
    a column the source does not have (keys, watermark), or one it must not have (one runner
    adds to the target: the soft-delete column, history mode's)."""
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
    for path, name, why in task.write.added_columns(task):
        if name in names:
            problems.append(
                f"{run.where(*path)}: column {name!r} is one of the source's columns: runner {why}; "
                "name another one"
            )
    if problems:
        raise TerminalError("; ".join(problems))


def counted_without_target(run: TaskRun, stream: ReadStream) -> bool:
    """A dry run into a table that does not exist yet: every row read would be inserted. The
    table is not created (MariaDB would commit a CREATE TABLE at once), but every value is
    encoded as the target would be given it, so one it cannot hold fails the run naming its
    row and column, as a real run would."""
    table = table_of(run.task)
    if not run.options.dry_run or table is None or run.target.table_exists(table):
        return False
    pipeline = run.pipeline(stream.columns)
    columns = pipeline.columns if pipeline is not None else stream.columns
    names = [c.name for c in columns]
    key_at = [names.index(k) for k in run.task.write.keys]
    encode = run.target.batch_encoder(columns, key_at)
    _would_create(run, columns)
    run.log(
        "info",
        "dry run: the target table does not exist; every row read would be inserted",
        task=run.task.name,
    )
    listed = _listed_keys(run, columns)
    for batch in run.timed(stream.batches):
        rows = pipeline.apply(batch) if pipeline is not None else batch
        run.result.filtered += len(batch) - len(rows)
        encode(rows)
        run.result.inserted = (
            run.result.rows_read - run.result.filtered
        )  # so far: a dry run stopped early says how far
        if listed:
            run.result.deleted += sum(tuple(row[i] for i in key_at) in listed for row in rows)
    return True


def _listed_keys(run: TaskRun, columns: list[Column]) -> set[tuple] | None:
    """The keys a watermark task's deleted_keys_query lists, read as its first run reads them
    (a query that fails fails the dry run too): that run deletes those of the rows it has just
    inserted. None for a task that lists none."""
    read, task = run.task.read, run.task
    query = read.deleted_keys_query if isinstance(read, ReadSpec) else None
    if query is None or task.deletes == "ignore" or task.changes.strategy != "watermark":
        return None
    types = [next(c.type for c in columns if c.name == k) for k in task.write.keys]
    listed: set[tuple] = set()
    for batch in run.track(cast(QuerySource, run.source).read_query(query, types, run.batch_size)):
        listed.update(tuple(key) for key in batch)
    return listed


def _would_create(run: TaskRun, columns: list[Column]) -> None:
    """List the table a dry run would create among its schema changes (`"change": "create"`,
    with the statements where the target can show them: `TableDDL`)."""
    write = run.task.write
    ddl: list[str] = []
    if run.target.capabilities.alter_tables:
        history = History(*write.history.names(), at=run.started) if write.history is not None else None
        soft = write.soft_delete_column if run.task.deletes == "soft" else None
        keys = write.keys if write.keys else None
        ddl = cast(TableDDL, run.target).create_table_ddl(write.table, columns, keys, soft, history)
    run.result.schema_changes.append(
        {
            "column": None,
            "change": "create",
            "before": None,
            "after": write.table,
            "ddl": "; ".join(ddl),
            "applied": False,
        }
    )


def columns_of(run: TaskRun) -> list[Column]:
    """The source's columns, from a read of one row (a SQLite expression's type comes from
    its value)."""
    probe = run.source.read(run.task.read, 1, limit=1)
    for _ in probe.batches:
        pass
    return probe.columns
