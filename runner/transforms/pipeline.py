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
    rows a filter drops are deleted from the target at once: for a stream of changes (messages,
    a log), where an update that stops passing the filter must take its row out of the target.
    Each key comes once in a stage there, so the delete never meets a row staged beside it."""

    def __init__(self, inner: Any, pipeline: Pipeline, counts: Any, delete_keys: list[int] | None = None):
        object.__setattr__(self, "inner", inner)
        object.__setattr__(self, "pipeline", pipeline)
        object.__setattr__(self, "counts", counts)
        object.__setattr__(self, "delete_keys", delete_keys)
        names = [c.name for c in pipeline.columns]
        source = [c.name for c in pipeline.source_columns]
        out_keys = [names.index(source[i]) for i in delete_keys or []]
        object.__setattr__(self, "out_keys", out_keys)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def __setattr__(self, name: str, value: Any) -> None:  # `empty_at_start`, set by a strategy
        setattr(self.inner, name, value)

    def _through(self, batch: Batch) -> Batch:
        rows = self.pipeline.apply(batch)
        self.counts.filtered += len(batch) - len(rows)
        return rows

    def stage(self, batch: Batch) -> None:
        rows = self._through(batch)
        if rows:
            self.inner.stage(rows)
        if self.delete_keys and len(rows) < len(batch):
            passed = {tuple(row[i] for i in self.out_keys) for row in rows}
            dropped = [k for row in batch if (k := tuple(row[i] for i in self.delete_keys)) not in passed]
            self.inner.open_key_stage()
            self.inner.stage_keys(dropped)
            self.counts.deleted += self.inner.delete_listed()

    def insert(self, batch: Batch) -> None:
        rows = self._through(batch)
        if rows:
            self.inner.insert(rows)

    def __enter__(self) -> TransformingWriter:
        self.inner.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.inner.__exit__(*exc)
