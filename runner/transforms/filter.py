"""`filter`: rows kept or dropped, by a Jinja expression over the row (true matches) or by a
regular expression searched in one column's text (NULL never matches). The rows dropped are
counted in the task's result (`filtered`) and its run log line."""

from __future__ import annotations

import re

from runner.definitions.transforms import Filter
from runner.streams.types import Batch, Column
from runner.transforms.expressions import compile_row_expression
from runner.transforms.registry import TRANSFORMS, Bound, Context
from runner.transforms.rows import index_of


def bind(spec: Filter, columns: list[Column], ctx: Context) -> Bound:
    keep = spec.keep
    if spec.expression is not None:
        evaluate = compile_row_expression(spec.expression, columns, ctx.where("expression"))

        def apply(batch: Batch) -> Batch:
            return [row for row in batch if bool(evaluate(row)) == keep]

        return Bound(columns, apply)
    assert spec.column is not None and spec.regex is not None
    i = index_of(columns, spec.column, ctx.where("column"))
    search = re.compile(spec.regex).search

    def matches(value: object) -> bool:
        if value is None:
            return False
        text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
        return search(text) is not None

    def apply_regex(batch: Batch) -> Batch:
        return [row for row in batch if matches(row[i]) == keep]

    return Bound(columns, apply_regex)


TRANSFORMS.register("filter", bind)
