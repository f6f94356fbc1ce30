"""Bad data fails the run with the job, task, column and the row's key; the target keeps only
whole committed batches and the pointer does not move past them."""

from __future__ import annotations

import sqlite3

import pytest

from runner import services

ROWS = [
    (1, "ok", "2026-01-01 00:00:01"),
    (2, "fine", "2026-01-01 00:00:02"),
    (3, "also", "2026-01-01 00:00:03"),
    (4, "good", "2026-01-01 00:00:04"),
    (5, "toolong", "2026-01-01 00:00:05"),
    (6, "late", "2026-01-01 00:00:06"),
]


def sqlite_source(
    path, rows=ROWS, ddl="CREATE TABLE items (id INTEGER PRIMARY KEY, name VARCHAR(5), at TIMESTAMP)"
):
    db = sqlite3.connect(path)
    db.execute(ddl)
    db.executemany("INSERT INTO items VALUES (?, ?, ?)", rows)
    db.commit()
    db.close()


def job(
    project, target_type: str, target_url: str, changes: str = "{strategy: full}", keys: str = "[id]"
) -> None:
    project.connection("src", "sqlite", f"sqlite:///{project.root / 'src.db'}")
    project.connection("dst", target_type, target_url)
    project.job(
        "load",
        "src",
        "dst",
        f"""
        - name: items
          read: {{table: items}}
          write: {{table: dst_items, keys: {keys}}}
          changes: {changes}
        """,
        extra="  batch_size: 2\n",
    )
    services.apply(project.ws)


@pytest.mark.parametrize("target_type", ["postgresql", "mariadb"])
def test_value_too_long_names_task_column_and_key(project, request, target_type):
    url = request.getfixturevalue("pg_url" if target_type == "postgresql" else "maria_url")
    sqlite_source(project.root / "src.db")  # SQLite does not enforce VARCHAR(5); the target does
    job(project, target_type, url, "{strategy: watermark, column: at}")
    record = services.run(project.ws, "load")
    assert record["status"] == "failed"
    error = record["error"]
    assert error.startswith("task items: row with key id=5: column 'name': ")
    assert "too long" in error.lower() or "data truncated" in error.lower()  # LOAD DATA says "truncated"
    # batches of 2: (1,2) and (3,4) committed, (5,6) rolled back; the pointer is at row 4
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert [r[0] for r in conn.exec_driver_sql("SELECT id FROM dst_items ORDER BY id")] == [1, 2, 3, 4]
    engine.dispose()
    (pointer,) = services.pointer_show(project.ws, "load")
    assert pointer["pointer"] == {"type": "text", "value": "2026-01-01 00:00:04"}
    assert record["tasks"][0]["pointer_after"] == pointer["pointer"]


def test_null_into_not_null_target_column(project, pg_url):
    import sqlalchemy as sa

    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE dst_items (id integer PRIMARY KEY, name varchar(20) NOT NULL, at timestamp)"
        )
    engine.dispose()
    sqlite_source(
        project.root / "src.db", [(1, "a", "2026-01-01 00:00:01"), (2, None, "2026-01-01 00:00:02")]
    )
    job(project, "postgresql", pg_url)
    record = services.run(project.ws, "load")
    assert record["error"].startswith("task items: row with key id=2: column 'name': ")
    assert "null value" in record["error"]


def test_type_the_target_rejects(project, pg_url):
    import sqlalchemy as sa

    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE dst_items (id integer PRIMARY KEY, name integer, at timestamp)")
    engine.dispose()
    sqlite_source(project.root / "src.db", [(7, "abc", "2026-01-01 00:00:01")])
    job(project, "postgresql", pg_url)
    record = services.run(project.ws, "load")
    assert record["error"].startswith("task items: row with key id=7: column 'name': ")
    assert "invalid input syntax for type integer" in record["error"]
    engine = sa.create_engine(pg_url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM dst_items").scalar() == 0
    engine.dispose()


@pytest.mark.parametrize("target", ["sqlite", "postgresql", "mariadb"])
def test_duplicate_key_in_a_source_that_claims_keys(project, request, target, tmp_path):
    url = {"sqlite": f"sqlite:///{tmp_path / 'dst.db'}"}.get(target) or request.getfixturevalue(
        "pg_url" if target == "postgresql" else "maria_url"
    )
    sqlite_source(
        project.root / "src.db",
        [(1, "a", None), (2, "b", None), (2, "c", None)],
        ddl="CREATE TABLE items (id INTEGER, name VARCHAR(5), at TIMESTAMP)",
    )
    job(project, target, url)
    record = services.run(project.ws, "load")
    assert record["status"] == "failed"
    assert record["error"].startswith("task items: row with key id=2: ")
    assert "the source has this key more than once" in record["error"]
