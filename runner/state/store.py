"""The state store: what has been applied, what runs recorded, and the locks that serialise
writers, behind one SQLAlchemy URL (`sqlite:///…` or `postgresql://…`).

`StateStore` opens it (migrating it to the latest schema) and reaches each concern as an
attribute over one shared database (`store.db`): `store.objects` (applied objects, revisions),
`store.tasks` (pointers, digests), `store.locks`, `store.switches` (suspensions, settings, cron
marks), `store.keys` (API keys) and `store.runs` (the index of the history files).
"""

from __future__ import annotations

import sqlalchemy as sa

from runner.errors import StateError, StoreMissing
from runner.state import migrations, schema
from runner.state.database import Database, utcnow
from runner.state.keys import Keys
from runner.state.locks import Locks
from runner.state.objects import Objects
from runner.state.runs import Runs
from runner.state.switches import Switches
from runner.state.tasks import Tasks


class StateStore:
    """The state store, migrated to the latest schema on opening.

    With `create` False, a store that does not exist yet (no SQLite file, no runner tables in
    the database) is an error rather than created empty: a store deleted by mistake must not
    come back empty and silently restart every job from scratch."""

    def __init__(self, url: str, create: bool = True):
        self.db = Database(url, create)
        self.db.open(lambda conn: _upgrade(conn, create))
        self.objects = Objects(self.db)
        self.tasks = Tasks(self.db)
        self.locks = Locks(self.db)
        self.switches = Switches(self.db)
        self.runs = Runs(self.db)
        self.keys = Keys(self.db)

    def close(self) -> None:
        self.db.close()


def _upgrade(conn: sa.Connection, create: bool) -> None:
    """Bring the store to the latest schema version, in the transaction that opens it.

    Raises:
        StoreMissing: not `create`, and no store there.
        StateError: the store is newer than this runner.
    """
    if conn.dialect.name == "postgresql":  # serialise concurrent first starts
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7361626)")
    if not create and not sa.inspect(conn).has_table(schema.schema_version.name):
        raise StoreMissing(f"no state store in {conn.engine.url.render_as_string()}")
    schema.schema_version.create(conn, checkfirst=True)
    current = conn.execute(sa.select(sa.func.max(schema.schema_version.c.version))).scalar() or 0
    if current > migrations.LATEST:
        raise StateError(
            f"the state store is at schema version {current}, newer than "
            f"this runner knows ({migrations.LATEST}); upgrade runner"
        )
    for version in range(current + 1, migrations.LATEST + 1):
        migrations.MIGRATIONS[version - 1](conn)
        conn.execute(schema.schema_version.insert().values(version=version, applied_at=utcnow()))
