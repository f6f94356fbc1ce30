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
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import IO, Any, Literal

from pydantic import Field, field_validator, model_validator

from runner.connectors.base import ReadStream, Watermark
from runner.connectors.files.infer import SAMPLE_ROWS, infer
from runner.connectors.files.jsonarray import BadJson, documents
from runner.connectors.files.location import Folder, failure
from runner.connectors.messaging.decode import CONVERT, BadMessage, column_type
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
    format: Literal["csv", "jsonl", "json", "parquet"] = Field(
        description="The files' format: csv, jsonl (an object per line), json (an array of objects, "
        "streamed), parquet."
    )
    csv: CsvDialect = Field(default_factory=CsvDialect, description="With format csv: its dialect.")
    columns: dict[str, str] | None = Field(
        None,
        description="The columns and their types (`id: bigint`, `amount: decimal(12,2)`). Unset: a "
        "Parquet file's own; a CSV header's names (a JSON line's keys) with types inferred from the "
        "first 1,000 rows of the first file (shown in the run's history; state them to be sure).",
    )
    path_column: str | None = Field(None, min_length=1, description="A column with each row's file path.")
    row_column: str | None = Field(
        None,
        min_length=1,
        description="A column with each row's number in its file (from 1): with path_column, a key "
        "for files without one, so a file read again replaces its own rows.",
    )
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


def _fits(column: Column) -> Callable[[Any], Any] | None:
    """A check that a converted value fits its column where the type bounds it (a varchar's
    length, a decimal's digits before the point), giving the value back; None where unbounded."""
    t = column.type
    if t.kind in ("varchar", "char") and t.length is not None:
        length = t.length

        def text(value: Any) -> Any:
            if isinstance(value, str) and len(value) > length:
                raise ValueError(f"{len(value)} characters, more than the {length} it holds")
            return value

        return text
    if t.kind == "decimal" and t.precision is not None:
        whole = t.precision - (t.scale or 0)

        def number(value: Any) -> Any:
            if isinstance(value, Decimal) and value.is_finite() and value.adjusted() + 1 > whole:
                raise ValueError(f"{value} has more than the {whole} digit(s) before the point it holds")
            return value

        return number
    return None


def _object_decoder(columns: list[Column]) -> Callable[[Any], tuple]:
    """A JSON object -> a row of `columns` by key (a key absent or null: NULL); a value that
    does not fit raises `BadMessage` as `column: message`."""
    steps = [(c, CONVERT[c.type.kind], _fits(c) or (lambda value: value)) for c in columns]

    def decode(document: Any) -> tuple:
        if not isinstance(document, dict):
            raise BadMessage(f"a JSON {type(document).__name__}, not an object")
        row = []
        for column, convert, fits in steps:
            value = document.get(column.name)
            if value is None:
                row.append(None)
                continue
            try:
                row.append(fits(convert(value)))
            except (ValueError, TypeError, ArithmeticError) as exc:
                raise BadMessage(_misfit(column, exc)) from None
        return tuple(row)

    return decode


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

    def __init__(self, folder: Folder):
        self.folder = folder

    def matching(self, read: FileRead) -> list[tuple[dt.datetime, str]]:
        """The files of the pattern (relative to the folder) with their modified time (naive
        UTC), oldest first, then by name."""
        try:
            return self.folder.files(read.files)
        except TerminalError:
            raise
        except Exception as exc:  # noqa: BLE001 - each location's library raises its own
            raise failure(f"cannot list {self.folder.where}", exc) from None

    def columns(self, read: FileRead, files: list[tuple[dt.datetime, str]]) -> list[Column]:
        if read.columns is not None:
            data = [Column(name, column_type(text)) for name, text in read.columns.items()]
        elif not files:
            raise TerminalError(f"no file matches {read.files!r} to take the columns from: state 'columns'")
        elif read.format == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            try:
                with self.folder.seekable(files[0][1]) as f:
                    schema = pq.read_schema(f)
            except (pa.ArrowInvalid, OSError) as exc:
                raise TerminalError(
                    f"{files[0][1]}: not a readable Parquet file ({exc}): state 'columns'"
                ) from None
            data = [Column(f.name, arrow_kind(f.type)) for f in schema]
        else:
            data = self._inferred(read, files[0][1])
        extra = []
        if read.path_column:
            extra.append(Column(read.path_column, ColumnType("text")))
        if read.row_column:
            extra.append(Column(read.row_column, ColumnType("bigint")))
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
        files: list[tuple[dt.datetime, str]] | None = None,
    ) -> ReadStream:
        """The rows of the read's files (or of `files`, listed before), oldest file first."""
        files = self.matching(read) if files is None else files
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
            for stamp, relative in files:
                head = (relative,) if read.path_column else ()
                tail = (stamp,) if read.modified_column else ()
                width = len(columns) - len(head) - len(tail) - (1 if read.row_column else 0)
                for number, row in enumerate(self._rows(read, columns[:width], relative), 1):
                    full = row + head + ((number,) if read.row_column else ()) + tail
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

    def _inferred(self, read: FileRead, where: str) -> list[Column]:
        """A CSV header's (a JSON line's or array's keys') columns, typed from a sample of the file."""
        names: list[str] = []
        rows: list[list[Any]] = []
        try:
            with _text(self.folder.open_read(where), where, read.csv.encoding) as f:
                if read.format == "csv":
                    reader = csv.reader(f, delimiter=read.csv.delimiter, quotechar=read.csv.quote)
                    names = next(reader, [])
                    rows = list(itertools.islice(reader, SAMPLE_ROWS))
                else:
                    sample = []
                    if read.format == "json":
                        found = (d for _, d in documents(f))
                    else:
                        found = (json.loads(t, parse_float=Decimal) for t in f if t.strip())
                    for document in itertools.islice(found, SAMPLE_ROWS):
                        if isinstance(document, dict):
                            sample.append(document)
                    names = list(dict.fromkeys(k for d in sample for k in d))
                    rows = [[d.get(n) for n in names] for d in sample]
        except (OSError, UnicodeDecodeError, ValueError, BadJson) as exc:
            raise TerminalError(
                f"{where}: cannot take its columns from it ({exc}): state 'columns'"
            ) from None
        if not names:
            raise TerminalError(f"{where}: no header or keys to take the columns from: state 'columns'")
        return infer(names, rows, read.csv.null)

    def _rows(self, read: FileRead, columns: list[Column], where: str) -> Iterator[tuple]:
        yield from rows_of(self.folder, read, columns, where)


def rows_of(folder: Folder, read: FileRead, columns: list[Column], where: str) -> Iterator[tuple]:
    """The rows of one file of the folder, as `columns` (a row that does not fit: `Rejects`).

    Raises:
        TerminalError: `path:line: column: message` for what does not fit (unless dead-lettered),
            `path:line: ...` for text not in its encoding, `path: ...` for an unreadable file.
    """
    reject = Rejects(folder, read.dead_letter)
    counted: _Lines | None = None
    try:
        if read.format == "parquet":
            yield from _parquet(folder, columns, where, reject)
            return
        counted = _Lines(folder.open_read(where))
        if read.format == "jsonl":
            yield from _jsonl(counted, columns, where, read.csv.encoding, reject)
        elif read.format == "json":
            yield from _json_array(counted, columns, where, read.csv.encoding, reject)
        else:
            yield from _csv(counted, columns, where, read.csv, reject)
    except UnicodeDecodeError as exc:
        line = counted.line_of(exc) if counted is not None else 0
        raise TerminalError(
            f"{where}:{line}: not {read.csv.encoding} text ({exc.reason}: byte {exc.object[exc.start]:#04x})"
        ) from None
    except (OSError, EOFError) as exc:
        raise TerminalError(f"{where}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    finally:
        if counted is not None:
            counted.close()


class _Lines(io.RawIOBase):
    """A file's bytes counting its newlines, so that a decoding error can name its line."""

    def __init__(self, raw: IO[bytes]):
        self.raw, self.newlines = raw, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.newlines += data.count(b"\n")
        return n

    def line_of(self, exc: UnicodeDecodeError) -> int:
        """The line of the bad byte: the lines read before the chunk being decoded, plus the
        chunk's own up to the byte (a gzipped file: its text's lines, counted alike)."""
        chunk = exc.object if isinstance(exc.object, bytes) else bytes(exc.object)
        return self.newlines - chunk.count(b"\n") + chunk[: exc.start].count(b"\n") + 1

    def close(self) -> None:
        if not self.closed:
            self.raw.close()
        super().close()


class Rejects:
    """Where the rows that do not fit go: nowhere (the task stops, naming the row), or a line
    each in the dead-letter folder's `<file>.rejected`, written (locally: synced) as it comes."""

    def __init__(self, folder: Folder, dead_letter: str | None):
        self.folder, self.dead_letter = folder, dead_letter

    def __call__(self, where: str, line: int, reason: str, raw: Any = None) -> None:
        at = f"{where}:{line}" if line else where
        if self.dead_letter is None:
            raise TerminalError(f"{at}: {reason}")
        target = f"{self.dead_letter}/{where}.rejected"
        entry = {"file": where, "line": line or None, "reason": reason, "raw": raw}
        try:
            self.folder.append(target, json.dumps(entry, ensure_ascii=False).encode() + b"\n")
        except Exception as exc:  # noqa: BLE001 - each location's library raises its own
            raise TerminalError(
                f"{at}: {reason}; and the dead letter {target} cannot be written: {failure('', exc)}"
            ) from None


def _naive(value: Any) -> Any:
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    if isinstance(value, str):
        return _naive(dt.datetime.fromisoformat(value.replace("Z", "+00:00")))
    return value


def _text(raw: IO[bytes], name: str, encoding: str) -> io.TextIOBase:
    """A file's text (gunzipped when its name ends in `.gz`), streamed."""
    stream: IO[bytes] = gzip.GzipFile(fileobj=raw, mode="rb") if name.endswith(".gz") else raw  # type: ignore[assignment]
    return io.TextIOWrapper(
        io.BufferedReader(stream) if isinstance(stream, io.RawIOBase) else stream,
        encoding=encoding,
        newline="",
    )  # type: ignore[arg-type,return-value]


def _misfit(column: Column, exc: BaseException) -> str:
    """`column: message`: a value that does not fit its column's type."""
    return f"{column.name}: {exc} (a {column.type} column)"


# a CSV cell is text already: the plain constructors, where they take what `CONVERT` takes
_CELL: dict[str, Callable[[str], Any]] = {
    "smallint": int,
    "integer": int,
    "bigint": int,
    "decimal": Decimal,
    "real": float,
    "double": float,
    "text": str,
    "varchar": str,
    "char": str,
}


def _cell_timestamp(cell: str) -> dt.datetime:
    """A timestamp cell: naive as written, or with an offset (or Z) made naive UTC."""
    parsed = dt.datetime.fromisoformat(cell)
    if parsed.tzinfo is not None:
        return parsed.astimezone(dt.UTC).replace(tzinfo=None)
    return parsed


def _cell_convert(column: Column) -> Callable[[str], Any]:
    """A cell -> its column's value, checked against the column's bounds (the checks inlined
    for the common types: this runs once per cell)."""
    t = column.type
    if t.kind == "decimal" and t.precision is not None:
        limit = Decimal(10) ** (t.precision - (t.scale or 0))

        def decimal(cell: str) -> Decimal:
            value = Decimal(cell)
            if -limit < value < limit or not value.is_finite():
                return value
            raise ValueError("too many digits")  # `_why` says it in full

        return decimal
    if t.kind in ("timestamp", "timestamptz"):
        return _cell_timestamp
    convert = _CELL.get(t.kind) or _text_convert(t.kind)
    fit = _fits(column)
    if fit is None:
        return convert
    return lambda cell: fit(convert(cell))


def _csv(
    raw: IO[bytes], columns: list[Column], where: str, dialect: CsvDialect, reject: Rejects
) -> Iterator[tuple]:
    with _text(raw, where, dialect.encoding) as f:
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
        steps = [(i, _cell_convert(c)) for c, i in zip(columns, order, strict=True)]
        null = dialect.null
        for cells in reader:
            if len(cells) != width:
                reject(where, reader.line_num, f"{len(cells)} fields, expected {width}", cells)
                continue
            try:
                row = tuple([None if (cell := cells[i]) == null else convert(cell) for i, convert in steps])
            except (ValueError, TypeError, ArithmeticError):
                reject(where, reader.line_num, _why(columns, order, cells, null), cells)
                continue
            yield row


def _why(columns: list[Column], order: list[int], cells: list[str], null: str) -> str:
    """`column: message` for the first cell of a row that does not fit, in `CONVERT`'s words."""
    for column, i in zip(columns, order, strict=True):
        if cells[i] == null:
            continue
        fit = _fits(column) or (lambda value: value)
        try:
            fit(_text_convert(column.type.kind)(cells[i]))
        except (ValueError, TypeError, ArithmeticError) as exc:
            return _misfit(column, exc)
    return "a value does not fit its column"


def _jsonl(
    raw: IO[bytes], columns: list[Column], where: str, encoding: str, reject: Rejects
) -> Iterator[tuple]:
    decode = _object_decoder(columns)
    with _text(raw, where, encoding) as f:
        for line, text in enumerate(f, 1):
            if not text.strip():
                continue
            try:
                row = decode(json.loads(text, parse_float=Decimal))
            except (BadMessage, ValueError) as exc:
                reject(where, line, str(exc), text.rstrip("\n"))
                continue
            yield row


def _json_array(
    raw: IO[bytes], columns: list[Column], where: str, encoding: str, reject: Rejects
) -> Iterator[tuple]:
    """A file holding one JSON array of objects, streamed an element at a time."""
    decode = _object_decoder(columns)
    with _text(raw, where, encoding) as f:
        try:
            for line, document in documents(f):
                try:
                    row = decode(document)
                except (BadMessage, ValueError) as exc:
                    reject(where, line, str(exc), document)
                    continue
                yield row
        except BadJson as exc:  # the rest of the file cannot be told apart: it fails whole
            raise TerminalError(f"{where}:{exc.line}: {exc}") from None


def _parquet(folder: Folder, columns: list[Column], where: str, reject: Rejects) -> Iterator[tuple]:
    """A Parquet file's rows, a row group's batch at a time; a row's line is its number."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    row = 0
    try:
        with folder.seekable(where) as f:
            parquet = pq.ParquetFile(f, pre_buffer=False)  # a page at a time: bounded memory
            names = parquet.schema_arrow.names
            missing = [c.name for c in columns if c.name not in names]
            if missing:
                raise TerminalError(
                    f"{where}: column(s) {', '.join(missing)} not in the file ({', '.join(names)})"
                )
            fix = [_from_arrow(c.type) for c in columns]
            # one thread: decoding is not what takes the time (the rows into Python are), memory is
            batches = parquet.iter_batches(
                batch_size=8192, columns=[c.name for c in columns], use_threads=False
            )
            for record_batch in batches:
                data = [record_batch.column(i).to_pylist() for i in range(len(columns))]
                for values in zip(*data, strict=True):
                    row += 1
                    yield tuple(f(v) for f, v in zip(fix, values, strict=True))
    except (
        pa.ArrowInvalid,
        pa.ArrowIOError,
        OSError,
    ) as exc:  # a truncated file fails at its footer, before any row
        reject(where, row, f"not a readable Parquet file ({exc})")


def _from_arrow(t: ColumnType) -> Callable[[Any], Any]:
    if t.kind in ("timestamp", "timestamptz"):
        return _naive
    if t.kind in ("json", "jsonb"):
        return lambda v: json.loads(v) if isinstance(v, str) else v
    if t.kind == "uuid":
        return lambda v: CONVERT["uuid"](v) if v is not None else None
    return lambda v: v
