"""The SQL base of the database kinds: a reader and writer over a DBAPI connection from
SQLAlchemy. A dialect module only says how to name its types, find a table's or query's
columns, and convert values its driver does not convert itself."""

from __future__ import annotations

import time
from abc import abstractmethod
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, cast

import sqlalchemy as sa
from sqlalchemy.engine import URL

from runner.connectors.base import (
    Connector,
    Copy,
    DiscoveredColumn,
    DiscoveredTable,
    History,
    TableEvolution,
    WriteContext,
)
from runner.connectors.sql import history_mode, kinds, lifecycle
from runner.connectors.sql.buckets import KeyBucketQueries
from runner.connectors.sql.reading import SqlReading
from runner.connectors.sql.scripts import ScriptWriter
from runner.connectors.sql.spec import SqlConnectionSpec
from runner.connectors.sql.transaction import Transaction
from runner.connectors.sql.verify import VerifyQueries
from runner.connectors.sql.writer import SOFT_DELETE_TYPE, SqlWriter
from runner.definitions import secrets
from runner.definitions.models import seconds
from runner.definitions.tasks import ReadSpec, WriteModel, WriteSpec
from runner.errors import TerminalError, TransientError
from runner.streams.types import Batch, Column, ColumnType, Convert
from runner.streams.values import TIMES, OutOfRange, row_converter


class _Statements(Transaction):
    """The transaction a job's SQL events run in."""

    def __init__(self, c: SqlConnector, doing: str):
        self.c, self.doing = c, doing


# --- the SQL base ------------------------------------------------------------------------


class SqlConnector(SqlReading, KeyBucketQueries, VerifyQueries, Connector):
    """Reader and writer over a DBAPI connection from SQLAlchemy.

    Subclasses set `dialect` and implement the type names, column discovery and bulk insert
    of their database.
    """

    capabilities = kinds.SQL
    dialect: ClassVar[str]
    transactional_ddl: ClassVar[bool] = True  # an ALTER TABLE is rolled back with its transaction
    holds_out_of_range: ClassVar[tuple[str, ...]] = ()  # kinds whose columns take an `OutOfRange`
    upserts: ClassVar[bool] = False  # it has `upsert_sql`

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

    @abstractmethod
    def indexed(self, table: str, column: str) -> bool | None:
        """Whether an index of `table` has `column` first, so a read past a watermark on it
        need not scan the whole table (`QuerySource.indexed`); None when `table` is not a
        table (a view)."""

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

    def unique_keys(self, cursor: Any, table: str, keys: list[str], arbiter: bool = False) -> bool:
        """Whether the table refuses a second row of the same `keys` (a primary key or unique
        index on exactly them); with `arbiter`, one `upsert_sql` can name (checked at once, not
        deferred, and valid). False where it is not looked up."""
        return False

    def looks_up_by_key(self, cursor: Any, target: str, stage: str, keys: list[str]) -> bool:
        """Whether the staged rows are cheaper merged into the (quoted) `target` by looking
        each up in its key index than by joining the two tables whole (the stage is small
        beside the target, which has an index on the keys)."""
        return False

    def start_probes(self, cursor: Any) -> bool:
        """Before a merge's joins that `looks_up_by_key` says should look rows up (in the
        merge's savepoint, which undoes it on an error): have the planner do so; True when
        `end_probes` must follow them."""
        return False

    def end_probes(self, cursor: Any) -> None:
        """After a merge that `start_probes` prepared."""

    def upsert_sql(
        self,
        target: str,
        t: str,
        stage: str,
        names: list[str],
        keys: list[str],
        sets: list[tuple[str, str]],
        where: str,
        new_keys: tuple[int, bool] | None = None,
    ) -> str:
        """One statement inserting the staged rows into `target` (aliased `t`) and updating
        those whose key it has, where `where` holds (the staged row is `EXCLUDED`); it returns
        one row, (NULL, inserted, updated). With `new_keys` (width, native), the (single,
        integer) key's `bucket_digests_sql` rows of the keys it inserted follow that row
        (their bucket is never NULL). Only where `upserts`."""
        raise NotImplementedError

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

    def run_statements(self, statements: list[str], log: Callable[..., None]) -> list[int]:
        """See `StatementRunner.run_statements` (a job's SQL events): one transaction, as a
        writer's, so a SQLite file's writers still take turns."""
        doing = "running an event's SQL"
        counts: list[int] = []
        with _Statements(self, doing) as tx:
            for sql in statements:
                log("info", "event statement", sql=sql)
                with self.errors(doing):
                    tx.cursor.execute(sql)
                counts.append(tx.cursor.rowcount if tx.cursor.rowcount is not None else -1)
                log("info", "event statement done", rows_affected=counts[-1])
            tx.commit()
        return counts

    def tables(self, schema: str | None = None) -> list[DiscoveredTable]:
        """See `CatalogSource.tables`: the catalog as SQLAlchemy's inspector reads it, the
        column types as this dialect reads them."""
        try:
            inspector = sa.inspect(self.engine)
            if schema is not None and schema not in (known := inspector.get_schema_names()):
                raise TerminalError(
                    f"connection {self.name!r} has no schema {schema!r} (it has: {', '.join(sorted(known))})"
                )
            names = sorted(inspector.get_table_names(schema=schema))
        except sa.exc.SQLAlchemyError as exc:
            raise self._mapped(f"listing the tables of {schema or 'the default schema'}", exc) from None
        found = []
        with self.connection("reading column types") as dbapi:
            cursor = dbapi.cursor()
            for name in names:
                ref = f"{schema}.{name}" if schema else name
                declared = self.declared_columns(cursor, ReadSpec(table=ref))
                columns = [DiscoveredColumn(c, self._neutral(d), d) for c, d in declared]
                try:
                    key = inspector.get_pk_constraint(name, schema=schema).get("constrained_columns") or []
                except sa.exc.SQLAlchemyError as exc:
                    raise self._mapped(f"reading the primary key of {ref}", exc) from None
                found.append(DiscoveredTable(schema, name, columns, list(key)))
            dbapi.rollback()
        return found

    def _neutral(self, declared: str) -> str | None:
        try:
            ctype = self.parse_type(declared)
        except (TerminalError, ValueError):
            return None
        return str(ctype) if ctype is not None else None

    def table_exists(self, table: str) -> bool:
        """Only a table that is not there is missing: any other error (a lost connection, a
        permission) is raised, for a run not to take the table for a new one."""
        doing = f"looking up {table}"
        with self.connection(doing) as dbapi:
            try:
                cursor = dbapi.cursor()
                cursor.execute(f"SELECT * FROM {self.quote_table(table)} WHERE 1 = 0")
                cursor.fetchall()
                return True
            except self.engine.dialect.loaded_dbapi.Error as exc:
                if self.missing_table(exc):
                    return False
                raise self._mapped(doing, exc) from exc

    @abstractmethod
    def missing_table(self, exc: Exception) -> bool:
        """Whether a driver error says the table (or its schema) does not exist."""

    def check_readable(self) -> None:
        """Raise a TerminalError when the source cannot be read for a reason worth naming."""

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
        return SqlWriter(self, table, columns, keys, soft_delete_column, copy, history, evolve).opened()

    def truncate_table(self, table: str) -> int:
        return lifecycle.truncate_table(self, table)

    def drop_table(self, table: str) -> bool:
        return lifecycle.drop_table(self, table)

    def open_row_writer(
        self, write: WriteModel, columns: list[Column], context: WriteContext
    ) -> ScriptWriter:
        """A writer that runs the task's Jinja scripts instead of merging, into its table
        (created when missing, as for a merge); the run's cancel stops a render going on."""
        w = cast(WriteSpec, write)
        assert w.upsert_script is not None  # an unmerged SQL write is one with scripts
        return ScriptWriter(
            self, w.table, columns, w.keys, w.upsert_script, w.delete_script, context.cancel
        ).opened()

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

    def create_table_ddl(
        self,
        table: str,
        columns: list[Column],
        keys: list[str] | None = None,
        soft_delete_column: str | None = None,
        history: History | None = None,
    ) -> list[str]:
        """The statements a writer creates a missing `table` with (`TableDDL`): its schema where
        the target makes schemas, then the table with the soft-delete and history columns and
        the primary key a writer gives it. What a dry run (`runner plan --data`) reports."""
        extra = [Column(soft_delete_column, SOFT_DELETE_TYPE)] if soft_delete_column else []
        extra += history_mode.columns(history)
        key = history_mode.primary_key(keys or [], history)
        schema = table.rpartition(".")[0]
        create_schema = self.create_schema_sql(schema) if schema else None
        return [
            *([create_schema] if create_schema else []),
            self.create_table_sql(table, columns + extra, key),
        ]

    def create_table_sql(self, table: str, columns: list[Column], keys: list[str] | None = None) -> str:
        body = self._columns_ddl(columns, keys or [])
        options = self.table_options(keys or [])
        return f"CREATE TABLE IF NOT EXISTS {self.quote_table(table)} ({body}){options}"

    def table_options(self, keys: list[str]) -> str:
        """What follows the columns of a table a writer creates (with `keys`: one merged into)."""
        return ""

    # --- schema changes (`runner.connectors.sql.evolve`) ---------------------------------

    def add_column_sql(self, table: str, column: Column) -> list[str]:
        """Add a (nullable) column to an existing table."""
        added = f"{self.quote(column.name)} {self.render_type(column.type)}"
        return [f"ALTER TABLE {self.quote_table(table)} ADD COLUMN {added}"]

    def drop_column_sql(self, table: str, name: str) -> list[str]:
        return [f"ALTER TABLE {self.quote_table(table)} DROP COLUMN {self.quote(name)}"]

    @abstractmethod
    def alter_columns_sql(
        self, cursor: Any, table: str, types: dict[str, str], nullable: Collection[str] = ()
    ) -> list[str]:
        """Change existing columns' types (name -> the DDL of its new type) and drop the NOT
        NULL of the `nullable` ones, keeping the rest of their definitions (`cursor`: to read
        them where the statement must repeat them)."""

    @abstractmethod
    def not_null(self, cursor: Any, table: str) -> set[str]:
        """The columns of `table` declared NOT NULL."""

    def not_null_columns(self, spec: ReadSpec) -> set[str] | None:
        if spec.table is None:
            return None  # a query's columns have no declaration of their own
        with self.connection(f"reading the columns of {spec.table}") as dbapi:
            found = self.not_null(dbapi.cursor(), spec.table)
            dbapi.rollback()
        return found
