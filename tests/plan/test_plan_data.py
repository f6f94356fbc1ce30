"""`runner plan --data`: each task's dry run from the folder's definitions counts what the run
then does (inserted, updated, deleted, unchanged), names the DDL it would run, and changes
nothing: no state store, no task state, no target table, no row."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from runner import services
from runner.cli.app import app
from runner.connectors.registry import open_connector
from tests.plan.test_plan_apply import state_rows

TASKS = """
- name: full
  read: {table: SRC.items}
  write: {table: TGT.items_full, keys: [id]}
  deletes: propagate
- name: wm
  read: {table: SRC.items}
  write: {table: TGT.items_wm, keys: [id]}
  changes: {strategy: watermark, column: updated_at}
  deletes: propagate
- name: hash
  read: {table: SRC.items}
  write: {table: TGT.items_hash, keys: [id]}
  changes: {strategy: hash}
  deletes: propagate
- name: switched-off
  active: false
  read: {table: SRC.items}
  write: {table: TGT.items_switched_off}
"""
COUNTS = ("rows_read", "inserted", "updated", "deleted", "unchanged")


class Pair:
    """A source and a target database for one test: their URLs for the connections, engines to
    change and read them, and the schema prefixes the tasks name tables with."""

    def __init__(self, root: Path, dialect: str, pg_url: str | None):
        if dialect == "sqlite":
            self.src_url, self.tgt_url = "sqlite:///src.db", "sqlite:///dst.db"
            self.src = sa.create_engine(f"sqlite:///{root / 'src.db'}")
            self.tgt = sa.create_engine(f"sqlite:///{root / 'dst.db'}")
            self.src_schema = self.tgt_schema = ""
        elif dialect == "mariadb":  # one database: source and targets are told apart by name
            assert pg_url is not None
            self.src_url = self.tgt_url = pg_url
            self.src = self.tgt = sa.create_engine(pg_url)
            self.src_schema = self.tgt_schema = ""
        else:
            assert pg_url is not None
            self.src_url = self.tgt_url = pg_url
            self.src = self.tgt = sa.create_engine(pg_url)
            self.src_schema, self.tgt_schema = "s.", "t."
            with self.src.begin() as conn:
                conn.exec_driver_sql("CREATE SCHEMA s")
        self.dialect = dialect

    def tasks(self) -> str:
        return TASKS.replace("SRC.", self.src_schema).replace("TGT.", self.tgt_schema)

    def source(self, sql: str, params: list[dict] | None = None) -> None:
        with self.src.begin() as conn:
            conn.execute(sa.text(sql.replace("SRC.", self.src_schema)), params or {})

    def target_tables(self) -> dict[str, list[tuple]]:
        schema = self.tgt_schema.rstrip(".") or None
        inspector = sa.inspect(self.tgt)
        found = {}
        for table in sorted(inspector.get_table_names(schema=schema)):
            if self.dialect == "mariadb" and table == "items":  # the source, in the same database
                continue
            columns = [c["name"] for c in inspector.get_columns(table, schema=schema)]
            with self.tgt.connect() as conn:
                rows = conn.execute(sa.text(f"SELECT * FROM {self.tgt_schema}{table} ORDER BY 1")).all()
            found[table] = [tuple(columns), *[tuple(map(str, r)) for r in rows]]
        return found

    def dispose(self) -> None:
        self.src.dispose()
        self.tgt.dispose()


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def pair(request, project):
    server = {"postgresql": "pg_url", "mariadb": "maria_url"}.get(request.param)
    url = request.getfixturevalue(server) if server else None
    p = Pair(project.root, request.param, url)
    stamp = "datetime(6)" if request.param == "mariadb" else "timestamp"  # MariaDB's timestamp updates itself
    p.source(
        f"CREATE TABLE SRC.items (id integer PRIMARY KEY, name varchar(20), qty integer, updated_at {stamp})"
    )
    p.source(
        "INSERT INTO SRC.items VALUES (:id, :name, :qty, :at)",
        [
            {"id": i, "name": f"n{i}", "qty": i, "at": f"2026-01-01 00:{i // 60:02d}:{i % 60:02d}"}
            for i in range(1, 51)
        ],
    )
    project.connection("src", p.dialect, p.src_url)
    project.connection("dst", p.dialect, p.tgt_url)
    project.job("items", "src", "dst", p.tasks())
    yield p
    p.dispose()


def _by_task(data) -> dict[str, dict]:
    return {t.task: t.to_dict() for t in data.tasks}


def _run_counts(project) -> dict[str, dict]:
    record = services.run(project.ws, "items")
    assert record["status"] == "succeeded", record
    return {t["name"]: {k: t[k] for k in COUNTS} for t in record["tasks"] if t["status"] == "succeeded"}


def test_a_new_job_is_counted_without_creating_anything(pair, project):
    plan = services.plan(project.ws)
    data = services.plan_data(project.ws, plan)
    found = _by_task(data)
    assert not (project.root / ".runner").exists()  # no state store made, no history
    assert pair.target_tables() == {}  # no table created
    assert found["switched-off"]["status"] == "inactive"
    for name in ("full", "wm", "hash"):
        t = found[name]
        assert t["status"] == "counted" and not t["estimate"], t
        assert (t["inserted"], t["updated"], t["deleted"], t["unchanged"]) == (50, 0, 0, 0)
        [create] = t["ddl"]
        assert create["change"] == "create" and create["after"].endswith(f"items_{name}")
        assert "CREATE TABLE" in create["ddl"] and "PRIMARY KEY (" in create["ddl"]
        assert pair.dialect != "mariadb" or "COLLATE=utf8mb4_nopad_bin" in create["ddl"]
    services.apply(project.ws)
    ran = _run_counts(project)
    for name in ("full", "wm", "hash"):
        assert ran[name] == {k: found[name][k] for k in COUNTS}, name


def test_changed_rows_and_columns_are_counted_as_the_run_then_does(pair, project):
    services.apply(project.ws)
    _run_counts(project)
    pair.source("UPDATE SRC.items SET name = 'changed', updated_at = '2026-02-01 00:00:00' WHERE id <= 3")
    pair.source("DELETE FROM SRC.items WHERE id IN (10, 11)")
    pair.source(
        "INSERT INTO SRC.items VALUES (:id, 'new', 1, '2026-02-02 00:00:00')", [{"id": i} for i in (101, 102)]
    )
    evolves = pair.dialect != "mariadb"  # MariaDB commits DDL: its dry run stops at it (below)
    if evolves:
        pair.source("ALTER TABLE SRC.items ADD COLUMN color varchar(10)")
        pair.source("UPDATE SRC.items SET color = 'red' WHERE id = 20")
    project.job("items", "src", "dst", pair.tasks(), extra="  batch_size: 7\n")  # a changed job
    before_state = state_rows(project) if pair.dialect == "sqlite" else None
    before_rows = pair.target_tables()

    plan = services.plan(project.ws)
    assert [c.action for c in plan.changes if c.kind == "Job"] == ["update"]
    found = _by_task(services.plan_data(project.ws, plan))

    assert pair.target_tables() == before_rows  # no row, column or table changed
    if before_state is not None:
        assert state_rows(project) == before_state  # no pointer, digest or task state moved
    for name in ("full", "wm", "hash"):
        adds = [d for d in found[name]["ddl"] if d["change"] == "add"]
        assert [d["column"] for d in adds] == (["color"] if evolves else []), found[name]
        assert not evolves or "ADD COLUMN" in adds[0]["ddl"]
    assert found["full"]["deleted"] == 2 and found["hash"]["deleted"] == 2

    services.apply(project.ws)
    ran = _run_counts(project)
    for name in ("full", "wm", "hash"):
        assert ran[name] == {k: found[name][k] for k in COUNTS}, (name, ran[name], found[name])


def test_a_watermark_column_no_index_starts_with_is_named(pair, project):
    """`plan --data` says when no index of the source table starts with a watermark task's
    column (each run would read the whole table to find its rows), and stops once one does.
    A key column is indexed by its primary key (SQLite's INTEGER one is the rowid); a view
    cannot be told."""
    table = f"{pair.src_schema}items"
    found = _by_task(services.plan_data(project.ws, services.plan(project.ws)))
    assert found["wm"]["note"] == (
        f"no index of the source table {table} starts with 'updated_at': every run reads the whole "
        f"table to find its changes (an index on {table} (updated_at) lets it read only those)"
    )
    assert found["full"]["note"] is None and found["hash"]["note"] is None
    source = open_connector("src", {"type": pair.dialect, "url": pair.src_url}, project.root)
    try:
        assert source.indexed(table, "id") is True and source.indexed(table, "qty") is False
        pair.source("CREATE VIEW SRC.items_view AS SELECT * FROM SRC.items")
        assert source.indexed(f"{pair.src_schema}items_view", "id") is None
        pair.source("CREATE INDEX items_at ON SRC.items (updated_at, qty)")
        assert source.indexed(table, "updated_at") is True and source.indexed(table, "qty") is False
    finally:
        source.close()
    found = _by_task(services.plan_data(project.ws, services.plan(project.ws)))
    assert found["wm"]["note"] is None and found["wm"]["status"] == "counted"


def test_mariadb_names_the_ddl_and_stops_there(project, maria_url):
    """MariaDB commits DDL at once: a dry run names the column to add and counts nothing."""
    pair = Pair(project.root, "mariadb", maria_url)
    pair.source("CREATE TABLE items (id integer PRIMARY KEY, name varchar(20))")
    pair.source("INSERT INTO items VALUES (1, 'a')")
    project.connection("db", "mariadb", maria_url)
    project.job(
        "copy", "db", "db", "- {name: t, read: {table: items}, write: {table: items_copy, keys: [id]}}"
    )
    services.apply(project.ws)
    assert services.run(project.ws, "copy")["status"] == "succeeded"
    pair.source("ALTER TABLE items ADD COLUMN color varchar(10)")
    [task] = services.plan_data(project.ws, services.plan(project.ws), unchanged=True).tasks
    assert task.status == "failed" and "commits DDL at once" in (task.error or "")
    assert [d["ddl"] for d in task.ddl] == ["ALTER TABLE `items_copy` ADD COLUMN `color` VARCHAR(10)"]
    assert "color" not in {c["name"] for c in sa.inspect(pair.tgt).get_columns("items_copy")}
    pair.dispose()


def test_unchanged_jobs_only_on_request(pair, project):
    services.apply(project.ws)
    plan = services.plan(project.ws)
    assert services.plan_data(project.ws, plan).tasks == []
    every = services.plan_data(project.ws, plan, unchanged=True)
    assert {t.task for t in every.tasks} == {"full", "wm", "hash", "switched-off"}
    assert {t.action for t in every.tasks} == {"unchanged"}
    if pair.dialect == "sqlite":  # the same job into another database: counted as changed
        project.connection("dst", "sqlite", "sqlite:///elsewhere.db")
        moved = services.plan_data(project.ws, services.plan(project.ws))
        assert {t.action for t in moved.tasks} == {"connection changed"}
        assert {t.task: t.inserted for t in moved.tasks} == {
            "full": 50,
            "wm": 50,
            "hash": 50,
            "switched-off": 0,
        }


def test_a_task_out_of_time_is_an_estimate(project):
    db = sqlite3.connect(project.root / "src.db")
    db.execute("CREATE TABLE big (id integer PRIMARY KEY, v text)")
    db.executemany("INSERT INTO big VALUES (?, 'x')", ((i,) for i in range(300_000)))
    db.commit()
    db.close()
    project.connection("src", "sqlite", "sqlite:///src.db")
    project.connection("dst", "sqlite", "sqlite:///dst.db")
    project.job(
        "big",
        "src",
        "dst",
        """
        - {name: slow, read: {table: big}, write: {table: big, keys: [id]}}
        - {name: later, read: {table: big}, write: {table: big2, keys: [id]}}
        """,
        extra="  batch_size: 1\n",  # 300,000 batches: far longer than the time given
    )
    plan = services.plan(project.ws)
    data = services.plan_data(project.ws, plan, timeout=1.2)
    slow, later = data.tasks
    assert slow.status == "estimate" and slow.estimate and data.estimated
    assert 0 < slow.inserted == slow.rows_read < 300_000
    assert "out of time" in (slow.note or "")
    assert later.status in ("estimate", "not_counted")
    nothing = services.plan_data(project.ws, plan, timeout=0.1)
    assert [t.status for t in nothing.tasks] == ["not_counted", "not_counted"]
    assert not (project.root / "dst.db").exists() or sqlite3.connect(project.root / "dst.db").execute(
        "SELECT count(*) FROM sqlite_master"
    ).fetchone() == (0,)


@pytest.fixture
def cli(project, monkeypatch):
    monkeypatch.chdir(project.root)
    runner = CliRunner()
    return lambda *args: runner.invoke(app, ["--dir", str(project.root), *args])


def test_cli_text_json_and_markdown(pair, project, cli):
    if pair.dialect != "sqlite":
        pytest.skip("the formats are the same for every dialect")
    text = cli("plan", "--data")
    assert text.exit_code == 0, text.output
    assert "Data: what the next run of each job would do" in text.stdout
    assert (
        "task full (full) → items_full: 50 read; +50 insert, ~0 update, -0 delete, 0 unchanged" in text.stdout
    )
    assert 'DDL create table items_full: CREATE TABLE IF NOT EXISTS "items_full"' in text.stdout
    assert "task switched-off: inactive" in text.stdout

    as_json = cli("plan", "--data", "--format", "json")
    data = json.loads(as_json.stdout)["data"]
    assert data["format"] == "runner-plan-data/1" and data["estimated"] is False
    assert {t["task"]: t["inserted"] for t in data["tasks"]} == {
        "full": 50,
        "wm": 50,
        "hash": 50,
        "switched-off": 0,
    }

    md = cli("plan", "--data", "--format", "markdown")
    lines = md.stdout.splitlines()
    assert lines[0] == "### runner plan"
    assert "| `default/items` | `full` | full | `items_full` | 50 | 50 | 0 | 0 | 0 | 1 |  |" in lines
    assert "```sql" in lines and any(
        line.startswith('CREATE TABLE IF NOT EXISTS "items_wm"') for line in lines
    )
    assert not (project.root / ".runner").exists() and not (project.root / "dst.db").exists()

    no_data = cli("plan", "--format", "markdown")
    assert "#### Data" not in no_data.stdout and "| create | Job | `default/items` |" in no_data.stdout


def test_the_demo_jobs_with_a_sync_all_job_are_counted(demo_project):
    """The bundled jobs in a new folder: a sync_all job's tables are counted as its tasks."""
    data = services.plan_data(demo_project.ws, services.plan(demo_project.ws))
    snapshot = {t.task: t for t in data.tasks if t.job == "default/shop-snapshot"}
    assert {"customers", "orders"} <= set(snapshot)
    assert all(t.status == "counted" and t.inserted == t.rows_read > 0 for t in snapshot.values())
    assert all(t.ddl and t.ddl[0]["change"] == "create" for t in snapshot.values())
    assert not (demo_project.root / ".runner").exists()
    assert not (demo_project.root / "demo" / "data" / "warehouse.db").exists()


def test_the_planned_state_refuses_every_write():
    from runner.errors import RunnerError
    from runner.plan.data import PlannedTasks

    tasks = PlannedTasks(None)
    assert tasks.state("default", "job", "t").pointer is None and tasks.states("default", "job") == []
    with pytest.raises(RunnerError, match=r"plan --data would change the state store \(set_pointer\)"):
        tasks.set_pointer(1, "c", {"type": "int", "value": 1}, "run")
