"""A target table follows its source's columns between runs (`schema_changes`): a column added in
the source is added, a type the source widened is widened, a change the target could follow only
by losing data stops the task with the DDL that would follow it (and writes nothing), a column
dropped in the source stays (NULL in new rows) unless `drop_columns`, a renamed column is one
added and one dropped, and a dry run alters nothing. Source: PostgreSQL (its types change in
place); targets: SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from runner import services
from runner.changes.task import RunOptions
from tests.engine.conftest import DIALECTS, Database
from tests.engine.test_crash import kill_at

ITEMS = "CREATE TABLE items (id integer PRIMARY KEY, name varchar(10), qty integer, price numeric(8,2))"


def make_items(db: Database) -> None:
    with db.cursor() as c:
        c.execute(ITEMS)
        c.execute("INSERT INTO items VALUES (1, 'one', 1, 1.50), (2, 'two', 2, 2.25)")


def execute(db: Database, *statements: str) -> None:
    with db.cursor() as c:
        for sql in statements:
            c.execute(sql)


def job(
    project, source: Database, target: Database, extra: str = "", task: str = "", strategy: str = "full"
) -> None:
    project.connection("src", source.dialect, source.url)
    project.connection("dst", target.dialect, target.url)
    project.job(
        "sync",
        "src",
        "dst",
        f"""
        - name: items
          read: {{table: items}}
          write: {{table: copy, keys: [id]}}
          changes: {{strategy: {strategy}}}
        {task}""",
        extra=extra,
    )
    services.apply(project.ws)


def run(project, **options) -> dict:
    return services.run(project.ws, "sync", RunOptions(**options))


def succeeded(project, **options) -> dict:
    record = run(project, **options)
    assert record["status"] == "succeeded", record["error"]
    return record


def columns(db: Database, table: str = "copy") -> dict[str, str]:
    """The table's columns and their declared types (lower case), in order."""
    if db.dialect == "sqlite":
        return {r[1]: r[2].lower() for r in db.fetch(f"PRAGMA table_info({table})")}
    if db.dialect == "postgresql":
        return {
            r[0]: r[1]
            for r in db.fetch(
                f"SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = "
                f"'{table}'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
            )
        }
    return {r[0]: r[1].lower() for r in db.fetch(f"SHOW COLUMNS FROM {table}")}


def rows(db: Database, names: str = "*") -> list[tuple]:
    return [tuple(r) for r in db.fetch(f"SELECT {names} FROM copy ORDER BY id")]


def log_lines(record: dict) -> list[dict]:
    return [json.loads(line) for line in Path(record["log"]).read_text().splitlines()]


@pytest.fixture
def source(make_database) -> Database:
    db = make_database("postgresql", "source")
    make_items(db)
    return db


@pytest.fixture(params=DIALECTS, ids=[f"to-{d}" for d in DIALECTS])
def target(request, make_database) -> Database:
    return make_database(request.param, "target")


# --- added columns -------------------------------------------------------------------------

ADDED = {"sqlite": "numeric(6,1)", "postgresql": "numeric(6,1)", "mariadb": "decimal(6,1)"}


def test_a_column_added_in_the_source_is_added_with_its_values(project, source, target):
    job(project, source, target)
    succeeded(project)
    execute(source, "ALTER TABLE items ADD COLUMN weight numeric(6,1)", "UPDATE items SET weight = id * 1.5")
    execute(source, "INSERT INTO items VALUES (3, 'three', 3, 3.00, 4.5)")
    record = succeeded(project)
    assert columns(target)["weight"] == ADDED[target.dialect]
    assert rows(target, "id, weight") == [(1, Decimal("1.5")), (2, Decimal("3.0")), (3, Decimal("4.5"))]
    task = record["tasks"][0]
    assert (task["inserted"], task["updated"]) == (1, 2)  # every old row gets its new value once
    (change,) = task["schema_changes"]
    quoted = "`copy`" if target.dialect == "mariadb" else '"copy"'
    weight = "`weight`" if target.dialect == "mariadb" else '"weight"'
    rendered = {"sqlite": "NUMERIC(6,1)", "postgresql": "numeric(6,1)", "mariadb": "DECIMAL(6,1)"}
    assert change == {
        "column": "weight",
        "change": "add",
        "before": None,
        "after": rendered[target.dialect],
        "ddl": f"ALTER TABLE {quoted} ADD COLUMN {weight} {rendered[target.dialect]}",
        "applied": True,
    }
    (line,) = [e for e in log_lines(record) if e["message"].startswith("schema change")]
    assert line["message"] == "schema change: altered the target table, add column 'weight'"
    assert line["ddl"] == change["ddl"] and line["level"] == "info"
    again = succeeded(project)
    assert again["tasks"][0]["schema_changes"] == [] and again["tasks"][0]["unchanged"] == 3


def test_with_schema_changes_off_a_new_column_fails_as_before(project, source, target):
    job(project, source, target, extra="  schema_changes: 'off'\n")
    succeeded(project)
    execute(source, "ALTER TABLE items ADD COLUMN weight numeric(6,1)")
    record = run(project)
    assert record["status"] == "failed"
    assert record["error"] == "task items: the target table copy has no column 'weight'"
    assert "weight" not in columns(target)


# --- widened types -------------------------------------------------------------------------

WIDENED = {
    "sqlite": {"name": "varchar(30)", "qty": "integer", "price": "numeric(12,4)"},  # 64 bits already
    "postgresql": {"name": "character varying(30)", "qty": "bigint", "price": "numeric(12,4)"},
    "mariadb": {"name": "varchar(30)", "qty": "bigint(20)", "price": "decimal(12,4)"},
}


def test_types_the_source_widened_are_widened(project, source, target):
    job(project, source, target)
    succeeded(project)
    before = columns(target)
    execute(
        source,
        "ALTER TABLE items ALTER COLUMN name TYPE varchar(30), ALTER COLUMN qty TYPE bigint, "
        "ALTER COLUMN price TYPE numeric(12,4)",
        "INSERT INTO items VALUES (3, 'a name of 25 characters..', 5000000000, 12345678.1234)",
    )
    record = succeeded(project)
    after = columns(target)
    for name, declared in WIDENED[target.dialect].items():
        assert after[name].replace("bigint(20)", "bigint") == declared.replace("bigint(20)", "bigint"), name
    last = tuple(Decimal(str(v)) if isinstance(v, float) else v for v in rows(target)[-1])  # SQLite: a REAL
    assert last == (3, "a name of 25 characters..", 5000000000, Decimal("12345678.1234"))
    changes = {c["column"]: c for c in record["tasks"][0]["schema_changes"]}
    expected = {"name", "price"} | ({"qty"} if target.dialect != "sqlite" else set())
    assert set(changes) == expected  # SQLite: every integer is 64 bits, nothing to widen
    assert all(c["change"] == "widen" and c["applied"] for c in changes.values())
    assert changes["name"]["before"].lower() in (before["name"], "varchar(10)")
    assert rows(target, "id, price")[:2] == [(1, Decimal("1.5")), (2, Decimal("2.25"))]
    assert succeeded(project)["tasks"][0]["schema_changes"] == []


def test_mariadb_keeps_the_rest_of_a_widened_column(project, source, make_database):
    target = make_database("mariadb", "target")
    job(project, source, target)
    succeeded(project)
    execute(target, "ALTER TABLE copy MODIFY COLUMN name varchar(10) NOT NULL DEFAULT 'x' COMMENT 'the name'")
    execute(source, "ALTER TABLE items ALTER COLUMN name TYPE varchar(30)")
    succeeded(project)
    (row,) = target.fetch(
        "SELECT COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, COLUMN_COMMENT, COLLATION_NAME FROM "
        "information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'copy' "
        "AND COLUMN_NAME = 'name'"
    )
    assert row[:4] == ("varchar(30)", "NO", "'x'", "the name")
    assert row[4].endswith("_bin")


def test_with_add_only_a_widened_type_is_left_as_it_was(project, source, target):
    job(project, source, target, extra="  schema_changes: add\n")
    succeeded(project)
    before = columns(target)
    execute(source, "ALTER TABLE items ALTER COLUMN price TYPE numeric(12,4)")
    record = succeeded(project)
    assert columns(target) == before and record["tasks"][0]["schema_changes"] == []


def test_a_target_made_wider_by_hand_is_not_narrowed(project, source, make_database):
    target = make_database("postgresql", "target")
    execute(target, "CREATE TABLE copy (id integer PRIMARY KEY, name text, qty bigint, price numeric)")
    job(project, source, target)
    succeeded(project)
    execute(source, "ALTER TABLE items ALTER COLUMN name TYPE varchar(20)")
    record = succeeded(project)
    assert record["tasks"][0]["schema_changes"] == []
    assert columns(target)["name"] == "text"


def nullable(db: Database, column: str) -> bool:
    if db.dialect == "sqlite":
        return not next(r[3] for r in db.fetch("PRAGMA table_info(copy)") if r[1] == column)
    if db.dialect == "postgresql":
        sql = (
            "SELECT is_nullable FROM information_schema.columns WHERE table_name = 'copy' "
            f"AND column_name = '{column}'"
        )
    else:
        sql = (
            "SELECT IS_NULLABLE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
            f"AND TABLE_NAME = 'copy' AND COLUMN_NAME = '{column}'"
        )
    return db.fetch(sql)[0][0] == "YES"


def test_a_not_null_the_source_dropped_is_dropped(project, source, target):
    execute(source, "ALTER TABLE items ALTER COLUMN name SET NOT NULL, ALTER COLUMN qty SET NOT NULL")
    execute(
        target,
        "CREATE TABLE copy (id integer PRIMARY KEY, name varchar(10) NOT NULL, qty integer NOT NULL, "
        "price numeric(8,2))",
    )
    job(project, source, target)
    succeeded(project)
    execute(
        source,
        "ALTER TABLE items ALTER COLUMN name DROP NOT NULL",
        "ALTER TABLE items DROP COLUMN qty",
        "INSERT INTO items VALUES (3, NULL, 3.00)",
    )
    record = succeeded(project)
    changes = {
        (c["column"], c["change"], c["before"], c["after"]) for c in record["tasks"][0]["schema_changes"]
    }
    # name: the source dropped its NOT NULL; qty: gone from the source, so NULL in new rows
    assert changes == {("name", "nullable", "NOT NULL", "NULL"), ("qty", "nullable", "NOT NULL", "NULL")}
    assert nullable(target, "name") and nullable(target, "qty")
    assert rows(target, "id, name, qty") == [(1, "one", 1), (2, "two", 2), (3, None, None)]
    assert succeeded(project)["tasks"][0]["schema_changes"] == []


# --- refused changes -----------------------------------------------------------------------

NARROWED_DDL = {
    "sqlite": (
        'CREATE TABLE "runner_rebuilt_copy" ("id" INTEGER NOT NULL, "name" VARCHAR(5), "qty" INTEGER, '
        '"price" NUMERIC(8,2), PRIMARY KEY ("id")); INSERT INTO "runner_rebuilt_copy" ("id", "name", '
        '"qty", "price") SELECT "id", "name", "qty", "price" FROM "copy"; DROP TABLE "copy"; '
        'ALTER TABLE "runner_rebuilt_copy" RENAME TO "copy"'
    ),
    "postgresql": 'ALTER TABLE "copy" ALTER COLUMN "name" TYPE varchar(5)',
    "mariadb": "ALTER TABLE `copy` MODIFY COLUMN `name` VARCHAR(5) CHARACTER SET utf8mb4 COLLATE {c} NULL",
}
TARGET_NAME = {"sqlite": "VARCHAR(10)", "postgresql": "character varying(10)", "mariadb": "varchar(10)"}


def test_a_narrowed_type_stops_the_task_and_changes_nothing(project, source, target):
    job(project, source, target)
    succeeded(project)
    schema, data = columns(target), rows(target)
    execute(source, "ALTER TABLE items ALTER COLUMN name TYPE varchar(5)", "UPDATE items SET qty = 7")
    for _ in range(2):  # and again: nothing is recorded as followed
        record = run(project)
        assert record["status"] == "failed"
        assert record["tasks"][0]["failure"] == "terminal"
        ddl = NARROWED_DDL[target.dialect]
        if target.dialect == "mariadb":
            collation = target.fetch(
                "SELECT TABLE_COLLATION FROM information_schema.TABLES WHERE TABLE_NAME = 'copy'"
            )
            ddl = ddl.format(c=collation[0][0])
        assert record["error"] == (
            "task items: the target table copy cannot follow the source, nothing was written: column "
            f"'name': the source's type changed from varchar(10) to varchar(5), which the target's "
            f"{TARGET_NAME[target.dialect]} cannot follow without losing data (a narrowing); the DDL "
            f"that would follow it: {ddl} (or set schema_changes: add for this task to keep the "
            "target's type)"
        )
        assert columns(target) == schema and rows(target) == data


def test_an_incompatible_type_stops_the_task(project, source, target):
    job(project, source, target)
    succeeded(project)
    data = rows(target)
    execute(
        source,
        "UPDATE items SET name = id::text",
        "ALTER TABLE items ALTER COLUMN name TYPE integer USING name::integer",
    )
    record = run(project)
    assert record["status"] == "failed"
    assert (
        "column 'name': the source's type changed from varchar(10) to integer, which the target's"
        in (record["error"])
    )
    assert "(an incompatible type)" in record["error"]
    assert rows(target) == data


def test_a_narrowing_the_target_was_altered_for_runs_on(project, source, make_database):
    target = make_database("postgresql", "target")
    job(project, source, target)
    succeeded(project)
    execute(source, "ALTER TABLE items ALTER COLUMN name TYPE varchar(5)")
    assert run(project)["status"] == "failed"
    execute(target, 'ALTER TABLE "copy" ALTER COLUMN "name" TYPE varchar(5)')  # the DDL it named
    assert succeeded(project)["tasks"][0]["schema_changes"] == []


# --- dropped and renamed columns -----------------------------------------------------------


def test_a_column_dropped_in_the_source_stays_and_gets_null(project, source, target):
    job(project, source, target)
    succeeded(project)
    execute(source, "ALTER TABLE items DROP COLUMN qty", "INSERT INTO items VALUES (3, 'three', 3.00)")
    record = succeeded(project)
    assert record["tasks"][0]["schema_changes"] == []
    assert rows(target, "id, qty") == [(1, 1), (2, 2), (3, None)]


def test_a_column_dropped_in_the_source_is_dropped_when_asked(project, source, target):
    job(project, source, target, task="  drop_columns: true\n")
    succeeded(project)
    execute(source, "ALTER TABLE items DROP COLUMN qty")
    record = succeeded(project)
    assert "qty" not in columns(target)
    (change,) = record["tasks"][0]["schema_changes"]
    assert (change["column"], change["change"], change["applied"]) == ("qty", "drop", True)


@pytest.mark.parametrize("drop", [False, True])
def test_a_renamed_column_is_one_added_and_one_dropped_never_a_rename(project, source, target, drop):
    job(project, source, target, extra=f"  drop_columns: {str(drop).lower()}\n")
    succeeded(project)
    execute(
        source, "ALTER TABLE items RENAME COLUMN qty TO amount", "INSERT INTO items VALUES (3, 'c', 30, 1)"
    )
    record = succeeded(project)
    changes = [(c["column"], c["change"]) for c in record["tasks"][0]["schema_changes"]]
    assert changes == [("amount", "add")] + ([("qty", "drop")] if drop else [])
    if drop:
        assert "qty" not in columns(target)
        assert rows(target, "id, amount") == [(1, 1), (2, 2), (3, 30)]
    else:  # the old column keeps its values, the new one has them for every row from now on
        assert rows(target, "id, qty, amount") == [(1, 1, 1), (2, 2, 2), (3, None, 30)]


# --- dry runs and the in-target compare ----------------------------------------------------


def test_a_dry_run_reports_the_ddl_and_changes_nothing(project, source, target):
    job(project, source, target)
    succeeded(project)
    schema = columns(target)
    execute(source, "ALTER TABLE items ADD COLUMN weight numeric(6,1)", "UPDATE items SET weight = 2")
    record = run(project, dry_run=True)
    task = record["tasks"][0]
    (change,) = task["schema_changes"]
    assert (change["column"], change["change"], change["applied"]) == ("weight", "add", False)
    assert "ADD COLUMN" in change["ddl"]
    lines = [e["message"] for e in log_lines(record)]
    assert "schema change: dry run: would alter the target table, add column 'weight'" in lines
    if target.dialect == "mariadb":  # MariaDB would commit the ALTER: the rows are not counted
        assert record["status"] == "failed"
        assert "mariadb commits DDL at once" in record["error"]
        assert change["ddl"] in record["error"]
    else:  # rehearsed in the dry run's transaction, rolled back with it
        assert record["status"] == "succeeded", record["error"]
        assert (task["updated"], task["rows_would_write"]) == (2, 2)
    assert columns(target) == schema
    real = succeeded(project)  # and the next real run still sees the change to make
    assert [c["change"] for c in real["tasks"][0]["schema_changes"]] == ["add"]


def test_hash_compared_in_the_target_updates_every_row_once_after_an_added_column(
    project, source, make_database
):
    target = make_database("postgresql", "target")
    job(project, source, target, strategy="hash")
    succeeded(project)
    execute(source, "ALTER TABLE items ADD COLUMN weight numeric(6,1)", "UPDATE items SET weight = id")
    record = succeeded(project)
    assert "rows compared inside the target" in Path(record["log"]).read_text()
    task = record["tasks"][0]
    assert (task["updated"], task["unchanged"]) == (2, 0)
    assert rows(target, "id, weight") == [(1, Decimal("1.0")), (2, Decimal("2.0"))]
    again = succeeded(project)["tasks"][0]
    assert (again["updated"], again["unchanged"]) == (0, 2)


@pytest.mark.parametrize("strategy", ["hash", "watermark"])
def test_other_strategies_add_columns_too(project, source, strategy):
    target_db = Database("sqlite", f"sqlite:///{project.root / 'dst.db'}")
    execute(source, "ALTER TABLE items ADD COLUMN at integer", "UPDATE items SET at = id")
    changes = "watermark, column: at" if strategy == "watermark" else "hash"
    job(project, source, target_db, strategy=changes)
    succeeded(project)
    execute(
        source, "ALTER TABLE items ADD COLUMN note text", "UPDATE items SET note = 'n' || id, at = at + 10"
    )
    record = succeeded(project)
    assert record["tasks"][0]["updated"] == 2
    assert rows(target_db, "id, note") == [(1, "n1"), (2, "n2")]
    target_db.engine.dispose()


@pytest.mark.parametrize("dialect", ["postgresql", "mariadb"])
def test_a_run_killed_after_its_ddl_and_before_its_rows_commit_is_harmless(
    project, source, make_database, tmp_path, dialect
):
    target = make_database(dialect, "target")
    job(project, source, target)
    succeeded(project)
    execute(source, "ALTER TABLE items ADD COLUMN weight numeric(6,1)", "UPDATE items SET weight = id")
    kill_at(project, "write", tmp_path)  # a batch staged in the rows' transaction, not committed
    assert rows(target, "id, weight") == [(1, None), (2, None)]  # the DDL was committed before it
    record = succeeded(project)
    assert record["tasks"][0]["schema_changes"] == []  # nothing left to alter
    assert rows(target, "id, weight") == [(1, Decimal("1.0")), (2, Decimal("2.0"))]


def test_a_widened_text_key_stays_indexable_in_mariadb(project, make_database):
    source, target = make_database("postgresql", "source"), make_database("mariadb", "target")
    execute(
        source,
        "CREATE TABLE items (code varchar(10) PRIMARY KEY, n integer)",
        "INSERT INTO items VALUES ('a', 1)",
    )
    project.connection("src", "postgresql", source.url)
    project.connection("dst", "mariadb", target.url)
    project.job(
        "sync", "src", "dst", "- {name: items, read: {table: items}, write: {table: copy, keys: [code]}}"
    )
    services.apply(project.ws)
    succeeded(project)
    execute(
        source,
        "ALTER TABLE items ALTER COLUMN code TYPE text",
        f"INSERT INTO items VALUES ('{'b' * 300}', 2)",
    )
    record = succeeded(project)
    (change,) = record["tasks"][0]["schema_changes"]
    assert (change["change"], change["after"]) == ("widen", "VARCHAR(768)")  # an index's 3072 bytes
    assert columns(target)["code"] == "varchar(768)"
    assert target.fetch("SELECT count(*) FROM copy") == [(2,)]
    assert succeeded(project)["tasks"][0]["schema_changes"] == []
