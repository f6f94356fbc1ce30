"""The reader/writer interface every connection type implements, and its SQL base class.

A `Connector` is one open connection: `read` streams a table or query as batches of tuples
with dialect-neutral column types; `replace` writes batches into a table in one transaction.
`SqlConnector` implements both over a DBAPI connection from SQLAlchemy; a dialect module only
says how to name its types, find a table's or query's columns, and convert values its driver
does not convert itself. Values between reader and writer are "canonical" Python values:
int, Decimal, float, str, bool, date, time, datetime (naive = UTC), timedelta (a duration),
bytes, UUID, and parsed JSON (dict, list, ...).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from runner.definitions.models import ConnectionSpec
from runner.definitions.tasks import ReadSpec
from runner.errors import TerminalError
from runner.streams.types import Column, ColumnType

if TYPE_CHECKING:
    from runner.connectors.sql.scripts import ScriptWriter
    from runner.connectors.sql.writer import SqlWriter

from runner.streams.types import Batch


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
    Rows with NULL in the column are read every time: they cannot be placed past a pointer."""

    column: str
    since: Any = None


class Connector(ABC):
    """One open connection of some type; reader and writer of that type."""

    copy_while_reading: ClassVar[bool] = True  # a writer may copy_from while a batch reader is open

    def __init__(self, name: str, spec: ConnectionSpec, base_dir: Path):
        self.name = name
        self.spec = spec
        self.base_dir = base_dir

    @abstractmethod
    def read(
        self,
        spec: ReadSpec,
        batch_size: int,
        watermark: Watermark | None = None,
        select: list[str] | None = None,
        limit: int | None = None,
    ) -> ReadStream:
        """Stream a table or query (only the `select` columns, when given), at most `limit`
        rows. Memory stays within a few batches whatever its size."""

    @contextmanager
    def snapshot(self) -> Iterator[bool]:
        """While the block runs, every read of this connector sees one snapshot of the source
        (yields True), so that two reads (a copy, then its rows' digests) describe the same
        rows; yields False where the system cannot share one between connections."""
        yield False

    @abstractmethod
    def read_digests(
        self, spec: ReadSpec, columns: list[Column], keys: list[str], batch_size: int, with_rows: bool
    ) -> Iterator[Batch]:
        """Stream `(key_hash, row_hash, *raw key values[, *row])` ordered by key_hash (ASCII),
        the digests computed in the source; `with_rows` adds the decoded row."""

    @abstractmethod
    def read_by_keys(
        self, spec: ReadSpec, columns: list[Column], keys: list[str], values: list[tuple]
    ) -> Batch:
        """The rows whose keys are among `values` (raw, as `read_digests` gave them)."""

    @abstractmethod
    def highest(self, spec: ReadSpec, column: str) -> Any:
        """The highest value of a table's or query's `column`, as `ReadStream.pointer` has it
        (as the driver returns it: its type and zone kept), None when it has none."""

    @abstractmethod
    def read_query(self, sql: str, types: list[ColumnType], batch_size: int) -> Iterator[Batch]:
        """Stream the rows of a user's query whose columns have the given types."""

    @abstractmethod
    def open_writer(
        self,
        table: str,
        columns: list[Column],
        keys: list[str] | None = None,
        soft_delete_column: str | None = None,
        source: Connector | None = None,
    ) -> SqlWriter:
        """A writer into `table` (created when missing) holding one open transaction; with
        `source`, it may copy from it inside the databases (`SqlWriter.copy_from`)."""

    @abstractmethod
    def open_script_writer(
        self,
        table: str,
        columns: list[Column],
        keys: list[str],
        upsert_script: str,
        delete_script: str | None,
    ) -> ScriptWriter:
        """A writer running a task's Jinja upsert/delete scripts, in one open transaction."""

    @abstractmethod
    def batch_decoder(self, columns: list[Column]) -> Callable[[Batch], Batch]:
        """Rows as the driver returns them -> canonical rows."""

    @abstractmethod
    def table_exists(self, table: str) -> bool:
        """Whether `table` exists (a dry run must not create it)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the connection."""

    def check_connection(self) -> None:  # noqa: B027 - optional hook
        """Raise when the system cannot be reached (a file needs no check)."""
