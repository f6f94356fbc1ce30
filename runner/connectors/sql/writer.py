"""Writing into a SQL target: one transaction per `SqlWriter`.

Without keys, a task replaces the table's rows (`truncate` + `insert`). With keys, rows go
into a temporary staging table first and are merged set-based in the target database: an
UPDATE joined on the keys touches only rows whose values differ (a null-safe comparison),
an INSERT of the staged rows with no match adds the new ones, and deletes are anti-joins
against staged keys. Doing it in the database keeps memory flat whatever the table's size and
gives exact counts of inserted, updated and unchanged rows on every dialect. The staging
table's primary key rejects a source that repeats a key.

A failed bulk insert is retried row by row under a savepoint to name the row (its key) and,
where the driver says, the column that the target rejected.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from contextlib import suppress
from typing import TYPE_CHECKING, Any, ClassVar

from runner.connectors.base import KEY_STAGE, STAGE, Copy, MergeCounts
from runner.connectors.sql.keys import key_conditions
from runner.definitions import secrets
from runner.definitions.tasks import ReadSpec
from runner.errors import TerminalError
from runner.streams.keys import BucketDigest
from runner.streams.types import INTEGERS, Column, ColumnType

if TYPE_CHECKING:
    from runner.connectors.sql.base import SqlConnector
    from runner.connectors.sql.fastpath import FastPath
    from runner.streams.types import Batch

CHANGED = "runner_changed"  # keys whose row differs from the target's, or that are gone
ROW_HASH = "runner_rh"
TARGET_HASHES = "runner_target_hashes"  # the target's keys and row hashes, before any change
TARGET_BUCKETS = "runner_target_buckets"  # the target's row count and hash per key bucket
KEYS_PER_HASH_BUCKET = 16  # fastest of 4-32 on the benchmark (1.7% of rows changed: 18% of buckets differ)
MAX_HASH_BUCKETS = 250_000  # bounds the list of differing buckets held in Python
SOFT_DELETE_TYPE = ColumnType("timestamp")


class Transaction:
    """A writer's connection to the target with one open transaction: `commit` ends it and
    begins the next, `close` rolls back whatever is not committed."""

    c: SqlConnector
    doing: str
    dbapi: Any = None
    cursor: Any = None

    def connect(self) -> None:
        self.dbapi = self.c.engine.raw_connection()
        self.c.prepare_writer(self.dbapi.driver_connection)

    def begin(self) -> None:
        self.c.begin(self.dbapi.driver_connection)
        self.cursor = self.dbapi.cursor()

    def commit(self) -> None:
        with self.c.errors(self.doing):
            self.dbapi.commit()
            self.c.begin(self.dbapi.driver_connection)

    def close(self) -> None:
        if self.dbapi is None:
            return
        driver = self.dbapi.driver_connection
        with suppress(Exception):  # closing after a failure: the first error is the one reported
            self.dbapi.rollback()
        with suppress(Exception):
            self.dbapi.close()
        self.dbapi = None
        self.c.end_writer(driver)

    def open(self) -> Transaction:
        with self.c.errors(self.doing):
            self.connect()
            self.begin()
        return self

    def create_schema(self, table: str) -> None:
        """Before the transaction: the schema of `table`, when the target has schemas to make."""
        schema = table.rpartition(".")[0]
        if schema:
            self.c.create_schema(self.dbapi.driver_connection, schema)

    def opened(self) -> Any:
        """`open`, closing what it got so far when it fails (a SQLite writer's turn on the file
        included: kept, it would make the next writer of the file wait for ever)."""
        try:
            return self.open()
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Any:
        # `open_writer` hands the writer over open: opened again, its first connection (and
        # a SQLite writer's turn on the file) would be dropped without being closed
        return self if self.dbapi is not None else self.opened()

    def __exit__(self, *exc: object) -> None:
        self.close()


class SqlWriter(Transaction):
    """Writes one task's rows into `table` in one transaction (commit when done): a
    `MergeWriter`, with the `KeyBucketWriter` and `ComparingWriter` methods."""

    merges: ClassVar[bool] = True

    def __init__(
        self,
        connector: SqlConnector,
        table: str,
        columns: list[Column],
        keys: list[str] | None = None,
        soft_delete_column: str | None = None,
        copy: Copy | None = None,
    ):
        self.c = connector
        self.q = connector.quote
        self.table = table
        self.target = connector.quote_table(table)
        self.columns = columns
        self.keys = keys or []
        self.soft = soft_delete_column
        names = [col.name for col in columns]  # the keys among them: `TaskRun.use_columns`
        self.key_index = [names.index(k) for k in self.keys]
        self.names = [self.q(n) for n in names]
        self.encode = connector.batch_encoder(columns, self.key_index)
        key_columns = [columns[i] for i in self.key_index]
        self.encode_keys = connector.batch_encoder(key_columns, range(len(key_columns)))
        self.key_columns = key_columns
        self.doing = f"writing {table}"
        # the reader and the pair's fast path, for copies that bypass Python (see copy_from)
        self.source = copy.source if copy is not None else None
        self.fast: FastPath | None = copy.path if copy is not None else None
        self.inserted = 0  # rows this writer added to the target, and at its last ANALYZE
        self.analyzed_at = 0
        # A target empty when the run began holds only this run's rows, and a run reads each
        # key once (the staging key rejects a repeat): every staged row is an insert.
        self.empty_at_start = False
        self.target_types: dict[str, ColumnType | None] = {}
        self.digests: str | None = None  # the source's keys and row hashes (`copy_digests`)
        self.narrowed: tuple[int, int] | None = None  # (differing, all) key buckets compared by sums

    # --- life cycle ----------------------------------------------------------------------

    def open(self) -> SqlWriter:
        c = self.c
        with c.errors(self.doing):
            self.connect()
            if self.fast is not None and self.source is not None:
                self.fast.prepare(c, self.dbapi.driver_connection, self.source)
            self.create_schema(self.table)
            self.begin()
            extra = [Column(self.soft, SOFT_DELETE_TYPE)] if self.soft else []
            self.cursor.execute(c.create_table_sql(self.table, self.columns + extra, self.keys))
            if self.soft and self.soft not in self.existing_columns():
                soft_type = c.render_type(SOFT_DELETE_TYPE)
                self.cursor.execute(f"ALTER TABLE {self.target} ADD COLUMN {self.q(self.soft)} {soft_type}")
            self.target_types = {
                name: c.parse_type(declared)
                for name, declared in c.declared_columns(self.cursor, ReadSpec(table=self.table))
            }
            self.cursor.execute(f"SELECT 1 FROM {self.target} LIMIT 1")
            self.empty_at_start = self.cursor.fetchone() is None
            c.follow_target(self.cursor, self.table)
            if self.keys:
                self.cursor.execute(c.drop_temp_sql(STAGE))
                self.cursor.execute(c.create_temp_sql(STAGE, self.stage_columns(), self.keys))
        return self

    def stage_columns(self) -> list[Column]:
        """The source's columns in the types the target table has, so a table that existed
        before with other types rejects a value when it is staged (where the row can be named)
        rather than fail the whole merge on a comparison of two types."""
        missing = [col.name for col in self.columns if col.name not in self.target_types]
        if missing:
            raise TerminalError(
                f"the target table {self.table} has no column {', '.join(map(repr, missing))}"
            )
        return [Column(col.name, self.target_types[col.name] or col.type) for col in self.columns]

    def copy_from(
        self, spec: ReadSpec, into: str, where: str = "", progress: Callable[[int], None] | None = None
    ) -> int | None:
        """Move the source's rows into the target, the staging table or (`KEY_STAGE`) the key
        stage without Python touching them, when both ends allow it (PostgreSQL to PostgreSQL:
        binary COPY piped through; SQLite to SQLite: INSERT … SELECT from the attached file)
        and the target's column types are the source's. Returns the row count, or None when
        the rows must go through batches. `progress` hears the rows copied so far, where the
        pair copies in pieces."""
        columns = self.key_columns if into == KEY_STAGE else self.columns
        if self.fast is None or self.source is None or any(col.unmapped for col in columns):
            return None  # a column read through `read.unmapped_types` is converted while read
        targets = [self.target_types.get(col.name) or col.type for col in columns]
        table = self.target if into == self.table else self.q(into)
        c = self.c
        with c.errors(self.doing):
            self.cursor.execute("SAVEPOINT runner_copy")
        try:
            rows = self.fast.copy(c, self.cursor, self.source, spec, columns, table, targets, where, progress)
        except (c.engine.dialect.loaded_dbapi.Error, TerminalError):
            rows = None  # a value the target rejects: the batches will name its row
        with c.errors(self.doing):
            self.cursor.execute(f"{'RELEASE' if rows is not None else 'ROLLBACK TO'} SAVEPOINT runner_copy")
        return rows

    def copy_digests(self, spec: ReadSpec) -> int | None:
        """Copy the source's keys with a hash of each row (`SqlConnector.row_hash`) into the
        target, inside the databases; None when this pair of databases cannot (then the
        caller compares digests the other way). Only for a target whose columns have the
        source's types: the same values must give the same hash on both sides."""
        c, source, fast = self.c, self.source, self.fast
        if source is None or fast is None or not fast.packs or source.kind != c.kind:
            return None
        if any(self.target_types.get(col.name) != col.type or col.unmapped for col in self.columns):
            return None
        names = [self.q(col.name) for col in self.columns]
        hashed = c.row_hash(names, self.columns)
        if hashed is None or source.row_hash(names, self.columns) != hashed:  # type: ignore[attr-defined]
            return None  # e.g. two PostgreSQL servers, only one with a 64-bit record hash
        expr, hash_type = hashed
        stage = [*self.key_columns, Column(ROW_HASH, hash_type)]
        exprs = [*(self.q(k) for k in self.keys), expr]
        from_sql = source.source_sql(spec)  # type: ignore[attr-defined]
        q, t = self.q, "t"
        ours = c.row_hash([f"{t}.{q(col.name)}" for col in self.columns], self.columns)
        assert ours is not None
        picked = [*(f"{t}.{q(k)}" for k in self.keys), f"{ours[0]} AS {q(ROW_HASH)}"]
        if self.soft:
            picked.append(f"{t}.{q(self.soft)} IS NOT NULL AS runner_soft")
        with c.errors(self.doing):
            self.cursor.execute("SAVEPOINT runner_copy")
        try:
            total, where, where_t = None, "", ""
            integer_key = len(self.keys) == 1 and self.key_columns[0].type.kind in INTEGERS
            if hash_type.kind == "bigint" and integer_key:  # bit_xor of the 64-bit hashes
                self.cursor.execute("SAVEPOINT runner_narrow")
                try:
                    narrowed = self._differing_hash_buckets(source, from_sql, expr, ours[0])
                except (c.engine.dialect.loaded_dbapi.Error, TerminalError):
                    narrowed = None  # then every row is compared, as without an integer key
                    self.cursor.execute("ROLLBACK TO SAVEPOINT runner_narrow")
                self.cursor.execute("RELEASE SAVEPOINT runner_narrow")
                if narrowed is not None:
                    total, width, differ = narrowed
                    key = q(self.keys[0])
                    where = f" WHERE {c.any_of_sql(c.bucket_sql(key, width), differ)}"
                    where_t = f" WHERE {c.any_of_sql(c.bucket_sql(f'{t}.{key}', width), differ)}"

            def target_hashes() -> None:  # while the source computes its own
                self.cursor.execute(c.drop_temp_sql(TARGET_HASHES))
                select = f"SELECT {', '.join(picked)} FROM {self.target} {t}{where_t}"
                self.cursor.execute(f"CREATE TEMPORARY TABLE {q(TARGET_HASHES)} AS {select}")
                self._analyze(TARGET_HASHES)

            # left packed: joined as they unpack (a 1M-row temporary table cost ~0.6 s more)
            from_where = from_sql + where
            rows = fast.copy_packed(c, self.cursor, source, exprs, from_where, stage, None, target_hashes)
            if rows is not None and total is not None:
                rows = total
        except (c.engine.dialect.loaded_dbapi.Error, TerminalError):
            rows = None  # e.g. a key whose type differs in name only (varchar and text)
        with c.errors(self.doing):
            self.cursor.execute(f"{'RELEASE' if rows is not None else 'ROLLBACK TO'} SAVEPOINT runner_copy")
        self.digests = fast.packed_sql(c, stage) if rows is not None else None
        return rows

    def _differing_hash_buckets(
        self, source: SqlConnector, from_sql: str, theirs: str, ours: str
    ) -> tuple[int, int, list[int]] | None:
        """Narrow the row comparison to the buckets of an integer key whose rows differ: each
        database sums up its rows per bucket of ~`KEYS_PER_HASH_BUCKET` keys (count and XOR of
        the 64-bit row hashes), the source's sums are copied packed into the target and joined
        with its own, and only the rows of differing buckets are then hashed and compared one
        by one. Returns the source's row count, the buckets' width and the differing ones, or
        None when narrowing would not pay (most buckets differ) or cannot be exact (a NULL key)."""
        c, q, k = self.c, self.q, self.q(self.keys[0])
        live = f" WHERE t.{q(self.soft)} IS NULL" if self.soft else ""
        self.cursor.execute(f"SELECT min({k}), max({k}), count(*) FROM {self.target} t{live}")
        low, high, count = self.cursor.fetchone()
        if low is None:
            return None
        buckets = min(MAX_HASH_BUCKETS, max(1, count // KEYS_PER_HASH_BUCKET))
        width = max(1, -(-(int(high) - int(low) + 1) // buckets))
        bucket = c.bucket_sql(k, width)
        columns = [Column(name, ColumnType("bigint")) for name in ("runner_b", "runner_n", "runner_x")]
        summed = (
            f"(SELECT {bucket}::bigint AS b, count(*) AS n, bit_xor({theirs}) AS x "
            f"FROM {from_sql} GROUP BY 1) s"
        )

        def target_sums() -> None:  # while the source sums up its own
            self.cursor.execute(c.drop_temp_sql(TARGET_BUCKETS))
            self.cursor.execute(
                f"CREATE TEMPORARY TABLE {q(TARGET_BUCKETS)} AS SELECT {c.bucket_sql(f't.{k}', width)} AS b, "
                f"count(*) AS n, bit_xor({ours}) AS x FROM {self.target} t{live} GROUP BY 1"
            )

        exprs = ["s.b", "s.n", "s.x"]
        fast = self.fast
        assert fast is not None  # `copy_digests` asks only with a path that packs
        if fast.copy_packed(c, self.cursor, source, exprs, summed, columns, None, target_sums) is None:
            return None
        # the source's sums unpacked once: its row count, then the differing buckets
        self.cursor.execute(
            f"WITH s AS MATERIALIZED {fast.packed_sql(c, columns)} "
            "SELECT coalesce(sum(runner_n), 0), true FROM s UNION ALL "
            f"SELECT coalesce(s.runner_b, t.b), false FROM s FULL JOIN {q(TARGET_BUCKETS)} t "
            "ON s.runner_b = t.b WHERE s.runner_n IS DISTINCT FROM t.n OR s.runner_x IS DISTINCT FROM t.x"
        )
        rows = self.cursor.fetchall()
        total = int(next(value for value, is_total in rows if is_total))
        differ = [value for value, is_total in rows if not is_total]
        self.cursor.execute(c.drop_temp_sql(TARGET_BUCKETS))
        if None in differ or len(differ) > buckets // 2:
            return None
        self.narrowed = len(differ), buckets
        return total, width, differ

    def copy_key_buckets(self, spec: ReadSpec, width: int, buckets: list[int]) -> int | None:
        """Copy the source keys of these buckets (see `SqlConnector.bucket_sql`) into the key
        stage inside the databases; None when this pair cannot (the keys then go in batches)."""
        c, source, fast = self.c, self.source, self.fast
        if source is None or fast is None or not fast.packs or source.kind != c.kind:
            return None
        k = self.q(self.keys[0])
        listed = ", ".join(str(int(b)) for b in buckets)
        from_sql = f"{source.source_sql(spec)} WHERE {c.bucket_sql(k, width)} IN ({listed})"  # type: ignore[attr-defined]
        with c.errors(self.doing):
            self.cursor.execute("SAVEPOINT runner_copy")
        try:
            stage = self.q(KEY_STAGE)
            rows = fast.copy_packed(c, self.cursor, source, [k], from_sql, self.key_columns, stage)
        except (c.engine.dialect.loaded_dbapi.Error, TerminalError):
            rows = None
        with c.errors(self.doing):
            self.cursor.execute(f"{'RELEASE' if rows is not None else 'ROLLBACK TO'} SAVEPOINT runner_copy")
        return rows

    def find_changed(self) -> int:
        """Fill the `CHANGED` table from the source's digests in one join: keys that are new,
        whose row hashes differ from the target row's (or whose target row is soft-deleted),
        and (`runner_gone`) target keys the source no longer has. Returns how many."""
        c, q, t, d = self.c, self.q, "t", "d"
        assert self.digests is not None  # copy_digests ran
        on = " AND ".join(f"{d}.{q(k)} = {t}.{q(k)}" for k in self.keys)
        first = q(self.keys[0])
        rh = q(ROW_HASH)
        differs = [f"{d}.{first} IS NULL", f"{t}.{first} IS NULL", f"{t}.{rh} <> {d}.{rh}"]
        if self.soft:
            differs.append(f"{t}.runner_soft")
        keys = ", ".join(f"COALESCE({d}.{q(k)}, {t}.{q(k)}) AS {q(k)}" for k in self.keys)
        with c.errors(self.doing):
            self.cursor.execute(c.drop_temp_sql(CHANGED))
            self.cursor.execute(
                f"CREATE TEMPORARY TABLE {q(CHANGED)} AS SELECT row_number() OVER () AS runner_n, {keys}, "
                f"{d}.{first} IS NULL AS runner_gone FROM {self.digests} {d} "
                f"FULL JOIN {q(TARGET_HASHES)} {t} ON {on} WHERE {' OR '.join(differs)}"
            )
            count = max(self.cursor.rowcount, 0)
            self.cursor.execute(f"CREATE INDEX ON {q(CHANGED)} (runner_n)")
            self._analyze(CHANGED)
        return count

    def changed_keys(self, after: int, limit: int) -> list[tuple]:
        """A page of `CHANGED`'s keys still in the source: (position, *key values)."""
        q, m = self.q, self.c.mark
        names = ", ".join(q(k) for k in self.keys)
        with self.c.errors(self.doing):
            self.cursor.execute(
                f"SELECT runner_n, {names} FROM {q(CHANGED)} WHERE NOT runner_gone AND runner_n > {m} "
                f"ORDER BY runner_n LIMIT {int(limit)}",
                (after,),
            )
            return [tuple(r) for r in self.cursor.fetchall()]

    def delete_gone(self) -> int:
        """Delete (or soft-delete) the target rows `find_changed` found gone from the source."""
        match = self._key_match()
        return self._delete(f"EXISTS (SELECT 1 FROM {self.q(CHANGED)} k WHERE k.runner_gone AND {match})")

    def existing_columns(self) -> list[str]:
        self.cursor.execute(f"SELECT * FROM {self.target} WHERE 1 = 0")
        names = [d[0] for d in self.cursor.description]
        self.cursor.fetchall()
        return names

    # --- rows ----------------------------------------------------------------------------

    def truncate(self) -> int:
        """Delete every row (the replace mode); returns how many there were."""
        with self.c.errors(self.doing):
            self.cursor.execute(f"DELETE FROM {self.target}")
            return max(self.cursor.rowcount, 0)

    def insert(self, batch: Batch) -> None:
        """Append rows to the target (the replace mode)."""
        self._bulk(self.target, self.names, self.encode(batch), batch, self.columns)

    def stage(self, batch: Batch) -> None:
        """Add rows to the staging table, to be merged by `merge`."""
        self._bulk(self.q(STAGE), self.names, self.encode(batch), batch, self.columns)

    def merge(self) -> MergeCounts:
        """Update target rows whose values differ from their staged row, insert staged rows
        with no target row. The staging table keeps its rows (for `delete_missing`). When the
        target rejects a row (a NOT NULL, a check), the merge is retried key by key to name it."""
        c = self.c
        with c.errors(self.doing):
            if not self.empty_at_start:
                self._analyze(STAGE)
            self.cursor.execute("SAVEPOINT runner_merge")
        try:
            counts = self._merge()
        except c.engine.dialect.loaded_dbapi.Error as exc:
            with c.errors(self.doing):
                self.cursor.execute("ROLLBACK TO SAVEPOINT runner_merge")
            if c.is_transient(exc):
                with c.errors(self.doing):
                    raise exc from None
            raise self._diagnose_merge(exc) from None
        with c.errors(self.doing):
            self.cursor.execute("RELEASE SAVEPOINT runner_merge")
            self.inserted += counts.inserted
            if self.inserted >= max(50_000, 2 * self.analyzed_at):
                # a table this run has doubled has statistics that still call it small: the
                # planner would scan it whole for every batch instead of using its key index
                self.analyzed_at = self.inserted
                self._analyze_target()
        return counts

    def _analyze_target(self) -> None:
        sql = self.c.analyze_sql(self.target)
        if sql:
            self.cursor.execute(sql)

    def _merge(self, only: str = "", params: tuple = ()) -> MergeCounts:
        c, t, s = self.c, "t", "s"
        counts = MergeCounts()
        if self.empty_at_start and not only:
            names = ", ".join(self.names)
            self.cursor.execute(f"INSERT INTO {self.target} ({names}) SELECT {names} FROM {self.q(STAGE)}")
            counts.inserted = max(self.cursor.rowcount, 0)
            return counts
        on = " AND ".join(f"{t}.{self.q(k)} = {s}.{self.q(k)}" for k in self.keys)
        values = [col for col in self.columns if col.name not in self.keys]
        if values or self.soft:
            sets = [(self.q(col.name), f"{s}.{self.q(col.name)}") for col in values]
            differs = [
                c.distinct_sql(f"{t}.{self.q(col.name)}", f"{s}.{self.q(col.name)}", col.type)
                for col in values
            ]
            if self.soft:
                sets.append((self.q(self.soft), "NULL"))
                differs.append(f"{t}.{self.q(self.soft)} IS NOT NULL")
            where = f"({' OR '.join(differs)}){only}"
            self._execute(c.update_join_sql(self.target, t, self.q(STAGE), s, on, sets, where), params)
            counts.updated = max(self.cursor.rowcount, 0)
        names = ", ".join(self.names)
        picked = ", ".join(f"{s}.{n}" for n in self.names)
        first_key = f"{t}.{self.q(self.keys[0])}"
        self._execute(
            f"INSERT INTO {self.target} ({names}) SELECT {picked} FROM {self.q(STAGE)} {s} "
            f"LEFT JOIN {self.target} {t} ON {on} WHERE {first_key} IS NULL{only}",
            params,
        )
        counts.inserted = max(self.cursor.rowcount, 0)
        return counts

    def _analyze(self, table: str) -> None:
        """Give the planner the staged table's size: without it PostgreSQL guesses a temporary
        table's rows and may scan the whole target once per batch."""
        sql = self.c.analyze_sql(self.q(table))
        if sql:
            self.cursor.execute(sql)

    def _execute(self, sql: str, params: tuple) -> None:
        """Without parameters, no parameter argument: drivers that format with % would read
        a % in a quoted name as a placeholder."""
        if params:
            self.cursor.execute(sql, params)
        else:
            self.cursor.execute(sql)

    def _diagnose_merge(self, first: Exception) -> TerminalError:
        """Merge the staged rows one key at a time (pages of keys, each under a savepoint)
        until one fails: its key and the database's words name the problem."""
        c, keys = self.c, [self.q(k) for k in self.keys]
        only = "".join(f" AND s.{k} = {c.mark}" for k in keys)
        order = ", ".join(keys)
        offset, page = 0, 1000
        while True:
            self.cursor.execute(
                f"SELECT {order} FROM {self.q(STAGE)} ORDER BY {order} LIMIT {page} OFFSET {offset}"
            )
            staged = self.cursor.fetchall()
            for key in staged:
                try:
                    self.cursor.execute("SAVEPOINT runner_row")
                    self._merge(only, tuple(key))
                    self.cursor.execute("ROLLBACK TO SAVEPOINT runner_row")
                except c.engine.dialect.loaded_dbapi.Error as exc:
                    with suppress(Exception):
                        self.cursor.execute("ROLLBACK TO SAVEPOINT runner_row")
                    return TerminalError(self._row_message(None, tuple(key), True, exc, staged=False))
            if len(staged) < page:
                return TerminalError(self._row_message(None, None, False, first, staged=False))
            offset += page

    def clear_stage(self) -> None:
        with self.c.errors(self.doing):
            self.cursor.execute(self.c.empty_temp_sql(self.q(STAGE)))

    # --- deletes -------------------------------------------------------------------------

    def open_key_stage(self) -> None:
        with self.c.errors(self.doing):
            self.cursor.execute(self.c.drop_temp_sql(KEY_STAGE))
            self.cursor.execute(self.c.create_temp_sql(KEY_STAGE, self.key_columns, self.keys))

    def stage_keys(self, keys: Batch) -> None:
        self._bulk(
            self.q(KEY_STAGE), [self.q(k) for k in self.keys], self.encode_keys(keys), keys, self.key_columns
        )

    def delete_missing(self, from_stage: str = STAGE) -> int:
        """Delete (or soft-delete) target rows whose key is not staged: gone from the source."""
        with self.c.errors(self.doing):
            self._analyze(from_stage)
        return self._delete(f"NOT EXISTS (SELECT 1 FROM {self.q(from_stage)} k WHERE {self._key_match()})")

    def delete_listed(self) -> int:
        """Delete (or soft-delete) target rows whose key is in the key stage."""
        with self.c.errors(self.doing):
            self._analyze(KEY_STAGE)
        return self._delete(f"EXISTS (SELECT 1 FROM {self.q(KEY_STAGE)} k WHERE {self._key_match()})")

    def target_buckets(self, width: int, native: bool = False) -> dict[int, BucketDigest]:
        """Per bucket of the (single, integer) key: the digest of the target's keys (not
        soft-deleted ones), as `SqlConnector.key_buckets` gives the source's."""
        k = self.q(self.keys[0])
        live = f" WHERE {self.q(self.soft)} IS NULL" if self.soft else ""
        with self.c.errors(self.doing):
            self.c.prepare_digests(self.dbapi.driver_connection)
            self.cursor.execute(self.c.bucket_digests_sql(k, width, f"{self.target}{live}", native))
            return self.c.bucket_digests(self.cursor.fetchall(), k, native)

    def find_keys(self, values: Sequence[int] = (), ranges: Sequence[tuple[int, int]] = ()) -> set[int]:
        """The target's values of its (single, integer) key among `values` or in the inclusive
        `ranges`, soft-deleted rows left out."""
        k = self.q(self.keys[0])
        live = f" AND {self.q(self.soft)} IS NULL" if self.soft else ""
        found: set[int] = set()
        with self.c.errors(self.doing):
            for where, params in key_conditions(k, self.c.mark, values, ranges):
                self.cursor.execute(f"SELECT {k} FROM {self.target} WHERE ({where}){live}", params)
                found.update(int(r[0]) for r in self.cursor.fetchall())
        return found

    def delete_keys(self, values: list[int]) -> int:
        """Delete (or soft-delete) the target rows with these (single, integer) key values."""
        k = f"{self.target}.{self.q(self.keys[0])}"
        return sum(self._delete(where, params) for where, params in key_conditions(k, self.c.mark, values))

    def delete_missing_in_buckets(self, width: int, buckets: list[int]) -> int:
        """Delete target rows of these buckets whose key is not in the key stage (one scan
        of the target with a hashed IN list: an OR of many key ranges costs far more)."""
        bucket = self.c.bucket_sql(f"{self.target}.{self.q(self.keys[0])}", width)
        marks = ", ".join([self.c.mark] * len(buckets))
        with self.c.errors(self.doing):
            self._analyze(KEY_STAGE)
        gone = f"NOT EXISTS (SELECT 1 FROM {self.q(KEY_STAGE)} k WHERE {self._key_match()})"
        return self._delete(f"{bucket} IN ({marks}) AND {gone}", tuple(buckets))

    def _key_match(self) -> str:
        return " AND ".join(f"k.{self.q(k)} = {self.target}.{self.q(k)}" for k in self.keys)

    def _delete(self, condition: str, params: tuple = ()) -> int:
        with self.c.errors(self.doing):
            if self.soft:
                soft = self.q(self.soft)
                now = self.c.batch_encoder([Column(self.soft, SOFT_DELETE_TYPE)])([(utcnow(),)])[0][0]
                self.cursor.execute(
                    f"UPDATE {self.target} SET {soft} = {self.c.mark} WHERE {soft} IS NULL AND {condition}",
                    (now, *params),
                )
            else:
                self._execute(f"DELETE FROM {self.target} WHERE {condition}", params)
            return max(self.cursor.rowcount, 0)

    # --- bulk insert with a diagnosis ------------------------------------------------------

    def _bulk(
        self, table: str, names: list[str], rows: Batch, original: Batch, columns: list[Column]
    ) -> None:
        c = self.c
        with c.errors(self.doing):
            self.cursor.execute("SAVEPOINT runner_batch")
        try:
            c.insert_rows(self.cursor, table, names, rows, columns)
        except c.engine.dialect.loaded_dbapi.Error as exc:
            with c.errors(self.doing):
                self.cursor.execute("ROLLBACK TO SAVEPOINT runner_batch")
            if c.is_transient(exc):
                with c.errors(self.doing):
                    raise exc from None
            raise self._diagnose(table, names, rows, original, columns, exc) from None
        with c.errors(self.doing):
            self.cursor.execute("RELEASE SAVEPOINT runner_batch")

    def _diagnose(
        self,
        table: str,
        names: list[str],
        rows: Batch,
        original: Batch,
        columns: list[Column],
        first: Exception,
    ) -> TerminalError:
        """Insert row by row to find the first one the target rejects; name it by its key."""
        c = self.c
        staged = table in (self.q(STAGE), self.q(KEY_STAGE))
        for position, (row, raw) in enumerate(zip(rows, original, strict=True)):
            try:
                self.cursor.execute("SAVEPOINT runner_row")
                c.insert_rows(self.cursor, table, names, [row], columns)
                self.cursor.execute("RELEASE SAVEPOINT runner_row")
            except c.engine.dialect.loaded_dbapi.Error as exc:
                with suppress(Exception):
                    self.cursor.execute("ROLLBACK TO SAVEPOINT runner_row")
                keys_only = len(names) == len(self.keys)
                other = self._taken_for(table, row, keys_only) if staged else None
                return TerminalError(self._row_message(position, raw, keys_only, exc, staged, other))
        return TerminalError(self._row_message(None, None, False, first, staged))

    def _taken_for(self, table: str, row: tuple, keys_only: bool) -> tuple | None:
        """The staged key that the staging table took `row`'s key for, when its text differs
        (the target's collation ignores case or trailing spaces, and the staging table follows
        it); None when the source has this very key twice."""
        values = tuple(row) if keys_only else tuple(row[i] for i in self.key_index)
        where = " AND ".join(f"{self.q(k)} = {self.c.mark}" for k in self.keys)
        with suppress(Exception):  # a diagnosis: without it, the message blames the source
            self.cursor.execute(
                f"SELECT {', '.join(self.q(k) for k in self.keys)} FROM {table} WHERE {where}", values
            )
            found = self.cursor.fetchone()
            if found is not None and any(
                isinstance(v, str) and v != f for v, f in zip(values, found, strict=True)
            ):
                return tuple(found)
        return None

    def _row_message(
        self,
        position: int | None,
        raw: Any,
        keys_only: bool,
        exc: Exception,
        staged: bool,
        other: tuple | None = None,
    ) -> str:
        """`row with key id=5: column 'name': <what the database said>`. A key the staging
        table rejects as a duplicate is one the source repeats, unless another key of the
        source (`other`) differs from it only where the target's collation does not look; a key
        the target table rejects is one it already holds in a form equal to it there."""
        text = self.c.error_text(exc)
        if self.keys and ("duplicate" in text.lower() or "unique" in text.lower()):
            if staged and other is None:
                text = f"the source has this key more than once ({text})"
            elif other is not None:
                shown = ", ".join(f"{k}={v!r}" for k, v in zip(self.keys, other, strict=True))
                text = (
                    f"the target table {self.table} takes this key and {shown} of the source for one "
                    f"(its collation): {text}"
                )
            else:
                text = (
                    f"the target table {self.table} holds a key equal to this one under its collation "
                    f"or type: {text}"
                )
        where = ""
        if raw is not None and self.keys:
            values = raw if keys_only else [raw[i] for i in self.key_index]
            where = "row with key " + ", ".join(f"{k}={v!r}" for k, v in zip(self.keys, values, strict=True))
        elif position is not None:
            where = f"row {position + 1} of its batch"
        column = self.c.error_column(exc)
        parts = [where, f"column {column!r}" if column else "", text]
        return secrets.redact(": ".join(p for p in parts if p))


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)
