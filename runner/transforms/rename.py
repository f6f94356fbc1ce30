"""`rename`: columns given new names; values and order stay, so rows pass untouched."""

from __future__ import annotations

from dataclasses import replace

from runner.definitions.transforms import Rename
from runner.errors import TerminalError
from runner.streams.types import Column
from runner.transforms.registry import TRANSFORMS, Bound, Context
from runner.transforms.rows import index_of


def bind(spec: Rename, columns: list[Column], ctx: Context) -> Bound:
    out = list(columns)
    for old, new in spec.columns.items():
        i = index_of(columns, old, ctx.where("columns", old))
        out[i] = replace(columns[i], name=new)
    names = [c.name for c in out]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise TerminalError(f"{ctx.where('columns')}: after the rename, {twice[0]!r} names two columns")
    return Bound(out, lambda batch: batch)


TRANSFORMS.register("rename", bind)
