"""Naming what the target rejected: a failed bulk insert or merge is retried row by row under a
savepoint to name the row (its key) and, where the driver says, the column."""

from __future__ import annotations

from contextlib import suppress
from typing import TYPE_CHECKING, Any

from runner.connectors.base import KEY_STAGE, STAGE
from runner.connectors.sql.transaction import WriterState
from runner.definitions import secrets
from runner.errors import TerminalError
from runner.streams.types import Column

if TYPE_CHECKING:
    from runner.streams.types import Batch


class Diagnosis(WriterState):
    """The diagnosing bulk insert of `SqlWriter`."""

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
