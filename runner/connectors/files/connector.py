"""The `files` kind: a folder, on this machine or an FTP or SFTP server
(`runner.connectors.files.location`). As a target, a task writes the changed rows (and deleted
keys) of each committed batch as one file, named by a template, in CSV, JSON lines, a JSON
array or Parquet; a file is written under a hidden temporary name and renamed when complete
(on this machine: synced first), so a reader (and a run killed half-way) never sees a half
file, and a file is never overwritten. As a source, a task reads the files matching a pattern
(`runner.connectors.files.reading`)."""

from __future__ import annotations

import contextlib
import posixpath
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal, cast

from pydantic import Field, field_validator

from runner.connectors import registry
from runner.connectors.base import Capabilities, Connector, ReadStream, RowWriter, Watermark, WriteContext
from runner.connectors.files.formats import EXTENSIONS, WRITERS, FormatWriter, ParquetWriter
from runner.connectors.files.location import FilesConnection, Folder, failure, open_folder
from runner.connectors.files.reading import FileRead, FileSource
from runner.connectors.messaging.model import check_templates
from runner.definitions.models import StrictModel
from runner.definitions.needs import Need
from runner.definitions.tasks import Task, WriteModel
from runner.definitions.templates import environment
from runner.errors import TerminalError, TransientError
from runner.streams.checkpoints import checkpoint
from runner.streams.types import Batch, Column

DEFAULT_FILE = "{{ job }}/{{ task }}/{{ run_id }}-{{ part }}.{{ ext }}"


class CsvOptions(StrictModel):
    delimiter: str = Field(",", min_length=1, max_length=1, description="The field delimiter.")
    quote: str = Field('"', min_length=1, max_length=1, description="The quote character.")
    header: bool = Field(True, description="A first line with the column names.")
    null: str = Field("", description="How NULL is written (a value that is '' is written quoted).")
    encoding: str = Field("utf-8", min_length=1, description="The text encoding.")

    @field_validator("encoding")
    @classmethod
    def _known(cls, encoding: str) -> str:
        import codecs

        try:
            codecs.lookup(encoding)
        except LookupError:
            raise ValueError(f"unknown encoding {encoding!r}") from None
        return encoding


class FileWrite(WriteModel):
    """The files a task writes: one per committed batch (at most `batch_size` rows)."""

    file: str = Field(
        DEFAULT_FILE,
        min_length=1,
        description="The file's path in the folder, a template: `job`, `namespace`, `task`, `run_id`, "
        "`part` (the file's number in the run, from 1), `started` (the run's start, UTC: "
        "`started.strftime('%Y/%m/%d')`), `ext` (the format's extension).",
    )
    format: Literal["csv", "jsonl", "json", "parquet"] = Field(
        "csv", description="The files' format: csv, jsonl (an object per line), json (one array), parquet."
    )
    csv: CsvOptions = Field(default_factory=CsvOptions, description="With format csv: its dialect.")
    compression: Literal["none", "gzip"] = Field(
        "none",
        description="csv, jsonl and json: gzip the file (`.gz` is added to its name); Parquet is zstd's.",
    )
    operation_column: str | None = Field(
        "_op",
        min_length=1,
        description="A first column saying what each line is: `upsert` (a new or changed row) or `delete` "
        "(a deleted key, its other columns empty); null leaves it out (then deletes cannot be written).",
    )

    @field_validator("file")
    @classmethod
    def _template(cls, value: str) -> str:
        check_templates(value)
        if "{%" in value:  # expressions alone are bounded by the sandbox: a name needs no loop
            raise ValueError("a file name is made of {{ expressions }} only, no {% statements %}")
        return value

    def describe(self) -> str:
        return self.file

    def merged(self) -> bool:
        return False  # a file holds what it is given: nothing is compared or found gone

    def unmerged_by(self) -> str:
        return "a files target"

    def needs(self, task: Task) -> list[Need]:
        return [Need("target", "files", ("write",), "the task writes its changes as files")]

    def added_columns(self, task: Task) -> list[tuple[tuple[str | int, ...], str, str]]:
        if self.operation_column is None:
            return []
        return [(("write", "operation_column"), self.operation_column, "writes each line's operation")]

    def check(self, task: Task) -> None:
        if task.deletes != "ignore" and self.operation_column is None:
            raise ValueError("deletes are written as lines whose operation_column says delete: keep it")


class FileWriter(RowWriter):
    """A `Writer` whose commit makes the batch's file visible (synced, then renamed)."""

    def __init__(self, folder: Folder, write: FileWrite, columns: list[Column], context: WriteContext):
        self.folder, self.write, self.columns, self.context = folder, write, columns, context
        by_name = {c.name: c for c in columns}
        self.key_columns = [by_name[k] for k in write.keys]
        self.key_index = [columns.index(c) for c in self.key_columns]
        self.template = environment().from_string(write.file)
        self.part = 0
        self.current: tuple[str, str, FormatWriter] | None = None  # (temporary, final, writer)

    def _target(self) -> tuple[str, str]:
        namespace, _, job = self.context.job.partition("/")
        name = self.template.render(
            job=job,
            namespace=namespace,
            task=self.context.task,
            run_id=self.context.run_id,
            part=self.part,
            started=self.context.started,
            ext=EXTENSIONS[self.write.format],
        ).strip()
        if self.write.compression == "gzip":
            name += ".gz"
        final = posixpath.normpath(name.replace("\\", "/"))
        if not name or final in (".", "/") or final.startswith(("/", "../")) or final == "..":
            raise TerminalError(f"write.file: {name!r} is not a file within the folder {self.folder.where}")
        try:
            exists = self.folder.exists(final)
        except Exception as exc:  # noqa: BLE001 - each location's library raises its own
            raise failure(f"cannot look for {final} in {self.folder.where}", exc) from None
        if exists:
            raise TerminalError(
                f"write.file: {final} exists in {self.folder.where}; a file is never overwritten "
                "(name it by run_id)"
            )
        folder, base = posixpath.split(final)
        return posixpath.join(folder, f".{base}.partial"), final

    def _open(self) -> tuple[str, str, FormatWriter]:
        """The file being written (started under its temporary name when there is none)."""
        if self.current is None:
            self.part += 1
            temporary, final = self._target()
            try:
                opened = WRITERS[self.write.format](
                    self.folder.open_write(temporary),
                    self.columns,
                    self.write.operation_column,
                    self.write.csv,
                    self.write.compression == "gzip",
                )
            except Exception as exc:  # noqa: BLE001 - each location's library raises its own
                raise failure(f"cannot write {temporary} in {self.folder.where}", exc) from None
            self.current = (temporary, final, opened)
        return self.current

    def _lines(self, rows: list[tuple[str, tuple]]) -> None:
        if self.context.dry_run:
            return
        self._open()
        try:
            self.current[2].write(rows)
        except (TerminalError, TransientError):
            raise
        except Exception as exc:  # noqa: BLE001
            raise failure(f"cannot write {self.current[0]} in {self.folder.where}", exc) from None

    def write_rows(self, batch: Batch) -> int:
        self._lines([("upsert", row) for row in batch])
        return len(batch)

    def write_arrow(self, batches: Iterator[Any]) -> int | None:
        """Parquet from Arrow's batches, into the file a commit makes visible; None (and the
        file not begun) for another format or a dry run, or when Arrow cannot read a value
        as its column's type (the batch path then writes the rows, or names the bad one)."""
        if self.write.format != "parquet" or self.context.dry_run or self.current is not None:
            return None
        import pyarrow as pa

        rows = 0
        try:
            for batch in batches:
                writer = cast(ParquetWriter, self._open()[2])
                writer.write_batch(batch)
                rows += batch.num_rows
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            self.close()  # the temporary file goes; its part number is taken again
            self.part -= 1
            return None
        except (TerminalError, TransientError):
            raise
        except Exception as exc:  # noqa: BLE001
            where = self.current[0] if self.current else self.write.file
            raise failure(f"cannot write {where} in {self.folder.where}", exc) from None
        finally:
            close = getattr(batches, "close", None)
            if close:
                close()  # a read stopped half-way gives its connection back
        return rows

    def write_keys(self, keys: Batch) -> int:
        width = len(self.columns)
        rows = []
        for key in keys:
            row: list[Any] = [None] * width
            for i, value in zip(self.key_index, key, strict=True):
                row[i] = value
            rows.append(("delete", tuple(row)))
        self._lines(rows)
        return len(keys)

    def commit(self) -> None:
        if self.current is None:
            return
        temporary, final, opened = self.current
        try:
            opened.close()
            checkpoint("file written")  # complete under its temporary name, not yet renamed
            self.folder.publish(temporary, final)
        except Exception as exc:  # noqa: BLE001 - each location's library raises its own
            raise failure(f"cannot complete {final} in {self.folder.where}", exc) from None
        self.current = None
        if self.context.log is not None:  # the run's summary names the template; its log, each file
            self.context.log("info", "file written", task=self.context.task, file=final)

    def close(self) -> None:
        """A file not committed is removed: it was never visible."""
        if self.current is not None:
            temporary, _, opened = self.current
            self.current = None
            with contextlib.suppress(Exception):  # the file goes anyway
                opened.close()
            self.folder.remove(temporary)

    def __enter__(self) -> FileWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FilesConnector(Connector):
    """A folder as a job's source or target."""

    capabilities: ClassVar[Capabilities] = Capabilities(files=True)
    spec: FilesConnection
    _folder: Folder | None = None

    @property
    def folder(self) -> Folder:
        """The folder, signed in to its server when first used."""
        if self._folder is None:
            self._folder = open_folder(self.name, self.spec, self.base_dir)
        return self._folder

    @property
    def root(self) -> Path:
        """A local folder's path."""
        return (self.base_dir / self.spec.path).resolve()

    def close(self) -> None:
        if self._folder is not None:
            self._folder.close()
            self._folder = None

    def read(
        self,
        spec: Any,
        batch_size: int,
        watermark: Watermark | None = None,
        select: list[str] | None = None,
        limit: int | None = None,
    ) -> ReadStream:
        assert isinstance(spec, FileRead)  # the kind's read model
        return FileSource(self.folder).read(spec, batch_size, watermark, select, limit)

    def highest(self, spec: Any, column: str) -> Any:
        assert isinstance(spec, FileRead)
        return FileSource(self.folder).highest(spec, column)

    def check_connection(self) -> None:
        """Sign in (a server's folder): a refused password fails the run before anything is
        read or written. Nothing is written here: a folder only read may be read-only."""
        _ = self.folder

    def open_row_writer(self, write: WriteModel, columns: list[Column], context: WriteContext) -> FileWriter:
        assert isinstance(write, FileWrite)  # the kind's write model
        return FileWriter(self.folder, write, columns, context)


def test(name: str, spec: FilesConnection, base_dir: Path) -> str:
    """The folder exists (or can be made) and takes a file."""
    folder = open_folder(name, spec, base_dir)
    try:
        folder.probe()
    except Exception as exc:  # noqa: BLE001 - each location's library raises its own
        raise failure(f"connection {name!r}: cannot write in {folder.where}", exc) from None
    finally:
        folder.close()
    return f"folder {folder.where}"


registry.register(
    registry.Kind("files", FilesConnection, FilesConnector, read=FileRead, write=FileWrite, test=test)
)
