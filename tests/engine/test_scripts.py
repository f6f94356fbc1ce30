"""Invariant 5: templates render structure, values travel as bound parameters, identifiers
from YAML are always quoted. A value like `'); DROP TABLE x; --` reaches the target verbatim
and drops nothing."""

from __future__ import annotations

import sqlite3
import time

import pytest
import sqlalchemy as sa
import yaml

from runner import services
from runner.errors import DefinitionsInvalid

EVIL = "'); DROP TABLE victim; --"
EVIL_DQ = '"); DROP TABLE victim; --'
UPSERT = {
    "sqlite": """
      INSERT INTO {{ table }} ({% for c in columns %}{{ c|ident }}, {% endfor %}loaded_by)
      VALUES ({% for c in columns %}{{ bind(c) }}, {% endfor %}'script')
      ON CONFLICT ({{ keys|map('ident')|join(', ') }}) DO UPDATE SET
      {% for c in values %}{{ c|ident }} = excluded.{{ c|ident }}{{ ', ' if not loop.last }}{% endfor %}""",
    "postgresql": """
      INSERT INTO {{ table }} ({% for c in columns %}{{ c|ident }}, {% endfor %}loaded_by)
      VALUES ({% for c in columns %}{{ bind(c) }}, {% endfor %}'script')
      ON CONFLICT ({{ keys|map('ident')|join(', ') }}) DO UPDATE SET
      {% for c in values %}{{ c|ident }} = EXCLUDED.{{ c|ident }}{{ ', ' if not loop.last }}{% endfor %}""",
    "mariadb": """
      INSERT INTO {{ table }} ({% for c in columns %}{{ c|ident }}, {% endfor %}loaded_by)
      VALUES ({% for c in columns %}{{ bind(c) }}, {% endfor %}'script')
      ON DUPLICATE KEY UPDATE
      {% for c in values %}{{ c|ident }} = VALUES({{ c|ident }}){{ ', ' if not loop.last }}{% endfor %}""",
}
DELETE = "DELETE FROM {{ table }} WHERE {% for k in keys %}{{ k|ident }} = {{ bind(k) }}{% endfor %}"


def make_source(path, rows) -> None:
    db = sqlite3.connect(path)
    db.execute('CREATE TABLE items (id INTEGER PRIMARY KEY, "we""ird" TEXT, note TEXT)')
    db.executemany("INSERT INTO items VALUES (?, ?, ?)", rows)
    db.commit()
    db.close()


def target_url(request, dialect: str, tmp_path) -> str:
    if dialect == "sqlite":
        return f"sqlite:///{tmp_path / 'dst.db'}"
    return request.getfixturevalue("pg_url" if dialect == "postgresql" else "maria_url")


def prepare_target(url: str, dialect: str) -> sa.Engine:
    engine = sa.create_engine(url)
    q = '"' if dialect != "mariadb" else "`"
    weird = f'{q}we"ird{q}' if dialect == "mariadb" else '"we""ird"'
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE victim (id INTEGER)")
        conn.exec_driver_sql(
            f"CREATE TABLE dst_items (id INTEGER PRIMARY KEY, {weird} TEXT, note TEXT, loaded_by VARCHAR(20))"
        )
    return engine


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql", "mariadb"])
def test_upsert_and_delete_scripts_bind_values(project, request, tmp_path, dialect):
    make_source(project.root / "src.db", [(1, EVIL, "a"), (2, EVIL_DQ, "b"), (3, "plain", "c'; --")])
    url = target_url(request, dialect, tmp_path)
    engine = prepare_target(url, dialect)
    project.connection("src", "sqlite", f"sqlite:///{project.root / 'src.db'}")
    project.connection("dst", dialect, url)
    job = {
        "apiVersion": "runner/v1",
        "kind": "Job",
        "metadata": {"name": "load"},
        "spec": {
            "source": "src",
            "target": "dst",
            "tasks": [
                {
                    "name": "items",
                    "read": {"table": "items"},
                    "changes": {"strategy": "hash"},
                    "deletes": "propagate",
                    "write": {
                        "table": "dst_items",
                        "keys": ["id"],
                        "upsert_script": UPSERT[dialect],
                        "delete_script": DELETE,
                    },
                }
            ],
        },
    }
    (project.root / "jobs.d" / "load.yaml").write_text(yaml.safe_dump(job, allow_unicode=True))
    services.apply(project.ws)
    first = services.run(project.ws, "load")
    assert first["status"] == "succeeded", first["error"]
    assert first["tasks"][0]["upserted"] == 3
    db = sqlite3.connect(project.root / "src.db")
    db.execute("UPDATE items SET note = ? WHERE id = 3", (EVIL,))
    db.execute("DELETE FROM items WHERE id = 2")
    db.commit()
    db.close()
    second = services.run(project.ws, "load")
    assert second["status"] == "succeeded", second["error"]
    assert (second["tasks"][0]["upserted"], second["tasks"][0]["deleted"]) == (1, 1)
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT * FROM dst_items ORDER BY id").all()
        assert [tuple(r) for r in rows] == [(1, EVIL, "a", "script"), (3, "plain", EVIL, "script")]
        assert conn.exec_driver_sql("SELECT count(*) FROM victim").scalar() == 0  # still there
    engine.dispose()


def test_merge_path_keeps_hostile_values_and_names(project, pg_url):
    make_source(project.root / "src.db", [(1, EVIL, EVIL_DQ)])
    project.connection("src", "sqlite", f"sqlite:///{project.root / 'src.db'}")
    project.connection("dst", "postgresql", pg_url)
    project.job(
        "load",
        "src",
        "dst",
        """
        - name: items
          read: {table: items}
          write: {table: 'odd"table; DROP TABLE victim', keys: [id]}
        """,
    )
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE victim (id INTEGER)")
    services.apply(project.ws)
    record = services.run(project.ws, "load")
    assert record["status"] == "succeeded", record["error"]
    with engine.connect() as conn:
        rows = conn.exec_driver_sql('SELECT id, "we""ird", note FROM "odd""table; DROP TABLE victim"').all()
        assert [tuple(r) for r in rows] == [(1, EVIL, EVIL_DQ)]
        assert conn.exec_driver_sql("SELECT count(*) FROM victim").scalar() == 0
    engine.dispose()


def test_script_cannot_reach_outside_the_sandbox_or_values(project, tmp_path):
    make_source(project.root / "src.db", [(1, "x", "y")])
    project.connection("src", "sqlite", f"sqlite:///{project.root / 'src.db'}")
    project.connection("dst", "sqlite", f"sqlite:///{tmp_path / 'dst.db'}")
    project.write(
        "jobs.d/load.yaml",
        """
        apiVersion: runner/v1
        kind: Job
        metadata: {name: load}
        spec:
          source: src
          target: dst
          tasks:
            - name: items
              read: {table: items}
              write:
                table: dst_items
                keys: [id]
                upsert_script: "SELECT {{ bind.__globals__ }}"
        """,
    )
    services.apply(project.ws)
    record = services.run(project.ws, "load")
    assert record["status"] == "failed" and "unsafe" in record["error"].lower()


def test_invalid_scripts_are_validation_errors(project):
    project.connection("src", "sqlite", "sqlite:///a.db")
    project.connection("dst", "sqlite", "sqlite:///b.db")
    project.write(
        "jobs.d/load.yaml",
        """
        apiVersion: runner/v1
        kind: Job
        metadata: {name: load}
        spec:
          source: src
          target: dst
          tasks:
            - name: broken
              read: {table: items}
              write: {table: t, keys: [id], upsert_script: "INSERT {% for c in columns %}"}
            - name: no-delete-script
              read: {table: items}
              changes: {strategy: hash}
              deletes: propagate
              write: {table: t, keys: [id], upsert_script: "INSERT INTO t VALUES ({{ bind('id') }})"}
        """,
    )
    with pytest.raises(DefinitionsInvalid) as info:
        services.validate(project.ws)
    text = "\n".join(str(p) for p in info.value.problems)
    assert "spec.tasks[0].write.upsert_script: invalid template" in text
    assert "spec.tasks[1]: deletes: propagate with write.upsert_script needs write.delete_script" in text


def script_job(project, tmp_path, script: str, extra: str = "") -> None:
    make_source(project.root / "src.db", [(1, "x", "y"), (2, "u", "v")])
    project.connection("src", "sqlite", f"sqlite:///{project.root / 'src.db'}")
    project.connection("dst", "sqlite", f"sqlite:///{tmp_path / 'dst.db'}")
    engine = prepare_target(f"sqlite:///{tmp_path / 'dst.db'}", "sqlite")
    engine.dispose()
    job = {
        "apiVersion": "runner/v1",
        "kind": "Job",
        "metadata": {"name": "load"},
        "spec": {
            "source": "src",
            "target": "dst",
            **yaml.safe_load(extra or "{}"),
            "tasks": [
                {"name": "items", "read": {"table": "items"}, "write": {"table": "dst_items", "keys": ["id"]}}
            ],
        },
    }
    job["spec"]["tasks"][0]["write"]["upsert_script"] = script
    project.write("jobs.d/load.yaml", yaml.safe_dump(job))
    services.apply(project.ws)


@pytest.mark.parametrize(
    ("script", "says"),
    [
        ("{{ '%0*d' % (10**9, 1) }}", "'*' width"),
        ("{{ '%0999999999d' | format(1) }}", "width or precision of 999,999,999"),
        ("{{ '{:>1000000000}'.format(1) }}", "width or precision of 1,000,000,000"),
        ("{{ lipsum(200000) }}", "'lipsum' is undefined"),
        ("{{ 'x' * 10**9 }}", "exceeds 1,000,000"),
        ("{{ 'x' | center(10**9) }}", "exceeds 1,000,000"),
        ("{{ 7 ** 10000000 }}", "bits"),
        ("{% for i in range(10**6) %}{% endfor %}", "range() of 1,000,000 items"),
        (
            "{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
            "exceeds 1,000,000",
        ),
        (
            "{% for i in range(9000) %}{{ columns|join(',') * 100 }}{% endfor %}",
            "exceeds 1,000,000 characters",
        ),
        ("{{ columns.reverse() }}{% for c in columns %}{{ bind(c) }}{% endfor %}", "unsafe"),
    ],
)
def test_scripts_cannot_take_unbounded_time_or_memory(project, tmp_path, script, says):
    """A script that would run for minutes, take gigabytes or reorder the columns its values
    bind to fails at once, naming the script and the bound; the target is left as it was."""
    script_job(project, tmp_path, script)
    started = time.monotonic()
    record = services.run(project.ws, "load")
    assert time.monotonic() - started < 10
    assert record["status"] == "failed", record
    error = record["tasks"][0]["error"]
    assert error.startswith("write.upsert_script: ") and says in error, error
    with sqlite3.connect(tmp_path / "dst.db") as db:
        assert db.execute("SELECT count(*) FROM dst_items").fetchone() == (0,)


def test_a_render_is_stopped_by_its_time_budget_and_by_the_job_timeout(project, tmp_path):
    loops = "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}"
    from runner.connectors.registry import open_connector
    from runner.connectors.sql.scripts import SqlScript
    from runner.connectors.sql.sqlite import SqliteConnector  # noqa: F401 - registers the kind
    from runner.errors import TerminalError

    connector = open_connector("dst", {"type": "sqlite", "url": "sqlite:///x.db"}, tmp_path)
    started = time.monotonic()
    with pytest.raises(TerminalError, match=r"^write.upsert_script: rendering took longer than 0.3 s"):
        SqlScript(loops, "write.upsert_script").render(connector, "t", ["id"], ["id"], seconds=0.3)
    assert time.monotonic() - started < 2
    connector.close()

    script_job(project, tmp_path, loops, extra="timeout: 1s")  # a timeout cancels the render too
    started = time.monotonic()
    record = services.run(project.ws, "load")
    assert time.monotonic() - started < 4
    assert record["status"] == "failed" and "timed out after 1s" in record["error"], record


def test_well_behaved_scripts_still_render(project, tmp_path):
    script = (
        "INSERT INTO {{ table }} ({{ columns|map('ident')|join(', ') }}, loaded_by) VALUES "
        "({% for c in columns %}{{ bind(c) }}, {% endfor %}"
        "'{{ '%s-%02d' % ('s', 7) }}{{ '{:>3}'.format(1) }}') "
        "ON CONFLICT (id) DO NOTHING"
    )
    script_job(project, tmp_path, script)
    record = services.run(project.ws, "load")
    assert record["status"] == "succeeded", record
    with sqlite3.connect(tmp_path / "dst.db") as db:
        assert db.execute("SELECT id, loaded_by FROM dst_items ORDER BY id").fetchall() == [
            (1, "s-07  1"),
            (2, "s-07  1"),
        ]
