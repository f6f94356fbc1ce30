"""Rows into a file of a format: CSV (the csv module: streaming, its dialect stated), JSON lines
(the values as `runner.connectors.messaging.encode` writes them) and Parquet (pyarrow, each
column in the Arrow type closest to runner's). Every writer takes (operation, row) pairs in
order and writes the operation as a column when the task keeps one, into a binary file it is
given (on this machine or a server's, `runner.connectors.files.location`) and closes."""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Callable
from typing import IO, Any, Protocol

from runner.connectors.messaging.encode import any_value, dumps, row_encoder
from runner.streams.types import Column, ColumnType

EXTENSIONS = {"csv": "csv", "jsonl": "jsonl", "json": "json", "parquet": "parquet"}


class FormatWriter(Protocol):
    def write(self, rows: list[tuple[str, tuple]]) -> None: ...

    def close(self) -> None:
        """Flush everything to the file and close it (the caller then renames it)."""
        ...


def _text(value: Any) -> str | None:
    """A canonical value as CSV text: JSON's encoding, unquoted (README: values as JSON)."""
    if value is None:
        return None
    encoded = any_value(value)
    if isinstance(encoded, str):
        return encoded
    if isinstance(encoded, bool):
        return "true" if encoded else "false"
    if isinstance(encoded, dict | list):
        return json.dumps(encoded, ensure_ascii=False, separators=(",", ":"))
    return str(encoded)


def _json_text(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(any_value(value), ensure_ascii=False, separators=(",", ":"))


class _Gzipped(gzip.GzipFile):
    """A gzip stream that closes the file under it too."""

    def close(self) -> None:
        raw = self.fileobj
        super().close()
        if raw is not None:
            raw.close()


def _open_text(raw: IO[bytes], encoding: str, gzipped: bool) -> IO[str]:
    stream: IO[bytes] = _Gzipped(fileobj=raw, mode="wb") if gzipped else raw  # type: ignore[assignment]
    if isinstance(stream, io.RawIOBase):
        stream = io.BufferedWriter(stream, 1 << 20)  # type: ignore[assignment]
    return io.TextIOWrapper(stream, encoding=encoding, newline="")  # type: ignore[type-var]


class CsvWriter:
    def __init__(self, raw: IO[bytes], columns: list[Column], op: str | None, options: Any, gzipped: bool):
        self.file = _open_text(raw, options.encoding, gzipped)
        self.null = options.null
        self.out = csv.writer(
            self.file, delimiter=options.delimiter, quotechar=options.quote, lineterminator="\n"
        )
        self.op = op
        # a JSON column's cell is its JSON text, a string too (quoted): read back by json.loads
        self.texts = [_json_text if c.type.kind in ("json", "jsonb") else _text for c in columns]
        if options.header:
            self.out.writerow(([op] if op else []) + [c.name for c in columns])

    def write(self, rows: list[tuple[str, tuple]]) -> None:
        null, texts = self.null, self.texts
        for operation, row in rows:
            cells = [null if (t := text(v)) is None else t for text, v in zip(texts, row, strict=True)]
            self.out.writerow([operation, *cells] if self.op else cells)

    def close(self) -> None:
        self.file.close()


class JsonLinesWriter:
    def __init__(self, raw: IO[bytes], columns: list[Column], op: str | None, options: Any, gzipped: bool):
        self.file: IO[bytes] = _Gzipped(fileobj=raw, mode="wb") if gzipped else raw  # type: ignore[assignment]
        self.encode = row_encoder(columns)
        self.op = op

    def write(self, rows: list[tuple[str, tuple]]) -> None:
        lines = []
        for operation, row in rows:
            values = self.encode(row)
            lines.append(dumps({self.op: operation, **values} if self.op else values) + b"\n")
        self.file.write(b"".join(lines))

    def close(self) -> None:
        self.file.close()


class JsonArrayWriter(JsonLinesWriter):
    """One JSON array, an element per line: `[` first, `]` last, a comma before each but the first."""

    def __init__(self, raw: IO[bytes], columns: list[Column], op: str | None, options: Any, gzipped: bool):
        super().__init__(raw, columns, op, options, gzipped)
        self.file.write(b"[")
        self.first = True

    def write(self, rows: list[tuple[str, tuple]]) -> None:
        lines = []
        for operation, row in rows:
            values = self.encode(row)
            lines.append(
                (b"\n" if self.first else b",\n")
                + dumps({self.op: operation, **values} if self.op else values)
            )
            self.first = False
        self.file.write(b"".join(lines))

    def close(self) -> None:
        self.file.write(b"\n]\n")
        super().close()


def arrow_type(t: ColumnType) -> Any:
    """The Arrow type a column of runner's type is written as in Parquet."""
    import pyarrow as pa

    return {
        "smallint": pa.int16(),
        "integer": pa.int32(),
        "bigint": pa.int64(),
        "real": pa.float32(),
        "double": pa.float64(),
        "boolean": pa.bool_(),
        "date": pa.date32(),
        "time": pa.time64("us"),
        "duration": pa.duration("us"),
        "timestamp": pa.timestamp("us"),
        "timestamptz": pa.timestamp("us", tz="UTC"),
        "binary": pa.binary(),
    }.get(t.kind) or (
        pa.decimal128(t.precision, t.scale or 0)
        if t.kind == "decimal" and t.precision is not None and t.precision <= 38
        else pa.string()  # text, JSON (its text), UUID, a decimal without or past 38 digits
    )


def _to_arrow(t: ColumnType) -> Callable[[Any], Any]:
    if t.kind in ("json", "jsonb"):
        return lambda v: None if v is None else json.dumps(v, ensure_ascii=False, separators=(",", ":"))
    if t.kind == "uuid" or (t.kind == "decimal" and not (t.precision and t.precision <= 38)):
        return lambda v: None if v is None else str(v)
    return lambda v: v


class ParquetWriter:
    def __init__(self, raw: IO[bytes], columns: list[Column], op: str | None, options: Any, gzipped: bool):
        import pyarrow as pa
        import pyarrow.parquet as pq

        fields = ([pa.field(op, pa.string(), nullable=False)] if op else []) + [
            pa.field(c.name, arrow_type(c.type)) for c in columns
        ]
        self.schema = pa.schema(fields)
        self.convert = [_to_arrow(c.type) for c in columns]
        self.op = op
        self.raw = raw
        self.out = pq.ParquetWriter(raw, self.schema, compression="zstd")

    def write(self, rows: list[tuple[str, tuple]]) -> None:
        import pyarrow as pa

        columns: list[list[Any]] = [[] for _ in self.schema]
        shift = 1 if self.op else 0
        for operation, row in rows:
            if self.op:
                columns[0].append(operation)
            for i, (convert, value) in enumerate(zip(self.convert, row, strict=True)):
                columns[i + shift].append(convert(value))
        arrays = [
            pa.array(values, type=field.type) for values, field in zip(columns, self.schema, strict=True)
        ]
        self.out.write_table(pa.Table.from_arrays(arrays, schema=self.schema))

    def write_batch(self, batch: Any) -> None:
        """Arrow's record batch of the columns, in their `arrow_type`s (`FastPath.arrow`)."""
        import pyarrow as pa

        arrays = list(batch.columns)
        if self.op:
            arrays.insert(0, pa.array(["upsert"] * batch.num_rows, pa.string()))
        self.out.write_table(pa.Table.from_arrays(arrays, schema=self.schema))

    def close(self) -> None:
        self.out.close()
        self.raw.close()


WRITERS: dict[str, Callable[..., FormatWriter]] = {
    "csv": CsvWriter,
    "jsonl": JsonLinesWriter,
    "json": JsonArrayWriter,
    "parquet": ParquetWriter,
}
