"""MariaDB (and MySQL) through PyMySQL.

PyMySQL is pure Python: nothing to compile and no client library to install on a bare
machine (mysqlclient needs libmariadb headers and a compiler), and it streams results with
`SSCursor` and turns `executemany` of an INSERT into multi-row statements. Tables are
created in utf8mb4 with a binary NO PAD collation where the server has one, so text compares
and sorts as in PostgreSQL, trailing spaces included.
MariaDB has no time zone type: timestamps with a time zone are stored as UTC in DATETIME(6).
Its JSON type is an alias of LONGTEXT with a `json_valid()` check, which is how a table's JSON
columns are recognised (a query's result has no checks: its JSON columns read as text).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL

from runner.connectors.base import History
from runner.connectors.sql import kinds
from runner.connectors.sql.base import SqlConnector
from runner.connectors.sql.mariadb_cdc import MariadbLogSource
from runner.connectors.sql.mariadb_index import INDEX_BYTES, MIN_SHARE, key_bytes
from runner.connectors.sql.mariadb_tsv import TSV, text_field
from runner.connectors.sql.spec import MariadbConnection, SqlConnectionSpec
from runner.definitions import secrets
from runner.definitions.models import seconds
from runner.definitions.tasks import ReadSpec
from runner.errors import TerminalError
from runner.streams.keys import KEY_HASH_BITS
from runner.streams.types import Column, ColumnType, Convert, split_type
from runner.streams.values import (
    EXACT,
    OutOfRange,
    duration_text,
    json_text,
    json_value,
    text_of,
    to_naive_utc,
    uuid_value,
)

_SIMPLE = {
    "smallint": "smallint",
    "smallint unsigned": "integer",
    "mediumint": "integer",
    "mediumint unsigned": "integer",
    "int": "integer",
    "integer": "integer",
    "int unsigned": "bigint",
    "bigint": "bigint",
    "float": "real",
    "year": "smallint",  # 1901 to 2155, or 0
    "double": "double",
    "text": "text",
    "tinytext": "text",
    "mediumtext": "text",
    "longtext": "text",
    "date": "date",
    "time": "duration",  # -838:59:59 to 838:59:59: a length of time, not a time of day
    "datetime": "timestamp",
    "timestamp": "timestamp",
    "json": "jsonb",  # as PostgreSQL's jsonb: parsed, not kept as typed
    "blob": "binary",
    "tinyblob": "binary",
    "mediumblob": "binary",
    "longblob": "binary",
    "varbinary": "binary",
    "binary": "binary",
    "uuid": "uuid",
    "boolean": "boolean",
    "bool": "boolean",
}
_RENDER = {
    "smallint": "SMALLINT",
    "integer": "INT",
    "bigint": "BIGINT",
    "real": "DOUBLE",  # MariaDB's FLOAT refuses the largest 4-byte floats (3.4028235e38)
    "double": "DOUBLE",
    "boolean": "BOOLEAN",
    "text": "LONGTEXT",
    "date": "DATE",
    "time": "TIME(6)",
    "duration": "TIME(6)",
    "timestamp": "DATETIME(6)",
    "timestamptz": "DATETIME(6)",
    "json": "JSON",
    "jsonb": "JSON",
    "binary": "LONGBLOB",
    "uuid": "UUID",
}
_TRANSIENT_ERRNOS = {1040, 1205, 1213, 1927, 2002, 2003, 2006, 2013}
_MAX_VARCHAR = 16383  # utf8mb4 characters in a 64 KiB row
_NO_LOCAL_INFILE = {1148, 2068, 3948, 4166}  # LOAD DATA LOCAL refused by the server or the client
_ERROR_COLUMN = re.compile(r"[Cc]olumn (?:`[^`]*`\.)*[`']([^`']+)[`']")
_SCALE_30 = Decimal(1).scaleb(-30)
_JSON_CHECK = re.compile(r"CHECK \(json_valid\(`((?:[^`]|``)+)`\)\)")


def _zero_date(value: Any) -> Any:
    """PyMySQL gives a date it cannot convert (`0000-00-00`, `2024-02-00`) as text: kept as
    MariaDB's text, which a target fails naming its row and column."""
    return OutOfRange(value) if isinstance(value, str) else value


def _unbounded_decimal(value: Any) -> Any:
    """A decimal of no declared precision goes into DECIMAL(65,30), MariaDB's widest: a value
    with more digits fails (MariaDB would round its decimals with a mere note)."""
    if (
        isinstance(value, Decimal)
        and value.is_finite()
        and (value != value.quantize(_SCALE_30, context=EXACT) or value.adjusted() >= 35)
    ):
        raise ValueError(f"{value} does not fit MariaDB's widest decimal, DECIMAL(65,30)")
    return value


_UNSIGNED_BIGINT = ColumnType("decimal", precision=20, scale=0)  # what a BIGINT UNSIGNED maps to


def _unsigned_bigint(value: Any) -> Any:
    """A BIGINT UNSIGNED (a decimal(20,0) to runner) comes from PyMySQL as an int: as a Decimal,
    or a target formatting decimals would go through a float (2**64-1 would become 2**64)."""
    return Decimal(value) if isinstance(value, int) else value


# Binary collations that compare trailing spaces (NO PAD), the first the server has: under
# utf8mb4_bin (PAD SPACE) 'a' and 'a ' are one key. MariaDB has utf8mb4_nopad_bin since 10.2,
# MySQL utf8mb4_0900_bin since 8.0.17; an older server keeps utf8mb4_bin.
_NO_PAD = ("utf8mb4_nopad_bin", "utf8mb4_0900_bin")


class _Lent:
    """The cdc snapshot's connection lent to a read: closing or rolling back leaves it open and
    in its transaction (`MariadbChangeLog.start` ends it)."""

    def __init__(self, dbapi: Any):
        self._dbapi = dbapi

    def __getattr__(self, name: str) -> Any:
        return getattr(self._dbapi, name)

    def close(self) -> None:
        pass

    def rollback(self) -> None:
        pass


class MariadbConnector(MariadbLogSource, SqlConnector):
    capabilities = kinds.MARIADB
    dialect = "mariadb"
    holds_out_of_range = ("time",)  # PostgreSQL's 24:00:00 is a TIME here
    local_infile: bool | None = None  # whether the server takes LOAD DATA LOCAL INFILE (None: not tried)
    collation = "utf8mb4_bin"  # of the tables it creates: a NO PAD one once `prepare_writer` found it
    stage_collation: str | None = None  # of its temporary tables: the target table's

    def __init__(self, name: str, spec: SqlConnectionSpec, base_dir: Path):
        super().__init__(name, spec, base_dir)
        from runner.connectors.sql.mariadb_local import connect_guarded  # PyMySQL: ~40 ms, on use

        event.listen(self.engine, "do_connect", connect_guarded)

    def read_connection(self) -> Any:
        """While a cdc snapshot is read (`MariadbChangeLog.start`): its connection, whose
        transaction sees the table as of the snapshot's binlog position."""
        if self._pinned is not None:
            return _Lent(self._pinned)
        return super().read_connection()

    def engine_url(self, url: URL) -> URL:
        query = dict(url.query)
        query.setdefault("charset", "utf8mb4")
        return url.set(drivername="mariadb+pymysql", query=query)

    def parse_type(self, declared: str) -> ColumnType | None:
        name, a, b = split_type(declared)
        if name in ("tinyint", "tinyint unsigned"):
            return ColumnType("boolean") if a == 1 else ColumnType("smallint")
        if name in ("decimal", "numeric", "decimal unsigned"):
            return ColumnType("decimal", precision=a or 10, scale=b or 0)
        if name == "bigint unsigned":
            return ColumnType("decimal", precision=20, scale=0)
        if name == "varchar":
            return ColumnType("varchar", length=a)
        if name == "char":
            return ColumnType("char", length=a or 1)
        kind = _SIMPLE.get(name)
        return ColumnType(kind) if kind else None  # type: ignore[arg-type]

    def render_type(self, ctype: ColumnType) -> str:
        if ctype.kind == "decimal":
            return f"DECIMAL({ctype.precision},{ctype.scale or 0})" if ctype.precision else "DECIMAL(65,30)"
        if ctype.kind == "varchar":
            return f"VARCHAR({ctype.length})" if (ctype.length or 0) <= _MAX_VARCHAR else "LONGTEXT"
        if ctype.kind == "char":
            length = ctype.length or 1
            return f"CHAR({length})" if length <= 255 else self.render_type(ColumnType("varchar", length))
        return _RENDER[ctype.kind]

    def prepare_writer(self, dbapi: Any) -> None:
        with dbapi.cursor() as cursor:
            names = ", ".join(f"'{name}'" for name in _NO_PAD)
            cursor.execute(f"SHOW COLLATION WHERE Collation IN ({names})")
            found = {row[0] for row in cursor.fetchall()}
        self.collation = next((name for name in _NO_PAD if name in found), "utf8mb4_bin")

    def create_table_ddl(
        self,
        table: str,
        columns: list[Column],
        keys: list[str] | None = None,
        soft_delete_column: str | None = None,
        history: History | None = None,
    ) -> list[str]:
        """As a writer would create it: with the collation a writer finds first (a dry run into a
        missing table opens no writer)."""
        with self.connection("reading the server's collations") as dbapi:
            self.prepare_writer(dbapi)
            dbapi.rollback()
        return super().create_table_ddl(table, columns, keys, soft_delete_column, history)

    def table_options(self, keys: list[str]) -> str:
        return f" DEFAULT CHARSET=utf8mb4 COLLATE={self.collation}"

    def follow_target(self, cursor: Any, table: str) -> None:
        schema, _, name = table.rpartition(".")
        cursor.execute(
            "SELECT TABLE_COLLATION FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = COALESCE(%s, DATABASE()) AND TABLE_NAME = %s",
            (schema or None, name),
        )
        row = cursor.fetchone()
        self.stage_collation = row[0] if row and row[0] else None

    def declared_columns(self, cursor: Any, spec: ReadSpec) -> list[tuple[str, str]]:
        if spec.table is not None:
            table = self.quote_table(spec.table)
            cursor.execute(f"SHOW COLUMNS FROM {table}")
            columns = [(r[0], r[1]) for r in cursor.fetchall()]
            if any(declared == "longtext" for _, declared in columns):  # MariaDB's JSON?
                cursor.execute(f"SHOW CREATE TABLE {table}")
                checked = {m.replace("``", "`") for m in _JSON_CHECK.findall(cursor.fetchone()[1])}
                columns = [(n, "json" if t == "longtext" and n in checked else t) for n, t in columns]
            return columns
        assert spec.query is not None
        query = spec.query.strip().rstrip(";")
        # prepared alone first: a syntax error then quotes the user's query, not the probe's
        cursor.execute("PREPARE runner_probe FROM %s", (query,))
        cursor.execute("DEALLOCATE PREPARE runner_probe")
        cursor.execute("DROP TEMPORARY TABLE IF EXISTS runner_probe")
        cursor.execute(f"CREATE TEMPORARY TABLE runner_probe AS SELECT * FROM ({query}) AS q LIMIT 0")
        cursor.execute("SHOW COLUMNS FROM runner_probe")
        rows = [(r[0], r[1]) for r in cursor.fetchall()]
        cursor.execute("DROP TEMPORARY TABLE runner_probe")
        return rows

    def select_expr(self, name: str, ctype: ColumnType | None) -> str:
        """MariaDB sends a FLOAT as text of 6 digits (16777216 reads as 16777200): cast to
        DOUBLE, its exact value is sent."""
        if ctype is not None and ctype.kind == "real":
            return f"CAST({self.quote(name)} AS DOUBLE) AS {self.quote(name)}"
        return self.quote(name)

    def indexed(self, table: str, column: str) -> bool | None:
        schema, _, name = table.rpartition(".")
        rows = self._query(
            "reading the table's indexes",
            "SELECT t.TABLE_TYPE = 'BASE TABLE', EXISTS (SELECT 1 FROM information_schema.STATISTICS s "
            "WHERE s.TABLE_SCHEMA = t.TABLE_SCHEMA AND s.TABLE_NAME = t.TABLE_NAME AND s.SEQ_IN_INDEX = 1 "
            "AND s.COLUMN_NAME = %s) FROM information_schema.TABLES t "
            "WHERE t.TABLE_SCHEMA = COALESCE(%s, DATABASE()) AND t.TABLE_NAME = %s",
            (column, schema or None, name),
        )
        return bool(rows[0][1]) if rows and rows[0][0] else None

    def unmapped_expr(self, name: str, declared: str, as_json: bool) -> str:
        q = self.quote(name)
        text = f"CAST({q} AS CHAR)"
        kind, width, _ = split_type(declared)
        if kind == "bit":  # its bytes as text are lossy (0xff is not UTF-8): its bits, as the binlog's
            text = f"LPAD(BIN({q}), {width or 1}, '0')"
        return f"JSON_QUOTE({text}) AS {q}" if as_json else f"{text} AS {q}"

    def decoder(self, ctype: ColumnType) -> Convert | None:
        if ctype.kind in ("date", "timestamp"):
            return _zero_date
        if ctype == _UNSIGNED_BIGINT:
            return _unsigned_bigint
        return {"boolean": bool, "uuid": uuid_value, "json": json_value, "jsonb": json_value}.get(ctype.kind)

    def encoder(self, ctype: ColumnType) -> Convert | None:
        if ctype.kind == "decimal" and not ctype.precision:
            return _unbounded_decimal
        if ctype.kind == "duration":  # PyMySQL spells a negative one wrongly (-30 min as -1:30:00)
            return duration_text
        if ctype.kind in ("timestamp", "timestamptz"):
            return to_naive_utc
        if ctype.kind in ("json", "jsonb"):
            return json_text
        if ctype.kind == "uuid":
            return text_of
        return None

    def bucket_sql(self, column: str, width: int) -> str:
        return f"({column} DIV {int(width)})"

    def key_hash_sums(self, column: str) -> list[tuple[str, int]]:
        # one MD5 a key (its cost dominates); SUM of an unsigned BIGINT is an exact DECIMAL
        return [(f"SUM(CAST(CONV(LEFT(MD5({column}), {KEY_HASH_BITS // 4}), 16, 10) AS UNSIGNED))", 0)]

    def digest_value_sql(self, name: str, ctype: ColumnType) -> str:
        # a FLOAT's text has 6 digits (1.0000001 is '1'): its exact value is a DOUBLE's text
        return f"CAST({name} AS DOUBLE)" if ctype.kind == "real" else name

    def canonical_sql(self, expr: str, ctype: ColumnType) -> str | None:
        kind = ctype.kind
        if kind == "real":  # the single-precision value, whatever the column holds (`comparable`)
            return f"CAST(CAST(CAST({expr} AS FLOAT) AS DOUBLE) AS CHAR)"
        if kind == "double":
            return f"CAST(CAST({expr} AS DOUBLE) AS CHAR)"
        if kind == "boolean":
            return f"CASE WHEN {expr} THEN '1' WHEN NOT {expr} THEN '0' END"
        if kind == "date":
            return f"DATE_FORMAT({expr}, '%Y-%m-%d')"
        if kind in ("timestamp", "timestamptz"):
            return f"DATE_FORMAT({expr}, '%Y-%m-%d %H:%i:%s.%f')"
        return f"CAST({expr} AS CHAR)"  # integers, decimals, texts

    def canonical_row_sql(self, texts: list[str]) -> str:
        # as bytes: texts of several collations cannot be joined as text; LENGTH counts bytes
        fields = [
            f"COALESCE(CONCAT(LENGTH(CAST({t} AS BINARY)), ':', CAST({t} AS BINARY)), 'N')" for t in texts
        ]
        return f"MD5(CONCAT({', '.join(fields)}))"

    def hex_hash_sums(self, hex_expr: str) -> list[tuple[str, int]]:
        return [(f"SUM(CAST(CONV(LEFT({hex_expr}, {KEY_HASH_BITS // 4}), 16, 10) AS UNSIGNED))", 0)]

    def distinct_sql(self, a: str, b: str, ctype: ColumnType) -> str:
        return f"NOT ({a} <=> {b})"

    def update_join_sql(
        self, target: str, t: str, stage: str, s: str, on: str, sets: list[tuple[str, str]], where: str
    ) -> str:
        assignments = ", ".join(f"{t}.{col} = {expr}" for col, expr in sets)
        return f"UPDATE {target} {t} JOIN {stage} {s} ON {on} SET {assignments} WHERE {where}"

    def create_temp_sql(self, name: str, columns: list[Column], keys: list[str]) -> str:
        # the target's collation (one runner made before NO PAD, or by hand): joined with the
        # target, text columns of two collations are "an illegal mix"
        return (
            super().create_temp_sql(name, columns, keys)
            + f" COLLATE={self.stage_collation or self.collation}"
        )

    def digest_sql(self, names: list[str]) -> str:
        # QUOTE(NULL) is the word NULL, QUOTE('NULL') is 'NULL': NULLs and strings stay apart.
        # Each as bytes: a JSON column's text (utf8mb4_bin) and the text of a table runner made
        # (utf8mb4_nopad_bin) cannot be concatenated as text; the bytes, and so the md5, are
        # the text's own
        quoted = ", ".join(f"CAST(QUOTE({n}) AS BINARY)" for n in names)
        return f"MD5(CONCAT_WS(',', {quoted}))"

    def order_ascii(self, expr: str) -> str:
        return f"BINARY {expr}"

    def drop_temp_sql(self, name: str) -> str:
        return f"DROP TEMPORARY TABLE IF EXISTS {self.quote(name)}"

    transactional_ddl = False  # every ALTER TABLE commits at once

    def alter_columns_sql(
        self, cursor: Any, table: str, types: dict[str, str], nullable: Collection[str] = ()
    ) -> list[str]:
        """MODIFY COLUMN restates a whole column: its NULL or NOT NULL, default, character set
        and collation, comment and extras are read back and repeated, or they would be lost."""
        names = [*types, *(n for n in nullable if n not in types)]
        modified = [self._modify(cursor, table, n, types.get(n), n in nullable) for n in names]
        return [f"ALTER TABLE {self.quote_table(table)} {', '.join(modified)}"]

    def _modify(self, cursor: Any, table: str, name: str, typed: str | None, nullable: bool) -> str:
        schema, _, bare = table.rpartition(".")
        cursor.execute(
            "SELECT COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, CHARACTER_SET_NAME, COLLATION_NAME, "
            "COLUMN_COMMENT, EXTRA FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = "
            "COALESCE(%s, DATABASE()) AND TABLE_NAME = %s AND COLUMN_NAME = %s",
            (schema or None, bare, name),
        )
        declared, is_nullable, default, charset, collation, comment, extra = cursor.fetchone()
        typed = typed or declared
        parts = [f"MODIFY COLUMN {self.quote(name)} {typed}"]
        if charset and collation and typed.upper().startswith(("VARCHAR", "CHAR", "LONGTEXT", "TEXT")):
            parts.append(f"CHARACTER SET {charset} COLLATE {collation}")
        parts.append("NULL" if nullable or is_nullable == "YES" else "NOT NULL")
        if default is not None and default != "NULL":
            parts.append(f"DEFAULT {default}")  # MariaDB gives it as an expression: 'text' quoted
        if extra:
            parts.extend(e for e in ("AUTO_INCREMENT",) if e.lower() in extra.lower())
            on_update = re.search(r"on update (\S+)", extra, re.IGNORECASE)
            if on_update:
                parts.append(f"ON UPDATE {on_update[1]}")
        if comment:
            parts.append("COMMENT '" + comment.replace("\\", "\\\\").replace("'", "''") + "'")
        return " ".join(parts)

    def not_null(self, cursor: Any, table: str) -> set[str]:
        schema, _, bare = table.rpartition(".")
        cursor.execute(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = "
            "COALESCE(%s, DATABASE()) AND TABLE_NAME = %s AND IS_NULLABLE = 'NO'",
            (schema or None, bare),
        )
        return {r[0] for r in cursor.fetchall()}

    def key_types(self, columns: list[Column]) -> list[str]:
        """An index holds at most 3072 bytes, its columns together (a utf8mb4 character takes 4):
        what columns of a bounded size leave is shared by the unbounded ones (text, longer
        varchar, binary) as VARCHAR/VARBINARY; a key that cannot fit is refused before any
        table is made."""
        sizes = [key_bytes(c.type) for c in columns]
        unbounded = sizes.count(None)
        left = INDEX_BYTES - sum(size or 0 for size in sizes)
        share = left // unbounded if unbounded else 0
        if left < 0 or unbounded and share < MIN_SHARE:
            parts = [
                f"{c.name} {c.type}: "
                + (f"{size}" if size is not None else f"the rest, at least {MIN_SHARE}")
                for c, size in zip(columns, sizes, strict=True)
            ]
            raise TerminalError(
                f"a key on {', '.join(c.name for c in columns)} does not fit a MariaDB index, which holds "
                f"{INDEX_BYTES} bytes ({'; '.join(parts)}) (hint: key on fewer or narrower columns, or "
                "cast a column to a shorter varchar in read.query)"
            )
        return [
            self.render_type(c.type)
            if size is not None
            else (f"VARBINARY({share})" if c.type.kind == "binary" else f"VARCHAR({share // 4})")
            for c, size in zip(columns, sizes, strict=True)
        ]

    def error_text(self, exc: Exception) -> str:
        args = getattr(exc, "args", ())
        if len(args) == 2 and isinstance(args[1], str):  # PyMySQL: (error number, message)
            return " ".join(secrets.redact(args[1]).split())
        return super().error_text(exc)

    def error_column(self, exc: Exception) -> str | None:
        match = _ERROR_COLUMN.search(str(exc))
        return match[1] if match else None

    def server_cursor(self, dbapi: Any, batch_size: int) -> Any:
        from pymysql.cursors import SSCursor

        return dbapi.cursor(SSCursor)

    def is_transient(self, exc: Exception) -> bool:
        args = getattr(exc, "args", ())
        return bool(args) and args[0] in _TRANSIENT_ERRNOS

    def missing_table(self, exc: Exception) -> bool:
        args = getattr(exc, "args", ())
        return bool(args) and args[0] in (1146, 1049)  # no such table; no such database

    def engine_options(self) -> dict[str, Any]:
        assert isinstance(self.spec, MariadbConnection)
        timeout = seconds(self.spec.connect_timeout)
        # PyMySQL's connect_timeout covers only the TCP connect: a server that accepts and
        # never sends its handshake is given up on by a read timeout, which `_connected`
        # lifts once connected (a query may take as long as it takes)
        args = {"connect_timeout": timeout, "read_timeout": timeout}
        return {"connect_args": args}

    def connected(self, dbapi: Any) -> None:
        dbapi._read_timeout = None  # PyMySQL's own; it applies it before the next read

    def insert_rows(
        self, cursor: Any, table: str, names: list[str], rows: list[tuple[Any, ...]], columns: list[Column]
    ) -> None:
        """LOAD DATA LOCAL INFILE of the batch as tab-separated text: several times faster than
        multi-row INSERTs, whose every value PyMySQL escapes in Python. A server that refuses
        LOCAL INFILE (local_infile=OFF, MySQL's default) gets the multi-row INSERTs."""
        if self.local_infile is not False:
            from runner.connectors.sql.mariadb_local import is_refusal

            fields = [TSV.get(c.type.kind, text_field) for c in columns]
            data = "".join("\t".join(f(v) for f, v in zip(fields, row, strict=True)) + "\n" for row in rows)
            try:
                self.load(cursor, data.encode(), table, names, [c.type.kind == "binary" for c in columns])
                self.local_infile = True
                return
            except Exception as exc:
                if getattr(exc, "args", (None,))[0] not in _NO_LOCAL_INFILE or is_refusal(exc):
                    raise
                self.local_infile = False
        marks = ", ".join(["%s"] * len(names))
        cursor.executemany(f"INSERT INTO {table} ({', '.join(names)}) VALUES ({marks})", rows)

    def load(self, cursor: Any, data: bytes, table: str, names: list[str], binary: list[bool]) -> None:
        """LOAD DATA LOCAL INFILE of tab-separated bytes, served from memory by the guarded
        connection under a one-time token (no file is written or read). LOCAL turns the errors
        a row would raise into warnings, so any warning fails the load (and the writer names
        the row)."""
        targets = [f"@v{i}" if hexed else n for i, (n, hexed) in enumerate(zip(names, binary, strict=True))]
        sets = [
            f"{n} = UNHEX(@v{i})" for i, (n, hexed) in enumerate(zip(names, binary, strict=True)) if hexed
        ]
        from runner.connectors.sql.mariadb_local import offer

        token = offer(cursor.connection, data)
        cursor.execute(
            f"LOAD DATA LOCAL INFILE %s INTO TABLE {table} CHARACTER SET utf8mb4 "
            f"FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' "
            f"({', '.join(targets)})" + (f" SET {', '.join(sets)}" if sets else ""),
            (token,),
        )
        result = cursor.connection._result  # PyMySQL keeps the statement's warning count there
        if result is not None and result.warning_count:
            from pymysql.err import DataError

            cursor.execute("SHOW WARNINGS LIMIT 1")
            _level, code, message = cursor.fetchone()
            raise DataError(code, message)
