"""Jinja expressions over a row, as `compute` and `filter` evaluate them: compiled once in the
sandbox scripts run in (`runner.definitions.templates`), then called with each row's columns
by name and `row`, the mapping of them all. A name that is no column is an error, not NULL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from runner.definitions.templates import environment
from runner.definitions.transforms import expression_names
from runner.errors import TerminalError
from runner.streams.types import Column, Row
from runner.transforms.rows import index_of, row_error


def compile_row_expression(source: str, columns: list[Column], where: str) -> Callable[[Row], Any]:
    """`source` as a function of a row of `columns`.

    Raises:
        TerminalError: it names a column that is not among them (located at `where`).
    """
    for name in sorted(expression_names(source) - {"row"}):
        index_of(columns, name, where)
    try:
        expression = environment().compile_expression(source, undefined_to_none=False)
    except Exception as exc:  # noqa: BLE001 - validate checked the syntax; a run names it too
        raise TerminalError(f"{where}: invalid expression: {exc}") from None
    names = [c.name for c in columns]

    def evaluate(row: Row) -> Any:
        values = dict(zip(names, row, strict=True))
        try:
            return expression(**values, row=values)
        except Exception as exc:  # noqa: BLE001 - any failure of a user's expression, located
            raise row_error(where, "the expression", exc, row) from None

    return evaluate
