"""`drop`: columns left out of what the target gets."""

from __future__ import annotations

from runner.definitions.transforms import Drop
from runner.streams.types import Batch, Column
from runner.transforms.registry import TRANSFORMS, Bound, Context
from runner.transforms.rows import index_of


def bind(spec: Drop, columns: list[Column], ctx: Context) -> Bound:
    gone = {index_of(columns, name, ctx.where("columns", i)) for i, name in enumerate(spec.columns)}
    kept = [i for i in range(len(columns)) if i not in gone]

    def apply(batch: Batch) -> Batch:
        return [tuple(row[i] for i in kept) for row in batch]

    return Bound([columns[i] for i in kept], apply)


TRANSFORMS.register("drop", bind)
