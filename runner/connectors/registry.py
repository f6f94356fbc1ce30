"""The registry of connection types: type name -> connection, `read` and `write` models,
connector class and the capabilities the class declares.

Each module in `runner.connectors` registers itself when imported; the Connection schema
is built from what is registered, so only implemented types validate. Registering a name
twice is an error, never a silent overwrite.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.connectors.base import Capabilities
from runner.definitions.models import ConnectionSpec
from runner.definitions.tasks import ReadModel, ReadSpec, WriteModel, WriteSpec
from runner.errors import TerminalError
from runner.registry import Registry, load

if TYPE_CHECKING:
    from runner.connectors.base import Connector

BUILTIN = {
    "sqlite": "runner.connectors.sql.kinds",  # the connectors' modules imported when opened
    "postgresql": "runner.connectors.sql.kinds",
    "mariadb": "runner.connectors.sql.kinds",
    "memory": "runner.connectors.memory",
    "smtp": "runner.connectors.smtp",
    "rabbitmq": "runner.connectors.rabbitmq",
    "redis": "runner.connectors.redis",
    "nats": "runner.connectors.nats",
    "mqtt": "runner.connectors.mqtt",
    "files": "runner.connectors.files.connector",
    "http": "runner.connectors.http.connector",
}
ENDS = frozenset({"source", "target"})  # the roles of a kind with a connector
_NOTHING = Capabilities()


@dataclass(frozen=True)
class Kind:
    """A connection kind: its connection model and connector, and the models a task's `read`
    (when the kind is the job's source) and `write` (its target) validate with, by default the
    SQL kinds' (a table or a query; a table).

    The connector may be named as `module:Class` (`opens`), imported when first opened, with
    its capabilities declared here (`declares`; the class must declare the same): validation
    then needs none of what opening a connection needs (the SQL kinds: SQLAlchemy).

    A kind without a connector is no job's source or target: `roles` says what else it is
    for (`mail`: notifications are sent through it), and `runner validate` refuses a job
    naming it as its source or target."""

    type: str
    spec: type[ConnectionSpec]
    opens: type[Connector] | str | None
    read: type[ReadModel] = field(default=ReadSpec, kw_only=True)
    write: type[WriteModel] = field(default=WriteSpec, kw_only=True)
    roles: frozenset[str] = field(default=ENDS, kw_only=True)
    declares: Capabilities | None = field(default=None, kw_only=True)
    # how `runner connections test` tests a connection of a kind SQL's probe does not know
    # (a mail server, a broker): it connects and signs in, and returns what the server says
    # of itself (raises RunnerError)
    test: Callable[[str, Any, Path], str] | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        if isinstance(self.opens, str) and self.declares is None:
            raise ValueError(f"kind {self.type!r}: a connector named as {self.opens!r} needs `declares`")

    @property
    def endpoint(self) -> bool:
        """Whether a job may read from and write to it (it has a connector)."""
        return self.opens is not None

    @property
    def connector(self) -> type[Connector] | None:
        """The connector class, its module imported on first use when named."""
        return load(self.opens) if isinstance(self.opens, str) else self.opens

    @property
    def capabilities(self) -> Capabilities:
        if self.declares is not None:
            return self.declares
        connector = self.connector
        return _NOTHING if connector is None else connector.capabilities


_KINDS: Registry[str, Kind] = Registry("connection type", BUILTIN)


def register(kind: Kind) -> None:
    _KINDS.register(kind.type, kind)


def kinds() -> Mapping[str, Kind]:
    """Every registered type, as a mapping that imports a built-in type's module when it is
    looked up (each once), and all of them when iterated: validation looks up only the types a
    folder names, so a folder of SQLite jobs imports no other kind."""
    return _KINDS.view(lambda k: k)


def endpoint_kinds() -> dict[str, Kind]:
    """The types a job may read from and write to (those with a connector)."""
    return {name: k for name, k in kinds().items() if k.endpoint}


def roles() -> dict[str, frozenset[str]]:
    """What a connection of each type may be used for: `source`/`target`, `mail`."""
    return {name: k.roles for name, k in kinds().items()}


def kind(name: str) -> Kind | None:
    """One type, importing only its own module: a run opens two connections, and a SQLite run
    need not import the PostgreSQL or MariaDB drivers."""
    return _KINDS.find(name)


def connection_models() -> dict[str, type[ConnectionSpec]]:
    """Each type's spec model, by name in order: the JSON Schema does not depend on which kind
    module happened to be imported first (a test importing one registers it early)."""
    return {name: kind.spec for name, kind in sorted(kinds().items())}


def capabilities() -> dict[str, frozenset[str]]:
    """Each type's declared capabilities by name: what `runner validate` checks a task's needs
    against (the definitions know no connector class)."""
    return {name: kind.capabilities.names() for name, kind in kinds().items()}


def lookups() -> tuple[Mapping[str, type[ConnectionSpec]], Mapping[str, frozenset[str]]]:
    """The connection models and the capabilities' names by type, as mappings that import a
    kind's module only when it is looked up (as `kinds` does): what validation is given."""
    return _KINDS.view(lambda k: k.spec), _KINDS.view(lambda k: k.capabilities.names())


def open_connector(name: str, spec: dict[str, Any], base_dir: Path) -> Connector:
    """A connector for an applied connection document's spec."""
    found = kind(spec.get("type", ""))
    if found is None:
        raise TerminalError(
            f"connection {name!r} has type {spec.get('type')!r}, which this runner "
            f"does not know (known: {', '.join(sorted(kinds()))})"
        )
    connector = found.connector
    if connector is None:
        raise TerminalError(
            f"connection {name!r} has type {spec.get('type')!r}, which is no job's source or "
            f"target (it is for: {', '.join(sorted(found.roles))})"
        )
    return connector(name, found.spec.model_validate(spec), base_dir)
