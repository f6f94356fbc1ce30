"""The SQL kinds as validation knows them: each one's connection model and capabilities,
registered with its connector named, imported (with SQLAlchemy and the driver) only when a
connection is opened. `runner validate` of a folder of SQLite jobs imports no SQLAlchemy."""

from __future__ import annotations

from dataclasses import replace

from runner.connectors import registry
from runner.connectors.base import Capabilities
from runner.connectors.sql.spec import MariadbConnection, PostgresqlConnection, SqliteConnection
from runner.definitions.tasks import ReadSpec, WriteSpec

SQL = Capabilities(
    query=True,
    key_lookup=True,
    digests=True,
    key_buckets=True,
    native_merge=True,
    scripts=True,
    copy_while_reading=True,
    alter_tables=True,
    history=True,
    table_lifecycle=True,
    catalog=True,
    statements=True,
    verify=True,
)
# one writer of a file at a time (`prepare_writer`); an attached file in a write transaction
# would lock out its reader, so no copy while a read is open
SQLITE = replace(SQL, one_writer=True, copy_while_reading=False)
POSTGRESQL = replace(SQL, snapshot=True, in_database_compare=True, log_changes=True)
MARIADB = replace(SQL, log_changes=True)

for name, spec, opens, declares in (
    ("sqlite", SqliteConnection, "runner.connectors.sql.sqlite:SqliteConnector", SQLITE),
    ("postgresql", PostgresqlConnection, "runner.connectors.sql.postgresql:PostgresqlConnector", POSTGRESQL),
    ("mariadb", MariadbConnection, "runner.connectors.sql.mariadb:MariadbConnector", MARIADB),
):
    registry.register(registry.Kind(name, spec, opens, read=ReadSpec, write=WriteSpec, declares=declares))
