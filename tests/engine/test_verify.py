"""`runner verify`: a job's source and target compared without trusting runner's pointers or
digests. For each pair of dialects: equal tables exit 0; a row changed, a row deleted and a row
added in the target behind runner's back are found with exact counts and keys; `--repair`
fixes exactly those rows in a run recorded in the history, and a second verify exits 0.
Also: floats and timestamps equal as canonical values compare equal across dialects, a tiny
float change is found, soft deletes, history mode, a query read, read.timezone, text keys,
a keyless task refused, and the CLI's exit codes."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from decimal import Decimal

import pytest
from typer.testing import CliRunner

from runner import services
from runner.changes.task import RunOptions
from runner.changes.verify import bucket_range, key_ranges
from runner.cli.app import app
from runner.streams.values import NAN, comparable
from tests.conftest import Project
from tests.engine.conftest import Database

PAIRS = [
    ("postgresql", "postgresql"),
    ("postgresql", "mariadb"),
    ("mariadb", "postgresql"),
    ("sqlite", "postgresql"),
    ("sqlite", "sqlite"),
    ("mariadb", "mariadb"),
    ("postgresql", "sqlite"),
    ("sqlite", "mariadb"),
    ("mariadb", "sqlite"),
]
DDL = {
    "postgresql": "CREATE TABLE items (id integer PRIMARY KEY, name varchar(40), amount numeric(12,2), "
    "score double precision, ratio real, at timestamp(6), flag boolean)",
    "mariadb": "CREATE TABLE items (id int PRIMARY KEY, name varchar(40), amount decimal(12,2), "
    "score double, ratio float, at datetime(6), flag boolean)",
    "sqlite": "CREATE TABLE items (id INTEGER PRIMARY KEY, name VARCHAR(40), amount NUMERIC(12,2), "
    "score DOUBLE, ratio DOUBLE, at TIMESTAMP, flag BOOLEAN)",
}
ROWS = 2000
JOB = """
- name: items
  read: {{{read}}}
  write: {{table: {table}, keys: [{keys}]{write}}}
  changes: {{strategy: {strategy}}}
  deletes: {deletes}
"""


def _row(i: int, dialect: str) -> tuple:
    at = dt.datetime(2024, 1, 1, 12, 0, 0, 123456) + dt.timedelta(hours=i, microseconds=i)
    # 0.1 * i is no short decimal for most i: its text must compare as the float it is
    values = (i, f"name {i} ü", Decimal(i) / 4, 0.1 * i + 1e-12, 1.0000001 * i, at, i % 2 == 0)
    if dialect == "sqlite":
        return (*values[:2], str(values[2]), *values[3:5], at.isoformat(sep=" "), int(values[6]))
    return values


def fill(db: Database, rows: int = ROWS) -> None:
    with db.cursor() as cursor:
        cursor.execute(DDL[db.dialect])
        marks = ", ".join([db.mark] * 7)
        cursor.executemany(
            f"INSERT INTO items VALUES ({marks})", [_row(i, db.dialect) for i in range(1, rows + 1)]
        )


def setup_job(
    project: Project,
    source: Database,
    target: Database,
    read: str = "table: items",
    strategy: str = "hash",
    deletes: str = "propagate",
    write: str = "",
    keys: str = "id",
    extra: str = "",
) -> None:
    project.connection("src", source.dialect, source.url)
    project.connection("dst", target.dialect, target.url)
    task = JOB.format(read=read, table="copy", keys=keys, write=write, strategy=strategy, deletes=deletes)
    project.job("sync", "src", "dst", task, extra=extra)
    services.apply(project.ws)
    record = services.run(project.ws, "sync", RunOptions())
    assert record["status"] == "succeeded", record["error"]


def behind_runners_back(target: Database) -> None:
    """A row changed, a float changed in its last digits, a row deleted and one added."""
    m = target.mark
    with target.cursor() as cursor:
        cursor.execute(f"UPDATE copy SET name = {m} WHERE id = 7", ("changed",))
        cursor.execute(f"UPDATE copy SET score = {m} WHERE id = 9", (0.1 * 9 + 1e-12 + 1e-13,))
        cursor.execute("DELETE FROM copy WHERE id = 42")
        cursor.execute(f"INSERT INTO copy (id, name) VALUES (5000, {m})", ("extra",))


def only(result: dict) -> dict:
    (task,) = result["tasks"]
    return task


def found(task: dict) -> tuple:
    return (
        task["missing"],
        task["extra"],
        task["differing"],
        task["samples"]["missing"],
        task["samples"]["extra"],
        task["samples"]["differing"],
    )


@pytest.fixture
def pair(
    request: pytest.FixtureRequest, make_database: Callable[[str, str], Database]
) -> tuple[Database, Database]:
    source_dialect, target_dialect = request.param
    return make_database(source_dialect, "source"), make_database(target_dialect, "target")


@pytest.mark.parametrize("pair", PAIRS, indirect=True, ids=[f"{s}-to-{t}" for s, t in PAIRS])
def test_differences_found_and_repaired(project: Project, pair: tuple[Database, Database]) -> None:
    source, target = pair
    fill(source)
    setup_job(project, source, target)

    result = services.verify(project.ws, "sync")
    task = only(result)
    assert (task["status"], result["exit_code"], task["differences"]) == ("equal", 0, 0), task
    assert (task["source_rows"], task["target_rows"]) == (ROWS, ROWS)
    # summed up per key bucket in each database, alike: no bucket differs, no row is read (a
    # pair of one kind and the same types by its own hash; otherwise by the canonical texts,
    # which every dialect spells alike for these values, floats and timestamps included)
    same = source.dialect == target.dialect != "mariadb"  # MariaDB's target has a DOUBLE for the FLOAT
    hashed = "native" if same and source.dialect == "postgresql" else "md5" if same else "canonical"
    assert task["method"].startswith(f"key buckets ({hashed} row hash)"), task
    assert task["buckets"] > 1 and task["buckets_differ"] == 0, task
    assert task["rows_read"] == 0

    behind_runners_back(target)
    result = services.verify(project.ws, "sync")
    task = only(result)
    assert result["exit_code"] == 2 and task["status"] == "different"
    assert found(task) == (1, 1, 2, [42], [5000], [7, 9])
    assert task["columns_differ"] == {"name": 1, "score": 1}
    assert (task["source_rows"], task["target_rows"]) == (ROWS, ROWS)
    # only the differing buckets' rows were read
    assert 0 < task["buckets_differ"] <= 4 and task["rows_read"] < ROWS / 4

    result = services.verify(project.ws, "sync", repair=True)
    assert result["exit_code"] == 0
    repair = result["repair"]
    assert repair["status"] == "succeeded", repair
    (repaired,) = repair["tasks"]
    assert (repaired["inserted"], repaired["updated"], repaired["deleted"]) == (1, 2, 1)
    record = services.run_record(project.ws, repair["run_id"])
    assert record["options"] == {"tasks": ["items"], "repair": True}

    again = services.verify(project.ws, "sync")
    assert again["exit_code"] == 0, only(again)
    assert only(again)["target_rows"] == ROWS


def test_canonical_values_compare_equal() -> None:
    """What two databases give for one value compares equal; what differs does not."""
    aware = dt.datetime(2024, 1, 1, 13, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert comparable(aware, "timestamptz") == comparable(dt.datetime(2024, 1, 1, 12, 0), "timestamptz")
    # a real read as the double of its float (PostgreSQL, MariaDB) or kept as a double (SQLite)
    assert comparable(0.10000000149011612, "real") == comparable(0.1, "real")
    assert comparable(0.1, "double") != comparable(0.10000000000000002, "double")
    assert comparable(Decimal("12.30"), "decimal") == comparable(Decimal("12.3"), "decimal")
    assert comparable(float("nan"), "double") == NAN == comparable(Decimal("NaN"), "decimal")
    assert comparable("ab   ", "char") == comparable("ab", "char")
    assert comparable(memoryview(b"x"), "binary") == b"x"


def test_bucket_ranges() -> None:
    """A bucket's keys, as a division truncating toward zero groups them."""
    assert [bucket_range(b, 10) for b in (-2, -1, 0, 1, 2)] == [
        (-29, -20),
        (-19, -10),
        (-9, 9),
        (10, 19),
        (20, 29),
    ]
    assert key_ranges([-1, 0, 1, 5], 10) == [(-19, 19), (50, 59)]


def test_float_last_digit_and_tiny_timestamp_found(project: Project, make_database) -> None:
    """PostgreSQL to MariaDB (rows compared in Python): equal floats and timestamps are equal,
    a float one ulp off and a timestamp a microsecond off are not."""
    source, target = make_database("postgresql", "source"), make_database("mariadb", "target")
    fill(source)
    setup_job(project, source, target)
    assert services.verify(project.ws, "sync")["exit_code"] == 0
    with target.cursor() as cursor:
        cursor.execute("UPDATE copy SET score = score + score * 2.3e-16 WHERE id = 11")  # one ulp
        cursor.execute("UPDATE copy SET at = at + INTERVAL 1 MICROSECOND WHERE id = 12")
        cursor.execute("UPDATE copy SET ratio = ratio * 1.0000002 WHERE id = 13")
    task = only(services.verify(project.ws, "sync"))
    assert task["samples"]["differing"] == [11, 12, 13]
    assert task["columns_differ"] == {"score": 1, "at": 1, "ratio": 1}


def test_postgresql_row_hash_keeps_bigints_and_swaps_apart(project: Project, make_database) -> None:
    """PostgreSQL to PostgreSQL (summed by the native row hash): a bigint changed to one its
    hash folds alike (0 and 2**32 + 1) and two text columns swapping values are found."""
    source, target = make_database("postgresql", "source"), make_database("postgresql", "target")
    with source.cursor() as cursor:
        cursor.execute("CREATE TABLE items (id integer PRIMARY KEY, n bigint, a text, b text)")
        cursor.execute("INSERT INTO items SELECT g, 0, 'a' || g, 'b' || g FROM generate_series(1, 300) g")
    setup_job(project, source, target)
    task = only(services.verify(project.ws, "sync"))
    assert task["status"] == "equal" and task["method"].startswith("key buckets (native row hash)"), task
    with target.cursor() as cursor:
        cursor.execute("UPDATE copy SET n = 4294967297 WHERE id = 11")
        cursor.execute("UPDATE copy SET a = b, b = a WHERE id = 200")
    task = only(services.verify(project.ws, "sync"))
    assert task["samples"]["differing"] == [11, 200]
    assert task["columns_differ"] == {"n": 1, "a": 1, "b": 1}


def test_mariadb_float_kept_exactly(project: Project, make_database) -> None:
    """A MariaDB FLOAT's text has 6 digits: summed up per bucket by its exact value, a change
    in its 7th digit is still found."""
    source, target = make_database("mariadb", "source"), make_database("mariadb", "target")
    fill(source)
    with target.cursor() as cursor:  # the target's FLOAT as the source's
        cursor.execute(DDL["mariadb"].replace("items", "copy"))
    setup_job(project, source, target)
    with target.cursor() as cursor:
        cursor.execute("UPDATE copy SET ratio = 16777216 WHERE id = 3")
        cursor.execute("UPDATE copy SET ratio = 16777217 WHERE id = 4")
    with source.cursor() as cursor:
        cursor.execute("UPDATE items SET ratio = 16777216 WHERE id = 3")
        cursor.execute("UPDATE items SET ratio = 16777218 WHERE id = 4")
    task = only(services.verify(project.ws, "sync"))
    assert task["method"].startswith("key buckets (md5"), task
    assert task["samples"]["differing"] == [4], task


def test_query_read_and_soft_deletes(project: Project, make_database) -> None:
    """A query is what is compared; soft-deleted target rows count as deleted, and a repair
    soft-deletes the extra ones."""
    source, target = make_database("postgresql", "source"), make_database("mariadb", "target")
    fill(source)
    setup_job(
        project,
        source,
        target,
        read='query: "SELECT id, name, amount FROM items WHERE id <= 100"',
        deletes="soft",
    )
    assert services.verify(project.ws, "sync")["exit_code"] == 0
    with target.cursor() as cursor:
        cursor.execute("UPDATE copy SET _deleted_at = '2024-01-01' WHERE id = 5")  # as if gone
        cursor.execute("INSERT INTO copy (id, name) VALUES (500, 'extra')")
        cursor.execute("UPDATE copy SET amount = 1 WHERE id = 6")
    task = only(services.verify(project.ws, "sync"))
    assert found(task) == (1, 1, 1, [5], [500], [6])
    assert (task["source_rows"], task["target_rows"]) == (100, 100)
    result = services.verify(project.ws, "sync", repair=True)
    assert result["exit_code"] == 0
    assert target.fetch("SELECT id FROM copy WHERE _deleted_at IS NOT NULL") == [(500,)]
    assert services.verify(project.ws, "sync")["exit_code"] == 0


def test_history_mode_current_versions(project: Project, make_database) -> None:
    """A history-mode target is compared by its current versions; a repair opens a version."""
    source, target = make_database("postgresql", "source"), make_database("postgresql", "target")
    fill(source, 50)
    setup_job(project, source, target, write=", history: true")
    with source.cursor() as cursor:
        cursor.execute("UPDATE items SET name = 'new' WHERE id = 3")
    services.run(project.ws, "sync", RunOptions())  # two versions of key 3
    assert services.verify(project.ws, "sync")["exit_code"] == 0
    with target.cursor() as cursor:
        cursor.execute("UPDATE copy SET name = 'hand' WHERE id = 4 AND _valid_to IS NULL")
    task = only(services.verify(project.ws, "sync"))
    assert found(task) == (0, 0, 1, [], [], [4])
    assert services.verify(project.ws, "sync", repair=True)["exit_code"] == 0
    assert target.fetch("SELECT count(*) FROM copy WHERE id = 4") == [(2,)]
    assert services.verify(project.ws, "sync")["exit_code"] == 0


def test_timezone_compared_as_converted(project: Project, make_database) -> None:
    """With read.timezone the source's times are compared as the UTC times written."""
    source, target = make_database("postgresql", "source"), make_database("postgresql", "target")
    fill(source, 20)
    setup_job(project, source, target, extra="  read: {timezone: Europe/Berlin}\n")
    task = only(services.verify(project.ws, "sync"))
    assert task["status"] == "equal" and task["method"] == "every row", task
    with target.cursor() as cursor:  # the source's own wall-clock time: an hour off in UTC
        cursor.execute("UPDATE copy SET at = '2024-01-01 12:00:00.123456+00' WHERE id = 0 + 1")
    (source_at,) = source.fetch("SELECT at FROM items WHERE id = 1")[0]
    assert source_at == dt.datetime(2024, 1, 1, 13, 0, 0, 123457)
    task = only(services.verify(project.ws, "sync"))
    assert task["samples"]["differing"] == [1]


def test_text_keys_in_byte_order(project: Project, make_database) -> None:
    """Text keys (compared row by row) are read in byte order on both sides."""
    source, target = make_database("mariadb", "source"), make_database("postgresql", "target")
    with source.cursor() as cursor:
        cursor.execute("CREATE TABLE items (code varchar(10) PRIMARY KEY, n int)")
        cursor.executemany(
            "INSERT INTO items VALUES (%s, %s)",
            [(c, i) for i, c in enumerate(["a", "B", "b", "é", "Z", "_x", "ab"])],
        )
    setup_job(project, source, target, keys="code")
    assert services.verify(project.ws, "sync")["exit_code"] == 0
    with target.cursor() as cursor:
        cursor.execute("DELETE FROM copy WHERE code = 'é'")
        cursor.execute("UPDATE copy SET n = 99 WHERE code = 'B'")
    assert found(only(services.verify(project.ws, "sync"))) == (1, 0, 1, ["é"], [], ["B"])


def test_keyless_task_refused_and_cli_exit_codes(project: Project, make_database) -> None:
    source, target = make_database("sqlite", "source"), make_database("sqlite", "target")
    fill(source, 30)
    project.connection("src", source.dialect, source.url)
    project.connection("dst", target.dialect, target.url)
    project.job(
        "sync",
        "src",
        "dst",
        "- {name: items, read: {table: items}, write: {table: copy, keys: [id]}, changes: {strategy: hash}}\n"
        "- {name: whole, read: {table: items}, write: {table: whole}}",
    )
    services.apply(project.ws)
    assert services.run(project.ws, "sync", RunOptions())["status"] == "succeeded"
    cli = CliRunner()
    base = ["--dir", str(project.root), "verify", "sync"]

    keyless = cli.invoke(app, [*base, "--task", "whole"])
    assert keyless.exit_code == 1, keyless.output
    assert "task whole has no write.keys" in keyless.output

    equal = cli.invoke(app, [*base, "--task", "items"])
    assert equal.exit_code == 0, equal.output
    assert "equal" in equal.output

    with target.cursor() as cursor:
        cursor.execute("DELETE FROM copy WHERE id IN (3, 4)")
    different = cli.invoke(app, [*base, "--task", "items", "--json"])
    assert different.exit_code == 2, different.output
    report = json.loads(different.output)
    assert report["tasks"][0]["samples"]["missing"] == [3, 4]

    text = cli.invoke(app, [*base, "--task", "items"])
    assert text.exit_code == 2
    assert "missing (in the source, not in the target): 3, 4" in text.output

    repaired = cli.invoke(app, [*base, "--task", "items", "--repair"])
    assert repaired.exit_code == 0, repaired.output
    assert "2 inserted, 0 updated, 0 deleted" in repaired.output
    history = cli.invoke(app, ["--dir", str(project.root), "history", "sync", "--format", "json"])
    assert '"repair": true' in history.output

    missing = cli.invoke(app, [*base, "--task", "nope"])
    assert missing.exit_code == 1
    as_json = cli.invoke(app, [*base, "--task", "nope", "--json"])
    assert as_json.exit_code == 1 and "has no task 'nope'" in json.loads(as_json.stdout)["error"]


def test_deletes_ignore_keeps_extra_rows(project: Project, make_database) -> None:
    """Under deletes: ignore a repair keeps extra rows, and says so with exit 2."""
    source, target = make_database("sqlite", "source"), make_database("postgresql", "target")
    fill(source, 30)
    setup_job(project, source, target, deletes="ignore")
    with target.cursor() as cursor:
        cursor.execute("INSERT INTO copy (id, name) VALUES (99, 'extra')")
        cursor.execute("DELETE FROM copy WHERE id = 2")
    result = services.verify(project.ws, "sync", repair=True)
    assert result["exit_code"] == 2
    assert "1 extra row(s) kept (deletes: ignore)" in result["repair"]["tasks"][0]["note"]
    assert found(only(services.verify(project.ws, "sync")))[:3] == (0, 1, 0)


CANONICAL_VALUES = {
    # (PostgreSQL type, MariaDB type, values): each dialect's SQL spells them as Python does
    "integer": ("bigint", "bigint", [0, -1, 9007199254740993, None]),
    "decimal": (
        "numeric(20,4)",
        "decimal(20,4)",
        [Decimal("0"), Decimal("-12.5"), Decimal("123456789.0001"), None],
    ),
    "double": (
        "double precision",
        "double",
        [0.1, -2.5, 100.0, 1e-05, 0.30000000000000004, 123456.789, None],
    ),
    "real": ("real", "float", [0.1, 1.0000001, -3.0, None]),
    "text": ("text", "text", ["", "a:b", "ü 東京", "N", "  x  ", None]),
    "boolean": ("boolean", "boolean", [True, False, None]),
    "date": ("date", "date", [dt.date(2024, 2, 29), dt.date(1, 1, 1), None]),
    "timestamp": (
        "timestamp(6)",
        "datetime(6)",
        [
            dt.datetime(2024, 1, 1),
            dt.datetime(2024, 1, 1, 1, 2, 3, 4),
            dt.datetime(999, 12, 31, 23, 59, 59, 999999),
            None,
        ],
    ),
}


@pytest.mark.parametrize("dialect", ["postgresql", "mariadb", "sqlite"])
def test_canonical_text_spelt_alike(dialect: str, make_database, tmp_path) -> None:
    """Every dialect's canonical row hash of a value equals Python's (`canonical_row_text`):
    what lets a pair of different kinds agree on equal buckets without reading their rows."""
    import hashlib
    from pathlib import Path

    from runner.connectors import registry
    from runner.definitions.tasks import ReadSpec
    from runner.streams.values import canonical_row_text

    db = make_database(dialect, "source")
    column = 1 if dialect == "mariadb" else 0
    with db.cursor() as cursor:
        for kind, (*types, values) in CANONICAL_VALUES.items():
            declared = (
                types[column]
                if dialect != "sqlite"
                else {"real": "REAL", "double": "DOUBLE"}.get(kind, types[0])
            )
            cursor.execute(f"CREATE TABLE t_{kind} (id integer PRIMARY KEY, v {declared})")
            for i, value in enumerate(values):
                stored = value
                if dialect == "sqlite" and isinstance(value, Decimal | dt.date):
                    stored = str(value) if isinstance(value, Decimal) else str(value)
                cursor.execute(f"INSERT INTO t_{kind} VALUES ({db.mark}, {db.mark})", (i, stored))
    connector = registry.open_connector("c", {"type": dialect, "url": db.url}, Path(tmp_path))
    try:
        for kind in CANONICAL_VALUES:
            spec = ReadSpec(table=f"t_{kind}")
            columns = connector.column_types(spec)
            names = [connector.quote(c.name) for c in columns]
            digest = connector.row_digest(names, columns, "canonical")
            assert digest is not None, kind
            sums = connector.row_buckets(spec, "id", 1, digest)
            rows = [
                r for batch in connector.read_in_key_order(spec, columns, columns[:1], 100) for r in batch
            ]
            kinds = [c.type.kind for c in columns]
            for row in rows:
                if dialect == "mariadb" and "e" in repr(row[1]):
                    continue  # MariaDB spells 1e-05 as 1e-5: such a row is read, never taken as equal
                md5 = hashlib.md5(canonical_row_text(row, kinds)).hexdigest()
                assert sums[row[0]] == (1, int(md5[:15], 16)), (kind, row)
    finally:
        connector.close()


def test_sync_all_tables_verified_and_repaired(project: Project, make_database) -> None:
    """A sync_all job's tables are its tasks: each compared, the differing one repaired."""
    source, target = make_database("sqlite", "source"), make_database("postgresql", "target")
    fill(source, 40)
    with source.cursor() as cursor:
        cursor.execute("CREATE TABLE other (id INTEGER PRIMARY KEY, v TEXT)")
        cursor.executemany("INSERT INTO other VALUES (?, ?)", [(i, f"v{i}") for i in range(10)])
    project.connection("src", source.dialect, source.url)
    project.connection("dst", target.dialect, target.url)
    project.write(
        "jobs.d/all.yaml",
        """
        apiVersion: runner/v1
        kind: Job
        metadata: {name: all}
        spec: {type: sync_all, source: src, target: dst, deletes: propagate}
        """,
    )
    services.apply(project.ws)
    assert services.run(project.ws, "all", RunOptions())["status"] == "succeeded"
    assert services.verify(project.ws, "all")["exit_code"] == 0
    with target.cursor() as cursor:
        cursor.execute("UPDATE other SET v = 'x' WHERE id = 3")
    result = services.verify(project.ws, "all")
    assert [(t["task"], t["status"]) for t in result["tasks"]] == [("items", "equal"), ("other", "different")]
    assert services.verify(project.ws, "all", ["other"], repair=True)["repair"]["tasks"][0]["updated"] == 1
    assert services.verify(project.ws, "all")["exit_code"] == 0


def test_unmapped_types_compared_as_read(project: Project, make_database) -> None:
    """A column read through read.unmapped_types is compared as the text the task reads."""
    source, target = make_database("postgresql", "source"), make_database("mariadb", "target")
    with source.cursor() as cursor:
        cursor.execute("CREATE TABLE items (id integer PRIMARY KEY, addr inet)")
        cursor.execute("INSERT INTO items SELECT g, ('10.0.0.' || g)::inet FROM generate_series(1, 20) g")
    project.connection("src", source.dialect, source.url)
    project.connection("dst", target.dialect, target.url)
    task = "- {name: items, read: {table: items, unmapped_types: text}, write: {table: copy, keys: [id]}}"
    project.job("sync", "src", "dst", task)
    services.apply(project.ws)
    assert services.run(project.ws, "sync", RunOptions())["status"] == "succeeded"
    task_report = only(services.verify(project.ws, "sync"))
    assert (task_report["status"], task_report["method"]) == ("equal", "every row")
    with target.cursor() as cursor:
        cursor.execute("UPDATE copy SET addr = '10.0.0.99' WHERE id = 4")
    assert only(services.verify(project.ws, "sync"))["samples"]["differing"] == [4]


def test_repair_leaves_before_run_and_pointers_alone(project: Project, make_database) -> None:
    """A repair writes the differences only: no `before_run: truncate`, no pointer moved."""
    source, target = make_database("sqlite", "source"), make_database("sqlite", "target")
    fill(source, 50)
    project.connection("src", source.dialect, source.url)
    project.connection("dst", target.dialect, target.url)
    task = (
        "- {name: items, read: {table: items}, write: {table: copy, keys: [id]}, "
        "changes: {strategy: watermark, column: id}, before_run: truncate}"
    )
    project.job("sync", "src", "dst", task)
    services.apply(project.ws)
    assert services.run(project.ws, "sync", RunOptions())["status"] == "succeeded"
    pointer = services.pointer_show(project.ws, "sync")
    with target.cursor() as cursor:
        cursor.execute("DELETE FROM copy WHERE id = 10")
    result = services.verify(project.ws, "sync", repair=True)
    assert result["exit_code"] == 0 and result["repair"]["tasks"][0]["inserted"] == 1
    assert target.fetch("SELECT count(*) FROM copy") == [(50,)]
    assert services.pointer_show(project.ws, "sync") == pointer
