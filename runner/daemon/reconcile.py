"""Reconciling the folders into the applied state, as `runner apply` does, from the daemon:
never on invalid files (the last applied state stays), and a planned deletion only once the
same deletions are still planned `settle` seconds later, so a file caught between an editor's
delete and write never deletes its job."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from runner import services
from runner.errors import DefinitionsInvalid, RunnerError


class Reconciler:
    def __init__(self, ws: services.Workspace, settle: float, log: Callable[..., Any]):
        self.ws = ws
        self.settle = settle
        self.log = log
        self._held: tuple[list[str], float] | None = None  # planned deletions, since (monotonic)

    def due(self) -> bool:
        """Whether held deletions have settled (then a reconcile applies them)."""
        return self._held is not None and time.monotonic() - self._held[1] >= self.settle

    def seconds_to_due(self) -> float | None:
        return None if self._held is None else self._held[1] + self.settle - time.monotonic()

    def __call__(self) -> None:
        """Plan from the folders and apply, as `runner apply` does; never on invalid files."""
        try:
            plan = services.plan(self.ws)
        except DefinitionsInvalid as exc:
            for problem in exc.problems:
                self.log(
                    "error",
                    "invalid definition: nothing applied, the last applied state stays",
                    problem=str(problem),
                )
            self._held = None
            return
        except RunnerError as exc:
            self.log("error", "cannot plan", error=str(exc))
            return
        if not plan.has_changes and not any(c.moved for c in plan.changes):
            self._held = None
            return
        deletes = sorted(f"{c.kind} {c.ref}" for c in plan.changes if c.action == "delete")
        if deletes:
            if self._held is None or self._held[0] != deletes:
                self._held = (deletes, time.monotonic())
                self.log(
                    "info",
                    "deletion planned: applied if the files still say so",
                    objects=deletes,
                    seconds=self.settle,
                )
                return
            if time.monotonic() - self._held[1] < self.settle:
                return
        self._held = None
        try:
            result = services.apply(self.ws, planned=plan)
        except RunnerError as exc:  # another apply moved the state, or holds the lock: next change
            self.log("warning", "apply not done", error=str(exc))
            return
        summary = plan.summary()
        self.log("info", "applied", revision=result.revision, changed=summary["changed"])
        for line in result.released:  # the slots of cdc tasks deleted
            self.log("warning" if line.startswith("warning") else "info", line)
