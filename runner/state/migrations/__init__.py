"""The migrations of the state store, one module each: version N is `migration(N)`.

Each runs in the transaction that records its version, so a store is never half-migrated
(SQLite and PostgreSQL both have transactional DDL). We do not use Alembic: its script
directory, env.py and ini file would ship inside the package for a handful of tables, and its
import costs start-up time on every CLI call; the version table (`schema.schema_version`) is
the part of it we need. A migration's module is imported only when a store is migrated through
it: a store at the latest schema (every command's but the first) imports none. A migration
never imports the live table definitions (`runner.state.schema`): it states the DDL of its own
version, so editing a table later cannot change what an old store is migrated through. A new
version is a new module, its name appended to `NAMES`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlalchemy as sa

NAMES = (  # version N is NAMES[N - 1], the module of that name here
    "v001_objects_revisions_locks",
    "v002_task_state_and_lock_holders",
    "v003_digests_pending",
    "v004_daemon_runtime",
    "v005_api_keys",
    "v006_schedule_of_marks",
    "v007_run_index",
    "v008_compact_row_digests",
    "v009_reload_pending",
    "v010_source_columns",
    "v011_change_logs",
    "v012_leases_and_workers",
    "v013_task_ranges",
)
LATEST = len(NAMES)


def migration(version: int) -> Callable[[sa.Connection], None]:
    """The migration to `version` (1 to `LATEST`), its module imported now."""
    return importlib.import_module(f"{__name__}.{NAMES[version - 1]}").migrate
