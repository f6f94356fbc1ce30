"""SQLite: the embedded database of the bundled example and of small targets.

SQLite stores few types (INTEGER, REAL, TEXT, BLOB); runner keeps the declared type names
(`NUMERIC(12,2)`, `TIMESTAMP`, ...) so that reading the table back restores exact values:
timestamps are ISO-8601 text with microseconds (UTC when the type has a time zone), booleans
are 0/1, JSON is text. A NUMERIC column stores a number as INTEGER or REAL, exact up to the 15
significant digits a REAL keeps; a decimal declared wider than that, or unbounded, is created
as `NUMERIC_TEXT(p,s)` / `NUMERIC_TEXT`, whose TEXT affinity keeps every digit (as text:
SQLite compares and sorts it as text, `CAST(x AS REAL)` makes it a number again).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import os
import re
from collections.abc import Collection
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL

from runner.connectors.base import Copy, History, RowDigest, TableEvolution
from runner.connectors.sql import kinds
from runner.connectors.sql.base import SqlConnector
from runner.connectors.sql.spec import SqlConnectionSpec
from runner.connectors.sql.writer import SqlWriter
from runner.definitions.tasks import ReadSpec
from runner.errors import TerminalError
from runner.streams.keys import KEY_HASH_BITS, key_hash
from runner.streams.types import Column, ColumnType, Convert, split_type
from runner.streams.values import (
    canonical_row_text,
    decimal_of,
    duration_text,
    json_text,
    json_value,
    parse_duration,
    text_of,
    to_aware_utc,
    to_naive_utc,
    uuid_value,
)

_SIMPLE = {
    "real": "double",  # SQLite's REAL is an 8-byte float, whatever the declared name
    "float": "double",
    "double": "double",
    "double precision": "double",
    "boolean": "boolean",
    "bool": "boolean",
    "text": "text",
    "clob": "text",
    "date": "date",
    "time": "time",
    "duration": "duration",
    "timestamp": "timestamp",
    "datetime": "timestamp",
    "timestamptz": "timestamptz",
    "json": "json",
    "jsonb": "jsonb",
    "blob": "binary",
    "bytea": "binary",
    "uuid": "uuid",
}
_RENDER = {
    "smallint": "SMALLINT",
    "integer": "INTEGER",
    "bigint": "BIGINT",
    "real": "REAL",
    "double": "DOUBLE",
    "boolean": "BOOLEAN",
    "text": "TEXT",
    "date": "DATE",
    "time": "TIME",
    "duration": "DURATION",  # [-]HH:MM:SS.ffffff text (NUMERIC affinity leaves it text)
    "timestamp": "TIMESTAMP",
    "timestamptz": "TIMESTAMPTZ",
    "json": "JSON",
    "jsonb": "JSON",
    "binary": "BLOB",
    "uuid": "UUID",
}
BUSY_TIMEOUT = 60.0  # seconds a connection waits for the file's lock before "database is locked"
_REAL_DIGITS = 15  # significant decimal digits that survive a round trip through a REAL


def _timestamp_text(value: Any) -> Any:
    return (
        to_naive_utc(value).isoformat(sep=" ", timespec="microseconds")
        if isinstance(value, dt.datetime)
        else value
    )


def _timestamptz_text(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return to_aware_utc(value).astimezone(dt.UTC).isoformat(sep=" ", timespec="microseconds")
    return value


def _decimal_text(value: Any) -> Any:
    """Plain notation (`0.000000`, not `0E-6`): the text a NUMERIC_TEXT column keeps."""
    return format(value, "f") if isinstance(value, Decimal) else str(value)


def _md5(text: str | None) -> str:
    return hashlib.md5((text or "").encode(), usedforsecurity=False).hexdigest()


KEY_HASH_HALF = KEY_HASH_BITS // 2


def _key_hash_part(value: Any, part: int) -> int | None:
    """The high (1) or low (0) half of an integer key's `key_hash`."""
    if value is None:
        return None
    return key_hash(value) >> KEY_HASH_HALF if part else key_hash(value) & ((1 << KEY_HASH_HALF) - 1)


def _hex_hash_part(text: str | None, part: int) -> int | None:
    """The high (1) or low (0) half of the first 60 bits of an md5 hex text."""
    if text is None:
        return None
    value = int(text[: KEY_HASH_BITS // 4], 16)
    return value >> KEY_HASH_HALF if part else value & ((1 << KEY_HASH_HALF) - 1)


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.date | dt.time) else value


def _from_iso(kind: type[dt.date] | type[dt.time] | type[dt.datetime], aware: bool = False) -> Convert:
    def convert(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        parsed = kind.fromisoformat(value)
        return to_aware_utc(parsed) if aware else parsed

    return convert


def _affinity(declared: str) -> str:
    """SQLite's affinity of a declared type (its rules, in their order)."""
    upper = declared.upper()
    if "INT" in upper:
        return "INTEGER"
    if any(t in upper for t in ("CHAR", "CLOB", "TEXT")):
        return "TEXT"
    if "BLOB" in upper or not upper.strip():
        return "BLOB"
    if any(t in upper for t in ("REAL", "FLOA", "DOUB")):
        return "REAL"
    return "NUMERIC"


class SqliteConnector(SqlConnector):
    capabilities = kinds.SQLITE
    dialect = "sqlite"

    path: Path | None = None

    def __init__(self, name: str, spec: SqlConnectionSpec, base_dir: Path):
        super().__init__(name, spec, base_dir)
        self._writer_locks: dict[int, int] = {}  # a writer's connection -> its lock file's descriptor

    def engine_options(self) -> dict[str, Any]:
        # a reader of the file waits out a writer's commit (and a writer, a long reader's end)
        # (`uri`: so that a source file is attached read-only, see `runner.transfer.sqlite`)
        return {"connect_args": {"timeout": BUSY_TIMEOUT, "uri": True}}

    def prepare_writer(self, dbapi: Any) -> None:
        """Queue for the file: a writer holds it for its whole transaction (BEGIN IMMEDIATE),
        which may last longer than any busy timeout, so writers of one file, from any job,
        thread or process, take turns on a lock file beside it (`<file>-runner.lock`; flock,
        released by the system if the process dies)."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # a bare descriptor: a file object's buffers would be held by every writer in the queue
        lock = os.open(f"{self.path}-runner.lock", os.O_WRONLY | os.O_CREAT, 0o666)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
        except BaseException:
            os.close(lock)
            raise
        self._writer_locks[id(dbapi)] = lock

    def end_writer(self, dbapi: Any) -> None:
        lock = self._writer_locks.pop(id(dbapi), None)
        if lock is not None:
            os.close(lock)  # releases the flock

    def engine_url(self, url: URL) -> URL:
        if url.database and url.database != ":memory:":
            path = Path(url.database)
            self.path = path if path.is_absolute() else self.base_dir / path
            url = url.set(database=str(self.path))
        return url

    def check_connection(self) -> None:
        """A file: nothing to wait for (and a connection would create a missing one)."""

    def check_readable(self) -> None:
        """SQLite creates a missing file on connect: a typo in a source path would read as an
        empty database, so a missing file is an error instead."""
        if self.path is not None and not self.path.exists():
            raise TerminalError(f"database file {self.path} does not exist (connection {self.name!r})")

    def table_exists(self, table: str) -> bool:
        return (self.path is None or self.path.exists()) and super().table_exists(table)

    def open_writer(
        self,
        table: str,
        columns: list[Column],
        keys: list[str] | None = None,
        soft_delete_column: str | None = None,
        copy: Copy | None = None,
        history: History | None = None,
        evolve: TableEvolution | None = None,
    ) -> SqlWriter:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        return super().open_writer(table, columns, keys, soft_delete_column, copy, history, evolve)

    def stored_as(self, declared: str) -> tuple[str, ColumnType | None]:
        """A column's affinity and the type runner reads it as."""
        return _affinity(declared), self.parse_type(declared)

    def parse_type(self, declared: str) -> ColumnType | None:
        if not declared.strip():
            return None
        name, a, b = split_type(declared)
        affinity = _affinity(declared)
        if affinity == "INTEGER":  # 64 bits whatever the name: SMALLINT holds 2**40 too
            return ColumnType("bigint")
        if name in ("numeric", "decimal", "numeric_text"):
            return ColumnType("decimal", precision=a, scale=b if a is not None else None)
        if name in ("varchar", "character varying", "nvarchar", "varying character"):
            return ColumnType("varchar", length=a) if a else ColumnType("text")
        if name in ("char", "character", "nchar"):
            return ColumnType("char", length=a or 1)
        if name == "timestamp with time zone":
            return ColumnType("timestamptz")
        if name in _SIMPLE:
            return ColumnType(_SIMPLE[name])  # type: ignore[arg-type]
        # SQLite's own affinity rules for any other name
        return ColumnType({"TEXT": "text", "BLOB": "binary", "REAL": "double"}.get(affinity, "decimal"))  # type: ignore[arg-type]

    def render_type(self, ctype: ColumnType) -> str:
        if ctype.kind == "decimal":
            if not ctype.precision:  # unbounded (PostgreSQL's numeric): may exceed a REAL
                return "NUMERIC_TEXT"
            name = "NUMERIC_TEXT" if ctype.precision > _REAL_DIGITS else "NUMERIC"
            return f"{name}({ctype.precision},{ctype.scale or 0})"
        if ctype.kind in ("varchar", "char"):
            return f"{ctype.kind.upper()}({ctype.length})"
        return _RENDER[ctype.kind]

    def declared_columns(self, cursor: Any, spec: ReadSpec) -> list[tuple[str, str]]:
        if spec.table is not None:
            schema, _, name = spec.table.rpartition(".")
            pragma = f"PRAGMA {self.quote(schema)}.table_info" if schema else "PRAGMA table_info"
            cursor.execute(f"{pragma}({self.quote(name)})")
            rows = cursor.fetchall()
            if not rows:
                raise TerminalError(f"table {spec.table!r} not found (connection {self.name!r})")
            return [(r[1], r[2]) for r in rows]
        cursor.execute("DROP VIEW IF EXISTS temp.runner_probe")
        cursor.execute(f"CREATE TEMP VIEW runner_probe AS {spec.query}")
        cursor.execute("PRAGMA temp.table_info(runner_probe)")
        rows = cursor.fetchall()
        cursor.execute("DROP VIEW temp.runner_probe")
        return [(r[1], r[2]) for r in rows]

    def indexed(self, table: str, column: str) -> bool | None:
        schema, _, bare = table.rpartition(".")
        prefix = f"{self.quote(schema)}." if schema else ""
        with self.connection("reading the table's indexes") as dbapi:
            cursor = dbapi.cursor()
            cursor.execute(f"SELECT type FROM {prefix}sqlite_master WHERE name = ? COLLATE NOCASE", (bare,))
            if (cursor.fetchone() or [None])[0] != "table":
                return None
            cursor.execute(f"PRAGMA {prefix}table_info({self.quote(bare)})")
            keys = [(r[1].lower(), r[2].upper()) for r in cursor.fetchall() if r[5]]  # name, declared type
            if keys == [(column.lower(), "INTEGER")]:  # the rowid: the table's own order
                return True
            cursor.execute(f"PRAGMA {prefix}index_list({self.quote(bare)})")
            for index in [r[1] for r in cursor.fetchall()]:
                cursor.execute(f"PRAGMA {prefix}index_info({self.quote(index)})")
                first = next((r[2] for r in cursor.fetchall() if r[0] == 0), None)
                if first is not None and first.lower() == column.lower():
                    return True
        return False

    def decoder(self, ctype: ColumnType) -> Convert | None:
        kind = ctype.kind
        if kind == "decimal":
            return decimal_of(ctype.scale)
        if kind == "boolean":
            return bool
        if kind in ("timestamp", "timestamptz"):
            return _from_iso(dt.datetime, aware=kind == "timestamptz")
        if kind == "date":
            return _from_iso(dt.date)
        if kind == "time":
            return _from_iso(dt.time)
        if kind == "duration":
            return parse_duration
        if kind in ("json", "jsonb"):
            return json_value
        if kind == "uuid":
            return uuid_value
        return None

    def encoder(self, ctype: ColumnType) -> Convert | None:
        kind = ctype.kind
        if kind == "decimal":
            return _decimal_text
        if kind == "boolean":
            return int
        if kind == "timestamp":
            return _timestamp_text
        if kind == "timestamptz":
            return _timestamptz_text
        if kind in ("date", "time"):
            return _iso
        if kind == "duration":
            return duration_text
        if kind in ("json", "jsonb"):
            return json_text
        if kind == "uuid":
            return text_of
        return None

    @property
    def mark(self) -> str:
        return "?"

    def distinct_sql(self, a: str, b: str, ctype: ColumnType) -> str:
        return f"{a} IS NOT {b}"

    def digest_sql(self, names: list[str]) -> str:
        # quote() spells NULL, numbers, text and blobs apart; md5 runs in this process
        joined = " || ',' || ".join(f"quote({n})" for n in names)
        return f"runner_md5({joined})"

    def prepare_digests(self, dbapi: Any) -> None:
        dbapi.create_function("runner_md5", 1, _md5, deterministic=True)
        dbapi.create_function("runner_key_hash", 2, _key_hash_part, deterministic=True)
        dbapi.create_function("runner_hex_hash", 2, _hex_hash_part, deterministic=True)

    def key_hash_sums(self, column: str) -> list[tuple[str, int]]:
        # SQLite's sum of integers stops at 2**63 (an error): the hash is summed in halves
        return [(f"sum(runner_key_hash({column}, {part}))", part * KEY_HASH_HALF) for part in (1, 0)]

    def canonical_in_python(self, names: list[str], columns: list[Column]) -> RowDigest | None:
        # SQLite keeps text, numbers or blobs whatever a column's type: decoded as a read
        # decodes them, then spelt in Python, by a function registered on the connection
        decode = self.batch_decoder(columns)
        kinds = [c.type.kind for c in columns]

        def row_md5(*values: Any) -> str:
            (row,) = decode([values])
            return hashlib.md5(canonical_row_text(row, kinds), usedforsecurity=False).hexdigest()

        def prepare(dbapi: Any) -> None:
            dbapi.create_function("runner_canonical_md5", len(columns), row_md5, deterministic=True)

        hashed = f"runner_canonical_md5({', '.join(names)})"
        return RowDigest("canonical", self.hex_hash_sums(hashed), prepare)

    def hex_hash_sums(self, hex_expr: str) -> list[tuple[str, int]]:
        # summed in halves, as `key_hash_sums`: SQLite's sum of integers stops at 2**63
        return [(f"sum(runner_hex_hash({hex_expr}, {part}))", part * KEY_HASH_HALF) for part in (1, 0)]

    def drop_temp_sql(self, name: str) -> str:
        return f"DROP TABLE IF EXISTS temp.{self.quote(name)}"

    def not_null(self, cursor: Any, table: str) -> set[str]:
        schema, _, bare = table.rpartition(".")
        prefix = f"{self.quote(schema)}." if schema else ""
        cursor.execute(f"PRAGMA {prefix}table_info({self.quote(bare)})")
        return {r[1] for r in cursor.fetchall() if r[3]}

    def alter_columns_sql(
        self, cursor: Any, table: str, types: dict[str, str], nullable: Collection[str] = ()
    ) -> list[str]:
        """SQLite has no ALTER COLUMN: the table is rebuilt with the new declared type (its
        rows, primary key, NOT NULLs, defaults and indexes kept), the way SQLite's manual
        says: a new table, the rows copied, the old one dropped and the new one renamed."""
        q = self.quote
        schema, _, bare = table.rpartition(".")
        prefix = f"{q(schema)}." if schema else ""
        cursor.execute(f"PRAGMA {prefix}table_info({q(bare)})")
        rows = cursor.fetchall()  # cid, name, type, notnull, dflt_value, pk
        body = []
        for _, column, declared, notnull, default, _pk in rows:
            typed = types.get(column, declared)
            body.append(
                f"{q(column)} {typed}{' NOT NULL' if notnull and column not in nullable else ''}"
                f"{f' DEFAULT {default}' if default is not None else ''}"
            )
        keys = [r[1] for r in sorted((r for r in rows if r[5]), key=lambda r: r[5])]
        if keys:
            body.append(f"PRIMARY KEY ({', '.join(q(k) for k in keys)})")
        cursor.execute(
            f"SELECT sql FROM {prefix}sqlite_schema WHERE type = 'index' AND tbl_name = ? "
            "AND sql IS NOT NULL",
            (bare,),
        )
        indexes = [r[0] for r in cursor.fetchall()]
        new, old = f"{prefix}{q('runner_rebuilt_' + bare)}", f"{prefix}{q(bare)}"
        names = ", ".join(q(r[1]) for r in rows)
        return [
            f"CREATE TABLE {new} ({', '.join(body)})",
            f"INSERT INTO {new} ({names}) SELECT {names} FROM {old}",
            f"DROP TABLE {old}",
            f"ALTER TABLE {new} RENAME TO {q(bare)}",
            *indexes,
        ]

    def error_column(self, exc: Exception) -> str | None:
        match = re.search(r"constraint failed: (?:[\w]+\.)?(\w+)", str(exc))
        return match[1] if match else None

    def begin(self, dbapi: Any) -> None:
        dbapi.isolation_level = None  # we issue BEGIN ourselves, so CREATE TABLE is inside it
        dbapi.execute("BEGIN IMMEDIATE")

    def is_transient(self, exc: Exception) -> bool:
        text = str(exc).lower()
        return "locked" in text or "busy" in text

    def missing_table(self, exc: Exception) -> bool:
        return str(exc).startswith(("no such table", "unknown database"))

    def insert_rows(
        self, cursor: Any, table: str, names: list[str], rows: list[tuple[Any, ...]], columns: list[Column]
    ) -> None:
        marks = ", ".join("?" * len(names))
        cursor.executemany(f"INSERT INTO {table} ({', '.join(names)}) VALUES ({marks})", rows)
