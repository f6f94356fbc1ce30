"""The fast paths by (source kind, target kind): tried before the batch path, so a pair that
can move rows inside the databases does, and any other pair copies in batches. Adding one is
a module that registers itself here and a line in `BUILTIN` (imported when its pair runs)."""

from __future__ import annotations

from runner.connectors.base import Source, Target
from runner.connectors.sql.fastpath import FastPath
from runner.registry import Registry

BUILTIN = {
    ("postgresql", "postgresql"): "runner.transfer.postgresql",
    ("sqlite", "sqlite"): "runner.transfer.sqlite",
    ("postgresql", "mariadb"): "runner.transfer.postgresql_mariadb",
    ("files", "postgresql"): "runner.transfer.files_postgresql",
    ("postgresql", "files"): "runner.transfer.postgresql_files",
}

FAST_PATHS: Registry[tuple[str, str], FastPath] = Registry("fast path", BUILTIN)


def fast_path(source: Source, target: Target) -> FastPath | None:
    """The pair's fast path, or None: its rows go in batches."""
    return FAST_PATHS.find((source.kind, target.kind))
