"""The SQL writer's side of a fast path: how rows move from a source into a target inside the
databases, never through Python. The paths themselves live in `runner.transfer`, one module
per (source kind, target kind) pair; a pair without one copies in batches. A method a path
does not implement answers None (not for this pair or these columns)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from runner.connectors.base import Source
from runner.definitions.tasks import ReadSpec
from runner.streams.types import Column, ColumnType

if TYPE_CHECKING:
    from runner.connectors.sql.base import SqlConnector


class FastPath:
    """A pair's copies inside the databases; `target` is the writer's connector, `cursor` its
    open transaction's."""

    packs = False  # `copy_packed`: rows the source computes (digests, keys), copied packed

    def prepare(self, target: SqlConnector, dbapi: Any, source: Source) -> None:
        """Before a writer's transaction: what `copy` needs (SQLite attaches the source)."""

    def copy(
        self,
        target: SqlConnector,
        cursor: Any,
        source: Source,
        spec: ReadSpec,
        columns: list[Column],
        into: str,
        targets: list[ColumnType],
        where: str = "",
        progress: Callable[[int], None] | None = None,
    ) -> int | None:
        """Copy the source's `columns` (of its rows matching `where`, a condition in the
        source's SQL) into `into` (whose columns have the types `targets`), no row through
        Python; None when these columns cannot. A copy in pieces tells `progress` the rows
        copied so far after each."""
        return None

    def copy_packed(
        self,
        target: SqlConnector,
        cursor: Any,
        source: Source,
        exprs: list[str],
        from_sql: str,
        columns: list[Column],
        into: str | None,
        meanwhile: Callable[[], None] | None = None,
    ) -> int | None:
        """Insert the source's `SELECT exprs FROM from_sql` into `columns` of `into` (the
        source computes `exprs`), or with `into` None keep them where `packed_sql` reads them;
        None when this pair cannot. `meanwhile` runs on the target while the source computes."""
        return None

    def arrow(self, source: Source, spec: ReadSpec, columns: list[Column]) -> Iterator[Any] | None:
        """The source's rows of `columns` as Arrow record batches, read and converted inside
        the source database and Arrow (no row through Python), for a target that writes Arrow
        (Parquet files); None when these columns cannot be."""
        return None

    def packed_sql(self, target: SqlConnector, columns: list[Column]) -> str:
        """A derived table of the rows the last `copy_packed(into=None)` kept."""
        raise NotImplementedError
