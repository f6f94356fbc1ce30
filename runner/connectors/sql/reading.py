"""Reading a SQL source: a table or query streamed in bounded batches on a server-side cursor
(in the column's order past a watermark), row digests computed in the database, rows fetched
by key, a user's query; and the columns a read has, with the types runner maps them to."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from runner.connectors.base import MissingColumn, ReadStream, Watermark
from runner.definitions import secrets
from runner.definitions.tasks import ReadSpec
from runner.errors import TerminalError
from runner.streams.types import Batch, Column, ColumnType
from runner.streams.values import row_converter, to_aware_utc

if TYPE_CHECKING:
    pass


class SqlReading:
    """The `Source`, `QuerySource`, `DigestSource` and `KeyLookup` methods of `SqlConnector`."""

    def highest(self, spec: ReadSpec, column: str) -> Any:
        self.check_readable()
        ((value,),) = self._query(
            f"reading the highest {column} of {spec.table or 'the query'}",
            f"SELECT max({self.quote(column)}) FROM {self.source_sql(spec)}",
        )
        return value

    def read_connection(self) -> Any:
        """The DBAPI connection a read streams from (closed when the read ends): a new one, or
        one a dialect lends (MariaDB's cdc snapshot, `MariadbConnector.read_connection`)."""
        return self.engine.raw_connection()

    def _probe(self, cursor: Any, spec: ReadSpec) -> list[tuple[str, ColumnType | None, str | None]]:
        """`_columns`, with an error of the user's query told in its terms: the statement
        that failed is runner's own (a view or table made of the query), which the user
        never wrote."""
        try:
            return self._columns(cursor, spec)
        except self.engine.dialect.loaded_dbapi.Error as exc:
            if spec.query is None or self.is_transient(exc):
                raise
            message = f"read.query (connection {self.name!r}): {self.error_text(exc)}"
            raise TerminalError(secrets.redact(message)) from None

    def _columns(self, cursor: Any, spec: ReadSpec) -> list[tuple[str, ColumnType | None, str | None]]:
        """(name, type, declared type when runner cannot map it) of a table's or query's
        columns. A type runner cannot map is read as `read.unmapped_types` says (text or JSON);
        with `error` (the default), every such column is named in one error."""
        columns: list[tuple[str, ColumnType | None, str | None]] = []
        unmapped = []
        for name, declared in self.declared_columns(cursor, spec):
            ctype = self.parse_type(declared)
            if declared and ctype is None:
                unmapped.append(f"{name!r} ({declared})")
                fallback = {"text": ColumnType("text"), "json": ColumnType("jsonb")}.get(spec.unmapped_types)
                columns.append((name, fallback, declared))
            else:
                columns.append((name, ctype, None))
        if unmapped and spec.unmapped_types == "error":
            raise TerminalError(
                f"{spec.table or 'the query'} (connection {self.name!r}) has column(s) of types runner "
                f"cannot map: {', '.join(unmapped)}; set read.unmapped_types to text or json, or cast "
                "them in a query"
            )
        return columns

    def unmapped_expr(self, name: str, declared: str, as_json: bool) -> str:
        """A column of a type runner cannot map (`declared`), read as its text or as JSON
        (`… AS name`)."""
        raise NotImplementedError(f"{self.dialect} has no column runner cannot map")

    def column_expr(self, column: Column) -> str:
        """What a read selects for a column (`select_expr`, or `unmapped_expr`)."""
        if column.unmapped:
            return self.unmapped_expr(column.name, column.unmapped, column.type.kind == "jsonb")
        return self.select_expr(column.name, column.type)

    def read(
        self,
        spec: ReadSpec,
        batch_size: int,
        watermark: Watermark | None = None,
        select: list[str] | None = None,
        limit: int | None = None,
    ) -> ReadStream:
        doing = f"reading {spec.table or 'query'}"
        self.check_readable()
        # not `connection()`: the first batch is fetched here (to type untyped columns) and the
        # connection is then handed to the batch generator, which closes it
        with self.errors(doing):
            dbapi = self.read_connection()
        try:
            with self.errors(doing):
                self.begin_read(dbapi)
                probe = dbapi.cursor()
                declared = self._probe(probe, spec)
                probe.close()
                dbapi.rollback()
                self.begin_read(dbapi)
                if select is not None:
                    missing = [n for n in select if n not in {d[0] for d in declared}]
                    if missing:
                        raise TerminalError(f"column(s) {', '.join(map(repr, missing))} not in the source")
                    declared = [d for d in declared if d[0] in select]
                    declared.sort(key=lambda d: select.index(d[0]))
                names = [d[0] for d in declared]
                if watermark is not None and watermark.column not in names:
                    raise MissingColumn(
                        f"watermark column {watermark.column!r} is not among the source's columns", names
                    )
                types = {n: t for n, t, _ in declared}
                if watermark is not None and types[watermark.column] == ColumnType("timestamptz"):
                    # a pointer kept without its zone (by an older runner) is UTC, never local time
                    watermark = Watermark(
                        watermark.column, to_aware_utc(watermark.since), to_aware_utc(watermark.until)
                    )
                exprs = [
                    self.unmapped_expr(n, u, spec.unmapped_types == "json") if u else self.select_expr(n, t)
                    for n, t, u in declared
                ]
                rewritten = select is not None or exprs != [self.quote(n) for n in names]
                sql, params = self._select_sql(spec, exprs, watermark, rewritten, limit)
                cursor = self.server_cursor(dbapi.driver_connection, batch_size)
                cursor.execute(sql, params) if params else cursor.execute(sql)
                wanted = batch_size if limit is None else min(batch_size, limit)
                first = cursor.fetchmany(wanted)
        except BaseException:
            dbapi.close()
            raise
        closed: list[bool] = []

        def close_once() -> None:
            if not closed:
                closed.append(True)
                dbapi.close()

        # fewer rows than asked for: the result is all read, and its connection is closed now
        # rather than once the batch is taken: a task holds the read from here while its writer
        # waits for the target (a SQLite file's turn, a lock), or, in a daemon's slot, hundreds do
        whole = len(first) < wanted
        if whole:
            close_once()
        columns = [Column(n, t or infer_type(first, i), u) for i, (n, t, u) in enumerate(declared)]
        convert = row_converter([self.decoder(c.type) for c in columns], columns)
        w_index = names.index(watermark.column) if watermark is not None else None
        stream = ReadStream(columns, iter(()))

        def batches() -> Iterator[Batch]:
            try:
                batch, left = first, limit
                while batch:
                    if w_index is not None:
                        stream.pointer = _highest(stream.pointer, batch, w_index, columns[w_index].name)
                    yield convert(batch) if convert else list(batch)
                    if whole:
                        break
                    if left is not None:
                        left -= len(batch)
                        if left <= 0:
                            with self.errors(doing):
                                cursor.fetchall()  # only the end of the LIMITed result is left
                            break
                    with self.errors(doing):
                        batch = cursor.fetchmany(batch_size if left is None else min(batch_size, left))
            finally:
                close_once()

        stream.batches = _Batches(batches(), close_once)
        return stream

    def _select_sql(
        self, spec: ReadSpec, exprs: list[str], watermark: Watermark | None, subset: bool, limit: int | None
    ) -> tuple[str, tuple]:
        q = self.quote
        if spec.table is not None:
            sql = f"SELECT {', '.join(exprs)} FROM {self.quote_table(spec.table)}"
        elif watermark is None and not subset and limit is None:
            sql = spec.query or ""
        else:
            query = (spec.query or "").strip().rstrip(";")
            sql = f"SELECT {', '.join(exprs)} FROM ({query}) q"
        if watermark is None:  # a LIMIT spares draining an unbuffered result (MariaDB) when closing early
            return sql + (f" LIMIT {int(limit)}" if limit is not None else ""), ()
        column = q(watermark.column)
        params: tuple = ()
        if (watermark.since is not None or watermark.until is not None) and self.mark == "%s":
            sql = sql.replace("%", "%%")  # the user's SQL meets a driver that formats with %
        if watermark.until is not None:  # a backfill's window: NULLs are read once caught up
            sql += f" WHERE {column} >= {self.mark} AND {column} < {self.mark}"
            params = (watermark.since, watermark.until)
        elif watermark.since is not None:
            sql += f" WHERE {column} >= {self.mark} OR {column} IS NULL"
            params = (watermark.since,)
        return f"{sql} ORDER BY {column}" + (f" LIMIT {int(limit)}" if limit is not None else ""), params

    def watermark_sql(self, watermark: Watermark, ctype: ColumnType) -> str | None:
        """The condition of a read past `watermark.since` (rows at or past it, and NULLs, as
        `read` selects them) in this dialect's SQL with the value written as a literal, for a
        copy inside the databases (a COPY takes no parameters); None where the dialect cannot
        write one."""
        return None

    def source_sql(self, spec: ReadSpec) -> str:
        """What follows FROM: the table, or the query as a derived table."""
        if spec.table is not None:
            return self.quote_table(spec.table)
        return f"({(spec.query or '').strip().rstrip(';')}) q"

    def digest_sql(self, names: list[str]) -> str:
        """A SQL expression: the md5 hex of the listed (quoted) columns' values, NULL-safe."""
        return f"md5(ROW({', '.join(names)})::text)"

    def row_hash(self, names: list[str], columns: list[Column]) -> tuple[str, ColumnType] | None:
        """A SQL expression hashing a row's listed (quoted) columns, and its type, that every
        database of this dialect computes alike, for comparing rows inside the target
        (`SqlWriter.copy_digests`); None when the dialect has none."""
        return None

    def order_ascii(self, expr: str) -> str:
        """ORDER BY term sorting `expr` (ASCII hex) byte-wise, whatever the collation."""
        return expr

    def prepare_digests(self, dbapi: Any) -> None:
        """Set up what `digest_sql` needs on a connection (SQLite: an md5 function)."""

    def read_digests(
        self, spec: ReadSpec, columns: list[Column], keys: list[str], batch_size: int, with_rows: bool
    ) -> Iterator[Batch]:
        doing = f"reading digests of {spec.table or 'query'}"
        self.check_readable()
        q = self.quote
        names = [q(c.name) for c in columns]
        exprs = [self.column_expr(c) for c in columns]
        picked = [f"{q(k)} AS runner_k{i}" for i, k in enumerate(keys)] + (exprs if with_rows else [])
        key_hash, row_hash = self.digest_sql([q(k) for k in keys]), self.digest_sql(names)
        sql = (
            f"SELECT * FROM (SELECT {key_hash} AS runner_kh, {row_hash} AS runner_rh, {', '.join(picked)} "
            f"FROM {self.source_sql(spec)}) d ORDER BY {self.order_ascii('runner_kh')}"
        )
        convert = row_converter([self.decoder(c.type) for c in columns], columns) if with_rows else None
        start = 2 + len(keys)
        with self.connection(doing) as dbapi:
            self.prepare_digests(dbapi.driver_connection)
            cursor = self.server_cursor(dbapi.driver_connection, batch_size)
            cursor.execute(sql)
            while batch := cursor.fetchmany(batch_size):
                if convert:
                    rows = convert([r[start:] for r in batch])
                    batch = [r[:start] + row for r, row in zip(batch, rows, strict=True)]
                yield batch

    def read_by_keys(
        self, spec: ReadSpec, columns: list[Column], keys: list[str], values: list[tuple]
    ) -> Batch:
        if not values:
            return []
        q, m = self.quote, self.mark
        source = self.source_sql(spec)
        if m == "%s":
            source = source.replace("%", "%%")
        if len(keys) == 1:
            where = f"{q(keys[0])} IN ({', '.join([m] * len(values))})"
            params = tuple(v[0] for v in values)
        else:
            row = f"({', '.join([m] * len(keys))})"
            where = f"({', '.join(q(k) for k in keys)}) IN ({', '.join([row] * len(values))})"
            params = tuple(x for v in values for x in v)
        exprs = ", ".join(self.column_expr(c) for c in columns)
        sql = f"SELECT {exprs} FROM {source} WHERE {where}"
        rows = self._query(f"reading changed rows of {spec.table or 'query'}", sql, params)
        return self.batch_decoder(columns)(rows)

    def read_query(self, sql: str, types: list[ColumnType], batch_size: int) -> Iterator[Batch]:
        doing = "reading the deleted keys query"
        self.check_readable()
        columns = [Column(f"column {i + 1}", t) for i, t in enumerate(types)]
        convert = row_converter([self.decoder(t) for t in types], columns)
        with self.connection(doing) as dbapi:
            cursor = self.server_cursor(dbapi.driver_connection, batch_size)
            cursor.execute(sql)
            if len(cursor.description) != len(types):
                raise TerminalError(
                    f"the deleted keys query returns {len(cursor.description)} column(s); "
                    f"write.keys has {len(types)}"
                )
            while batch := cursor.fetchmany(batch_size):
                yield convert(batch) if convert else list(batch)


def _highest(current: Any, batch: Batch, index: int, name: str) -> Any:
    """The highest non-NULL value of column `index` in `batch` and `current`."""
    try:
        values = [row[index] for row in batch if row[index] is not None]
        if current is not None:
            values.append(current)
        return max(values) if values else current
    except TypeError:
        raise TerminalError(
            f"watermark column {name!r} mixes values that cannot be ordered (e.g. text and numbers)"
        ) from None


def infer_type(batch: Batch, index: int) -> ColumnType:
    """A type for a column its database declares none for (an expression in SQLite), from the
    first non-NULL value of the first batch; text when every value is NULL."""
    for row in batch:
        value = row[index]
        if value is None:
            continue
        if isinstance(value, bool):
            return ColumnType("boolean")
        if isinstance(value, int):
            return ColumnType("bigint")
        if isinstance(value, float):
            return ColumnType("double")
        if isinstance(value, bytes):
            return ColumnType("binary")
        return ColumnType("text")
    return ColumnType("text")


class _Batches(Iterator[Batch]):
    """A read's batches, holding the connection its first batch was fetched on: `close` frees
    it even when the batches were never iterated (a generator closed before it started skips
    its `finally`, and its connection would stay open, holding a lock on the source table,
    until the garbage collector found it: e.g. after a copy inside the databases took the
    rows instead, or a writer that refused to open)."""

    def __init__(self, batches: Iterator[Batch], close: Callable[[], None]):
        self.batches, self._close = batches, close

    def __next__(self) -> Batch:
        return next(self.batches)

    def close(self) -> None:
        close = getattr(self.batches, "close", None)
        if close is not None:
            close()
        self._close()
