"""The SQL base of the database kinds: a reader and writer over a DBAPI connection from
SQLAlchemy. A dialect module only says how to name its types, find a table's or query's
columns, and convert values its driver does not convert itself."""

from __future__ import annotations

import time
from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.engine import URL

from runner.connectors.base import Capabilities, Connector, Copy, MissingColumn, ReadStream, Watermark
from runner.connectors.sql.keys import key_conditions
from runner.connectors.sql.scripts import ScriptWriter
from runner.connectors.sql.spec import SqlConnectionSpec
from runner.connectors.sql.writer import SqlWriter
from runner.definitions import secrets
from runner.definitions.models import seconds
from runner.definitions.tasks import ReadSpec
from runner.errors import TerminalError, TransientError
from runner.streams.keys import BucketDigest
from runner.streams.types import Batch, Column, ColumnType, Convert
from runner.streams.values import TIMES, OutOfRange, row_converter, to_aware_utc

if TYPE_CHECKING:
    from runner.streams.cancel import CancelToken

# --- the SQL base ------------------------------------------------------------------------


class SqlConnector(Connector):
    """Reader and writer over a DBAPI connection from SQLAlchemy.

    Subclasses set `dialect` and implement the type names, column discovery and bulk insert
    of their database.
    """

    capabilities = Capabilities(
        query=True,
        key_lookup=True,
        digests=True,
        key_buckets=True,
        native_merge=True,
        scripts=True,
        copy_while_reading=True,
    )
    dialect: ClassVar[str]
    holds_out_of_range: ClassVar[tuple[str, ...]] = ()  # kinds whose columns take an `OutOfRange`

    def __init__(self, name: str, spec: SqlConnectionSpec, base_dir: Path):
        super().__init__(name, spec, base_dir)
        try:
            url = self.engine_url(secrets.resolve_url(spec.url, base_dir))
        except secrets.SecretError as exc:
            raise TerminalError(f"connection {name!r}: {exc}") from None
        self.engine = sa.create_engine(url, poolclass=sa.NullPool, **self.engine_options())
        sa.event.listen(self.engine, "connect", lambda dbapi, _record: self.connected(dbapi))
        self.preparer = self.engine.dialect.identifier_preparer

    def quote(self, name: str) -> str:
        """An identifier, always quoted (and its quote characters escaped): names from YAML
        are never spliced into SQL as they are."""
        return self.preparer.quote_identifier(name)

    def close(self) -> None:
        self.engine.dispose()

    # --- what a dialect provides -------------------------------------------------------

    def engine_url(self, url: URL) -> URL:
        """The URL SQLAlchemy opens (driver name, defaults)."""
        return url

    def engine_options(self) -> dict[str, Any]:
        """Extra arguments of `create_engine` (driver options)."""
        return {}

    def connected(self, dbapi: Any) -> None:
        """Right after a DBAPI connection is made (settings that only the handshake needed)."""

    def check_connection(self) -> None:
        """Connect once, so that a server that is down or does not answer fails the run at its
        start, naming the connection (and the timeout, when it was that)."""
        started = time.monotonic()
        try:
            with self.connection("connecting"):
                pass
        except TransientError as exc:
            limit = getattr(self.spec, "connect_timeout", None)
            if limit is None or time.monotonic() - started < seconds(limit):
                raise
            raise TransientError(f"{exc} (no answer within connect_timeout: {seconds(limit):g} s)") from None

    @abstractmethod
    def parse_type(self, declared: str) -> ColumnType | None:
        """A type name of this dialect as neutral type; None when it has no type."""

    @abstractmethod
    def render_type(self, ctype: ColumnType) -> str:
        """DDL of a neutral type in this dialect."""

    @abstractmethod
    def declared_columns(self, cursor: Any, spec: ReadSpec) -> list[tuple[str, str]]:
        """(name, declared type) of a table's or query's columns, in order."""

    def select_expr(self, name: str, ctype: ColumnType | None) -> str:
        """What a read selects for a column: its quoted name, or an expression named after it
        where the driver would not get the exact value (`… AS name`)."""
        return self.quote(name)

    def decoder(self, ctype: ColumnType) -> Convert | None:
        """Driver value -> canonical value, when the driver does not already give it."""
        return None

    def encoder(self, ctype: ColumnType) -> Convert | None:
        """Canonical value -> a value the driver writes into a column of `ctype`."""
        return None

    @abstractmethod
    def insert_rows(
        self, cursor: Any, table: str, names: list[str], rows: Batch, columns: list[Column]
    ) -> None:
        """Bulk-insert one batch into `names` (quoted) of `table`; `columns` says their types."""

    def begin(self, dbapi: Any) -> None:
        """Start the transaction that `replace` commits (drivers with implicit BEGIN: nothing)."""

    def server_cursor(self, dbapi: Any, batch_size: int) -> Any:
        """A cursor that streams rows from the server instead of loading them all."""
        return dbapi.cursor()

    def is_transient(self, exc: Exception) -> bool:
        """Whether a driver error may pass on its own (lost connection, deadlock)."""
        return isinstance(exc, self.engine.dialect.loaded_dbapi.OperationalError)

    def create_schema_sql(self, schema: str) -> str | None:
        """The statement creating a schema when missing; None where tables have no schema of
        their own to create (SQLite, MariaDB's databases)."""
        return None

    def create_schema(self, dbapi: Any, schema: str) -> None:
        """Create a target table's schema when missing (PostgreSQL), committed at once, before
        the writer's transaction: a schema made inside it would make every parallel writer into
        the same new schema wait for that transaction, and then fail."""

    @property
    def mark(self) -> str:
        """The driver's placeholder for a bound parameter."""
        return "%s"

    def distinct_sql(self, a: str, b: str, ctype: ColumnType) -> str:
        """A null-safe "a differs from b"."""
        return f"{a} IS DISTINCT FROM {b}"

    def update_join_sql(
        self, target: str, t: str, stage: str, s: str, on: str, sets: list[tuple[str, str]], where: str
    ) -> str:
        """UPDATE target rows from the staging table where `where` holds."""
        assignments = ", ".join(f"{col} = {expr}" for col, expr in sets)
        return f"UPDATE {target} AS {t} SET {assignments} FROM {stage} AS {s} WHERE {on} AND ({where})"

    def create_temp_sql(self, name: str, columns: list[Column], keys: list[str]) -> str:
        return f"CREATE TEMPORARY TABLE {self.quote(name)} ({self._columns_ddl(columns, keys)})"

    @abstractmethod
    def drop_temp_sql(self, name: str) -> str:
        """Drop a temporary table if it exists, never a real table of that name."""

    def bucket_sql(self, column: str, width: int) -> str:
        """An integer column's bucket, truncating toward zero as every dialect here does."""
        return f"({column} / {int(width)})"

    def key_summary(self, spec: ReadSpec, key: str) -> tuple[int | None, int | None, int]:
        """min, max and count of an integer key column of the source."""
        k = self.quote(key)
        ((low, high, count),) = self._query(
            "summarising keys", f"SELECT min({k}), max({k}), count(*) FROM {self.source_sql(spec)}"
        )
        return (None if low is None else int(low)), (None if high is None else int(high)), int(count)

    def highest(self, spec: ReadSpec, column: str) -> Any:
        self.check_readable()
        ((value,),) = self._query(
            f"reading the highest {column} of {spec.table or 'the query'}",
            f"SELECT max({self.quote(column)}) FROM {self.source_sql(spec)}",
        )
        return value

    @abstractmethod
    def key_hash_sums(self, column: str) -> list[tuple[str, int]]:
        """Aggregates that give, over a group of rows, the exact sum of `key_hash` of an integer
        column: each value shifted left by its bits and all added (a dialect whose sum would
        overflow sums the hash in parts)."""

    def native_key_hash(self, column: str) -> str | None:
        """An expression of this database's own hash of an integer key, under 2**60: much
        cheaper than md5 (PostgreSQL: 0.03 s a million keys against 1.1 s), but computed by
        this dialect only, so used where both ends are of it (`native_key_hashes` gives it for
        given keys). None where the dialect has none."""
        return None

    def native_key_hashes(self, keys: Sequence[int]) -> dict[int, int]:
        """`native_key_hash` of each key, computed by the database."""
        raise NotImplementedError(f"{self.dialect} has no native key hash")

    def _hash_sums(self, column: str, native: bool) -> list[tuple[str, int]]:
        if native:
            return [(f"sum({self.native_key_hash(column)})", 0)]
        return self.key_hash_sums(column)

    def bucket_digests_sql(self, column: str, width: int, from_sql: str, native: bool = False) -> str:
        """The query of `bucket_digests` over `from_sql` (a table or subquery, aliased);
        `native`: with `native_key_hash` in place of md5's `key_hash`."""
        bucket = self.bucket_sql(column, width)
        hashes = ", ".join(expr for expr, _ in self._hash_sums(column, native))
        return f"SELECT {bucket}, count(*), sum({column}), {hashes} FROM {from_sql} GROUP BY {bucket}"

    def bucket_digests(
        self, rows: Iterable[Sequence[Any]], column: str, native: bool = False
    ) -> dict[int, BucketDigest]:
        """The rows of `bucket_digests_sql` as {bucket: (count, sum of keys, sum of key hashes)}."""
        shifts = [shift for _, shift in self._hash_sums(column, native)]
        return {
            int(r[0]): (int(r[1]), int(r[2]), sum(int(v) << s for v, s in zip(r[3:], shifts, strict=True)))
            for r in rows
        }

    def key_buckets(
        self, spec: ReadSpec, key: str, width: int, native: bool = False
    ) -> dict[int, BucketDigest]:
        """Per bucket of an integer key: its digest (`BucketDigest`), computed in the database."""
        k = self.quote(key)
        sql = self.bucket_digests_sql(k, width, self.source_sql(spec), native)
        with self.connection("summarising keys") as dbapi:
            self.prepare_digests(dbapi.driver_connection)
            cursor = dbapi.cursor()
            cursor.execute(sql)
            rows = cursor.fetchall()
            dbapi.rollback()
        return self.bucket_digests(rows, k, native)

    def read_key_buckets(
        self, spec: ReadSpec, key: str, width: int, buckets: list[int], batch_size: int
    ) -> Iterator[Batch]:
        """The key values of the source rows in the given buckets (see `bucket_sql`)."""
        k, m = self.quote(key), self.mark
        source = self.source_sql(spec)
        if m == "%s":
            source = source.replace("%", "%%")
        marks = ", ".join([m] * len(buckets))
        where = f"{self.bucket_sql(k, width)} IN ({marks})"
        with self.connection("reading keys") as dbapi:
            cursor = dbapi.cursor()
            cursor.execute(f"SELECT {k} FROM {source} WHERE {where}", tuple(buckets))
            while batch := cursor.fetchmany(batch_size):
                yield list(batch)

    def find_keys(
        self, spec: ReadSpec, key: str, values: Sequence[int] = (), ranges: Sequence[tuple[int, int]] = ()
    ) -> set[int]:
        """The source's values of an integer key among `values` or in the inclusive `ranges`
        (by its key index)."""
        source = self.source_sql(spec)
        if self.mark == "%s":
            source = source.replace("%", "%%")
        found: set[int] = set()
        with self.connection("looking up keys") as dbapi:
            cursor = dbapi.cursor()
            for where, params in key_conditions(self.quote(key), self.mark, values, ranges):
                cursor.execute(f"SELECT {self.quote(key)} FROM {source} WHERE {where}", params)
                found.update(int(r[0]) for r in cursor.fetchall())
            dbapi.rollback()
        return found

    def prepare_writer(self, dbapi: Any) -> None:
        """Session settings of a writer's connection, before its transaction."""

    def end_writer(self, dbapi: Any) -> None:
        """After a writer's connection is closed: release what `prepare_writer` took."""

    def follow_target(self, cursor: Any, table: str) -> None:
        """Before a writer creates its temporary tables: what they take from the target table
        (MariaDB: its collation, without which a join of the two fails)."""

    def empty_temp_sql(self, table: str) -> str:
        """Empty a temporary (staging) table."""
        return f"DELETE FROM {table}"

    def analyze_sql(self, table: str) -> str | None:
        """Statement refreshing a (staging) table's statistics, where the planner needs them."""
        return None

    def key_types(self, columns: list[Column]) -> list[str]:
        """DDL of the key columns' types (MariaDB cannot index unbounded text, and shares an
        index's bytes among its columns)."""
        return [self.render_type(c.type) for c in columns]

    def error_column(self, exc: Exception) -> str | None:
        """The column a driver error is about, when it says."""
        return None

    def error_text(self, exc: Exception) -> str:
        """A driver error's message on one line, secrets redacted before the lines are joined."""
        return " ".join(secrets.redact(str(exc)).split())

    # --- shared implementation ---------------------------------------------------------

    def quote_table(self, table: str) -> str:
        schema, _, name = table.rpartition(".")
        return f"{self.quote(schema)}.{self.quote(name)}" if schema else self.quote(name)

    @contextmanager
    def errors(self, doing: str) -> Iterator[None]:
        """Translate driver errors into Transient/Terminal errors naming the connection, with
        every secret value blanked out."""
        try:
            yield
        except (TransientError, TerminalError):
            raise
        except sa.exc.DBAPIError as exc:
            raise self._mapped(doing, exc.orig or exc) from None
        except self.engine.dialect.loaded_dbapi.Error as exc:
            raise self._mapped(doing, exc) from None

    def begin_read(self, dbapi: Any) -> None:
        """Begin a reading transaction on `dbapi` (in the shared snapshot, see `snapshot`)."""

    @contextmanager
    def connection(self, doing: str) -> Iterator[Any]:
        """A DBAPI connection of its own, closed at the end; driver errors are translated as by
        `errors`. Generators that stream from it close it when they are closed."""
        with self.errors(doing):
            dbapi = self.engine.raw_connection()
        try:
            with self.errors(doing):
                self.begin_read(dbapi)
                yield dbapi
        finally:
            dbapi.close()

    def _query(self, doing: str, sql: str, params: tuple = ()) -> list[tuple[Any, ...]]:
        """All rows of one short statement, in a transaction of its own that is rolled back."""
        with self.connection(doing) as dbapi:
            cursor = dbapi.cursor()
            cursor.execute(sql, params) if params else cursor.execute(sql)
            rows = list(cursor.fetchall())
            dbapi.rollback()
        return rows

    def _mapped(self, doing: str, exc: BaseException) -> Exception:
        text = " ".join(secrets.redact(str(exc)).split())  # redacted before it is normalised
        message = secrets.redact(f"{doing} (connection {self.name!r}): {type(exc).__name__}: {text}")
        return TransientError(message) if self.is_transient(exc) else TerminalError(message)  # type: ignore[arg-type]

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

    def unmapped_expr(self, name: str, as_json: bool) -> str:
        """A column of a type runner cannot map, read as its text or as JSON (`… AS name`)."""
        raise NotImplementedError(f"{self.dialect} has no column runner cannot map")

    def column_expr(self, column: Column) -> str:
        """What a read selects for a column (`select_expr`, or `unmapped_expr`)."""
        if column.unmapped:
            return self.unmapped_expr(column.name, column.type.kind == "jsonb")
        return self.select_expr(column.name, column.type)

    def table_exists(self, table: str) -> bool:
        with self.connection(f"looking up {table}") as dbapi:
            try:
                cursor = dbapi.cursor()
                cursor.execute(f"SELECT * FROM {self.quote_table(table)} WHERE 1 = 0")
                cursor.fetchall()
                return True
            except self.engine.dialect.loaded_dbapi.Error:
                return False

    def check_readable(self) -> None:
        """Raise a TerminalError when the source cannot be read for a reason worth naming."""

    def any_of_sql(self, column: str, values: list[int]) -> str:
        """A condition: the integer `column` is one of `values` (written as literals)."""
        return f"{column} IN ({', '.join(str(int(v)) for v in values)})"

    def batch_decoder(self, columns: list[Column]) -> Callable[[Batch], Batch]:
        convert = row_converter([self.decoder(c.type) for c in columns], columns)
        return convert or (lambda batch: batch)

    def batch_encoder(self, columns: list[Column], keys: Sequence[int] = ()) -> Callable[[Batch], Batch]:
        """Canonical rows -> rows this driver writes into columns of these types (a value it
        cannot write names its row by the `keys` columns)."""
        convert = row_converter([self._checked_encoder(c.type) for c in columns], columns, keys)
        return convert or (lambda batch: batch)

    def _checked_encoder(self, ctype: ColumnType) -> Convert | None:
        """`encoder`, refusing an `OutOfRange` date or time where this database has no equal."""
        encode = self.encoder(ctype)
        if ctype.kind in self.holds_out_of_range or ctype.kind not in TIMES:
            return encode

        def checked(value: Any) -> Any:
            if isinstance(value, OutOfRange):
                raise ValueError(f"{self.dialect} has no {ctype.kind} like {str(value)!r}")
            return encode(value) if encode is not None else value

        return checked

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
            dbapi = self.engine.raw_connection()
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
                    watermark = Watermark(watermark.column, to_aware_utc(watermark.since))
                exprs = [
                    self.unmapped_expr(n, spec.unmapped_types == "json") if u else self.select_expr(n, t)
                    for n, t, u in declared
                ]
                rewritten = select is not None or exprs != [self.quote(n) for n in names]
                sql, params = self._select_sql(spec, exprs, watermark, rewritten, limit)
                cursor = self.server_cursor(dbapi.driver_connection, batch_size)
                cursor.execute(sql, params) if params else cursor.execute(sql)
                first = cursor.fetchmany(batch_size if limit is None else min(batch_size, limit))
        except BaseException:
            dbapi.close()
            raise
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
                    if left is not None:
                        left -= len(batch)
                        if left <= 0:
                            with self.errors(doing):
                                cursor.fetchall()  # only the end of the LIMITed result is left
                            break
                    with self.errors(doing):
                        batch = cursor.fetchmany(batch_size if left is None else min(batch_size, left))
            finally:
                dbapi.close()

        stream.batches = batches()
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
        if watermark.since is not None:
            if self.mark == "%s":
                sql = sql.replace("%", "%%")  # the user's SQL meets a driver that formats with %
            sql += f" WHERE {column} >= {self.mark} OR {column} IS NULL"
            params = (watermark.since,)
        return f"{sql} ORDER BY {column}" + (f" LIMIT {int(limit)}" if limit is not None else ""), params

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

    def open_writer(
        self,
        table: str,
        columns: list[Column],
        keys: list[str] | None = None,
        soft_delete_column: str | None = None,
        copy: Copy | None = None,
    ) -> SqlWriter:
        return SqlWriter(self, table, columns, keys, soft_delete_column, copy).opened()

    def open_script_writer(
        self,
        table: str,
        columns: list[Column],
        keys: list[str],
        upsert_script: str,
        delete_script: str | None,
        cancel: CancelToken | None = None,
    ) -> ScriptWriter:
        """A writer that runs the task's Jinja scripts instead of merging, into `table`
        (created when missing, as for a merge); `cancel` stops a render going on."""
        return ScriptWriter(self, table, columns, keys, upsert_script, delete_script, cancel).opened()

    def _columns_ddl(self, columns: list[Column], keys: list[str]) -> str:
        q = self.quote
        key_columns = [c for c in columns if c.name in keys]
        key_types = dict(zip([c.name for c in key_columns], self.key_types(key_columns), strict=True))
        body = [
            f"{q(c.name)} {key_types[c.name]} NOT NULL"
            if c.name in key_types
            else f"{q(c.name)} {self.render_type(c.type)}"
            for c in columns
        ]
        if keys:
            body.append(f"PRIMARY KEY ({', '.join(q(k) for k in keys)})")
        return ", ".join(body)

    def create_table_sql(self, table: str, columns: list[Column], keys: list[str] | None = None) -> str:
        body = self._columns_ddl(columns, keys or [])
        return f"CREATE TABLE IF NOT EXISTS {self.quote_table(table)} ({body}){self.table_options()}"

    def table_options(self) -> str:
        return ""


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
