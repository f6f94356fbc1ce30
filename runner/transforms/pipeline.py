"""A task's transforms bound to the columns its reader gives, and the writer that puts every
row through them before the target sees it.

Every strategy hands its rows to a writer (`stage`, `insert`), so transforming them there
covers every source kind and every strategy, and what the writer creates or evolves in the
target follows the transformed columns. Keys pass by untouched (`runner validate` refuses a
step that would change a key), so staged keys and deleted keys need nothing: a delete carries
keys only, and no step that reads other columns ever sees it. What would pass the rows by (a
copy inside the databases, rows compared inside the target) is not used for a task with
transforms (`TaskRun.writer`, `digests_compared_in_target`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from runner.definitions.transforms import TransformModel
from runner.streams.types import Batch, Column
from runner.transforms.registry import TRANSFORMS, Bound, Context


class Pipeline:
    """The steps bound in order: each one's output columns are the next one's input."""

    def __init__(
        self, steps: list[TransformModel], columns: list[Column], where: Callable[..., str], base_dir: Path
    ):
        self.source_columns = columns
        self.bound: list[Bound] = []
        for i, step in enumerate(steps):
            ctx = Context(lambda *path, i=i: where("transforms", i, *path), base_dir)
            bound = TRANSFORMS.get(step.type)(step, columns, ctx)  # type: ignore[attr-defined]
            self.bound.append(bound)
            columns = bound.columns
        self.columns = columns

    def apply(self, batch: Batch) -> Batch:
        for bound in self.bound:
            if not batch:
                break
            batch = bound.apply(batch)
        return batch


class TransformingWriter:
    """A writer whose staged and inserted rows go through a pipeline first; rows a filter drops
    are added to `counts.filtered`. Everything else is the inner writer's own.

    With `delete_keys` (the key columns' positions in the rows given), the keys of the staged
    rows a filter drops are deleted from the target at once: for strategies that read the
    changed rows (a watermark's read, messages, a log), where a row that stops passing the
    filter must leave the target. Each key comes once in a stage there, so the delete never
    meets a row staged beside it; nothing else holds the writer's key stage meanwhile."""

    def __init__(self, inner: Any, pipeline: Pipeline, counts: Any, delete_keys: list[int] | None = None):
        object.__setattr__(self, "_inner", inner)
        object.__setattr__(self, "_pipeline", pipeline)
        object.__setattr__(self, "_counts", counts)
        object.__setattr__(self, "_delete_at", delete_keys)
        names = [c.name for c in pipeline.columns]
        source = [c.name for c in pipeline.source_columns]
        out_keys = [names.index(source[i]) for i in delete_keys or []]
        object.__setattr__(self, "_out_at", out_keys)

    def __getattr__(self, name: str) -> Any:  # its own attributes start with `_`: none shadows the writer's
        return getattr(self._inner, name)

    def __setattr__(self, name: str, value: Any) -> None:  # `empty_at_start`, set by a strategy
        setattr(self._inner, name, value)

    def _through(self, batch: Batch) -> Batch:
        rows = self._pipeline.apply(batch)
        self._counts.filtered += len(batch) - len(rows)
        return rows

    def stage(self, batch: Batch) -> None:
        rows = self._through(batch)
        if rows:
            self._inner.stage(rows)
        if self._delete_at and len(rows) < len(batch):
            passed = {tuple(row[i] for i in self._out_at) for row in rows}
            dropped = [k for row in batch if (k := tuple(row[i] for i in self._delete_at)) not in passed]
            self._inner.open_key_stage()
            self._inner.stage_keys(dropped)
            self._counts.deleted += self._inner.delete_listed()

    def insert(self, batch: Batch) -> None:
        rows = self._through(batch)
        if rows:
            self._inner.insert(rows)

    def __enter__(self) -> TransformingWriter:
        self._inner.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._inner.__exit__(*exc)
