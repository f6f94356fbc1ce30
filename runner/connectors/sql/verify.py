"""What `runner verify` asks of a SQL database (`Verifiable`): rows summed up per bucket of an
integer key (count and a sum of row hashes) computed in the database, and rows read in key
order, whole or only in given key ranges, so that only the buckets whose sums differ cross the
wire."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from runner.connectors.base import RowDigest
from runner.connectors.sql.keys import key_conditions
from runner.definitions.tasks import ReadSpec
from runner.errors import TerminalError
from runner.streams.types import INTEGERS, Batch, Column, ColumnType
from runner.streams.values import CANONICAL_KINDS

TEXTS = ("text", "varchar", "char")


class VerifyQueries:
    """The `Verifiable` methods of `SqlConnector`."""

    def verify_source(self, spec: ReadSpec, where: str = "") -> str:
        """What follows FROM (the table or the query), with `where` on its rows: escaped for a
        driver that formats with %, as every statement here binds parameters."""
        source = self.source_sql(spec)
        if self.mark == "%s":
            source = source.replace("%", "%%")
        return f"(SELECT * FROM {source} WHERE {where}) w" if where else source

    def key_range(self, spec: ReadSpec, key: str, where: str = "") -> tuple[int | None, int | None]:
        """min and max of an integer key column over the rows `where` allows (read from the
        key's index where it has one: no scan)."""
        k = self.quote(key)
        ((low, high),) = self._query(
            "summarising keys", f"SELECT min({k}), max({k}) FROM {self.verify_source(spec, where)}"
        )
        return (None if low is None else int(low)), (None if high is None else int(high))

    def row_digest(self, names: list[str], columns: list[Column], hash: str) -> RowDigest | None:
        """Aggregates summing up a hash of each row's listed (quoted) columns, exact for every
        database that computes the same hash: `native`, the dialect's own 64-bit row hash
        where it has one (`row_hash`); `md5`, the md5 of the row's text as this dialect
        spells it (`digest_sql`: alike in databases of one kind for equal stored values);
        `canonical`, the md5 of the row's canonical text (`canonical_row_text`), alike in
        every dialect. None where this dialect computes no such hash for these columns."""
        names = [self.digest_value_sql(n, c.type) for n, c in zip(names, columns, strict=True)]
        if hash == "native":
            hashed = self.row_hash(names, columns)
            if hashed is None or hashed[1].kind != "bigint":
                return None
            return RowDigest("native", [(f"sum({hashed[0]})", 0)])
        if hash == "md5":
            return RowDigest("md5", self.hex_hash_sums(self.digest_sql(names)))
        if any(c.type.kind not in CANONICAL_KINDS for c in columns):
            return None
        texts = [self.canonical_sql(n, c.type) for n, c in zip(names, columns, strict=True)]
        if any(t is None for t in texts):
            return self.canonical_in_python(names, columns)
        return RowDigest("canonical", self.hex_hash_sums(self.canonical_row_sql(texts)))  # type: ignore[arg-type]

    def canonical_sql(self, expr: str, ctype: ColumnType) -> str | None:
        """SQL text of a value of `ctype` exactly as `canonical_text` spells it (NULL for
        NULL); None where this dialect spells it in Python instead (`canonical_in_python`)."""
        return None

    def canonical_row_sql(self, texts: list[str]) -> str:
        """The md5 hex of a row's canonical texts joined as `canonical_row_text` joins them."""
        raise NotImplementedError(f"{self.dialect} joins no canonical text")

    def canonical_in_python(self, names: list[str], columns: list[Column]) -> RowDigest | None:
        """The canonical row hash computed by a function of this process registered on the
        connection (SQLite, whose stored values are decoded in Python); None elsewhere."""
        return None

    def digest_value_sql(self, name: str, ctype: ColumnType) -> str:
        """A column (quoted) as a row hash takes it: its exact value, one text per value."""
        return name

    def hex_hash_sums(self, hex_expr: str) -> list[tuple[str, int]]:
        """Aggregates giving the exact sum of the first 60 bits of an md5 hex expression
        (shifted left by their bits: a dialect whose sum would overflow sums in parts)."""
        raise NotImplementedError(f"{self.dialect} sums no md5")

    def row_buckets(
        self, spec: ReadSpec, key: str, width: int, digest: RowDigest, where: str = ""
    ) -> dict[int, tuple[int, int]]:
        """Per bucket of the integer `key` (`bucket_sql`): the rows' count and sum of row hashes."""
        bucket = self.bucket_sql(self.quote(key), width)
        sums = ", ".join(expr for expr, _ in digest.sums)
        sql = f"SELECT {bucket}, count(*), {sums} FROM {self.verify_source(spec, where)} GROUP BY {bucket}"
        with self.connection("summing up rows per key bucket") as dbapi:
            self.prepare_digests(dbapi.driver_connection)
            self.prepare_verify(dbapi.driver_connection)
            if digest.prepare is not None:
                digest.prepare(dbapi.driver_connection)
            cursor = dbapi.cursor()
            cursor.execute(sql)
            rows = cursor.fetchall()
            dbapi.rollback()
        shifts = [shift for _, shift in digest.sums]
        if any(r[0] is None for r in rows):
            raise TerminalError(f"{spec.table or 'the query'} has rows whose key {key!r} is NULL")
        return {
            int(r[0]): (int(r[1]), sum(int(v or 0) << s for v, s in zip(r[2:], shifts, strict=True)))
            for r in rows
        }

    def prepare_verify(self, dbapi: Any) -> None:
        """Session settings for the sums (PostgreSQL: no JIT compiling for one scan)."""

    def read_in_key_order(
        self,
        spec: ReadSpec,
        columns: list[Column],
        keys: list[Column],
        batch_size: int,
        where: str = "",
        ranges: Sequence[tuple[int, int]] = (),
    ) -> Iterator[Batch]:
        """The rows (`columns`, decoded) ordered by `keys`, of those `where` allows, and only
        in the inclusive `ranges` of the (single, integer) key when given. Text keys are
        ordered byte-wise (`order_ascii`), as Python orders their values."""
        q = self.quote
        exprs = ", ".join(self.column_expr(c) for c in columns)
        order = ", ".join(self.order_ascii(q(k.name)) if k.type.kind in TEXTS else q(k.name) for k in keys)
        source = self.verify_source(spec, where)
        decode = self.batch_decoder(columns)
        doing = f"reading {spec.table or 'the query'} in key order"
        parts: list[tuple[str, tuple]] = [("", ())]
        if ranges:
            assert len(keys) == 1 and keys[0].type.kind in INTEGERS
            parts = [
                (f" WHERE {cond}", params)
                for cond, params in key_conditions(q(keys[0].name), self.mark, self.any_of_sql, ranges=ranges)
            ]
        self.check_readable()
        with self.connection(doing) as dbapi:
            for condition, params in parts:
                cursor = self.server_cursor(dbapi.driver_connection, batch_size)
                sql = f"SELECT {exprs} FROM {source}{condition} ORDER BY {order}"
                cursor.execute(sql, params) if params else cursor.execute(sql)
                while batch := cursor.fetchmany(batch_size):
                    yield decode(list(batch))
                cursor.close()

    def column_types(self, spec: ReadSpec) -> list[Column]:
        """The columns of a table or query as a read gives them (unmapped ones as
        `read.unmapped_types` says), from a read of at most one row."""
        probe = self.read(spec, 1, limit=1)
        for _ in probe.batches:
            pass
        return probe.columns
