"""Invariant 5: templates render structure, values travel as bound parameters, identifiers
from YAML are always quoted. A value like `'); DROP TABLE x; --` reaches the target verbatim
and drops nothing."""

from __future__ import annotations

import sqlite3

import pytest
import sqlalchemy as sa
import yaml

from runner import service
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
    service.apply(project.ws)
    first = service.run(project.ws, "load")
    assert first["status"] == "succeeded", first["error"]
    assert first["tasks"][0]["upserted"] == 3
    db = sqlite3.connect(project.root / "src.db")
    db.execute("UPDATE items SET note = ? WHERE id = 3", (EVIL,))
    db.execute("DELETE FROM items WHERE id = 2")
    db.commit()
    db.close()
    second = service.run(project.ws, "load")
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
    service.apply(project.ws)
    record = service.run(project.ws, "load")
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
    service.apply(project.ws)
    record = service.run(project.ws, "load")
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
        service.validate(project.ws)
    text = "\n".join(str(p) for p in info.value.problems)
    assert "spec.tasks[0].write.upsert_script: invalid template" in text
    assert "spec.tasks[1]: deletes: propagate with write.upsert_script needs write.delete_script" in text
