"""The plug-in boundary every connection kind implements: small protocols over bounded batches
of canonical values, and the capabilities a kind declares beyond them.

A `Source` streams a table as batches of tuples with dialect-neutral column types; a `Target`
opens a `Writer` holding one open transaction. Values between them are "canonical" Python
values: int, Decimal, float, str, bool, date, time, datetime (naive = UTC), timedelta (a
duration), bytes, UUID, and parsed JSON (dict, list, ...). Anything more (a user's query,
digests computed in the database, key buckets, scripts, ...) is optional: a kind declares it in
`Capabilities` and implements the matching capability protocol below; the strategies check the
declaration, never the class or the kind's name, and `runner validate` refuses a task whose
kinds lack what it needs (`runner.changes.strategies.task_needs`).
"""

from __future__ import annotations

import datetime as dt
import functools
from abc import ABC
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Protocol

from runner.definitions.models import ConnectionSpec
from runner.definitions.schema_changes import TableChanges
from runner.definitions.tasks import ReadModel, ReadSpec, WriteModel
from runner.errors import TerminalError
from runner.streams.cancel import CancelToken
from runner.streams.keys import BucketDigest
from runner.streams.types import Batch, Column, ColumnType

# The writer's two stages, named where a strategy says which one to use: staged rows (`stage`,
# merged by `merge`) and staged keys (`stage_keys`).
STAGE = "runner_stage"
KEY_STAGE = "runner_keys"


@dataclass(frozen=True)
class Capabilities:
    """What a kind can do beyond the `Source`, `Target` and `Writer` protocols, declared per
    kind (`Connector.capabilities`). What a kind does not implement it does not declare: the
    task that would need it is refused by `runner validate` with the field that asks for it."""

    query: bool = False  # source: read.query and read.deleted_keys_query (`QuerySource`)
    key_lookup: bool = False  # source: rows fetched by key (`KeyLookup`): the hash strategy
    digests: bool = False  # source: row digests computed in the source (`DigestSource`): hash
    key_buckets: bool = False  # both ends: key bucket digests (`KeyBuckets`): watermark deletes
    native_merge: bool = False  # target: `open_writer` merges by key, replaces, (soft-)deletes
    scripts: bool = False  # target: write.upsert_script / delete_script (`RowTarget`)
    snapshot: bool = False  # source: reads of several connections share one (`Snapshots`)
    in_database_compare: bool = False  # both ends, one kind: rows compared in the target (hash)
    one_writer: bool = False  # target: one writer at a time: parallel tasks run one by one
    copy_while_reading: bool = False  # target: copies inside the databases while a read is open
    alter_tables: bool = (
        False  # target: follows the source's columns, cuts strings (`TableEvolution`, `TableDDL`)
    )
    history: bool = False  # target: `open_writer` keeps versions of rows (`History`): write.history
    table_lifecycle: bool = False  # target: tables truncated and dropped (`TableLifecycle`): before_run
    catalog: bool = False  # source: lists a schema's tables with columns and keys (`CatalogSource`)
    statements: bool = False  # both ends: runs a user's SQL statements (`StatementRunner`): events
    publish: bool = False  # target: a message per changed row and deleted key (`RowTarget`), confirmed
    consume: bool = False  # source: messages as changes, acknowledged after the target commits
    files: bool = False  # target: a file per committed batch (`RowTarget`), visible once complete
    verify: bool = False  # both ends: rows in key order, row hashes per key bucket (`Verifiable`)
    log_changes: bool = False  # source: a table's changes from its log (`changelog.LogSource`): cdc

    def names(self) -> frozenset[str]:
        """The capabilities declared (what `runner validate` checks needs against)."""
        return _names(self)


@functools.cache
def _names(capabilities: Capabilities) -> frozenset[str]:
    """Once per distinct declaration (validation asks for each task's kinds)."""
    return frozenset(f.name for f in fields(capabilities) if getattr(capabilities, f.name))


class MissingColumn(TerminalError):
    """A read names a column the source does not have; `known` lists the columns it has."""

    def __init__(self, message: str, known: list[str]):
        super().__init__(message)
        self.known = known


@dataclass
class ReadStream:
    """What a reader hands the writer: the columns, then the rows in bounded batches.

    With a watermark, `pointer` follows the batches: the highest value of the watermark
    column among the rows yielded so far, as the source's driver returned it (so it compares
    in the source exactly as the column does)."""

    columns: list[Column]
    batches: Iterator[Batch]
    pointer: Any = None


@dataclass(frozen=True)
class Watermark:
    """Read rows whose `column` is at or past `since` (all rows when None), in its order.
    Rows with NULL in the column are read every time: they cannot be placed past a pointer.
    With `until` (a backfill's window), only rows before it, and none with NULL."""

    column: str
    since: Any = None
    until: Any = None


@dataclass(frozen=True)
class Copy:
    """What a target's writer may copy from inside the databases: the task's source and the
    pair's fast path (`runner.transfer`), which the target's writer knows how to drive."""

    source: Source
    path: Any


@dataclass(frozen=True)
class History:
    """History mode for a writer (`write.history`): the version columns' names and this run's
    one timestamp, which starts every version the run opens and ends every version it closes."""

    valid_from: str
    valid_to: str
    current: str
    at: dt.datetime  # naive UTC

    def names(self) -> list[str]:
        return [self.valid_from, self.valid_to, self.current]


@dataclass
class DiscoveredColumn:
    name: str
    type: str | None  # runner's neutral type (`decimal(12,2)`), None when runner cannot map it
    declared: str  # as the database declares it


@dataclass
class DiscoveredTable:
    """A table of a source's catalog: what `runner discover` lists and a `sync_all` job expands."""

    schema: str | None  # as asked for (None: the connection's default)
    name: str
    columns: list[DiscoveredColumn]
    primary_key: list[str]

    @property
    def ref(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name


@dataclass
class TableEvolution:
    """What a writer may change in its target table as the source's columns change, handed to
    `open_writer` (a target with `alter_tables`), and what it did: the schema changes it made
    (or, in a dry run, would make) and the strings it cut, per column."""

    settings: TableChanges
    known: list[dict[str, Any]] | None = None  # the source's columns at the last run (`Tasks.source_columns`)
    dry_run: bool = False
    not_null: set[str] | None = None  # the source's NOT NULL columns now (None: unknown)
    note: Callable[..., None] = lambda level, message, **fields: None  # the run log, for this task
    changes: list[dict[str, Any]] = field(default_factory=list)
    truncated: dict[str, int] = field(default_factory=dict)

    @staticmethod
    def known_columns(columns: list[Column], not_null: set[str] | None) -> list[dict[str, Any]]:
        """The source's columns as the task state keeps them, for `known` at the next run."""
        return [
            {"name": c.name, **{k: v for k, v in asdict(c.type).items() if v is not None}}
            | ({"not_null": True} if not_null and c.name in not_null else {})
            for c in columns
        ]

    @staticmethod
    def known_type(entry: dict[str, Any]) -> ColumnType:
        """A type of `known` back as a `ColumnType`."""
        return ColumnType(entry["kind"], entry.get("length"), entry.get("precision"), entry.get("scale"))


@dataclass(frozen=True)
class WriteContext:
    """Which run writes, for a writer that names what it writes by it (a message's id, its
    template's context) or stops a long render when the run is cancelled."""

    job: str  # namespace/name
    task: str
    run_id: str
    started: dt.datetime  # naive UTC: the run's start
    cancel: CancelToken | None = None
    dry_run: bool = False  # nothing may leave the runner: a writer without a transaction sends nothing
    log: Callable[..., None] | None = None  # the run log (level, message, **fields): what a writer skips


@dataclass
class MergeCounts:
    inserted: int = 0
    updated: int = 0
    upserted: int = 0  # through an upsert script: inserted or updated, the script knows


# --- the protocols every kind implements -------------------------------------------------


class Endpoint(Protocol):
    """What both ends of a task are: a named connection of a kind with its capabilities."""

    name: str
    capabilities: ClassVar[Capabilities]

    @property
    def kind(self) -> str:
        """The connection's type (two ends of one kind may use what only that kind computes)."""
        ...

    def check_connection(self) -> None: ...

    def close(self) -> None: ...


class Source(Endpoint, Protocol):
    def read(
        self,
        spec: ReadSpec,
        batch_size: int,
        watermark: Watermark | None = None,
        select: list[str] | None = None,
        limit: int | None = None,
    ) -> ReadStream:
        """Stream a table (only the `select` columns, when given), at most `limit` rows, in
        batches of at most `batch_size` rows; memory stays within a few batches."""
        ...

    def highest(self, spec: ReadSpec, column: str) -> Any:
        """The highest value of `column`, as `ReadStream.pointer` has it; None when none."""
        ...

    def not_null_columns(self, spec: ReadSpec) -> set[str] | None:
        """The columns of a read table declared NOT NULL; None where unknown (a query, a kind
        without such declarations): what `schema_changes` compares between runs."""
        ...


@dataclass(frozen=True)
class KeySpan:
    """A span [low, high) of a single integer key; None leaves that side open (a split copy's
    first and last ranges, so every key there is, and every key a target row has, is in one)."""

    low: int | None
    high: int | None

    def contains(self, key: Any) -> bool:
        return (self.low is None or key >= self.low) and (self.high is None or key < self.high)

    def sql(self, column: str) -> str:
        """The span as a SQL condition on `column` (quoted); its bounds are integers, inlined."""
        parts = [f"{column} >= {int(self.low)}"] if self.low is not None else []
        parts += [f"{column} < {int(self.high)}"] if self.high is not None else []
        return " AND ".join(parts) or "1 = 1"


class Writer(Protocol):
    """One open transaction of a target: rows are staged and merged (or, for a writer that
    does not merge, written as they are staged), keys staged and deleted; `commit` ends the
    transaction and begins the next, `close` rolls back whatever is not committed."""

    merges: ClassVar[bool]  # a `MergeWriter` (the target merges); False: a script's, a broker's
    key_columns: list[Column]  # the key columns, in `write.keys` order: what `stage_keys` takes

    def stage(self, batch: Batch) -> None: ...

    def merge(self) -> MergeCounts: ...

    def clear_stage(self) -> None: ...

    def open_key_stage(self) -> None: ...

    def stage_keys(self, keys: Batch) -> None: ...

    def delete_listed(self) -> int:
        """Delete (or soft-delete) the target rows whose keys were staged."""
        ...

    def commit(self) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc: object) -> None: ...


class MergeWriter(Writer, Protocol):
    """A writer of a kind with `native_merge`: the target merges staged rows by key, replaces a
    keyless table, and deletes the keys missing from a stage."""

    empty_at_start: bool  # the target held no row when the writer opened

    def truncate(self) -> int: ...

    def insert(self, batch: Batch) -> None: ...

    def narrow(self, within: KeySpan) -> None:
        """This writer writes only keys `within` the span (a split copy's range, which no other
        writer writes meanwhile): it counts as empty at start when no target row is there."""
        ...

    def delete_missing(self, from_stage: str = STAGE, within: KeySpan | None = None) -> int:
        """Delete (or soft-delete) target rows whose key is not in `from_stage` (and, `within`
        given, lies in that span of the single integer key: a split copy's range)."""
        ...

    def copy_from(
        self, spec: ReadSpec, into: str, where: str = "", progress: Callable[[int], None] | None = None
    ) -> int | None:
        """Copy the source's rows into `into` inside the databases; None when the pair cannot."""
        ...

    def copies_straight_in(self) -> bool:
        """Whether `copy_from` may copy a whole keyed read into the table itself, unmerged."""
        ...

    def staged_highest(self, column: str) -> Any:
        """The highest value of `column` among the staged rows; None when none has one."""
        ...


class Target(Endpoint, Protocol):
    def open_writer(
        self,
        table: str,
        columns: list[Column],
        keys: list[str] | None = None,
        soft_delete_column: str | None = None,
        copy: Copy | None = None,
        history: History | None = None,
        evolve: TableEvolution | None = None,
    ) -> MergeWriter:
        """A writer into `table` (created when missing) holding one open transaction; with
        `copy`, it may copy from the source inside the databases (`MergeWriter.copy_from`);
        with `history` (a kind with `history`), it keeps every version of a row; with `evolve`
        (a kind with `alter_tables`), it makes the table follow the source's columns before its
        transaction begins."""
        ...

    def table_exists(self, table: str) -> bool:
        """Whether `table` exists (a dry run must not create it)."""
        ...

    def batch_encoder(self, columns: list[Column], keys: Sequence[int] = ()) -> Callable[[Batch], Batch]:
        """Canonical rows -> rows as this target takes them; a value it cannot hold fails
        naming its row (by the `keys` columns) and column."""
        ...


# --- capability protocols: the methods behind each capability ----------------------------


class TableDDL(Protocol):  # `alter_tables`, as target: its table changes are SQL it can show
    def create_table_ddl(
        self,
        table: str,
        columns: list[Column],
        keys: list[str] | None = None,
        soft_delete_column: str | None = None,
        history: History | None = None,
    ) -> list[str]:
        """The statements a writer would create the missing `table` with (a dry run's report)."""
        ...


class TableLifecycle(Protocol):  # `table_lifecycle`, as target
    def truncate_table(self, table: str) -> int:
        """Delete every row of `table` (when it exists), committed; returns how many."""
        ...

    def drop_table(self, table: str) -> bool:
        """Drop `table` (when it exists), committed; returns whether it existed."""
        ...


class QuerySource(Source, Protocol):  # `query`
    def read_query(self, sql: str, types: list[ColumnType], batch_size: int) -> Iterator[Batch]:
        """Stream the rows of a user's query whose columns have the given types."""
        ...

    def indexed(self, table: str, column: str) -> bool | None:
        """Whether an index of `table` has `column` first; None when it is not a table."""
        ...


class KeyLookup(Source, Protocol):  # `key_lookup`
    def read_by_keys(
        self, spec: ReadSpec, columns: list[Column], keys: list[str], values: list[tuple]
    ) -> Batch:
        """The rows whose keys are among `values` (raw, as `read_digests` gave them)."""
        ...


class DigestSource(Source, Protocol):  # `digests`
    def read_digests(
        self, spec: ReadSpec, columns: list[Column], keys: list[str], batch_size: int, with_rows: bool
    ) -> Iterator[Batch]:
        """Stream `(key_hash, row_hash, *raw key values[, *row])` ordered by key_hash (ASCII),
        the digests computed in the source; `with_rows` adds the decoded row."""
        ...

    def batch_decoder(self, columns: list[Column]) -> Callable[[Batch], Batch]:
        """Raw values (the keys `read_digests` gives) -> canonical values."""
        ...


class CatalogSource(Source, Protocol):  # `catalog`
    def tables(self, schema: str | None = None) -> list[DiscoveredTable]:
        """The tables of `schema` (default: the connection's own), sorted by name, each with
        its columns in order, their types as runner maps them, and its primary key.

        Raises:
            TerminalError: the schema does not exist (naming the ones that do).
        """
        ...


class Snapshots(Protocol):  # `snapshot`
    def snapshot(self) -> AbstractContextManager[object]:
        """While the block runs, every read of this connector sees one snapshot of the source,
        so that two reads (a copy, then its rows' digests) describe the same rows."""
        ...


class KeyBuckets(Protocol):  # `key_buckets`, as source (and the target's kind for its hashes)
    def key_range(self, spec: ReadSpec, key: str, where: str = "") -> tuple[int | None, int | None]:
        """min and max of an integer key (`VerifyQueries.key_range`)."""
        ...

    def key_buckets(
        self,
        spec: ReadSpec,
        key: str,
        width: int,
        native: bool = False,
        taken: Callable[[], None] | None = None,
    ) -> dict[int, BucketDigest]: ...

    def snapshot_sql(self, table: str = "") -> list[str] | None: ...

    def read_key_buckets(
        self, spec: ReadSpec, key: str, width: int, buckets: list[int], batch_size: int
    ) -> Iterator[Batch]: ...

    def find_keys(
        self, spec: ReadSpec, key: str, values: Sequence[int] = (), ranges: Sequence[tuple[int, int]] = ()
    ) -> set[int]: ...

    def native_key_hash(self, column: str) -> str | None: ...

    def native_key_hashes(self, keys: Sequence[int]) -> dict[int, int]: ...


class KeyBucketWriter(MergeWriter, Protocol):  # `key_buckets`, as target
    def target_buckets(self, width: int, native: bool = False) -> dict[int, BucketDigest]: ...

    def new_key_buckets(self, width: int, native: bool = False) -> dict[int, BucketDigest]: ...

    def merge_noting_new(
        self, width: int, native: bool = False
    ) -> tuple[MergeCounts, dict[int, BucketDigest]]: ...

    def find_keys(self, values: Sequence[int] = (), ranges: Sequence[tuple[int, int]] = ()) -> set[int]: ...

    def delete_keys(self, values: list[int]) -> int: ...

    def copy_key_buckets(self, spec: ReadSpec, width: int, buckets: list[int]) -> int | None: ...

    def delete_missing_in_buckets(self, width: int, buckets: list[int]) -> int: ...


@dataclass(frozen=True)
class RowDigest:
    """How a database sums up the hashes of a bucket's rows (`Verifiable.row_digest`): what
    hash (`native`: the kind's own; `md5`: of the row's text) and the aggregates adding them
    up, each with the bits its partial sum is shifted left by."""

    hash: str  # native | md5 | canonical
    sums: list[tuple[str, int]]
    prepare: Callable[[Any], None] | None = field(default=None, compare=False)  # on the DBAPI connection


class Verifiable(Protocol):  # `verify`, both ends
    def quote(self, name: str) -> str: ...

    def column_types(self, spec: ReadSpec) -> list[Column]:
        """The columns of a table or query as a read gives them."""
        ...

    def key_range(self, spec: ReadSpec, key: str, where: str = "") -> tuple[int | None, int | None]:
        """min and max of an integer key over the rows `where` allows."""
        ...

    def row_digest(self, names: list[str], columns: list[Column], hash: str) -> RowDigest | None:
        """The aggregates of a row hash (`native`, `md5` or `canonical`), or None."""
        ...

    def row_buckets(
        self, spec: ReadSpec, key: str, width: int, digest: RowDigest, where: str = ""
    ) -> dict[int, tuple[int, int]]:
        """Per bucket of an integer key: the rows' count and sum of row hashes."""
        ...

    def read_in_key_order(
        self,
        spec: ReadSpec,
        columns: list[Column],
        keys: list[Column],
        batch_size: int,
        where: str = "",
        ranges: Sequence[tuple[int, int]] = (),
    ) -> Iterator[Batch]:
        """Rows ordered by the keys (text byte-wise), optionally only in integer key ranges."""
        ...

    def table_exists(self, table: str) -> bool: ...


class InDatabaseCompare(Protocol):  # `in_database_compare`, both ends
    def quote(self, name: str) -> str: ...

    def row_hash(self, names: list[str], columns: list[Column]) -> tuple[str, ColumnType] | None:
        """A row hash every database of this kind computes alike; None when it has none."""
        ...

    def any_of_sql(self, column: str, values: list[int]) -> str: ...


class ComparingWriter(MergeWriter, Protocol):  # `in_database_compare`, the target's writer
    narrowed: tuple[int, int] | None

    def copy_digests(self, spec: ReadSpec) -> int | None: ...

    def find_changed(self) -> int: ...

    def changed_keys(self, after: int, limit: int) -> list[tuple]: ...

    def delete_gone(self) -> int: ...


class RowWriter:
    """What every writer of a write the target does not merge shares (scripts, messages, files):
    the strategies drive it as they drive a merge, but "staged" rows are written at once
    (`write_rows`) and "staged" keys deleted at once (`write_keys`), each counted, the rows as
    upserted (inserted or updated: such a writer cannot tell)."""

    merges: ClassVar[bool] = False
    pending = 0
    deleted = 0
    copy: Copy | None = None  # the source and the pair's fast path, where `write_arrow` may use it

    def write_rows(self, batch: Batch) -> int:
        """Write the changed rows; how many were written."""
        raise NotImplementedError

    def write_arrow(self, batches: Iterator[Any]) -> int | None:
        """Write a whole read given as Arrow record batches (`FastPath.arrow`) as changed rows;
        how many, or None when this writer does not take Arrow (nothing written then)."""
        return None

    def write_keys(self, keys: Batch) -> int:
        """Write (delete) the deleted keys, in `write.keys` order; how many."""
        raise NotImplementedError

    def stage(self, batch: Batch) -> None:
        self.pending += self.write_rows(batch)

    def merge(self) -> MergeCounts:
        counts, self.pending = MergeCounts(upserted=self.pending), 0
        return counts

    def clear_stage(self) -> None:
        pass

    def open_key_stage(self) -> None:
        self.deleted = 0

    def stage_keys(self, keys: Batch) -> None:
        self.deleted += self.write_keys(keys)

    def delete_listed(self) -> int:
        return self.deleted


class RowTarget(Target, Protocol):  # `scripts` (SQL), or a kind whose every write is unmerged
    def open_row_writer(self, write: WriteModel, columns: list[Column], context: WriteContext) -> Writer:
        """A writer handed each changed row (`stage`) and each deleted key (`stage_keys`) of a
        write the target does not merge (`WriteModel.merged` is false: a SQL task's scripts, a
        message per row), in one open transaction where the target has them; its `commit` is
        where every row handed to it is known to be kept (committed, confirmed)."""
        ...


class Consumer(Protocol):
    """Messages taken from a broker as changes of rows, in arrival order: each batch is a list
    of (`upsert` or `delete`, row in `columns` order; a delete's row holds its key), None once
    the queue is drained or the read's limit reached. Nothing is acknowledged until
    `acknowledge`, which the strategy calls after the target committed what came so far;
    `close` gives back (to the queue) what was not acknowledged."""

    columns: list[Column]
    notice: str | None  # something the run log should say once (an MQTT session made now)

    def next_batch(self) -> list[tuple[str, tuple]] | None: ...

    def set_aside(self) -> list[tuple[str, str]]:
        """(message id, reason) of each message sent to the dead letters since the last call."""
        ...

    def follow(self, max_latency: float) -> None:
        """Go on past a drained queue (a continuous run): `next_batch` gives `[]` when nothing
        came, and a batch at most `max_latency` seconds after it was asked for."""
        ...

    def acknowledge(self) -> None: ...

    def close(self) -> None: ...


class ConsumingSource(Protocol):  # `consume`
    def consume(self, read: ReadModel, batch_size: int) -> Consumer:
        """A consumer of the messages `read` names, in batches of at most `batch_size`."""
        ...

    def waiting(self, read: ReadModel) -> int | None:
        """How many messages wait to be consumed now: a consuming task's lag (`runner tasks`);
        None when the broker cannot say (MQTT)."""
        ...


class StatementRunner(Protocol):  # `statements`
    def run_statements(self, statements: list[str], log: Callable[..., None]) -> list[int]:
        """Run `statements` in order in one transaction, committed after the last; the rows
        each affected (-1 where the driver does not say). Logs each statement as it starts."""
        ...


# --- the base class of the built-in kinds ------------------------------------------------


class Connector(ABC):  # noqa: B024 - the base of kinds whose own bases declare abstract methods
    """One open connection of some kind: a `Source`, a `Target` or both, as its kind's `roles`
    say (`runner.connectors.registry.Kind`). Subclasses implement the protocols of their roles
    and of the `capabilities` they declare."""

    capabilities: ClassVar[Capabilities] = Capabilities()

    def __init__(self, name: str, spec: ConnectionSpec, base_dir: Path):
        self.name = name
        self.spec = spec
        self.base_dir = base_dir

    @property
    def kind(self) -> str:
        return self.spec.type

    def not_null_columns(self, spec: ReadSpec) -> set[str] | None:
        """See `Source.not_null_columns`."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the connection."""

    def check_connection(self) -> None:  # noqa: B027 - optional hook
        """Raise when the system cannot be reached (a file needs no check)."""
