"""The change strategies by name: what `changes.strategy` may say. Each is one module with a
`run(TaskRun)`; adding one is a module and a line here."""

from __future__ import annotations

from collections.abc import Callable

from runner.changes.full import run_full
from runner.changes.hash import run_hash
from runner.changes.task import TaskRun
from runner.changes.watermark import run_watermark
from runner.registry import Registry

Strategy = Callable[[TaskRun], None]

STRATEGIES: Registry[str, Strategy] = Registry("change strategy")
STRATEGIES.register("full", run_full)
STRATEGIES.register("watermark", run_watermark)
STRATEGIES.register("hash", run_hash)
