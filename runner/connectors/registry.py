"""The registry of connection types: type name -> connection, `read` and `write` models,
connector class and the capabilities the class declares.

Each module in `runner.connectors` registers itself when imported; the Connection schema
is built from what is registered, so only implemented types validate. Registering a name
twice is an error, never a silent overwrite.
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from runner.definitions.models import ConnectionSpec
from runner.definitions.tasks import ReadSpec, WriteSpec
from runner.errors import TerminalError

if TYPE_CHECKING:
    from runner.connectors.base import Capabilities, Connector

BUILTIN = (
    "runner.connectors.sql.sqlite",
    "runner.connectors.sql.postgresql",
    "runner.connectors.sql.mariadb",
    "runner.connectors.memory",
)


@dataclass(frozen=True)
class Kind:
    """A connection kind: its connection model and connector, and the models a task's `read`
    (when the kind is the job's source) and `write` (its target) validate with. Those default
    to the table-shaped models every task has today (the engine reads tasks through them)."""

    type: str
    spec: type[ConnectionSpec]
    connector: type[Connector]
    read: type[BaseModel] = field(default=ReadSpec, kw_only=True)
    write: type[BaseModel] = field(default=WriteSpec, kw_only=True)

    @property
    def capabilities(self) -> Capabilities:
        return self.connector.capabilities


_KINDS: dict[str, Kind] = {}
_loaded = False
_loading = threading.Lock()


def register(kind: Kind) -> None:
    if kind.type in _KINDS:
        raise ValueError(
            f"connection type {kind.type!r} is already registered by {_KINDS[kind.type].connector.__module__}"
        )
    _KINDS[kind.type] = kind


def kinds() -> dict[str, Kind]:
    """Every registered type (the built-in modules are imported on first use, once, also when
    several threads ask at the same time: parallel tasks, the daemon's workers)."""
    global _loaded
    if not _loaded:
        with _loading:
            if not _loaded:
                for module in BUILTIN:
                    importlib.import_module(module)
                _loaded = True
    return dict(_KINDS)


def connection_models() -> dict[str, type[ConnectionSpec]]:
    """Each type's spec model, by name in order: the JSON Schema does not depend on which kind
    module happened to be imported first (a test importing one registers it early)."""
    return {name: kind.spec for name, kind in sorted(kinds().items())}


def capabilities() -> dict[str, frozenset[str]]:
    """Each type's declared capabilities by name: what `runner validate` checks a task's needs
    against (the definitions know no connector class)."""
    return {name: kind.capabilities.names() for name, kind in kinds().items()}


def open_connector(name: str, spec: dict[str, Any], base_dir: Path) -> Connector:
    """A connector for an applied connection document's spec."""
    kind = kinds().get(spec.get("type", ""))
    if kind is None:
        raise TerminalError(
            f"connection {name!r} has type {spec.get('type')!r}, which this runner "
            f"does not know (known: {', '.join(sorted(kinds()))})"
        )
    return kind.connector(name, kind.spec.model_validate(spec), base_dir)
