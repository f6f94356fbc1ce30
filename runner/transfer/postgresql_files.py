"""PostgreSQL to Parquet files: the source's `COPY … TO STDOUT (FORMAT csv)` is parsed by
Arrow's CSV reader straight into the column types the batch path writes (`formats.arrow_type`),
so no row passes through Python: PostgreSQL prints each value, Arrow's C++ reads it.

Only what reads back as the batch path writes it takes this path: integers, decimals of at
most 38 digits, text, booleans, dates and time stamps (a timestamptz printed as its UTC
instant). NULL is the one unquoted empty cell (an empty string is quoted), and no other text
is NULL (Arrow's default list would make the word `NA` one)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

from runner.connectors.base import Source
from runner.connectors.files.formats import arrow_type
from runner.connectors.sql.fastpath import FastPath
from runner.connectors.sql.postgresql import PostgresqlConnector, blocks
from runner.definitions.tasks import ReadSpec
from runner.streams.readahead import ReadAhead
from runner.streams.types import Column
from runner.transfer.registry import FAST_PATHS

PLAIN = {
    "smallint",
    "integer",
    "bigint",
    "text",
    "varchar",
    "char",
    "boolean",
    "date",
    "timestamp",
    "timestamptz",
}
BLOCK = 4 << 20  # bytes of CSV Arrow parses into one record batch (~33,000 rows: a row group)


class _Chunks(io.RawIOBase):
    """A file object over the COPY's output (a message per row, joined into blocks: `blocks`)
    for Arrow to read."""

    def __init__(self, chunks: Iterator[bytes]):
        # read in a thread of its own: PostgreSQL sends while Arrow parses and Parquet compresses
        self.ahead = ReadAhead(blocks(chunks), depth=4)
        self.chunks = iter(self.ahead)
        self.left = memoryview(b"")

    def close(self) -> None:
        self.ahead.close()  # a read stopped half-way gives its connection back
        super().close()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self.left:
            block = next(self.chunks, None)
            if block is None:
                return 0
            self.left = memoryview(block)
        size = min(len(buffer), len(self.left))
        buffer[:size] = self.left[:size]
        self.left = self.left[size:]
        return size


def _plain(column: Column) -> bool:
    t = column.type
    return t.kind in PLAIN or (t.kind == "decimal" and t.precision is not None and t.precision <= 38)


class PostgresqlToFiles(FastPath):
    def arrow(self, source: Source, spec: ReadSpec, columns: list[Column]) -> Iterator[Any] | None:
        if not isinstance(source, PostgresqlConnector) or not all(_plain(c) for c in columns):
            return None
        return self._batches(source, spec, columns)

    @staticmethod
    def _batches(source: PostgresqlConnector, spec: ReadSpec, columns: list[Column]) -> Iterator[Any]:
        import pyarrow as pa
        import pyarrow.csv as pcsv

        q = source.quote
        exprs = [
            f"({q(c.name)} AT TIME ZONE 'UTC')" if c.type.kind == "timestamptz" else q(c.name)
            for c in columns
        ]
        select = f"SELECT {', '.join(exprs)} FROM {source.source_sql(spec)}"
        final = pa.schema([pa.field(c.name, arrow_type(c.type)) for c in columns])
        # a timestamptz is read as the naive UTC instant it was printed as, then labelled UTC
        read_as = pa.schema(
            [
                pa.field(c.name, pa.timestamp("us")) if c.type.kind == "timestamptz" else f
                for c, f in zip(columns, final, strict=True)
            ]
        )
        chunks = _Chunks(source.copy_out(select, csv=True))
        reader = pcsv.open_csv(
            chunks,
            read_options=pcsv.ReadOptions(column_names=final.names, block_size=BLOCK, use_threads=False),
            parse_options=pcsv.ParseOptions(newlines_in_values=True),
            convert_options=pcsv.ConvertOptions(
                column_types=read_as,
                null_values=[""],
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
                true_values=["t"],
                false_values=["f"],
            ),
        )
        try:
            for batch in reader:
                yield batch if read_as == final else batch.cast(final)
        finally:
            chunks.close()


FAST_PATHS.register(("postgresql", "files"), PostgresqlToFiles())
