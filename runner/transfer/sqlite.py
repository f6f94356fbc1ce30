"""SQLite to SQLite: `INSERT … SELECT` from the source file attached read-only to the
target's connection (or the same file), the values moved as stored."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from runner.connectors.base import Source
from runner.connectors.sql.fastpath import FastPath
from runner.connectors.sql.sqlite import SqliteConnector
from runner.definitions.tasks import ReadSpec
from runner.streams.types import Column, ColumnType
from runner.transfer.registry import FAST_PATHS


class SqliteToSqlite(FastPath):
    def prepare(self, target: SqliteConnector, dbapi: Any, source: Source) -> None:
        # ATTACH is refused inside a transaction: it happens before the writer's BEGIN. Read
        # only: BEGIN IMMEDIATE would take the source's write lock too, and the commit would
        # then wait for every reader of the source, such as another job's, which may in turn
        # be waiting for this writer's turn on the target (`prepare_writer`)
        other = source.path if isinstance(source, SqliteConnector) else None
        if other is not None and other != target.path and other.exists():
            dbapi.execute("ATTACH DATABASE ? AS runner_src", (f"file:{quote(str(other))}?mode=ro",))

    def copy(
        self,
        target: SqliteConnector,
        cursor: Any,
        source: Source,
        spec: ReadSpec,
        columns: list[Column],
        into: str,
        targets: list[ColumnType],
        where: str = "",
        progress: Callable[[int], None] | None = None,
    ) -> int | None:
        if not isinstance(source, SqliteConnector) or spec.table is None or source.path is None or where:
            return None
        name = spec.table.rpartition(".")[2]
        if source.path == target.path:
            table, schema = target.quote_table(spec.table), spec.table.rpartition(".")[0] or "main"
        elif "runner_src" in {row[1] for row in cursor.execute("PRAGMA database_list").fetchall()}:
            table, schema = f"runner_src.{target.quote(name)}", "runner_src"
        else:
            return None
        # the values move as stored: both columns must have the same affinity and read back
        # as the same type (INTEGER and BIGINT do; NUMERIC and NUMERIC_TEXT do not)
        cursor.execute(f"PRAGMA {target.quote(schema)}.table_info({target.quote(name)})")
        theirs = {r[1]: target.stored_as(r[2]) for r in cursor.fetchall()}
        target_schema, _, target_name = into.rpartition(".")
        cursor.execute(f"PRAGMA {target_schema + '.' if target_schema else ''}table_info({target_name})")
        ours = {r[1]: target.stored_as(r[2]) for r in cursor.fetchall()}
        if any(theirs.get(c.name) != ours.get(c.name) for c in columns):
            return None
        wanted = [c.name for c in columns]
        if list(theirs) == wanted == list(ours):
            # the same columns in the same order: `INSERT … SELECT *` is the form SQLite's
            # transfer optimisation copies as stored records, about twice as fast as a column list
            cursor.execute(f"INSERT INTO {into} SELECT * FROM {table}")
        else:
            names = ", ".join(target.quote(n) for n in wanted)
            cursor.execute(f"INSERT INTO {into} ({names}) SELECT {names} FROM {table}")
        return cursor.rowcount


FAST_PATHS.register(("sqlite", "sqlite"), SqliteToSqlite())
