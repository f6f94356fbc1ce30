"""Runner's own folders and files outside the definitions folder (a history folder or a SQLite
state store placed elsewhere, by `--history`, `RUNNER_HISTORY` or `RUNNER_STATE`), which no
task writes: a file written there could forge a run's record or corrupt the store. The
definitions folder's own (jobs.d/, connections.d/, .runner/) are guarded by the files
connection itself."""

from __future__ import annotations

from pathlib import Path

_GUARDED: set[Path] = set()


def guard(*paths: Path) -> None:
    """No task of this process writes into `paths` from now on."""
    _GUARDED.update(p.resolve() for p in paths)


def guarded() -> frozenset[Path]:
    return frozenset(_GUARDED)
