"""PostgreSQL to MariaDB: PostgreSQL formats every value (its types' own text output) and
joins the rows into tab-separated pieces of thousands of lines, which MariaDB's LOAD DATA reads
as they are, served from memory by the guarded connection."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from runner.connectors.base import Source
from runner.connectors.sql.fastpath import FastPath
from runner.connectors.sql.mariadb import MariadbConnector
from runner.connectors.sql.postgresql import PostgresqlConnector
from runner.definitions.tasks import ReadSpec
from runner.streams.readahead import ReadAhead
from runner.streams.types import Column, ColumnType
from runner.transfer.registry import FAST_PATHS


class PostgresqlToMariadb(FastPath):
    def copy(
        self,
        target: MariadbConnector,
        cursor: Any,
        source: Source,
        spec: ReadSpec,
        columns: list[Column],
        into: str,
        targets: list[ColumnType],
        where: str = "",
        progress: Callable[[int], None] | None = None,
    ) -> int | None:
        """PostgreSQL to MariaDB: PostgreSQL formats every value (its types' own text output)
        and joins the rows into tab-separated pieces of thousands of lines (`text_pieces`),
        which LOAD DATA reads as they are, file by file of a few MB."""
        if not isinstance(source, PostgresqlConnector) or target.local_infile is False:
            return None
        exprs = []
        for col in columns:
            name, kind = source.quote(col.name), col.type.kind
            if kind not in _COPY_TEXT:
                return None
            exprs.append((_COPY_TEXT[kind].format(name), kind in _TEXT_KINDS))
        names = [target.quote(c.name) for c in columns]
        binary = [c.type.kind == "binary" for c in columns]
        rows = 0
        from_sql = source.source_sql(spec) + (f" WHERE {where}" if where else "")
        pieces = _joined(source.text_pieces(exprs, from_sql), _LOAD_BYTES)
        for data in ReadAhead(pieces):
            rows += data.count(b"\n")  # a newline in a value is escaped: each one ends a row
            target.load(cursor, data, into, names, binary)
            if progress is not None:
                progress(rows)
        return rows


# PostgreSQL column -> the expression whose COPY text LOAD DATA reads into the MariaDB column
_COPY_TEXT = {
    "smallint": "{}",
    "integer": "{}",
    "bigint": "{}",
    "decimal": "{}",
    "real": "{}",
    "double": "{}",
    "text": "{}",
    "varchar": "{}",
    "char": "{}",
    "date": "{}",
    "time": "{}",
    "timestamp": "{}",
    "timestamptz": "({} AT TIME ZONE 'UTC')",  # UTC in DATETIME(6), as the batch path does
    "boolean": "{}::int",
    "json": "{}",
    "jsonb": "{}",
    "uuid": "{}",
    "binary": "encode({}, 'hex')",  # LOAD DATA: SET col = UNHEX(@v)
}
_LOAD_BYTES = 4 << 20
_TEXT_KINDS = {"text", "varchar", "char", "json", "jsonb"}  # may hold a tab, newline or backslash


def _joined(pieces: Iterator[bytes], size: int) -> Iterator[bytes]:
    """The pieces joined into pieces of about `size` bytes (a LOAD DATA each)."""
    parts: list[bytes] = []
    length = 0
    for piece in pieces:
        parts.append(piece)
        length += len(piece)
        if length >= size:
            yield b"".join(parts)
            parts, length = [], 0
    if parts:
        yield b"".join(parts)


FAST_PATHS.register(("postgresql", "mariadb"), PostgresqlToMariadb())
