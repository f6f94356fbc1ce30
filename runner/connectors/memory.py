"""The memory kind: tables held in this process, for tests and demos.

Connections naming one `store` share its tables within the process, so a test seeds rows with
`store(name).put(...)` and reads them back with `store(name).rows(...)`; the tables are gone
when the process ends. The kind is honest and small: it reads a table in bounded batches (by a
watermark too) and writes with runner's merge (keys: rows upserted, deletes and soft deletes
by key; no keys: the table replaced), one transaction per writer. It declares `native_merge`
and nothing more, so a task that needs a query, digests, scripts or key buckets of it is
refused by `runner validate`.

Fault options make it fail on purpose, to test what a failure leaves behind: `fail_on_batch: N`
raises on the Nth batch each connection reads or writes, `fail: before_commit | after_commit`
raises in a writer just before, or just after, it commits.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from runner.connectors import registry
from runner.connectors.base import (
    STAGE,
    Capabilities,
    Connector,
    Copy,
    History,
    KeySpan,
    MergeCounts,
    MissingColumn,
    ReadStream,
    TableEvolution,
    Watermark,
)
from runner.definitions.models import ConnectionSpec
from runner.definitions.tasks import ReadSpec
from runner.errors import TerminalError, TransientError
from runner.streams.types import Batch, Column, ColumnType, Row

WRITER_WAIT = 60.0  # seconds a writer waits for another writer of its table to end
SOFT_DELETE_TYPE = ColumnType("timestamp")


class MemoryConnection(ConnectionSpec):
    type: Literal["memory"] = Field(
        description="Tables held in this process, for tests and demos: gone when the process ends."
    )
    store: str = Field(
        min_length=1, description="The store's name: connections naming one store share its tables."
    )
    fail_on_batch: int | None = Field(
        None, ge=1, description="A fault for tests: raise on the Nth batch each connection reads or writes."
    )
    fail: Literal["before_commit", "after_commit"] | None = Field(
        None, description="A fault for tests: a writer raises just before, or just after, it commits."
    )


class InjectedFault(TransientError):
    """A failure a memory connection's fault options asked for."""


@dataclass(frozen=True)
class Table:
    """A committed table: never changed in place (a commit replaces it), so a read goes on
    with the rows it started with, as in a snapshot."""

    columns: tuple[Column, ...]
    rows: tuple[Row, ...]


class Store:
    """A named set of tables, shared by the connections naming it."""

    def __init__(self) -> None:
        self.tables: dict[str, Table] = {}
        self.lock = threading.Lock()
        self.writing: dict[str, threading.Lock] = {}  # one writer per table at a time

    def put(self, table: str, columns: Sequence[Column], rows: Iterable[Sequence[Any]]) -> None:
        """Replace `table` with these rows (seeding a source in a test)."""
        with self.lock:
            self.tables[table] = Table(tuple(columns), tuple(tuple(r) for r in rows))

    def get(self, table: str) -> Table | None:
        with self.lock:
            return self.tables.get(table)

    def rows(self, table: str) -> list[Row]:
        found = self.get(table)
        return list(found.rows) if found else []

    def writer_lock(self, table: str) -> threading.Lock:
        with self.lock:
            return self.writing.setdefault(table, threading.Lock())


_STORES: dict[str, Store] = {}
_stores_lock = threading.Lock()


def store(name: str) -> Store:
    """The store of this name (made empty on first use)."""
    with _stores_lock:
        return _STORES.setdefault(name, Store())


def forget(name: str) -> None:
    """Drop a store and its tables (a test's clean-up)."""
    with _stores_lock:
        _STORES.pop(name, None)


def _order(value: Any) -> Any:
    """A value as the watermark compares it: a naive datetime is UTC, as everywhere in runner."""
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


class MemoryConnector(Connector):
    capabilities: ClassVar[Capabilities] = Capabilities(native_merge=True)

    def __init__(self, name: str, spec: ConnectionSpec, base_dir: Path):
        super().__init__(name, spec, base_dir)
        assert isinstance(spec, MemoryConnection)
        self.options = spec
        self.store = store(spec.store)
        self.batches = 0  # read or written by this connection, for `fail_on_batch`

    def counted(self, doing: str) -> None:
        """Count a batch read or written; the `fail_on_batch`th raises."""
        self.batches += 1
        if self.batches == self.options.fail_on_batch:
            raise InjectedFault(
                f"memory connection {self.name!r}: fault injected {doing} batch {self.batches}"
            )

    def table(self, name: str) -> Table:
        found = self.store.get(name)
        if found is None:
            raise TerminalError(f"table {name!r} not found (connection {self.name!r})")
        return found

    def read(
        self,
        spec: ReadSpec,
        batch_size: int,
        watermark: Watermark | None = None,
        select: list[str] | None = None,
        limit: int | None = None,
    ) -> ReadStream:
        if spec.table is None:
            raise TerminalError(f"connection {self.name!r} (memory) reads tables, not queries")
        table = self.table(spec.table)
        names = [c.name for c in table.columns]
        picked = list(range(len(names)))
        if select is not None:
            missing = [n for n in select if n not in names]
            if missing:
                raise TerminalError(f"column(s) {', '.join(map(repr, missing))} not in the source")
            picked = [names.index(n) for n in select]
        columns = [table.columns[i] for i in picked]
        rows: Sequence[Row] = table.rows
        w = None
        if watermark is not None:
            if watermark.column not in [c.name for c in columns]:
                raise MissingColumn(
                    f"watermark column {watermark.column!r} is not among the source's columns",
                    [c.name for c in columns],
                )
            w = names.index(watermark.column)
            rows = _since(rows, w, watermark)
        if limit is not None:
            rows = rows[:limit]
        stream = ReadStream(columns, iter(()))

        def batches() -> Iterator[Batch]:
            for start in range(0, len(rows), batch_size):
                batch = rows[start : start + batch_size]
                if limit is None:  # a probe of the columns, or a test run, is no batch of the run
                    self.counted("reading")
                if w is not None:
                    stream.pointer = _highest([stream.pointer, *(r[w] for r in batch)], watermark)
                yield [tuple(r[i] for i in picked) for r in batch] if select is not None else list(batch)

        stream.batches = batches()
        return stream

    def highest(self, spec: ReadSpec, column: str) -> Any:
        if spec.table is None:
            raise TerminalError(f"connection {self.name!r} (memory) reads tables, not queries")
        table = self.table(spec.table)
        names = [c.name for c in table.columns]
        if column not in names:
            raise TerminalError(f"column {column!r} not in the source")
        i = names.index(column)
        return _highest([r[i] for r in table.rows], Watermark(column))

    def table_exists(self, table: str) -> bool:
        return self.store.get(table) is not None

    def batch_encoder(self, columns: list[Column], keys: Sequence[int] = ()) -> Callable[[Batch], Batch]:
        return lambda batch: batch  # canonical values are what a memory table holds

    def open_writer(
        self,
        table: str,
        columns: list[Column],
        keys: list[str] | None = None,
        soft_delete_column: str | None = None,
        copy: Copy | None = None,
        history: History | None = None,  # not declared (`Capabilities.history`): refused before
        evolve: TableEvolution | None = None,  # not given: the kind has no `alter_tables`
    ) -> MemoryWriter:
        return MemoryWriter(self, table, columns, keys or [], soft_delete_column).opened()


def _since(rows: Sequence[Row], w: int, watermark: Watermark) -> list[Row]:
    """The rows at or past the watermark (and those with NULL in it), in its order, NULL first."""
    since = None if watermark.since is None else _order(watermark.since)
    until = None if watermark.until is None else _order(watermark.until)
    try:
        kept = [r for r in rows if since is None or r[w] is None or _order(r[w]) >= since]
        if until is not None:  # a backfill's window: NULLs are read once caught up
            kept = [r for r in kept if r[w] is not None and _order(r[w]) < until]
        return sorted(kept, key=lambda r: (r[w] is not None, _order(r[w])))
    except TypeError:
        raise TerminalError(
            f"watermark column {watermark.column!r} mixes values that cannot be ordered"
        ) from None


def _highest(values: Iterable[Any], watermark: Watermark | None) -> Any:
    present = [v for v in values if v is not None]
    try:
        return max(present, key=_order) if present else None
    except TypeError:
        column = watermark.column if watermark else "?"
        raise TerminalError(f"watermark column {column!r} mixes values that cannot be ordered") from None


class MemoryWriter:
    """One transaction on a memory table: the writer changes a copy of its rows, `commit`
    puts the copy in the store, `close` drops what was not committed. One writer per table
    at a time (two would each commit their own copy, the later one losing the other's work)."""

    merges: ClassVar[bool] = True

    def __init__(
        self, c: MemoryConnector, table: str, columns: list[Column], keys: list[str], soft: str | None
    ):
        self.c, self.table, self.columns, self.keys, self.soft = c, table, columns, keys, soft
        names = [col.name for col in columns]
        self.key_index = [names.index(k) for k in keys]  # in a row of the writer's columns
        self.key_columns = [columns[i] for i in self.key_index]
        self.lock: threading.Lock | None = None
        self.staged: list[tuple[tuple, Row]] = []  # (key, row)
        self.staged_keys: set[tuple] = set()
        self.key_stage: set[tuple] = set()

    def opened(self) -> MemoryWriter:
        lock = self.c.store.writer_lock(self.table)
        if not lock.acquire(timeout=WRITER_WAIT):
            raise TransientError(f"table {self.table!r} (connection {self.c.name!r}) has another writer")
        self.lock = lock
        try:
            self._load()
        except BaseException:
            self.close()
            raise
        return self

    def _load(self) -> None:
        """The table's layout and a copy of its rows (created with the writer's columns)."""
        found = self.c.store.get(self.table)
        layout = list(found.columns) if found else list(self.columns)
        rows = list(found.rows) if found else []
        names = [col.name for col in layout]
        missing = [col.name for col in self.columns if col.name not in names]
        if missing:
            raise TerminalError(
                f"the target table {self.table} has no column {', '.join(map(repr, missing))}"
            )
        if self.soft and self.soft not in names:
            layout.append(Column(self.soft, SOFT_DELETE_TYPE))
            names.append(self.soft)
            rows = [(*r, None) for r in rows]
        self.layout = layout
        self.positions = [names.index(col.name) for col in self.columns]
        self.same = self.positions == list(range(len(layout)))
        self.soft_at = names.index(self.soft) if self.soft else None
        key_at = [self.positions[i] for i in self.key_index]  # in a row of the table's layout
        self.empty_at_start = not rows
        self.rows: dict[tuple, Row] | list[Row] = (
            {tuple(r[i] for i in key_at): r for r in rows} if self.keys else rows
        )

    def _placed(self, row: Row, old: Row | None = None) -> Row:
        """A row of the writer's columns in the table's layout: other columns keep `old`'s
        values (None for a new row), a soft-deleted row comes back."""
        if self.same and old is None:
            return tuple(row)
        out = list(old) if old is not None else [None] * len(self.layout)
        for at, value in zip(self.positions, row, strict=True):
            out[at] = value
        if self.soft_at is not None:
            out[self.soft_at] = None
        return tuple(out)

    # --- rows ------------------------------------------------------------------------------

    def stage(self, batch: Batch) -> None:
        self.c.counted("writing")
        for row in batch:
            key = tuple(row[i] for i in self.key_index)
            if key in self.staged_keys:
                shown = ", ".join(f"{k}={v!r}" for k, v in zip(self.keys, key, strict=True))
                raise TerminalError(f"row with key {shown}: the source has this key more than once")
            self.staged_keys.add(key)
            self.staged.append((key, row))

    def merge(self) -> MergeCounts:
        """Insert staged rows with a new key, update those whose values differ (or that were
        soft-deleted); the stage keeps its rows (for `delete_missing`)."""
        counts = MergeCounts()
        rows = self.rows
        assert isinstance(rows, dict)
        for key, row in self.staged:
            old = rows.get(key)
            new = self._placed(row, old)
            if old is None:
                counts.inserted += 1
            elif new != old:
                counts.updated += 1
            else:
                continue
            rows[key] = new
        return counts

    def staged_highest(self, column: str) -> Any:
        at = [col.name for col in self.columns].index(column)
        return max((row[at] for _, row in self.staged if row[at] is not None), default=None)

    def clear_stage(self) -> None:
        self.staged.clear()
        self.staged_keys.clear()

    def truncate(self) -> int:
        count = len(self.rows)
        self.rows = [] if not self.keys else {}
        return count

    def insert(self, batch: Batch) -> None:
        self.c.counted("writing")
        assert isinstance(self.rows, list)
        self.rows.extend(self._placed(row) for row in batch)

    def copy_from(
        self, spec: ReadSpec, into: str, where: str = "", progress: Callable[[int], None] | None = None
    ) -> int | None:
        return None  # no pair copies into memory other than through batches

    def copies_straight_in(self) -> bool:
        return False

    # --- deletes ---------------------------------------------------------------------------

    def open_key_stage(self) -> None:
        self.key_stage = set()

    def stage_keys(self, keys: Batch) -> None:
        self.key_stage.update(tuple(k) for k in keys)

    def delete_listed(self) -> int:
        return self._delete([k for k in self.key_stage if k in self.rows])

    def narrow(self, within: KeySpan) -> None:
        self.empty_at_start = not any(within.contains(k[0]) for k in self.rows)

    def delete_missing(self, from_stage: str = STAGE, within: KeySpan | None = None) -> int:
        kept = self.staged_keys if from_stage == STAGE else self.key_stage
        inside = within.contains if within is not None else (lambda _: True)
        return self._delete([k for k in self.rows if k not in kept and inside(k[0])])

    def _delete(self, keys: list[tuple]) -> int:
        rows = self.rows
        assert isinstance(rows, dict)
        if self.soft_at is None:
            for key in keys:
                del rows[key]
            return len(keys)
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        live = [key for key in keys if rows[key][self.soft_at] is None]
        for key in live:
            row = list(rows[key])
            row[self.soft_at] = now
            rows[key] = tuple(row)
        return len(live)

    # --- the transaction -------------------------------------------------------------------

    def commit(self) -> None:
        fail = self.c.options.fail
        if fail == "before_commit":
            raise InjectedFault(f"memory connection {self.c.name!r}: fault injected before a commit")
        rows = self.rows.values() if isinstance(self.rows, dict) else self.rows
        self.c.store.put(self.table, self.layout, rows)
        if fail == "after_commit":
            raise InjectedFault(f"memory connection {self.c.name!r}: fault injected after a commit")

    def close(self) -> None:
        self.staged, self.key_stage = [], set()
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def __enter__(self) -> MemoryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


registry.register(registry.Kind("memory", MemoryConnection, MemoryConnector))
