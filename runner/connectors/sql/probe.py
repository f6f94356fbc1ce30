"""Look at a connection without running a job: test it (`runner connections test`) and list
what it holds (`runner discover`), as Sling's `conns test` and `conns discover` do.

A test connects, reports the server's version, and checks the privileges the jobs that use the
connection need: reading what they read (a `SELECT … WHERE 1 = 0` of each source table or
query: the server checks privileges without reading a row), and creating a table where they
write, plus a temporary (staging) table, in a transaction that is rolled back. MariaDB commits
a CREATE TABLE at once, so there the probe table is created and dropped again. Nothing else is
written anywhere.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import sqlalchemy as sa

from runner.connectors.base import DiscoveredTable
from runner.connectors.changelog import LogNames, LogSource
from runner.connectors.sql.base import SqlConnector
from runner.definitions.tasks import ReadSpec, task_name
from runner.errors import RunnerError

# What the server says it is, per SQLAlchemy dialect name.
VERSION_SQL = {
    "sqlite": "SELECT 'SQLite ' || sqlite_version()",
    "postgresql": "SELECT 'PostgreSQL ' || current_setting('server_version')",
    "mysql": "SELECT VERSION()",
    "mariadb": "SELECT VERSION()",
}


@dataclass
class Check:
    """One thing a connection test looked at: `connect`, `read` or `write`."""

    check: str
    ok: bool | None  # None: not checked (no job needs it)
    detail: str


@dataclass
class Usage:
    """What the jobs in the folder do with a connection: read these sources, write these tables."""

    reads: list[tuple[ReadSpec, str]] = field(default_factory=list)  # each with where it is defined
    writes: list[str] = field(default_factory=list)
    schemas: list[str | None] = field(default_factory=list)  # whole schemas read (sync_all; None: default)
    logs: bool = False  # a cdc task reads its log (`runner.connectors.changelog`)


def _dialect(connector: SqlConnector) -> str:
    return connector.engine.dialect.name


def _autocommits_ddl(connector: SqlConnector) -> bool:
    return _dialect(connector) in ("mysql", "mariadb")


def test(connector: SqlConnector, usage: Usage) -> tuple[str | None, list[Check]]:
    """The server's version and the checks; every failure is a `Check` with ok=False, never raised."""
    checks: list[Check] = []
    missing = getattr(connector, "path", None)
    if missing is not None and not missing.exists():  # SQLite would create the file on connect
        if usage.reads or usage.schemas:
            return None, [Check("connect", False, f"database file {missing} does not exist")]
        return None, [Check("connect", True, f"database file {missing} does not exist yet: a run creates it")]
    try:
        ((version,),) = connector._query("connecting", VERSION_SQL[_dialect(connector)])
    except RunnerError as exc:
        return None, [Check("connect", False, str(exc))]
    checks.append(Check("connect", True, "connected"))
    checks.append(_read_check(connector, usage.reads, usage.schemas))
    checks.append(_write_check(connector, usage.writes))
    if usage.logs:
        checks.append(_log_check(connector))
    return str(version), checks


def _log_check(connector: SqlConnector) -> Check:
    """The server settings and privileges a cdc task needs (`ChangeLog.check_setup`)."""
    if not connector.capabilities.log_changes:
        return Check("log", False, f"a {connector.kind} connection has no log runner reads")
    log = cast(LogSource, connector).change_log(LogNames("", ""), "", [], [])
    try:
        log.check_setup()
    except RunnerError as exc:
        return Check("log", False, str(exc))
    return Check("log", True, "ready for strategy 'cdc' (settings and privileges)")


def _read_check(
    connector: SqlConnector, reads: list[tuple[ReadSpec, str]], schemas: Sequence[str | None] = ()
) -> Check:
    if not reads and not schemas:
        try:
            tables = sa.inspect(connector.engine).get_table_names()
        except sa.exc.SQLAlchemyError as exc:
            return Check("read", False, str(connector._mapped("listing tables", exc)))
        return Check("read", True, f"lists {len(tables)} table(s); no job reads from it")
    failed = []
    listed = 0
    for schema in dict.fromkeys(schemas):  # a sync_all job's: its tables are listed, as a run lists them
        try:
            listed += len(connector.tables(schema))
        except RunnerError as exc:
            failed.append(str(exc))
    for spec, where in reads:
        what = spec.table or "a query"
        try:  # no parameters: a % in a query is sent as it is
            connector._query(f"reading {what}", f"SELECT * FROM {connector.source_sql(spec)} WHERE 1 = 0")
        except RunnerError as exc:
            failed.append(f"{where}: {exc}")
    if failed:
        return Check("read", False, "; ".join(failed))
    done = [f"can read the {len(reads)} source(s) its jobs read"] if reads else []
    if schemas:
        done.append(f"lists the {listed} table(s) of the schema(s) its sync_all jobs copy from")
    return Check("read", True, "; ".join(done))


def _write_check(connector: SqlConnector, tables: list[str]) -> Check:
    if not tables:
        return Check("write", None, "not checked: no job writes to it")
    schemas = sorted({t.rpartition(".")[0] for t in tables})
    failed = []
    for schema in schemas:
        where = f"schema {schema}" if schema else "the default schema"
        try:
            _probe_create(connector, schema)
        except RunnerError as exc:
            failed.append(f"cannot create a table in {where}: {exc}")
    if failed:
        return Check("write", False, "; ".join(failed))
    how = "created and dropped again" if _autocommits_ddl(connector) else "rolled back"
    places = ", ".join(f"schema {s}" if s else "the default schema" for s in schemas)
    return Check("write", True, f"can create tables and a staging table in {places} ({how})")


def _probe_create(connector: SqlConnector, schema: str) -> None:
    """Create a table (and the schema, as a run would) and a temporary table, insert a row,
    and leave nothing behind."""
    name = f"runner_probe_{uuid.uuid4().hex[:12]}"
    table = f"{schema}.{name}" if schema else name
    quoted = connector.quote_table(table)
    with connector.connection(f"creating a probe table {table}") as dbapi:
        connector.begin(dbapi)
        cursor = dbapi.cursor()
        try:
            if schema and (create_schema := connector.create_schema_sql(schema)):
                cursor.execute(create_schema)
            cursor.execute(f"CREATE TABLE {quoted} (id INTEGER)")
            try:
                cursor.execute(f"INSERT INTO {quoted} (id) VALUES (1)")
                cursor.execute(f"CREATE TEMPORARY TABLE {connector.quote(name + '_stage')} (id INTEGER)")
            finally:
                if _autocommits_ddl(connector):
                    cursor.execute(connector.drop_temp_sql(name + "_stage"))
                    cursor.execute(f"DROP TABLE {quoted}")
        finally:
            dbapi.rollback()


# --- discover ------------------------------------------------------------------------------


def discover(connector: SqlConnector, schema: str | None = None) -> list[DiscoveredTable]:
    """The tables of `schema` (default: the connection's own): see `SqlConnector.tables`."""
    return connector.tables(schema)


def tasks_for(tables: list[DiscoveredTable]) -> list[dict[str, Any]]:
    """A ready task list, one task per table: with a primary key, the key is the target's and
    changes are found by hashing rows (no timestamp column needed); without one, the table is
    copied in full each run."""
    taken: set[str] = set()
    tasks = []
    for t in tables:
        write: dict[str, Any] = {"table": t.name}
        if t.primary_key:
            write["keys"] = list(t.primary_key)
        tasks.append(
            {
                "name": task_name(t.name, taken),
                "read": {"table": t.ref},
                "write": write,
                "changes": {"strategy": "hash" if t.primary_key else "full"},
            }
        )
    return tasks
