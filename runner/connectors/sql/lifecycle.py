"""A SQL target's tables emptied or dropped before a run (`before_run`, `runner run
--recreate`): one statement in a transaction of its own on a writer's connection (a SQLite
file's writer turn included), committed at once. The caller has recorded in the state store,
before, that the table is to be loaded again (`runner.changes.lifecycle`): MariaDB commits a
DROP by itself, and a run killed right after it must not leave a table that looks loaded."""

from __future__ import annotations

from typing import TYPE_CHECKING

from runner.connectors.sql.transaction import Transaction

if TYPE_CHECKING:
    from runner.connectors.sql.base import SqlConnector


class TableStatement(Transaction):
    """A transaction for one statement on `table`."""

    def __init__(self, connector: SqlConnector, doing: str):
        self.c = connector
        self.doing = doing

    def execute(self, sql: str) -> int:
        """Run `sql`, commit; the rows it touched."""
        with self:
            with self.c.errors(self.doing):
                self.cursor.execute(sql)
                rows = max(self.cursor.rowcount, 0)
            self.commit()
        return rows


def truncate_table(c: SqlConnector, table: str) -> int:
    """Delete every row of `table` when it exists (a DELETE: transactional on every dialect,
    where MariaDB's TRUNCATE would commit by itself); returns how many there were."""
    if not c.table_exists(table):
        return 0
    return TableStatement(c, f"emptying {table}").execute(f"DELETE FROM {c.quote_table(table)}")


def drop_table(c: SqlConnector, table: str) -> bool:
    """Drop `table` when it exists; returns whether it did."""
    if not c.table_exists(table):
        return False
    TableStatement(c, f"dropping {table}").execute(f"DROP TABLE IF EXISTS {c.quote_table(table)}")
    return True
