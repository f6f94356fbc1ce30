"""The hash strategy between two PostgreSQL databases compares rows inside the target: the
source's keys and row hashes are copied there, one join finds new, changed and gone keys, and
no digest is stored. Checked: the path is taken, text and composite keys, a soft delete and
its revival, stale stored digests forgotten, a fall back when the target's types differ, and
a run killed at each checkpoint then run again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from runner import services
from runner.changes.task import RunOptions
from tests.engine.test_crash import kill_at

JOB = """
- name: items
  read: {{table: src}}
  write: {{table: dst, keys: [{keys}]}}
  changes: {{strategy: hash}}
  deletes: {deletes}
"""


def setup(project, pg_url: str, ddl: str, keys: str = "id", deletes: str = "propagate") -> sa.Engine:
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(ddl)
    project.connection("db", "postgresql", pg_url)
    project.job("sync", "db", "db", JOB.format(keys=keys, deletes=deletes), extra="  batch_size: 3\n")
    services.apply(project.ws)
    return engine


def execute(engine: sa.Engine, *statements: str) -> None:
    with engine.begin() as conn:
        for sql in statements:
            conn.exec_driver_sql(sql)


def run(project, **options) -> dict:
    record = services.run(project.ws, "sync", RunOptions(**options))
    assert record["status"] == "succeeded", record["error"]
    return record


def task_of(record: dict) -> tuple[int, int, int, int, int]:
    t = record["tasks"][0]
    return t["rows_read"], t["inserted"], t["updated"], t["deleted"], t["unchanged"]


def compared_in_target(record: dict) -> bool:
    log = Path(record["log"]).read_text()
    return "rows compared inside the target" in log


def logged(record: dict, message: str) -> dict | None:
    """The figures of the run's log entry with this message."""
    for line in Path(record["log"]).read_text().splitlines():
        entry = json.loads(line)
        if entry["message"] == message:
            return {k: v for k, v in entry.items() if k not in ("ts", "level", "message", "task")}
    return None


def same(engine: sa.Engine, columns: str = "*", where: str = "") -> bool:
    with engine.connect() as conn:
        diff = conn.exec_driver_sql(
            f"(SELECT {columns} FROM src EXCEPT SELECT {columns} FROM dst{where}) UNION ALL "
            f"(SELECT {columns} FROM dst{where} EXCEPT SELECT {columns} FROM src)"
        ).all()
    return diff == []


def stored_digests(project) -> int:
    store = project.ws.store()
    state = store.tasks.state("default", "sync", "items")
    return sum(1 for _ in store.tasks.digests(state.id, 100))


def test_rows_compared_inside_the_target(project, pg_url):
    engine = setup(
        project,
        pg_url,
        "CREATE TABLE src (id bigint PRIMARY KEY, name varchar(20), price numeric(8,2), at timestamp);"
        "INSERT INTO src SELECT g, 'row ' || g, g / 4.0, '2026-01-01'::timestamp + g * interval '1 s' "
        "FROM generate_series(1, 1000) g",
    )
    first = run(project)
    assert task_of(first) == (1000, 1000, 0, 0, 0)
    assert stored_digests(project) == 0  # later runs compare with the target itself
    execute(
        engine,
        "UPDATE src SET name = 'changed' WHERE id IN (5, 500)",
        "UPDATE src SET price = NULL WHERE id = 7",
        "INSERT INTO src VALUES (1001, NULL, NULL, NULL), (1002, 'new', 1.5, '2026-02-01')",
        "DELETE FROM src WHERE id IN (1, 999)",
    )
    second = run(project)
    assert compared_in_target(second)
    # buckets of 17 keys summed up on each side (59 hold rows); only the 3 touched (keys 1-7,
    # 500, 999 and 1001-1002) are compared row by row
    assert logged(second, "key buckets compared by sums") == {"buckets": 59, "differ": 3}
    assert task_of(second) == (1000, 2, 3, 2, 995)
    assert same(engine)
    third = run(project)
    assert task_of(third) == (1000, 0, 0, 0, 1000)
    dry = run(project, dry_run=True)  # counts, writes nothing
    assert task_of(dry) == (1000, 0, 0, 0, 1000)


def test_sparse_keys_bucketed_by_their_range_without_counting(project, pg_url, monkeypatch):
    """The buckets' width comes from the target's key range (its index), not from a count of
    its rows, which scanned the whole table before either side could start summing: sparse
    keys get narrower buckets, each compared bucket holding a row on one side at least."""
    import psycopg

    engine = setup(
        project,
        pg_url,
        "CREATE TABLE src (id bigint PRIMARY KEY, name text);"
        "INSERT INTO src SELECT g * 1000, 'row ' || g FROM generate_series(1, 1000) g",
    )
    run(project)
    execute(
        engine,
        "UPDATE src SET name = 'changed' WHERE id IN (5000, 500000)",
        "DELETE FROM src WHERE id = 999000",
        "INSERT INTO src VALUES (1000500, 'new')",
    )
    statements: list[str] = []
    execute_sql = psycopg.Cursor.execute

    def recording(cursor, query, *args, **kwargs):
        statements.append(" ".join(str(query).split()))
        return execute_sql(cursor, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", recording)
    second = run(project)
    monkeypatch.undo()
    # a width of 16 over 999,001 values: every key alone in its bucket, 1,001 buckets with a row
    assert logged(second, "key buckets compared by sums") == {"buckets": 1001, "differ": 4}
    assert task_of(second) == (1000, 1, 2, 1, 997)
    assert same(engine)
    # the target's rows are counted only per bucket (GROUP BY), never scanned for a total first
    counts = [s for s in statements if 'count(*) FROM "dst"' in s and "GROUP BY" not in s]
    assert counts == []


def test_text_and_composite_keys(project, pg_url):
    engine = setup(
        project,
        pg_url,
        "CREATE TABLE src (region text, code varchar(10), qty integer, PRIMARY KEY (region, code));"
        "INSERT INTO src SELECT 'r' || mod(g, 7), 'c' || g, g FROM generate_series(1, 200) g",
        keys="region, code",
    )
    run(project)
    execute(
        engine,
        "UPDATE src SET qty = -1 WHERE code IN ('c3', 'c30')",
        "DELETE FROM src WHERE code = 'c100'",
        "INSERT INTO src VALUES ('ü', 'ñ', 0)",
    )
    second = run(project)
    assert compared_in_target(second)
    assert task_of(second) == (200, 1, 2, 1, 197)
    assert same(engine)


def test_soft_delete_and_revival(project, pg_url):
    engine = setup(
        project,
        pg_url,
        "CREATE TABLE src (id integer PRIMARY KEY, name text);"
        "INSERT INTO src SELECT g, 'row ' || g FROM generate_series(1, 50) g",
        deletes="soft",
    )
    run(project)
    execute(engine, "DELETE FROM src WHERE id IN (2, 3)")
    second = run(project)
    assert compared_in_target(second)
    assert logged(second, "key buckets compared by sums") == {"buckets": 3, "differ": 1}
    assert task_of(second)[3] == 2
    third = run(project)  # the soft-deleted rows are not deleted again
    assert task_of(third) == (48, 0, 0, 0, 48)
    execute(engine, "INSERT INTO src VALUES (2, 'row 2')")
    fourth = run(project)
    assert task_of(fourth) == (49, 0, 1, 0, 48)  # revived: the same values, _deleted_at cleared
    assert same(engine, "id, name", " WHERE _deleted_at IS NULL")


@pytest.mark.parametrize("read", ["{table: src}", "{query: \"SELECT * FROM src WHERE note <> '%skip'\"}"])
def test_buckets_around_zero_and_a_query_source(project, pg_url, read):
    """Buckets truncate toward zero (bucket 0 spans -16..16): changes in negative buckets, in
    bucket 0 and past the last are found, from a table or a query (with a % in its text)."""
    engine = sa.create_engine(pg_url)
    execute(
        engine,
        "CREATE TABLE src (id bigint PRIMARY KEY, name text, note text);"
        "INSERT INTO src SELECT g, 'row ' || g, 'n' FROM generate_series(-800, 800) g",
    )
    project.connection("db", "postgresql", pg_url)
    job = JOB.format(keys="id", deletes="propagate").replace("{table: src}", read)
    project.job("sync", "db", "db", job, extra="  batch_size: 3\n")
    services.apply(project.ws)
    run(project)
    execute(
        engine,
        "UPDATE src SET name = 'changed' WHERE id IN (-799, -17, -1, 0, 16, 17, 640)",
        "DELETE FROM src WHERE id IN (-400, 5, -5)",
        "INSERT INTO src VALUES (801, 'new', 'n'), (-801, 'new', 'n'), (900, 'skipped', '%%skip')",
    )
    second = run(project)
    assert logged(second, "key buckets compared by sums") is not None
    query = read.startswith("{query")
    assert task_of(second)[1:4] == (2 if query else 3, 7, 3)
    with engine.connect() as conn:
        where = " WHERE note <> '%%skip'" if query else ""
        source = conn.exec_driver_sql(f"SELECT * FROM src{where}").all()
        assert sorted(source) == sorted(conn.exec_driver_sql("SELECT * FROM dst").all())
    engine.dispose()


def test_stale_stored_digests_are_forgotten(project, pg_url):
    """Digests stored by the other way (e.g. before this path existed) are dropped on the
    first comparison inside the target: they could describe an older target later."""
    engine = setup(
        project,
        pg_url,
        "CREATE TABLE src (id integer PRIMARY KEY, name text);"
        "INSERT INTO src SELECT g, 'row ' || g FROM generate_series(1, 20) g",
    )
    run(project)
    store = project.ws.store()
    state = store.tasks.state("default", "sync", "items")
    store.tasks.write_digests(state.id, [("0a" * 16, "0b" * 16, "[1]")], [])
    assert stored_digests(project) == 1
    execute(engine, "UPDATE src SET name = 'x' WHERE id = 4")
    second = run(project)
    assert compared_in_target(second)
    assert task_of(second)[2] == 1
    assert stored_digests(project) == 0


def test_other_target_types_compare_the_other_way(project, pg_url):
    """A target whose column types differ from the source's would hash the same values
    differently: the digests go through Python as before, and the result is the same."""
    engine = setup(
        project,
        pg_url,
        "CREATE TABLE src (id integer PRIMARY KEY, name varchar(30));"
        "INSERT INTO src SELECT g, 'row ' || g FROM generate_series(1, 30) g;"
        "CREATE TABLE dst (id integer PRIMARY KEY, name text)",
    )
    first = run(project)
    assert task_of(first)[:2] == (30, 30)
    execute(engine, "UPDATE src SET name = 'x' WHERE id = 4", "DELETE FROM src WHERE id = 9")
    second = run(project)
    assert not compared_in_target(second)
    assert task_of(second)[2:4] == (1, 1)
    assert same(engine)


@pytest.mark.parametrize("point", ["read", "write", "committed"])
def test_killed_anywhere_then_rerun(project, pg_url, tmp_path, point):
    engine = setup(
        project,
        pg_url,
        "CREATE TABLE src (id integer PRIMARY KEY, name text);"
        "INSERT INTO src SELECT g, 'row ' || g FROM generate_series(1, 40) g",
    )
    run(project)
    execute(
        engine,
        "UPDATE src SET name = 'changed' WHERE mod(id, 5) = 0",
        "DELETE FROM src WHERE id IN (3, 33)",
        "INSERT INTO src SELECT g, 'new ' || g FROM generate_series(41, 50) g",
    )
    project.ws.close()
    kill_at(project, point, tmp_path)
    execute(engine, "UPDATE src SET name = 'again' WHERE id = 7", "DELETE FROM src WHERE id = 45")
    record = run(project)
    assert compared_in_target(record)
    assert same(engine)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*), count(DISTINCT id) FROM dst").one() == (47, 47)
    assert task_of(run(project))[1:4] == (0, 0, 0)
    assert not project.ws.store().tasks.state("default", "sync", "items").digests_pending
    engine.dispose()


# every type runner maps from PostgreSQL, a value per row (NULLs in the rows past 90)
TYPED = {
    "s": ("smallint", "g - 300"),
    "i": ("integer", "g * 1000"),
    "b": ("bigint", "g * 100000000000"),
    "d": ("numeric(10,3)", "g / 8.0"),
    "r": ("real", "g / 3.0"),
    "f": ("double precision", "g / 7.0"),
    "flag": ("boolean", "mod(g, 2) = 0"),
    "t": ("text", "'text ' || g"),
    "v": ("varchar(20)", "'varchar ' || g"),
    "c": ("char(5)", "'c' || g"),
    "day": ("date", "'2026-01-01'::date + g"),
    "tm": ("time", "'00:00'::time + g * interval '1 min 1 us'"),
    "at": ("timestamp", "'2026-01-01'::timestamp + g * interval '1 h 1 us'"),
    "atz": ("timestamptz", "'2026-01-01 00:00+00'::timestamptz + g * interval '1 h 1 us'"),
    "doc": ("jsonb", "jsonb_build_object('g', g, 'list', jsonb_build_array(g, 'x'))"),
    "raw": ("bytea", "int4send(g)"),
    "u": ("uuid", "md5(g::text)::uuid"),
}
# a new value for each column, in the row whose id is the column's position (ids 1-17)
CHANGED = {
    "s": "-1",
    "i": "-1",
    "b": "-1",
    "d": "d + 0.001",
    "r": "r * 2",
    "f": "f + 1e-12",
    "flag": "NOT flag",
    "t": "t || ' '",
    "v": "upper(v)",
    "c": "'c'",
    "day": "day + 1",
    "tm": "tm + interval '1 us'",
    "at": "at + interval '1 us'",
    "atz": "atz + interval '1 us'",
    "doc": "doc || '{\"g\": 0}'",
    "raw": "raw || '\\x00'::bytea",
    "u": "md5('')::uuid",
}


def test_every_column_type_compared(project, pg_url):
    """A row hash over each type PostgreSQL maps (each hashed by its own function or, for
    those without one callable on it, as a record): equal tables compare equal, a change in
    any one column is found, as is a value set to NULL or a NULL set to a value."""
    columns = ", ".join(f"{name} {ddl}" for name, (ddl, _) in TYPED.items())
    values = ", ".join(f"CASE WHEN g <= 90 THEN {expr} END" for _, expr in TYPED.values())
    engine = setup(
        project,
        pg_url,
        f"CREATE TABLE src (id integer PRIMARY KEY, {columns});"
        f"INSERT INTO src SELECT g, {values} FROM generate_series(1, 100) g",
    )
    assert task_of(run(project))[:2] == (100, 100)
    second = run(project)
    assert compared_in_target(second)
    assert task_of(second) == (100, 0, 0, 0, 100)
    execute(
        engine,
        *(f"UPDATE src SET {name} = {CHANGED[name]} WHERE id = {n}" for n, name in enumerate(TYPED, 1)),
        # ids 21 and 22: every value set to NULL; 95: every NULL set to a value
        *(f"UPDATE src SET {name} = NULL WHERE id IN (21, 22)" for name in TYPED),
        *(
            f"UPDATE src SET {name} = ({expr}) FROM (SELECT 95 AS g) x WHERE id = 95"
            for name, (_, expr) in TYPED.items()
        ),
    )
    third = run(project)
    assert compared_in_target(third)
    assert task_of(third) == (100, 0, 20, 0, 80)
    assert same(engine, "id, " + ", ".join(name for name in TYPED))
    assert task_of(run(project)) == (100, 0, 0, 0, 100)


def test_swapped_and_nulled_values_found(project, pg_url):
    """Two columns of one type swapping values, two rows of one key bucket swapping a
    column's values, a NULL and a value trading places: each row is found changed."""
    engine = setup(
        project,
        pg_url,
        "CREATE TABLE src (id integer PRIMARY KEY, a text, b text, x integer, y integer);"
        "INSERT INTO src SELECT g, 'a' || g, 'b' || g, g, NULL FROM generate_series(1, 200) g",
    )
    run(project)
    execute(
        engine,
        "UPDATE src SET a = b, b = a WHERE id = 2",  # within a row
        # between rows 40 and 41, alone in their bucket (34-50): its XOR of row hashes must move
        "UPDATE src SET x = 41 WHERE id = 40",
        "UPDATE src SET x = 40 WHERE id = 41",
        "UPDATE src SET a = NULL, b = a WHERE id = 5",  # a NULL moved from b to a
        "UPDATE src SET x = NULL, y = x WHERE id = 6",
        "UPDATE src SET x = NULL WHERE id = 7",
        "UPDATE src SET y = 0 WHERE id = 8",
    )
    second = run(project)
    assert compared_in_target(second)
    assert logged(second, "key buckets compared by sums") == {"buckets": 12, "differ": 2}
    assert task_of(second) == (200, 0, 7, 0, 193)
    assert same(engine)


def test_bigints_differing_in_both_halves_found(project, pg_url):
    """PostgreSQL's bigint hash folds the two halves into 32 bits (4 and 2**32 + 5 hash
    alike, as do 0 and 2**32 + 1): the row hash keeps them apart."""
    engine = setup(
        project,
        pg_url,
        "CREATE TABLE src (id bigint PRIMARY KEY, n bigint, at timestamp);"
        "INSERT INTO src SELECT g, g, '2026-01-01' FROM generate_series(1, 50) g",
    )
    run(project)
    execute(
        engine,
        "UPDATE src SET n = 4294967301 WHERE id = 4",
        "UPDATE src SET n = -4294967300 WHERE id = 30",
        "UPDATE src SET id = 4294967297 WHERE id = 50",  # a key of its own bucket, another row
    )
    second = run(project)
    assert compared_in_target(second)
    assert task_of(second) == (50, 1, 2, 1, 47)
    assert same(engine)
