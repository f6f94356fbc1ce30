"""What a run does to its target: bad input found before anything is written, test runs that
leave the target alone, tables created so that every distinct source key stays distinct, and
writers that share a target (a schema, a SQLite file) without failing each other."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import pytest

from runner import services
from runner.changes.task import RunOptions
from tests.engine.conftest import Database

ITEMS = "CREATE TABLE items (id INTEGER PRIMARY KEY, name VARCHAR(20), updated_at INTEGER)"


def make_items(db: Database, rows: int = 5) -> None:
    with db.cursor() as c:
        c.execute(ITEMS)
        for i in range(1, rows + 1):
            c.execute(f"INSERT INTO items VALUES ({db.mark}, {db.mark}, {db.mark})", (i, f"item {i}", i))


def tables(db: Database) -> set[str]:
    if db.dialect == "sqlite":
        return {r[0] for r in db.fetch("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if db.dialect == "postgresql":
        return {r[0] for r in db.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    return {r[0] for r in db.fetch("SHOW TABLES")}


def changes_of(strategy: str) -> str:
    return (
        "{strategy: watermark, column: updated_at}"
        if strategy == "watermark"
        else f"{{strategy: {strategy}}}"
    )


def job(project, source: Database, target: Database, task: str, extra: str = "") -> None:
    project.connection("src", source.dialect, source.url)
    project.connection("dst", target.dialect, target.url)
    project.job("sync", "src", "dst", task, extra=extra)
    services.apply(project.ws)


# --- 7: every column a task names is checked before anything is written -------------------


@pytest.mark.parametrize(
    ("src", "dst"), [("sqlite", "sqlite"), ("postgresql", "postgresql"), ("sqlite", "mariadb")]
)
def test_a_missing_watermark_column_fails_before_the_target_is_created(project, make_database, src, dst):
    source, target = make_database(src, "source"), make_database(dst, "target")
    make_items(source)
    job(
        project,
        source,
        target,
        """
        - name: items
          read: {table: items}
          write: {table: copy, keys: [id]}
          changes: {strategy: watermark, column: updatd_at}
        """,
    )
    for _ in range(2):  # the same words on every run, and still nothing created
        record = services.run(project.ws, "sync")
        assert record["status"] == "failed"
        assert record["error"] == (
            "task items: jobs.d/sync.yaml:11:38: spec.tasks[0].changes.column: column 'updatd_at' is not "
            "among the source's columns (did you mean 'updated_at'?)"
        )
        assert "copy" not in tables(target)


@pytest.mark.parametrize("strategy", ["full", "hash"])
def test_missing_keys_are_all_named_with_their_fields(project, make_database, strategy):
    source, target = make_database("sqlite", "source"), make_database("postgresql", "target")
    make_items(source)
    job(
        project,
        source,
        target,
        f"""
        - name: items
          read: {{table: items}}
          write: {{table: copy, keys: [id, nme, code]}}
          changes: {{strategy: {strategy}}}
        """,
    )
    record = services.run(project.ws, "sync")
    assert record["error"] == (
        "task items: jobs.d/sync.yaml:10:39: spec.tasks[0].write.keys[1]: column 'nme' is not among the "
        "source's columns (did you mean 'name'?); jobs.d/sync.yaml:10:44: spec.tasks[0].write.keys[2]: "
        "column 'code' is not among the source's columns (columns: id, name, updated_at)"
    )
    assert "copy" not in tables(target)


def test_a_soft_delete_column_the_source_has_is_refused(project, make_database):
    source, target = make_database("sqlite", "source"), make_database("mariadb", "target")
    make_items(source)
    job(
        project,
        source,
        target,
        """
        - name: items
          read: {table: items}
          write: {table: copy, keys: [id], soft_delete_column: name}
          deletes: soft
        """,
    )
    record = services.run(project.ws, "sync")
    assert record["error"] == (
        "task items: jobs.d/sync.yaml:10:40: spec.tasks[0].write.soft_delete_column: column 'name' is one "
        "of the source's columns: runner sets it when a row is deleted; name another one"
    )
    assert "copy" not in tables(target)


def test_a_file_edited_since_apply_is_named_by_the_applied_definitions_line(project, make_database):
    source, target = make_database("sqlite", "source"), make_database("sqlite", "target")
    make_items(source)
    task = """
        - name: items
          read: {table: items}
          write: {table: copy, keys: [idx]}
        """
    job(project, source, target, task)
    project.job("sync", "src", "dst", "- {name: other, read: {table: items}, write: {table: b}}")
    record = services.run(project.ws, "sync")  # runs what was applied; its lines are gone
    assert record["error"] == (
        "task items: jobs.d/sync.yaml:1: spec.tasks[0].write.keys[0]: column 'idx' is not among the "
        "source's columns (did you mean 'id'?)"
    )


# --- 5: a run limited to N rows is a test run: it leaves the target, pointers and digests ---


def test_a_full_replace_counts_the_rows_it_removed(project, make_database):
    source, target = make_database("sqlite", "source"), make_database("postgresql", "target")
    make_items(source, 5)
    job(project, source, target, "- {name: items, read: {table: items}, write: {table: copy}}")
    services.run(project.ws, "sync")
    with source.cursor() as c:
        c.execute("DELETE FROM items WHERE id > 3")
    record = services.run(project.ws, "sync")
    assert (record["tasks"][0]["inserted"], record["tasks"][0]["deleted"]) == (3, 5)
    assert len(target.fetch("SELECT * FROM copy")) == 3


@pytest.mark.parametrize("dst", ["sqlite", "postgresql", "mariadb"])
def test_a_limited_run_of_a_task_without_keys_leaves_the_target_as_it_was(project, make_database, dst):
    source, target = make_database("sqlite", "source"), make_database(dst, "target")
    make_items(source, 20)
    job(project, source, target, "- {name: items, read: {table: items}, write: {table: copy}}")
    services.run(project.ws, "sync")
    record = services.run(project.ws, "sync", RunOptions(limit=3))
    assert record["status"] == "succeeded" and record["options"] == {"limit": 3, "dry_run": True}
    task = record["tasks"][0]
    assert (task["rows_read"], task["inserted"], task["deleted"]) == (3, 3, 0)
    assert sorted(r[0] for r in target.fetch("SELECT id FROM copy")) == list(range(1, 21))


@pytest.mark.parametrize("strategy", ["full", "watermark", "hash"])
def test_a_limited_run_of_a_keyed_task_moves_no_pointer_and_writes_nothing(project, make_database, strategy):
    source, target = make_database("postgresql", "source"), make_database("postgresql", "target")
    make_items(source, 10)
    job(
        project,
        source,
        target,
        f"""
        - name: items
          read: {{table: items}}
          write: {{table: copy, keys: [id]}}
          changes: {changes_of(strategy)}
          deletes: propagate
        """,
    )
    services.run(project.ws, "sync")
    with source.cursor() as c:
        c.execute("UPDATE items SET name = 'changed', updated_at = updated_at + 100")
        c.execute("DELETE FROM items WHERE id = 10")
    pointers_before = services.pointer_show(project.ws, "sync")
    record = services.run(project.ws, "sync", RunOptions(limit=4))
    task = record["tasks"][0]
    assert record["status"] == "succeeded", record["error"]
    assert (task["rows_read"], task["updated"], task["deleted"]) == (4, 4, 0)
    assert services.pointer_show(project.ws, "sync") == pointers_before
    assert target.fetch("SELECT count(*) FROM copy WHERE name = 'changed'") == [(0,)]
    assert target.fetch("SELECT count(*) FROM copy") == [(10,)]
    real = services.run(project.ws, "sync")["tasks"][0]  # nothing of the test run is taken as done
    assert (real["updated"], real["deleted"]) == (9, 1)


@pytest.mark.parametrize("strategy", ["full", "watermark", "hash"])
def test_a_limited_run_creates_no_table(project, make_database, strategy):
    source, target = make_database("sqlite", "source"), make_database("mariadb", "target")
    make_items(source, 10)
    job(
        project,
        source,
        target,
        f"- {{name: items, read: {{table: items}}, write: {{table: copy, keys: [id]}}, "
        f"changes: {changes_of(strategy)}}}",
    )
    record = services.run(project.ws, "sync", RunOptions(limit=4))
    assert record["status"] == "succeeded", record["error"]
    assert (record["tasks"][0]["rows_read"], record["tasks"][0]["inserted"]) == (4, 4)
    assert "copy" not in tables(target)


# --- 6: text keys that differ only by trailing spaces stay distinct in MariaDB ------------

PADDED = [("a", 1), ("a ", 2), ("A", 3), ("b  ", 4)]


def padded_source(db: Database) -> None:
    with db.cursor() as c:
        c.execute("CREATE TABLE codes (code varchar(10) PRIMARY KEY, n integer)")
        for code, n in PADDED:
            c.execute(f"INSERT INTO codes VALUES ({db.mark}, {db.mark})", (code, n))


@pytest.mark.parametrize("strategy", ["full", "hash"])
def test_text_keys_differing_by_trailing_spaces_stay_distinct_in_mariadb(project, make_database, strategy):
    source, target = make_database("postgresql", "source"), make_database("mariadb", "target")
    padded_source(source)
    job(
        project,
        source,
        target,
        f"- {{name: codes, read: {{table: codes}}, write: {{table: codes, keys: [code]}}, "
        f"changes: {changes_of(strategy)}, deletes: propagate}}",
        extra="  batch_size: 2\n",
    )
    for _ in range(2):  # the second run finds every key again, unchanged
        record = services.run(project.ws, "sync")
        assert record["status"] == "succeeded", record["error"]
        assert sorted(target.fetch("SELECT code, n FROM codes")) == sorted(PADDED)
    assert (record["tasks"][0]["unchanged"], record["rows_written"]) == (4, 0)
    with source.cursor() as c:
        c.execute("DELETE FROM codes WHERE code = 'a '")
    record = services.run(project.ws, "sync")
    assert record["tasks"][0]["deleted"] == 1
    assert sorted(target.fetch("SELECT code, n FROM codes")) == [("A", 3), ("a", 1), ("b  ", 4)]


def test_a_target_that_merges_two_source_keys_is_blamed_not_the_source(project, make_database):
    source, target = make_database("sqlite", "source"), make_database("mariadb", "target")
    padded_source(source)
    with target.cursor() as c:  # made by hand, with a PAD SPACE collation: 'a' = 'a '
        c.execute("CREATE TABLE codes (code VARCHAR(10) PRIMARY KEY, n INT) COLLATE utf8mb4_bin")
    job(project, source, target, "- {name: codes, read: {table: codes}, write: {table: codes, keys: [code]}}")
    record = services.run(project.ws, "sync")
    assert record["status"] == "failed"
    assert "the source has this key more than once" not in record["error"]
    assert record["error"] == (
        "task codes: row with key code='a ': the target table codes takes this key and code='a' of the "
        "source for one (its collation): Duplicate entry 'a ' for key 'PRIMARY'"
    )


# --- 8: a composite key with text columns fits a MariaDB index -----------------------------


def test_a_composite_text_key_shares_the_index_in_mariadb(project, make_database):
    source, target = make_database("postgresql", "source"), make_database("mariadb", "target")
    rows = [("x" * 300, "a", 1, 1), ("x" * 300, "b", 1, 2), ("y", "a", 2, 3)]
    with source.cursor() as c:
        c.execute("CREATE TABLE pairs (a text, b text, n bigint, v integer, PRIMARY KEY (a, b, n))")
        c.executemany("INSERT INTO pairs VALUES (%s, %s, %s, %s)", rows)
    job(
        project,
        source,
        target,
        "- {name: pairs, read: {table: pairs}, write: {table: pairs, keys: [a, b, n]}}",
    )
    for _ in range(2):
        record = services.run(project.ws, "sync")
        assert record["status"] == "succeeded", record["error"]
    assert record["tasks"][0]["unchanged"] == 3
    assert sorted(target.fetch("SELECT a, b, n, v FROM pairs")) == sorted(rows)
    declared = dict(
        target.fetch(
            "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'pairs'"
        )
    )
    assert (declared["a"], declared["b"]) == ("varchar(383)", "varchar(383)")  # (3072 - 8) / 2 / 4


def test_a_key_too_wide_for_a_mariadb_index_is_refused_before_anything_is_created(project, make_database):
    source, target = make_database("postgresql", "source"), make_database("mariadb", "target")
    with source.cursor() as c:
        c.execute("CREATE TABLE pairs (a varchar(500), b varchar(300), c text, PRIMARY KEY (a, b, c))")
        c.execute("INSERT INTO pairs VALUES ('x', 'y', 'z')")
    job(
        project,
        source,
        target,
        "- {name: pairs, read: {table: pairs}, write: {table: pairs, keys: [a, b, c]}}",
    )
    record = services.run(project.ws, "sync")
    assert record["error"] == (
        "task pairs: a key on a, b, c does not fit a MariaDB index, which holds 3072 bytes (a varchar(500): "
        "2000; b varchar(300): 1200; c text: the rest, at least 64) (hint: key on fewer or narrower "
        "columns, or cast a column to a shorter varchar in read.query)"
    )
    assert "pairs" not in tables(target)


# --- 12: parallel tasks into a PostgreSQL schema that does not exist yet -------------------


def test_parallel_tasks_create_their_new_schema_once(project, make_database):
    source, target = make_database("sqlite", "source"), make_database("postgresql", "target")
    make_items(source, 50)
    tasks = "\n".join(
        f"- {{name: t{i}, read: {{table: items}}, write: {{table: fresh.t{i}, keys: [id]}}}}"
        for i in range(4)
    )
    job(project, source, target, tasks, extra="  parallel: 4\n")
    for attempt in range(3):
        record = services.run(project.ws, "sync")
        assert record["status"] == "succeeded", (attempt, record["error"])
        for i in range(4):
            assert target.fetch(f"SELECT count(*) FROM fresh.t{i}") == [(50,)]
        with target.cursor() as c:
            c.execute("DROP SCHEMA fresh CASCADE")


# --- 13: a task with write.upsert_script creates its missing table as any task does --------

SCRIPT = {
    "sqlite": "INSERT INTO {{ table }} (id, name) VALUES ({{ bind('id') }}, {{ bind('name') }}) "
    "ON CONFLICT (id) DO UPDATE SET name = excluded.name",
    "postgresql": "INSERT INTO {{ table }} (id, name) VALUES ({{ bind('id') }}, {{ bind('name') }}) "
    "ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name",
    "mariadb": "INSERT INTO {{ table }} (id, name) VALUES ({{ bind('id') }}, {{ bind('name') }}) "
    "ON DUPLICATE KEY UPDATE name = VALUES(name)",
}


@pytest.mark.parametrize("dst", ["sqlite", "postgresql", "mariadb"])
def test_a_scripted_task_creates_its_missing_table_with_its_keys(project, make_database, dst):
    source, target = make_database("sqlite", "source"), make_database(dst, "target")
    with source.cursor() as c:
        c.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name VARCHAR(20))")
        c.executemany("INSERT INTO items VALUES (?, ?)", [(1, "a"), (2, "b")])
    job(
        project,
        source,
        target,
        f"""
        - name: items
          read: {{table: items}}
          write: {{table: copy, keys: [id], upsert_script: "{SCRIPT[dst]}"}}
        """,
    )
    record = services.run(project.ws, "sync")
    assert record["status"] == "succeeded", record["error"]
    with source.cursor() as c:
        c.execute("UPDATE items SET name = 'changed' WHERE id = 2")
    record = services.run(project.ws, "sync")  # the upsert's ON CONFLICT needs the primary key
    assert record["status"] == "succeeded", record["error"]
    assert sorted(target.fetch("SELECT id, name FROM copy")) == [(1, "a"), (2, "changed")]


def test_a_scripted_task_without_keys_runs_its_script_for_every_row(project, make_database):
    source, target = make_database("sqlite", "source"), make_database("postgresql", "target")
    make_items(source, 3)
    script = "INSERT INTO {{ table }} (id, name) VALUES ({{ bind('id') }}, {{ bind('name') }})"
    job(
        project,
        source,
        target,
        f'- {{name: items, read: {{table: items}}, write: {{table: log, upsert_script: "{script}"}}}}',
    )
    for _ in range(2):
        record = services.run(project.ws, "sync")
        assert record["status"] == "succeeded", record["error"]
        assert record["tasks"][0]["upserted"] == 3
    assert sorted(target.fetch("SELECT id FROM log")) == [(1,), (1,), (2,), (2,), (3,), (3,)]


# --- 11: jobs writing one SQLite file queue for it instead of failing ----------------------


def two_jobs_into_one_file(project, source: Database, query: str, batch_size: int) -> Database:
    target = Database("sqlite", f"sqlite:///{(project.root / 'shared.db').resolve()}")
    project.connection("src", source.dialect, source.url)
    project.connection("dst", "sqlite", target.url)
    for name in ("one", "two"):
        project.job(
            name,
            "src",
            "dst",
            f'- {{name: rows, read: {{query: "{query}"}}, write: {{table: {name}_rows}}}}',
            extra=f"  batch_size: {batch_size}\n",
        )
    services.apply(project.ws)
    return target


def run_both(project) -> list[dict]:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(lambda name: services.run(project.ws, name), ["one", "two"]))


def test_a_long_write_into_a_sqlite_file_makes_another_job_wait_not_fail(project, make_database):
    # each job's transaction stays open ~7 s while its source trickles rows: longer than
    # SQLite's default busy timeout (5 s)
    query = "SELECT i AS id, pg_sleep(0.1)::text AS s FROM generate_series(1, 70) i"
    target = two_jobs_into_one_file(project, make_database("postgresql", "source"), query, 10)
    for record in run_both(project):
        assert record["status"] == "succeeded", record["error"]
    for name in ("one", "two"):
        assert target.fetch(f"SELECT count(*) FROM {name}_rows") == [(70,)]


def test_jobs_writing_one_sqlite_file_at_once_both_succeed(project, make_database):
    source = make_database("sqlite", "source")
    make_items(source, 2000)
    target = two_jobs_into_one_file(project, source, "SELECT * FROM items", 100)
    for _ in range(10):
        for record in run_both(project):
            assert record["status"] == "succeeded", record["error"]
        for name in ("one", "two"):
            assert target.fetch(f"SELECT count(*), sum(id) FROM {name}_rows") == [(2000, 2001000)]


# --- 14: a bad query, and a server that never answers -------------------------------------


@pytest.mark.parametrize("src", ["sqlite", "postgresql", "mariadb"])
def test_a_bad_query_is_reported_in_the_users_words(project, make_database, src):
    source, target = make_database(src, "source"), make_database("sqlite", "target")
    make_items(source)
    job(project, source, target, '- {name: q, read: {query: "SELEC 1"}, write: {table: copy}}')
    record = services.run(project.ws, "sync")
    said = {
        "sqlite": 'near "SELEC": syntax error',
        "postgresql": 'syntax error at or near "SELEC"',
        "mariadb": "You have an error in your SQL syntax; check the manual that corresponds to your MariaDB "
        "server version for the right syntax to use near 'SELEC 1' at line 1",
    }
    assert record["error"] == f"task q: read.query (connection 'default/src'): {said[src]}"


def test_a_query_failing_on_its_first_rows_leaves_the_target_untouched(project, make_database):
    """The read runs its query before the writer opens, so a query failing on its first rows
    fails the run before the target is touched: here a MariaDB target, whose CREATE TABLE no
    rollback undoes (a read run lazily left an empty new table behind)."""
    source, target = make_database("postgresql", "source"), make_database("mariadb", "target")
    make_items(source)
    job(
        project,
        source,
        target,
        '- {name: q, read: {query: "SELECT id, 10 / (id - 3) AS x FROM items"}, '
        "write: {table: out, keys: [id]}}",
    )
    record = services.run(project.ws, "sync")
    assert record["status"] == "failed"
    assert "division by zero" in record["error"]
    assert "out" not in tables(target)


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A loopback TCP server that accepts connections and never says a word; its port."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted: list[socket.socket] = []

    def accept() -> None:
        with suppress(OSError):
            while True:
                accepted.append(server.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1]
    server.close()
    for conn in accepted:
        conn.close()


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_a_server_that_never_answers_fails_the_run_within_connect_timeout(project, silent_server, kind):
    project.write(
        "connections.d/src.yaml",
        f"""
        apiVersion: runner/v1
        kind: Connection
        metadata: {{name: src}}
        spec: {{type: {kind}, url: "{kind}://someone@127.0.0.1:{silent_server}/db", connect_timeout: 2s}}
        """,
    )
    project.connection("dst", "sqlite", "sqlite:///dst.db")
    project.job("sync", "src", "dst", "- {name: t, read: {table: items}, write: {table: items}}")
    services.apply(project.ws)
    started = time.monotonic()
    record = services.run(project.ws, "sync")
    assert time.monotonic() - started < 6
    assert record["status"] == "failed"
    assert record["error"].startswith("task t: connecting (connection 'default/src'): ")
    assert record["error"].endswith("(no answer within connect_timeout: 2 s)")
    log = [json.loads(line) for line in Path(record["log"]).read_text().splitlines()]
    assert [e["message"] for e in log if e.get("connection")] == ["connecting to the source"]


def test_connect_timeout_is_ten_seconds_unless_set(project):
    from runner.connectors import registry

    spec = {"type": "postgresql", "url": "postgresql://someone@127.0.0.1/db"}
    assert registry.connection_models()["postgresql"].model_validate(spec).connect_timeout == 10
    problems = services.DefinitionsInvalid
    project.write(
        "connections.d/lite.yaml",
        """
        apiVersion: runner/v1
        kind: Connection
        metadata: {name: lite}
        spec: {type: sqlite, url: "sqlite:///x.db", connect_timeout: 5}
        """,
    )
    with pytest.raises(problems) as raised:  # a file has no server to wait for
        services.validate(project.ws)
    assert "spec.connect_timeout: unknown field 'connect_timeout'" in str(raised.value.problems[0])


def test_a_query_may_take_longer_than_connect_timeout(project, make_database):
    source, target = make_database("mariadb", "source"), make_database("sqlite", "target")
    project.write(
        "connections.d/src.yaml",
        f"""
        apiVersion: runner/v1
        kind: Connection
        metadata: {{name: src}}
        spec: {{type: mariadb, url: "{source.url}", connect_timeout: 1}}
        """,
    )
    project.connection("dst", "sqlite", target.url)
    project.job(
        "sync", "src", "dst", '- {name: t, read: {query: "SELECT SLEEP(2) AS s"}, write: {table: slow}}'
    )
    services.apply(project.ws)
    record = services.run(project.ws, "sync")
    assert record["status"] == "succeeded", record["error"]
    assert target.fetch("SELECT s FROM slow") == [(0,)]


def test_a_writer_that_fails_to_open_gives_the_file_back(project, make_database):
    source, target = make_database("sqlite", "source"), make_database("sqlite", "target")
    make_items(source, 3)
    with target.cursor() as c:  # lacks the source's column `name`: the first task's writer refuses it
        c.execute("CREATE TABLE narrow (id INTEGER PRIMARY KEY, updated_at INTEGER)")  # (not added: off)
    job(
        project,
        source,
        target,
        """
        - {name: first, read: {table: items}, write: {table: narrow, keys: [id]}, schema_changes: 'off'}
        - {name: second, read: {table: items}, write: {table: copy, keys: [id]}}
        """,
        extra="  on_error: continue\n",
    )
    done: list[dict] = []
    worker = threading.Thread(target=lambda: done.append(services.run(project.ws, "sync")), daemon=True)
    worker.start()
    worker.join(30)
    assert done, "the second task waited for the first one's turn on the file"
    assert [t["status"] for t in done[0]["tasks"]] == ["failed", "succeeded"]
    assert target.fetch("SELECT count(*) FROM copy") == [(3,)]
