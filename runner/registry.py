"""One generic registry for every pluggable thing: connection kinds, job types, change
strategies, pair fast paths. Registering a name twice is an error naming who holds it, never a
silent overwrite; asking for an unknown name lists the known ones. Built-in entries are named
with the module that registers them and imported only when asked for (a SQLite run never
imports the PostgreSQL driver), or all at once when every entry is listed. An entry may name
what it defers as `module:name` (`load`): a connector, a job type's or a strategy's run, so
that validating a definition does not import what running it needs."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Hashable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from runner.errors import TerminalError

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
T = TypeVar("T")


def load(ref: str) -> Any:
    """The object a `module:name` reference names, its module imported on first use."""
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


class Registry(Generic[K, V]):
    """Named entries of one sort (`what`: "connection type", "strategy", ...); `builtin` maps
    a name to the module that registers it on import. Listed, the entries registered directly
    come first, in the order they were registered, then the built-in ones in `builtin`'s
    order: not in the order their modules happened to be imported (a process that opened a
    RabbitMQ connection first would otherwise list, and put in the JSON Schema, its kind
    before the others)."""

    def __init__(self, what: str, builtin: Mapping[K, str] | None = None):
        self.what = what
        self._entries: dict[K, V] = {}
        self._builtin = dict(builtin or {})  # not imported yet
        self._order = list(self._builtin)
        self._loading = threading.RLock()  # parallel tasks, the daemon's workers, an import that asks

    def _import(self, names: list[K]) -> None:
        with self._loading:
            for name in names:
                module = self._builtin.pop(name, None)
                if module is not None:
                    importlib.import_module(module)

    def _all(self) -> dict[K, V]:
        """Every entry, each built-in module imported."""
        if self._builtin:
            self._import(list(self._builtin))
        return self._entries

    def _loaded(self) -> dict[K, V]:
        """Every entry in the listing order (see the class)."""
        entries = self._all()
        builtin = {name: entries[name] for name in self._order if name in entries}
        return {name: entry for name, entry in entries.items() if name not in builtin} | builtin

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
            known = ", ".join(sorted(map(str, self._all()))) or "none"
            raise TerminalError(f"unknown {self.what} {name!r} (known: {known})")
        return found

    def items(self) -> dict[K, V]:
        return self._loaded()

    def __iter__(self) -> Iterator[K]:
        return iter(self._loaded())

    def __contains__(self, name: object) -> bool:
        return name in self._all()

    def view(self, part: Callable[[V], T]) -> Mapping[K, T]:
        """A read-only mapping of each entry's `part`, importing an entry's module only when it
        is looked up (iterating it imports them all): what validation is given, so a folder
        of SQLite jobs imports no other kind."""
        return _View(self, part)


class _View(Mapping[K, T]):
    def __init__(self, registry: Registry[K, V], part: Callable[[V], T]):
        self._registry, self._part = registry, part

    def __getitem__(self, name: K) -> T:
        found = self._registry.find(name)
        if found is None:
            raise KeyError(name)
        return self._part(found)

    def __contains__(self, name: object) -> bool:
        try:
            return self._registry.find(name) is not None  # type: ignore[arg-type]
        except TypeError:  # unhashable: no entry's name
            return False

    def __iter__(self) -> Iterator[K]:
        return iter(self._registry.items())

    def __len__(self) -> int:
        return len(self._registry.items())

    def __or__(self, other: Mapping[K, T]) -> dict[K, T]:
        """As a dict's `|`: every entry (all imported), then `other`'s."""
        return dict(self) | dict(other)
