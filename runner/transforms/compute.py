"""`compute`: a column set from each row by a Jinja expression, cast to its stated type; a new
column is added after the others, one of the row's is replaced in place."""

from __future__ import annotations

from dataclasses import replace

from runner.definitions.transforms import Compute
from runner.streams.types import Batch, Column
from runner.transforms.cast import caster, to_type
from runner.transforms.expressions import compile_row_expression
from runner.transforms.registry import TRANSFORMS, Bound, Context
from runner.transforms.rows import index_of, row_error


def bind(spec: Compute, columns: list[Column], ctx: Context) -> Bound:
    if spec.sql is not None:
        return _in_read(spec, columns, ctx)
    assert spec.expression is not None
    evaluate = compile_row_expression(spec.expression, columns, ctx.where("expression"))
    to = to_type(spec.to or "text")
    convert = caster(to)
    names = [c.name for c in columns]
    at = names.index(spec.column) if spec.column in names else None
    out = list(columns)
    if at is None:
        out.append(Column(spec.column, to))
    else:
        out[at] = replace(columns[at], type=to, unmapped=None)
    where = ctx.where("to")

    def value(row: tuple) -> object:
        result = evaluate(row)
        if result is None:
            return None
        try:
            return convert(result)
        except (ValueError, TypeError, ArithmeticError) as exc:
            raise row_error(where, f"the computed value's cast to {to}", exc, [result, *row]) from None

    def apply(batch: Batch) -> Batch:
        if at is None:
            return [(*row, value(row)) for row in batch]
        return [(*row[:at], value(row), *row[at + 1 :]) for row in batch]

    return Bound(out, apply)


def _in_read(spec: Compute, columns: list[Column], ctx: Context) -> Bound:
    """A column the source computed in its read (`sql`): there already, cast to `to` if given."""
    at = index_of(columns, spec.column, ctx.where("sql"))
    if spec.to is None:
        return Bound(columns, lambda batch: batch)
    to = to_type(spec.to)
    convert, where = caster(to), ctx.where("to")
    out = [*columns[:at], replace(columns[at], type=to, unmapped=None), *columns[at + 1 :]]

    def apply(batch: Batch) -> Batch:
        rows = []
        for row in batch:
            value = row[at]
            if value is not None:
                try:
                    value = convert(value)
                except (ValueError, TypeError, ArithmeticError) as exc:
                    raise row_error(where, f"the computed value's cast to {to}", exc, row) from None
            rows.append((*row[:at], value, *row[at + 1 :]))
        return rows

    return Bound(out, apply)


TRANSFORMS.register("compute", bind)
