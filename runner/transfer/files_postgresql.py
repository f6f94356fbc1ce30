"""CSV files to PostgreSQL: each file's bytes are PostgreSQL's `COPY … (FORMAT csv)` input,
streamed through untouched into a temporary table of text columns, and moved into the target
with one `INSERT … SELECT` whose casts read each cell as the batch path does (booleans as
true/t/1/yes/y, a timestamp with an offset made UTC, every NULL marker NULL, quoted or not).

Only what reads the same both ways takes this path: UTF-8 CSV with stated or inferred columns
of the plain types, bad rows stopping the task. Anything PostgreSQL refuses (a ragged row, a
value past its column, a cell not of its type) rolls the copy back, and the batch path then
reads the files and names the file, line and column."""

from __future__ import annotations

import codecs
import csv
import gzip
import io
from collections.abc import Callable
from typing import Any

from runner.connectors.base import Source
from runner.connectors.files.connector import FilesConnector
from runner.connectors.files.reading import FileRead, FileSource
from runner.connectors.sql.fastpath import FastPath
from runner.connectors.sql.postgresql import PostgresqlConnector
from runner.definitions.tasks import ReadSpec
from runner.streams.types import Column, ColumnType
from runner.transfer.registry import FAST_PATHS

RAW = "runner_files_raw"
CHUNK = 1 << 20
PLAIN = {"smallint", "integer", "bigint", "decimal", "real", "double", "text", "varchar", "char"}
TRUE, FALSE = "('true','t','1','yes','y')", "('false','f','0','no','n')"


def _literal(text: str) -> str:
    """A string constant (standard_conforming_strings: only quotes are doubled)."""
    return "'" + text.replace("'", "''") + "'"


def _cast(cell: str, column: ColumnType, target: str) -> str | None:
    """The SQL reading one text cell as the batch path reads it into `target`; None when this
    type is not read here."""
    kind = column.kind
    if kind in PLAIN:
        return f"CAST({cell} AS {target})"
    if kind == "boolean":
        low = f"lower(trim({cell}))"
        return (
            f"CASE WHEN {low} IN {TRUE} THEN true WHEN {low} IN {FALSE} THEN false "
            f"ELSE CAST({cell} AS boolean) END"
        )
    if kind in ("date", "timestamp", "timestamptz"):
        # ISO 8601 only, as the batch path (string tests, not regular expressions: this runs per
        # cell): anything else fails the copy, and the batch path names it
        not_iso = f"substr({cell}, 5, 1) <> '-' OR substr({cell}, 8, 1) <> '-'"
        refuse = f"CAST('not ISO 8601: ' || {cell} AS {'date' if kind == 'date' else 'timestamp'})"
        if kind == "date":
            return f"CASE WHEN {not_iso} THEN {refuse} ELSE CAST({cell} AS date) END"
        offset = (
            f"right({cell}, 1) IN ('Z', 'z') OR strpos(substr({cell}, 11), '+') > 0 "
            f"OR strpos(substr({cell}, 11), '-') > 0"
        )
        zoned, naive = f"CAST({cell} AS timestamptz)", f"CAST({cell} AS timestamp)"
        if kind == "timestamp":  # an offset made UTC, naive as written
            zoned, naive = f"({zoned} AT TIME ZONE 'UTC')", naive
        else:  # a time without an offset is UTC
            naive = f"({naive} AT TIME ZONE 'UTC')"
        return f"CASE WHEN {not_iso} THEN {refuse} WHEN {offset} THEN {zoned} ELSE {naive} END"
    return None


class FilesToPostgresql(FastPath):
    def copy(
        self,
        target: PostgresqlConnector,
        cursor: Any,
        source: Source,
        spec: ReadSpec,
        columns: list[Column],
        into: str,
        targets: list[ColumnType],
        where: str = "",
        progress: Callable[[int], None] | None = None,
    ) -> int | None:
        """Every file of the read, a COPY and an INSERT each, in the writer's transaction."""
        read = spec
        if not isinstance(source, FilesConnector) or not isinstance(read, FileRead) or where:
            return None
        if (
            read.format != "csv"
            or read.bad_rows != "stop"
            or codecs.lookup(read.csv.encoding).name != "utf-8"
        ):
            return None
        folder = source.folder
        extra = {read.path_column, read.row_column, read.modified_column} - {None}
        rows = 0
        for stamp, relative in FileSource(folder).matching(read):
            names = self._header(folder, relative, read, columns, extra)
            if names is None:
                return None
            exprs = []
            for column, type_ in zip(columns, targets, strict=True):
                if column.name == read.path_column:
                    exprs.append(_literal(relative))
                elif column.name == read.row_column:
                    exprs.append("runner_row")  # numbered as COPY inserts them: the file's order
                elif column.name == read.modified_column:
                    exprs.append(f"CAST({_literal(stamp.isoformat())} AS timestamp) AT TIME ZONE 'UTC'")
                else:
                    cell = f"c{names.index(column.name)}"
                    expr = _cast(cell, column.type, target.render_type(type_))
                    if expr is None:
                        return None
                    exprs.append(expr)
            cells = ", ".join(f"c{i}" for i in range(len(names)))
            raw = ", ".join(f"c{i} text" for i in range(len(names)))
            cursor.execute(f"DROP TABLE IF EXISTS pg_temp.{RAW}")
            cursor.execute(f"CREATE TEMP TABLE {RAW} ({raw}, runner_row bigserial)")
            options = [
                "FORMAT csv",
                f"HEADER {'true' if read.csv.header else 'false'}",
                f"DELIMITER {_literal(read.csv.delimiter)}",
                f"QUOTE {_literal(read.csv.quote)}",
                f"NULL {_literal(read.csv.null)}",
                f"FORCE_NULL ({cells})",  # quoted markers too
                "ENCODING 'UTF8'",
            ]
            copy = f"COPY {RAW} ({cells}) FROM STDIN ({', '.join(options)})"
            with cursor.copy(copy) as sink, folder.open_read(relative) as f:
                stream: Any = gzip.GzipFile(fileobj=f, mode="rb") if relative.endswith(".gz") else f
                while chunk := stream.read(CHUNK):
                    sink.write(chunk)
            names_sql = ", ".join(target.quote(c.name) for c in columns)
            cursor.execute(f"INSERT INTO {into} ({names_sql}) SELECT {', '.join(exprs)} FROM {RAW}")
            rows += cursor.rowcount
            cursor.execute(f"DROP TABLE pg_temp.{RAW}")
            if progress:
                progress(rows)
        return rows

    @staticmethod
    def _header(
        folder: Any, relative: str, read: FileRead, columns: list[Column], extra: set[str | None]
    ) -> list[str] | None:
        """The file's column names in its order (without a header: the stated columns'), or
        None when they cannot be mapped one to one."""
        if not read.csv.header:
            return list(read.columns or {})
        with folder.open_read(relative) as f:
            stream: Any = gzip.GzipFile(fileobj=f, mode="rb") if relative.endswith(".gz") else f
            start = stream.read(1 << 16).decode("utf-8", errors="replace")  # the header is in it
        cells = csv.reader(
            io.StringIO(start, newline=""), delimiter=read.csv.delimiter, quotechar=read.csv.quote
        )
        header = next(cells, None)
        if not header or len(set(header)) != len(header):
            return None
        wanted = [c.name for c in columns if c.name not in extra]
        return header if all(name in header for name in wanted) else None


FAST_PATHS.register(("files", "postgresql"), FilesToPostgresql())
