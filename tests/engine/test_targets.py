"""What a run does to its target: bad input found before anything is written, test runs that
leave the target alone, tables created so that every distinct source key stays distinct, and
writers that share a target (a schema, a SQLite file) without failing each other."""

from __future__ import annotations

import pytest

from runner import service
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


def job(project, source: Database, target: Database, task: str, extra: str = "") -> None:
    project.connection("src", source.dialect, source.url)
    project.connection("dst", target.dialect, target.url)
    project.job("sync", "src", "dst", task, extra=extra)
    service.apply(project.ws)


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
        record = service.run(project.ws, "sync")
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
    record = service.run(project.ws, "sync")
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
    record = service.run(project.ws, "sync")
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
    record = service.run(project.ws, "sync")  # runs what was applied; its lines are gone
    assert record["error"] == (
        "task items: jobs.d/sync.yaml:1: spec.tasks[0].write.keys[0]: column 'idx' is not among the "
        "source's columns (did you mean 'id'?)"
    )
