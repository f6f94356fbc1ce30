"""Jinja upsert and delete scripts (DataZen's UpsertScript / DeleteScript), safely.

A script renders the *structure* of one SQL statement, once per batch, in Jinja's sandbox:
identifiers go through the `ident` filter (always quoted, quotes escaped) and each value is a
`bind('column')` placeholder. The batch's rows then travel as bound parameters of that one
statement (executemany), so no value is ever spliced into SQL, whatever it holds.

Context of a script: `table` (the target table, quoted), `columns`, `keys`, `values` (column
names: all, the keys, the others), `bind(name)` and the filter `ident`.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from runner.connectors.base import RowWriter
from runner.connectors.sql.transaction import Transaction
from runner.definitions.templates import RENDER_SECONDS, RenderBudget, TemplateLimit, environment
from runner.errors import TerminalError
from runner.streams.types import Column

if TYPE_CHECKING:
    from runner.connectors.sql.base import SqlConnector
    from runner.streams.cancel import CancelToken
    from runner.streams.types import Batch


class SqlScript:
    """One script, compiled once, rendered per batch for a target connector."""

    def __init__(self, source: str, what: str):
        from jinja2 import TemplateError

        self.what = what
        self.env = environment()
        try:
            self.template = self.env.from_string(source)
        except TemplateError as exc:
            raise TerminalError(f"{what}: {exc}") from None

    def render(
        self,
        connector: SqlConnector,
        table: str,
        columns: list[str],
        keys: list[str],
        cancel: CancelToken | None = None,
        seconds: float = RENDER_SECONDS,
    ) -> tuple[str, list[str]]:
        """The SQL of one statement and the column names its placeholders stand for, in order.
        The render is bounded in time and size, and stops when `cancel` is set.

        Raises:
            TerminalError: the script fails, or asks for more time or room than allowed.
            Cancelled: the run was cancelled meanwhile.
        """
        from jinja2 import TemplateError

        order: list[str] = []

        def bind(name: str) -> str:
            if name not in columns:
                raise TerminalError(
                    f"{self.what}: bind({name!r}) names no column (columns: {', '.join(columns)})"
                )
            order.append(name)
            return connector.mark

        self.env.filters["ident"] = connector.quote
        budget = RenderBudget(self.what, cancel, seconds)
        tracer = sys.gettrace()
        sys.settrace(budget.trace)
        try:
            parts = self.template.generate(
                table=connector.quote_table(table),
                columns=columns,
                keys=keys,
                values=[c for c in columns if c not in keys],
                bind=bind,
            )
            sql = "".join(budget.chunks(parts))
        except (TemplateError, TemplateLimit) as exc:
            raise TerminalError(f"{self.what}: {exc}") from None
        finally:
            sys.settrace(tracer)
        return sql.strip().rstrip(";"), order


class ScriptWriter(RowWriter, Transaction):
    """Writes batches through a task's scripts in one open transaction of the target. It does
    not merge (`merges`): every row staged goes through the upsert script at once."""

    def __init__(
        self,
        connector: SqlConnector,
        table: str,
        columns: list[Column],
        keys: list[str],
        upsert_script: str,
        delete_script: str | None,
        cancel: CancelToken | None = None,
    ):
        self.c = connector
        self.cancel = cancel
        self.table = table
        self.columns = columns
        self.names = [c.name for c in columns]
        self.keys = keys
        by_name = {c.name: c for c in columns}
        self.key_columns = [by_name[k] for k in keys if k in by_name]  # in `keys` order, as staged
        self.encode = connector.batch_encoder(columns, [self.names.index(k) for k in keys if k in self.names])
        self.encode_keys = connector.batch_encoder(self.key_columns, range(len(self.key_columns)))
        self.upsert = SqlScript(upsert_script, "write.upsert_script")
        self.delete = SqlScript(delete_script, "write.delete_script") if delete_script else None
        self.doing = f"running the scripts of {table}"

    def open(self) -> ScriptWriter:
        """The transaction, with the target table created when missing, as for runner's merge
        (a primary key on the keys, which an upsert's ON CONFLICT needs)."""
        with self.c.errors(self.doing):
            self.connect()
            self.create_schema(self.table)
            self.begin()
            self.cursor.execute(self.c.create_table_sql(self.table, self.columns, self.keys))
        return self

    def _run(self, script: SqlScript, names: list[str], rows: Batch) -> int:
        if not rows:
            return 0
        sql, order = script.render(self.c, self.table, names, self.keys, self.cancel)
        index = [names.index(n) for n in order]
        with self.c.errors(self.doing):
            self.cursor.executemany(sql, [tuple(row[i] for i in index) for row in rows])
        return len(rows)

    # "Staged" rows go through the upsert script at once, "staged" keys through the delete script.

    def write_rows(self, batch: Batch) -> int:
        return self._run(self.upsert, self.names, self.encode(batch))

    def write_keys(self, keys: Batch) -> int:
        assert self.delete is not None
        return self._run(self.delete, self.keys, self.encode_keys(keys))
