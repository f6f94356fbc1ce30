"""One generic registry for every pluggable thing: connection kinds, job types, change
strategies, pair fast paths. Registering a name twice is an error naming who holds it, never a
silent overwrite; asking for an unknown name lists the known ones. Built-in entries are named
with the module that registers them and imported only when asked for (a SQLite run never
imports the PostgreSQL driver), or all at once when every entry is listed."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Hashable, Iterator, Mapping
from typing import Generic, TypeVar

from runner.errors import TerminalError

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Registry(Generic[K, V]):
    """Named entries of one sort (`what`: "connection type", "strategy", ...); `builtin` maps
    a name to the module that registers it on import."""

    def __init__(self, what: str, builtin: Mapping[K, str] | None = None):
        self.what = what
        self._entries: dict[K, V] = {}
        self._builtin = dict(builtin or {})  # not imported yet
        self._loading = threading.RLock()  # parallel tasks, the daemon's workers, an import that asks

    def _import(self, names: list[K]) -> None:
        with self._loading:
            for name in names:
                module = self._builtin.pop(name, None)
                if module is not None:
                    importlib.import_module(module)

    def _loaded(self) -> dict[K, V]:
        if self._builtin:
            self._import(list(self._builtin))
        return self._entries

    def register(self, name: K, entry: V) -> V:
        if name in self._entries:
            raise ValueError(f"{self.what} {name!r} is already registered ({self._entries[name]!r})")
        self._entries[name] = entry
        return entry

    def find(self, name: K) -> V | None:
        """The entry, importing its built-in module if it is one; None when unknown."""
        if name not in self._entries and name in self._builtin:
            self._import([name])
        return self._entries.get(name)

    def get(self, name: K) -> V:
        found = self.find(name)
        if found is None:
            known = ", ".join(sorted(map(str, self._loaded()))) or "none"
            raise TerminalError(f"unknown {self.what} {name!r} (known: {known})")
        return found

    def items(self) -> dict[K, V]:
        return dict(self._loaded())

    def __iter__(self) -> Iterator[K]:
        return iter(self._loaded())

    def __contains__(self, name: object) -> bool:
        return name in self._loaded()
