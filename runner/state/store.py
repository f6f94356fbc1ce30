"""The state store: what has been applied, what runs recorded, and the locks that serialise
writers, behind one SQLAlchemy URL (`sqlite:///…` or `postgresql://…`).

`StateStore` opens it (migrating it to the latest schema) and reaches each concern as an
attribute over one shared database (`store.db`): `store.objects` (applied objects, revisions),
`store.tasks` (pointers, digests), `store.locks`, `store.switches` (suspensions, settings, cron
marks), `store.keys` (API keys), `store.runs` (the index of the history files),
`store.cluster` (fired slots, run requests and workers of a scale-out) and `store.ranges` (a
split copy's key ranges).
`StateReader` opens an existing store for what plans and status read, and nothing else.
"""

from __future__ import annotations

import sqlalchemy as sa

from runner.errors import StateError, StoreMissing, StoreOutdated
from runner.state import migrations, schema
from runner.state.changelogs import ChangeLogs, ChangeLogsReader
from runner.state.cluster import Cluster, ClusterReader, Ranges
from runner.state.database import Database, utcnow
from runner.state.keys import Keys
from runner.state.locks import Locks, LocksReader
from runner.state.objects import Objects, ObjectsReader
from runner.state.runs import Runs, RunsReader
from runner.state.switches import Switches, SwitchesReader
from runner.state.tasks import Tasks, TasksReader


class StateReader:
    """An existing store at the latest schema, for reads only (plans, status, get, describe,
    history listings): it creates nothing and migrates nothing, SQLite reads do not queue
    behind a writer, and the database refuses writes (so a read path cannot write by mistake).

    Raises:
        StoreMissing: no store there.
        StoreOutdated: the store is at an older schema (a `StateStore` migrates it).
        StateError: the store is at a newer schema, or its URL is not usable.
    """

    objects: ObjectsReader
    tasks: TasksReader
    locks: LocksReader
    switches: SwitchesReader
    runs: RunsReader
    changelogs: ChangeLogsReader
    cluster: ClusterReader

    def __init__(self, url: str):
        self.db = Database(url, create=False, read_only=True)
        try:
            self.db.open(_require_latest)
        except BaseException:
            self.db.close()
            raise
        self.objects = ObjectsReader(self.db)
        self.tasks = TasksReader(self.db)
        self.locks = LocksReader(self.db)
        self.switches = SwitchesReader(self.db)
        self.runs = RunsReader(self.db)
        self.changelogs = ChangeLogsReader(self.db)
        self.cluster = ClusterReader(self.db)

    def close(self) -> None:
        self.db.close()


class StateStore(StateReader):
    """The state store for reads and writes, migrated to the latest schema on opening.

    With `create` False, a store that does not exist yet (no SQLite file, no runner tables in
    the database) is an error rather than created empty: a store deleted by mistake must not
    come back empty and silently restart every job from scratch."""

    objects: Objects
    tasks: Tasks
    locks: Locks
    switches: Switches
    runs: Runs
    keys: Keys
    changelogs: ChangeLogs
    cluster: Cluster
    ranges: Ranges

    def __init__(self, url: str, create: bool = True):  # not StateReader's: this one migrates
        self.db = Database(url, create)
        self.db.open(lambda conn: _upgrade(conn, create), _ready)
        self.objects = Objects(self.db)
        self.tasks = Tasks(self.db)
        self.locks = Locks(self.db)
        self.switches = Switches(self.db)
        self.runs = Runs(self.db)
        self.keys = Keys(self.db)
        self.changelogs = ChangeLogs(self.db)
        self.cluster = Cluster(self.db)
        self.ranges = Ranges(self.db)


def _version(conn: sa.Connection) -> int:
    """The store's schema version; refuses a store made by a newer runner."""
    current = conn.execute(sa.select(sa.func.max(schema.schema_version.c.version))).scalar() or 0
    if current > migrations.LATEST:
        raise StateError(
            f"the state store is at schema version {current}, newer than "
            f"this runner knows ({migrations.LATEST}); upgrade runner"
        )
    return current


def _missing(conn: sa.Connection) -> StoreMissing:
    return StoreMissing(f"no state store in {conn.engine.url.render_as_string()}")


def _ready(conn: sa.Connection) -> bool:
    """Whether an opened store needs nothing (no migration, a SQLite file in WAL mode
    already): what most opens find, read without queueing for the write lock.

    Raises:
        StateError: the store is newer than this runner.
    """
    if not sa.inspect(conn).has_table(schema.schema_version.name) or _version(conn) != migrations.LATEST:
        return False  # a new store, or an older one: `_upgrade` creates or migrates it
    return conn.dialect.name != "sqlite" or conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def _upgrade(conn: sa.Connection, create: bool) -> None:
    """Bring the store to the latest schema version, in the transaction that opens it.

    Raises:
        StoreMissing: not `create`, and no store there.
        StateError: the store is newer than this runner.
    """
    if conn.dialect.name == "postgresql":  # serialise concurrent first starts
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7361626)")
    if not create and not sa.inspect(conn).has_table(schema.schema_version.name):
        raise _missing(conn)
    schema.schema_version.create(conn, checkfirst=True)
    for version in range(_version(conn) + 1, migrations.LATEST + 1):
        migrations.migration(version)(conn)
        conn.execute(schema.schema_version.insert().values(version=version, applied_at=utcnow()))


def _require_latest(conn: sa.Connection) -> None:
    """What a reader checks on opening: a store, at the schema this runner reads."""
    if not sa.inspect(conn).has_table(schema.schema_version.name):
        raise _missing(conn)
    current = _version(conn)
    if current < migrations.LATEST:
        raise StoreOutdated(
            f"the state store is at schema version {current}, older than this runner's "
            f"({migrations.LATEST}); a command that writes to it migrates it"
        )
