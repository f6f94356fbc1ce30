"""One transaction on a SQL target's connection, opened and closed as a context: what every
SQL writer (the merge, the scripts) shares."""

from __future__ import annotations

from contextlib import suppress
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runner.connectors.base import History
    from runner.connectors.sql.base import SqlConnector
    from runner.connectors.sql.fastpath import FastPath
    from runner.streams.types import Column, ColumnType


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


class WriterState:
    """What a SQL writer holds, named once for the concerns it is split into (the merge, the
    in-target compare, the diagnosis): `SqlWriter` sets each in its constructor and `open`."""

    c: SqlConnector
    cursor: Any
    dbapi: Any
    table: str
    target: str
    columns: list[Column]
    keys: list[str]
    key_columns: list[Column]
    soft: str | None
    source: Any
    fast: FastPath | None
    target_types: dict[str, ColumnType | None]
    digests: str | None
    narrowed: tuple[int, int] | None
    empty_at_start: bool
    history: History | None  # history mode (`history_mode`)
    q: Any  # quotes a name (the connector's `quote`)

    def live_sql(self, alias: str = "") -> str:
        """The condition on the target's rows that the source is compared with: not
        soft-deleted, or in history mode current versions only; "" for every row."""
        at = f"{alias}." if alias else ""
        if self.history is not None:
            return f"{at}{self.q(self.history.valid_to)} IS NULL"
        return f"{at}{self.q(self.soft)} IS NULL" if self.soft else ""
