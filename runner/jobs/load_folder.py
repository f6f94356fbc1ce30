"""The `load_folder` job type (CData Sync's LoadFolder): every file of a folder loaded into a
table, the table named by a pattern over the file's path or by the file's name, each file once.

Each file is loaded in one transaction of the target: its rows are merged by the file's path
and the row's number in it (two columns the job adds, the table's key), then committed, and
only then is the file recorded as loaded (its modified time and size, in the state store, as
a task's digests: one task per table). So a run killed anywhere leaves each file loaded whole
or not at all, and the next run loads again only what is not recorded: a file loaded but not
yet recorded is merged again onto its own rows, never doubled. A file changed since it was
loaded (another modified time or size) is loaded again, its rows replacing the old ones.

A file that fails (a row that does not fit, a bad encoding, a truncated Parquet file, a value
the target refuses) is rolled back, named with its line in the run's history, and left for the
next run; the other files still load. Files are taken oldest first, then by name."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import posixpath
import re
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Literal, cast

from pydantic import Field, field_validator, model_validator

from runner.changes.task import TRACEBACK, Locate, Log, Progress, RunOptions, TaskResult, TaskRun
from runner.connectors import registry
from runner.connectors.base import STAGE, Connector, MergeWriter, TableEvolution
from runner.connectors.files.connector import FilesConnector
from runner.connectors.files.location import failure
from runner.connectors.files.reading import CsvDialect, FileRead, FileSource
from runner.connectors.messaging.decode import column_type
from runner.definitions import secrets
from runner.definitions.jobs import JobSpec, SyncJobSpec
from runner.definitions.needs import Need, Needs
from runner.definitions.schema_changes import TableChanges
from runner.definitions.tasks import Task, WriteSpec, target_table
from runner.errors import Cancelled, NotFound, RunnerError, TerminalError
from runner.jobs.sync import failure_class
from runner.jobs.sync_all import table_task_names
from runner.jobs.types import JOB_TYPES, JobType
from runner.state.store import StateStore
from runner.streams.cancel import CancelToken
from runner.streams.types import Column, ColumnType


class LoadFolderJobSpec(JobSpec):
    """The `load_folder` job type: the files of the source folder matching `files`, each into
    the table `table` names (a pattern's `table` group, else the file's name up to its first
    dot), keyed by the file's path and the row's number."""

    expands_at_run: ClassVar[bool] = True  # its tasks are the tables its files name

    type: Literal["load_folder"] = Field(
        description="The job type; `load_folder` loads every file of a folder into tables, each file once."
    )
    files: str = Field(
        "*",
        min_length=1,
        description="The files loaded: a pattern in the source folder (`*.csv`; `**/` reads subfolders "
        "too). Hidden files (a name starting with '.') are never read.",
    )
    format: Literal["csv", "jsonl", "json", "parquet"] = Field(
        description="The files' format: csv, jsonl (an object per line), json (an array of objects), parquet."
    )
    csv: CsvDialect = Field(default_factory=CsvDialect, description="With format csv: its dialect.")
    columns: dict[str, str] | None = Field(
        None,
        description="The columns of every file and their types (`id: bigint`). Unset: each file's own "
        "(Parquet), or its header's names with types inferred from its first 1,000 rows.",
    )
    table: str | None = Field(
        None,
        min_length=1,
        description="A regular expression over the file's path in the folder, with a group named "
        "`table`: `(?P<table>[a-z_]+)_\\d{8}\\.csv` loads `orders_20240101.csv` into `orders`. Unset: "
        "the file's name up to its first dot. A file it does not match is left alone (and reported).",
    )
    schema_: str | None = Field(
        None,
        alias="schema",
        min_length=1,
        description="The target schema of the tables; the target's default schema when left out.",
    )
    table_prefix: str = Field("", description="Put before each table's name in the target: `stg_`.")
    file_column: str = Field(
        "_file",
        min_length=1,
        description="A column with each row's file path: with `row_column`, the tables' key, so a file "
        "loaded again replaces its own rows and never doubles them.",
    )
    row_column: str = Field("_row", min_length=1, description="A column with each row's number in its file.")
    batch_size: int = SyncJobSpec.model_fields["batch_size"]

    model_config = {**JobSpec.model_config, "populate_by_name": False, "serialize_by_alias": True}

    @field_validator("files")
    @classmethod
    def _within(cls, pattern: str) -> str:
        if pattern.startswith("/") or ".." in pattern.replace("\\", "/").split("/"):
            raise ValueError(f"{pattern!r} leaves the folder: a pattern is relative to it, without '..'")
        return pattern

    @field_validator("table")
    @classmethod
    def _pattern(cls, pattern: str | None) -> str | None:
        if pattern is None:
            return None
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        if "table" not in compiled.groupindex:
            raise ValueError("the pattern needs a group named table: (?P<table>...)")
        return pattern

    @field_validator("columns")
    @classmethod
    def _types(cls, columns: dict[str, str] | None) -> dict[str, str] | None:
        for name, text in (columns or {}).items():
            try:
                column_type(text)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
        return columns

    @field_validator("schema_", "table_prefix")
    @classmethod
    def _one_name(cls, value: str | None) -> str | None:
        if value and "." in value:
            raise ValueError(f"{value!r} has a '.': a schema or a prefix is part of one name")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> LoadFolderJobSpec:
        if self.columns is None and self.format == "csv" and not self.csv.header:
            raise ValueError("a CSV without a header needs 'columns' (name: type), in the files' order")
        if self.file_column == self.row_column:
            raise ValueError("file_column and row_column name two columns: give them two names")
        stated = set(self.columns or ())
        clash = stated & {self.file_column, self.row_column}
        if clash:
            raise ValueError(
                f"columns: {', '.join(sorted(clash))} is the column runner adds (file_column, row_column)"
            )
        return self

    def needs(self, task_needs: Needs) -> list[Need]:
        return [
            Need("source", "files", ("source",), "a load_folder job reads the files of a folder"),
            Need(
                "target",
                "native_merge",
                ("target",),
                "a load_folder job merges each file's rows into a table",
            ),
        ]

    def read_for(self, relative: str) -> FileRead:
        """The read of one file, as a sync task's would be."""
        return FileRead.model_validate(
            {
                "files": _escaped(relative),
                "format": self.format,
                "csv": self.csv.model_dump(),
                "columns": self.columns,
            }
        )

    def table_of(self, relative: str) -> str | None:
        """The table a file goes to (named with the job's schema and prefix); None when the
        pattern does not match it."""
        if self.table is not None:
            match = re.fullmatch(self.table, relative)
            if match is None or not match.group("table"):
                return None
            name = match.group("table")
        else:
            name = posixpath.basename(relative).split(".", 1)[0]
        if not name:
            return None
        return target_table(name, self.schema_, self.table_prefix)


NUMBERS = ("smallint", "integer", "bigint", "decimal", "real", "double")


def widest(a: ColumnType, b: ColumnType) -> ColumnType:
    """A type holding every value of both: what a table keeps when its files' inferred types
    differ (one file's amounts fit decimal(4,2), another's decimal(7,2)); text when they have
    nothing narrower in common."""
    if a == b:
        return a
    if a.kind == b.kind and a.kind in ("varchar", "char"):
        return ColumnType(a.kind, length=max(a.length or 0, b.length or 0) or None)
    if a.kind in NUMBERS and b.kind in NUMBERS:
        kinds = {a.kind, b.kind}
        if kinds & {"real", "double"}:
            return ColumnType("double")
        if "decimal" in kinds:
            scale = max(t.scale or 0 for t in (a, b) if t.kind == "decimal")
            whole = max((t.precision or 18) - (t.scale or 0) if t.kind == "decimal" else 19 for t in (a, b))
            precision = whole + scale
            return (
                ColumnType("double")
                if precision > 38
                else ColumnType("decimal", precision=precision, scale=scale)
            )
        return ColumnType(max(kinds, key=NUMBERS.index))  # type: ignore[arg-type]
    if {a.kind, b.kind} == {"timestamp", "timestamptz"}:
        return ColumnType("timestamptz")
    if {a.kind, b.kind} == {"date", "timestamp"}:
        return ColumnType("timestamp")
    return ColumnType("text")


def fitted(table: ColumnType, file: ColumnType) -> ColumnType:
    """The type a file's column is read in: wide enough for the table's earlier files and this
    file's sample, or the table's own where only text would hold both (a sample of NULLs only
    reads as text; a value that does not fit then fails naming its line, not the table's type)."""
    wide = widest(table, file)
    return table if wide.kind == "text" and table.kind != "text" else wide


def file_mark(stamp: dt.datetime, size: int) -> str:
    """What says a file is the one loaded: its modified time and size (md5 hex, the digests' form)."""
    return hashlib.md5(f"{stamp.isoformat()}|{size}".encode()).hexdigest()  # noqa: S324 - not security


def file_key(relative: str) -> str:
    return hashlib.md5(relative.encode()).hexdigest()  # noqa: S324 - a digest key, not security


def run_load_folder(
    spec: LoadFolderJobSpec,
    connections: dict[str, tuple[str, dict[str, Any]]],
    base_dir: Path,
    *,
    store: StateStore,
    namespace: str,
    job: str,
    run_id: str,
    options: RunOptions,
    log: Log,
    on_task: Callable[[TaskResult], None] | None = None,
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
    locate: Locate | None = None,
) -> list[TaskResult]:
    """Load each new or changed file of the folder into its table, one transaction per file;
    one result per table (a task), failed when one of its files failed (each named).

    Raises:
        NotFound: `options.tasks` names a table no file goes to.
        RunnerError: the folder cannot be listed, or the source is not a folder.
    """
    started = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    opened: list[Connector] = []
    try:
        for end in ("source", "target"):
            opened.append(registry.open_connector(*connections[end], base_dir))
            log("info", f"connecting to the {end}", connection=connections[end][0])
            opened[-1].check_connection()
        source, target = opened
        if not isinstance(source, FilesConnector):
            raise TerminalError(
                f"connection {connections['source'][0]!r} of type {source.kind!r} is not a folder: a "
                "load_folder job reads a files connection"
            )
        try:
            listing = source.folder.listing(spec.files)
        except RunnerError:
            raise
        except Exception as exc:  # noqa: BLE001 - each location's library raises its own
            raise failure(f"cannot list {source.folder.where}", exc) from None
        log("info", "listed the folder", folder=source.folder.where, files=len(listing))
        tables: dict[str, list[tuple[dt.datetime, str, int]]] = {}
        results: list[TaskResult] = []
        unmatched: list[str] = []
        for stamp, relative, size in listing:
            table = spec.table_of(relative)
            if table is None:
                unmatched.append(relative)
                continue
            tables.setdefault(table, []).append((stamp, relative, size))
        if unmatched:
            log(
                "warning",
                "files the table pattern does not match: left alone",
                count=len(unmatched),
                files=unmatched[:20],
            )
        names = table_task_names(list(tables))  # stable: a table's name never passes to another
        unknown = sorted(set(options.tasks or ()) - set(names.values()))
        if unknown:
            raise NotFound(
                f"job {namespace}/{job} has no task {', '.join(map(repr, unknown))} "
                f"(its files' tables make: {', '.join(sorted(names.values())) or 'none'})"
            )
        for table in sorted(tables):
            name = names[table]
            if options.tasks and name not in options.tasks:
                continue
            result = _load_table(
                spec,
                source,
                target,
                table,
                name,
                tables[table],
                store,
                namespace,
                job,
                run_id,
                options,
                log,
                progress,
                cancel,
                started,
            )
            results.append(result)
            if on_task:
                on_task(result)
            if result.status == "cancelled":
                break
        if not tables:
            log("warning", f"no file matches {spec.files!r}: nothing to load", folder=source.folder.where)
        return results
    finally:
        for connector in opened:
            connector.close()


def _load_table(
    spec: LoadFolderJobSpec,
    source: FilesConnector,
    target: Connector,
    table: str,
    name: str,
    files: list[tuple[dt.datetime, str, int]],
    store: StateStore,
    namespace: str,
    job: str,
    run_id: str,
    options: RunOptions,
    log: Log,
    progress: Progress | None,
    cancel: CancelToken | None,
    started: dt.datetime,
) -> TaskResult:
    """The files of one table, each in a transaction of its own; the table's result sums them."""
    clock = time.perf_counter()
    result = TaskResult(name, spec.files, table, "files", "succeeded")
    task = Task[FileRead, WriteSpec].model_validate(  # each file's run reads that file (`_load_file`)
        {
            "name": name,
            "read": {"files": spec.files, "format": spec.format},
            "write": {"table": table, "keys": [spec.file_column, spec.row_column]},
        }
    )
    state = store.tasks.state(namespace, job, name)  # plan --data: read, never made
    loaded: dict[str, tuple[str, dict[str, Any]]] = {}
    if state.id:
        for key, mark, value in store.tasks.digests(state.id, 1000):
            loaded[key] = (mark, json.loads(value))
    errors: list[str] = []
    done = skipped = 0
    for stamp, relative, size in files:
        mark = file_mark(stamp, size)
        before = loaded.get(file_key(relative))
        if before is not None and before[0] == mark:
            skipped += 1
            continue
        run = TaskRun(
            task,
            namespace,
            job,
            cast(Any, source),
            cast(Any, target),
            spec.batch_size,
            store,
            options,
            run_id,
            log,
            progress,
            cancel,
            started=started,
            table_changes=TableChanges(),
        )
        log("info", "loading a file", task=name, file=relative, table=table)
        try:
            rows = _load_file(spec, run, source, stamp, relative, before[1].get("rows", 0) if before else 0)
        except Cancelled as exc:
            result.status, result.error = "cancelled", str(exc)
            _add(result, run.result)
            break
        except Exception as exc:  # noqa: BLE001 - a failed file is reported, the others still load
            text = secrets.redact(
                str(exc) if isinstance(exc, RunnerError) else f"{type(exc).__name__}: {exc}"
            )
            errors.append(text if text.startswith(relative) else f"{relative}: {text}")
            result.failure = failure_class(exc)
            log("error", f"file not loaded, left for the next run: {errors[-1]}", task=name, file=relative)
            log("debug", TRACEBACK, task=name, traceback="".join(traceback.format_exception(exc)))
            continue
        finally:
            run.close_streams()
        _add(result, run.result)
        result.columns = run.result.columns
        done += 1
        if not options.dry_run:
            value = {"file": relative, "modified": stamp.isoformat(), "size": size, "rows": rows}
            store.tasks.write_digests(state.id, [(file_key(relative), mark, json.dumps(value))], [])
            store.tasks.set_pointer(state.id, None, {"modified": stamp.isoformat(), "file": relative}, run_id)
        log("info", "file loaded", task=name, file=relative, rows=rows)
    if errors:
        result.status, result.error = "failed", "; ".join(errors)
    loaded = "to load" if options.dry_run else "loaded"  # plan --data and --dry-run load nothing
    result.note = f"{done} file(s) {loaded}, {skipped} unchanged since loaded, {len(errors)} failed"
    result.seconds = round(time.perf_counter() - clock, 3)
    result.read_seconds = round(result.read_seconds, 3)
    result.write_seconds = round(max(result.seconds - result.read_seconds, 0.0), 3)
    return result


def _add(total: TaskResult, one: TaskResult) -> None:
    total.rows_read += one.rows_read
    total.inserted += one.inserted
    total.updated += one.updated
    total.deleted += one.deleted
    total.read_seconds += one.read_seconds
    total.schema_changes += one.schema_changes


def _escaped(relative: str) -> str:
    """A file's path as a pattern matching it alone."""
    return "".join(f"[{ch}]" if ch in "*?[" else ch for ch in relative)


def _load_file(
    spec: LoadFolderJobSpec,
    run: TaskRun,
    source: FilesConnector,
    stamp: dt.datetime,
    relative: str,
    before: int,
) -> int:
    """Merge one file's rows into its table and commit (a dry run: roll back); the rows a
    former version of the file had past this one's are deleted in the same transaction. Into
    a target that copies inside the database (CSV into PostgreSQL: `runner.transfer`), the
    file's bytes go there untouched; else its rows go in batches."""
    folder = source.folder
    base = spec.read_for(relative)
    data = FileSource(folder).columns(base, [(stamp, relative)])
    clash = [c.name for c in data if c.name in (spec.file_column, spec.row_column)]
    if clash:
        raise TerminalError(
            f"{relative}: the file has a column {clash[0]!r}, which runner adds (file_column, row_column): "
            "name another one"
        )
    if spec.columns is None:  # each file's own types: kept wide enough for the table's earlier files
        state = run.store.tasks.state(run.namespace, run.job, run.task.name)
        known = {
            e["name"]: TableEvolution.known_type(e) for e in run.store.tasks.source_columns(state.id) or []
        }
        data = [Column(c.name, fitted(known[c.name], c.type)) if c.name in known else c for c in data]
    stated = {c.name: str(c.type) for c in data}
    read = base.model_copy(
        update={"columns": stated, "path_column": spec.file_column, "row_column": spec.row_column}
    )
    run.task = run.task.model_copy(update={"read": read})
    stream = FileSource(folder).read(read, run.batch_size, files=[(stamp, relative)])
    run.track(stream.batches, cancellable=False)  # closed when the file is done, even if never read
    run.use_columns(stream.columns)
    table = run.task.write.table  # type: ignore[union-attr]
    if run.options.dry_run and not run.target.table_exists(table):
        for batch in run.timed(stream.batches):
            run.result.inserted += len(batch)
        return run.result.rows_read
    with run.writer(stream.columns, copy=True) as w:
        merged = cast(MergeWriter, w)
        empty = merged.empty_at_start
        if empty:  # nothing to merge with: the rows go straight in
            if not run.copied(w, table, stream):
                for batch in run.timed(stream.batches):
                    merged.insert(batch)
            run.result.inserted = run.result.rows_read
        else:
            if not run.copied(w, STAGE, stream):
                for batch in run.timed(stream.batches):
                    w.stage(batch)
            run.result.add(w.merge())
        count = run.result.rows_read
        if before > count and not empty:  # the file was longer when it was loaded
            w.open_key_stage()
            for first in range(count + 1, before + 1, run.batch_size):
                w.stage_keys([(relative, n) for n in range(first, min(first + run.batch_size, before + 1))])
            run.result.deleted += w.delete_listed()
        run.finish(w)
    return count


JOB_TYPES.register("load_folder", JobType(LoadFolderJobSpec, run_load_folder))
