"""The migrations of the state store, one module each: version N is `MIGRATIONS[N - 1]`.

Each runs in the transaction that records its version, so a store is never half-migrated
(SQLite and PostgreSQL both have transactional DDL). We do not use Alembic: its script
directory, env.py and ini file would ship inside the package for a handful of tables, and its
import costs start-up time on every CLI call; the version table (`schema.schema_version`) is
the part of it we need. A migration never imports the live table definitions
(`runner.state.schema`): it states the DDL of its own version, so editing a table later cannot
change what an old store is migrated through. A new version is a new module appended below.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

from runner.state.migrations import (
    v001_objects_revisions_locks,
    v002_task_state_and_lock_holders,
    v003_digests_pending,
    v004_daemon_runtime,
    v005_api_keys,
    v006_schedule_of_marks,
    v007_run_index,
    v008_compact_row_digests,
    v009_reload_pending,
    v010_source_columns,
    v011_change_logs,
    v012_leases_and_workers,
    v013_task_ranges,
)

MIGRATIONS: list[Callable[[sa.Connection], None]] = [
    v001_objects_revisions_locks.migrate,
    v002_task_state_and_lock_holders.migrate,
    v003_digests_pending.migrate,
    v004_daemon_runtime.migrate,
    v005_api_keys.migrate,
    v006_schedule_of_marks.migrate,
    v007_run_index.migrate,
    v008_compact_row_digests.migrate,
    v009_reload_pending.migrate,
    v010_source_columns.migrate,
    v011_change_logs.migrate,
    v012_leases_and_workers.migrate,
    v013_task_ranges.migrate,
]
LATEST = len(MIGRATIONS)
