"""Files as a source: the files of a folder matching a pattern, read in order of their modified
time (then name), each row with its file's path and modified time where the read names columns
for them, in CSV (cells by the stated columns' types), JSON lines (values by name, as a message's)
or Parquet (its own types). A row that does not fit names its file, line and column.

Change detection is per file: a watermark on the modified-time column reads only the files
changed since the pointer (files modified at the pointer are read again: their rows upserted
again by key), and the pointer moves only as the target commits, as for a table."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import itertools
import json
import os
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from runner.connectors.base import ReadStream, Watermark
from runner.connectors.files.infer import SAMPLE_ROWS, infer
from runner.connectors.messaging.decode import CONVERT, BadMessage, column_type, row_decoder
from runner.definitions.models import StrictModel
from runner.definitions.tasks import ReadModel, Task
from runner.errors import TerminalError
from runner.streams.types import Batch, Column, ColumnType

TRUE, FALSE = {"true", "t", "1", "yes", "y"}, {"false", "f", "0", "no", "n"}


class CsvDialect(StrictModel):
    delimiter: str = Field(",", min_length=1, max_length=1, description="The field delimiter.")
    quote: str = Field('"', min_length=1, max_length=1, description="The quote character.")
    header: bool = Field(True, description="The first line names the columns (else: `columns` in order).")
    null: str = Field("", description="The text that is NULL.")
    encoding: str = Field("utf-8", min_length=1, description="The text encoding.")


class FileRead(ReadModel):
    """The files a task reads from a folder."""

    files: str = Field(
        min_length=1,
        description="A pattern of files in the folder: `orders/*.csv`; `**/` reads subfolders too. "
        "Hidden files (a name starting with '.') are never read; `.gz` files are gunzipped.",
    )
    format: Literal["csv", "jsonl", "parquet"] = Field(description="The files' format.")
    csv: CsvDialect = Field(default_factory=CsvDialect, description="With format csv: its dialect.")
    columns: dict[str, str] | None = Field(
        None,
        description="The columns and their types (`id: bigint`, `amount: decimal(12,2)`). Unset: a "
        "Parquet file's own; a CSV header's names (a JSON line's keys) with types inferred from the "
        "first 1,000 rows of the first file (shown in the run's history; state them to be sure).",
    )
    path_column: str | None = Field(None, min_length=1, description="A column with each row's file path.")
    modified_column: str | None = Field(
        None,
        min_length=1,
        description="A column with each row's file's modified time (timestamptz): what a watermark reads "
        "files by (`changes: {strategy: watermark, column: <this>}` reads only files changed since).",
    )

    bad_rows: Literal["stop", "dead_letter"] = Field(
        "stop",
        description="A row that does not fit (a ragged line, a value not of its column's type, a line "
        "that is not JSON, an unreadable Parquet file): `stop` fails the task before the batch is "
        "committed; `dead_letter` writes it, with its file, line and reason, to `dead_letter` and goes on.",
    )
    dead_letter: str | None = Field(
        None,
        min_length=1,
        description="With bad_rows: dead_letter, a folder within the connection's where `<file>.rejected` "
        "(JSON lines: file, line, reason, the raw line) collects each file's bad rows.",
    )

    @field_validator("files", "dead_letter")
    @classmethod
    def _within(cls, pattern: str | None) -> str | None:
        if pattern is None:
            return None
        if pattern.startswith("/") or ".." in pattern.replace("\\", "/").split("/"):
            raise ValueError(f"{pattern!r} leaves the folder: a pattern is relative to it, without '..'")
        return pattern

    @model_validator(mode="after")
    def _columns(self) -> FileRead:
        if self.columns is None and self.format == "csv" and not self.csv.header:
            raise ValueError("a CSV without a header needs 'columns' (name: type), in the files' order")
        if (self.bad_rows == "dead_letter") != (self.dead_letter is not None):
            raise ValueError("bad_rows: dead_letter goes with 'dead_letter' (the folder), and only then")
        for name, text in (self.columns or {}).items():
            try:
                column_type(text)
            except ValueError as exc:
                raise ValueError(f"columns.{name}: {exc}") from None
        return self

    def describe(self) -> str:
        return self.files

    def declared_columns(self) -> list[str] | None:
        if self.columns is None:
            return None
        extra = [c for c in (self.path_column, self.modified_column) if c is not None]
        return [*self.columns, *extra]

    def check(self, task: Task) -> None:
        if task.changes.strategy == "watermark" and task.changes.column != self.modified_column:
            raise ValueError(
                "a watermark over files reads the files changed since the pointer: set read.modified_column "
                "and use it as changes.column"
            )


def _text_convert(kind: str) -> Callable[[str], Any]:
    if kind == "boolean":

        def boolean(text: str) -> bool:
            low = text.strip().lower()
            if low in TRUE or low in FALSE:
                return low in TRUE
            raise ValueError(f"{text!r} is not true or false")

        return boolean
    if kind in ("json", "jsonb"):
        return lambda text: CONVERT[kind](json.loads(text, parse_float=Decimal))
    return CONVERT[kind]


def arrow_kind(t: Any) -> ColumnType:
    """runner's type for an Arrow type (what `formats.arrow_type` writes, read back)."""
    import pyarrow as pa

    checks: list[tuple[Callable[[Any], bool], ColumnType]] = [
        (pa.types.is_int8, ColumnType("smallint")),
        (pa.types.is_int16, ColumnType("smallint")),
        (pa.types.is_int32, ColumnType("integer")),
        (pa.types.is_integer, ColumnType("bigint")),
        (pa.types.is_float32, ColumnType("real")),
        (pa.types.is_floating, ColumnType("double")),
        (pa.types.is_boolean, ColumnType("boolean")),
        (pa.types.is_date, ColumnType("date")),
        (pa.types.is_time, ColumnType("time")),
        (pa.types.is_duration, ColumnType("duration")),
        (pa.types.is_binary, ColumnType("binary")),
        (pa.types.is_large_binary, ColumnType("binary")),
    ]
    if pa.types.is_decimal(t):
        return ColumnType("decimal", precision=t.precision, scale=t.scale)
    if pa.types.is_timestamp(t):
        return ColumnType("timestamptz" if t.tz else "timestamp")
    for check, kind in checks:
        if check(t):
            return kind
    return ColumnType("text")  # strings, and what runner does not map: read as their text


class FileSource:
    """The reading side of the `files` connector."""

    def __init__(self, root: Path):
        self.root = root

    def matching(self, read: FileRead) -> list[tuple[dt.datetime, Path]]:
        """The files of the pattern with their modified time (naive UTC), oldest first."""
        if not self.root.is_dir():
            raise TerminalError(f"the folder {self.root} does not exist")
        found = []
        for path in self.root.glob(read.files):
            if path.is_file() and not any(part.startswith(".") for part in path.relative_to(self.root).parts):
                stamp = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC).replace(tzinfo=None)
                found.append((stamp, path))
        return sorted(found)

    def columns(self, read: FileRead, files: list[tuple[dt.datetime, Path]]) -> list[Column]:
        if read.columns is not None:
            data = [Column(name, column_type(text)) for name, text in read.columns.items()]
        elif not files:
            raise TerminalError(f"no file matches {read.files!r} to take the columns from: state 'columns'")
        elif read.format == "parquet":
            import pyarrow.parquet as pq

            schema = pq.read_schema(files[0][1])
            data = [Column(f.name, arrow_kind(f.type)) for f in schema]
        else:
            data = self._inferred(read, files[0][1])
        extra = []
        if read.path_column:
            extra.append(Column(read.path_column, ColumnType("text")))
        if read.modified_column:
            extra.append(Column(read.modified_column, ColumnType("timestamptz")))
        return data + extra

    def read(
        self,
        read: FileRead,
        batch_size: int,
        watermark: Watermark | None = None,
        select: list[str] | None = None,
        limit: int | None = None,
    ) -> ReadStream:
        files = self.matching(read)
        if watermark is not None:
            if watermark.column != read.modified_column:
                raise TerminalError("a watermark over files is on read.modified_column")
            files = [
                (stamp, path)
                for stamp, path in files
                if (watermark.since is None or stamp >= _naive(watermark.since))
                and (watermark.until is None or stamp < _naive(watermark.until))
            ]
        columns = self.columns(read, files)
        names = [c.name for c in columns]
        picked = [names.index(n) for n in select] if select is not None else None
        stream = ReadStream([columns[i] for i in picked] if picked is not None else columns, iter(()))

        def batches() -> Iterator[Batch]:
            """Rows in file order; with a watermark, the pointer is the modified time of the
            file of the last row handed out (files come oldest first)."""
            left = limit
            batch: Batch = []
            for stamp, path in files:
                relative = str(path.relative_to(self.root))
                extra = tuple(
                    v for v, wanted in ((relative, read.path_column), (stamp, read.modified_column)) if wanted
                )
                for row in self._rows(read, columns[: len(columns) - len(extra)], path):
                    full = row + extra
                    batch.append(tuple(full[i] for i in picked) if picked is not None else full)
                    left = None if left is None else left - 1
                    if len(batch) >= batch_size or left == 0:
                        if watermark is not None:
                            stream.pointer = stamp
                        yield batch
                        batch = []
                    if left == 0:
                        return
                if batch and watermark is not None:
                    stream.pointer = stamp
            if batch:
                yield batch

        stream.batches = batches()
        return stream

    def highest(self, read: FileRead, column: str) -> Any:
        if column != read.modified_column:
            raise TerminalError("a watermark over files is on read.modified_column")
        files = self.matching(read)
        return files[-1][0] if files else None

    def _inferred(self, read: FileRead, path: Path) -> list[Column]:
        """A CSV header's (a JSON line's keys') columns, typed from a sample of `path`."""
        where = str(path.relative_to(self.root))
        names: list[str] = []
        rows: list[list[Any]] = []
        try:
            with _text(path, read.csv.encoding) as f:
                if read.format == "csv":
                    reader = csv.reader(f, delimiter=read.csv.delimiter, quotechar=read.csv.quote)
                    names = next(reader, [])
                    rows = list(itertools.islice(reader, SAMPLE_ROWS))
                else:
                    documents = []
                    for text in itertools.islice(f, SAMPLE_ROWS):
                        if text.strip():
                            document = json.loads(text, parse_float=Decimal)
                            if isinstance(document, dict):
                                documents.append(document)
                    names = list(dict.fromkeys(k for d in documents for k in d))
                    rows = [[d.get(n) for n in names] for d in documents]
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise TerminalError(
                f"{where}: cannot take its columns from it ({exc}): state 'columns'"
            ) from None
        if not names:
            raise TerminalError(f"{where}: no header or keys to take the columns from: state 'columns'")
        return infer(names, rows, read.csv.null)

    def _rows(self, read: FileRead, columns: list[Column], path: Path) -> Iterator[tuple]:
        where = str(path.relative_to(self.root))
        reject = Rejects(self.root, read.dead_letter)
        try:
            if read.format == "parquet":
                yield from _parquet(path, columns, where, reject)
            elif read.format == "jsonl":
                yield from _jsonl(path, columns, where, read.csv.encoding, reject)
            else:
                yield from _csv(path, columns, where, read.csv, reject)
        except OSError as exc:
            raise TerminalError(f"{where}: cannot read: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise TerminalError(
                f"{where}: not {read.csv.encoding} text ({exc.reason} at byte {exc.start})"
            ) from None


class Rejects:
    """Where the rows that do not fit go: nowhere (the task stops, naming the row), or a line
    each in the dead-letter folder's `<file>.rejected`, synced as it is written."""

    def __init__(self, root: Path, folder: str | None):
        self.folder = (root / folder).resolve() if folder else None

    def __call__(self, where: str, line: int, reason: str, raw: Any = None) -> None:
        at = f"{where}:{line}" if line else where
        if self.folder is None:
            raise TerminalError(f"{at}: {reason}")
        target = self.folder / f"{where}.rejected"
        entry = {"file": where, "line": line or None, "reason": reason, "raw": raw}
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "ab") as f:
                f.write(json.dumps(entry, ensure_ascii=False).encode() + b"\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise TerminalError(
                f"{at}: {reason}; and the dead letter {target} cannot be written: {exc.strerror}"
            ) from None


def _naive(value: Any) -> Any:
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    if isinstance(value, str):
        return _naive(dt.datetime.fromisoformat(value.replace("Z", "+00:00")))
    return value


def _text(path: Path, encoding: str) -> io.TextIOBase:
    raw = gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")  # noqa: SIM115
    return io.TextIOWrapper(raw, encoding=encoding, newline="")  # type: ignore[return-value]


def _csv(
    path: Path, columns: list[Column], where: str, dialect: CsvDialect, reject: Rejects
) -> Iterator[tuple]:
    converts = [_text_convert(c.type.kind) for c in columns]
    with _text(path, dialect.encoding) as f:
        reader = csv.reader(f, delimiter=dialect.delimiter, quotechar=dialect.quote)
        order = list(range(len(columns)))
        width = len(columns)
        if dialect.header:
            header = next(reader, None)
            if header is None:
                return
            missing = [c.name for c in columns if c.name not in header]
            if missing:
                raise TerminalError(
                    f"{where}:1: column(s) {', '.join(missing)} not in the header ({', '.join(header)})"
                )
            order, width = [header.index(c.name) for c in columns], len(header)
        for cells in reader:
            line = reader.line_num
            if len(cells) != width:
                reject(where, line, f"{len(cells)} fields, expected {width}", cells)
                continue
            row: list[Any] | None = []
            for column, convert, i in zip(columns, converts, order, strict=True):
                cell = cells[i]
                if cell == dialect.null:
                    row.append(None)  # type: ignore[union-attr]
                    continue
                try:
                    row.append(convert(cell))  # type: ignore[union-attr]
                except (ValueError, TypeError, ArithmeticError) as exc:
                    reject(where, line, f"column {column.name!r} ({column.type}): {exc}", cells)
                    row = None
                    break
            if row is not None:
                yield tuple(row)


def _jsonl(path: Path, columns: list[Column], where: str, encoding: str, reject: Rejects) -> Iterator[tuple]:
    decode = row_decoder([(c, [c.name]) for c in columns])
    with _text(path, encoding) as f:
        for line, text in enumerate(f, 1):
            if not text.strip():
                continue
            try:
                document = json.loads(text, parse_float=Decimal)
                if not isinstance(document, dict):
                    raise BadMessage(f"a JSON {type(document).__name__}, not an object")
                row = decode(document)
            except (BadMessage, ValueError) as exc:
                reject(where, line, str(exc), text.rstrip("\n"))
                continue
            yield row


def _parquet(path: Path, columns: list[Column], where: str, reject: Rejects) -> Iterator[tuple]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
        names = parquet.schema_arrow.names
        missing = [c.name for c in columns if c.name not in names]
        if missing:
            raise TerminalError(
                f"{where}: column(s) {', '.join(missing)} not in the file ({', '.join(names)})"
            )
        fix = [_from_arrow(c.type) for c in columns]
        for record_batch in parquet.iter_batches(columns=[c.name for c in columns]):
            data = [record_batch.column(i).to_pylist() for i in range(len(columns))]
            for values in zip(*data, strict=True):
                yield tuple(f(v) for f, v in zip(fix, values, strict=True))
    except (pa.ArrowInvalid, pa.ArrowIOError) as exc:  # a truncated file fails at its footer, before any row
        reject(where, 0, f"not a readable Parquet file ({exc})")


def _from_arrow(t: ColumnType) -> Callable[[Any], Any]:
    if t.kind in ("timestamp", "timestamptz"):
        return _naive
    if t.kind in ("json", "jsonb"):
        return lambda v: json.loads(v) if isinstance(v, str) else v
    if t.kind == "uuid":
        return lambda v: CONVERT["uuid"](v) if v is not None else None
    return lambda v: v
