"""Change-log files: a reader job's runs' changes, kept as Parquet files that writer jobs apply
in order (DataZen's Change Log / Sync files), and that people open with pandas, DuckDB or Spark.

A file holds one commit of one task of one run: an `_op` column (`upsert`: the whole row;
`delete`: only the key columns set), a `_position` column (the change's number in the task's
change log, from 1, in the order writers apply them), then the source's columns; the file's
metadata keeps runner's column types and the task's keys, so a writer reads back exactly what
the reader read. A file is written under a hidden `.partial` name, renamed once complete (on
this machine: synced first) and only then indexed in the state store
(`runner.state.changelogs`): whatever the index lists is complete, and a run killed before that
leaves a file no writer ever sees (the reader's pointer has not moved either: its next run
writes those changes again). The folder is on this machine or on an FTP or SFTP server
(`runner.connectors.changelog_folder`).

The reader's end is `ChangeLogTarget` (a writer handed changed rows and deleted keys, like a
files target); the writer's end is `ChangeLogSource`, which consumes a reader task's change
logs from the writer task's own position, acknowledged (the position stored) only after the
writer's target committed (the `messages` strategy drives it).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import io
import json
import posixpath
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar

from runner.connectors.base import Capabilities, Connector, RowWriter, WriteContext
from runner.connectors.changelog_folder import ChangeLogFolder, open_change_log_folder
from runner.connectors.files.formats import arrow_type
from runner.connectors.files.location import failure
from runner.definitions.changelogs import ChangeLogRead, reader_task
from runner.definitions.models import ConnectionSpec
from runner.definitions.tasks import ReadModel, WriteModel
from runner.errors import RunnerError, TerminalError
from runner.state.database import utcnow
from runner.streams.checkpoints import checkpoint
from runner.streams.types import Batch, Column, ColumnType

if TYPE_CHECKING:
    import sqlalchemy as sa

    from runner.state.store import StateStore

OP = "_op"
POSITION = "_position"
POINTER = "changelog"  # a writer task's pointer type: the last change applied
MERGE_ROWS = 200_000  # a run's later commit rewrites its task's file while it holds fewer changes
COLUMNS_KEY = b"runner.columns"
KEYS_KEY = b"runner.keys"


# --- the file format ---------------------------------------------------------------------


def _to_arrow(t: ColumnType) -> Any:
    """A canonical value as the Arrow type `arrow_type` gives its column."""
    if t.kind in ("json", "jsonb"):
        return lambda v: None if v is None else json.dumps(v, ensure_ascii=False, separators=(",", ":"))
    if t.kind == "uuid" or (t.kind == "decimal" and not (t.precision and t.precision <= 38)):
        return lambda v: None if v is None else str(v)
    if t.kind == "timestamptz":
        return lambda v: v if v is None or v.tzinfo else v.replace(tzinfo=dt.UTC)
    return lambda v: v


def _from_arrow(t: ColumnType) -> Any:
    """A value read back from Parquet as the canonical value it was written from."""
    if t.kind in ("json", "jsonb"):
        return lambda v: None if v is None else json.loads(v)
    if t.kind == "uuid":
        return lambda v: None if v is None else uuid.UUID(v)
    if t.kind == "decimal" and not (t.precision and t.precision <= 38):
        return lambda v: None if v is None else Decimal(v)
    if t.kind == "timestamptz":  # canonical datetimes are naive UTC
        return lambda v: None if v is None else v.astimezone(dt.UTC).replace(tzinfo=None)
    return None


def _encode_columns(columns: list[Column]) -> bytes:
    return json.dumps(
        [
            {"name": c.name, "kind": c.type.kind, "length": c.type.length}
            | {"precision": c.type.precision, "scale": c.type.scale}
            for c in columns
        ]
    ).encode()


def _decode_columns(raw: bytes) -> list[Column]:
    return [
        Column(c["name"], ColumnType(c["kind"], c.get("length"), c.get("precision"), c.get("scale")))
        for c in json.loads(raw)
    ]


class _Counted(io.RawIOBase):
    """A file being written, counting its bytes (the size the index records, with no second
    look at a server)."""

    def __init__(self, raw: IO[bytes]):
        self.raw, self.count = raw, 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.raw.write(data)
        self.count += len(data)
        return len(data)

    def tell(self) -> int:
        return self.count

    def close(self) -> None:
        if not self.closed:
            self.raw.close()
        super().close()


class ChangeLogFileWriter:
    """One change-log file being written (under its temporary name) into a file it is given,
    which it closes."""

    def __init__(self, out: IO[bytes], columns: list[Column], keys: list[str], meta: dict[str, str]):
        import pyarrow as pa
        import pyarrow.parquet as pq

        fields = [pa.field(OP, pa.string(), nullable=False), pa.field(POSITION, pa.int64(), nullable=False)]
        fields += [pa.field(c.name, arrow_type(c.type)) for c in columns]
        metadata = {COLUMNS_KEY: _encode_columns(columns), KEYS_KEY: json.dumps(keys).encode()}
        metadata |= {f"runner.{k}".encode(): v.encode() for k, v in meta.items()}
        self.schema = pa.schema(fields, metadata=metadata)
        self.convert = [_to_arrow(c.type) for c in columns]
        self.raw = _Counted(out)
        self.out = pq.ParquetWriter(self.raw, self.schema, compression="zstd")

    @property
    def size(self) -> int:
        """The bytes written so far (all of them once closed)."""
        return self.raw.count

    def copy(self, source: Any) -> None:
        """Write the changes of an earlier file of the same columns first (bounded: by row group)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        with pq.ParquetFile(source, pre_buffer=False) as parquet:
            for batch in parquet.iter_batches():
                self.out.write_table(pa.Table.from_batches([batch]).cast(self.schema))

    def write(self, rows: list[tuple[str, int, tuple]]) -> None:
        import pyarrow as pa

        values: list[list[Any]] = [[] for _ in self.schema]
        for op, position, row in rows:
            values[0].append(op)
            values[1].append(position)
            for i, (convert, value) in enumerate(zip(self.convert, row, strict=True)):
                values[i + 2].append(convert(value))
        arrays = [pa.array(v, type=f.type) for v, f in zip(values, self.schema, strict=True)]
        self.out.write_table(pa.Table.from_arrays(arrays, schema=self.schema))

    def close(self) -> None:
        """Write the file's footer and close it (the caller then renames it)."""
        self.out.close()
        self.raw.close()


def _source(where: Any) -> Any:
    """A path or an open file, as pyarrow takes it."""
    return str(where) if isinstance(where, str | Path) else where


def file_columns(where: Any, name: str | None = None) -> tuple[list[Column], list[str]]:
    """A change-log file's (a path, or an open file named `name`) columns (runner's types)
    and the keys of its task.

    Raises:
        TerminalError: the file is missing or not a change log.
    """
    import pyarrow.parquet as pq

    name = name or str(where)
    try:
        if not isinstance(where, str | Path):
            where.seek(0)
        metadata = pq.read_schema(_source(where)).metadata or {}
    except (OSError, ValueError) as exc:
        raise TerminalError(f"cannot read the change log {name}: {exc}") from None
    if COLUMNS_KEY not in metadata:
        raise TerminalError(f"{name} is not a runner change log (its Parquet metadata has no columns)")
    return _decode_columns(metadata[COLUMNS_KEY]), json.loads(metadata.get(KEYS_KEY, b"[]"))


def read_changes(
    where: Any, batch_size: int, name: str | None = None
) -> Iterator[list[tuple[str, int, tuple]]]:
    """A change-log file's (a path, or an open file named `name`) changes in order, as (op,
    position, row) in batches of at most `batch_size`: one row group's worth of memory at a time.

    Raises:
        TerminalError: the file is missing or not a change log (truncated, another file).
    """
    import pyarrow.parquet as pq

    name = name or str(where)
    columns, _ = file_columns(where, name)
    converts = [_from_arrow(c.type) for c in columns]
    try:
        if not isinstance(where, str | Path):
            where.seek(0)
        with pq.ParquetFile(_source(where), pre_buffer=False) as parquet:
            for record in parquet.iter_batches(batch_size=batch_size):
                lists = [record.column(i).to_pylist() for i in range(record.num_columns)]
                for i, convert in enumerate(converts):
                    if convert is not None:
                        lists[i + 2] = [convert(v) for v in lists[i + 2]]
                yield list(zip(lists[0], lists[1], zip(*lists[2:], strict=True), strict=True))
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise TerminalError(f"cannot read the change log {name}: {exc}") from None


def changes_of(
    place: ChangeLogFolder, name: str, batch_size: int, columns: list[Column] | None = None
) -> Iterator[list[tuple[str, int, tuple]]]:
    """An indexed file's changes (`read_changes`), opened in its folder (read once, even from an
    FTP server); with `columns`, nothing when the file's differ (it is not read further).

    Raises:
        TerminalError: the file is gone or not a change log.
    """
    with place.open(name) as f:
        if columns is not None and file_columns(f, name)[0] != columns:
            return
        yield from read_changes(f, batch_size, name)


def columns_of(place: ChangeLogFolder, name: str) -> tuple[list[Column], list[str]]:
    """An indexed file's columns and keys (`file_columns`), opened in its folder."""
    with place.open(name) as f:
        return file_columns(f, name)


# --- a reader's end: its change logs ------------------------------------------------------


class ChangeLogSpec(ConnectionSpec):
    """A reader's target or a writer's source as `runner.runs.jobs` describes it: not a
    connection anyone defines."""

    folder: str | None = None  # where the change logs are, on this machine (absolute)
    location: dict[str, Any] | None = None  # or: the files connection of a folder on a server
    connection: str | None = None  # that connection's namespace/name, for messages
    job: str | None = None  # a writer's: its reader, namespace/name

    def open_folder(self, base_dir: Path) -> ChangeLogFolder:
        """The change-log folder, signed in to its server."""
        return open_change_log_folder(self.connection or "change_log", self.folder, self.location, base_dir)


def task_folder(job: str, task: str) -> str:
    """Where a reader task's change logs are in the change-log folder: `<namespace>/<job>/<task>`."""
    namespace, _, name = job.partition("/")
    return posixpath.join(namespace, name, task)


class ChangeLogWriter(RowWriter):
    """A `Writer` whose commit makes the changes handed to it since the last commit one
    durable, indexed change-log file (nothing, when none came)."""

    def __init__(
        self,
        folder: ChangeLogFolder,
        store: StateStore,
        write: WriteModel,
        columns: list[Column],
        context: WriteContext,
        parts: dict[str, int] | None = None,
    ):
        """`parts`: each task's last file number in this run, shared by the writers a run
        opens one after another (a cdc task's, again in a table's new columns), so none
        writes over another's file."""
        self.folder, self.store, self.columns, self.context = folder, store, columns, context
        self.parts = parts if parts is not None else {}
        self.keys = list(write.keys)
        by_name = {c.name: c for c in columns}
        self.key_columns = [by_name[k] for k in self.keys]
        self.key_index = [columns.index(c) for c in self.key_columns]
        self.namespace, _, self.job = context.job.partition("/")
        self.part = 0
        self.current: tuple[str, str, ChangeLogFileWriter] | None = None
        self.counts = {"upsert": 0, "delete": 0}
        self.position = 0  # the last position written; taken from the index when a file opens
        self.indexed: int | None = None  # the id of this run's file, once indexed (`commit`)

    def _open(self) -> tuple[str, str, ChangeLogFileWriter]:
        """The file being written: a new one, or, while this run's last file is small, a new
        version of it (its changes copied first), so a run's commits make one file."""
        if self.current is not None:
            return self.current
        ctx = self.context
        if self.position == 0:
            self.position = self.store.changelogs.next_position(self.namespace, self.job, ctx.task) - 1
        grow = self.indexed is not None and self.position - self.first + 1 < MERGE_ROWS
        if not grow:
            self.part = self.parts.get(ctx.task, 0) + 1
            self.parts[ctx.task] = self.part
            self.indexed = None
            self.first = self.position + 1
            self.counts = {"upsert": 0, "delete": 0}
        base = f"{ctx.run_id}-{self.part:04d}.parquet"
        final = posixpath.join(task_folder(ctx.job, ctx.task), base)
        temporary = posixpath.join(task_folder(ctx.job, ctx.task), f".{base}.partial")
        meta = {"job": ctx.job, "task": ctx.task, "run_id": ctx.run_id, "part": str(self.part)}
        try:
            with contextlib.ExitStack() as earlier:
                # the earlier version first (an FTP server's is spooled whole: its connection is
                # then free to take the new file)
                source = earlier.enter_context(self.folder.open(self.folder.name(final))) if grow else None
                opened = ChangeLogFileWriter(self.folder.open_write(temporary), self.columns, self.keys, meta)
                if source is not None:
                    opened.copy(source)
        except RunnerError:
            raise
        except Exception as exc:  # noqa: BLE001 - each location's library raises its own
            raise failure(f"cannot write {temporary} in {self.folder.where}", exc) from None
        self.current = (temporary, final, opened)
        return self.current

    def _write(self, op: str, rows: list[tuple]) -> None:
        if self.context.dry_run or not rows:
            return
        temporary, _, opened = self._open()
        numbered = [(op, self.position + 1 + i, row) for i, row in enumerate(rows)]
        try:
            opened.write(numbered)
        except Exception as exc:  # noqa: BLE001 - each location's library raises its own
            raise failure(f"cannot write {temporary} in {self.folder.where}", exc) from None
        self.position += len(rows)
        self.counts[op] += len(rows)

    def write_rows(self, batch: Batch) -> int:
        self._write("upsert", list(batch))
        return len(batch)

    def write_keys(self, keys: Batch) -> int:
        rows = []
        for key in keys:
            row: list[Any] = [None] * len(self.columns)
            for i, value in zip(self.key_index, key, strict=True):
                row[i] = value
            rows.append(tuple(row))
        self._write("delete", rows)
        return len(keys)

    def commit(self) -> None:
        """The file synced and renamed, then indexed: only then may the strategy store the
        reader's pointer (the changes are durable and writers can find them)."""
        index = self.seal()
        if index is not None:
            index()

    def seal(self) -> Callable[..., None] | None:
        """Close the file being written and rename it (on this machine: synced first); returns
        what indexes it (None: no file is being written). Until that is called no writer reads
        the file: a run stopped before leaves a file the next run writes again and retention's
        sweep removes."""
        if self.current is None:
            return None
        temporary, final, opened = self.current
        try:
            opened.close()
            checkpoint("file written")  # complete under its temporary name, not yet renamed
            self.folder.publish(temporary, final)
        except Exception as exc:  # noqa: BLE001 - each location's library raises its own
            raise failure(f"cannot complete {final} in {self.folder.where}", exc) from None
        self.current = None
        checkpoint("changelog_renamed")  # durable, not yet indexed: a kill here leaves an orphan
        counts = {
            "rows": self.position - self.first + 1,
            "upserts": self.counts["upsert"],
            "deletes": self.counts["delete"],
            "bytes": opened.size,
        }
        name = self.folder.name(final)
        return functools.partial(self._index, name, self.first, self.part, counts, self.indexed)

    def _index(
        self,
        final: str,
        first: int,
        part: int,
        counts: dict[str, int],
        grown: int | None,
        conn: sa.Connection | None = None,
    ) -> None:
        """Index a sealed file (in `conn`'s transaction if given): a new entry, or the entry
        `grown` of this run's earlier commit, whose file now holds more changes."""
        if grown is not None:
            self.store.changelogs.extend(grown, counts, conn)
            return
        entry = {
            "namespace": self.namespace,
            "job": self.job,
            "task": self.context.task,
            "run_id": self.context.run_id,
            "part": part,
            "first_position": first,
            "file": final,
            "created_at": utcnow(),
            **counts,
        }
        indexed = self.store.changelogs.add(entry, conn)
        if part == self.part:  # the file this run's next commit may grow
            self.indexed = indexed

    def close(self) -> None:
        """A file not committed is removed: it was never indexed."""
        if self.current is not None:
            temporary, _, opened = self.current
            self.current = None
            with contextlib.suppress(Exception):
                opened.close()
            with contextlib.suppress(Exception):  # a server gone: retention's sweep removes it later
                self.folder.folder.remove(temporary)

    def __enter__(self) -> ChangeLogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ChangeLogTarget(Connector):
    """A reader's target: its change-log folder and the index in the state store."""

    capabilities: ClassVar[Capabilities] = Capabilities()
    spec: ChangeLogSpec

    def __init__(self, name: str, spec: ChangeLogSpec, base_dir: Path, store: StateStore):
        super().__init__(name, spec, base_dir)
        self.store = store
        self._folder: ChangeLogFolder | None = None
        self.parts: dict[str, int] = {}  # each task's last file number (`ChangeLogWriter`)

    @property
    def folder(self) -> ChangeLogFolder:
        """The change-log folder, signed in to its server when first used."""
        if self._folder is None:
            self._folder = self.spec.open_folder(self.base_dir)
        return self._folder

    def check_connection(self) -> None:
        self.folder.probe()

    def close(self) -> None:
        if self._folder is not None:
            self._folder.close()
            self._folder = None

    def table_exists(self, table: str) -> bool:
        return True  # a change log has no table to create

    def open_row_writer(
        self, write: WriteModel, columns: list[Column], context: WriteContext
    ) -> ChangeLogWriter:
        return ChangeLogWriter(self.folder, self.store, write, columns, context, self.parts)


# --- a writer's end: its reader's change logs --------------------------------------------


def writer_position(pointer: dict[str, Any] | None, reader: str, task: str) -> int:
    """The last change a writer task applied of `reader`'s task `task` (0: none yet)."""
    if (
        pointer
        and pointer.get("type") == POINTER
        and pointer.get("job") == reader
        and pointer.get("task") == task
    ):
        return int(pointer["value"])
    return 0


class ChangeLogConsumer:
    """A reader task's changes after a writer task's position, in order, as (op, row) batches
    (a `Consumer`); `acknowledge` stores the position of the last change handed out, called
    once the writer's target committed them. It stops before a file whose columns differ from
    the first one's (the reader's source changed): the next run goes on from there with them."""

    def __init__(
        self,
        store: StateStore,
        place: ChangeLogFolder,
        reader: str,
        reader_task: str,
        task_id: int,
        position: int,
        batch_size: int,
        run_id: str,
    ):
        self.store, self.place, self.reader, self.reader_task = store, place, reader, reader_task
        self.notice: str | None = None
        self.task_id, self.position, self.batch_size, self.run_id = task_id, position, batch_size, run_id
        namespace, _, job = reader.partition("/")
        self.files = store.changelogs.after(namespace, job, reader_task, position)
        self.handed = position
        kept = self.files or store.changelogs.of_job(namespace, job)
        mine = [f for f in kept if f.task == reader_task]
        if self.files and position > 0 and self.files[0].first_position > position + 1:
            raise TerminalError(
                f"the change logs of job {reader} task {reader_task!r} from position {position + 1} to "
                f"{self.files[0].first_position - 1} are gone (removed by hand?): this writer cannot apply "
                "them; run it with --resync to apply every change log kept from the oldest"
            )
        # no change log kept yet (the reader has not run, or found nothing): no columns, nothing
        # to apply (the `messages` strategy then ends the task at once)
        self.columns: list[Column] = []
        if self.files or mine:
            self.columns = columns_of(place, self.files[0].file if self.files else mine[-1].file)[0]
        self.pending = iter(self.files)
        self.stream: Iterator[list[tuple[str, int, tuple]]] | None = None
        self.last, self.began = 0, False

    def follow(self, max_latency: float) -> None:
        """A writer step applies what its reader kept, run by run; it does not stream."""
        raise TerminalError("a writer step does not run continuously: schedule it after its reader instead")

    def _next_file(self) -> bool:
        entry = next(self.pending, None)
        if entry is None:
            return False
        # nothing from a file whose columns differ: a later run applies it, with its columns
        self.stream = changes_of(self.place, entry.file, self.batch_size, self.columns)
        self.last = entry.last_position  # a file may hold more than its entry says (`extend`)
        self.began = False
        return True

    def next_batch(self) -> list[tuple[str, tuple]] | None:
        batch: list[tuple[str, tuple]] = []
        while len(batch) < self.batch_size:
            if self.stream is None and not self._next_file():
                break
            assert self.stream is not None
            chunk = next(self.stream, None)
            if chunk is None:
                self.stream = None
                if not self.began:  # its columns differ (a file of changes is never empty)
                    self.pending = iter(())
                continue
            self.began = True
            for op, position, row in chunk:
                if self.handed < position <= self.last:
                    batch.append((op, row))
                    self.handed = position
        return batch or None

    def set_aside(self) -> list[tuple[str, str]]:
        return []

    def acknowledge(self) -> None:
        """Store the position of the last change handed out (the target committed it)."""
        pointer = {"type": POINTER, "value": self.handed, "job": self.reader, "task": self.reader_task}
        self.store.tasks.set_pointer(self.task_id, None, pointer, self.run_id)
        checkpoint("stored")

    def close(self) -> None:
        if self.stream is not None:
            close = getattr(self.stream, "close", None)
            if close:
                close()
            self.stream = None


class ChangeLogSource(Connector):
    """A writer's source: its reader job's change logs, each of its tasks from its own position."""

    capabilities: ClassVar[Capabilities] = Capabilities(consume=True)
    spec: ChangeLogSpec

    def __init__(
        self,
        name: str,
        spec: ChangeLogSpec,
        base_dir: Path,
        store: StateStore,
        writer: str,
        reader_tasks: list[dict[str, Any]],
        tasks: dict[str, str],
        run_id: str,
    ):
        """`tasks`: the writer's `read.table` -> its task's name; `reader_tasks`: the reader's
        tasks as applied; `spec`: the reader and where its change logs are."""
        super().__init__(name, spec, base_dir)
        self.store, self.writer, self.reader_tasks, self.tasks = store, writer, reader_tasks, tasks
        self.run_id = run_id
        self._folder: ChangeLogFolder | None = None

    @property
    def folder(self) -> ChangeLogFolder:
        """The reader's change-log folder, signed in to its server when first used."""
        if self._folder is None:
            self._folder = self.spec.open_folder(self.base_dir)
        return self._folder

    def close(self) -> None:
        if self._folder is not None:
            self._folder.close()
            self._folder = None

    @property
    def reader(self) -> str:
        assert self.spec.job is not None
        return self.spec.job

    def _task(self, read: ReadModel) -> tuple[str, int, int]:
        """(the reader's task, the writer task's state id, its position)."""
        assert isinstance(read, ChangeLogRead)
        found = reader_task(self.reader_tasks, read.table)
        if found is None:
            raise TerminalError(f"job {self.reader} has no task {read.table!r} (by name or table)")
        namespace, _, job = self.writer.partition("/")
        state = self.store.tasks.state(namespace, job, self.tasks[read.table])
        return str(found["name"]), state.id, writer_position(state.pointer, self.reader, str(found["name"]))

    def consume(self, read: ReadModel, batch_size: int) -> ChangeLogConsumer:
        task, task_id, position = self._task(read)
        return ChangeLogConsumer(
            self.store, self.folder, self.reader, task, task_id, position, batch_size, self.run_id
        )

    def waiting(self, read: ReadModel) -> int:
        """Changes of the reader's task the writer task has not applied."""
        task, _, position = self._task(read)
        namespace, _, job = self.reader.partition("/")
        files = self.store.changelogs.after(namespace, job, task, position)
        return sum(f.last_position - max(position, f.first_position - 1) for f in files)
