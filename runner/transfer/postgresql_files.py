"""PostgreSQL to Parquet files: the source's `COPY … TO STDOUT (FORMAT csv)` is parsed by
Arrow's CSV reader straight into the column types the batch path writes (`formats.arrow_type`),
so no row passes through Python: PostgreSQL prints each value, Arrow's C++ reads it.

Only what reads back as the batch path writes it takes this path: integers, decimals of at
most 38 digits, text, booleans, dates and time stamps (a timestamptz printed as its UTC
instant). NULL is the one unquoted empty cell (an empty string is quoted), and no other text
is NULL (Arrow's default list would make the word `NA` one)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from runner.connectors.base import Source
from runner.connectors.files.formats import arrow_type
from runner.connectors.sql.fastpath import FastPath
from runner.connectors.sql.postgresql import PostgresqlConnector
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
# bytes of whole CSV rows parsed at a time into one record batch, written as one Parquet row
# group (~8,000 rows of the benchmark's; a group of ~2,000 costs a third more to write). Each
# block is parsed on its own (`read_csv`): Arrow's streaming reader would read dozens of blocks
# ahead in a thread of its own (~30 MB at 1 MB a block, more rows ahead the more rows read)
BLOCK = 1 << 20


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
        read = pcsv.ReadOptions(column_names=final.names, block_size=2 * BLOCK, use_threads=False)
        parse = pcsv.ParseOptions(newlines_in_values=True)
        convert = pcsv.ConvertOptions(
            column_types=read_as,
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            true_values=["t"],
            false_values=["f"],
        )
        # PostgreSQL sends, in a thread of its own, while Arrow parses and Parquet compresses
        ahead = ReadAhead(source.copy_out(select, csv=True, size=BLOCK), depth=4)
        try:
            for block in ahead:
                for batch in pcsv.read_csv(pa.py_buffer(block), read, parse, convert).to_batches():
                    yield batch if read_as == final else batch.cast(final)
        finally:
            ahead.close()  # a read stopped half-way gives its connection back


FAST_PATHS.register(("postgresql", "files"), PostgresqlToFiles())
