"""PostgreSQL through psycopg 3: server-side cursors to read, COPY to write.

psycopg returns exact Python values (Decimal, aware datetimes, parsed JSON), so reading needs
no conversion at all; writing wraps JSON and settles time zones.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL

from runner.connectors.base import Watermark
from runner.connectors.sql import kinds
from runner.connectors.sql.base import SqlConnector
from runner.connectors.sql.postgresql_cdc import PostgresqlLogSource
from runner.connectors.sql.spec import PostgresqlConnection, SqlConnectionSpec
from runner.definitions.models import seconds
from runner.definitions.tasks import ReadSpec
from runner.errors import TerminalError
from runner.streams.keys import KEY_HASH_BITS
from runner.streams.types import Column, ColumnType, Convert, split_type
from runner.streams.values import TIMES, OutOfRange, to_aware_utc, to_naive_utc

_SIMPLE = {
    "smallint": "smallint",
    "integer": "integer",
    "bigint": "bigint",
    "real": "real",
    "double precision": "double",
    "boolean": "boolean",
    "text": "text",
    "character varying": "text",
    "date": "date",
    "time without time zone": "time",
    "timestamp without time zone": "timestamp",
    "timestamp with time zone": "timestamptz",
    "json": "json",
    "jsonb": "jsonb",
    "bytea": "binary",
    "uuid": "uuid",
}
_RENDER = {
    "smallint": "smallint",
    "integer": "integer",
    "bigint": "bigint",
    "real": "real",
    "double": "double precision",
    "boolean": "boolean",
    "text": "text",
    "date": "date",
    "time": "time",
    "duration": "interval",
    "timestamp": "timestamp",
    "timestamptz": "timestamptz",
    "json": "json",
    "jsonb": "jsonb",
    "binary": "bytea",
    "uuid": "uuid",
}
_COLUMNS_SQL = """SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"""

# whether the target has a valid index whose first columns are the keys, and is over ten times
# the staging table's size (`looks_up_by_key`)
_PROBE_SQL = """SELECT pg_relation_size(to_regclass(%(target)s))
  > 10 * pg_relation_size(to_regclass(%(stage)s))
AND EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = to_regclass(%(target)s) AND i.indisvalid
  AND i.indpred IS NULL AND (SELECT array_agg(a.attname::text) FROM pg_attribute a
    WHERE a.attrelid = i.indrelid
    AND a.attnum = ANY((i.indkey::int2[])[0:cardinality(%(keys)s::text[]) - 1])) @> %(keys)s::text[])"""

# per type name: the support function 2 (64-bit hash with a seed) of the type's default hash
# operator class, its own or one of a type it converts to without a function (varchar: text's),
# as the server's GetDefaultOpClass picks it; only one that takes the type as it is
_BINARY = (
    "SELECT FROM pg_cast c WHERE c.castsource = t.oid AND c.casttarget = {} "
    "AND c.castmethod = 'b' AND c.castcontext = 'i'"
)
_HASH_FUNCTIONS_SQL = f"""WITH t AS (SELECT n, to_regtype(n) AS oid FROM unnest(%s::text[]) AS n)
SELECT DISTINCT ON (t.n) t.n, quote_ident(s.nspname) || '.' || quote_ident(f.proname)
FROM t JOIN pg_opclass o ON o.opcdefault AND o.opcmethod = (SELECT oid FROM pg_am WHERE amname = 'hash')
  AND (o.opcintype = t.oid OR EXISTS ({_BINARY.format("o.opcintype")}))
JOIN pg_type ot ON ot.oid = o.opcintype
JOIN pg_amproc p ON p.amprocfamily = o.opcfamily AND p.amprocnum = 2
  AND p.amproclefttype = o.opcintype AND p.amprocrighttype = o.opcintype
JOIN pg_proc f ON f.oid = p.amproc JOIN pg_namespace s ON s.oid = f.pronamespace
WHERE f.pronargs = 2 AND f.proargtypes[1] = 'int8'::regtype
  AND (f.proargtypes[0] = t.oid OR EXISTS ({_BINARY.format("f.proargtypes[0]")}))
ORDER BY t.n, o.opcintype = t.oid DESC, ot.typispreferred DESC"""

FILLFACTOR = 90  # percent of a page a table merged into is filled to (`table_options`)
LINES_PER_PIECE = 5_000  # rows per piece of `text_pieces` (~600 kB for the benchmark's rows)
COPY_BLOCK = 256 * 1024  # bytes per write into a COPY: one message per row costs more than the row


def _copy_blocks(connection: Any, size: int) -> Iterator[bytearray]:
    """The data of the `COPY … TO STDOUT` running on a psycopg `connection`, read from libpq
    (`PQgetCopyData`, one message a row in text and CSV) and joined into blocks of whole
    messages of about `size` bytes; then the COPY's result, the server's error raised. Half the
    CPU of psycopg's own read, which passes each row through a stack of Python generators."""
    import select

    from psycopg import errors, pq

    pgconn = connection.pgconn
    poller = select.poll()
    poller.register(pgconn.socket, select.POLLIN)
    get = pgconn.get_copy_data
    block = bytearray()
    while True:
        n, data = get(1)  # 1: never waits (a broken connection raises)
        if n > 0:
            block += data
            if len(block) >= size:
                yield block
                block = bytearray()
        elif n == 0:  # nothing received yet: wait, the GIL let go (a tenth of a second at most)
            poller.poll(100)
            pgconn.consume_input()
        else:  # -1: the end of the COPY's data
            break
    if block:
        yield block
    while pgconn.is_busy():
        poller.poll(100)
        pgconn.consume_input()
    while (result := pgconn.get_result()) is not None:
        if result.status != pq.ExecStatus.COMMAND_OK:
            raise errors.error_from_result(result, encoding=connection.info.encoding)


def _json(value: Any) -> Any:
    from psycopg.types.json import Json

    return Json(value)


def _out_of_range_loaders(dbapi: Any, _record: Any = None) -> None:
    """Load a date or time Python cannot hold (infinity, BC, past 9999, 24:00) as `OutOfRange`
    PostgreSQL text instead of failing the whole read: PostgreSQL takes it back exactly,
    another target names its row and column.

    Each loader calls psycopg's own (its C one where psycopg_binary is installed, which cannot
    be subclassed): a subclass of the pure-Python loader parsed each value in Python, 25 times
    slower, which was most of the time a cdc run spent per change (its values come as text)."""
    import psycopg
    from psycopg import DataError
    from psycopg.types.datetime import DateLoader, TimeLoader, TimestampLoader, TimestamptzLoader

    for name, base in (
        ("date", DateLoader),
        ("time", TimeLoader),
        ("timestamp", TimestampLoader),
        ("timestamptz", TimestamptzLoader),
    ):

        class Loader(base):  # type: ignore[misc,valid-type]
            def __init__(self, oid: int, context: Any = None):
                super().__init__(oid, context)
                own = psycopg.adapters.get_loader(oid, self.format)
                assert own is not None  # psycopg's own, for each of these types
                self._load = own(oid, context).load

            def load(self, data: Any) -> Any:
                try:
                    return self._load(data)
                except DataError:
                    return OutOfRange(bytes(data).decode())

        dbapi.adapters.register_loader(name, Loader)


class PostgresqlConnector(PostgresqlLogSource, SqlConnector):
    capabilities = kinds.POSTGRESQL
    dialect = "postgresql"
    holds_out_of_range = TIMES
    upserts = True
    _server_version: int | None = None
    _snapshot: str | None = None  # exported by `snapshot`, imported by every connection meanwhile

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        # a REPEATABLE READ transaction exports its snapshot and stays open until the block
        # ends; each connection opened meanwhile starts its own transaction in that snapshot
        with self.connection("exporting a snapshot") as dbapi:
            cursor = dbapi.cursor()
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cursor.execute("SELECT pg_export_snapshot()")
            (exported,) = cursor.fetchone()
            if not re.fullmatch(r"[0-9A-F-]+", exported):
                raise TerminalError(f"unexpected snapshot id from the server: {exported!r}")
            self._snapshot = exported
            try:
                yield
            finally:
                self._snapshot = None
                dbapi.rollback()

    def begin_read(self, dbapi: Any) -> None:
        if self._snapshot is not None:
            cursor = dbapi.cursor()
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cursor.execute(f"SET TRANSACTION SNAPSHOT '{self._snapshot}'")  # checked: hex and -

    def __init__(self, name: str, spec: SqlConnectionSpec, base_dir: Path):
        super().__init__(name, spec, base_dir)
        sa.event.listen(self.engine, "connect", _out_of_range_loaders)
        self._hash_functions: dict[str, str | None] = {}  # `column_hash_functions`

    def engine_url(self, url: URL) -> URL:
        return url.set(drivername="postgresql+psycopg")

    def engine_options(self) -> dict[str, Any]:
        assert isinstance(self.spec, PostgresqlConnection)
        # libpq's connect_timeout (whole seconds, 2 at the least) covers the whole handshake
        return {"connect_args": {"connect_timeout": max(2, math.ceil(seconds(self.spec.connect_timeout)))}}

    def parse_type(self, declared: str) -> ColumnType | None:
        name, a, b = split_type(declared)
        if name == "numeric":
            return ColumnType("decimal", precision=a, scale=b if a is not None else None)
        if name == "character varying" and a:
            return ColumnType("varchar", length=a)
        if name in ("character", "bpchar"):
            return ColumnType("char", length=a or 1)
        kind = _SIMPLE.get(name)
        return ColumnType(kind) if kind else None  # type: ignore[arg-type]

    def render_type(self, ctype: ColumnType) -> str:
        if ctype.kind == "decimal":
            return f"numeric({ctype.precision},{ctype.scale or 0})" if ctype.precision else "numeric"
        if ctype.kind in ("varchar", "char"):
            return f"{ctype.kind}({ctype.length})"
        return _RENDER[ctype.kind]

    def declared_columns(self, cursor: Any, spec: ReadSpec) -> list[tuple[str, str]]:
        if spec.table is not None:
            cursor.execute(_COLUMNS_SQL, (self.quote_table(spec.table),))
            rows = cursor.fetchall()
            if not rows:
                raise TerminalError(f"table {spec.table!r} not found (connection {self.name!r})")
            return [(r[0], r[1]) for r in rows]
        assert spec.query is not None
        cursor.execute(f"CREATE TEMP VIEW runner_probe AS {spec.query.strip().rstrip(';')}")
        cursor.execute(_COLUMNS_SQL, ("pg_temp.runner_probe",))
        return [(r[0], r[1]) for r in cursor.fetchall()]  # the caller rolls back: the view goes

    def indexed(self, table: str, column: str) -> bool | None:
        # a partial index (WHERE …) or one on an expression does not serve every such read
        rows = self._query(
            "reading the table's indexes",
            "SELECT c.relkind IN ('r', 'p', 'm'), EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a "
            "ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] WHERE i.indrelid = c.oid "
            "AND i.indpred IS NULL AND a.attname = %s) FROM pg_class c WHERE c.oid = to_regclass(%s)",
            (column, self.quote_table(table)),
        )
        return bool(rows[0][1]) if rows and rows[0][0] else None

    def missing_table(self, exc: Exception) -> bool:
        return getattr(exc, "sqlstate", None) in ("42P01", "3F000")  # undefined table; schema

    def unmapped_expr(self, name: str, declared: str, as_json: bool) -> str:
        q = self.quote(name)
        return f"to_jsonb({q}) AS {q}" if as_json else f"{q}::text AS {q}"

    def encoder(self, ctype: ColumnType) -> Convert | None:
        if ctype.kind in ("json", "jsonb"):
            return _json
        if ctype.kind == "timestamp":
            return to_naive_utc
        if ctype.kind == "timestamptz":
            return to_aware_utc
        return None

    def distinct_sql(self, a: str, b: str, ctype: ColumnType) -> str:
        if ctype.kind == "json":  # json has no equality operator; its text does
            return f"{a}::text IS DISTINCT FROM {b}::text"
        return f"{a} IS DISTINCT FROM {b}"

    def row_hash(self, names: list[str], columns: list[Column]) -> tuple[str, ColumnType] | None:
        # Each column hashed by its type's own 64-bit hash function, seeded by its position (two
        # columns of one type swapping values change the hash), a NULL by a constant of its
        # position; XORed together (no overflow), then hashed once more: rows are XORed into a
        # key bucket's sum (`_differing_hash_buckets`), where unmixed column hashes would let
        # two rows of one bucket swap a column's values unseen. A quarter cheaper than
        # hash_record_extended of the row, which forms and takes apart a record per row (1M
        # rows of the benchmark's `events`: 0.25-0.27 s, 0.32-0.34 s; the scan alone 0.08 s).
        # json has no hash function: its text does.
        if any(c.type.kind == "json" for c in columns) or self.server_version() < 140000:
            return f"md5(ROW({', '.join(names)})::text)", ColumnType("text")
        functions = self.column_hash_functions([self.render_type(c.type) for c in columns if not c.unmapped])
        terms, rest = [], []
        for position, (name, column) in enumerate(zip(names, columns, strict=True), 1):
            found = None if column.unmapped else functions[self.render_type(column.type)]
            if found is None:  # no function takes the type as it is (boolean, bytea, date, timestamptz)
                rest.append(name)
                continue
            seed = str(position)
            if column.type.kind == "bigint":
                # hashint8extended folds a bigint's two halves into 32 bits (equal int4 and int8
                # values hash alike): 4 and 2**32 + 5 would collide. The seed carries the high
                # half, XORed with the position above any bit the half sets.
                seed = f"(({name}) >> 32) # {position << 40}"
            terms.append(f"coalesce({found}({name}, {seed}), {-position})")
        if rest:  # those hashed as one record (formed once a row, its fields' order hashed too)
            terms.append(f"pg_catalog.hash_record_extended(ROW({', '.join(rest)}), 0)")
        return f"pg_catalog.hashint8extended(0, {' # '.join(terms)})", ColumnType("bigint")

    def column_hash_functions(self, types: list[str]) -> dict[str, str | None]:
        """Per type name: the 64-bit hash function (schema-qualified) of its default hash
        operator class, as the server's own hash_record_extended picks it; None where it has
        none callable on a value of the type (boolean, bytea, date and timestamptz have one
        declared for another type). Read from the catalog once per type."""
        missing = sorted(set(types) - self._hash_functions.keys())
        if missing:
            found = dict(self._query("reading hash functions", _HASH_FUNCTIONS_SQL, (missing,)))
            self._hash_functions.update({t: found.get(t) for t in missing})
        return {t: self._hash_functions[t] for t in types}

    def key_hash_sums(self, column: str) -> list[tuple[str, int]]:
        digits = KEY_HASH_BITS // 4  # bit(60) read as bigint is never negative; sum() is numeric
        return [(f"sum(('x' || substr(md5({column}::text), 1, {digits}))::bit({KEY_HASH_BITS})::bigint)", 0)]

    def hex_hash_sums(self, hex_expr: str) -> list[tuple[str, int]]:
        digits = KEY_HASH_BITS // 4
        return [(f"sum(('x' || substr({hex_expr}, 1, {digits}))::bit({KEY_HASH_BITS})::bigint)", 0)]

    def prepare_verify(self, dbapi: Any) -> None:
        with dbapi.cursor() as cursor:  # a sum over every row: JIT compiling costs, saves nothing
            cursor.execute("SET jit = off")
            # the texts `canonical_sql` relies on: a double's shortest exact digits, ISO dates
            cursor.execute("SET extra_float_digits = 3")  # exact on every version (shortest on 12+)
            cursor.execute("SET DateStyle = 'ISO, YMD'")

    def canonical_sql(self, expr: str, ctype: ColumnType) -> str | None:
        kind = ctype.kind
        if kind == "real":  # the single-precision value, whatever the column holds (`comparable`)
            return f"({expr})::float4::float8::text"
        if kind == "boolean":
            return f"CASE WHEN {expr} THEN '1' WHEN NOT {expr} THEN '0' END"
        if kind in ("timestamp", "timestamptz"):
            utc = f"({expr} AT TIME ZONE 'UTC')" if kind == "timestamptz" else f"({expr})"
            # infinity and BC keep PostgreSQL's own text (`OutOfRange`), which no other has
            return (
                f"CASE WHEN isfinite({utc}) AND {utc} >= '0001-01-01' "
                f"THEN to_char({utc}, 'YYYY-MM-DD HH24:MI:SS.US') ELSE ({utc})::text END"
            )
        return f"({expr})::text"  # integers, decimals, doubles, texts, dates (ISO)

    def canonical_row_sql(self, texts: list[str]) -> str:
        fields = [f"COALESCE(octet_length({t})::text || ':' || {t}, 'N')" for t in texts]
        return f"md5({' || '.join(fields)})"

    def native_key_hash(self, column: str) -> str:
        # hashint8extended folds a bigint's two halves into 32 bits before hashing (so that
        # equal int4 and int8 values hash alike): 4 and 2**32 + 5 would collide. The high
        # half hashed on its own, with another seed, keeps every bigint apart.
        key = f"({column})::bigint"
        both = f"hashint8extended({key}, 0) # hashint8extended({key} >> 32, 1)"
        return f"(({both}) & {(1 << KEY_HASH_BITS) - 1})"

    def native_key_hashes(self, keys: Sequence[int]) -> dict[int, int]:
        if not keys:
            return {}
        array = "{" + ",".join(str(int(k)) for k in keys) + "}"
        sql = f"SELECT k, {self.native_key_hash('k')} FROM unnest('{array}'::bigint[]) AS k"
        return {int(k): int(h) for k, h in self._query("hashing keys", sql)}

    def any_of_sql(self, column: str, values: list[int]) -> str:
        # one array literal: parsed and probed (hashed) much faster than thousands of IN items
        return f"{column} = ANY('{{{','.join(str(int(v)) for v in values)}}}'::bigint[])"

    def server_version(self) -> int:
        if self._server_version is None:
            ((version,),) = self._query("reading the server version", "SHOW server_version_num")
            self._server_version = int(version)
        return self._server_version

    def watermark_sql(self, watermark: Watermark, ctype: ColumnType) -> str | None:
        from psycopg import sql

        since = watermark.since
        if since is None or watermark.until is not None:
            return None
        if ctype.kind == "timestamptz":  # as `read` does: a pointer kept without its zone is UTC
            since = to_aware_utc(since)
        column = self.quote(watermark.column)
        return f"{column} >= {sql.Literal(since).as_string(None)} OR {column} IS NULL"

    def order_ascii(self, expr: str) -> str:
        return f'{expr} COLLATE "C"'

    def prepare_writer(self, dbapi: Any) -> None:
        # A writer's joins touch a few rows of a big, usually cached table by its key: with the
        # default random_page_cost the planner scans the whole table for every batch instead.
        # Hash joins over a whole table (deletes, rows compared inside the target) spill to disk
        # in batches under the default 4 MB of work_mem; this session's joins get 64 MB.
        # Their estimates are large enough to trigger JIT compiling, which then costs ~80 ms
        # a statement and saves nothing here.
        with dbapi.cursor() as cursor:
            cursor.execute("SET random_page_cost = 1.1")
            cursor.execute("SET work_mem = '64MB'")
            cursor.execute("SET jit = off")
        dbapi.commit()

    def table_options(self, keys: list[str]) -> str:
        # A table merged into is updated in place, a few rows at a time: with room left on each
        # page the new version of an updated row goes on the same page and, as no indexed column
        # changed, needs no new index entry (a HOT update). A full page sends it to another page,
        # and adds an entry to the key index: three pages dirtied instead of one, which a target
        # larger than the server's cache then writes back and reads again (a cdc round of 10,000
        # updates into 10M rows: 15,000 pages dirtied, 9,600 with this).
        return f" WITH (fillfactor = {FILLFACTOR})" if keys else ""

    def empty_temp_sql(self, table: str) -> str:
        return f"TRUNCATE {table}"  # no dead rows for the next batch's joins to skip

    def analyze_sql(self, table: str) -> str | None:
        return f"ANALYZE {table}"

    def snapshot_sql(self, table: str = "") -> list[str] | None:
        # The table is locked for reading before the snapshot is fixed (LOCK takes none): a
        # writer's DDL later in its transaction (a column added) then waits for these sums
        # rather than these sums for it while it waits for them. One the writer holds already
        # fails the lock within a second, and the sums are read after its merges instead.
        lock = ["SET LOCAL lock_timeout = '1s'", f"LOCK TABLE {table} IN ACCESS SHARE MODE"] if table else []
        return ["SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", *lock, "SELECT 1"]

    def looks_up_by_key(self, cursor: Any, target: str, stage: str, keys: list[str]) -> bool:
        cursor.execute(_PROBE_SQL, {"target": target, "stage": stage, "keys": keys})
        return bool(cursor.fetchone()[0])

    def start_probes(self, cursor: Any) -> bool:
        # The planner prices each key lookup as a page read, so it joins a batch of staged rows
        # with the target by scanning and hashing the whole target, for each of the merge's
        # statements (2 s a round of 30,000 rows into 1M, against 0.3 s looking them up).
        cursor.execute("SET enable_hashjoin = off")
        cursor.execute("SET enable_mergejoin = off")
        return True

    def end_probes(self, cursor: Any) -> None:
        cursor.execute("RESET enable_hashjoin")
        cursor.execute("RESET enable_mergejoin")

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
        # A row the statement inserted has no xmax; one it updated has its own transaction's
        # (the lock ON CONFLICT takes before updating). The staged rows go in key order: the
        # lookups walk the key index (and a table loaded in key order) forwards, each page read
        # once while cached, where the log's order jumps about (10,000 updates into 10M rows:
        # 0.55-0.86 s against 0.67-1.25 s). The keys inserted are summed up from what the
        # statement returns (a data-modifying WITH runs once, however often it is read), not
        # looked up in the target again before it.
        columns, key = ", ".join(names), ", ".join(keys)
        assignments = ", ".join(f"{col} = {expr}" for col, expr in sets)
        action = f"DO UPDATE SET {assignments} WHERE {where}" if sets else "DO NOTHING"
        returning = f"{t}.xmax = 0 AS added" + (f", {t}.{keys[0]}" if new_keys is not None else "")
        counts = "SELECT NULL::bigint, count(*) FILTER (WHERE added), count(*) FILTER (WHERE NOT added)"
        upsert = (
            f"WITH m AS (INSERT INTO {target} AS {t} ({columns}) SELECT {columns} FROM {stage} "
            f"ORDER BY {key} ON CONFLICT ({key}) {action} RETURNING {returning}) "
        )
        if new_keys is None:
            return f"{upsert}{counts} FROM m"
        width, native = new_keys
        digests = self.bucket_digests_sql(keys[0], width, f"(SELECT {keys[0]} FROM m WHERE added) n", native)
        padding = ", NULL" * len(self._hash_sums(keys[0], native))
        return f"{upsert}{counts}{padding} FROM m UNION ALL {digests}"

    def drop_temp_sql(self, name: str) -> str:
        return f"DROP TABLE IF EXISTS pg_temp.{self.quote(name)}"

    def unique_keys(self, cursor: Any, table: str, keys: list[str], arbiter: bool = False) -> bool:
        usable = "AND i.indimmediate AND i.indisvalid " if arbiter else ""
        cursor.execute(
            "SELECT 1 FROM pg_index i WHERE i.indrelid = to_regclass(%s) AND i.indisunique "
            f"{usable}AND i.indpred IS NULL AND i.indexprs IS NULL AND ARRAY(SELECT a.attname::text "
            "FROM pg_attribute a WHERE a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
            "ORDER BY a.attname) = %s",
            (self.quote_table(table), sorted(keys)),
        )
        return cursor.fetchone() is not None

    def alter_columns_sql(
        self, cursor: Any, table: str, types: dict[str, str], nullable: Collection[str] = ()
    ) -> list[str]:
        # the rest of each column (default, collation of a text type) is kept
        q = self.quote
        altered = [f"ALTER COLUMN {q(n)} TYPE {t}" for n, t in types.items()]
        altered += [f"ALTER COLUMN {q(n)} DROP NOT NULL" for n in nullable]
        return [f"ALTER TABLE {self.quote_table(table)} {', '.join(altered)}"]

    def not_null(self, cursor: Any, table: str) -> set[str]:
        cursor.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 "
            "AND NOT attisdropped AND attnotnull",
            (self.quote_table(table),),
        )
        return {r[0] for r in cursor.fetchall()}

    def error_text(self, exc: Exception) -> str:
        """The primary message only: the CONTEXT line of a COPY error quotes the row's value."""
        diag = getattr(exc, "diag", None)
        return (diag.message_primary if diag is not None else None) or super().error_text(exc)

    def error_column(self, exc: Exception) -> str | None:
        diag = getattr(exc, "diag", None)
        if diag is None:
            return None
        if diag.column_name:
            return diag.column_name
        match = re.search(r"column (\w+)", diag.context or "")
        return match[1] if match else None

    def copy_out(
        self, select: str, binary: bool = True, csv: bool = False, size: int = COPY_BLOCK
    ) -> Iterator[bytearray]:
        """The rows of `select` in PostgreSQL's COPY format (binary; text: a line per row,
        tab-separated, backslash escapes, \\N for NULL; or `csv`: NULL an unquoted empty
        cell, an empty string `""`), in blocks of whole rows of about `size` bytes: a COPY
        FROM STDIN takes them with a few hundred writes instead of one per row."""
        doing = "reading (copy)"
        self.check_readable()
        options = " (FORMAT csv)" if csv else " (FORMAT binary)" if binary else ""
        with self.connection(doing) as dbapi:
            cursor = dbapi.cursor()
            # as for a writer (`prepare_writer`): runner's own SQL, whose sums and packing group
            # and sort in memory (a million rows' key bucket sums spilled to disk under 4 MB)
            cursor.execute("SET jit = off")
            cursor.execute("SET work_mem = '64MB'")
            with cursor.copy(f"COPY ({select}) TO STDOUT{options}"):  # cancelled if left early
                yield from _copy_blocks(cursor.connection, size)

    def text_pieces(self, exprs: list[tuple[str, bool]], from_sql: str) -> Iterator[bytes]:
        """The rows of `SELECT exprs FROM from_sql` as tab-separated lines (UTF-8) built by
        PostgreSQL, streamed (a server-side cursor, one bytea a row: no aggregate that would
        hold the first piece back until every row is read) and joined into pieces of
        `LINES_PER_PIECE` lines. A NULL is `\\N`; in the expressions marked True (text),
        backslash, tab, newline and carriage return are escaped with a backslash, as LOAD
        DATA reads them; their other characters stay as they are."""
        doing = "reading (text lines)"
        self.check_readable()
        fields = []
        for expr, text in exprs:
            value = f"({expr})::text"
            if text:
                for char, escaped in (("92", "chr(92)"), ("9", "'t'"), ("10", "'n'"), ("13", "'r'")):
                    value = f"replace({value}, chr({char}), chr(92) || {escaped})"
            fields.append(f"COALESCE({value}, chr(92) || 'N')")
        line = " || chr(9) || ".join(fields)
        with self.connection(doing) as dbapi:
            cursor = self.server_cursor(dbapi.driver_connection, LINES_PER_PIECE)
            cursor.execute(f"SELECT convert_to({line}, 'UTF8') FROM {from_sql}", binary=True)
            while rows := cursor.fetchmany(LINES_PER_PIECE):
                yield b"\n".join([r[0] for r in rows]) + b"\n"

    def server_cursor(self, dbapi: Any, batch_size: int) -> Any:
        cursor = dbapi.cursor(name="runner_read")
        cursor.itersize = batch_size
        return cursor

    def create_schema_sql(self, schema: str) -> str:
        return f"CREATE SCHEMA IF NOT EXISTS {self.quote(schema)}"

    def create_schema(self, dbapi: Any, schema: str) -> None:
        # looked up first: CREATE SCHEMA IF NOT EXISTS needs the CREATE privilege even when
        # the schema exists; and a writer beside this one may create it meanwhile (its
        # IF NOT EXISTS saw nothing either: a unique violation here), which is as good
        from psycopg import errors

        with dbapi.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
            exists = cursor.fetchone() is not None
        dbapi.commit()
        if exists:
            return
        try:
            with dbapi.cursor() as cursor:
                cursor.execute(self.create_schema_sql(schema))
            dbapi.commit()
        except (errors.UniqueViolation, errors.DuplicateSchema):
            dbapi.rollback()

    def insert_rows(
        self, cursor: Any, table: str, names: list[str], rows: list[tuple[Any, ...]], columns: list[Column]
    ) -> None:
        with cursor.copy(f"COPY {table} ({', '.join(names)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
