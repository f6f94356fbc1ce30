"""CSV files to PostgreSQL: each file's bytes are PostgreSQL's `COPY … (FORMAT csv)` input,
streamed through untouched.

Two routes, per file. The direct one copies the bytes into the target (or its staging table)
in the columns' own types, so PostgreSQL parses and type-checks each cell once: taken when the
file's columns are the read's, one to one, in types the target has, every type one PostgreSQL
reads as the batch path does (numbers, text, booleans, dates, time stamps: a naive one read as
UTC into a timestamptz), and no time of day in the file carries an offset a naive `timestamp`
column would drop (a cheap scan beside the copy; on a hit the copy is undone and the file goes
the other route). The path, row and modified columns runner adds are filled by the COPY
itself where the target (or staging) table is one this transaction made: the rows are written
once. The other route copies into a temporary table of text columns and moves it with one
`INSERT … SELECT` whose casts read each cell as the batch path does (an offset made UTC, only
ISO 8601 dates), and adds the path, row and modified columns. Into a table this transaction
made, either route leaves its primary key to be built after the copy, not a row at a time.

Only what reads the same both ways takes a route: CSV in an encoding PostgreSQL knows, bad
rows stopping the task. Anything PostgreSQL refuses (a ragged row, a value past its column, a
cell not of its type) rolls the whole copy back, and the batch path then reads the files and
names the file, line and column (and its `on_error` decides)."""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import re
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

RAW = "runner_files_raw"  # the text route's table
TYPED = "runner_files_typed"  # the direct route's, with columns runner adds
ROWS = "runner_files_row"  # the sequence numbering a file's rows copied into a table of this run
NEXT_ROW = f"nextval('pg_temp.{ROWS}')"
HELD = """SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'relation'
  AND relation = to_regclass(%s) AND pid = pg_backend_pid() AND mode = 'AccessExclusiveLock')"""
# a table's primary key: its name, definition, and how many indexes the table has; none when
# a foreign key refers to the table (its key could not be dropped)
PRIMARY_KEY = """SELECT c.conname, pg_get_constraintdef(c.oid),
  (SELECT count(*) FROM pg_index i WHERE i.indrelid = c.conrelid)
FROM pg_constraint c WHERE c.conrelid = to_regclass(%s) AND c.contype = 'p'
  AND NOT EXISTS (SELECT 1 FROM pg_constraint f WHERE f.confrelid = c.conrelid AND f.contype = 'f')"""
CHUNK = 1 << 20
PLAIN = {"smallint", "integer", "bigint", "decimal", "real", "double", "text", "varchar", "char"}
TRUE, FALSE = "('true','t','1','yes','y')", "('false','f','0','no','n')"
# what PostgreSQL reads as the batch path does, cell for cell, into a column of its own type
DIRECT = PLAIN | {"boolean", "date", "timestamp", "timestamptz"}
# a time of day followed by an offset, a Z or a zone name (`10:00:00+02`, `10:00:00.5Z`,
# `10:00 UTC`): PostgreSQL drops it from a naive timestamp, where the batch path makes it UTC.
# Text that looks like it (`at 10:30 we`) only sends the file the other route. Possessive
# (`*+`, `?+`: no digit or dot can end it, so no match is lost): a time without an offset fails
# at once instead of backtracking through its fraction, 2.5 times faster on every time stamp.
ZONED = re.compile(rb":\d\d(?:\.\d*+)?+[ Zz+\-]")
# a date written with slashes (`01/02/2024`), which PostgreSQL reads in its DateStyle's order
# and the batch path refuses (ISO 8601 only)
SLASHED = re.compile(rb"/(?<=\d/)\d")
# Python's codec names -> PostgreSQL's, for the encodings both know
ENCODINGS = {"utf-8": "UTF8", "iso8859-1": "LATIN1", "iso8859-15": "LATIN9", "cp1252": "WIN1252"}


class _Zoned(Exception):
    """The direct copy met a time with an offset or a slashed date: undone, the file goes
    the text route."""


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


def _pour(folder: Any, relative: str, sink: Any, guards: tuple[re.Pattern[bytes], ...] = ()) -> None:
    """A file's bytes (gunzipped) into a COPY; `_Zoned` where one of `guards` matches."""
    with folder.open_read(relative) as f:
        stream: Any = gzip.GzipFile(fileobj=f, mode="rb") if relative.endswith(".gz") else f
        tail = b""
        while chunk := stream.read(CHUNK):
            for guard in guards:
                if guard.search(tail + chunk[:32]) or guard.search(chunk):
                    raise _Zoned
            tail = chunk[-32:]
            sink.write(chunk)


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
        """Every file of the read, copied in the writer's transaction (directly, or through a
        table of text)."""
        read = spec
        if not isinstance(source, FilesConnector) or not isinstance(read, FileRead) or where:
            return None
        encoding = ENCODINGS.get(codecs.lookup(read.csv.encoding).name)
        if read.format != "csv" or read.bad_rows != "stop" or encoding is None:
            return None
        folder = source.folder
        extra = {read.path_column, read.row_column, read.modified_column} - {None}
        direct = all(
            column.name in extra
            or (column.type.kind in DIRECT and target.render_type(column.type) == target.render_type(type_))
            for column, type_ in zip(columns, targets, strict=True)
        )
        data = sorted(c.name for c in columns if c.name not in extra)
        held = self._held(cursor, into)
        # a table this transaction made has its key built once, after the rows (a sort), rather
        # than one index entry per row copied; a repeated key fails it as it would the copy
        restore = self._key_dropped(cursor, into, target.quote) if held else None
        rows = 0
        for file in FileSource(folder).matching(read):
            names = self._header(folder, file[1], read, columns, extra)
            if names is None:
                return None
            copied = None
            if direct and sorted(names) == data:
                copied = self._direct(
                    target, cursor, folder, file, read, encoding, columns, targets, names, into, held
                )
            if copied is None:
                copied = self._through_text(
                    target, cursor, folder, file, read, encoding, columns, names, into, targets
                )
            if copied is None:
                return None
            rows += copied
            if progress:
                progress(rows)
        if restore:
            cursor.execute(restore)
        return rows

    @staticmethod
    def _held(cursor: Any, table: str) -> bool:
        """Whether this transaction holds `table` exclusively (it created it, or changed its
        columns): a change of its defaults or its key then waits for no one and no one sees it."""
        cursor.execute(HELD, (table,))
        return bool(cursor.fetchone()[0])

    @staticmethod
    def _key_dropped(cursor: Any, table: str, quote: Callable[[str], str]) -> str | None:
        """Drop the table's primary key when it is its only index; the statement adding it
        back (None: nothing dropped)."""
        cursor.execute(PRIMARY_KEY, (table,))
        found = cursor.fetchone()
        if found is None or found[2] != 1:
            return None
        name, definition, _ = found
        cursor.execute(f"ALTER TABLE {table} DROP CONSTRAINT {quote(name)}")
        return f"ALTER TABLE {table} ADD CONSTRAINT {quote(name)} {definition}"

    @staticmethod
    def _options(read: FileRead, encoding: str, names: list[str], quote: Callable[[str], str]) -> str:
        """The COPY options that read the file as the batch path does: every NULL marker NULL,
        quoted or not."""
        return ", ".join(
            [
                "FORMAT csv",
                f"HEADER {'true' if read.csv.header else 'false'}",
                f"DELIMITER {_literal(read.csv.delimiter)}",
                f"QUOTE {_literal(read.csv.quote)}",
                f"NULL {_literal(read.csv.null)}",
                f"FORCE_NULL ({', '.join(quote(n) for n in names)})",
                f"ENCODING {_literal(encoding)}",
            ]
        )

    def _direct(
        self,
        target: PostgresqlConnector,
        cursor: Any,
        folder: Any,
        file: tuple[Any, str],
        read: FileRead,
        encoding: str,
        columns: list[Column],
        targets: list[ColumnType],
        names: list[str],
        into: str,
        held: bool,
    ) -> int | None:
        """The file's bytes into `into` in the columns' types; None when a time in it carries
        an offset a naive timestamp column would lose (the copy undone). A path, row or modified
        column is filled by the COPY (the columns' defaults for its length) where this
        transaction made `into`; else the file goes into a temporary table of those types,
        then moved with them added (a change of defaults would lock a table others use)."""
        relative = file[1]
        added = {read.path_column, read.row_column, read.modified_column} - {None}
        kinds = {c.type.kind for c in columns if c.name not in added}
        guards = ((ZONED,) if "timestamp" in kinds else ()) + (
            (SLASHED,) if kinds & {"date", "timestamp", "timestamptz"} else ()
        )
        cursor.execute("SAVEPOINT runner_file")
        if "timestamptz" in kinds:  # a time without an offset is UTC, as the batch path reads it
            cursor.execute("SELECT current_setting('TimeZone'), set_config('TimeZone', 'UTC', true)")
            zone = cursor.fetchone()[0]
        q = target.quote
        sink_table = into
        # `into` made in this transaction (a new table, the staging table): its columns runner
        # adds filled by defaults during the COPY, so the rows are written once
        filled = bool(added) and held
        if filled:
            numbered = [c.name for c in columns if c.name in added]
            cursor.execute(f"DROP SEQUENCE IF EXISTS pg_temp.{ROWS}")
            cursor.execute(f"CREATE TEMP SEQUENCE {ROWS}")
            sets = [
                f"ALTER COLUMN {q(n)} SET DEFAULT {self._added(read, n, file, NEXT_ROW)}" for n in numbered
            ]
            cursor.execute(f"ALTER TABLE {into} {', '.join(sets)}")
        elif added:
            typed = [
                f"{q(c.name)} {target.render_type(t)}"
                for c, t in zip(columns, targets, strict=True)
                if c.name not in added
            ]
            cursor.execute(f"DROP TABLE IF EXISTS pg_temp.{TYPED}")
            cursor.execute(f"CREATE TEMP TABLE {TYPED} ({', '.join(typed)}, runner_row bigserial)")
            sink_table = TYPED
        listed = ", ".join(q(n) for n in names)
        sql = f"COPY {sink_table} ({listed}) FROM STDIN ({self._options(read, encoding, names, q)})"
        try:
            with cursor.copy(sql) as sink:
                _pour(folder, relative, sink, guards)
        except _Zoned:
            cursor.execute("ROLLBACK TO SAVEPOINT runner_file")
            return None
        rows = cursor.rowcount
        if filled:
            cursor.execute(
                f"ALTER TABLE {into} {', '.join(f'ALTER COLUMN {q(n)} DROP DEFAULT' for n in numbered)}"
            )
            cursor.execute(f"DROP SEQUENCE pg_temp.{ROWS}")
        elif added:
            exprs = [self._added(read, c.name, file) or q(c.name) for c in columns]
            listed = ", ".join(q(c.name) for c in columns)
            cursor.execute(f"INSERT INTO {into} ({listed}) SELECT {', '.join(exprs)} FROM {TYPED}")
            rows = cursor.rowcount
            cursor.execute(f"DROP TABLE pg_temp.{TYPED}")
        if "timestamptz" in kinds:
            cursor.execute("SELECT set_config('TimeZone', %s, true)", (zone,))
        cursor.execute("RELEASE SAVEPOINT runner_file")
        return rows

    @staticmethod
    def _added(read: FileRead, name: str, file: tuple[Any, str], row: str = "runner_row") -> str | None:
        """The SQL of a column runner adds (the file's path, a row's number in it: `row`, the
        file's modified time), or None for a column of the file."""
        stamp, relative = file
        if name == read.path_column:
            return _literal(relative)
        if name == read.row_column:
            return row  # numbered as COPY inserts them: the file's order
        if name == read.modified_column:
            return f"CAST({_literal(stamp.isoformat())} AS timestamp) AT TIME ZONE 'UTC'"
        return None

    def _through_text(
        self,
        target: PostgresqlConnector,
        cursor: Any,
        folder: Any,
        file: tuple[Any, str],
        read: FileRead,
        encoding: str,
        columns: list[Column],
        names: list[str],
        into: str,
        targets: list[ColumnType],
    ) -> int | None:
        """The file's bytes into a temporary table of text, moved into `into` by casts that read
        each cell as the batch path does; None when a type is not read this way."""
        relative = file[1]
        exprs = []
        for column, type_ in zip(columns, targets, strict=True):
            expr = self._added(read, column.name, file)
            if expr is None:
                expr = _cast(f"c{names.index(column.name)}", column.type, target.render_type(type_))
            if expr is None:
                return None
            exprs.append(expr)
        cells = [f"c{i}" for i in range(len(names))]
        raw = ", ".join(f"{c} text" for c in cells)
        cursor.execute(f"DROP TABLE IF EXISTS pg_temp.{RAW}")
        cursor.execute(f"CREATE TEMP TABLE {RAW} ({raw}, runner_row bigserial)")
        options = self._options(read, encoding, cells, str)
        with cursor.copy(f"COPY {RAW} ({', '.join(cells)}) FROM STDIN ({options})") as sink:
            _pour(folder, relative, sink)
        names_sql = ", ".join(target.quote(c.name) for c in columns)
        cursor.execute(f"INSERT INTO {into} ({names_sql}) SELECT {', '.join(exprs)} FROM {RAW}")
        rows = cursor.rowcount
        cursor.execute(f"DROP TABLE pg_temp.{RAW}")
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
