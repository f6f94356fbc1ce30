"""Comparing rows in the target database: the source's keys and row hashes are copied into the
target inside the databases (a pair whose fast path packs them), compared there with the
target's own, and only the keys that differ come back. Narrowed first to the key buckets whose
sums differ, so a round that changed 2% of the rows hashes about that many."""

from __future__ import annotations

from typing import TYPE_CHECKING

from runner.connectors.base import KEY_STAGE
from runner.connectors.sql.transaction import WriterState
from runner.definitions.tasks import ReadSpec
from runner.errors import TerminalError
from runner.streams.types import INTEGERS, Column, ColumnType

if TYPE_CHECKING:
    from runner.connectors.sql.base import SqlConnector

CHANGED = "runner_changed"  # keys whose row differs from the target's, or that are gone
ROW_HASH = "runner_rh"
TARGET_HASHES = "runner_target_hashes"  # the target's keys and row hashes, before any change
TARGET_BUCKETS = "runner_target_buckets"  # the target's row count and hash per key bucket
KEYS_PER_HASH_BUCKET = 16  # fastest of 4-32 on the benchmark (1.7% of rows changed: 18% of buckets differ)
MAX_HASH_BUCKETS = 250_000  # bounds the list of differing buckets held in Python


class InTargetCompare(WriterState):
    """The `ComparingWriter` and key-bucket copy methods of `SqlWriter`."""

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
            return None  # e.g. two PostgreSQL servers, only one with a 64-bit row hash
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

            if self.history is not None:  # the current versions only
                current = self.live_sql(t)
                where_t = f"{where_t} AND {current}" if where_t else f" WHERE {current}"

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
        None when narrowing would not pay (most buckets differ) or cannot be exact (a NULL key).
        The width comes from the target's key range, read from the key's index (a count of its
        rows scanned the whole table first, before either side could start summing): where the
        keys are sparse, more buckets of fewer keys, never more non-empty ones than rows."""
        c, q, k = self.c, self.q, self.q(self.keys[0])
        live = f" WHERE {self.live_sql('t')}" if self.live_sql() else ""
        self.cursor.execute(f"SELECT min({k}), max({k}) FROM {self.target} t{live}")
        low, high = self.cursor.fetchone()
        if low is None:
            return None
        span = int(high) - int(low) + 1
        width = max(1, -(-span // min(MAX_HASH_BUCKETS, max(1, span // KEYS_PER_HASH_BUCKET))))
        bucket = c.bucket_sql(k, width)
        columns = [Column(name, ColumnType("bigint")) for name in ("runner_b", "runner_n", "runner_x")]
        # The row hash computed under OFFSET 0, before the grouping: grouped by an expression,
        # the planner takes each key for a bucket (1M buckets, not 63k) and sorts, or spills,
        # whole rows to disk; two narrow columns of 63k groups are hashed in memory (the
        # source's 1M rows under 4 MB of work_mem: 0.43-0.49 s, not 0.53-0.71)
        summed = (
            f"(SELECT b, count(*) AS n, bit_xor(h) AS x FROM (SELECT {bucket}::bigint AS b, {theirs} AS h "
            f"FROM {from_sql} OFFSET 0) r GROUP BY b) s"
        )

        def target_sums() -> None:  # while the source sums up its own
            self.cursor.execute(c.drop_temp_sql(TARGET_BUCKETS))
            self.cursor.execute(
                f"CREATE TEMPORARY TABLE {q(TARGET_BUCKETS)} AS SELECT b, count(*) AS n, bit_xor(h) AS x "
                f"FROM (SELECT {c.bucket_sql(f't.{k}', width)} AS b, {ours} AS h FROM {self.target} t{live} "
                "OFFSET 0) r GROUP BY b"
            )

        exprs = ["s.b", "s.n", "s.x"]
        fast = self.fast
        assert fast is not None  # `copy_digests` asks only with a path that packs
        if fast.copy_packed(c, self.cursor, source, exprs, summed, columns, None, target_sums) is None:
            return None
        # in one pass over the join of the source's sums with the target's (a bucket is on
        # each side at most once): the source's row count, the buckets with a row on either
        # side (those compared), and the differing ones
        self.cursor.execute(
            "SELECT coalesce(sum(runner_n), 0), count(*), coalesce(array_agg(coalesce(runner_b, b)) "
            "FILTER (WHERE runner_n IS DISTINCT FROM n OR runner_x IS DISTINCT FROM x), '{}') "
            f"FROM {fast.packed_sql(c, columns)} s FULL JOIN {q(TARGET_BUCKETS)} t ON s.runner_b = t.b"
        )
        summed_rows, compared, differing = self.cursor.fetchone()
        total, buckets, differ = int(summed_rows), int(compared), list(differing)
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
