"""The hash strategy's row digests for a task with transforms: the source's own digest of each
row, combined with a fingerprint of the task's steps. The source digests what it holds, but
the target holds what the steps made of it; with the steps in the digest, a change of the steps
(a new computed column, another filter) changes every digest, and the next run writes every row
through the new steps instead of keeping rows made by the old ones. (A mask's salt is a
reference here: a new salt behind the same reference needs `--resync`.)"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

from runner.connectors.base import Capabilities, Source
from runner.definitions.transforms import TransformModel
from runner.streams.types import Batch, Column


def fingerprint(steps: list[TransformModel]) -> str:
    """The steps as they are defined, hashed."""
    text = json.dumps([s.model_dump(mode="json") for s in steps], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


class StepsInDigests:
    """A source whose row digests (`read_digests`) include the steps' fingerprint; every other
    method is the source's own."""

    def __init__(self, inner: Source, steps: list[TransformModel]):
        self.inner = inner
        self.salt = fingerprint(steps)
        self.capabilities: Capabilities = inner.capabilities

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def read_digests(
        self, spec: Any, columns: list[Column], keys: list[str], batch_size: int, with_rows: bool
    ) -> Iterator[Batch]:
        batches = self.inner.read_digests(spec, columns, keys, batch_size, with_rows)  # type: ignore[attr-defined]
        salt = self.salt
        try:
            for batch in batches:
                yield [(e[0], hashlib.md5(f"{e[1]}:{salt}".encode()).hexdigest(), *e[2:]) for e in batch]
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()
