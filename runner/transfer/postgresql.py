"""PostgreSQL to PostgreSQL: the source's binary COPY output is the target's binary COPY
input, passed through untouched; rows the source computes (keys, digests, bucket sums) are
packed into arrays of a few hundred rows each, so the copy passes thousands of messages
through Python instead of one per row."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from runner.connectors.base import Source
from runner.connectors.sql.fastpath import FastPath
from runner.connectors.sql.postgresql import PostgresqlConnector
from runner.definitions.tasks import ReadSpec
from runner.streams.readahead import ReadAhead
from runner.streams.types import Column, ColumnType
from runner.transfer.registry import FAST_PATHS

PACKED = "runner_packed"
ROWS_PER_ARRAY = 200  # 200 bigints stay under the size (2 kB) PostgreSQL would compress


class PostgresqlToPostgresql(FastPath):
    packs = True

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
        """PostgreSQL to PostgreSQL with the same column types: the source's binary COPY
        output is the target's binary COPY input, passed through untouched."""
        if not isinstance(source, PostgresqlConnector) or any(
            c.type.kind != t.kind for c, t in zip(columns, targets, strict=True)
        ):
            return None
        names = ", ".join(target.quote(c.name) for c in columns)
        select = f"SELECT {names} FROM {source.source_sql(spec)}" + (f" WHERE {where}" if where else "")
        with cursor.copy(f"COPY {into} ({names}) FROM STDIN (FORMAT binary)") as sink:
            for block in source.copy_out(select):
                sink.write(block)
        return cursor.rowcount

    def copy_packed(
        self,
        target: PostgresqlConnector,
        cursor: Any,
        source: Source,
        exprs: list[str],
        from_sql: str,
        columns: list[Column],
        into: str | None,
        meanwhile: Callable[[], None] | None = None,
    ) -> int | None:
        """PostgreSQL to PostgreSQL: `exprs` are packed in the source into arrays of a few
        hundred rows each, so the copy passes thousands of messages through Python instead of
        one per row (~3 µs each), then unpacked into `columns` of `into` (or, with `into`
        None, left packed for `packed_sql`)."""
        if not isinstance(source, PostgresqlConnector):
            return None
        q = target.quote
        names = [q(c.name) for c in columns]
        picked = ", ".join(f"{e} AS {n}" for e, n in zip(exprs, names, strict=True))
        rows = f"SELECT {picked}, (row_number() OVER ()) / {ROWS_PER_ARRAY} AS runner_g FROM {from_sql}"
        select = f"SELECT {', '.join(f'array_agg({n})' for n in names)} FROM ({rows}) r GROUP BY runner_g"
        packed = q(PACKED)
        arrays = ", ".join(f"{n} {target.render_type(c.type)}[]" for n, c in zip(names, columns, strict=True))
        stream = ReadAhead(source.copy_out(select))  # the source starts at once
        try:
            cursor.execute(target.drop_temp_sql(PACKED))
            cursor.execute(f"CREATE TEMPORARY TABLE {packed} ({arrays})")
            if meanwhile is not None:
                meanwhile()
            with cursor.copy(f"COPY {packed} FROM STDIN (FORMAT binary)") as sink:
                for block in stream:
                    sink.write(block)
        finally:
            stream.close()
        if into is None:
            cursor.execute(f"SELECT coalesce(sum(cardinality({names[0]})), 0) FROM {packed}")
            return int(cursor.fetchone()[0])
        unpacked = self.packed_sql(target, columns)
        cursor.execute(f"INSERT INTO {into} ({', '.join(names)}) SELECT * FROM {unpacked} u")
        count = cursor.rowcount
        cursor.execute(f"DROP TABLE {packed}")
        return count

    def packed_sql(self, target: PostgresqlConnector, columns: list[Column]) -> str:
        names = [target.quote(c.name) for c in columns]
        unpacked = ", ".join(f"p.{n}" for n in names)
        return f"(SELECT u.* FROM {target.quote(PACKED)} p, unnest({unpacked}) AS u({', '.join(names)}))"


FAST_PATHS.register(("postgresql", "postgresql"), PostgresqlToPostgresql())
