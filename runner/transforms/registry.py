"""The transforms by name (a step's `type`): each module binds its step to the columns of the
rows it will be given, once per writer, and hands back the columns it gives and what it does to
a batch. Adding a transform is a module, a model in `runner.definitions.transforms` and a line
here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.registry import Registry
from runner.streams.types import Batch, Column


@dataclass(frozen=True)
class Context:
    """What binding a step needs beyond its columns: where its fields are defined (for errors
    that name them) and the folder secret references are resolved from (a mask's salt)."""

    where: Callable[..., str]  # a field path below the step -> `jobs.d/x.yaml:12:9: spec.tasks[0]...`
    base_dir: Path


@dataclass(frozen=True)
class Bound:
    """A step bound to its input columns: the columns it gives, and a batch's rows through it."""

    columns: list[Column]
    apply: Callable[[Batch], Batch]


Binder = Callable[[Any, list[Column], Context], Bound]

TRANSFORMS: Registry[str, Binder] = Registry(
    "transform",
    {name: f"runner.transforms.{name}" for name in ("compute", "filter", "rename", "drop", "cast", "mask")},
)
