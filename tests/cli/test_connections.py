"""`runner connections test` and `runner discover` against real SQLite, PostgreSQL and MariaDB:
versions, privileges (a role without them fails, naming the connection and the reason),
nothing left behind, and discovered tasks that `validate` accepts and that run."""

from __future__ import annotations

import json
import sqlite3
import textwrap
import uuid

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from runner import services
from runner.cli.app import app

SECRET = "pw-Z9q-never-shown"


@pytest.fixture
def cli(project, monkeypatch):
    monkeypatch.chdir(project.root)
    runner = CliRunner()
    return lambda *args: runner.invoke(app, ["--dir", str(project.root), *args])


def sqlite_db(path, *statements: str) -> None:
    with sqlite3.connect(path) as db:
        for statement in statements:
            db.execute(statement)


def tables_of(url: str) -> list[str]:
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        return sorted(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_sqlite_connections_pass_and_leave_nothing_behind(cli, project):
    sqlite_db(project.root / "src.db", "CREATE TABLE a (id INTEGER PRIMARY KEY, v TEXT)")
    sqlite_db(project.root / "dst.db", "CREATE TABLE keep (x INTEGER)")
    project.connection("src", "sqlite", "sqlite:///src.db")
    project.connection("dst", "sqlite", "sqlite:///dst.db")
    project.connection("spare", "sqlite", "sqlite:///spare.db")
    project.job("copy", "src", "dst", "- {name: t, read: {table: a}, write: {table: b, keys: [id]}}")
    result = cli("connections", "test")
    assert result.exit_code == 0, result.output
    version = sqlite3.sqlite_version
    assert result.stdout.splitlines() == [
        f"default/dst (sqlite, SQLite {version}): ok",
        "  connect  ok      connected",
        "  read     ok      lists 1 table(s); no job reads from it",
        "  write    ok      can create tables and a staging table in the default schema (rolled back)",
        "default/spare (sqlite): ok",
        f"  connect  ok      database file {project.root / 'spare.db'} does not exist yet: a run creates it",
        f"default/src (sqlite, SQLite {version}): ok",
        "  connect  ok      connected",
        "  read     ok      can read the 1 source(s) its jobs read",
        "  write    -       not checked: no job writes to it",
    ]
    assert tables_of(f"sqlite:///{project.root / 'dst.db'}") == ["keep"]
    assert not (project.root / "spare.db").exists()  # a test creates no database file
    one = json.loads(cli("connections", "test", "src", "--format", "json").stdout)
    assert [(r["connection"], r["ok"]) for r in one] == [("default/src", True)]
    missing = cli("connections", "test", "nope")
    assert missing.exit_code == 1 and "no valid connection 'nope' in connections.d/" in missing.stderr


def test_a_missing_source_file_fails_naming_the_connection(cli, project):
    project.connection("src", "sqlite", "sqlite:///gone.db")
    project.connection("dst", "sqlite", "sqlite:///dst.db")
    project.job("copy", "src", "dst", "- {name: t, read: {table: a}, write: {table: b}}")
    result = cli("connections", "test")
    assert result.exit_code == 1
    gone = project.root / "gone.db"
    assert f"error: connection default/src failed: connect: database file {gone} does not exist" in (
        result.stderr
    )
    assert "default/dst" not in result.stderr


@pytest.fixture
def pg_role(pg_url):
    """A login role with no privileges in the test's database (dropped afterwards)."""
    role = f"runner_probe_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(pg_url, poolclass=sa.NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE ROLE "{role}" LOGIN')
        conn.exec_driver_sql("CREATE TABLE orders (id integer PRIMARY KEY, total numeric(12,2))")
        conn.exec_driver_sql("INSERT INTO orders VALUES (1, 9.50), (2, 3.25)")
    yield role, admin
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP OWNED BY "{role}"')
        conn.exec_driver_sql(f'DROP ROLE "{role}"')
    admin.dispose()


def test_postgresql_privileges_are_checked_and_failures_named(cli, project, pg_url, pg_role, monkeypatch):
    role, admin = pg_role
    db = sa.make_url(pg_url).database
    monkeypatch.setenv("PG_PASSWORD", SECRET)
    project.connection("pg", "postgresql", f"postgresql://{role}:${{env:PG_PASSWORD}}@127.0.0.1:5432/{db}")
    project.connection("local", "sqlite", "sqlite:///local.db")
    sqlite_db(project.root / "local.db", "CREATE TABLE orders (id INTEGER PRIMARY KEY, total NUMERIC(12,2))")
    project.job("up", "local", "pg", "- {name: o, read: {table: orders}, write: {table: sync.orders}}")
    project.job(
        "down",
        "pg",
        "local",
        """
        - {name: o, read: {table: orders}, write: {table: orders}}
        - {name: q, read: {query: "SELECT id FROM orders WHERE 'ab' LIKE 'a%'"}, write: {table: q}}
        """,
    )

    result = cli("connections", "test", "pg")
    assert result.exit_code == 1
    assert result.stdout.splitlines()[0].startswith("default/pg (postgresql, PostgreSQL 1")
    assert "permission denied for table orders" in result.stderr
    # each read that fails says whose it is and where it is defined
    assert "jobs.d/down.yaml:8:17: spec.tasks[0].read (job default/down, task o): reading orders" in (
        result.stderr
    )
    assert "cannot create a table in schema sync" in result.stderr
    assert result.stderr.startswith("error: connection default/pg failed: read: ")
    assert SECRET not in result.output

    with admin.connect() as conn:
        conn.exec_driver_sql(f'GRANT SELECT ON orders TO "{role}"')
        conn.exec_driver_sql(f'GRANT CREATE ON DATABASE "{db}" TO "{role}"')
    (checked,) = services.connections_test(project.ws, "pg")
    assert checked["ok"] is True, checked
    assert [c["ok"] for c in checked["checks"]] == [True, True, True]
    assert checked["checks"][1]["detail"] == "can read the 2 source(s) its jobs read"
    assert checked["checks"][2]["detail"] == (
        "can create tables and a staging table in schema sync (rolled back)"
    )
    with admin.connect() as conn:  # rolled back: neither the schema nor a probe table remains
        assert conn.exec_driver_sql("SELECT count(*) FROM pg_namespace WHERE nspname = 'sync'").scalar() == 0
    assert tables_of(pg_url) == ["orders"]


def test_a_refused_login_names_the_reason_without_the_secret(cli, project, monkeypatch):
    monkeypatch.setenv("PG_PASSWORD", SECRET)
    project.connection(
        "pg", "postgresql", "postgresql://no_such_role_x:${env:PG_PASSWORD}@127.0.0.1:5432/postgres"
    )
    result = cli("connections", "test")
    assert result.exit_code == 1
    assert "error: connection default/pg failed: connect: " in result.stderr
    assert 'role "no_such_role_x" does not exist' in result.stderr
    assert SECRET not in result.output
    # a server error that quotes a secret (here the database's name) shows it redacted
    project.connection("pg", "postgresql", "postgresql://postgres@127.0.0.1:5432/${env:PG_PASSWORD}")
    echoed = cli("connections", "test")
    assert echoed.exit_code == 1
    assert 'database "***" does not exist' in echoed.stderr and SECRET not in echoed.output


def test_mariadb_write_probe_is_dropped_again(cli, project, maria_url):
    project.connection("maria", "mariadb", maria_url)
    project.connection("local", "sqlite", "sqlite:///local.db")
    sqlite_db(project.root / "local.db", "CREATE TABLE a (id INTEGER PRIMARY KEY)")
    project.job("up", "local", "maria", "- {name: a, read: {table: a}, write: {table: a}}")
    (result,) = services.connections_test(project.ws, "maria")
    assert result["ok"] is True, result
    assert "MariaDB" in result["server"]
    assert result["checks"][2]["detail"] == (
        "can create tables and a staging table in the default schema (created and dropped again)"
    )
    assert tables_of(maria_url) == []


# --- discover: the round trip ---------------------------------------------------------------

DDL = {
    "sqlite": [
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, name VARCHAR(40), total NUMERIC(12,2))",
        "CREATE TABLE lines (order_id INTEGER, line INTEGER, qty INTEGER, PRIMARY KEY (order_id, line))",
        "CREATE TABLE notes (body TEXT)",
    ],
    "postgresql": [
        "CREATE SCHEMA shop",
        "CREATE TABLE shop.orders (id integer PRIMARY KEY, name varchar(40), total numeric(12,2))",
        "CREATE TABLE shop.lines (order_id integer, line integer, qty integer, PRIMARY KEY (order_id, line))",
        "CREATE TABLE shop.notes (body text)",
        "CREATE TABLE public.elsewhere (id integer PRIMARY KEY)",
    ],
    "mariadb": [
        "CREATE TABLE orders (id INT PRIMARY KEY, name VARCHAR(40), total DECIMAL(12,2))",
        "CREATE TABLE `lines` (order_id INT, line INT, qty INT, PRIMARY KEY (order_id, line))",
        "CREATE TABLE notes (body TEXT)",
    ],
}
ROWS = {
    "orders": "INSERT INTO {s}orders VALUES (1, 'a', 1.50), (2, 'b', 2.25)",
    "lines": "INSERT INTO {s}{q}lines{q} VALUES (1, 1, 3), (1, 2, 4), (2, 1, 5)",
    "notes": "INSERT INTO {s}notes VALUES ('x')",
}


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql", "mariadb"])
def test_discovered_tasks_validate_and_run(cli, project, dialect, request):
    if dialect == "sqlite":
        url, schema = "sqlite:///src.db", None
        engine_url = f"sqlite:///{project.root / 'src.db'}"
    else:
        url = request.getfixturevalue("pg_url" if dialect == "postgresql" else "maria_url")
        engine_url, schema = url, ("shop" if dialect == "postgresql" else None)
    engine = sa.create_engine(engine_url, poolclass=sa.NullPool)
    with engine.begin() as conn:
        for statement in DDL[dialect]:
            conn.exec_driver_sql(statement)
        for statement in ROWS.values():
            conn.exec_driver_sql(
                statement.format(s=f"{schema}." if schema else "", q="`" if dialect == "mariadb" else "")
            )
    engine.dispose()
    project.connection("src", dialect, url)
    project.connection("dst", "sqlite", "sqlite:///dst.db")

    args = ["discover", "src", *(["--schema", schema] if schema else [])]
    result = cli(*args)
    assert result.exit_code == 0, result.output
    text = result.stdout
    prefix = f"{schema}." if schema else ""
    integer = "bigint" if dialect == "sqlite" else "integer"  # a SQLite INTEGER holds 64 bits
    assert f"# orders: id {integer} (key), name varchar(40), total decimal(12,2)" in text
    assert f"# lines: order_id {integer} (key), line {integer} (key), qty {integer}" in text
    assert "# notes: body text — no primary key: copied in full each run" in text
    assert "elsewhere" not in text  # only the schema asked for
    info = json.loads(cli(*args, "--format", "json").stdout)
    assert [
        (t["name"], t["read"]["table"], t["write"].get("keys"), t["changes"]["strategy"])
        for t in info["tasks"]
    ] == [
        ("lines", f"{prefix}lines", ["order_id", "line"], "hash"),
        ("notes", f"{prefix}notes", None, "full"),
        ("orders", f"{prefix}orders", ["id"], "hash"),
    ]

    project.write(
        "jobs.d/pasted.yaml",
        "apiVersion: runner/v1\nkind: Job\nmetadata: {name: pasted}\nspec:\n  source: src\n  target: dst\n"
        "  tasks:\n" + textwrap.indent(text, "  "),
    )
    validated = cli("validate")
    assert validated.exit_code == 0, validated.output
    assert cli("apply").exit_code == 0
    ran = cli("run", "pasted", "--format", "json")
    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.stdout)["rows_written"] == 6
    with sqlite3.connect(project.root / "dst.db") as db:
        assert db.execute("SELECT id, name FROM orders ORDER BY id").fetchall() == [(1, "a"), (2, "b")]
        assert db.execute("SELECT count(*) FROM lines").fetchone() == (3,)


def test_discover_an_unknown_schema_or_connection(cli, project, pg_url):
    project.connection("pg", "postgresql", pg_url)
    result = cli("discover", "pg", "--schema", "nowhere")
    assert result.exit_code == 1
    assert "error: connection 'default/pg' has no schema 'nowhere' (it has: " in result.stderr
    assert "public" in result.stderr
    missing = cli("discover", "nope")
    assert missing.exit_code == 1 and "no valid connection 'nope'" in missing.stderr
