"""One generic registry for every pluggable thing: connection kinds, change strategies, pair
fast paths. Registering a name twice is an error naming who holds it, never a silent
overwrite; asking for an unknown name lists the known ones."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterator
from typing import Generic, TypeVar

from runner.errors import TerminalError

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Registry(Generic[K, V]):
    """Named entries of one sort (`what`: "connection type", "strategy", ...); `load`, when
    given, imports the built-in modules that register themselves, once, on first use."""

    def __init__(self, what: str, load: Callable[[], None] | None = None):
        self.what = what
        self._entries: dict[K, V] = {}
        self._load = load
        self._loading = threading.Lock()  # parallel tasks and the daemon's workers ask at once

    def _loaded(self) -> dict[K, V]:
        if self._load is not None:
            with self._loading:
                if self._load is not None:
                    self._load()
                    self._load = None
        return self._entries

    def register(self, name: K, entry: V) -> V:
        if name in self._entries:
            raise ValueError(f"{self.what} {name!r} is already registered ({self._entries[name]!r})")
        self._entries[name] = entry
        return entry

    def get(self, name: K) -> V:
        entries = self._loaded()
        if name not in entries:
            known = ", ".join(sorted(map(str, entries))) or "none"
            raise TerminalError(f"unknown {self.what} {name!r} (known: {known})")
        return entries[name]

    def find(self, name: K) -> V | None:
        return self._loaded().get(name)

    def items(self) -> dict[K, V]:
        return dict(self._loaded())

    def __iter__(self) -> Iterator[K]:
        return iter(self._loaded())

    def __contains__(self, name: object) -> bool:
        return name in self._loaded()
