"""Writing into a SQL target: one transaction per `SqlWriter`.

Without keys, a task replaces the table's rows (`truncate` + `insert`). With keys, rows go
into a temporary staging table first and are merged set-based in the target database: an
UPDATE joined on the keys touches only rows whose values differ (a null-safe comparison),
an INSERT of the staged rows with no match adds the new ones, and deletes are anti-joins
against staged keys. A stage small beside the target is merged by looking its rows up by key;
in PostgreSQL, with a unique index on the keys, in one INSERT … ON CONFLICT DO UPDATE that
updates the same rows (each row looked up once instead of twice). Doing it in the database
keeps memory flat whatever the table's size and gives exact counts of inserted, updated and
unchanged rows on every dialect. The staging table's primary key rejects a source that
repeats a key.

A failed bulk insert is retried row by row under a savepoint to name the row (its key) and,
where the driver says, the column that the target rejected.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from runner.connectors.base import KEY_STAGE, STAGE, Copy, History, KeySpan, MergeCounts, TableEvolution
from runner.connectors.sql import evolve, history_mode
from runner.connectors.sql.compare import InTargetCompare
from runner.connectors.sql.diagnose import Diagnosis
from runner.connectors.sql.keys import key_conditions
from runner.connectors.sql.transaction import Transaction
from runner.definitions.tasks import ReadSpec
from runner.errors import TerminalError
from runner.streams.keys import BucketDigest
from runner.streams.types import Column, ColumnType

if TYPE_CHECKING:
    from runner.connectors.sql.base import SqlConnector
    from runner.connectors.sql.fastpath import FastPath
    from runner.streams.types import Batch

SOFT_DELETE_TYPE = ColumnType("timestamp")


class SqlWriter(InTargetCompare, Diagnosis, Transaction):
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
        history: History | None = None,
        evolution: TableEvolution | None = None,
    ):
        self.c = connector
        self.evolution = evolution  # the table follows the source's columns (`evolve`)
        self.q = connector.quote
        self.table = table
        self.target = connector.quote_table(table)
        self.columns = columns
        self.keys = keys or []
        self.soft = soft_delete_column
        self.history = history  # history mode: every version kept (`history_mode`)
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
        self.arbiter: bool | None = None  # the target has a unique index an upsert can name (`_upserts`)

    # --- life cycle ----------------------------------------------------------------------

    def open(self) -> SqlWriter:
        c = self.c
        with c.errors(self.doing):
            self.connect()
            if self.fast is not None and self.source is not None:
                self.fast.prepare(c, self.dbapi.driver_connection, self.source)
            self.create_schema(self.table)
            changes = evolve.follow_source(self)  # committed before the transaction (MariaDB's would be)
            self.begin()
            create = c.create_table_ddl(self.table, self.columns, self.keys, self.soft, self.history)
            self.cursor.execute(create[-1])  # its schema: `create_schema`, committed before
            if self.soft and self.soft not in self.existing_columns():
                soft_type = c.render_type(SOFT_DELETE_TYPE)
                self.cursor.execute(f"ALTER TABLE {self.target} ADD COLUMN {self.q(self.soft)} {soft_type}")
            self.target_types = {
                name: c.parse_type(declared)
                for name, declared in c.declared_columns(self.cursor, ReadSpec(table=self.table))
            }
            history_mode.check_table(self)
            evolve.rehearse(self, changes)  # a dry run's, rolled back with it
            evolve.truncating(self)
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
        if into == self.table and self.history is not None:
            return None  # a version needs its columns: the rows are staged and merged
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

    def copies_straight_in(self) -> bool:
        """Whether a whole read may be copied into the target itself rather than staged and
        merged: the target was empty when the run began (every row an insert, nothing to delete)
        and refuses a repeated key as the staging table would."""
        if not (self.empty_at_start and self.keys and self.history is None and self.fast is not None):
            return False
        with self.c.errors(self.doing):
            return self.c.unique_keys(self.cursor, self.table, self.keys)

    def narrow(self, within: KeySpan) -> None:
        """This writer writes only keys `within` the span (a split copy's range, which no other
        writer writes meanwhile): it counts as empty at start when no target row is there (its
        merge is then one INSERT); and its one merge needs no fresh statistics of the table (an
        ANALYZE would also wait for the transactions of the ranges going on beside it)."""
        with self.c.errors(self.doing):
            self.cursor.execute(
                f"SELECT 1 FROM {self.target} WHERE {within.sql(self.q(self.keys[0]))} LIMIT 1"
            )
            self.empty_at_start = self.cursor.fetchone() is None
        self.analyzed_at = sys.maxsize

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
        return self._merge_staged(self._looks_up())

    def merge_noting_new(
        self, width: int, native: bool = False
    ) -> tuple[MergeCounts, dict[int, BucketDigest]]:
        """`merge`, and `new_key_buckets` of the keys it inserts: where the merge is one upsert,
        read off what that statement inserted (no lookup of the staged keys before it);
        otherwise asked before the merge."""
        lookup = self._looks_up()
        if not (lookup and self._upserts()):
            new = self.new_key_buckets(width, native)
            return self._merge_staged(lookup), new
        noted: dict[int, BucketDigest] = {}
        return self._merge_staged(lookup, (width, native, noted)), noted

    def _looks_up(self) -> bool:
        with self.c.errors(self.doing):
            return not self.empty_at_start and self.c.looks_up_by_key(
                self.cursor, self.target, self.q(STAGE), self.keys
            )

    def _merge_staged(
        self, lookup: bool, noting: tuple[int, bool, dict[int, BucketDigest]] | None = None
    ) -> MergeCounts:
        """`merge`, `lookup` being `looks_up_by_key` (asked just before); `noting`: (width,
        native, a dict given the new keys' digests) where the merge is an upsert."""
        c = self.c
        with c.errors(self.doing):
            self.cursor.execute("SAVEPOINT runner_merge")
            upsert = lookup and self._upserts()
            probes = lookup and not upsert and c.start_probes(self.cursor)
            if not (self.empty_at_start or lookup):  # looking rows up by key needs no statistics
                self._analyze(STAGE)
        try:
            counts = self._upsert(noting) if upsert else self._merge()
            if probes:
                c.end_probes(self.cursor)
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

    def _upserts(self) -> bool:
        """Whether a merge that looks rows up by key may be one upsert (`_upsert`): the dialect
        has one, and the target a unique index on exactly the keys to name (asked once)."""
        if self.arbiter is None:
            self.arbiter = (
                self.c.upserts
                and self.history is None
                and self.c.unique_keys(self.cursor, self.table, self.keys, arbiter=True)
            )
        return self.arbiter

    def _upsert(self, noting: tuple[int, bool, dict[int, BucketDigest]] | None = None) -> MergeCounts:
        """`_merge`'s outcome in one statement (INSERT … ON CONFLICT DO UPDATE where a value
        differs): each staged row is looked up in the target's key index once, where the UPDATE
        and the INSERT's anti-join each look it up again (at 10M rows, most lookups read a page
        the server's cache no longer holds). A row that is unchanged gets a row lock only.
        `noting`: the inserted keys' digests are put in its dict (`merge_noting_new`)."""
        t, ex = "t", "EXCLUDED"
        sets, where = self._sets(t, ex)
        keys = [self.q(k) for k in self.keys]
        new_keys = noting[:2] if noting is not None else None
        if noting is not None:
            self.c.prepare_digests(self.dbapi.driver_connection)
        sql = self.c.upsert_sql(self.target, t, self.q(STAGE), self.names, keys, sets, where, new_keys)
        self.cursor.execute(sql)
        rows = self.cursor.fetchall()
        ((_, inserted, updated, *_),) = [r for r in rows if r[0] is None]
        if noting is not None:
            noting[2].update(self.c.bucket_digests([r for r in rows if r[0] is not None], keys[0], noting[1]))
        return MergeCounts(inserted=int(inserted), updated=int(updated))

    def _sets(self, t: str, s: str) -> tuple[list[tuple[str, str]], str]:
        """A merge's assignments of the target row `t` from the staged row `s`, and the
        condition that the two differ (a null-safe comparison of each value); none when the
        rows have no column but the keys."""
        c, values = self.c, [col for col in self.columns if col.name not in self.keys]
        sets = [(self.q(col.name), f"{s}.{self.q(col.name)}") for col in values]
        differs = [
            c.distinct_sql(f"{t}.{self.q(col.name)}", f"{s}.{self.q(col.name)}", col.type) for col in values
        ]
        if self.soft:
            sets.append((self.q(self.soft), "NULL"))
            differs.append(f"{t}.{self.q(self.soft)} IS NOT NULL")
        return sets, " OR ".join(differs)

    def _analyze_target(self) -> None:
        sql = self.c.analyze_sql(self.target)
        if sql:
            self.cursor.execute(sql)

    def _merge(self, only: str = "", params: tuple = ()) -> MergeCounts:
        if self.history is not None:
            return history_mode.merge(self, only, params)
        c, t, s = self.c, "t", "s"
        counts = MergeCounts()
        if self.empty_at_start and not only:
            names = ", ".join(self.names)
            self.cursor.execute(f"INSERT INTO {self.target} ({names}) SELECT {names} FROM {self.q(STAGE)}")
            counts.inserted = max(self.cursor.rowcount, 0)
            return counts
        on = " AND ".join(f"{t}.{self.q(k)} = {s}.{self.q(k)}" for k in self.keys)
        sets, differs = self._sets(t, s)
        if sets:
            where = f"({differs}){only}"
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

    def staged_highest(self, column: str) -> Any:
        """The highest value of `column` among the staged rows (None when there is none): the
        pointer a watermark round copied inside the databases reached."""
        with self.c.errors(self.doing):
            self.cursor.execute(f"SELECT max({self.q(column)}) FROM {self.q(STAGE)}")
            return self.cursor.fetchone()[0]

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

    def delete_missing(self, from_stage: str = STAGE, within: KeySpan | None = None) -> int:
        """Delete (or soft-delete) target rows whose key is not staged: gone from the source;
        `within`: only those in that span of the (single, integer) key (a split copy's range)."""
        with self.c.errors(self.doing):
            self._analyze(from_stage)
        span = f" AND {within.sql(f'{self.target}.{self.q(self.keys[0])}')}" if within is not None else ""
        return self._delete(
            f"NOT EXISTS (SELECT 1 FROM {self.q(from_stage)} k WHERE {self._key_match()}){span}"
        )

    def delete_listed(self) -> int:
        """Delete (or soft-delete) target rows whose key is in the key stage."""
        with self.c.errors(self.doing):
            self._analyze(KEY_STAGE)
        return self._delete(f"EXISTS (SELECT 1 FROM {self.q(KEY_STAGE)} k WHERE {self._key_match()})")

    def target_buckets(self, width: int, native: bool = False) -> dict[int, BucketDigest]:
        """Per bucket of the (single, integer) key: the digest of the target's keys (not
        soft-deleted ones), as `SqlConnector.key_buckets` gives the source's."""
        k = self.q(self.keys[0])
        live = f" WHERE {self.live_sql()}" if self.live_sql() else ""
        with self.c.errors(self.doing):
            self.c.prepare_digests(self.dbapi.driver_connection)
            self.cursor.execute(self.c.bucket_digests_sql(k, width, f"{self.target}{live}", native))
            return self.c.bucket_digests(self.cursor.fetchall(), k, native)

    def new_key_buckets(self, width: int, native: bool = False) -> dict[int, BucketDigest]:
        """Per bucket, the digest of the staged keys the target does not hold yet: what the
        next `merge` adds to `target_buckets` (it inserts them, and updates change no key)."""
        k, c = self.q(self.keys[0]), self.c
        stage = self.q(STAGE)
        absent = f"NOT EXISTS (SELECT 1 FROM {self.target} t WHERE t.{k} = s.{k})"
        new = f"(SELECT s.{k} FROM {stage} s WHERE {absent}) n"
        with c.errors(self.doing):
            c.prepare_digests(self.dbapi.driver_connection)
            probes = c.looks_up_by_key(self.cursor, self.target, stage, self.keys) and c.start_probes(
                self.cursor
            )
            self.cursor.execute(c.bucket_digests_sql(k, width, new, native))
            rows = self.cursor.fetchall()
            if probes:
                c.end_probes(self.cursor)
        return c.bucket_digests(rows, k, native)

    def find_keys(self, values: Sequence[int] = (), ranges: Sequence[tuple[int, int]] = ()) -> set[int]:
        """The target's values of its (single, integer) key among `values` or in the inclusive
        `ranges`, soft-deleted rows left out."""
        k = self.q(self.keys[0])
        live = f" AND {self.live_sql()}" if self.live_sql() else ""
        found: set[int] = set()
        with self.c.errors(self.doing):
            for where, params in key_conditions(k, self.c.mark, self.c.any_of_sql, values, ranges):
                self.cursor.execute(f"SELECT {k} FROM {self.target} WHERE ({where}){live}", params)
                found.update(int(r[0]) for r in self.cursor.fetchall())
        return found

    def delete_keys(self, values: list[int]) -> int:
        """Delete (or soft-delete) the target rows with these (single, integer) key values."""
        k = f"{self.target}.{self.q(self.keys[0])}"
        conditions = key_conditions(k, self.c.mark, self.c.any_of_sql, values)
        return sum(self._delete(where, params) for where, params in conditions)

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
            if self.history is not None:
                return history_mode.close(self, condition, params)
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


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)
