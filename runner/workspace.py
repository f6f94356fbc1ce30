"""Where definitions, state and history live, and the applied objects found by reference."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from runner.definitions.load import DEFAULT_NAMESPACE
from runner.errors import (
    NotFound,
    StoreMissing,
    StoreOutdated,
)

if TYPE_CHECKING:  # the state store (SQLAlchemy) is imported when first opened: `validate` never is
    from runner.state.objects import AppliedObject
    from runner.state.store import StateReader, StateStore


@dataclass
class Workspace:
    """Where definitions, state and history live. Defaults: the state store is
    `<dir>/.runner/state.db`, history files are under `<dir>/.runner/history/`."""

    root: Path
    state_url: str | None = None
    history_dir: Path | None = None
    _store: StateStore | None = field(default=None, repr=False)
    _reader: StateReader | None = field(default=None, repr=False)

    @classmethod
    def from_env(
        cls, root: str | None = None, state: str | None = None, history_dir: str | None = None
    ) -> Workspace:
        folder = Path(root or os.environ.get("RUNNER_DIR") or ".")
        state = state or os.environ.get("RUNNER_STATE")
        hist = history_dir or os.environ.get("RUNNER_HISTORY")
        return cls(folder, state, Path(hist) if hist else None)

    @property
    def state(self) -> str:
        return self.state_url or f"sqlite:///{(self.root / '.runner' / 'state.db').resolve()}"

    @property
    def history(self) -> Path:
        return self.history_dir or self.root / ".runner" / "history"

    def own_paths(self) -> list[Path]:
        """The history folder and a SQLite state store's files, wherever they are."""
        paths = [self.history]
        if self.state.startswith("sqlite:///"):
            db = Path(self.state.removeprefix("sqlite:///").partition("?")[0])
            paths += [db, *(Path(f"{db}{end}") for end in ("-wal", "-shm", "-journal"))]
        return paths

    def store(self, create: bool = False) -> StateStore:
        """The state store. Only `apply` (and the daemon, which applies) may `create` it, and
        only in a new folder: where runs are in the history a store was expected, and a new
        empty one would run every job from scratch as if it had never run."""
        if self._store is None:
            try:
                self._store = self._existing()
            except StoreMissing as exc:
                if create and not self.has_runs():
                    from runner.state.store import StateStore

                    self._store = StateStore(self.state)
                elif create:
                    raise StoreMissing(
                        f"{exc}, but {self.history} holds runs: the store was expected. Restore it "
                        "from a backup; to start afresh, move the history folder away first"
                    ) from None
                else:
                    raise StoreMissing(
                        f"{exc}: `runner apply` creates one in a new folder; if it was deleted, "
                        "restore it from a backup"
                    ) from None
        return self._store

    def reader(self) -> StateReader:
        """The state store for reads only (plan, status, get, describe, history): the open
        store when there is one, else one opened without creating or migrating it. A missing
        or older store goes through `store`, which says what to do or migrates it, as reading
        commands always did."""
        if self._store is not None:
            return self._store
        if self._reader is None:
            if self._absent():
                return self.store()  # says what to do
            from runner.state.store import StateReader

            try:
                self._reader = StateReader(self.state)
            except (StoreMissing, StoreOutdated):
                return self.store()
        return self._reader

    def _absent(self) -> Path | None:
        """The folder's own SQLite store file when it does not exist (a new folder): known
        without importing the store, so that a new folder's `plan` loads no SQLAlchemy."""
        file = (self.root / ".runner" / "state.db").resolve()
        return file if self.state_url is None and not file.exists() else None

    def _existing(self) -> StateStore:
        if absent := self._absent():
            raise StoreMissing(f"no state store at {absent}")  # as the store says it
        from runner.state.store import StateStore

        return StateStore(self.state, create=False)

    def has_runs(self) -> bool:
        """Whether the history holds any run (then a state store was expected)."""
        return self.history.is_dir() and next(self.history.glob("*/*/*.json"), None) is not None

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
        if self._reader is not None:
            self._reader.close()
            self._reader = None


def find(ws: Workspace, kind: str, ref: str) -> AppliedObject:
    """`namespace/name`, or a bare name: in 'default', else in the one namespace that has it."""
    objects = ws.reader().objects.all(kind)
    if "/" in ref:
        namespace, _, name = ref.partition("/")
        matches = [o for o in objects if (o.namespace, o.name) == (namespace, name)]
    else:
        matches = [o for o in objects if o.name == ref]
        if len(matches) > 1:
            matches = [o for o in matches if o.namespace == DEFAULT_NAMESPACE] or matches
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise NotFound(f"no {kind.lower()} {ref!r} in the applied state (run `runner apply` first?)")
    raise NotFound(
        f"{kind.lower()} {ref!r} is ambiguous: "
        + ", ".join(o.ref for o in matches)
        + "; name it as namespace/name"
    )
